//! Unit tests of a replica: recording, chains, forgeries, what a peer lacks, save and load.

use automerge::transaction::Transactable as _;
use automerge::{ROOT, ScalarValue};

use super::*;
use crate::annotation::{Annotation, DatasetId, Value};
use crate::testing::{
    annotation, annotator, chain_signed, dataset, key, next, replica, sample, signed,
};
use crate::validate::Rejections;

/// Writes `value` under `key` in the shard of `sample`, bypassing every check (what a damaged or
/// planted document can hold).
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

/// Every shard's digest and heads.
fn state(r: &mut Replica) -> Vec<([u8; 32], Vec<ChangeHash>)> {
    dataset()
        .layout
        .shards()
        .map(|s| (r.digest(s), r.heads(s)))
        .collect()
}

#[test]
fn records_commits_and_reads_back_and_the_chains_next_record_replaces_an_earlier_one() {
    let mut r = replica();
    let first = next(&r, 1, 0, 100, Value::Label(2));
    assert_eq!(first.annotation().seq, 1);
    assert!(r.record(&first).unwrap().new);
    assert_eq!(r.pending(), 1);
    assert_eq!(r.get(&sample(0), &annotator(1)), Some(first));
    assert_eq!(r.commit(), 1);
    assert_eq!(r.read().annotations, vec![first]);

    let later = next(&r, 1, 0, 50, Value::Skip);
    assert_eq!(later.annotation().seq, 2);
    r.record(&later).unwrap();
    // The chain decides, not the clock: the later record replaces the earlier one although its
    // time is earlier.
    assert_eq!(r.read().annotations, vec![later]);
    assert_eq!(r.read().conflicted_slots, 0);
    // The same record again is held: no change.
    let shard = r.dataset.layout.shard_of(&sample(0));
    let heads = r.heads(shard);
    assert!(!r.record(&later).unwrap().new);
    assert!(!r.record(&first).unwrap().new);
    assert_eq!(r.commit(), 0);
    assert_eq!(r.heads(shard), heads);
}

#[test]
fn a_record_past_its_chains_next_waits_and_one_signed_twice_is_a_conflict() {
    let mut r = replica();
    let third = chain_signed(1, 0, 3, 300, Value::Label(1));
    assert_eq!(
        r.record(&third),
        Err(RecordError::Gap {
            next: 1,
            offered: 3
        })
    );
    let first = chain_signed(1, 0, 1, 100, Value::Label(1));
    r.record(&first).unwrap();
    // Two records with seq 1 by the same key: the first one heard stays.
    let twin = chain_signed(1, 0, 1, 100, Value::Label(2));
    assert_eq!(r.record(&twin), Err(RecordError::Conflict { seq: 1 }));
    r.record(&chain_signed(1, 0, 2, 200, Value::Label(3)))
        .unwrap();
    r.record(&third).unwrap();
    assert_eq!(r.read().annotations, vec![third]);
    // A forgery at a held place is a forgery, not a conflict.
    let mut sig = *third.signature();
    sig[3] ^= 1;
    let forged = SignedAnnotation::from_parts(
        Annotation {
            value: Value::Label(0),
            ..*third.annotation()
        },
        sig,
    );
    assert_eq!(
        r.record(&forged),
        Err(RecordError::Invalid(Rejection::BadSignature))
    );
}

