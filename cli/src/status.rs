//! `swarmlabel dataset status ID`: the owner's view of the human–AI loop in the terminal:
//! progress per class, coverage against the redundancy target, the merged model's learning
//! curve, and the annotators by reliability with what the screening flags. It reads the running
//! node's label statistics, consensus and progress.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};
use swarmlabel_consensus::{SampleConsensus, Stats};

use crate::client::Client;
use crate::output::out;
use crate::{Outcome, open};

pub(crate) fn status(home_path: &Path, id: &str, json_out: bool) -> anyhow::Result<Outcome> {
    let home = open(home_path)?;
    let catalog = swarmlabel_store::Catalog::of(&home);
    let listed = catalog.get(&catalog.resolve(id)?)?;
    let id = listed.id.to_string();
    let root = listed.root.root();
    let target = root.redundancy.max(1);
    let client = Client::connect(&home)?;
    let stats: Stats = client.get(&format!("/api/v1/datasets/{id}/labels/stats"))?;
    let consensus: Value = client.get(&format!("/api/v1/datasets/{id}/labels/consensus"))?;
    let progress: Value = client.get(&format!("/api/v1/datasets/{id}/progress"))?;
    let samples: Vec<SampleConsensus> = serde_json::from_value(consensus["samples"].clone())?;

    let mut per_class: BTreeMap<&str, u64> = root.labels.iter().map(|l| (l.as_str(), 0)).collect();
    for s in &samples {
        if let Some(n) = s.label.as_deref().and_then(|l| per_class.get_mut(l)) {
            *n += 1;
        }
    }
    let at_target = samples.iter().filter(|s| s.votes >= target).count() as u64;
    let total = root.sample_count;
    let view = json!({
        "dataset": id,
        "name": root.name,
        "samples": total,
        "redundancy_target": target,
        "coverage": {
            "at_target": at_target,
            "below_target": total.saturating_sub(at_target),
            "share": if total == 0 { 0.0 } else { at_target as f64 / total as f64 },
        },
        "classes": root.labels.iter().map(|l| json!({
            "label": l, "consensus": per_class.get(l.as_str()).copied().unwrap_or(0),
        })).collect::<Vec<_>>(),
        "learning_curve": progress["accuracy"],
        "model": progress["model"],
        "annotators": stats.annotators,
        "flagged": stats.annotators.iter().filter(|a| a.flag.is_some()).count(),
    });
    if json_out {
        out!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(Outcome::Ok);
    }
    out!("dataset {id} ({})", root.name);
    out!(
        "coverage: {at_target} of {total} samples have the {target} label(s) wanted ({:.0} %)",
        view["coverage"]["share"].as_f64().unwrap_or(0.0) * 100.0
    );
    out!("\nconsensus labels per class:");
    let most = per_class.values().copied().max().unwrap_or(0).max(1);
    for (label, n) in &per_class {
        let bar = "#".repeat(((n * 30).div_ceil(most)) as usize);
        out!("  {label:<16} {n:>6}  {bar}");
    }
    out!("\nlearning curve of the model (labels: accuracy on labels it had not seen):");
    let curve = progress["accuracy"].as_array().cloned().unwrap_or_default();
    if curve.is_empty() {
        out!("  no training round measured yet");
    }
    for point in curve.iter().rev().take(10).rev() {
        out!(
            "  {:>6}: {:.1} %",
            point["labels"],
            point["accuracy"].as_f64().unwrap_or(0.0) * 100.0
        );
    }
    out!("\nannotators, most reliable first:");
    for (rank, a) in stats.annotators.iter().enumerate() {
        let reliability = a
            .reliability
            .map_or_else(|| "-".into(), |r| format!("{r:.3}"));
        let flag = a.flag.as_ref().map_or_else(String::new, |f| {
            format!("  FLAGGED {}: {}", f.kind, f.reason)
        });
        out!(
            "  {:>3}  {}  reliability {reliability}  votes {}{flag}",
            rank + 1,
            a.annotator,
            a.votes
        );
    }
    let flagged = view["flagged"].as_u64().unwrap_or(0);
    if flagged > 0 {
        out!(
            "\n{flagged} flagged: look at their answers, and ban with `swarmlabel dataset ban {id} KEY --reason \"...\"` if you agree"
        );
    }
    Ok(Outcome::Ok)
}
