//! The rule every replica applies to read one slot — one annotator's annotation of one sample —
//! whatever order it heard the annotations in. Chains write a slot one record after another, each
//! replacing the last, so a slot shows one value; should a document still hold several valid
//! values side by side (a damaged or foreign document), the one with the greatest
//! `(seq, time_ms, record bytes)` wins: the chain's latest, then ties broken alike everywhere.

use crate::annotation::SignedAnnotation;

/// Whether `a` beats `b` in a slot: greater chain position, then greater time, then greater
/// record bytes.
pub fn wins(a: &SignedAnnotation, b: &SignedAnnotation) -> bool {
    let key = |s: &SignedAnnotation| (s.annotation().seq, s.annotation().time_ms, s.to_bytes());
    key(a) > key(b)
}

/// The annotation a slot keeps of `a` and `b` (commutative, associative and idempotent).
pub fn merge<'a>(a: &'a SignedAnnotation, b: &'a SignedAnnotation) -> &'a SignedAnnotation {
    if wins(b, a) { b } else { a }
}
