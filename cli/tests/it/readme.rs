//! The README's "A labeler's first hour", command by command: every `swarmlabel` line of its
//! shell blocks runs as written (in a temp home, the node on loopback), and the labeling page it
//! prints is driven with the keyboard in Chromium.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::process::Command;

use crate::support::process;

use crate::support::browser;

use process::{Process, ok};

const README: &str = include_str!("../../../README.md");

/// The `swarmlabel` commands of the README's section `title`, comments removed.
fn commands(title: &str) -> Vec<String> {
    let start = README
        .find(&format!("## {title}"))
        .unwrap_or_else(|| panic!("the README has no section '{title}'"));
    let rest = &README[start + 3..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    let mut out = Vec::new();
    let mut in_block = false;
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        if line.starts_with("```") {
            in_block = line.starts_with("```sh");
            continue;
        }
        if in_block && line.starts_with("swarmlabel ") {
            let mut command = line.split(" #").next().unwrap().trim().to_owned();
            // A command continued on the next line.
            while let Some(head) = command.strip_suffix('\\') {
                let next = lines.next().unwrap();
                command = format!(
                    "{} {}",
                    head.trim_end(),
                    next.split(" #").next().unwrap().trim()
                );
            }
            out.push(command);
        }
    }
    out
}

#[test]
fn a_labelers_first_hour_runs_as_written() {
    browser::require_browser();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let commands = commands("A labeler's first hour");
    assert_eq!(
        commands.len(),
        5,
        "init, generate, create, run, labels --stats: {commands:?}"
    );
    let mut id = String::new();
    let mut daemon = None;
    for command in &commands {
        let command = command
            .replace("./shapes", dir.path().join("shapes").to_str().unwrap())
            .replace(" ID ", &format!(" {id} "));
        let args: Vec<&str> = command.split_whitespace().skip(1).collect();
        if args[0] == "run" {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_swarmlabel"));
            cmd.args(&args)
                .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
                .env("SWARMLABEL_HOME", &home)
                .env_remove("RUST_LOG");
            let node = Process::spawn(&mut cmd);
            let page = node.line("labeling page: ");
            let (url, token) = page.split_once("/#token=").unwrap();
            let _one = browser::BROWSER
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let result = browser::drive(url, token, &browser::output_dir("readme"), "label");
            assert!(result["error"].is_null(), "{result}");
            daemon = Some(node);
            continue;
        }
        let out = ok(&home, &args);
        if args.starts_with(&["dataset", "create"]) {
            id = out
                .lines()
                .find_map(|l| l.strip_prefix("created dataset "))
                .unwrap_or_else(|| panic!("dataset create printed no id: {out}"))
                .trim()
                .to_owned();
            let listed = ok(&home, &["dataset", "ls"]);
            assert!(listed.contains("shapes"), "{listed}");
        }
        if args[0] == "labels" {
            // What the keyboard did in the page: 5 labels, one undone.
            let json = ok(&home, &[args.as_slice(), &["--json"]].concat());
            let stats: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!(stats["counts"]["votes"], 4, "{stats}");
        }
    }
    assert!(daemon.is_some(), "the README runs the node");
}

#[test]
fn a_data_owners_first_minutes_run_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let digits = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/digits.csv");
    let commands = commands("A data owner's first minutes");
    assert_eq!(commands.len(), 12, "{commands:?}");
    let file = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let mut id = String::new();
    let mut daemon = None;
    for command in &commands {
        let command = command
            .replace("testdata/digits.csv", digits)
            .replace("./shapes", &file("shapes"))
            .replace(" digits.jsonl", &format!(" {}", file("digits.jsonl")))
            .replace(" labels.csv", &format!(" {}", file("labels.csv")))
            .replace(
                " annotations.jsonl",
                &format!(" {}", file("annotations.jsonl")),
            );
        let owned: Vec<String> = command
            .split_whitespace()
            .skip(1)
            .map(|a| if a == "ID" { id.clone() } else { a.to_owned() })
            .collect();
        let args: Vec<&str> = owned.iter().map(String::as_str).collect();
        if args[0] == "labels" && daemon.is_none() {
            // "Once labels come in (`swarmlabel run` going; `swarmlabel label ID SAMPLE LABEL`
            // records one ...)": the node runs, and one label of the first exported sample.
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_swarmlabel"));
            cmd.args(["run", "--listen", "/ip4/127.0.0.1/tcp/0"])
                .env("SWARMLABEL_HOME", &home)
                .env_remove("RUST_LOG");
            let node = Process::spawn(&mut cmd);
            node.line("api: ");
            daemon = Some(node);
            let first = std::fs::read_to_string(file("digits.jsonl")).unwrap();
            let first: serde_json::Value =
                serde_json::from_str(first.lines().next().unwrap()).unwrap();
            let sample = first["sample_id"].as_str().unwrap();
            ok(&home, &["label", &id, sample, "3"]);
        }
        let out = ok(&home, &args);
        if args.starts_with(&["dataset", "create"]) && id.is_empty() {
            id = out
                .lines()
                .find_map(|l| l.strip_prefix("created dataset "))
                .unwrap_or_else(|| panic!("dataset create printed no id: {out}"))
                .trim()
                .to_owned();
        }
        if args.starts_with(&["dataset", "ls"]) {
            assert!(out.contains("digits"), "{out}");
        }
    }
    assert_eq!(
        std::fs::read_to_string(file("digits.jsonl"))
            .unwrap()
            .lines()
            .count(),
        1797,
        "every digits row exported"
    );
    let consensus = std::fs::read_to_string(file("labels.csv")).unwrap();
    assert!(consensus.lines().count() > 1, "{consensus}");
    let raw = std::fs::read_to_string(file("annotations.jsonl")).unwrap();
    assert_eq!(raw.lines().count(), 1, "the one signed annotation: {raw}");
    assert!(
        daemon.is_some(),
        "the README's second block needs the node running"
    );
}
