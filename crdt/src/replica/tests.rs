//! Unit tests of a replica: recording, conflicts, forgeries, sync screening, save and load.

use automerge::transaction::Transactable as _;
use automerge::{ROOT, ScalarValue};

use super::*;
use crate::annotation::{Annotation, DatasetId, SampleId, Signer as _, Value};
use crate::layout::slot_key;
use crate::sync::{Limits, Refusal, State};
use crate::testing::{annotation, annotator, dataset, key, replica, sample, signed};
use crate::validate::Rejections;

/// Writes `value` under `key` in the shard of `sample`, bypassing every check (what a hostile
/// peer's own automerge can do).
fn raw_put(r: &mut Replica, sample: &SampleId, key: &str, value: ScalarValue) {
    let shard = r.dataset.layout.shard_of(sample);
    let doc = &mut r.shards[usize::from(shard.0)].doc;
    let mut tx = doc.transaction();
    tx.put(ROOT, key, value).unwrap();
    tx.commit();
}

fn raw_record(r: &mut Replica, s: &SignedAnnotation) {
    let a = s.annotation();
    raw_put(r, &a.sample, &slot_key(&a.sample, &a.annotator), bytes(s));
}

fn bytes(s: &SignedAnnotation) -> ScalarValue {
    ScalarValue::Bytes(s.to_bytes().to_vec())
}

/// Runs a sync session on every shard until neither side has anything to say.
fn sync_all(a: &mut Replica, b: &mut Replica) -> Result<(), SyncError> {
    for shard in a.dataset.layout.shards() {
        let (mut sa, mut sb) = (State::new(), State::new());
        for _ in 0..50 {
            let m1 = a.generate_sync_message(shard, &mut sa);
            if let Some(m) = &m1 {
                b.receive_sync_message(shard, &mut sb, m)?;
            }
            let m2 = b.generate_sync_message(shard, &mut sb);
            if let Some(m) = &m2 {
                a.receive_sync_message(shard, &mut sa, m)?;
            }
            if m1.is_none() && m2.is_none() {
                break;
            }
        }
    }
    Ok(())
}

#[test]
fn records_commits_and_reads_back_and_a_later_label_replaces_an_earlier_one() {
    let mut r = replica(1);
    let first = signed(1, 0, 100, Value::Label(2));
    r.record(&first).unwrap();
    assert_eq!(r.pending(), 1);
    assert_eq!(r.get(&sample(0), &annotator(1)), Some(first));
    assert_eq!(r.commit(), 1);
    assert_eq!(r.read().annotations, vec![first]);

    let later = signed(1, 0, 200, Value::Skip);
    r.record(&later).unwrap();
    assert_eq!(r.read().annotations, vec![later]);
    // Not newer: refused, even if staged only.
    let older = signed(1, 0, 150, Value::Label(1));
    assert_eq!(
        r.record(&older),
        Err(RecordError::NotNewer {
            existing_ms: 200,
            offered_ms: 150
        })
    );
    // The same record again is a no-op.
    let heads = r.heads(r.dataset.layout.shard_of(&sample(0)));
    r.record(&later).unwrap();
    assert_eq!(r.commit(), 0);
    assert_eq!(r.heads(r.dataset.layout.shard_of(&sample(0))), heads);
}

#[test]
fn different_annotators_never_overwrite_each_other() {
    let (mut a, mut b) = (replica(1), replica(2));
    let by_1 = signed(1, 5, 100, Value::Label(1));
    let by_2 = signed(2, 5, 100, Value::Label(3));
    a.record(&by_1).unwrap();
    b.record(&by_2).unwrap();
    a.merge(&mut b).unwrap();
    b.merge(&mut a).unwrap();
    let mut expected = vec![by_1, by_2];
    expected.sort_by_key(|s| s.annotation().annotator);
    assert_eq!(a.read().annotations, expected);
    assert_eq!(b.read().annotations, expected);
    assert_eq!(a.read().conflicted_slots, 0);
}

