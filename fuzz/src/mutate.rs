//! A small seeded mutator for the test suite's short runs (libFuzzer brings its own): bit flips,
//! byte changes, inserted and deleted runs, truncation, splices of another seed, and integers at
//! their edges written over little-endian length and count fields.

use rand::{Rng as _, RngCore as _};
use rand_chacha::ChaCha8Rng;

/// Values that break length and count fields.
const EDGES: [u64; 8] = [0, 1, 0x7f, 0x80, 0xffff, 0x7fff_ffff, 0xffff_ffff, u64::MAX];

/// `seed` with 1 to 4 mutations; `other` may be spliced in.
pub fn mutate(rng: &mut ChaCha8Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let len = out.len();
        match rng.random_range(0..8) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                out[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                out[i] = rng.random();
            }
            2 => {
                let i = rng.random_range(0..=len);
                let mut run = vec![0u8; rng.random_range(1..64)];
                rng.fill_bytes(&mut run);
                out.splice(i..i, run);
            }
            3 if len > 0 => {
                let i = rng.random_range(0..len);
                let j = (i + rng.random_range(1..64)).min(len);
                out.drain(i..j);
            }
            4 => out.truncate(rng.random_range(0..=len)),
            5 if !other.is_empty() => {
                let at = rng.random_range(0..=len);
                let from = rng.random_range(0..other.len());
                let to = (from + rng.random_range(1..256)).min(other.len());
                out.splice(at.., other[from..to].iter().copied());
            }
            6 if len >= 8 => {
                let i = rng.random_range(0..=len - 8);
                let v = EDGES[rng.random_range(0..EDGES.len())];
                let width = [1usize, 2, 4, 8][rng.random_range(0..4)];
                out[i..i + width].copy_from_slice(&v.to_le_bytes()[..width]);
            }
            _ => {
                let i = rng.random_range(0..=len);
                out.insert(i, EDGES[rng.random_range(0..EDGES.len())] as u8);
            }
        }
    }
    out
}
