//! Writing a dataset's samples and gold labels as CSV or JSONL.

use std::io::Write;

use swarmlabel_store::progress::Progress;
use swarmlabel_store::store::StoreError;

use swarmlabel_store::dataset::manifest::{MediaType, Task, decode_row};
use swarmlabel_store::dataset::{Catalog, CatalogError, DatasetId};

/// Output format of [`export`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// CSV with a header row.
    Csv,
    /// One JSON object per sample.
    Jsonl,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The dataset or a page could not be read.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A sample blob is missing or corrupt.
    #[error(
        "cannot export sample #{position}: {source}; run `swarmlabel dataset verify` to see all damage"
    )]
    Sample {
        /// Position in the dataset.
        position: u64,
        /// The store's error.
        source: StoreError,
    },
    /// Writing the output failed.
    #[error("cannot write the export: {0}")]
    Write(#[from] std::io::Error),
    /// A stored row is not a whole number of f64 values.
    #[error("sample #{0} is not a valid numeric row for this dataset")]
    BadRow(u64),
}

impl From<csv::Error> for ExportError {
    fn from(e: csv::Error) -> Self {
        ExportError::Write(std::io::Error::other(e))
    }
}

enum Sink<'a> {
    Csv(Box<csv::Writer<&'a mut dyn Write>>),
    Jsonl(&'a mut dyn Write),
}

/// Writes every sample of dataset `id` with its gold label to `out`. Returns the sample count.
///
/// Columns: tabular datasets give `sample_id`, the feature columns and `label`; text datasets
/// `sample_id`, `text`, `label`; image datasets `sample_id`, `media_type`, `size`, `label`. The label
/// is empty (CSV) or null (JSONL) when a sample has no gold label.
pub fn export(
    catalog: &Catalog,
    id: &DatasetId,
    format: ExportFormat,
    out: &mut dyn Write,
    progress: &dyn Progress,
) -> Result<u64, ExportError> {
    let listed = catalog.get(id)?;
    let root = listed.root.root();
    let mut sink = match format {
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            let mut header = vec!["sample_id".to_owned()];
            match &root.task {
                Task::TabularClassification { features } => header.extend(features.iter().cloned()),
                Task::TextClassification => header.push("text".into()),
                Task::ImageClassification => {
                    header.extend(["media_type".to_owned(), "size".to_owned()])
                }
            }
            header.push("label".into());
            w.write_record(&header)?;
            Sink::Csv(Box::new(w))
        }
        ExportFormat::Jsonl => Sink::Jsonl(out),
    };
    let gold = catalog.gold(&listed)?;
    progress.start("exporting", Some(root.sample_count));
    let mut position = 0u64;
    let mut json_lines = Vec::new();
    for index in 0..root.pages.len() {
        let page = catalog.page(&listed, index)?;
        for entry in &page.samples {
            let label = gold
                .get(&entry.id)
                .map(|&g| root.labels[g as usize].as_str());
            let needs_bytes = !matches!(entry.media_type, MediaType::Png | MediaType::Jpeg);
            let bytes = if needs_bytes {
                catalog
                    .blobs()
                    .get(&entry.id)
                    .map_err(|source| ExportError::Sample { position, source })?
            } else {
                catalog
                    .blobs()
                    .check(&entry.id)
                    .map_err(|source| ExportError::Sample { position, source })?;
                Vec::new()
            };
            let id_hex = entry.id.to_hex();
            let mut record: Vec<String> = vec![id_hex.clone()];
            let mut object = serde_json::Map::new();
            object.insert("sample_id".into(), id_hex.into());
            match entry.media_type {
                MediaType::Row => {
                    let values = decode_row(&bytes).ok_or(ExportError::BadRow(position))?;
                    record.extend(values.iter().map(f64::to_string));
                    object.insert("features".into(), serde_json::json!(values));
                }
                MediaType::Text => {
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    record.push(text.clone());
                    object.insert("text".into(), text.into());
                }
                MediaType::Png | MediaType::Jpeg => {
                    record.push(entry.media_type.mime().into());
                    record.push(entry.size.to_string());
                    object.insert("media_type".into(), entry.media_type.mime().into());
                    object.insert("size".into(), entry.size.into());
                }
            }
            record.push(label.unwrap_or_default().to_owned());
            object.insert(
                "label".into(),
                label.map_or(serde_json::Value::Null, Into::into),
            );
            match &mut sink {
                Sink::Csv(w) => w.write_record(&record)?,
                Sink::Jsonl(out) => {
                    json_lines.clear();
                    serde_json::to_writer(&mut json_lines, &object)
                        .map_err(std::io::Error::other)?;
                    json_lines.push(b'\n');
                    out.write_all(&json_lines)?;
                }
            }
            position += 1;
            progress.advance(1);
        }
    }
    match &mut sink {
        Sink::Csv(w) => w.flush()?,
        Sink::Jsonl(out) => out.flush()?,
    }
    progress.finish();
    Ok(position)
}
