//! `swarmlabel dataset …`.

use crate::output::out;
use std::path::Path;

use anyhow::Context as _;

use swarmlabel_formats::export::{self, ExportFormat};
use swarmlabel_formats::import::{self, Format, Options};
use swarmlabel_formats::shapes;
use swarmlabel_store::dataset::manifest::Task;
use swarmlabel_store::dataset::{Listed, verify};

use crate::args::{self, CreateArgs, DatasetCommand, GenerateKind};
use crate::progress::Bar;
use crate::{Outcome, open};

pub(crate) fn run(cmd: DatasetCommand, home_path: &Path, quiet: bool) -> anyhow::Result<Outcome> {
    match cmd {
        DatasetCommand::Create(a) => create(a, home_path, quiet),
        DatasetCommand::Ls { json } => list(home_path, json, quiet),
        DatasetCommand::Status { id, json } => crate::status::status(home_path, &id, json),
        DatasetCommand::Show { id, json } => show(home_path, &id, json),
        DatasetCommand::Verify { id, json } => verify_all(home_path, &id, json, quiet),
        DatasetCommand::Rm { id, yes, json } => remove(home_path, &id, yes, json, quiet),
        DatasetCommand::Export { id, format, out } => {
            export_samples(home_path, &id, format, out.as_deref(), quiet)
        }
        DatasetCommand::Fetch { id, json } => fetch(home_path, &id, json, quiet),
        DatasetCommand::Ban {
            id,
            keys,
            reason,
            lift,
        } => {
            let change = if lift {
                serde_json::json!({ "change": "unban", "keys": keys })
            } else {
                serde_json::json!({ "change": "ban", "keys": keys, "reason": reason })
            };
            policy(home_path, &id, Some(change), false, quiet)
        }
        DatasetCommand::Admit { id, keys, remove } => {
            let change = serde_json::json!({
                "change": if remove { "unadmit" } else { "admit" },
                "keys": keys,
            });
            policy(home_path, &id, Some(change), false, quiet)
        }
        DatasetCommand::Policy { id, open, json } => {
            let change = open.then(|| serde_json::json!({ "change": "open" }));
            policy(home_path, &id, change, json, quiet)
        }
        DatasetCommand::Search { text, json } => search(text, home_path, json, quiet),
        DatasetCommand::Generate {
            kind: GenerateKind::Shapes,
            count,
            out,
            seed,
        } => {
            shapes::generate(&out, count, seed, &Bar::new(quiet))?;
            if !quiet {
                out!("wrote {count} images to {}", out.display());
                out!(
                    "import them with: swarmlabel dataset create {} --name shapes --labels {}",
                    out.display(),
                    shapes::CLASSES.join(",")
                );
            }
            Ok(Outcome::Ok)
        }
    }
}

/// `swarmlabel dataset ls [--json]`: the datasets of this home; a damaged listing is named, never hides the others.
fn list(home_path: &Path, json: bool, quiet: bool) -> anyhow::Result<Outcome> {
    let home = open(home_path)?;
    let (listed, damaged) = swarmlabel_store::Catalog::of(&home).list_checked()?;
    // One damaged listing never hides the others; each is named on stderr.
    for e in &damaged {
        eprintln!("damaged: {e}");
    }
    if json {
        let all: Vec<_> = listed.iter().map(summary).collect();
        out!("{}", serde_json::to_string_pretty(&all)?);
    } else if listed.is_empty() && damaged.is_empty() {
        if !quiet {
            out!(
                "no datasets yet; create one with `swarmlabel dataset create PATH --name NAME --labels a,b`"
            );
        }
    } else {
        out!(
            "{:<16}  {:<24}  {:<6}  {:>9}  {:>9}  LABELS",
            "ID",
            "NAME",
            "TASK",
            "SAMPLES",
            "GOLD"
        );
        for l in &listed {
            let r = l.root.root();
            out!(
                "{:<16}  {:<24}  {:<6}  {:>9}  {:>9}  {}",
                &l.id.to_string()[..16],
                r.name,
                r.task.kind(),
                r.sample_count,
                r.gold_count,
                r.labels.join(",")
            );
        }
    }
    Ok(if damaged.is_empty() {
        Outcome::Ok
    } else {
        Outcome::Failed
    })
}

