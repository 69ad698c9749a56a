//! Running `tests/browser/label.mjs` (playwright-core driving Debian's Chromium) from a test.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// One browser at a time: the machine has two cores.
pub(crate) static BROWSER: Mutex<()> = Mutex::new(());

const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/browser");

/// Where screenshots and browser profiles go.
pub(crate) fn output_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("../test-output/browser")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Fails with a sentence when Chromium, node or playwright-core is missing.
pub(crate) fn require_browser() {
    let missing = if !Path::new("/usr/bin/chromium").exists() {
        Some("Chromium (/usr/bin/chromium)")
    } else if Command::new("node").arg("--version").output().is_err() {
        Some("node")
    } else if !Path::new(SCRIPTS)
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        Some("playwright-core (tests/browser/node_modules)")
    } else {
        None
    };
    if let Some(what) = missing {
        panic!(
            "{what} is not installed; run scripts/test, which installs Chromium with apt-get and playwright-core with `npm ci` in tests/browser"
        );
    }
}

/// Runs `node tests/browser/label.mjs URL TOKEN OUTDIR MODE` and returns its JSON line.
pub(crate) fn drive(url: &str, token: &str, out: &Path, mode: &str) -> serde_json::Value {
    let output = Command::new("node")
        .arg(Path::new(SCRIPTS).join("label.mjs"))
        .args([url, token, out.to_str().unwrap(), mode])
        .current_dir(SCRIPTS)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the browser run failed: {stderr}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let line = stdout.lines().last().unwrap_or_else(|| {
        panic!("the browser run printed nothing: {stderr}");
    });
    serde_json::from_str(line).unwrap()
}

/// `label.mjs` in an interactive mode: the test sends it lines and reads its JSON lines.
pub(crate) struct Driver {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Driver {
    pub(crate) fn start(url: &str, token: &str, out: &Path, mode: &str) -> Driver {
        use std::io::BufRead as _;
        use std::process::Stdio;
        let mut child = Command::new("node")
            .arg(Path::new(SCRIPTS).join("label.mjs"))
            .args([url, token, out.to_str().unwrap(), mode])
            .current_dir(SCRIPTS)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::sync_channel(64);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Driver { child, lines }
    }

    /// The next JSON line (a hang guard of 2 minutes: each step takes seconds).
    pub(crate) fn next(&mut self) -> serde_json::Value {
        match self.lines.recv_timeout(std::time::Duration::from_secs(120)) {
            Ok(line) => serde_json::from_str(&line).unwrap(),
            Err(e) => {
                let _ = self.child.kill();
                panic!("the browser run stopped answering ({e}); its stderr is above");
            }
        }
    }

    pub(crate) fn send(&mut self, line: &str) {
        use std::io::Write as _;
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    pub(crate) fn finish(mut self) {
        let status = crate::support::process::wait_exit(&mut self.child, "the browser run");
        assert!(status.success(), "the browser run failed: {status}");
    }
}
