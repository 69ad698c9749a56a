//! Homes written by older and newer swarmlabel: a committed fixture home, real processes.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::path::{Path, PathBuf};

use crate::support::env;

use env::Env;

/// Copies `testdata/homes/NAME` into `env`'s home (the key made owner-only again: git keeps no
/// modes).
fn home_from_fixture(env: &Env, name: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/homes")
        .join(name);
    for entry in walkdir(&from) {
        let to = env.home().join(entry.strip_prefix(&from).unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &to).unwrap();
    }
    std::fs::set_permissions(
        env.home().join("key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
}

fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walkdir(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Issue 16: a home had no format version. An older home (the committed fixture, made before
/// homes had one) opens and is brought to the current format; a home of a newer format gets one
/// sentence and is left untouched; a listing of a manifest version this build no longer reads is
/// named with what to do, and `dataset rm` removes it.
#[test]
fn an_older_home_opens_a_newer_one_is_refused_and_a_superseded_listing_says_what_to_do() {
    const TINY: &str = "4c63c04e520399965339c3dc561f9f92c92c86fd297184c4e5eac9f90d5ae9fa";
    let env = Env::new();
    home_from_fixture(&env, "format0");
    assert!(!env.home().join("format").exists());
    let listed = env.json(&["dataset", "ls", "--json"]);
    assert_eq!(listed[0]["id"], TINY, "{listed}");
    assert_eq!(
        std::fs::read_to_string(env.home().join("format")).unwrap(),
        "swarmlabel-home 1\n"
    );
    env.ok(&["dataset", "verify", TINY]);

    let newer = Env::new();
    home_from_fixture(&newer, "format0");
    std::fs::write(newer.home().join("format"), "swarmlabel-home 99\n").unwrap();
    let out = newer.run(&["dataset", "ls"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("written by a newer swarmlabel (home format 99")
            && stderr.contains("upgrade"),
        "{stderr}"
    );
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one sentence: {stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(newer.home().join("format")).unwrap(),
        "swarmlabel-home 99\n",
        "a newer home is not touched"
    );

    // A listing of manifest version 1 (before the redundancy target).
    let old = "ab".repeat(32);
    let mut bytes = b"SWLROOT1".to_vec();
    bytes.extend_from_slice(&[0; 64]);
    std::fs::write(env.home().join("datasets").join(&old), bytes).unwrap();
    let out = env.run(&["dataset", "ls"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("listed by an older swarmlabel (manifest version 1)")
            && stderr.contains(&format!("swarmlabel dataset rm {old} --yes")),
        "{stderr}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("tiny"),
        "the others are listed"
    );
    env.ok(&["dataset", "rm", &old, "--yes"]);
    let out = env.run(&["dataset", "ls"]);
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
}
