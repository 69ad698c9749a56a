//! The targets and their seeds.

use swarmlabel_active_learning::model::{Model, ModelSpec};
use swarmlabel_crdt::policy::{Policy, SignedPolicy};
use swarmlabel_crdt::registry::{
    Architecture, ModelUpdate, Registry, SignedUpdate, Validation, WeightsHash,
};
use swarmlabel_crdt::{
    Annotation, AnnotatorKey, Dataset, DatasetId, Replica, SampleId, ShardId, ShardLayout,
    SignedAnnotation, Signer as _, Value,
};
use swarmlabel_net::swarm::announce::Announcement;
use swarmlabel_net::swarm::codec::Frame as _;
use swarmlabel_net::swarm::{blob, replication};
use swarmlabel_node::labels::{gossip, wire as labels_wire};
use swarmlabel_node::models::{weights, wire as models_wire};
use swarmlabel_node::policy::wire as policy_wire;
use swarmlabel_node::replicate::Wire;
use swarmlabel_store::Identity;
use swarmlabel_store::dataset::manifest::{
    MediaType, Page, PageRef, Root, SampleEntry, SignedRoot, Task,
};
use swarmlabel_store::store::BlobId;

use super::Target;

/// The dataset of the label targets: 4 labels, 8 shards.
fn dataset() -> Dataset {
    Dataset {
        id: DatasetId([0x5a; 32]),
        label_count: 4,
        layout: ShardLayout::for_sample_count(16_000),
    }
}

