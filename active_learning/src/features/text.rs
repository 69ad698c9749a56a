//! Text: hashed word and character n-grams in a fixed number of columns.

use std::fmt;
use std::ops::RangeInclusive;

use super::{Extractor, FeatureError};

/// The hashing trick over lower-cased word n-grams and character n-grams (taken inside words
/// padded with spaces), with a sign bit from the hash so that collisions cancel on average rather
/// than add up. Rows are scaled to unit Euclidean length (all zeros for text without words).
///
/// The hash is FNV-1a, fixed here, so every node computes the same columns for the same text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextFeatures {
    width: usize,
    words: RangeInclusive<usize>,
    chars: RangeInclusive<usize>,
}

impl TextFeatures {
    /// `width` columns, word n-grams of the lengths in `words` and character n-grams of the
    /// lengths in `chars` (an empty range such as `1..=0` turns a kind off).
    pub fn new(
        width: usize,
        words: RangeInclusive<usize>,
        chars: RangeInclusive<usize>,
    ) -> Result<Self, FeatureError> {
        if width == 0 {
            return Err(FeatureError::Config(
                "text feature width must be at least 1".into(),
            ));
        }
        if words.contains(&0) || chars.contains(&0) {
            return Err(FeatureError::Config("n-gram lengths start at 1".into()));
        }
        Ok(Self {
            width,
            words,
            chars,
        })
    }

    /// `width` columns with word 1- and 2-grams and character 3- to 5-grams.
    pub fn with_width(width: usize) -> Result<Self, FeatureError> {
        Self::new(width, 1..=2, 3..=5)
    }

    /// The features of a text.
    pub fn text(&self, text: &str) -> Vec<f32> {
        let mut out = vec![0.0f32; self.width];
        let lower = text.to_lowercase();
        let words: Vec<&str> = lower
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        for n in self.words.clone() {
            for gram in words.windows(n) {
                let mut h = fnv(FNV_OFFSET, b"w");
                for (k, w) in gram.iter().enumerate() {
                    if k > 0 {
                        h = fnv(h, b" ");
                    }
                    h = fnv(h, w.as_bytes());
                }
                self.add(&mut out, h);
            }
        }
        for word in &words {
            let padded: Vec<char> = std::iter::once(' ')
                .chain(word.chars())
                .chain(std::iter::once(' '))
                .collect();
            for n in self.chars.clone() {
                for gram in padded.windows(n) {
                    let mut h = fnv(FNV_OFFSET, b"c");
                    let mut buf = [0u8; 4];
                    for c in gram {
                        h = fnv(h, c.encode_utf8(&mut buf).as_bytes());
                    }
                    self.add(&mut out, h);
                }
            }
        }
        let norm = out.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            out.iter_mut().for_each(|x| *x /= norm);
        }
        out
    }

    fn add(&self, out: &mut [f32], hash: u64) {
        let column = (hash % self.width as u64) as usize;
        out[column] += if hash >> 63 == 0 { 1.0 } else { -1.0 };
    }
}

impl Extractor for TextFeatures {
    fn width(&self) -> usize {
        self.width
    }

    fn extract(&self, id: impl fmt::Display, bytes: &[u8]) -> Result<Vec<f32>, FeatureError> {
        let text = std::str::from_utf8(bytes).map_err(|e| FeatureError::Undecodable {
            id: id.to_string(),
            reason: format!("not UTF-8 text ({e})"),
        })?;
        Ok(self.text(text))
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn same_text_same_row_similar_text_closer_than_unrelated() {
        let f = TextFeatures::with_width(1024).unwrap();
        let a = f.extract("a", "The cat sat on the mat".as_bytes()).unwrap();
        assert_eq!(a, f.text("the CAT sat, on the mat!"));
        assert_eq!(a.len(), 1024);
        assert!((cosine(&a, &a) - 1.0).abs() < 1e-5);
        let near = f.text("a cat sat on a mat");
        let far = f.text("quarterly revenue exceeded forecasts");
        assert!(cosine(&a, &near) > cosine(&a, &far) + 0.3);
        assert!(f.text("  ... ").iter().all(|&x| x == 0.0));
    }

    #[test]
    fn bad_bytes_and_config_are_errors() {
        let f = TextFeatures::with_width(16).unwrap();
        assert!(
            matches!(f.extract("t9", &[0xc3, 0x28]), Err(FeatureError::Undecodable { id, .. }) if id == "t9")
        );
        assert!(TextFeatures::with_width(0).is_err());
        assert!(TextFeatures::new(8, 0..=1, 3..=5).is_err());
    }
}
