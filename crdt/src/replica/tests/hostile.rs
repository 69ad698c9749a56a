//! Hostile inputs to a replica: records of samples the manifest does not list, forged
//! signatures, and the cost of copies.

use super::*;

/// Why 2 of issue 14: an annotation used to be stored whatever sample it named, so a flood of
/// labels for samples that do not exist filled shards, statistics and exports. A replica given
/// its dataset's samples refuses them, and reading ignores any stored before.
#[test]
fn annotations_of_samples_the_manifest_does_not_list_are_refused_and_ignored() {
    let listed: crate::Samples = (0..10).map(sample).collect();
    let listed = std::sync::Arc::new(listed);
    let mut r = replica().with_samples(listed.clone());
    r.record(&signed(1, 3, 100, Value::Label(1))).unwrap();
    assert_eq!(
        r.record(&signed(1, 99, 100, Value::Label(1))),
        Err(RecordError::Invalid(Rejection::UnknownSample))
    );
    // Stored by a replica without the check: ignored when read, and counted.
    let mut old = replica();
    for i in [99, 4] {
        let record = crate::testing::next(&old, 3, i, 100, Value::Label(1));
        old.record(&record).unwrap();
    }
    let mut now = replica();
    now.merge(&mut old).unwrap();
    let mut now = Replica {
        samples: Some(listed),
        ..now
    };
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
    let mut r = replica();
    r.record(&honest).unwrap();
    r.commit();
    raw_record(
        &mut r,
        &SignedAnnotation::from_parts(annotation(2, 5, 100, Value::Label(1)), *honest.signature()),
    );
    let first = r.read();
    assert_eq!(first, r.read());
    assert_eq!(first.annotations, vec![honest]);
    assert_eq!(first.rejected.bad_signature, 1);
}

/// A record heard again (gossip reaches a node once per mesh peer, sync brings what it already
/// has) costs no signature check: its place in its chain is held. A record taken costs one, and
/// reading it afterwards none.
#[test]
fn copies_of_one_record_cost_one_signature_check() {
    let checks = || crate::annotation::VERIFICATIONS.with(std::cell::Cell::get);
    let record = signed(1, 0, 100, Value::Label(1));
    let mut peers: Vec<Replica> = (0..6).map(|_| replica()).collect();
    for p in &mut peers {
        p.record(&record).unwrap();
        p.commit();
    }
    let mut me = replica();
    let before = checks();
    me.record(&record).unwrap();
    me.commit();
    assert_eq!(checks() - before, 1);
    for p in &mut peers {
        me.merge(p).unwrap();
        me.record(&record).unwrap();
    }
    let first = me.read();
    assert_eq!(first.annotations, vec![record]);
    assert_eq!(first.conflicted_slots, 0, "the slot holds one value");
    assert_eq!(me.read(), first);
    assert_eq!(
        checks() - before,
        1,
        "7 copies heard and read twice: one check"
    );
}
