use std::path::Path;
use std::sync::Arc;

use super::*;
use swarmlabel_crdt::{Annotation, SampleId, Value};
use swarmlabel_store::identity::Identity;

fn label(
    id: &Identity,
    dataset: &swarmlabel_crdt::Dataset,
    sample: u8,
    value: u16,
    seq: u32,
) -> SignedAnnotation {
    let annotation = Annotation {
        dataset: dataset.id,
        sample: SampleId([sample; 32]),
        annotator: id.public_key(),
        seq,
        time_ms: 1_000 + u64::from(sample),
        value: Value::Label(value),
        suggestion: None,
    };
    SignedAnnotation::sign(annotation, id.signing_key()).unwrap()
}

/// Records `id`'s label of `sample` at its chain's next place.
fn record(
    store: &mut LabelStore,
    id: &Identity,
    sample: u8,
    value: u16,
) -> Result<(), LabelStoreError> {
    let dataset = *store.replica_mut().dataset();
    let seq = store
        .replica_mut()
        .next_seq(&id.public_key(), &SampleId([sample; 32]));
    store.record(&label(id, &dataset, sample, value, seq))
}

fn samples(store: &mut LabelStore) -> Vec<u8> {
    store
        .read()
        .annotations
        .iter()
        .map(|a| a.annotation().sample.0[0])
        .collect()
}

fn labels_dir(home: &Home, dataset: &swarmlabel_crdt::Dataset) -> PathBuf {
    home.root().join("labels").join(hex::encode(dataset.id.0))
}

/// The files of a folder by name, with their bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read(&p).unwrap())
        })
        .collect()
}

fn put_back(dir: &Path, saved: &BTreeMap<String, Vec<u8>>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !saved.contains_key(&name) {
            fs::remove_file(path).unwrap();
        }
    }
    for (name, bytes) in saved {
        fs::write(dir.join(name), bytes).unwrap();
    }
}

#[test]
fn labels_survive_reopening_and_a_torn_last_append_loses_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (home, id) = Home::init(&dir.path().join("home"), false).unwrap();
    let dataset = LabelStore::crdt_dataset(&DatasetId([7; 32]), 3, 10);
    let (mut store, recovery) = LabelStore::open(&home, dataset).unwrap();
    assert!(recovery.damaged.is_empty());
    for sample in 0..5 {
        record(&mut store, &id, sample, u16::from(sample % 3)).unwrap();
    }
    drop(store);
    let (mut store, recovery) = LabelStore::open(&home, dataset).unwrap();
    assert!(recovery.damaged.is_empty(), "{:?}", recovery.damaged);
    assert_eq!(store.read().annotations.len(), 5);

    // A crash in the middle of appending the sixth label (not acknowledged): both files end
    // in a cut-off write.
    record(&mut store, &id, 5, 2).unwrap();
    drop(store);
    for (name, bytes) in files(&labels_dir(&home, &dataset)) {
        let path = labels_dir(&home, &dataset).join(name);
        fs::write(&path, &bytes[..bytes.len() - 7]).unwrap();
    }
    let (mut store, recovery) = LabelStore::open(&home, dataset).unwrap();
    assert_eq!(recovery.damaged.len(), 1, "the shard's damage is reported");
    assert!(
        recovery.damaged[0].contains("kept as"),
        "{:?}",
        recovery.damaged
    );
    assert_eq!(
        samples(&mut store),
        [0, 1, 2, 3, 4],
        "every earlier label is kept"
    );
    // The store keeps working after recovery, and what it writes next loads cleanly.
    record(&mut store, &id, 5, 1).unwrap();
    assert_eq!(store.read().annotations.len(), 6);
    drop(store);
    let (mut store, recovery) = LabelStore::open(&home, dataset).unwrap();
    assert!(recovery.damaged.is_empty(), "{:?}", recovery.damaged);
    assert_eq!(store.read().annotations.len(), 6);
}

