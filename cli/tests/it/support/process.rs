//! Child processes for the CLI's process tests.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The `swarmlabel` binary under test.
pub(crate) fn swarmlabel() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_swarmlabel"))
}

/// The bootstrap binary, built beside ours by `cargo test --workspace` (its package has tests).
pub(crate) fn bootstrap_bin() -> PathBuf {
    let path = swarmlabel().with_file_name("swarmlabel-bootstrap");
    assert!(
        path.exists(),
        "{} is missing: run the whole suite (scripts/test or cargo test --workspace)",
        path.display()
    );
    path
}

/// Polls `check` (every 100 ms: the condition is the event, polled through the CLI or the API)
/// until true; fails with `what` after [`HANG`].
pub(crate) fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < HANG, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How long a step may take before a test calls it a hang.
pub(crate) const HANG: Duration = Duration::from_secs(120);

/// A child process killed on drop, whose stdout lines arrive on a channel.
pub(crate) struct Process {
    /// The child.
    pub(crate) child: Child,
    lines: mpsc::Receiver<String>,
}

impl Process {
    pub(crate) fn spawn(cmd: &mut Command) -> Process {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(match std::env::var_os("SWARMLABEL_TEST_STDERR") {
                Some(_) => Stdio::inherit(),
                None => Stdio::null(),
            })
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::sync_channel(1024);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Process { child, lines }
    }

    /// The first stdout line that starts with `prefix`, without it.
    pub(crate) fn line(&self, prefix: &str) -> String {
        let deadline = Instant::now() + HANG;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => {
                    return line[prefix.len()..].trim().to_owned();
                }
                Ok(_) => {}
                Err(_) => panic!("the process never printed a line starting with {prefix:?}"),
            }
        }
    }
}

/// Waits for `child` to exit by itself; a child still running after [`HANG`] is killed and the
/// test fails naming `what` (a process that ignores its stop must fail the test, not hang CI).
pub(crate) fn wait_exit(child: &mut std::process::Child, what: &str) -> std::process::ExitStatus {
    // As `Child::wait` does: a child reading its stdin ends when it closes.
    drop(child.stdin.take());
    let pid = child.id();
    let (tx, exited) = mpsc::sync_channel(1);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let _ = tx.send(child.wait());
        });
        match exited.recv_timeout(HANG) {
            Ok(status) => status.unwrap(),
            Err(_) => {
                // The waiting thread returns once the child is killed.
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                panic!("{what} did not exit within {HANG:?}");
            }
        }
    })
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `swarmlabel ARGS` with `home` as its home and waits for it.
pub(crate) fn cli(home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_swarmlabel"))
        .args(args)
        .env("SWARMLABEL_HOME", home)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// The stdout of a command that must succeed.
pub(crate) fn ok(home: &Path, args: &[&str]) -> String {
    let out = cli(home, args);
    assert!(
        out.status.success(),
        "swarmlabel {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The stderr of a command that must fail.
pub(crate) fn fails(home: &Path, args: &[&str]) -> String {
    let out = cli(home, args);
    assert!(!out.status.success(), "swarmlabel {args:?} succeeded");
    String::from_utf8(out.stderr).unwrap()
}
