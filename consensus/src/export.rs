//! Writing consensus labels and raw signed annotations as CSV or JSONL: the formats of
//! `swarmlabel export`.
//!
//! Consensus rows: `sample_id`, `label` (empty / null without a consensus label), `confidence`
//! (rounded to 4 decimals), `votes`, `skips`, `unsure`; and `file_name`, the sample's original
//! file relative to the imported folder, when the home knows the file names (the owner's home
//! of an image dataset, see `swarmlabel_store::dataset::names`).
//!
//! Raw rows, one per valid signed annotation: `sample_id`, `annotator` (ed25519 public key, hex),
//! `time_ms`, `kind` (`label`, `skip` or `unsure`), `label`, `suggestion` (the model's suggested
//! label when one was shown), `suggestion_confidence`, `signature` (64 bytes, hex), `seq` (the
//! record's place in its annotator's chain; 0 for a record made before chains, signed under
//! version 1). With the dataset id these fields are the whole signed annotation: anyone can
//! re-encode it (see `swarmlabel-crdt`'s README) and check the signature.

use std::collections::HashMap;
use std::io::{self, Write};

use serde::{Deserialize, Serialize};
use swarmlabel_crdt::{AnnotatorKey, SampleId, SignedAnnotation, Value};

use crate::summary::SampleConsensus;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CSV with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// One signed annotation, as exported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawAnnotation {
    /// The sample id (hex in JSON).
    pub sample_id: SampleId,
    /// The annotator's public key (hex in JSON).
    pub annotator: AnnotatorKey,
    /// When the annotator answered, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// `label`, `skip` or `unsure`.
    pub kind: String,
    /// The label's name when `kind` is `label`.
    pub label: Option<String>,
    /// The label the model suggested, when a suggestion was shown.
    pub suggestion: Option<String>,
    /// The model's confidence in its suggestion, in `[0, 1]`.
    pub suggestion_confidence: Option<f64>,
    /// The ed25519 signature, hex.
    pub signature: String,
    /// The record's place in its annotator's chain (0: a version-1 record).
    pub seq: u32,
}

impl RawAnnotation {
    /// The exported form of `signed`, naming labels from `labels` (an index outside it, which
    /// validation rules out, is written as `#INDEX`).
    pub fn new(signed: &SignedAnnotation, labels: &[String]) -> Self {
        let a = signed.annotation();
        let name = |l: u16| crate::label_name(labels, l);
        let (kind, label) = match a.value {
            Value::Label(l) => ("label", Some(name(l))),
            Value::Skip => ("skip", None),
            Value::Unsure => ("unsure", None),
        };
        RawAnnotation {
            sample_id: a.sample,
            annotator: a.annotator,
            time_ms: a.time_ms,
            kind: kind.into(),
            label,
            suggestion: a.suggestion.map(|s| name(s.label)),
            suggestion_confidence: a.suggestion.map(|s| round(s.probability())),
            signature: hex::encode(signed.signature()),
            seq: a.seq,
        }
    }
}

/// Rounds to 4 decimals, so exports do not carry EM's last-digit noise.
fn round(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn text(x: Option<f64>) -> String {
    x.map(|x| round(x).to_string()).unwrap_or_default()
}

#[derive(Serialize)]
struct ConsensusLine<'a> {
    sample_id: SampleId,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_name: Option<&'a str>,
    label: Option<&'a str>,
    confidence: Option<f64>,
    votes: u32,
    skips: u32,
    unsure: u32,
}

