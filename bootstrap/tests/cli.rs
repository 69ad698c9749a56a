//! The `swarmlabel-bootstrap` binary as an operator runs it.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::process::Command;

/// The key file keeps the peer id across restarts, and is created owner-only.
#[test]
fn the_key_file_keeps_the_peer_id_across_runs() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("bootstrap.key");
    let run = || {
        let out = Command::new(env!("CARGO_BIN_EXE_swarmlabel-bootstrap"))
            .args(["--key-file", key.to_str().unwrap(), "--print-peer-id"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let first = run();
    assert!(first.starts_with("12D3KooW"), "{first}");
    assert_eq!(run(), first);
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::write(&key, "not a key").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_swarmlabel-bootstrap"))
        .args(["--key-file", key.to_str().unwrap(), "--print-peer-id"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a key file"));
}
