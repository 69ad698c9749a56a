//! The datasets `al` and `sim` read: a numeric CSV with a label column, or a folder of images
//! with one subfolder per class.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, ensure};
use swarmlabel_active_learning::{Colour, Extractor as _, ImageFeatures, Input, LabelSet};

/// A labelled dataset: raw feature rows and class indices.
pub(crate) struct Dataset {
    pub(crate) name: String,
    pub(crate) input: Input,
    pub(crate) rows: Vec<Vec<f32>>,
    pub(crate) labels: Vec<usize>,
    pub(crate) classes: LabelSet,
    /// Whether to standardise with the pool's statistics (numeric CSV columns).
    pub(crate) standardise: bool,
}

pub(crate) fn read_csv(path: &Path, label_column: &str) -> anyhow::Result<Dataset> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("cannot open {}", path.display()))?;
    let headers = reader
        .headers()
        .with_context(|| format!("cannot read the header of {}", path.display()))?
        .clone();
    let label_at = headers
        .iter()
        .position(|h| h == label_column)
        .with_context(|| format!("{} has no column {label_column:?}", path.display()))?;
    let mut rows = Vec::new();
    let mut names = Vec::new();
    for (n, record) in reader.records().enumerate() {
        let record =
            record.with_context(|| format!("{}: cannot read row {}", path.display(), n + 2))?;
        let id = format!("row {}", n + 2);
        let mut values = Vec::with_capacity(record.len());
        for (column, field) in record.iter().enumerate() {
            if column == label_at {
                names.push(field.to_owned());
                continue;
            }
            let v: f32 = field.trim().parse().map_err(|_| {
                swarmlabel_active_learning::FeatureError::NotANumber {
                    id: id.clone(),
                    column,
                    value: field.to_owned(),
                }
            })?;
            values.push(v);
        }
        rows.push(values);
    }
    ensure!(!rows.is_empty(), "{} has no rows", path.display());
    let classes = LabelSet::new(names.iter().cloned());
    let labels = names
        .iter()
        .map(|n| classes.index(n))
        .collect::<Result<Vec<_>, _>>()?;
    let width = rows[0].len();
    Ok(Dataset {
        name: path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
        input: Input::Vector { width },
        rows,
        labels,
        classes,
        standardise: true,
    })
}

pub(super) fn read_images(dir: &Path, side: u32, colour: Colour) -> anyhow::Result<Dataset> {
    let extractor = ImageFeatures::new(side, side, colour)?;
    let mut class_dirs: Vec<(String, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            class_dirs.push((
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
            ));
        }
    }
    let classes = LabelSet::new(class_dirs.iter().map(|(n, _)| n.clone()));
    ensure!(
        classes.len() >= 2,
        "{} needs at least two class sub-folders",
        dir.display()
    );
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for (name, path) in &class_dirs {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot list {}", path.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        files.retain(|f| f.is_file());
        files.sort();
        let class = classes.index(name)?;
        for file in files {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            rows.push(extractor.extract(file.display(), &bytes)?);
            labels.push(class);
        }
    }
    let (channels, height, width) = extractor.shape();
    Ok(Dataset {
        name: dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
        input: Input::Image {
            channels,
            height,
            width,
        },
        rows,
        labels,
        classes,
        standardise: false,
    })
}
