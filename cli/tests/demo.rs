//! `swarmlabel demo --headless --labels 200`: the whole network in one process (bootstrap peer,
//! data owner, two simulated volunteers and the user's node answering too) learns the shapes well
//! above chance and better with more labels, every node ends with the same merged model, and the
//! demo's temporary folder is gone after.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A hang guard only: the demo normally ends in a few minutes.
const HANG: Duration = Duration::from_secs(25 * 60);

#[test]
fn the_headless_demo_learns_the_shapes_well_above_chance() {
    let child = Command::new(env!("CARGO_BIN_EXE_swarmlabel"))
        .args([
            "demo",
            "--headless",
            "--labels",
            "200",
            "--samples",
            "300",
            "--volunteers",
            "2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = mpsc::sync_channel(1);
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(HANG) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("swarmlabel demo --headless did not finish within {HANG:?}");
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}\n{stderr}");
    assert!(output.status.success(), "the demo failed: {stderr}");
    assert!(
        !stderr.contains("did not settle"),
        "the nodes did not end with one merged model trained on every label: {stderr}"
    );

    let final_line = stdout
        .lines()
        .find(|l| l.starts_with("final: "))
        .unwrap_or_else(|| panic!("the demo printed no final line:\n{stdout}"));
    assert!(final_line.starts_with("final: 200 labels"), "{final_line}");
    let peers: usize = final_line
        .split("merged model (")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        peers, 3,
        "the user's and the 2 volunteers' models are merged: {final_line}"
    );
    let accuracy: f64 = final_line
        .split("): ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("no accuracy in: {final_line}"));
    // Four shapes: chance is 0.25.
    assert!(
        accuracy >= 0.45,
        "the merged model's test accuracy {accuracy} is not well above chance (0.25)"
    );

    // The learning curve: one line per checkpoint (50, 100, 200 labels), and it rises.
    let curve: Vec<f64> = stdout
        .lines()
        .filter(|l| l.starts_with("labels ") && l.contains("every node trained on them"))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(curve.len(), 3, "three checkpoints:\n{stdout}");
    assert!(
        curve[2] > curve[0],
        "the accuracy did not rise from 50 to 200 labels: {curve:?}"
    );

    let folder = stdout
        .lines()
        .find_map(|l| l.strip_prefix("demo folder: "))
        .unwrap();
    assert!(
        !std::path::Path::new(folder).exists(),
        "the demo left its temporary folder {folder} behind"
    );
}