/// Why 7 of issue 14: one byte flipped near the start of a shard file used to make the node load
/// nothing and write an empty shard over the file. Now a flipped byte anywhere in any label file
/// costs no acknowledged label, and the damaged bytes are kept aside as they were found.
#[test]
fn a_flipped_byte_anywhere_in_a_label_file_loses_no_acknowledged_label_and_is_kept_aside() {
    let dir = tempfile::tempdir().unwrap();
    let (home, id) = Home::init(&dir.path().join("home"), false).unwrap();
    let dataset = LabelStore::crdt_dataset(&DatasetId([7; 32]), 3, 10);
    let (mut store, _) = LabelStore::open(&home, dataset).unwrap();
    for sample in 0..20 {
        record(&mut store, &id, sample, u16::from(sample % 3)).unwrap();
    }
    let all = samples(&mut store);
    drop(store);
    let folder = labels_dir(&home, &dataset);
    let saved = files(&folder);
    assert_eq!(
        saved.len(),
        2,
        "one shard file and the log: {:?}",
        saved.keys()
    );
    let mut flips = 0;
    for (name, bytes) in &saved {
        for at in (0..bytes.len()).step_by(11) {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x5a;
            fs::write(folder.join(name), &damaged).unwrap();
            let (mut store, recovery) = LabelStore::open(&home, dataset).unwrap();
            assert_eq!(samples(&mut store), all, "{name}, flip at byte {at}");
            drop(store);
            // Damage that is seen is set aside byte for byte; a flip in the log is always seen.
            let now = files(&folder);
            let aside: Vec<&Vec<u8>> = now
                .iter()
                .filter(|(n, _)| n.starts_with(&format!("{name}.damaged-")))
                .map(|(_, b)| b)
                .collect();
            if !recovery.damaged.is_empty() {
                assert_eq!(aside, [&damaged], "{name}, flip at byte {at}");
            } else {
                assert!(
                    name.ends_with(".am"),
                    "{name}, flip at byte {at} went unseen"
                );
            }
            // And the files the store left behind load without damage.
            let (mut store, again) = LabelStore::open(&home, dataset).unwrap();
            assert!(
                again.damaged.is_empty(),
                "{name} at {at}: {:?}",
                again.damaged
            );
            assert_eq!(samples(&mut store), all);
            drop(store);
            put_back(&folder, &saved);
            flips += 1;
        }
    }
    assert!(flips > 500, "{flips}");
}

/// A power cut keeps only what was fsynced: `durable::crash_image` rebuilds the disk from the
/// sync calls made. The shard files are then removed too, because the record log alone is what
/// an acknowledgement rests on: this fails if any fsync on its way is missing (the log's data,
/// the folders' and the log's creation), which a process kill cannot show.
#[test]
fn every_acknowledged_label_survives_a_power_cut_at_any_acknowledgement() {
    let dir = tempfile::tempdir().unwrap();
    let (home, id) = Home::init(&dir.path().join("home"), false).unwrap();
    let dataset = LabelStore::crdt_dataset(&DatasetId([9; 32]), 3, 1_000);
    let labels = home.root().join("labels");
    let mut acknowledged = Vec::new();
    for round in 0..6u8 {
        let (mut store, _) = LabelStore::open(&home, dataset).unwrap();
        assert_eq!(samples(&mut store), acknowledged, "after cut {round}");
        for i in 0..=round {
            let sample = round * 8 + i;
            record(&mut store, &id, sample, 1).unwrap();
            acknowledged.push(sample);
        }
        acknowledged.sort_unstable();
        drop(store);
        durable::crash_image(&labels);
        let folder = labels_dir(&home, &dataset);
        for name in files(&folder).keys().filter(|n| n.ends_with(".am")) {
            fs::remove_file(folder.join(name)).unwrap();
        }
    }
}

/// A full disk refuses new labels with an error that says so, keeps every acknowledged one, and
/// leaves files that load whole once the disk has room again. Runs on a 1 MiB tmpfs (as root,
/// which CI is).
#[test]
fn a_full_disk_refuses_labels_and_loses_no_acknowledged_one() {
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("tiny");
    fs::create_dir(&mount).unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mount)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "mounting a tmpfs failed: this test needs root (CI runs as root)"
    );
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.clone());

    let (home, id) = Home::init(&mount.join("home"), false).unwrap();
    let dataset = LabelStore::crdt_dataset(&DatasetId([5; 32]), 3, 100_000);
    let (mut store, _) = LabelStore::open(&home, dataset).unwrap();
    // Fill the disk, then free room in steps: labels go through until the disk is full again.
    let filler = mount.join("filler");
    let mut file = fs::File::create(&filler).unwrap();
    while file.write_all(&[7u8; 4096]).is_ok() {}
    drop(file);
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    let mut sample = 0u8;
    for _ in 0..4 {
        let len = fs::metadata(&filler).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&filler)
            .unwrap()
            .set_len(len.saturating_sub(3 * 4096))
            .unwrap();
        loop {
            sample = sample.wrapping_add(1);
            match record(&mut store, &id, sample, 2) {
                Ok(()) => acknowledged.push(sample),
                Err(e) => {
                    assert!(is_disk_full(&e), "{e}");
                    refused += 1;
                    break;
                }
            }
        }
    }
    assert!(refused == 4 && acknowledged.len() > 10, "{acknowledged:?}");
    acknowledged.sort_unstable();
    assert_eq!(samples(&mut store), acknowledged);
    // Killed with the disk full: every acknowledged label comes back.
    drop(store);
    let (mut store, _) = LabelStore::open(&home, dataset).unwrap();
    assert_eq!(samples(&mut store), acknowledged);
    drop(store);
    fs::remove_file(&filler).unwrap();
    let (mut store, _) = LabelStore::open(&home, dataset).unwrap();
    record(&mut store, &id, 250, 0).unwrap();
    drop(store);
    let (mut store, recovery) = LabelStore::open(&home, dataset).unwrap();
    assert!(recovery.damaged.is_empty(), "{:?}", recovery.damaged);
    assert_eq!(samples(&mut store).len(), acknowledged.len() + 1);
}

