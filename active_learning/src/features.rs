//! Features from dataset samples: one [`Extractor`] trait the node feeds with sample bytes, and
//! extractors for CSV rows ([`Tabular`]), images ([`ImageFeatures`]) and text ([`TextFeatures`]).
//!
//! Extraction never panics on bad input: a sample of the wrong width, with a value that is not a
//! finite number, or whose bytes cannot be decoded is a [`FeatureError`] naming the sample id.

mod image;
mod tabular;
mod text;

pub use self::image::{Colour, ImageFeatures};
pub use self::tabular::Tabular;
pub use self::text::TextFeatures;

use crate::matrix::Matrix;
use std::fmt;

/// Why a sample's features could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FeatureError {
    /// The sample has a different number of values than the dataset.
    #[error("sample {id} has {got} values, the dataset has {expected}; fix or drop that sample")]
    WrongWidth {
        /// The sample.
        id: String,
        /// Width of the dataset.
        expected: usize,
        /// Width of this sample.
        got: usize,
    },
    /// A value is not a finite number (NaN, infinite, or not a number at all).
    #[error("sample {id}, column {column}: {value:?} is not a finite number")]
    NotANumber {
        /// The sample.
        id: String,
        /// Zero-based column of the value.
        column: usize,
        /// The value as it was read.
        value: String,
    },
    /// The bytes are not a readable image, or not UTF-8 text.
    #[error("sample {id} cannot be decoded: {reason}")]
    Undecodable {
        /// The sample.
        id: String,
        /// What the decoder said.
        reason: String,
    },
    /// Standardisation needs at least one sample.
    #[error("the pool is empty: at least one sample is needed to compute feature statistics")]
    EmptyPool,
    /// The extractor's configuration cannot produce features.
    #[error("invalid feature configuration: {0}")]
    Config(String),
}

/// Turns the bytes of one sample into a fixed-width feature row.
///
/// Implementations are pure: the same bytes always give the same row, and every row has
/// [`width`](Extractor::width) values.
pub trait Extractor {
    /// Number of values in every row this extractor returns.
    fn width(&self) -> usize;

    /// The features of the sample `id` (a sample id, a file: what errors name it by) whose
    /// content is `bytes`.
    fn extract(&self, id: impl fmt::Display, bytes: &[u8]) -> Result<Vec<f32>, FeatureError>;

    /// The features of many `(id, bytes)` samples, one row each, in order; the first bad sample
    /// is the error.
    fn extract_all<'a, D, I>(&self, samples: I) -> Result<Matrix, FeatureError>
    where
        Self: Sized,
        D: fmt::Display,
        I: IntoIterator<Item = (D, &'a [u8])>,
    {
        let mut data = Vec::new();
        let mut rows = 0;
        for (id, bytes) in samples {
            data.extend(self.extract(id, bytes)?);
            rows += 1;
        }
        Ok(Matrix::new(rows, self.width(), data)
            .expect("invariant: every extracted row has width() values"))
    }
}
