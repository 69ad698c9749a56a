//! The feature rows of a dataset in the node's store: every sample's bytes read from the blob
//! store (hash-checked there) and turned into one row of the model's input, with the model that
//! suits the task.
//!
//! - CSV rows ([`MediaType::Row`]): standardised with the statistics of the whole dataset (every
//!   node holds the same samples, so every node derives the same features); a `linear` model.
//! - Images: decoded, resized to 16x16, one channel on the principal colour axis; the `cnn`.
//! - Text: hashed word and character n-grams; a `linear` model.
//!
//! A sample that cannot be read or decoded is an error naming the sample; nothing is skipped
//! silently, since a node whose pool differs from its peers' would pick and score differently.

use std::collections::HashMap;

use swarmlabel_active_learning::{
    Colour, Extractor as _, FeatureError, ImageFeatures, Matrix, ModelSpec, Tabular, TextFeatures,
};
use swarmlabel_crdt::SampleId;

use swarmlabel_store::dataset::manifest::{MediaType, Task, decode_row};
use swarmlabel_store::dataset::{Catalog, CatalogError, DatasetId, Listed};
use swarmlabel_store::store::StoreError;

/// Side of the square images the `cnn` takes, one channel: each pixel projected on the image's
/// principal colour axis ([`Colour::Principal`]), which keeps shapes whose colour has the
/// brightness of the background.
pub const IMAGE_SIDE: u32 = 16;
/// Columns of the hashed text features.
pub const TEXT_WIDTH: usize = 4096;

/// A sample as read from the store: its id, media type and bytes.
pub type Sample = (SampleId, MediaType, Vec<u8>);

/// Why a dataset's features could not be computed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FeaturesError {
    /// The dataset or one of its pages could not be read.
    #[error(transparent)]
    Catalog(#[from] Box<CatalogError>),
    /// A sample's bytes are not in the store.
    #[error(
        "sample {sample} of dataset {dataset} cannot be read ({source}); fetch the dataset again"
    )]
    Sample {
        /// The dataset.
        dataset: DatasetId,
        /// The sample.
        sample: SampleId,
        /// What the store said.
        source: Box<StoreError>,
    },
    /// A sample's media type does not fit the dataset's task.
    #[error(
        "sample {sample} is {media:?}, which a {task} dataset cannot hold; the manifest is inconsistent"
    )]
    Media {
        /// The sample.
        sample: SampleId,
        /// Its media type.
        media: MediaType,
        /// The dataset's task kind.
        task: &'static str,
    },
    /// A sample's features could not be computed (the error names the sample).
    #[error(transparent)]
    Feature(#[from] FeatureError),
    /// The dataset has no samples.
    #[error("dataset {0} has no samples to learn from")]
    Empty(DatasetId),
}

/// A dataset's samples as feature rows, in manifest order (duplicates of a sample id kept once).
#[derive(Debug)]
pub struct PoolFeatures {
    /// The sample of each row.
    pub ids: Vec<SampleId>,
    /// One row per sample.
    pub features: Matrix,
    /// The row of each sample.
    pub index: HashMap<SampleId, usize>,
    /// The model every node of the dataset trains (so that their weights can be averaged).
    pub spec: ModelSpec,
    /// The label set.
    pub labels: Vec<String>,
    /// The owner's gold labels (indices into `labels`), known truth for training.
    pub gold: HashMap<SampleId, u16>,
    /// For CSV rows, the standardisation fitted on the pool: apply it to rows from elsewhere
    /// (a test set) to feed them to the same models.
    pub scaler: Option<Tabular>,
    /// Labels wanted per sample, from the manifest (1 for pools not read from a catalog).
    pub redundancy: u32,
}

