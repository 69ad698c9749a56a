//! The merge rule of one slot — one annotator's annotation of one sample — the rule every replica
//! applies, whatever order it hears the annotations in: among the valid ones, the one with the
//! greatest `(time_ms, record bytes)` wins. A later label from the same annotator replaces an
//! earlier one; two different records with the same time (a faulty or hostile signer) are
//! ordered by their bytes, so every replica keeps the same one.

use crate::annotation::SignedAnnotation;

/// Whether `a` beats `b` in a slot: greater time, then greater record bytes.
pub fn wins(a: &SignedAnnotation, b: &SignedAnnotation) -> bool {
    (a.annotation().time_ms, a.to_bytes()) > (b.annotation().time_ms, b.to_bytes())
}

/// The annotation a slot keeps of `a` and `b` (commutative, associative and idempotent).
pub fn merge<'a>(a: &'a SignedAnnotation, b: &'a SignedAnnotation) -> &'a SignedAnnotation {
    if wins(b, a) { b } else { a }
}