#[test]
fn concurrent_writes_of_one_slot_resolve_to_the_latest_everywhere() {
    // The same annotator on two devices, offline, labels the same sample differently.
    let (mut a, mut b, mut c) = (replica(1), replica(2), replica(3));
    let early = signed(1, 7, 100, Value::Label(1));
    let late = signed(1, 7, 200, Value::Label(2));
    a.record(&late).unwrap();
    b.record(&early).unwrap();
    a.merge(&mut b).unwrap();
    c.merge(&mut b).unwrap();
    c.merge(&mut a).unwrap();
    for r in [&mut a, &mut c] {
        let read = r.read();
        assert_eq!(read.annotations, vec![late]);
        assert_eq!(read.conflicted_slots, 1);
        assert_eq!(read.rejected.total(), 0);
    }
    // Time ties break on the record bytes, the same way everywhere.
    let (mut d, mut e) = (replica(4), replica(5));
    let x = signed(1, 8, 300, Value::Label(0));
    let y = signed(1, 8, 300, Value::Label(3));
    d.record(&x).unwrap();
    e.record(&y).unwrap();
    d.merge(&mut e).unwrap();
    let winner = if x.to_bytes() > y.to_bytes() { x } else { y };
    assert_eq!(d.read().annotations, vec![winner]);
}

/// The four forgeries of the issue, a malformed value and one honest annotation.
fn forge_everything(attacker: &mut Replica) -> SignedAnnotation {
    let honest = signed(1, 0, 100, Value::Label(1));
    raw_record(attacker, &honest);
    // Bad signature: a valid annotation with one signature byte flipped.
    let mut sig = *signed(1, 1, 100, Value::Label(1)).signature();
    sig[0] ^= 1;
    raw_record(
        attacker,
        &SignedAnnotation::from_parts(annotation(1, 1, 100, Value::Label(1)), sig),
    );
    // Another's slot: the attacker's own valid annotation stored under annotator 1's slot.
    let own = signed(9, 2, 100, Value::Label(1));
    raw_put(
        attacker,
        &sample(2),
        &slot_key(&sample(2), &annotator(1)),
        bytes(&own),
    );
    // Unknown label: validly signed, label 4 of a 4-label set.
    raw_record(attacker, &signed(9, 3, 100, Value::Label(4)));
    // Wrong dataset: validly signed for another dataset.
    let other = Annotation {
        dataset: DatasetId([0xee; 32]),
        ..annotation(9, 4, 100, Value::Label(1))
    };
    raw_record(attacker, &SignedAnnotation::sign(other, &key(9)).unwrap());
    // Malformed: a string under a slot key, and bytes under a key that is not a slot key.
    raw_put(
        attacker,
        &sample(5),
        &slot_key(&sample(5), &annotator(9)),
        ScalarValue::Str("label: cat".into()),
    );
    raw_put(attacker, &sample(6), "not-a-slot", bytes(&honest));
    honest
}

#[test]
fn forged_annotations_are_ignored_and_counted_alike_on_every_replica() {
    let mut attacker = replica(9);
    let honest = forge_everything(&mut attacker);
    let expected = Rejections {
        malformed: 2,
        wrong_dataset: 1,
        wrong_slot: 1,
        unknown_label: 1,
        bad_signature: 1,
        ..Rejections::default()
    };
    let read = attacker.read();
    assert_eq!(read.annotations, vec![honest]);
    assert_eq!(read.rejected, expected);

    // Two replicas that got the same documents in different orders, mixed with their own data.
    let (mut b, mut c) = (replica(2), replica(3));
    let own = signed(2, 9, 100, Value::Unsure);
    b.record(&own).unwrap();
    let mut b_copy = replica(2);
    b_copy.record(&own).unwrap();
    b.merge(&mut attacker).unwrap();
    c.merge(&mut attacker).unwrap();
    c.merge(&mut b_copy).unwrap();
    let mut want = vec![honest, own];
    want.sort_by_key(|s| (s.annotation().sample, s.annotation().annotator));
    for r in [&mut b, &mut c] {
        let read = r.read();
        assert_eq!(read.annotations, want);
        assert_eq!(read.rejected, expected);
    }
}

