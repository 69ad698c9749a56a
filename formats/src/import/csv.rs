//! CSV files: a header row, numeric feature columns and an optional label column. Each row is one
//! sample encoded as [`MediaType::Row`], so the same values always hash the same ("1" and "1.0"
//! are one sample).

use std::path::Path;

use super::{Feed, FeedOutcome, ImportError, Job, label_index};
use swarmlabel_store::dataset::manifest::{
    MAX_FEATURE_NAME_BYTES, MAX_FEATURES, MediaType, Task, encode_row,
};

pub(super) fn feed(
    path: &Path,
    labels: &[String],
    label_column: Option<&str>,
    feed: &mut Feed<'_>,
) -> FeedOutcome {
    let mut outcome = FeedOutcome::default();
    let unreadable = |source| ImportError::Unreadable {
        path: path.to_owned(),
        source,
    };
    let mut reader = match csv::ReaderBuilder::new().has_headers(true).from_path(path) {
        Ok(r) => r,
        Err(e) => {
            feed.send(Err(csv_error(path, e, 0, unreadable)));
            return outcome;
        }
    };
    let header: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(|c| c.trim().to_owned()).collect(),
        Err(e) => {
            feed.send(Err(csv_error(path, e, 0, unreadable)));
            return outcome;
        }
    };
    let (label_col, features) = match columns(path, &header, label_column, &mut outcome) {
        Ok(columns) => columns,
        Err(e) => {
            feed.send(Err(e));
            return outcome;
        }
    };
    outcome.task = Some(Task::TabularClassification { features });

    let mut record = csv::StringRecord::new();
    let mut values = Vec::with_capacity(header.len());
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                feed.send(Err(csv_error(path, e, header.len() as u64, unreadable)));
                return outcome;
            }
        }
        let line = record.position().map_or(0, |p| p.line());
        let row = Row {
            path,
            header: &header,
            label_col,
            line,
        };
        let job = row
            .parse(&record, labels, &mut values)
            .map(|gold| Job::Ready {
                origin: format!("{} line {line}", path.display()),
                bytes: encode_row(&values),
                media_type: MediaType::Row,
                gold,
            });
        if !feed.send(job) {
            return outcome;
        }
    }
    outcome
}

/// The label column (named, or `label` if there is one, with a warning) and the feature
/// columns, checked: at least one, within the bounds, unique printable names.
fn columns(
    path: &Path,
    header: &[String],
    label_column: Option<&str>,
    outcome: &mut FeedOutcome,
) -> Result<(Option<usize>, Vec<String>), ImportError> {
    let malformed = |message: String| ImportError::Malformed {
        origin: format!("{} line 1", path.display()),
        message,
    };
    if header.iter().all(String::is_empty) {
        return Err(ImportError::Empty {
            path: path.to_owned(),
            detail: "the file is empty; a CSV dataset needs a header row and one row per sample"
                .into(),
        });
    }
    let label_col = match label_column {
        Some(name) => Some(header.iter().position(|c| c == name).ok_or_else(|| {
            malformed(format!(
                "there is no column '{name}' for --label-column; the columns are {}",
                header.join(",")
            ))
        })?),
        None => {
            let found = header.iter().position(|c| c == "label");
            if found.is_some() {
                outcome.warnings.push(
                    "using column 'label' for gold labels (name another with --label-column)"
                        .into(),
                );
            }
            found
        }
    };
    let features: Vec<String> = header
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != label_col)
        .map(|(_, c)| c.clone())
        .collect();
    if features.is_empty() {
        return Err(malformed(
            "there are no feature columns besides the label column".into(),
        ));
    }
    if features.len() > MAX_FEATURES || features.iter().any(|f| f.len() > MAX_FEATURE_NAME_BYTES) {
        return Err(malformed(format!(
            "at most {MAX_FEATURES} feature columns with names of at most {MAX_FEATURE_NAME_BYTES} bytes are supported"
        )));
    }
    for (i, f) in features.iter().enumerate() {
        if f.is_empty() || features[..i].contains(f) || f.chars().any(char::is_control) {
            return Err(malformed(format!(
                "column name {f:?} is empty, repeated or holds control characters; give every \
                 column a unique printable name"
            )));
        }
    }
    Ok((label_col, features))
}

/// Where a row is, for reading it.
struct Row<'a> {
    path: &'a Path,
    header: &'a [String],
    label_col: Option<usize>,
    line: u64,
}

impl Row<'_> {
    /// Reads `record`'s feature values into `values` (finite numbers only) and returns its
    /// gold label, if its label column names one.
    fn parse(
        &self,
        record: &csv::StringRecord,
        labels: &[String],
        values: &mut Vec<f64>,
    ) -> Result<Option<u16>, ImportError> {
        values.clear();
        let mut gold = None;
        for (i, field) in record.iter().enumerate() {
            if Some(i) == self.label_col {
                let origin = || format!("{} line {}", self.path.display(), self.line);
                gold = label_index(labels, field, origin)?;
                continue;
            }
            match field.trim().parse::<f64>() {
                Ok(v) if v.is_finite() => values.push(v),
                _ => {
                    return Err(ImportError::NotNumeric {
                        path: self.path.to_owned(),
                        line: self.line,
                        column: self.header[i].clone(),
                        value: field.to_owned(),
                    });
                }
            }
        }
        Ok(gold)
    }
}

fn csv_error(
    path: &Path,
    e: csv::Error,
    expected: u64,
    unreadable: impl FnOnce(std::io::Error) -> ImportError,
) -> ImportError {
    let line = e.position().map_or(0, |p| p.line());
    match e.into_kind() {
        csv::ErrorKind::UnequalLengths {
            len, expected_len, ..
        } => ImportError::RaggedRow {
            path: path.to_owned(),
            line,
            fields: len,
            expected: if expected > 0 { expected } else { expected_len },
        },
        csv::ErrorKind::Io(source) => unreadable(source),
        csv::ErrorKind::Utf8 { .. } => ImportError::Malformed {
            origin: format!("{} line {line}", path.display()),
            message: "the row is not valid UTF-8; save the file as UTF-8".into(),
        },
        other => ImportError::Malformed {
            origin: format!("{} line {line}", path.display()),
            message: format!("{other:?}"),
        },
    }
}
