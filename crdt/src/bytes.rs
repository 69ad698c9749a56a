//! Small helpers of the canonical byte codecs.

/// `s` as an array; the caller has checked its length (a wrong length is a bug, not bad input).
pub(crate) fn array<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(s);
    a
}