#[test]
fn different_annotators_never_overwrite_each_other() {
    let (mut a, mut b) = (replica(), replica());
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

/// Why 1 of issue 26: a label gossiped to N nodes became N automerge changes, one per node that
/// committed it, and anti-entropy carried every copy to everyone. A record now makes the same
/// change on every replica: replicas that took the same records, in any order and from any
/// relay, hold the same document (same heads, same digests), and a slot holds one value.
#[test]
fn a_record_is_the_same_change_on_every_replica_whatever_the_order() {
    let records: Vec<SignedAnnotation> = (1..=3u8)
        .flat_map(|who| {
            (1..=4u32).map(move |seq| {
                chain_signed(
                    who,
                    seq % 3,
                    seq,
                    u64::from(seq),
                    Value::Label((seq % 4) as u16),
                )
            })
        })
        .collect();
    let mut forward = replica();
    for r in &records {
        forward.record(r).unwrap();
        forward.commit();
    }
    // Chain by chain in reverse annotator order, in one batch.
    let mut backward = replica();
    for who in (1..=3u8).rev() {
        for r in records
            .iter()
            .filter(|r| r.annotation().annotator == annotator(who))
        {
            backward.record(r).unwrap();
        }
    }
    backward.commit();
    // Through relays: each record heard from every one of three other replicas.
    let mut relays: Vec<Replica> = (0..3).map(|_| replica()).collect();
    for relay in &mut relays {
        relay.merge(&mut forward).unwrap();
    }
    let mut relayed = replica();
    for relay in &mut relays {
        relayed.merge(relay).unwrap();
    }
    let want = state(&mut forward);
    assert_eq!(state(&mut backward), want);
    assert_eq!(state(&mut relayed), want);
    let read = relayed.read();
    assert_eq!(read.conflicted_slots, 0);
    assert_eq!(read, forward.read());
}

/// The four forgeries of the issue, a malformed value and one honest annotation, written into
/// the document directly (a planted or damaged file): reading ignores and counts them.
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
fn forged_values_in_a_document_are_ignored_and_counted_and_never_served() {
    let mut attacker = replica();
    let honest = forge_everything(&mut attacker);
    let read = attacker.read();
    assert_eq!(read.annotations, vec![honest]);
    assert_eq!(
        read.rejected,
        Rejections {
            malformed: 2,
            wrong_dataset: 1,
            wrong_slot: 1,
            unknown_label: 1,
            bad_signature: 1,
            ..Rejections::default()
        }
    );
    // Such a document has no chains: a peer asking it gets nothing of it.
    let mut peer = replica();
    assert_eq!(peer.merge(&mut attacker), Ok(0));
    assert!(peer.read().annotations.is_empty());
}

#[test]
fn record_refuses_what_readers_would_ignore() {
    let mut r = replica();
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
    let unchained = SignedAnnotation::sign(
        Annotation {
            seq: 0,
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
    assert_eq!(
        r.record(&unchained),
        Err(RecordError::Invalid(Rejection::Malformed))
    );
    assert_eq!(r.pending(), 0);
}

#[test]
fn missing_gives_what_a_peer_lacks_in_chain_order_within_the_limit() {
    let mut full = replica();
    for seq in 1..=5 {
        full.record(&chain_signed(1, 0, seq, u64::from(seq), Value::Label(1)))
            .unwrap();
    }
    full.record(&signed(2, 0, 1, Value::Label(2))).unwrap();
    let shard = dataset().layout.shard_of(&sample(0));
    let tips = full.tips(shard);
    assert_eq!(
        tips.iter().map(|t| t.seq).sum::<u32>(),
        6,
        "chains of 5 and 1"
    );
    // A peer at seq 2 of annotator 1's chain, without annotator 2's.
    let theirs = [Tip {
        annotator: annotator(1),
        seq: 2,
    }];
    let missing = full.missing(shard, &theirs, 100);
    assert!(!missing.more);
    let of_1: Vec<u32> = missing
        .records
        .iter()
        .filter(|r| r.annotation().annotator == annotator(1))
        .map(|r| r.annotation().seq)
        .collect();
    assert_eq!(of_1, vec![3, 4, 5]);
    assert_eq!(missing.records.len(), 4);
    // Two at a time, every page a prefix of each chain: a peer that takes them in turn ends
    // with the whole document.
    let mut peer = replica();
    let mut pages = 0;
    loop {
        let page = full.missing(shard, &peer.tips(shard), 2);
        for r in &page.records {
            peer.record(r).unwrap();
        }
        pages += 1;
        if !page.more {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(peer.digest(shard), full.digest(shard));
    assert_eq!(peer.heads(shard), full.heads(shard));
    assert!(full.missing(shard, &peer.tips(shard), 2).records.is_empty());
}

#[test]
fn a_banned_annotators_chain_is_kept_but_not_counted_served_or_digested() {
    use crate::policy::Policy;
    let mut r = replica();
    r.record(&signed(1, 0, 1, Value::Label(1))).unwrap();
    r.record(&signed(9, 0, 1, Value::Label(2))).unwrap();
    let shard = dataset().layout.shard_of(&sample(0));
    let mut clean = replica();
    clean.record(&signed(1, 0, 1, Value::Label(1))).unwrap();
    assert_ne!(r.digest(shard), clean.digest(shard));
    let mut policy = Policy::open(dataset().id);
    policy.banned.insert(annotator(9), "spam".into());
    r.set_policy(Some(std::sync::Arc::new(policy)));
    assert_eq!(r.digest(shard), clean.digest(shard));
    assert_eq!(r.read().annotations.len(), 1);
    assert_eq!(r.read().rejected.not_admitted, 1);
    assert!(
        r.missing(shard, &[], 10)
            .records
            .iter()
            .all(|x| x.annotation().annotator == annotator(1))
    );
    assert_eq!(
        r.record(&chain_signed(9, 1, 2, 2, Value::Label(1))),
        Err(RecordError::Invalid(Rejection::NotAdmitted))
    );
    // Admitted again, the chain is back as it was.
    r.set_policy(None);
    assert_eq!(r.read().annotations.len(), 2);
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
            let record = next(r, 1, i, t, Value::Label((i % 4) as u16));
            r.record(&record).unwrap();
            n += 1;
        }
    }
    r.commit();
    n
}

#[test]
fn full_and_incremental_saves_load_back() {
    let shard = busy_shard(40);
    let mut r = replica();
    record_range(&mut r, shard, 0..20, 100);
    let mut bytes = r.save_shard(shard);
    let base_len = bytes.len();
    let saved_at = r.heads(shard);
    record_range(&mut r, shard, 20..40, 100);
    // What automerge itself finds after the saved heads (by walking its change graph) is what
    // the shard kept as it committed.
    let expected = r.shard_mut(shard).unwrap().doc.save_after(&saved_at);
    let inc = r.save_shard_incremental(shard);
    assert_eq!(inc, expected);
    assert!(!inc.is_empty() && inc.len() < base_len * 3);
    bytes.extend_from_slice(&inc);
    assert!(
        r.save_shard_incremental(shard).is_empty(),
        "nothing new to save"
    );

    let mut loaded = replica();
    let report = loaded.load_shard(shard, &bytes).unwrap();
    // The full save, then one change chunk per record recorded after it.
    assert!(report.chunks > 2);
    assert_eq!(loaded.read(), r.read());
    assert_eq!(loaded.heads(shard), r.heads(shard));
    assert_eq!(loaded.tips(shard), r.tips(shard));
    assert_eq!(loaded.digest(shard), r.digest(shard));
    // Right after a load an incremental save has nothing to re-emit, and chains go on.
    assert!(loaded.save_shard_incremental(shard).is_empty());
    let more = next(&loaded, 1, 0, 300, Value::Skip);
    assert!(more.annotation().seq > 1);
    loaded.record(&more).unwrap();
    loaded.record(&signed(2, 0, 300, Value::Skip)).unwrap();
    let after = loaded.save_shard_incremental(shard);
    assert!(!after.is_empty() && after.len() < base_len);
}

#[test]
fn a_document_not_made_of_chains_is_refused_at_load() {
    let mut planted = replica();
    forge_everything(&mut planted);
    let bytes = planted.save_shard(dataset().layout.shard_of(&sample(0)));
    let mut r = replica();
    assert!(matches!(
        r.load_shard(dataset().layout.shard_of(&sample(0)), &bytes),
        Err(LoadError::Unreadable { .. })
    ));
    assert!(r.read().annotations.is_empty());
}

#[test]
fn damaged_bytes_keep_the_valid_prefix_and_say_what_was_lost() {
    let shard = busy_shard(60);
    let mut r = replica();
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
    let mut loaded = replica();
    match loaded.load_shard(shard, cut) {
        Err(LoadError::Damaged {
            kept_chunks,
            kept_bytes,
            lost_bytes,
            damaged_at,
            ..
        }) => {
            assert_eq!(kept_bytes + lost_bytes, cut.len());
            assert_eq!(damaged_at, kept_bytes);
            assert!(
                kept_chunks > n2,
                "the base and the first increment's changes"
            );
            assert!(kept_bytes >= base.len() + inc1.len());
        }
        other => panic!("expected a damaged load, got {other:?}"),
    }
    assert!(loaded.read().annotations.len() >= n1 + n2);

    // A flipped byte inside the first increment: the base and the changes before it survive.
    let mut flipped = whole.clone();
    flipped[base.len() + inc1.len() / 2] ^= 0x10;
    let mut loaded = replica();
    assert!(matches!(
        loaded.load_shard(shard, &flipped),
        Err(LoadError::Damaged { .. })
    ));
    let kept = loaded.read().annotations.len();
    assert!(kept >= n1 && kept < n1 + n2);

    // Garbage: nothing recovered, shard unchanged.
    let mut loaded = replica();
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
}

fn replica_from(bytes: &[u8], shard: ShardId) -> Replica {
    let mut r = replica();
    r.load_shard(shard, bytes).unwrap();
    r
}

mod hostile;
