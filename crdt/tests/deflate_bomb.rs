//! A peer's sync message carrying a DEFLATE bomb (a compressed change chunk of 64 KiB that
//! inflates to 64 MiB) is refused before anything inflates it: the peak resident memory while
//! receiving it (Linux `VmHWM`, reset before) stays far below what it would inflate to. automerge 0.12 alone inflates such a
//! chunk into one buffer before any check (this test failed so before the bound).

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::io::Write as _;

use ed25519_dalek::SigningKey;
use swarmlabel_crdt::sync::{Limits, Refusal, State, SyncError};
use swarmlabel_crdt::validate::Dataset;
use swarmlabel_crdt::{
    Annotation, AnnotatorKey, DatasetId, Replica, SampleId, ShardLayout, SignedAnnotation, Value,
};

/// A field of /proc/self/status in bytes.
fn status_bytes(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// Resets the peak resident set size to the current one (Linux: `clear_refs` 5) and returns it.
fn reset_peak() -> usize {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    status_bytes("VmRSS:")
}

const INFLATED: usize = 64 << 20;

fn compressed_change_chunk(data: &[u8]) -> Vec<u8> {
    let mut chunk = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 2];
    let mut len = data.len() as u64;
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            chunk.push(byte);
            break;
        }
        chunk.push(byte | 0x80);
    }
    chunk.extend_from_slice(data);
    chunk
}

#[test]
fn a_deflate_bomb_in_a_sync_message_is_refused_before_it_is_inflated() {
    let dataset = Dataset {
        id: DatasetId([3; 32]),
        label_count: 2,
        layout: ShardLayout::new(0).unwrap(),
    };
    let key = SigningKey::from_bytes(&[7; 32]);
    let mut honest = Replica::new(dataset, &[1; 16]).unwrap();
    let signed = SignedAnnotation::sign(
        Annotation {
            dataset: dataset.id,
            sample: SampleId([1; 32]),
            annotator: AnnotatorKey(key.verifying_key().to_bytes()),
            time_ms: 1,
            value: Value::Label(1),
            suggestion: None,
        },
        &key,
    )
    .unwrap();
    let shard = honest.record(&signed).unwrap();
    let real = honest
        .generate_sync_message(shard, &mut State::new())
        .unwrap();

    // The hostile peer's message: a real one whose changes are the bomb.
    let mut zeros = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    zeros.write_all(&vec![0; INFLATED]).unwrap();
    let bomb = compressed_change_chunk(&zeros.finish().unwrap());
    assert!(
        bomb.len() < INFLATED / 256,
        "a bomb of {} bytes",
        bomb.len()
    );
    let mut message = automerge::sync::Message::decode(&real).unwrap();
    message.changes = vec![bomb].into();
    let bytes = message.encode();

    let limits = Limits {
        max_inflated_bytes: 1 << 20,
        ..Limits::default()
    };
    let mut victim = Replica::new(dataset, &[2; 16]).unwrap().with_limits(limits);
    let mut state = State::new();
    let before = reset_peak();
    let result = victim.receive_sync_message(shard, &mut state, &bytes);
    let peak = status_bytes("VmHWM:").saturating_sub(before);

    assert!(
        peak < 8 << 20,
        "receiving the bomb grew the resident set by {peak} bytes at its peak"
    );
    assert!(
        matches!(
            result,
            Err(SyncError::Refused {
                refusal: Refusal::Inflated { max },
                ..
            }) if max == 1 << 20
        ),
        "{result:?}"
    );
    assert!(victim.read().annotations.is_empty());
}