/// Writes consensus rows. Returns the number of rows.
///
/// `names` maps sample ids to original file names; when it is not empty the rows carry a
/// `file_name` (empty where a sample has none).
pub fn write_consensus(
    rows: &[SampleConsensus],
    names: &HashMap<SampleId, String>,
    format: Format,
    out: &mut dyn Write,
) -> io::Result<usize> {
    let with_names = !names.is_empty();
    let name_of = |r: &SampleConsensus| names.get(&r.sample).map(String::as_str);
    match format {
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            let mut header = vec!["sample_id"];
            if with_names {
                header.push("file_name");
            }
            header.extend(["label", "confidence", "votes", "skips", "unsure"]);
            w.write_record(&header)?;
            for r in rows {
                let mut record = vec![r.sample.to_hex()];
                if with_names {
                    record.push(name_of(r).unwrap_or_default().to_owned());
                }
                record.extend([
                    r.label.clone().unwrap_or_default(),
                    text(r.confidence),
                    r.votes.to_string(),
                    r.skips.to_string(),
                    r.unsure.to_string(),
                ]);
                w.write_record(&record)?;
            }
            w.flush()?;
        }
        Format::Jsonl => {
            for r in rows {
                let line = ConsensusLine {
                    sample_id: r.sample,
                    file_name: if with_names {
                        Some(name_of(r).unwrap_or_default())
                    } else {
                        None
                    },
                    label: r.label.as_deref(),
                    confidence: r.confidence.map(round),
                    votes: r.votes,
                    skips: r.skips,
                    unsure: r.unsure,
                };
                serde_json::to_writer(&mut *out, &line)?;
                out.write_all(b"\n")?;
            }
        }
    }
    Ok(rows.len())
}

/// Writes raw annotations. Returns the number of rows.
pub fn write_raw(rows: &[RawAnnotation], format: Format, out: &mut dyn Write) -> io::Result<usize> {
    match format {
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record([
                "sample_id",
                "annotator",
                "time_ms",
                "kind",
                "label",
                "suggestion",
                "suggestion_confidence",
                "signature",
                "seq",
            ])?;
            for r in rows {
                w.write_record([
                    r.sample_id.to_hex(),
                    r.annotator.to_hex(),
                    r.time_ms.to_string(),
                    r.kind.clone(),
                    r.label.clone().unwrap_or_default(),
                    r.suggestion.clone().unwrap_or_default(),
                    text(r.suggestion_confidence),
                    r.signature.clone(),
                    r.seq.to_string(),
                ])?;
            }
            w.flush()?;
        }
        Format::Jsonl => {
            for r in rows {
                serde_json::to_writer(&mut *out, r)?;
                out.write_all(b"\n")?;
            }
        }
    }
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn row(sample: u8, label: Option<&str>, confidence: Option<f64>) -> SampleConsensus {
        SampleConsensus {
            sample: SampleId([sample; 32]),
            label: label.map(Into::into),
            confidence,
            votes: 3,
            skips: 1,
            unsure: 0,
            tied: Vec::new(),
        }
    }

    #[test]
    fn consensus_csv_and_jsonl_quote_names_and_leave_missing_labels_empty() {
        let rows = [
            row(0xaa, Some("cat, big"), Some(0.987_654)),
            row(0xbb, None, None),
        ];
        let mut csv = Vec::new();
        write_consensus(&rows, &HashMap::new(), Format::Csv, &mut csv).unwrap();
        let (aa, bb) = ("aa".repeat(32), "bb".repeat(32));
        assert_eq!(
            String::from_utf8(csv).unwrap(),
            format!(
                "sample_id,label,confidence,votes,skips,unsure\n\
                 {aa},\"cat, big\",0.9877,3,1,0\n\
                 {bb},,,3,1,0\n"
            )
        );
        let mut jsonl = Vec::new();
        write_consensus(&rows, &HashMap::new(), Format::Jsonl, &mut jsonl).unwrap();
        assert_eq!(
            String::from_utf8(jsonl).unwrap(),
            format!(
                "{{\"sample_id\":\"{aa}\",\"label\":\"cat, big\",\"confidence\":0.9877,\"votes\":3,\"skips\":1,\"unsure\":0}}\n\
                 {{\"sample_id\":\"{bb}\",\"label\":null,\"confidence\":null,\"votes\":3,\"skips\":1,\"unsure\":0}}\n"
            )
        );
    }
}
