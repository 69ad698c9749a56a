//! The sync path fuzzed with mutated *real* automerge messages (Build 6 of issue 14): messages
//! that one replica really sends another (a whole-document first sync, whose columns are
//! DEFLATE-compressed, and incremental change chunks) are mutated byte by byte, cut, spliced and
//! given lying lengths, then received by a fresh replica. Random bytes would stop at the first
//! magic check; these get past the headers into automerge's parsers, the inflate bound and the
//! screen. Every outcome must be an error or a screened apply: no panic, and nothing invalid is
//! ever readable.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use ed25519_dalek::SigningKey;
use rand::SeedableRng as _;
use swarmlabel_crdt::sync::{Limits, State};
use swarmlabel_crdt::validate::Dataset;
use swarmlabel_crdt::{
    Annotation, AnnotatorKey, DatasetId, Replica, SampleId, ShardId, ShardLayout, SignedAnnotation,
    Value,
};

fn dataset() -> Dataset {
    Dataset {
        id: DatasetId([5; 32]),
        label_count: 4,
        layout: ShardLayout::new(0).unwrap(),
    }
}

fn label(key: &SigningKey, sample: u32, time_ms: u64) -> SignedAnnotation {
    let annotation = Annotation {
        dataset: dataset().id,
        sample: SampleId(*blake3::hash(&sample.to_le_bytes()).as_bytes()),
        annotator: AnnotatorKey(key.verifying_key().to_bytes()),
        time_ms,
        value: Value::Label((sample % 4) as u16),
        suggestion: None,
    };
    SignedAnnotation::sign(annotation, key).unwrap()
}

/// The messages `from` sends a newcomer until it has nothing more to say.
fn real_messages(from: &mut Replica) -> Vec<Vec<u8>> {
    let shard = ShardId(0);
    let mut newcomer = Replica::new(dataset(), &[9; 16]).unwrap();
    let (mut sa, mut sb) = (State::new(), State::new());
    let mut out = Vec::new();
    for _ in 0..20 {
        let m1 = from.generate_sync_message(shard, &mut sa);
        if let Some(m) = &m1 {
            out.push(m.clone());
            newcomer.receive_sync_message(shard, &mut sb, m).unwrap();
        }
        let m2 = newcomer.generate_sync_message(shard, &mut sb);
        if let Some(m) = &m2 {
            from.receive_sync_message(shard, &mut sa, m).unwrap();
        }
        if m1.is_none() && m2.is_none() {
            break;
        }
    }
    out
}

fn mutate(message: &[u8], rng: &mut impl rand::Rng) -> Vec<u8> {
    let mut m = message.to_vec();
    if m.is_empty() {
        return m;
    }
    match rng.random_range(0..5) {
        // Flip a few bits.
        0 => {
            for _ in 0..rng.random_range(1..4) {
                let i = rng.random_range(0..m.len());
                m[i] ^= 1 << rng.random_range(0..8);
            }
        }
        // Cut it.
        1 => m.truncate(rng.random_range(0..m.len())),
        // Duplicate a slice into another place.
        2 => {
            let a = rng.random_range(0..m.len());
            let b = rng.random_range(a..m.len().min(a + 64) + 1).min(m.len());
            let slice = m[a..b].to_vec();
            let at = rng.random_range(0..m.len());
            m.splice(at..at, slice);
        }
        // A lying length: an LEB128 byte with the continuation bit, or a huge value.
        3 => {
            let i = rng.random_range(0..m.len());
            m[i] = 0xff;
            if i + 1 < m.len() {
                m[i + 1] = 0x7f;
            }
        }
        // Overwrite a run with random bytes.
        _ => {
            let a = rng.random_range(0..m.len());
            let b = (a + rng.random_range(1..16)).min(m.len());
            rng.fill(&mut m[a..b]);
        }
    }
    m
}

#[test]
fn mutated_real_sync_messages_are_refused_or_screened_never_crash() {
    let key = SigningKey::from_bytes(&[3; 32]);
    let mut source = Replica::new(dataset(), &[1; 16]).unwrap();
    // Enough records that the first sync is a compressed whole document, and later ones that
    // travel as change chunks.
    for i in 0..300 {
        source.record(&label(&key, i, 1_000)).unwrap();
    }
    source.commit();
    let mut messages = real_messages(&mut source);
    for i in 300..310 {
        source.record(&label(&key, i, 2_000)).unwrap();
        source.commit();
    }
    messages.extend(real_messages(&mut source));
    assert!(messages.len() >= 2);

    let limits = Limits {
        max_message_bytes: 1 << 20,
        max_inflated_bytes: 4 << 20,
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(14);
    let (mut applied, mut refused) = (0, 0);
    for round in 0..3_000 {
        let original = &messages[round % messages.len()];
        let bytes = mutate(original, &mut rng);
        let mut victim = Replica::new(dataset(), &[2; 16])
            .unwrap()
            .with_limits(limits);
        let mut state = State::new();
        match victim.receive_sync_message(ShardId(0), &mut state, &bytes) {
            Ok(_) => applied += 1,
            Err(_) => refused += 1,
        }
        // Whatever got in is readable and valid: every annotation read verifies and is one the
        // source signed.
        let read = victim.read();
        for a in &read.annotations {
            assert!(a.verify());
            assert_eq!(
                a.annotation().annotator,
                AnnotatorKey(key.verifying_key().to_bytes())
            );
        }
    }
    eprintln!("{applied} mutated messages applied (screened), {refused} refused");
    assert!(refused > 0 && applied + refused == 3_000);
}
