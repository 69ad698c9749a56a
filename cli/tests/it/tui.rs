//! `swarmlabel label ID --tui` in a real pseudo-terminal (util-linux `script`) against a real
//! daemon: keys typed into the terminal become signed labels on the node, Backspace undoes the
//! last, Esc leaves; an image dataset is refused with a sentence pointing to the page.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::io::{Read as _, Write as _};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use crate::support::process;

use crate::support::labeling;

use labeling::Node;
use process::HANG;

/// The values of the node's annotations, sorted by time.
fn values(node: &Node) -> Vec<String> {
    let r = node.get(&format!("{}/labels", node.ds()));
    let mut list: Vec<(u64, String)> = r.body["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["time_ms"].as_u64().unwrap(),
                a["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    list.sort();
    list.into_iter().map(|(_, v)| v).collect()
}

/// What the terminal printed so far, and a signal for each new piece.
#[derive(Default)]
struct Screen {
    bytes: Mutex<Vec<u8>>,
    printed: Condvar,
}

impl Screen {
    fn shows(&self, text: &str) -> bool {
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).contains(text)
    }

    /// Checks `done` each time the terminal prints (the labeler redraws after every request to
    /// the node returns: the header's count of answers moves), until it holds; fails saying
    /// `what` did not happen if the terminal stays quiet for `HANG`.
    fn wait(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + HANG;
        let mut seen = self.bytes.lock().unwrap().len();
        while !done() {
            let bytes = self.bytes.lock().unwrap();
            let (bytes, _) = self
                .printed
                .wait_timeout_while(
                    bytes,
                    deadline.saturating_duration_since(Instant::now()),
                    |b| b.len() == seen,
                )
                .unwrap();
            assert!(bytes.len() > seen, "{what} never happened");
            seen = bytes.len();
        }
    }
}

#[test]
fn keys_in_a_terminal_become_labels_and_backspace_undoes() {
    assert!(
        Command::new("script").arg("--version").output().is_ok(),
        "util-linux `script` is missing; install util-linux (apt-get install -y util-linux)"
    );
    let brief = tempfile::tempdir().unwrap();
    let instructions = brief.path().join("instructions.md");
    std::fs::write(&instructions, "Write the **digit** you see; 0 to 9.\n").unwrap();
    let mut node = Node::digits_with(&["--instructions", instructions.to_str().unwrap()]);
    node.start();
    let command = format!(
        "stty cols 120 rows 40; exec {} label {} --tui",
        env!("CARGO_BIN_EXE_swarmlabel"),
        node.id
    );
    let mut tui = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env("SWARMLABEL_HOME", &node.home)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let screen = Arc::new(Screen::default());
    let mut stdout = tui.stdout.take().unwrap();
    let reader = {
        let screen = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                screen.bytes.lock().unwrap().extend_from_slice(&buf[..n]);
                screen.printed.notify_all();
            }
        })
    };
    screen.wait("the terminal labeler drawing its header", || {
        screen.shows("Esc quits")
    });
    // The owner's instructions are on screen as written (issue 16: they never reached labelers).
    // The terminal moves the cursor over blank cells instead of printing spaces: look for words.
    screen.wait("the instructions", || {
        screen.shows("instructions") && screen.shows("**digit**")
    });
    let mut keys = tui.stdin.take().unwrap();
    let mut press = |key: &[u8]| {
        keys.write_all(key).unwrap();
        keys.flush().unwrap();
    };
    press(b"1");
    screen.wait("the first label reaching the node", || {
        values(&node).len() == 1
    });
    press(b"2");
    screen.wait("the second label", || values(&node).len() == 2);
    press(b" ");
    screen.wait("the skip", || values(&node).len() == 3);
    press(b"3");
    screen.wait("the third label", || values(&node).len() == 4);
    press(b"\x7f"); // Backspace
    screen.wait("the undo", || values(&node).last().unwrap() == "skip");
    assert_eq!(values(&node), ["0", "1", "skip", "skip"]);
    press(b"\x1b"); // Esc
    let status = process::wait_exit(&mut tui, "the terminal labeler after Esc");
    assert!(
        status.success(),
        "the terminal labeler exited with {status}"
    );
    reader.join().unwrap();
    node.stop();
    assert_eq!(labeling::votes(&node.stored()).len(), 2);
}

#[test]
fn an_image_dataset_is_sent_to_the_page() {
    let mut node = Node::shapes(4);
    node.start();
    let out = process::cli(&node.home, &["label", &node.id, "--tui"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("terminal shows text and table datasets only")
            && stderr.contains("labeling page"),
        "{stderr}"
    );
}