/// `swarmlabel dataset show ID [--json]`.
fn show(home_path: &Path, id: &str, json: bool) -> anyhow::Result<Outcome> {
    let home = open(home_path)?;
    let catalog = swarmlabel_store::Catalog::of(&home);
    let listed = catalog.get(&catalog.resolve(id)?)?;
    if json {
        out!("{}", serde_json::to_string_pretty(&summary(&listed))?);
    } else {
        let r = listed.root.root();
        out!("id:          {}", listed.id);
        out!("name:        {}", r.name);
        if !r.description.is_empty() {
            out!("description: {}", r.description);
        }
        if !r.instructions.is_empty() {
            out!("instructions:");
            for line in r.instructions.lines() {
                out!("  {line}");
            }
        }
        out!("task:        {}", task_text(&r.task));
        out!("labels:      {}", r.labels.join(","));
        out!("redundancy:  {} label(s) wanted per sample", r.redundancy);
        out!(
            "samples:     {} ({} with gold labels)",
            r.sample_count,
            r.gold_count
        );
        out!("bytes:       {}", r.total_bytes);
        out!("pages:       {}", r.pages.len());
        out!("owner:       {} ({})", r.owner, peer_text(&listed));
        let created = std::time::UNIX_EPOCH + std::time::Duration::from_millis(r.created_at_ms);
        out!(
            "created:     {}",
            humantime::format_rfc3339_seconds(created)
        );
    }
    Ok(Outcome::Ok)
}

/// `swarmlabel dataset verify ID [--json]`: the manifest's signature and every sample's hash.
fn verify_all(home_path: &Path, id: &str, json: bool, quiet: bool) -> anyhow::Result<Outcome> {
    let home = open(home_path)?;
    let catalog = swarmlabel_store::Catalog::of(&home);
    let id = catalog.resolve(id)?;
    let report = verify::verify(&catalog, &id, &Bar::new(quiet || json))?;
    if json {
        out!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for p in &report.problems {
            out!("{p}");
        }
        if report.ok() {
            if !quiet {
                out!(
                    "dataset {id}: signature valid, all {} samples intact",
                    report.samples
                );
            }
        } else {
            eprintln!(
                "error: dataset {id} is damaged: {} problems, {} of {} samples intact; fetch the damaged samples again or re-import the dataset",
                report.problems.len(),
                report.intact,
                report.samples
            );
        }
    }
    Ok(if report.ok() {
        Outcome::Ok
    } else {
        Outcome::Failed
    })
}

/// `swarmlabel dataset export ID [--format F] [--out FILE]`: the samples.
fn export_samples(
    home_path: &Path,
    id: &str,
    format: args::ExportFormat,
    out: Option<&Path>,
    quiet: bool,
) -> anyhow::Result<Outcome> {
    let home = open(home_path)?;
    let catalog = swarmlabel_store::Catalog::of(&home);
    let id = catalog.resolve(id)?;
    let format = match format {
        args::ExportFormat::Csv => ExportFormat::Csv,
        args::ExportFormat::Jsonl => ExportFormat::Jsonl,
    };
    // The bar draws on stderr, and only when the samples go to a file.
    let progress = Bar::new(quiet || out.is_none());
    let n = crate::output::write_out(out, |w| {
        Ok(export::export(&catalog, &id, format, w, &progress)?)
    })?;
    if let Some(path) = out.filter(|_| !quiet) {
        eprintln!("wrote {n} samples to {}", path.display());
    }
    Ok(Outcome::Ok)
}

/// `swarmlabel dataset fetch ID [--json]`: the running node fetches every sample from peers.
fn fetch(home_path: &Path, id: &str, json: bool, quiet: bool) -> anyhow::Result<Outcome> {
    let client = crate::client::Client::connect(&open(home_path)?)?;
    let report: serde_json::Value =
        client.post("/api/v1/fetch", serde_json::json!({ "dataset": id.trim() }))?;
    if json {
        out!("{}", serde_json::to_string_pretty(&report)?);
    } else if !quiet {
        out!(
            "fetched dataset {}: {} samples wanted, {} blobs downloaded ({} bytes), {} already stored, {} rejected",
            report["dataset"].as_str().unwrap_or_default(),
            report["samples_wanted"],
            report["fetched"],
            report["bytes"],
            report["already_stored"],
            report["rejected"]
        );
    }
    Ok(Outcome::Ok)
}

