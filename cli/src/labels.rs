//! `swarmlabel labels --stats` and `swarmlabel export`: what a dataset's labels add up to, from
//! the running node. The numbers and the file formats are `swarmlabel_consensus`'s.

use crate::output::out;
use std::collections::HashMap;
use std::path::Path;
use swarmlabel_crdt::SampleId;

use anyhow::Context as _;

use serde::Deserialize;
use swarmlabel_consensus::export::{self, Format, RawAnnotation};
use swarmlabel_consensus::{Coefficient, SampleConsensus, Stats};

use crate::args::{ConsensusMethod, ExportArgs, LabelsFormat};
use crate::client::Client;
use crate::{Outcome, open};

fn method_name(method: ConsensusMethod) -> &'static str {
    match method {
        ConsensusMethod::DawidSkene => "dawid-skene",
        ConsensusMethod::Majority => "majority",
    }
}

/// The full dataset id of `id` (a prefix is enough), and a client of the running node.
fn connect(home_path: &Path, id: &str) -> anyhow::Result<(String, Client)> {
    let home = open(home_path)?;
    let id = swarmlabel_store::Catalog::of(&home)
        .resolve(id)?
        .to_string();
    Ok((id, Client::connect(&home)?))
}

pub(crate) fn stats(
    home_path: &Path,
    id: &str,
    method: ConsensusMethod,
    json: bool,
) -> anyhow::Result<Outcome> {
    let (id, client) = connect(home_path, id)?;
    let path = format!(
        "/api/v1/datasets/{id}/labels/stats?method={}",
        method_name(method)
    );
    if json {
        let value: serde_json::Value = client.get(&path)?;
        out!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(Outcome::Ok);
    }
    let stats: Stats = client.get(&path)?;
    print!("{}", table(&id, &stats));
    Ok(Outcome::Ok)
}

fn coefficient(c: &Coefficient) -> String {
    match (c.value, &c.unavailable) {
        (Some(v), _) => format!("{v:.3}"),
        (None, Some(why)) => format!("not given: {why}"),
        (None, None) => "not given".into(),
    }
}

fn percent(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{:.0}%", x * 100.0))
}

/// The human-readable form of `stats`.
fn table(id: &str, stats: &Stats) -> String {
    let c = &stats.counts;
    let r = &c.rejected;
    let mut out = format!("dataset {id}\n");
    if let Some(note) = &stats.note {
        out += &format!("note: {note}\n");
    }
    out += &format!(
        "samples annotated  {:>8}  ({} with a label vote, {} with a consensus label by {}, {} with a gold label)\n",
        c.samples_annotated,
        c.samples_labelled,
        c.samples_with_consensus,
        stats.method,
        c.gold_samples_labelled
    );
    out += &format!(
        "annotations        {:>8}  ({} votes, {} skips, {} unsure) by {} annotators\n",
        c.annotations, c.votes, c.skips, c.unsure, c.annotators
    );
    let reasons: Vec<String> = [
        ("malformed", r.malformed),
        ("wrong dataset", r.wrong_dataset),
        ("wrong slot", r.wrong_slot),
        ("unknown label", r.unknown_label),
        ("bad signature", r.bad_signature),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(why, n)| format!("{n} {why}"))
    .collect();
    out += &format!("ignored            {:>8}", r.total);
    if !reasons.is_empty() {
        out += &format!("  ({})", reasons.join(", "));
    }
    out += "\n";
    if c.conflicted_slots > 0 {
        out += &format!(
            "concurrent edits   {:>8}  (resolved to the latest)\n",
            c.conflicted_slots
        );
    }
    out += &format!(
        "Krippendorff's alpha    {}\n",
        coefficient(&stats.agreement.krippendorff_alpha)
    );
    out += &format!(
        "Fleiss' kappa           {}\n",
        coefficient(&stats.agreement.fleiss_kappa)
    );
    if stats.annotators.is_empty() {
        out += "no annotations yet\n";
        return out;
    }
    out += &format!(
        "\n{:>4}  {:<16}  {:>11}  {:>6}  {:>6}  {:>6}  {:>9}  {:>13}\n",
        "RANK", "ANNOTATOR", "RELIABILITY", "VOTES", "SKIPS", "UNSURE", "CONSENSUS", "GOLD"
    );
    for (rank, a) in stats.annotators.iter().enumerate() {
        let reliability = a
            .reliability
            .map_or_else(|| "-".into(), |x| format!("{x:.3}"));
        let gold = if a.gold_votes > 0 {
            format!("{} of {}", percent(a.gold_accuracy), a.gold_votes)
        } else {
            "-".into()
        };
        out += &format!(
            "{:>4}  {:<16}  {:>11}  {:>6}  {:>6}  {:>6}  {:>9}  {:>13}\n",
            rank + 1,
            &a.annotator.to_hex()[..16],
            reliability,
            a.votes,
            a.skips,
            a.unsure,
            percent(a.agrees_with_consensus),
            gold
        );
    }
    let flagged: Vec<_> = stats
        .annotators
        .iter()
        .filter_map(|a| Some((a, a.flag.as_ref()?)))
        .collect();
    if !flagged.is_empty() {
        out += &format!(
            "\nflagged for a person to look at ({}; `swarmlabel dataset ban ID KEY` bans one):\n",
            flagged.len()
        );
        for (a, flag) in flagged {
            out += &format!("  {}  {}: {}\n", a.annotator, flag.kind, flag.reason);
        }
    }
    out
}

