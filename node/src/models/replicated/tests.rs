//! Why 4 of issue 14 (disk and memory by models): one registry push inserted every fresh key it
//! carried (4,096 a push), and superseded weights stayed on disk for good. The registries are
//! driven by hand here (no network): a push merged, updates published, the work they spawn run.

use std::collections::HashSet;
use std::sync::Arc;

use swarmlabel_crdt::policy::{Admission, Policy};
use swarmlabel_crdt::registry::{Architecture, ModelUpdate, Validation};

use super::*;

const DATASET: DatasetId = DatasetId([0xd5; 32]);

fn registries(home: &Home, config: Config) -> Registries {
    let identity = home.identity().unwrap();
    Registries::new(
        home.clone(),
        identity,
        None,
        config,
        7,
        Arc::new(Stats::default()),
    )
}

/// An update of a fresh key, signed by it.
fn update_of(seed: u32) -> SignedUpdate {
    let mut secret = [0u8; 32];
    secret[..4].copy_from_slice(&seed.to_le_bytes());
    secret[31] = 1;
    let identity = Identity::from_secret_bytes(secret);
    let update = ModelUpdate {
        dataset: DATASET,
        peer: identity.public_key(),
        version: 1,
        labels_trained: 10,
        architecture: Architecture::new([3; 32], "linear").unwrap(),
        weights_hash: WeightsHash(*blake3::hash(&seed.to_le_bytes()).as_bytes()),
        weights_bytes: 1_000,
        validation: Validation::from_counts(1, 2),
    };
    SignedUpdate::sign(update, identity.signing_key()).unwrap()
}

fn push_of(seeds: std::ops::Range<u32>) -> Registry {
    let mut registry = Registry::new(DATASET);
    for seed in seeds {
        registry.insert(update_of(seed)).unwrap();
    }
    registry
}

fn keys(r: &Registries) -> HashSet<AnnotatorKey> {
    r.held[&DATASET]
        .registry
        .entries()
        .map(|(k, _)| *k)
        .collect()
}

#[test]
fn a_push_of_fresh_keys_fills_the_registry_only_up_to_its_cap() {
    let dir = tempfile::tempdir().unwrap();
    let (home, _) = Home::init(&dir.path().join("home"), false).unwrap();
    let config = Config {
        max_entries: 64,
        ..Config::default()
    };
    let mut r = registries(&home, config);
    let mut cx = Context::new();
    r.open(DATASET, &mut cx).unwrap();
    let peer = PeerId::random();
    r.absorb(DATASET, &push_of(0..10), peer, &mut cx);
    let first = keys(&r);
    assert_eq!(first.len(), 10);

    // One push of 4,096 fresh keys: the registry stops at the cap, the first ten stay.
    r.absorb(DATASET, &push_of(10..4_106), peer, &mut cx);
    let after = keys(&r);
    assert_eq!(after.len(), 64);
    assert!(first.is_subset(&after), "the peers held before stay");
    assert_eq!(r.stats.entries_refused.get(), 4_096 - 54);
    // What is saved is what is held: a restart does not bring the rest back. (A save within a
    // second of the last one waits for its timer: here it fires at once.)
    assert!(
        !cx.take_spawned().is_empty(),
        "a deferred save is scheduled"
    );
    r.event(Event::SaveDue { dataset: DATASET }, &mut cx);
    let (saved, _) = store::load(&home, DATASET).unwrap();
    assert_eq!(saved.len(), 64);

    // Gossip of one more fresh key is not stored, nor forwarded.
    let gossip = Gossip {
        peer,
        author: None,
        dataset: DATASET,
        data: update_of(5_000).to_bytes(),
    };
    assert_eq!(r.judge(gossip, &mut cx), Verdict::Ignore);
    assert_eq!(keys(&r), after);
}

#[test]
fn peers_the_owner_does_not_admit_are_not_kept() {
    let mut admitted: Vec<AnnotatorKey> = (0..3).map(|s| update_of(s).update().peer).collect();
    admitted.sort_unstable(); // as a decoded policy holds them
    let mut registry = push_of(0..8);
    let policy = Policy {
        admission: Admission::Allowlist(admitted.clone()),
        ..Policy::open(DATASET)
    };
    let removed = bounds::bound(&mut registry, &HashSet::new(), Some(&policy), 1_024);
    assert_eq!(removed, 5);
    let kept: Vec<AnnotatorKey> = registry.entries().map(|(k, _)| *k).collect();
    assert_eq!(kept, admitted);
}

#[tokio::test]
async fn weights_an_update_no_longer_names_are_deleted_unless_a_dataset_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let (home, owner) = Home::init(&dir.path().join("home"), false).unwrap();
    // A listed dataset: its sample's bytes are published as weights below (a peer can announce
    // any hash it likes), and must outlive the update that named them.
    let csv = dir.path().join("d.csv");
    std::fs::write(&csv, "x\n1\n").unwrap();
    let opts = swarmlabel_formats::import::Options::new("d", vec!["a".into()]);
    let progress = swarmlabel_store::progress::NoProgress;
    swarmlabel_formats::import::import(&home, &owner, &csv, &opts, &progress).unwrap();
    let catalog = swarmlabel_store::Catalog::of(&home);
    let listed = catalog.list().unwrap().remove(0);
    let sample = catalog.page(&listed, 0).unwrap().samples.remove(0);

    let mut r = registries(&home, Config::default());
    let mut cx = Context::new();
    r.open(DATASET, &mut cx).unwrap();
    let mut publish = |id: BlobId, size: u64, cx: &mut Context<Registries>| {
        let architecture = Architecture::new([3; 32], "linear").unwrap();
        let update = (id, size, 5, architecture, Validation::from_counts(1, 2));
        r.publish(DATASET, update, cx).unwrap();
    };
    let put = |bytes: &[u8]| home.blobs().put(bytes).unwrap().0;
    publish(sample.id, sample.size, &mut cx);
    let v2 = put(b"weights of version two");
    publish(v2, 22, &mut cx);
    let v3 = put(b"weights of version three");
    publish(v3, 24, &mut cx);

    // The service's side of the work: each finished removal goes back to it, which starts the
    // next with what waited meanwhile (one removal at a time).
    let mut freed = 0;
    let mut works = cx.take_spawned();
    while !works.is_empty() {
        for work in works {
            let event = work.await;
            if let Event::Collected { removed } = &event {
                freed += removed.as_ref().unwrap();
            }
            r.event(event, &mut cx);
        }
        works = cx.take_spawned();
    }
    let present = |id: &BlobId| home.blobs().check(id).is_ok();
    assert!(!present(&v2), "superseded weights are deleted");
    assert!(present(&v3), "the weights in force stay");
    assert!(present(&sample.id), "a dataset's sample stays");
    assert_eq!(freed, 22);
}
