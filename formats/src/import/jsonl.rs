//! JSONL files: one JSON object per line with a text field and an optional label field. Each
//! text is one sample (its UTF-8 bytes).

use std::io::{BufRead as _, Read as _};
use std::path::Path;

use super::{Feed, FeedOutcome, ImportError, Job, MAX_SAMPLE_BYTES, Options, label_index};
use swarmlabel_store::dataset::manifest::{MediaType, Task};

pub(super) fn feed(
    path: &Path,
    labels: &[String],
    opts: &Options,
    feed: &mut Feed<'_>,
) -> FeedOutcome {
    let outcome = FeedOutcome {
        task: Some(Task::TextClassification),
        ..Default::default()
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(source) => {
            feed.send(Err(ImportError::Unreadable {
                path: path.to_owned(),
                source,
            }));
            return outcome;
        }
    };
    let mut reader = std::io::BufReader::new(file);
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        number += 1;
        let origin = || format!("{} line {number}", path.display());
        let read = (&mut reader)
            .take(MAX_SAMPLE_BYTES + 1)
            .read_until(b'\n', &mut line);
        match read {
            Ok(0) => break,
            Ok(_) => {}
            Err(source) => {
                feed.send(Err(ImportError::Unreadable {
                    path: path.to_owned(),
                    source,
                }));
                return outcome;
            }
        }
        if line.len() as u64 > MAX_SAMPLE_BYTES {
            feed.send(Err(ImportError::Malformed {
                origin: origin(),
                message: format!(
                    "the line is longer than {MAX_SAMPLE_BYTES} bytes; split the text"
                ),
            }));
            return outcome;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let job = sample(&line, labels, opts, origin).map(|(text, gold)| Job::Ready {
            origin: origin(),
            bytes: text.into_bytes(),
            media_type: MediaType::Text,
            gold,
        });
        if !feed.send(job) {
            return outcome;
        }
    }
    outcome
}

/// The text and gold label of one line: a JSON object with the text field and, optionally,
/// a label field naming a label of the set.
fn sample(
    line: &[u8],
    labels: &[String],
    opts: &Options,
    origin: impl Fn() -> String,
) -> Result<(String, Option<u16>), ImportError> {
    let label_field = opts.label_column.as_deref().unwrap_or("label");
    let malformed = |message: String| ImportError::Malformed {
        origin: origin(),
        message,
    };
    let object = match serde_json::from_slice::<serde_json::Value>(line) {
        Ok(serde_json::Value::Object(o)) => o,
        Ok(_) => {
            return Err(malformed(
                "the line is not a JSON object; write one object per line".into(),
            ));
        }
        Err(e) => {
            return Err(malformed(format!(
                "the line is not valid JSON ({e}); fix the line"
            )));
        }
    };
    let Some(serde_json::Value::String(text)) = object.get(&opts.text_field) else {
        return Err(malformed(format!(
            "the object has no string field '{}'; name the text field with --text-field",
            opts.text_field
        )));
    };
    let gold = match object.get(label_field) {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => label_index(labels, s, &origin)?,
        Some(serde_json::Value::Number(n)) => label_index(labels, &n.to_string(), &origin)?,
        Some(_) => {
            return Err(malformed(format!(
                "field '{label_field}' must be a string label from the label set"
            )));
        }
    };
    Ok((text.clone(), gold))
}
