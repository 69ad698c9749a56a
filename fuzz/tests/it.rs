//! A short run of every fuzz target in the test suite: each seed as it is, then mutated seeds
//! (seeded, so a failure reproduces: the message names the target, case and seed).

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use rand::SeedableRng as _;
use rand_chacha::ChaCha8Rng;
use swarmlabel_fuzz::{Target, mutate::mutate, run, seeds};

/// Mutated inputs per target (`FUZZ_CASES` to run more).
fn cases() -> usize {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500)
}

fn fuzz(target: Target) {
    let seeds = seeds(target);
    assert!(!seeds.is_empty(), "{}: no seed", target.name());
    for seed in &seeds {
        run(target, seed);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed ^ target.name().len() as u64);
    for case in 0..cases() {
        let pick = case % seeds.len();
        let input = mutate(&mut rng, &seeds[pick], &seeds[(pick + 1) % seeds.len()]);
        let outcome = std::panic::catch_unwind(|| run(target, &input));
        assert!(
            outcome.is_ok(),
            "{}: case {case} (seed {pick}) panicked on {} bytes: {}",
            target.name(),
            input.len(),
            hex(&input)
        );
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().take(512).map(|b| format!("{b:02x}")).collect()
}

#[test]
fn labels_request() {
    fuzz(Target::LabelsRequest);
}

#[test]
fn labels_page() {
    fuzz(Target::LabelsPage);
}

#[test]
fn labels_gossip() {
    fuzz(Target::LabelsGossip);
}

#[test]
fn shard_file() {
    fuzz(Target::ShardFile);
}

#[test]
fn models_wire() {
    fuzz(Target::ModelsWire);
}

#[test]
fn policy() {
    fuzz(Target::Policy);
}

#[test]
fn manifest() {
    fuzz(Target::Manifest);
}

#[test]
fn frames() {
    fuzz(Target::Frames);
}

#[test]
fn weights() {
    fuzz(Target::Weights);
}

#[test]
fn every_target_has_a_test() {
    assert_eq!(Target::ALL.len(), 9, "add the new target's test above");
}

/// Inputs the libFuzzer campaign found (`fuzz/tests/regressions/TARGET-NAME`): each must go
/// through its target without a panic escaping. `shard_file-hexane-eof`: a damaged shard file
/// on which automerge 0.12's loader panics (an `unwrap` in hexane's LEB128 reader); the load
/// contains it and rebuilds the shard from the record log. `shard_file-bundle-oom`: 30 bytes that
/// read as a bundle chunk, on which automerge's loader allocated over 2 GB; shards never write
/// bundles, and a file holding one no longer reaches that loader.
#[test]
fn inputs_the_campaign_found_pass() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let target = Target::ALL
            .iter()
            .find(|t| name.starts_with(&format!("{}-", t.name())))
            .unwrap_or_else(|| panic!("{name}: no target of that name"));
        let input = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| run(*target, &input));
        assert!(outcome.is_ok(), "{name}: a panic escaped the target");
        seen += 1;
    }
    assert!(seen >= 1, "no regression input in {}", dir.display());
}
