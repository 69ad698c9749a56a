//! Running `tests/browser/label.mjs` (playwright-core driving Debian's Chromium) from a test.

#![allow(dead_code)] // Each test binary uses a part.
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