/// `swarmlabel dataset search [TEXT] [--json]`: datasets heard of on the network.
fn search(
    text: Option<String>,
    home_path: &Path,
    json: bool,
    quiet: bool,
) -> anyhow::Result<Outcome> {
    let client = crate::client::Client::connect(&open(home_path)?)?;
    let q: String = text
        .unwrap_or_default()
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let known: Vec<serde_json::Value> = client.get(&format!("/api/v1/datasets/known?q={q}"))?;
    if json {
        out!("{}", serde_json::to_string_pretty(&known)?);
    } else if known.is_empty() {
        if !quiet {
            out!(
                "no matching dataset heard of yet (announcements arrive within a minute of connecting)"
            );
        }
    } else {
        out!(
            "{:<16}  {:<24}  {:<6}  {:>9}  {:>9}  LABELS",
            "ID",
            "NAME",
            "TASK",
            "SAMPLES",
            "PROVIDERS"
        );
        for k in &known {
            let labels: Vec<&str> = k["labels"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| l.as_str())
                .collect();
            out!(
                "{:<16}  {:<24}  {:<6}  {:>9}  {:>9}  {}",
                k["id"]
                    .as_str()
                    .unwrap_or_default()
                    .get(..16)
                    .unwrap_or_default(),
                k["name"].as_str().unwrap_or_default(),
                k["task"].as_str().unwrap_or_default(),
                k["samples"],
                k["providers"].as_array().map_or(0, Vec::len),
                labels.join(",")
            );
        }
    }
    Ok(Outcome::Ok)
}

fn create(a: CreateArgs, home_path: &Path, quiet: bool) -> anyhow::Result<Outcome> {
    let home = open(home_path)?;
    let identity = home.identity()?;
    let instructions = match &a.instructions {
        Some(path) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("cannot read the instructions {}", path.display()))?;
            String::from_utf8(bytes).map_err(|_| {
                anyhow::anyhow!(
                    "the instructions {} are not UTF-8 text; save them as UTF-8 markdown",
                    path.display()
                )
            })?
        }
        None => String::new(),
    };
    let opts = Options {
        name: a.name,
        description: a.description,
        instructions,
        labels: if a.labels.is_empty() {
            class_folders(&a.path)?
        } else {
            a.labels
        },
        format: match a.format {
            args::Format::Auto => Format::Auto,
            args::Format::Images => Format::Images,
            args::Format::Csv => Format::Csv,
            args::Format::Jsonl => Format::Jsonl,
        },
        label_column: a.label_column,
        text_field: a.text_field,
        strict: a.strict,
        created_at_ms: None,
        redundancy: a.redundancy,
        private_gold: a.private_gold,
    };
    let report = import::import(&home, &identity, &a.path, &opts, &Bar::new(quiet || a.json))?;
    if !quiet {
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
        if report.skipped > report.warnings.len() as u64 {
            eprintln!(
                "warning: {} files skipped in all (not PNG or JPEG)",
                report.skipped
            );
        }
        for d in &report.duplicate_examples {
            eprintln!("duplicate: {d}");
        }
    }
    let root = report.root.root();
    if a.json {
        let mut value = summary(&Listed {
            id: report.id,
            root: report.root.clone(),
        });
        value["duplicates"] = report.duplicates.into();
        value["skipped"] = report.skipped.into();
        value["already_stored"] = report.existing_blobs.into();
        value["private_gold"] = report.private_gold.into();
        out!("{}", serde_json::to_string_pretty(&value)?);
    } else if quiet {
        out!("{}", report.id);
    } else {
        out!("created dataset {}", report.id);
        out!(
            "  {}: {} samples ({} with gold labels), {} bytes, {} duplicates stored once, {} already stored",
            root.name,
            root.sample_count,
            root.gold_count,
            root.total_bytes,
            report.duplicates,
            report.existing_blobs
        );
        if report.private_gold > 0 {
            out!(
                "  {} gold labels kept private: out of the published pages, in {} only",
                report.private_gold,
                swarmlabel_store::Catalog::of(&home)
                    .private_gold_path(&report.id)
                    .display()
            );
        }
    }
    Ok(Outcome::Ok)
}

fn summary(l: &Listed) -> serde_json::Value {
    let r = l.root.root();
    let features = match &r.task {
        Task::TabularClassification { features } => Some(features.clone()),
        _ => None,
    };
    serde_json::json!({
        "id": l.id.to_string(),
        "name": r.name,
        "description": r.description,
        "instructions": r.instructions,
        "task": r.task.kind(),
        "features": features,
        "labels": r.labels,
        "redundancy": r.redundancy,
        "samples": r.sample_count,
        "gold": r.gold_count,
        "bytes": r.total_bytes,
        "pages": r.pages.len(),
        "owner": r.owner.to_hex(),
        "owner_peer_id": peer_text(l),
        "created_at_ms": r.created_at_ms,
    })
}

fn peer_text(l: &Listed) -> String {
    swarmlabel_store::identity::peer_id_of(&l.root.root().owner)
        .map_or_else(|| "invalid key".into(), |p| p.to_string())
}