/// Reads every sample of the listed dataset `id` and computes its features. Blocking (reads
/// every sample): call it from a blocking thread.
pub fn load(catalog: &Catalog, id: &DatasetId) -> Result<PoolFeatures, FeaturesError> {
    let listed = catalog.get(id).map_err(Box::new)?;
    let (samples, gold) = read_samples(catalog, &listed)?;
    let root = listed.root.root();
    let mut pool = from_samples(*id, &root.task, &root.labels, &samples)?;
    pool.gold = gold;
    pool.redundancy = root.redundancy;
    Ok(pool)
}

fn read_samples(
    catalog: &Catalog,
    listed: &Listed,
) -> Result<(Vec<Sample>, HashMap<SampleId, u16>), FeaturesError> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for index in 0..listed.root.root().pages.len() {
        let page = catalog.page(listed, index).map_err(Box::new)?;
        for entry in page.samples {
            let sample = entry.id;
            if !seen.insert(sample) {
                continue;
            }
            let bytes = catalog
                .blobs()
                .get(&entry.id)
                .map_err(|source| FeaturesError::Sample {
                    dataset: listed.id,
                    sample,
                    source: Box::new(source),
                })?;
            out.push((sample, entry.media_type, bytes));
        }
    }
    let gold = catalog
        .gold(listed)
        .map_err(Box::new)?
        .into_iter()
        .collect();
    Ok((out, gold))
}

/// The features of `samples` (id, media type, bytes) of a dataset with `task` and `labels`. Pure.
pub fn from_samples(
    dataset: DatasetId,
    task: &Task,
    labels: &[String],
    samples: &[Sample],
) -> Result<PoolFeatures, FeaturesError> {
    if samples.is_empty() {
        return Err(FeaturesError::Empty(dataset));
    }
    let classes = labels.len();
    let media_error = |sample: SampleId, media| FeaturesError::Media {
        sample,
        media,
        task: task.kind(),
    };
    let mut scaler = None;
    let (features, spec) = match task {
        Task::TabularClassification { .. } => {
            let mut rows = Vec::with_capacity(samples.len());
            for (sample, media, bytes) in samples {
                if *media != MediaType::Row {
                    return Err(media_error(*sample, *media));
                }
                let row = decode_row(bytes).ok_or_else(|| FeatureError::Undecodable {
                    id: sample.to_string(),
                    reason: "not a whole number of finite 8-byte values".into(),
                })?;
                rows.push((sample.to_string(), row));
            }
            let tabular = Tabular::fit(rows.iter().map(|(id, r)| (id.as_str(), r)))?;
            let mut data = Vec::with_capacity(rows.len() * tabular.width());
            for (id, row) in &rows {
                data.extend(tabular.standardise(id, row)?);
            }
            let width = tabular.width();
            scaler = Some(tabular);
            (
                Matrix::new(rows.len(), width, data)
                    .expect("invariant: every standardised row has the fitted width"),
                ModelSpec::linear(width, classes),
            )
        }
        Task::ImageClassification => {
            let extractor = ImageFeatures::new(IMAGE_SIDE, IMAGE_SIDE, Colour::Principal)?;
            check_media(samples, &[MediaType::Png, MediaType::Jpeg], media_error)?;
            let x = extractor.extract_all(samples.iter().map(|(s, _, b)| (s, b.as_slice())))?;
            let side = IMAGE_SIDE as usize;
            (x, ModelSpec::cnn(1, side, side, classes))
        }
        Task::TextClassification => {
            let extractor = TextFeatures::with_width(TEXT_WIDTH)?;
            check_media(samples, &[MediaType::Text], media_error)?;
            let x = extractor.extract_all(samples.iter().map(|(s, _, b)| (s, b.as_slice())))?;
            (x, ModelSpec::linear(TEXT_WIDTH, classes))
        }
    };
    let ids: Vec<SampleId> = samples.iter().map(|(s, _, _)| *s).collect();
    let index = ids.iter().enumerate().map(|(i, s)| (*s, i)).collect();
    Ok(PoolFeatures {
        ids,
        features,
        index,
        spec,
        labels: labels.to_vec(),
        gold: HashMap::new(),
        scaler,
        redundancy: 1,
    })
}

