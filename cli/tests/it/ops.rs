//! What an operator installs beside the binaries: the systemd units in `dist/systemd` (valid and
//! hardened, as `systemd-analyze` judges them), shell completions and man pages.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::path::Path;
use std::process::Command;

use crate::support::process;

const UNITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../dist/systemd");

/// The units as shipped, with `/usr/local/bin` pointing at the binaries just built (systemd checks
/// that every command exists).
fn installed_units(dir: &Path) -> Vec<std::path::PathBuf> {
    let bin = Path::new(env!("CARGO_BIN_EXE_swarmlabel"))
        .parent()
        .unwrap();
    let mut units = Vec::new();
    for name in ["swarmlabel.service", "swarmlabel-bootstrap.service"] {
        let text = std::fs::read_to_string(Path::new(UNITS).join(name)).unwrap();
        let text = text.replace("/usr/local/bin", bin.to_str().unwrap());
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        units.push(path);
    }
    // Fails with a clear message when the bootstrap binary was not built beside ours.
    process::bootstrap_bin();
    units
}

#[test]
fn the_systemd_units_verify_and_are_hardened() {
    let dir = tempfile::tempdir().unwrap();
    let units = installed_units(dir.path());
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .expect("systemd-analyze runs (scripts/test installs systemd)");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for unit in &units {
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(unit)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        // "→ Overall exposure level for X.service: 1.5 OK": 0 is a fully locked-down service,
        // 10 an unprotected one; under 2 is what systemd calls OK.
        let level: f64 = text
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split(": ").nth(1))
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level in: {text}"));
        assert!(level < 2.0, "{}: exposure {level}\n{text}", unit.display());
        let shipped = std::fs::read_to_string(unit).unwrap();
        for setting in [
            "DynamicUser=yes",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
        ] {
            assert!(shipped.contains(setting), "{}: {setting}", unit.display());
        }
        assert!(shipped.contains("StateDirectory="), "{}", unit.display());
    }
}

#[test]
fn completions_and_man_pages_are_generated() {
    for (shell, marker) in [
        ("bash", "_swarmlabel()"),
        ("zsh", "#compdef swarmlabel"),
        ("fish", "complete -c swarmlabel"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_swarmlabel"))
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("dataset"), "{shell}: subcommands completed");
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_swarmlabel"))
        .args(["man", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let main = std::fs::read_to_string(dir.path().join("swarmlabel.1")).unwrap();
    assert!(main.contains(".TH swarmlabel 1"), "{main}");
    assert!(
        main.contains("Exit status"),
        "the exit codes are in the man page"
    );
    let create = std::fs::read_to_string(dir.path().join("swarmlabel-dataset-create.1")).unwrap();
    assert!(create.contains("\\-\\-labels"), "{create}");
}