#[derive(Deserialize)]
struct ConsensusBody {
    note: Option<String>,
    samples: Vec<SampleConsensus>,
}

enum Rows {
    Raw(Vec<RawAnnotation>),
    Consensus(Vec<SampleConsensus>),
}

#[derive(Deserialize)]
struct RawBody {
    annotations: Vec<RawAnnotation>,
}

/// The original file names of dataset `id` (hex) known to the home, by sample id (hex).
fn file_names(home_path: &Path, id: &str) -> anyhow::Result<HashMap<SampleId, String>> {
    let home = open(home_path)?;
    let id: swarmlabel_store::DatasetId = id.parse()?;
    Ok(swarmlabel_store::Catalog::of(&home)
        .names(&id)?
        .into_iter()
        .collect())
}

/// The consensus of every annotated sample from the node, saying on stderr why the method
/// differs from the one asked for, when it does.
fn consensus(
    client: &Client,
    id: &str,
    method: ConsensusMethod,
    quiet: bool,
) -> anyhow::Result<ConsensusBody> {
    let body: ConsensusBody = client.get(&format!(
        "/api/v1/datasets/{id}/labels/consensus?method={}",
        method_name(method)
    ))?;
    if let Some(note) = body.note.as_deref().filter(|_| !quiet) {
        eprintln!("note: {note}");
    }
    Ok(body)
}

/// `export --format imagefolder --out DIR`.
fn export_imagefolder(
    home_path: &Path,
    id: &str,
    client: &Client,
    args: &ExportArgs,
    quiet: bool,
) -> anyhow::Result<Outcome> {
    use swarmlabel_consensus::imagefolder::{self, ImageKind};
    use swarmlabel_store::dataset::manifest::MediaType;
    if args.raw {
        anyhow::bail!("--raw exports annotations, not images; use --format csv or jsonl with it");
    }
    let Some(out) = args.out.as_deref() else {
        anyhow::bail!("--format imagefolder writes a folder: give it with --out DIR");
    };
    let home = open(home_path)?;
    let catalog = swarmlabel_store::Catalog::of(&home);
    let listed = catalog.get(&id.parse()?)?;
    let mut kinds = HashMap::new();
    for index in 0..listed.root.root().pages.len() {
        for entry in catalog.page(&listed, index)?.samples {
            let kind = match entry.media_type {
                MediaType::Png => ImageKind::Png,
                MediaType::Jpeg => ImageKind::Jpeg,
                _ => anyhow::bail!(
                    "dataset {id} is not an image dataset; export it with --format csv or jsonl"
                ),
            };
            kinds.insert(entry.id, kind);
        }
    }
    let body = consensus(client, id, args.method, quiet)?;
    let names = file_names(home_path, id)?;
    let blobs = home.blobs();
    let written = imagefolder::write(out, &body.samples, &kinds, &names, |sample| {
        blobs
            .get(sample)
            .map_err(|e| std::io::Error::other(e.to_string()))
    })
    .with_context(|| format!("cannot export into {}", out.display()))?;
    if !quiet {
        eprintln!(
            "wrote {written} labelled images and metadata.jsonl to {}",
            out.display()
        );
    }
    Ok(Outcome::Ok)
}

pub(crate) fn export(home_path: &Path, args: ExportArgs, quiet: bool) -> anyhow::Result<Outcome> {
    let (id, client) = connect(home_path, &args.id)?;
    let format = match args.format {
        LabelsFormat::Csv => Format::Csv,
        LabelsFormat::Jsonl => Format::Jsonl,
        LabelsFormat::Imagefolder => {
            return export_imagefolder(home_path, &id, &client, &args, quiet);
        }
    };
    let names = if args.raw {
        HashMap::new()
    } else {
        file_names(home_path, &id)?
    };
    // Fetched whole before anything is written, so a failure leaves no partial output.
    let rows = if args.raw {
        let body: RawBody = client.get(&format!("/api/v1/datasets/{id}/labels/raw"))?;
        Rows::Raw(body.annotations)
    } else {
        Rows::Consensus(consensus(&client, &id, args.method, quiet)?.samples)
    };
    let what = match rows {
        Rows::Raw(_) => "annotations",
        Rows::Consensus(_) => "consensus labels",
    };
    let write = |out: &mut dyn std::io::Write| match &rows {
        Rows::Raw(r) => export::write_raw(r, format, out),
        Rows::Consensus(r) => export::write_consensus(r, &names, format, out),
    };
    let n = crate::output::write_out(args.out.as_deref(), |w| Ok(write(w)?))?;
    if let Some(path) = args.out.as_deref().filter(|_| !quiet) {
        eprintln!("wrote {n} {what} to {}", path.display());
    }
    Ok(Outcome::Ok)
}