#[test]
fn record_refuses_what_readers_would_ignore() {
    let mut r = replica(1);
    let mut sig = *signed(1, 1, 100, Value::Label(1)).signature();
    sig[5] ^= 0x40;
    let bad_sig = SignedAnnotation::from_parts(annotation(1, 1, 100, Value::Label(1)), sig);
    let unknown = signed(1, 1, 100, Value::Label(4));
    let wrong_ds = SignedAnnotation::sign(
        Annotation {
            dataset: DatasetId([0xee; 32]),
            ..annotation(1, 1, 100, Value::Label(1))
        },
        &key(1),
    )
    .unwrap();
    assert_eq!(
        r.record(&bad_sig),
        Err(RecordError::Invalid(Rejection::BadSignature))
    );
    assert_eq!(
        r.record(&unknown),
        Err(RecordError::Invalid(Rejection::UnknownLabel))
    );
    assert_eq!(
        r.record(&wrong_ds),
        Err(RecordError::Invalid(Rejection::WrongDataset))
    );
    assert_eq!(r.pending(), 0);
}

#[test]
fn a_forged_value_in_a_victims_slot_does_not_displace_the_victims_label() {
    let (mut victim, mut attacker) = (replica(1), replica(9));
    let label = signed(1, 3, 100, Value::Label(2));
    victim.record(&label).unwrap();
    // Concurrently, the attacker fills the victim's slot with its own (validly signed) record.
    let own = signed(9, 3, 500, Value::Label(0));
    raw_put(
        &mut attacker,
        &sample(3),
        &slot_key(&sample(3), &annotator(1)),
        bytes(&own),
    );
    victim.merge(&mut attacker).unwrap();
    let read = victim.read();
    assert_eq!(read.annotations, vec![label]);
    assert_eq!(read.rejected.wrong_slot, 1);
    assert_eq!(read.conflicted_slots, 1);
}

#[test]
fn sync_refuses_forged_changes_and_leaves_the_document_unchanged() {
    let mut honest = replica(1);
    honest.record(&signed(1, 0, 100, Value::Label(1))).unwrap();
    let before = honest.read();
    let heads: Vec<_> = dataset().layout.shards().map(|s| honest.heads(s)).collect();

    let mut attacker = replica(9);
    let own = signed(9, 2, 100, Value::Label(1));
    raw_put(
        &mut attacker,
        &sample(2),
        &slot_key(&sample(2), &annotator(1)),
        bytes(&own),
    );
    let err = sync_all(&mut honest, &mut attacker).unwrap_err();
    assert!(matches!(
        err,
        SyncError::Refused {
            refusal: Refusal::Invalid(Rejection::WrongSlot),
            ..
        }
    ));
    assert_eq!(honest.read(), before);
    let after: Vec<_> = dataset().layout.shards().map(|s| honest.heads(s)).collect();
    assert_eq!(after, heads);

    // A delete of someone's slot is not an annotation put.
    let mut deleter = replica(8);
    deleter.merge(&mut honest).unwrap();
    let target = slot_key(&sample(0), &annotator(1));
    let shard = dataset().layout.shard_of(&sample(0));
    let mut tx = deleter.shards[usize::from(shard.0)].doc.transaction();
    tx.delete(ROOT, target.as_str()).unwrap();
    tx.commit();
    assert!(deleter.read().annotations.is_empty());
    let err = sync_all(&mut honest, &mut deleter).unwrap_err();
    assert!(matches!(
        err,
        SyncError::Refused {
            refusal: Refusal::NotAnnotationPut,
            ..
        }
    ));
    assert_eq!(honest.read(), before);
}