fn task_text(task: &Task) -> String {
    match task {
        Task::ImageClassification => "image classification".into(),
        Task::TabularClassification { features } => {
            format!(
                "classification of numeric rows ({} features)",
                features.len()
            )
        }
        Task::TextClassification => "text classification".into(),
    }
}

/// Applies `change` to the policy of dataset `id` through the running node (or only shows it),
/// and prints the policy in force.
fn policy(
    home_path: &std::path::Path,
    id: &str,
    change: Option<serde_json::Value>,
    json: bool,
    quiet: bool,
) -> anyhow::Result<Outcome> {
    let home = open(home_path)?;
    let catalog = swarmlabel_store::Catalog::of(&home);
    let id = catalog.resolve(id)?;
    let client = crate::client::Client::connect(&home)?;
    let path = format!("/api/v1/datasets/{id}/policy");
    let view: serde_json::Value = match change {
        Some(change) => client.post(&path, change)?,
        None => client.get(&path)?,
    };
    if json {
        out!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(Outcome::Ok);
    }
    if quiet {
        return Ok(Outcome::Ok);
    }
    let empty = Vec::new();
    let allowed = view["allowed"].as_array().unwrap_or(&empty);
    let banned = view["banned"].as_array().unwrap_or(&empty);
    match view["admission"].as_str() {
        Some("allowlist") => out!(
            "dataset {id}: policy version {}, only {} admitted keys may label",
            view["version"],
            allowed.len()
        ),
        _ => out!(
            "dataset {id}: policy version {}, open to anyone not banned",
            view["version"]
        ),
    }
    for key in allowed {
        out!("  admitted {}", key.as_str().unwrap_or_default());
    }
    for ban in banned {
        let reason = ban["reason"].as_str().unwrap_or_default();
        out!(
            "  banned   {}{}",
            ban["key"].as_str().unwrap_or_default(),
            if reason.is_empty() {
                String::new()
            } else {
                format!(" ({reason})")
            }
        );
    }
    Ok(Outcome::Ok)
}

fn remove(
    home_path: &Path,
    id: &str,
    yes: bool,
    json: bool,
    quiet: bool,
) -> anyhow::Result<Outcome> {
    use swarmlabel_node::remove;
    let home = open(home_path)?;
    // A listed dataset by prefix; a full id also finds the leftovers of an interrupted removal.
    let dataset = swarmlabel_store::Catalog::of(&home)
        .resolve(id)
        .or_else(|e| id.parse::<swarmlabel_store::DatasetId>().map_err(|_| e))?;
    if !yes {
        let plan = remove::plan(&home, &dataset);
        if plan.paths.is_empty() {
            return Err(remove::RemoveError::NotStored(dataset).into());
        }
        anyhow::bail!(
            "removing dataset {dataset} deletes its listing, {} labels and its model registry from this home; nothing was removed: add --yes to remove it",
            plan.annotations
        );
    }
    let _alone = home.try_lock_exclusive()?;
    let removed = remove::remove(&home, &dataset, &_alone)?;
    if json {
        out!("{}", serde_json::to_string(&removed)?);
    } else if !quiet {
        out!(
            "removed dataset {dataset}: {} labels, {} files and folders, {} samples and pages no other dataset used ({} bytes)",
            removed.annotations,
            removed.paths.len(),
            removed.gc.removed_blobs,
            removed.gc.removed_bytes
        );
    }
    Ok(Outcome::Ok)
}

/// The label set of a folder of images whose sub-folders name the classes: the sub-folders that
/// hold at least one file, sorted. Anything else needs `--labels`.
fn class_folders(path: &Path) -> anyhow::Result<Vec<String>> {
    let ask = || {
        anyhow::anyhow!(
            "give the label set with --labels a,b,c (only a folder of images with one sub-folder per class names its labels itself)"
        )
    };
    if !path.is_dir() {
        return Err(ask());
    }
    let mut names = Vec::new();
    for entry in
        std::fs::read_dir(path).with_context(|| format!("cannot read {}", path.display()))?
    {
        let entry = entry.with_context(|| format!("cannot read {}", path.display()))?;
        let holds_files = entry.path().is_dir()
            && std::fs::read_dir(entry.path())
                .map(|mut d| d.any(|e| e.is_ok_and(|e| e.path().is_file())))
                .unwrap_or(false);
        if holds_files && let Some(name) = entry.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    names.sort();
    if names.is_empty() {
        return Err(ask());
    }
    Ok(names)
}