fn key(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

/// A replica holding three annotators' chains over 24 samples (some labelled twice).
fn source() -> Replica {
    let mut r = Replica::new(dataset());
    for who in 1..=3u8 {
        for i in 0..24u32 {
            let sample = SampleId(*blake3::hash(&i.to_le_bytes()).as_bytes());
            let annotator = AnnotatorKey(key(who).public_key());
            for round in 0..=u32::from(i % 5 == 0) {
                let a = Annotation {
                    dataset: dataset().id,
                    sample,
                    annotator,
                    seq: r.next_seq(&annotator, &sample),
                    time_ms: u64::from(i * 10 + round),
                    value: Value::Label(((i + round) % 4) as u16),
                    suggestion: None,
                };
                if let Ok(signed) = SignedAnnotation::sign(a, &key(who)) {
                    let _ = r.record(&signed);
                }
            }
        }
    }
    r.commit();
    r
}

/// Takes `records` as a replica takes a peer's: then everything it holds must verify, and a
/// fresh replica pulling from it must end with the same digests.
fn take(records: &[SignedAnnotation]) {
    let mut r = Replica::new(dataset());
    for record in records {
        let _ = r.record(record);
    }
    r.commit();
    check(&mut r);
}

/// The invariants of any replica: what it reads verifies, no stored value is rejected (only
/// valid records are ever taken), and a copy pulled from it is equal.
fn check(r: &mut Replica) {
    let read = r.read();
    assert_eq!(read.rejected.total(), 0, "a replica holds an invalid value");
    assert!(
        read.annotations.iter().all(SignedAnnotation::verify),
        "a replica holds a record that does not verify"
    );
    let mut copy = Replica::new(dataset());
    for shard in dataset().layout.shards() {
        loop {
            let page = r.missing(shard, &copy.tips(shard), 64);
            for record in &page.records {
                assert!(
                    copy.record(record).is_ok(),
                    "a record served in chain order is refused"
                );
            }
            copy.commit();
            if !page.more {
                break;
            }
        }
        assert_eq!(copy.digest(shard), r.digest(shard), "a pulled copy differs");
    }
}

pub(crate) fn labels_request(data: &[u8]) {
    if let Ok(request) = labels_wire::Request::decode(data) {
        let again = request.encode().map(|b| labels_wire::Request::decode(&b));
        assert!(
            matches!(again, Ok(Ok(ref r)) if *r == request),
            "a labels request does not round-trip"
        );
    }
}

pub(crate) fn labels_page(data: &[u8]) {
    if let Ok(labels_wire::Response::Records { records, .. }) = labels_wire::Response::decode(data)
    {
        take(&records);
    }
}

pub(crate) fn labels_gossip(data: &[u8]) {
    if let Ok(records) = gossip::decode(data) {
        take(&records);
    }
}

pub(crate) fn shard_file(data: &[u8]) {
    let mut r = Replica::new(dataset());
    let _ = r.load_shard(ShardId(0), data);
    // What loaded of a damaged file is whole: it reads, and serves a copy equal to it.
    let read = r.read();
    assert!(read.annotations.iter().all(SignedAnnotation::verify));
    let mut copy = Replica::new(dataset());
    let page = r.missing(ShardId(0), &[], usize::MAX);
    for record in &page.records {
        let _ = copy.record(record);
    }
    assert_eq!(copy.digest(ShardId(0)), r.digest(ShardId(0)));
}

pub(crate) fn models_wire(data: &[u8]) {
    let mut registry = Registry::new(DatasetId([0x5a; 32]));
    let records = match (
        models_wire::Request::decode(data),
        models_wire::Response::decode(data),
    ) {
        (Ok(models_wire::Request::Push { records, .. }), _)
        | (_, Ok(models_wire::Response::Records(records))) => records,
        _ => Vec::new(),
    };
    for bytes in records {
        if let Ok(update) = SignedUpdate::from_bytes(&bytes) {
            assert_eq!(
                update.to_bytes(),
                bytes,
                "a signed update re-encodes differently"
            );
            let _ = registry.insert(update);
        }
    }
    if let Ok(update) = SignedUpdate::from_bytes(data) {
        let _ = registry.insert(update);
    }
}

pub(crate) fn policy(data: &[u8]) {
    if let Ok(signed) = SignedPolicy::from_bytes(data) {
        assert_eq!(
            signed.to_bytes(),
            data,
            "a signed policy re-encodes differently"
        );
        let _ = signed.verify(DatasetId([0x5a; 32]), &AnnotatorKey(key(7).public_key()));
    }
    let _ = policy_wire::Request::decode(data);
    let _ = policy_wire::Response::decode(data);
}

fn root(pages: Vec<PageRef>) -> Root {
    Root {
        name: "n".into(),
        description: "d".into(),
        instructions: String::new(),
        task: Task::TabularClassification {
            features: vec!["a".into(), "b".into()],
        },
        labels: vec!["x".into(), "y".into()],
        owner: Identity::from_secret_bytes([4; 32]).public_key(),
        created_at_ms: 5,
        sample_count: pages.iter().map(|p| u64::from(p.samples)).sum(),
        gold_count: 0,
        redundancy: 1,
        total_bytes: 0,
        pages,
    }
}

pub(crate) fn manifest(data: &[u8]) {
    if let Ok(signed) = SignedRoot::decode(data) {
        assert_eq!(signed.bytes(), data, "a signed root re-encodes differently");
    }
    let _ = Root::decode(data);
    let page_root = root(vec![PageRef {
        id: BlobId::of(data),
        samples: 2,
    }]);
    if let Ok(page) = Page::decode(data, &page_root, 0) {
        assert!(page.samples.iter().all(|s| s.gold.is_none_or(|g| g < 2)));
    }
    let _ = Announcement::decode(data);
}

pub(crate) fn frames(data: &[u8]) {
    let _ = replication::Request::from_frame(data.to_vec());
    let _ = replication::Response::from_frame(data.to_vec());
    let _ = blob::decode_request(data);
    let _ = blob::Response::from_frame(data.to_vec());
}

pub(crate) fn weights(data: &[u8]) {
    let _ = weights::decode(data);
    let _ = Model::from_safetensors_bytes(data);
}

/// Valid inputs of `target`'s format, for mutators to start from.
pub fn seeds(target: Target) -> Vec<Vec<u8>> {
    match target {
        Target::LabelsRequest => labels_request_seeds(),
        Target::LabelsPage => labels_page_seeds(),
        Target::LabelsGossip => labels_page_seeds()
            .iter()
            .filter_map(|page| match labels_wire::Response::decode(page) {
                Ok(labels_wire::Response::Records { records, .. }) => {
                    gossip::encode(&records[..records.len().min(gossip::MAX_RECORDS)])
                }
                _ => None,
            })
            .collect(),
        Target::ShardFile => {
            let mut r = source();
            let mut bytes = r.save_shard(ShardId(0));
            let base = bytes.clone();
            let extra = Annotation {
                dataset: dataset().id,
                sample: SampleId([0; 32]),
                annotator: AnnotatorKey(key(9).public_key()),
                seq: 1,
                time_ms: 1,
                value: Value::Skip,
                suggestion: None,
            };
            if let Ok(signed) = SignedAnnotation::sign(extra, &key(9)) {
                let _ = r.record(&signed);
            }
            bytes.extend(r.save_shard_incremental(ShardId(0)));
            vec![base, bytes]
        }
        Target::ModelsWire => models_seeds(),
        Target::Policy => {
            let mut policy = Policy::open(DatasetId([0x5a; 32]));
            policy
                .banned
                .insert(AnnotatorKey(key(3).public_key()), "spam".into());
            let signed = SignedPolicy::sign(policy, &key(7)).map(|s| s.to_bytes());
            let request = policy_wire::Request {
                dataset: DatasetId([0x5a; 32]),
                version: 3,
                held: [1; 32],
            }
            .encode();
            [signed.ok(), request.ok()].into_iter().flatten().collect()
        }
        Target::Manifest => {
            let signed = SignedRoot::sign(
                root(vec![PageRef {
                    id: BlobId([1; 32]),
                    samples: 2,
                }]),
                &Identity::from_secret_bytes([4; 32]),
            );
            let page = Page {
                index: 0,
                samples: vec![
                    SampleEntry {
                        id: BlobId([2; 32]),
                        size: 16,
                        media_type: MediaType::Row,
                        gold: Some(1),
                    },
                    SampleEntry {
                        id: BlobId([3; 32]),
                        size: 16,
                        media_type: MediaType::Row,
                        gold: None,
                    },
                ],
            };
            let announcement = Announcement {
                sequence: 1,
                root: signed.clone(),
            }
            .encode();
            vec![signed.bytes().to_vec(), page.encode(), announcement]
        }
        Target::Frames => {
            let request = replication::Request {
                kind: 1,
                body: vec![1; 33],
            };
            [request.to_frame().ok(), Some(vec![0, 1, 2, 3])]
                .into_iter()
                .flatten()
                .collect()
        }
        Target::Weights => [
            ModelSpec::linear(4, 3),
            ModelSpec::mlp(4, vec![8], 0.1, 3),
            ModelSpec::cnn(1, 8, 8, 3),
        ]
        .into_iter()
        .filter_map(|spec| Model::new(spec, 1).ok()?.to_safetensors_bytes().ok())
        .collect(),
    }
}

fn labels_request_seeds() -> Vec<Vec<u8>> {
    let mut r = source();
    let shard = ShardId(0);
    [
        labels_wire::Request::Summary {
            dataset: dataset().id,
        },
        labels_wire::Request::Pull {
            dataset: dataset().id,
            shard: shard.0,
            range: labels_wire::Range::ALL,
            tips: r.tips(shard),
        },
    ]
    .iter()
    .filter_map(|q| q.encode().ok())
    .collect()
}

fn labels_page_seeds() -> Vec<Vec<u8>> {
    let mut r = source();
    let mut out = Vec::new();
    for shard in [ShardId(0), ShardId(3)] {
        let full = r.missing(shard, &[], 4096);
        let tips = r.tips(shard);
        let partial = r.missing(shard, &tips[..1], 8);
        for (records, more) in [(full.records, false), (partial.records, true)] {
            if let Ok(bytes) = (labels_wire::Response::Records { records, more }).encode() {
                out.push(bytes);
            }
        }
    }
    out
}

fn models_seeds() -> Vec<Vec<u8>> {
    let update = |peer: u8, version: u64| {
        let u = ModelUpdate {
            dataset: DatasetId([0x5a; 32]),
            peer: AnnotatorKey(key(peer).public_key()),
            version,
            labels_trained: 10,
            architecture: Architecture::new([3; 32], "linear").ok()?,
            weights_hash: WeightsHash([peer; 32]),
            weights_bytes: 100,
            validation: Validation::from_counts(1, 2),
        };
        SignedUpdate::sign(u, &key(peer)).ok().map(|s| s.to_bytes())
    };
    let records: Vec<Vec<u8>> = [update(1, 1), update(2, 3)].into_iter().flatten().collect();
    let push = models_wire::Request::Push {
        dataset: DatasetId([0x5a; 32]),
        records: records.clone(),
    }
    .encode();
    let answer = models_wire::Response::Records(records.clone()).encode();
    let pull = models_wire::Request::Pull {
        dataset: DatasetId([0x5a; 32]),
        digest: [1; 32],
    }
    .encode();
    [push.ok(), answer.ok(), pull.ok()]
        .into_iter()
        .flatten()
        .chain(records)
        .collect()
}