fn check_media(
    samples: &[Sample],
    allowed: &[MediaType],
    error: impl Fn(SampleId, MediaType) -> FeaturesError,
) -> Result<(), FeaturesError> {
    match samples.iter().find(|(_, m, _)| !allowed.contains(m)) {
        Some((sample, media, _)) => Err(error(*sample, *media)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmlabel_formats::import;
    use swarmlabel_store::Home;
    use swarmlabel_store::dataset::manifest::encode_row;
    use swarmlabel_store::progress::NoProgress;

    fn id(b: u8) -> SampleId {
        SampleId([b; 32])
    }

    #[test]
    fn csv_rows_from_the_store_are_standardised_rows_for_a_linear_model() {
        let dir = tempfile::tempdir().unwrap();
        let (home, me) = Home::init(&dir.path().join("home"), false).unwrap();
        let csv = dir.path().join("points.csv");
        std::fs::write(&csv, "x,y\n1,10\n3,10\n5,10\n").unwrap();
        let opts = import::Options::new("points", vec!["a".into(), "b".into()]);
        let report = import::import(&home, &me, &csv, &opts, &NoProgress).unwrap();
        let pool = load(&swarmlabel_store::Catalog::of(&home), &report.id).unwrap();
        assert_eq!(pool.ids.len(), 3);
        assert_eq!(pool.spec, ModelSpec::linear(2, 2));
        // Mean 3, population std sqrt(8/3); the constant column becomes 0.
        let first = pool.index[&SampleId(*blake3::hash(&encode_row(&[1.0, 10.0])).as_bytes())];
        let row = pool.features.row(first);
        assert!((row[0] + 1.2247449).abs() < 1e-5, "{row:?}");
        assert_eq!(row[1], 0.0);
    }

    #[test]
    fn bad_samples_are_errors_naming_them() {
        let task = Task::TabularClassification {
            features: vec!["x".into()],
        };
        let labels = vec!["a".to_owned()];
        let dataset = DatasetId([1; 32]);
        let bad_width = [
            (id(1), MediaType::Row, encode_row(&[1.0])),
            (id(2), MediaType::Row, encode_row(&[1.0, 2.0])),
        ];
        let err = from_samples(dataset, &task, &labels, &bad_width).unwrap_err();
        assert!(err.to_string().contains(&id(2).to_string()), "{err}");
        let torn = [(id(3), MediaType::Row, vec![0u8; 5])];
        let err = from_samples(dataset, &task, &labels, &torn).unwrap_err();
        assert!(err.to_string().contains(&id(3).to_string()), "{err}");
        let wrong_media = [(id(4), MediaType::Text, b"hello".to_vec())];
        let err = from_samples(dataset, &task, &labels, &wrong_media).unwrap_err();
        assert!(err.to_string().contains(&id(4).to_string()), "{err}");
        let image = [(id(5), MediaType::Png, b"not a png".to_vec())];
        let err = from_samples(dataset, &Task::ImageClassification, &labels, &image).unwrap_err();
        assert!(err.to_string().contains(&id(5).to_string()), "{err}");
        assert!(matches!(
            from_samples(dataset, &task, &labels, &[]),
            Err(FeaturesError::Empty(_))
        ));
    }

    #[test]
    fn text_samples_become_hashed_rows() {
        let labels = vec!["a".to_owned(), "b".to_owned()];
        let dataset = DatasetId([1; 32]);
        let texts = [
            (id(1), MediaType::Text, b"good movie".to_vec()),
            (id(2), MediaType::Text, b"bad movie".to_vec()),
        ];
        let pool = from_samples(dataset, &Task::TextClassification, &labels, &texts).unwrap();
        assert_eq!(pool.features.cols(), TEXT_WIDTH);
        assert_ne!(pool.features.row(0), pool.features.row(1));
    }
}
