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
    let label_field = opts.label_column.as_deref().unwrap_or("label");
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
        let malformed = |message: String| ImportError::Malformed {
            origin: origin(),
            message,
        };
        let object = match serde_json::from_slice::<serde_json::Value>(&line) {
            Ok(serde_json::Value::Object(o)) => o,
            Ok(_) => {
                feed.send(Err(malformed(
                    "the line is not a JSON object; write one object per line".into(),
                )));
                return outcome;
            }
            Err(e) => {
                feed.send(Err(malformed(format!(
                    "the line is not valid JSON ({e}); fix the line"
                ))));
                return outcome;
            }
        };
        let Some(serde_json::Value::String(text)) = object.get(&opts.text_field) else {
            feed.send(Err(malformed(format!(
                "the object has no string field '{}'; name the text field with --text-field",
                opts.text_field
            ))));
            return outcome;
        };
        let gold = match object.get(label_field) {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => match label_index(labels, s, origin) {
                Ok(g) => g,
                Err(e) => {
                    feed.send(Err(e));
                    return outcome;
                }
            },
            Some(serde_json::Value::Number(n)) => match label_index(labels, &n.to_string(), origin)
            {
                Ok(g) => g,
                Err(e) => {
                    feed.send(Err(e));
                    return outcome;
                }
            },
            Some(_) => {
                feed.send(Err(malformed(format!(
                    "field '{label_field}' must be a string label from the label set"
                ))));
                return outcome;
            }
        };
        let job = Job::Ready {
            origin: origin(),
            bytes: text.as_bytes().to_vec(),
            media_type: MediaType::Text,
            gold,
        };
        if !feed.send(Ok(job)) {
            return outcome;
        }
    }
    outcome
}