#[test]
fn sync_refuses_a_replay_of_an_older_label_over_a_newer_one() {
    let mut victim = replica(1);
    let old = signed(1, 4, 100, Value::Label(1));
    let new = signed(1, 4, 200, Value::Label(2));
    victim.record(&old).unwrap();
    victim.commit();
    victim.record(&new).unwrap();
    let (mut attacker, mut honest) = (replica(9), replica(2));
    sync_all(&mut attacker, &mut victim).unwrap();
    sync_all(&mut honest, &mut victim).unwrap();
    // The attacker writes the old, validly signed record over the new one.
    raw_record(&mut attacker, &old);
    assert_eq!(attacker.read().annotations, vec![old]);
    let err = sync_all(&mut honest, &mut attacker).unwrap_err();
    assert!(matches!(
        err,
        SyncError::Refused {
            refusal: Refusal::Stale {
                kept_ms: 200,
                offered_ms: 100,
                ..
            },
            ..
        }
    ));
    assert_eq!(honest.read().annotations, vec![new]);
}

#[test]
fn sync_bounds_message_size_and_refuses_garbage() {
    let mut a = replica(1);
    for i in 0..20 {
        a.record(&signed(1, i, 100, Value::Label(1))).unwrap();
    }
    let shard = dataset().layout.shard_of(&sample(0));
    let mut b = replica(2).with_limits(Limits {
        max_message_bytes: 200,
        ..Limits::default()
    });
    let (mut sa, mut sb) = (State::new(), State::new());
    let first = a.generate_sync_message(shard, &mut sa).unwrap();
    b.receive_sync_message(shard, &mut sb, &first).unwrap();
    let reply = b.generate_sync_message(shard, &mut sb).unwrap();
    a.receive_sync_message(shard, &mut sa, &reply).unwrap();
    let with_changes = a.generate_sync_message(shard, &mut sa).unwrap();
    assert!(with_changes.len() > 200);
    assert!(matches!(
        b.receive_sync_message(shard, &mut sb, &with_changes),
        Err(SyncError::TooLarge { max: 200, .. })
    ));
    assert!(matches!(
        b.receive_sync_message(shard, &mut sb, b"\x42garbage"),
        Err(SyncError::Malformed { .. })
    ));
    assert!(matches!(
        b.receive_sync_message(ShardId(99), &mut sb, &first),
        Err(SyncError::UnknownShard(ShardId(99)))
    ));
    assert!(b.read().annotations.is_empty());
}

/// The shard holding the most of samples 0..n, to exercise one document.
fn busy_shard(n: u32) -> ShardId {
    let layout = dataset().layout;
    let mut counts = vec![0; layout.shard_count() as usize];
    for i in 0..n {
        counts[usize::from(layout.shard_of(&sample(i)).0)] += 1;
    }
    let best = (0..counts.len()).max_by_key(|&i| counts[i]).unwrap_or(0);
    ShardId(best as u16)
}

/// Records samples `range` of `shard` by annotator 1 at time `t`, then commits.
fn record_range(r: &mut Replica, shard: ShardId, range: std::ops::Range<u32>, t: u64) -> usize {
    let mut n = 0;
    for i in range {
        if dataset().layout.shard_of(&sample(i)) == shard {
            r.record(&signed(1, i, t, Value::Label((i % 4) as u16)))
                .unwrap();
            n += 1;
        }
    }
    r.commit();
    n
}

