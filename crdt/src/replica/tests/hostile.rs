//! What hostile peers used to get away with (issue 14): shards grown past the message limit,
//! labels of samples that do not exist, signatures verified again at every read.

use super::*;

/// Why 3 of issue 14: a shard grown past the message limit (sample ids chosen to land in one
/// shard, or simply many raters) made its first sync message too large, so no newcomer could ever
/// sync it. Messages are now cut to the limit and the rest follows in later messages: a newcomer
/// gets everything, and no message is over the limit.
#[test]
fn a_shard_larger_than_the_message_limit_still_syncs_in_bounded_messages() {
    const MAX: usize = 32 * 1024;
    let limits = Limits {
        max_message_bytes: MAX,
        ..Limits::default()
    };
    let mut big = replica(1).with_limits(limits);
    // 60 changes of 12 labels: about 130 KB in one shard, four times the limit.
    let mut n = 0u32;
    let shard = big.dataset.layout.shard_of(&sample(0));
    for batch in 0..60u64 {
        for _ in 0..12 {
            while big.dataset.layout.shard_of(&sample(n)) != shard {
                n += 1;
            }
            big.record(&signed(2, n, 1_000 + batch, Value::Label(1)))
                .unwrap();
            n += 1;
        }
        big.commit();
    }
    let held = big.read().annotations.len();
    assert_eq!(held, 720);
    let mut newcomer = replica(3).with_limits(limits);
    let (mut sa, mut sb) = (State::new(), State::new());
    let mut largest = 0;
    for _ in 0..200 {
        let m1 = big.generate_sync_message(shard, &mut sa);
        if let Some(m) = &m1 {
            largest = largest.max(m.len());
            newcomer.receive_sync_message(shard, &mut sb, m).unwrap();
        }
        let m2 = newcomer.generate_sync_message(shard, &mut sb);
        if let Some(m) = &m2 {
            largest = largest.max(m.len());
            big.receive_sync_message(shard, &mut sa, m).unwrap();
        }
        if m1.is_none() && m2.is_none() {
            break;
        }
    }
    assert!(largest <= MAX, "a message of {largest} bytes");
    assert_eq!(
        newcomer.read().annotations.len(),
        held,
        "the newcomer has it all"
    );
    assert_eq!(newcomer.heads(shard), big.heads(shard));
}

/// Why 2 of issue 14: an annotation used to be stored whatever sample it named, so a flood of
/// labels for samples that do not exist filled shards, statistics and exports. A replica given
/// its dataset's samples refuses them from the API and from sync, and reading ignores any stored
/// before.
#[test]
fn annotations_of_samples_the_manifest_does_not_list_are_refused_and_ignored() {
    let listed: crate::Samples = (0..10).map(sample).collect();
    let listed = std::sync::Arc::new(listed);
    let mut r = replica(1).with_samples(listed.clone());
    r.record(&signed(1, 3, 100, Value::Label(1))).unwrap();
    assert_eq!(
        r.record(&signed(1, 99, 100, Value::Label(1))),
        Err(RecordError::Invalid(Rejection::UnknownSample))
    );
    // A peer without the check holds a label of sample 99; syncing it is refused whole.
    let mut loose = replica(2);
    loose.record(&signed(2, 99, 100, Value::Label(1))).unwrap();
    let shard = r.dataset.layout.shard_of(&sample(99));
    let (mut sa, mut sb) = (State::new(), State::new());
    let mut refused = false;
    for _ in 0..10 {
        if let Some(m) = loose.generate_sync_message(shard, &mut sa)
            && let Err(SyncError::Refused { refusal, .. }) =
                r.receive_sync_message(shard, &mut sb, &m)
        {
            assert_eq!(refusal, Refusal::Invalid(Rejection::UnknownSample));
            refused = true;
            break;
        }
        if let Some(m) = r.generate_sync_message(shard, &mut sb) {
            loose.receive_sync_message(shard, &mut sa, &m).unwrap();
        }
    }
    assert!(refused, "the sync carrying sample 99 was not refused");
    // Stored before the check existed: ignored when read, and counted.
    let mut old = replica(3);
    old.record(&signed(3, 99, 100, Value::Label(1))).unwrap();
    old.record(&signed(3, 4, 100, Value::Label(1))).unwrap();
    let mut now = Replica::new(dataset(), &[4; 16])
        .unwrap()
        .with_samples(listed);
    now.merge(&mut old).unwrap();
    let read = now.read();
    assert_eq!(read.annotations.len(), 1);
    assert_eq!(read.rejected.unknown_sample, 1);
}

/// Signatures are verified once per record (Why 2 of issue 14: every read re-verified every
/// signature); the cache is keyed by the whole record, so a forgery that reuses a verified
/// record's signature is still checked, and refused.
#[test]
fn a_verified_signature_is_remembered_by_record_not_by_signature() {
    let verified = crate::validate::Verified::default();
    let honest = signed(1, 0, 100, Value::Label(1));
    assert!(verified.verify(&honest));
    assert!(verified.verify(&honest), "remembered");
    let mut forged_annotation = *honest.annotation();
    forged_annotation.value = Value::Label(2);
    let forged = SignedAnnotation::from_parts(forged_annotation, *honest.signature());
    assert!(!verified.verify(&forged));
    // Reading twice gives the same answer, and a forged value stays rejected.
    let mut r = replica(1);
    r.record(&honest).unwrap();
    raw_record(
        &mut r,
        &SignedAnnotation::from_parts(annotation(2, 5, 100, Value::Label(1)), *honest.signature()),
    );
    let first = r.read();
    assert_eq!(first, r.read());
    assert_eq!(first.annotations, vec![honest]);
    assert_eq!(first.rejected.bad_signature, 1);
}

/// Every replica that hears a record by gossip commits it in a change of its own, so after
/// anti-entropy a slot holds one copy per replica that did. With 100 nodes (`swarmlabel-bench sim
/// --nodes 100`) reading and screening verified every copy's signature again, at every read:
/// most of the CPU of the run went there (stack samples: ed25519 under `Shard::slot_values`).
/// A record's signature is now checked once, whatever number of copies arrives or is read.
#[test]
fn copies_of_one_record_from_many_replicas_cost_one_signature_check() {
    let checks = || crate::annotation::VERIFICATIONS.with(std::cell::Cell::get);
    let record = signed(1, 0, 100, Value::Label(1));
    let mut peers: Vec<Replica> = (20..26).map(replica).collect();
    for p in &mut peers {
        p.record(&record).unwrap();
        p.commit();
    }
    let mut me = replica(10);
    let before = checks();
    me.record(&record).unwrap();
    me.commit();
    assert_eq!(checks() - before, 1);
    for p in &mut peers {
        super::sync_all(p, &mut me).unwrap();
    }
    let first = me.read();
    assert_eq!(first.annotations, vec![record]);
    assert_eq!(
        first.conflicted_slots, 1,
        "the slot holds a copy per replica"
    );
    assert_eq!(me.read(), first);
    assert_eq!(
        checks() - before,
        1,
        "7 copies synced and read twice: one check"
    );
}