/// A batch from a peer with one forged record keeps nothing: a gossip message is judged whole.
#[test]
fn a_batch_with_a_forged_record_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (home, id) = Home::init(&dir.path().join("home"), false).unwrap();
    let dataset = LabelStore::crdt_dataset(&DatasetId([4; 32]), 3, 10);
    let (mut store, _) = LabelStore::open(&home, dataset).unwrap();
    let valid = label(&id, &dataset, 1, 1, 1);
    let honest = label(&id, &dataset, 2, 1, 2);
    let mut broken = *honest.signature();
    broken[0] ^= 1;
    let forged = SignedAnnotation::from_parts(*honest.annotation(), broken);
    let outcomes = store.record_batch(&[valid, forged]).unwrap();
    assert!(outcomes[1].is_err(), "the forgery is named");
    assert!(
        store.read().annotations.is_empty(),
        "the valid record of a forged batch was kept"
    );
    drop(store);
    let (mut store, _) = LabelStore::open(&home, dataset).unwrap();
    assert!(store.read().annotations.is_empty());
}

/// Why 2 of issue 14: each record from a peer was fsynced on its own on the labels thread, so a
/// flood of them stalled the local labeler's acknowledgements. A batch is one fsync of the
/// record log, however many records and shards it holds; the shard files are caches of the log.
#[test]
fn a_batch_from_peers_costs_one_fsync_whatever_it_touches() {
    let dir = tempfile::tempdir().unwrap();
    let (home, _) = Home::init(&dir.path().join("home"), false).unwrap();
    let dataset = LabelStore::crdt_dataset(&DatasetId([6; 32]), 3, 1_000_000);
    assert!(dataset.layout.shard_count() >= 64);
    let (mut store, _) = LabelStore::open(&home, dataset).unwrap();
    let peers: Vec<Identity> = (0..4).map(|_| Identity::generate().unwrap()).collect();
    let mut chains = std::collections::HashMap::new();
    let batch: Vec<SignedAnnotation> = (0..64u8)
        .map(|i| {
            let peer = usize::from(i) % 4;
            let shard = dataset.layout.shard_of(&SampleId([i * 4; 32]));
            let seq = chains.entry((peer, shard)).or_insert(0);
            *seq += 1;
            label(&peers[peer], &dataset, i * 4, 1, *seq)
        })
        .collect();
    let before = durable::data_syncs();
    let outcomes = store.record_batch(&batch).unwrap();
    assert!(outcomes.iter().all(|o| matches!(o, Ok(true))));
    assert_eq!(durable::data_syncs() - before, 1, "one fsync for the batch");
    drop(store);
    // A power cut now keeps every record of the batch: the log alone holds them.
    durable::crash_image(&home.root().join("labels"));
    let (mut store, _) = LabelStore::open(&home, dataset).unwrap();
    assert_eq!(samples(&mut store).len(), 64);
}