#[test]
fn full_and_incremental_saves_load_back() {
    let shard = busy_shard(40);
    let mut r = replica(1);
    record_range(&mut r, shard, 0..20, 100);
    let mut bytes = r.save_shard(shard);
    let base_len = bytes.len();
    record_range(&mut r, shard, 20..40, 100);
    let inc = r.save_shard_incremental(shard);
    assert!(!inc.is_empty() && inc.len() < base_len * 2);
    bytes.extend_from_slice(&inc);
    assert!(
        r.save_shard_incremental(shard).is_empty(),
        "nothing new to save"
    );

    let mut loaded = replica(2);
    let report = loaded.load_shard(shard, &bytes).unwrap();
    assert_eq!(report.chunks, 2);
    assert_eq!(loaded.read(), r.read());
    assert_eq!(loaded.heads(shard), r.heads(shard));
    // Right after a load an incremental save has nothing to re-emit.
    assert!(loaded.save_shard_incremental(shard).is_empty());
    loaded.record(&signed(2, 0, 300, Value::Skip)).unwrap();
    let after = loaded.save_shard_incremental(shard);
    assert!(!after.is_empty() && after.len() < base_len);
}

#[test]
fn damaged_bytes_keep_the_valid_prefix_and_say_what_was_lost() {
    let shard = busy_shard(60);
    let mut r = replica(1);
    record_range(&mut r, shard, 0..20, 100);
    let base = r.save_shard(shard);
    let n2 = record_range(&mut r, shard, 20..40, 100);
    let inc1 = r.save_shard_incremental(shard);
    record_range(&mut r, shard, 40..60, 100);
    let inc2 = r.save_shard_incremental(shard);
    let whole = [base.clone(), inc1.clone(), inc2.clone()].concat();
    let n1 = replica_from(&base, shard).read().annotations.len();

    // Cut off in the middle of the last increment.
    let cut = &whole[..whole.len() - inc2.len() / 2];
    let mut loaded = replica(2);
    match loaded.load_shard(shard, cut) {
        Err(LoadError::Damaged {
            kept_chunks,
            kept_bytes,
            lost_bytes,
            damaged_at,
            ..
        }) => {
            assert_eq!(kept_chunks, 2);
            assert_eq!(kept_bytes, base.len() + inc1.len());
            assert_eq!(lost_bytes, cut.len() - kept_bytes);
            assert_eq!(damaged_at, kept_bytes);
        }
        other => panic!("expected a damaged load, got {other:?}"),
    }
    assert_eq!(loaded.read().annotations.len(), n1 + n2);

    // A flipped byte inside the first increment: only the full save survives.
    let mut flipped = whole.clone();
    flipped[base.len() + inc1.len() / 2] ^= 0x10;
    let mut loaded = replica(3);
    assert!(matches!(
        loaded.load_shard(shard, &flipped),
        Err(LoadError::Damaged { kept_chunks: 1, .. })
    ));
    assert_eq!(loaded.read().annotations.len(), n1);

    // Garbage: nothing recovered, shard unchanged.
    let mut loaded = replica(4);
    assert!(matches!(
        loaded.load_shard(shard, b"definitely not automerge"),
        Err(LoadError::Unreadable { .. })
    ));
    let mut flipped_base = base.clone();
    flipped_base[base.len() / 2] ^= 0x01;
    assert!(matches!(
        loaded.load_shard(shard, &flipped_base),
        Err(LoadError::Unreadable { .. })
    ));
    assert!(loaded.read().annotations.is_empty());

    // An increment without its base: the changes wait for their dependencies.
    let mut loaded = replica(5);
    assert!(matches!(
        loaded.load_shard(shard, &inc2),
        Err(LoadError::MissingDependencies { .. })
    ));
    loaded.load_shard(shard, &[base, inc1].concat()).unwrap();
    assert_eq!(loaded.read(), r.read());
}

fn replica_from(bytes: &[u8], shard: ShardId) -> Replica {
    let mut r = replica(7);
    r.load_shard(shard, bytes).unwrap();
    r
}

#[test]
fn actor_ids_are_bounded() {
    assert_eq!(
        Replica::new(dataset(), &[]).unwrap_err(),
        ReplicaError::ActorLength(0)
    );
    assert!(Replica::new(dataset(), &[0; 33]).is_err());
    assert!(Replica::new(dataset(), &[0; 32]).is_ok());
    let _ = key(1).public_key();
}

mod hostile;
