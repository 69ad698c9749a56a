//! Checks of what the owner gives an import: the label set, the name and description, and a
//! sample's label against the label set.

use super::{ImportError, Options};
use swarmlabel_store::dataset::manifest::{
    MAX_DESCRIPTION_BYTES, MAX_INSTRUCTIONS_BYTES, MAX_LABEL_BYTES, MAX_LABELS, MAX_NAME_BYTES,
};

/// Checks a label set: non-empty, each name non-empty, short and unique. Names are trimmed.
pub fn validate_labels(labels: &[String]) -> Result<Vec<String>, ImportError> {
    let labels: Vec<String> = labels.iter().map(|l| l.trim().to_owned()).collect();
    if labels.is_empty() || labels.iter().all(String::is_empty) {
        return Err(ImportError::Labels(
            "the label set is empty; give it with --labels, for example --labels cat,dog,other"
                .into(),
        ));
    }
    if labels.iter().any(String::is_empty) {
        return Err(ImportError::Labels(
            "the label set has an empty name; check --labels for a doubled or trailing comma"
                .into(),
        ));
    }
    if labels.len() > MAX_LABELS {
        return Err(ImportError::Labels(format!(
            "the label set has {} labels; at most {MAX_LABELS} are supported",
            labels.len()
        )));
    }
    for (i, l) in labels.iter().enumerate() {
        if l.len() > MAX_LABEL_BYTES || l.chars().any(char::is_control) {
            return Err(ImportError::Labels(format!(
                "the label '{l}' is too long or has control characters; labels are at most \
                 {MAX_LABEL_BYTES} bytes of printable text"
            )));
        }
        if labels[..i].contains(l) {
            return Err(ImportError::Labels(format!(
                "the label '{l}' appears twice in the label set; name each label once"
            )));
        }
    }
    Ok(labels)
}

pub(super) fn validate_metadata(opts: &Options) -> Result<(), ImportError> {
    let name = opts.name.trim();
    if name.is_empty() || name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(ImportError::Metadata(format!(
            "the dataset name must be 1 to {MAX_NAME_BYTES} bytes of printable text; give one \
             with --name"
        )));
    }
    let text = |s: &str| s.chars().any(|c| c.is_control() && c != '\n' && c != '\t');
    if text(&opts.description) || text(&opts.instructions) {
        return Err(ImportError::Metadata(
            "the description or the instructions hold control characters (other than line \
             breaks and tabs); remove them"
                .into(),
        ));
    }
    if opts.description.len() > MAX_DESCRIPTION_BYTES {
        return Err(ImportError::Metadata(format!(
            "the description is {} bytes; at most {MAX_DESCRIPTION_BYTES} are allowed",
            opts.description.len()
        )));
    }
    if opts.instructions.len() > MAX_INSTRUCTIONS_BYTES {
        return Err(ImportError::Metadata(format!(
            "the instructions are {} bytes; at most {MAX_INSTRUCTIONS_BYTES} are allowed: shorten them",
            opts.instructions.len()
        )));
    }
    Ok(())
}

pub(super) fn label_index(
    labels: &[String],
    value: &str,
    origin: impl FnOnce() -> String,
) -> Result<Option<u16>, ImportError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    match labels.iter().position(|l| l == value) {
        Some(i) => Ok(Some(i as u16)),
        None => Err(ImportError::UnknownLabel {
            origin: origin(),
            label: value.to_owned(),
            labels: labels.join(","),
        }),
    }
}