/// A home written before author chains: its record log holds version-1 records ("SLr1" entries
/// of 177 bytes) and its shard files documents of batched changes. The first open moves them to
/// `v1/`, signs this node's own labels again into its chains (same answers and times, each slot
/// once), and keeps others' readable; nothing is lost, and a second open does nothing more.
#[test]
fn a_home_from_before_chains_keeps_every_label() {
    let dir = tempfile::tempdir().unwrap();
    let (home, me) = Home::init(&dir.path().join("home"), false).unwrap();
    let other = Identity::from_secret_bytes([9; 32]);
    let dataset = LabelStore::crdt_dataset(&DatasetId([3; 32]), 3, 10);
    let v1 = |id: &Identity, sample: u8, time_ms: u64, value: u16| {
        let a = Annotation {
            dataset: dataset.id,
            sample: SampleId([sample; 32]),
            annotator: id.public_key(),
            seq: 0,
            time_ms,
            value: Value::Label(value),
            suggestion: None,
        };
        SignedAnnotation::sign(a, id.signing_key()).unwrap()
    };
    // My label of 1, of 2 then changed, and another annotator's of 3.
    let old = [
        v1(&me, 1, 100, 0),
        v1(&me, 2, 100, 1),
        v1(&me, 2, 200, 2),
        v1(&other, 3, 150, 1),
    ];
    let folder = labels_dir(&home, &dataset);
    fs::create_dir_all(&folder).unwrap();
    let mut log = Vec::new();
    for r in &old {
        let bytes = r.to_bytes();
        assert_eq!(bytes.len(), 177);
        log.extend_from_slice(b"SLr1");
        log.extend_from_slice(&blake3::hash(&bytes).as_bytes()[..8]);
        log.extend_from_slice(&bytes);
    }
    fs::write(folder.join("records.log"), &log).unwrap();
    fs::write(
        folder.join("0000.am"),
        b"an automerge document of batched changes",
    )
    .unwrap();

    let (mut store, recovery) = LabelStore::open(&home, dataset).unwrap();
    assert_eq!(recovery.migrated, 2, "my two slots");
    assert!(recovery.damaged.is_empty(), "{:?}", recovery.damaged);
    let read = store.read();
    let seen: Vec<(u8, u32, u64, Value)> = read
        .annotations
        .iter()
        .map(|s| {
            let a = s.annotation();
            (a.sample.0[0], a.seq, a.time_ms, a.value)
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (1, 1, 100, Value::Label(0)),
            (2, 2, 200, Value::Label(2)),
            (3, 0, 150, Value::Label(1)),
        ],
        "mine in my chain with their old answers and times, the other's as it was"
    );
    assert!(read.annotations.iter().all(SignedAnnotation::verify));
    // The old files kept as they were, beside the new ones.
    assert_eq!(fs::read(folder.join("v1/records.log")).unwrap(), log);
    assert!(folder.join("v1/0000.am").exists());
    drop(store);
    let (mut store, again) = LabelStore::open(&home, dataset).unwrap();
    assert_eq!(again.migrated, 0);
    assert_eq!(store.read(), read);
    // The other annotator's chain record of the same slot, once it arrives, takes the place of
    // its version-1 label.
    let chained = {
        let a = Annotation {
            seq: 1,
            time_ms: 300,
            ..*v1(&other, 3, 300, 2).annotation()
        };
        SignedAnnotation::sign(a, other.signing_key()).unwrap()
    };
    store.record(&chained).unwrap();
    let now = store.read();
    assert_eq!(now.annotations.len(), 3);
    assert!(now.annotations.contains(&chained));
}

/// Audit 2026-12-04, N4c: records of banned keys stayed stored (and served) for good, since they
/// shared changes with everyone's. Each annotator's records now form a chain of their own, so
/// when the owner bans a key its records leave the record log and the shard files, and nobody
/// else's record moves.
#[test]
fn a_banned_keys_records_leave_the_disk_and_nobody_elses_do() {
    let dir = tempfile::tempdir().unwrap();
    let (home, me) = Home::init(&dir.path().join("home"), false).unwrap();
    let spammer = Identity::from_secret_bytes([8; 32]);
    let dataset = LabelStore::crdt_dataset(&DatasetId([2; 32]), 3, 10);
    let (mut store, _) = LabelStore::open(&home, dataset).unwrap();
    for sample in 0..5 {
        record(&mut store, &me, sample, 1).unwrap();
    }
    for sample in 0..50 {
        record(&mut store, &spammer, sample, 0).unwrap();
    }
    let log = labels_dir(&home, &dataset).join("records.log");
    assert_eq!(fs::metadata(&log).unwrap().len(), 55 * LOG_ENTRY_BYTES);
    let mine = store.read().annotations.len();
    assert_eq!(mine, 55);
    let mut policy = swarmlabel_crdt::policy::Policy::open(dataset.id);
    policy.banned.insert(spammer.public_key(), "spam".into());
    store.replica_mut().set_policy(Some(Arc::new(policy)));
    assert_eq!(store.drop_not_admitted().unwrap(), 50);
    assert_eq!(fs::metadata(&log).unwrap().len(), 5 * LOG_ENTRY_BYTES);
    assert_eq!(samples(&mut store), [0, 1, 2, 3, 4]);
    drop(store);
    // Gone for good, policy or not, and the files left behind load whole.
    let (mut store, recovery) = LabelStore::open(&home, dataset).unwrap();
    assert!(recovery.damaged.is_empty(), "{:?}", recovery.damaged);
    let read = store.read();
    assert_eq!(read.annotations.len(), 5);
    assert!(
        read.annotations
            .iter()
            .all(|a| a.annotation().annotator == me.public_key())
    );
}
