//! The commands of a node's home and of a running node, one function each: `init`, `id`,
//! `status`, `peers`, `label`, `labels`, `join`, `gc`, and the two that describe the program
//! (`completions`, `man`).

use std::path::Path;

use anyhow::Context as _;
use swarmlabel_store::{Catalog, Home};

use crate::output::out;
use crate::{Outcome, client, open, tui};

/// `swarmlabel completions SHELL`.
pub(crate) fn completions(shell: clap_complete::Shell) -> anyhow::Result<Outcome> {
    let mut command = <crate::args::Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut command, "swarmlabel", &mut std::io::stdout());
    Ok(Outcome::Ok)
}

/// `swarmlabel man DIR`.
pub(crate) fn man(out: &Path, quiet: bool) -> anyhow::Result<Outcome> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let command = <crate::args::Cli as clap::CommandFactory>::command();
    clap_mangen::generate_to(command, out)
        .with_context(|| format!("cannot write the man pages into {}", out.display()))?;
    if !quiet {
        out!("man pages written to {}", out.display());
    }
    Ok(Outcome::Ok)
}

/// `swarmlabel init [--force]`.
pub(crate) fn init(home_path: &Path, force: bool, quiet: bool) -> anyhow::Result<Outcome> {
    let (home, identity) = Home::init(home_path, force)?;
    if quiet {
        out!("{}", identity.peer_id());
    } else {
        out!("initialised {}", home.root().display());
        out!("peer id:    {}", identity.peer_id());
        out!("public key: {}", identity.public_key());
        out!(
            "key file:   {} (back it up: it is this node's identity)",
            home.key_path().display()
        );
    }
    Ok(Outcome::Ok)
}

/// `swarmlabel id [--json]`.
pub(crate) fn id(home_path: &Path, json: bool) -> anyhow::Result<Outcome> {
    let identity = open(home_path)?.identity()?;
    if json {
        let value = serde_json::json!({
            "peer_id": identity.peer_id().to_string(),
            "public_key": identity.public_key().to_hex(),
        });
        out!("{value}");
    } else {
        out!("peer id:    {}", identity.peer_id());
        out!("public key: {}", identity.public_key());
    }
    Ok(Outcome::Ok)
}

/// `swarmlabel status [--json]`: the running node's state.
pub(crate) fn status(home_path: &Path, json: bool) -> anyhow::Result<Outcome> {
    let client = client::Client::connect(&open(home_path)?)?;
    let mut status: serde_json::Value = client.get("/api/v1/status")?;
    if json {
        status["page"] = serde_json::Value::from(client.page());
        out!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(Outcome::Ok);
    }
    out!("page:           {}", client.page());
    out!(
        "peer id:        {}",
        status["peer_id"].as_str().unwrap_or_default()
    );
    for a in status["listen_addrs"].as_array().into_iter().flatten() {
        out!("listening on:   {}", a.as_str().unwrap_or_default());
    }
    out!(
        "peers:          {} ({} through a relay only; `swarmlabel peers` says why)",
        status["peers"],
        status["peers_relayed"]
    );
    out!("routing table:  {} peers", status["routing_table"]);
    out!("known datasets: {}", status["known_datasets"]);
    for d in status["serving"].as_array().into_iter().flatten() {
        out!("serving:        {}", d.as_str().unwrap_or_default());
    }
    for (id, join) in status["joins"].as_object().into_iter().flatten() {
        let state = join["state"].as_str().unwrap_or_default();
        let detail = join["error"].as_str().unwrap_or_default();
        if state == "looking" {
            out!(
                "joining:        {id} looking (try {}, next in {} s): {detail}",
                join["attempts"],
                join["retry_in_s"]
            );
        } else {
            out!("joining:        {id} {state} {detail}");
        }
    }
    for (id, refusal) in status["guard"].as_object().into_iter().flatten() {
        out!(
            "model guard:    {id} {}",
            refusal["reason"].as_str().unwrap_or_default()
        );
    }
    Ok(Outcome::Ok)
}

/// `swarmlabel peers [--json]`: the connected peers and the path to each.
pub(crate) fn peers(home_path: &Path, json: bool, quiet: bool) -> anyhow::Result<Outcome> {
    let peers: Vec<serde_json::Value> =
        client::Client::connect(&open(home_path)?)?.get("/api/v1/peers")?;
    if json {
        out!("{}", serde_json::to_string_pretty(&peers)?);
        return Ok(Outcome::Ok);
    }
    for p in &peers {
        let addrs: Vec<&str> = p["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str())
            .collect();
        let retry = p["next_punch_in_s"]
            .as_u64()
            .map(|s| format!("; hole punching again in {s} s"))
            .unwrap_or_default();
        let how = match (p["relayed_only"].as_bool(), p["direct_failure"].as_str()) {
            (Some(true), Some(why)) => format!("relayed ({why}{retry})"),
            (Some(true), None) => "relayed".to_owned(),
            _ => "direct".to_owned(),
        };
        out!(
            "{}  {how}  {}",
            p["peer_id"].as_str().unwrap_or_default(),
            addrs.join(" ")
        );
    }
    if !quiet {
        eprintln!("{} peers connected", peers.len());
    }
    Ok(Outcome::Ok)
}

/// What `swarmlabel label` records.
pub(crate) struct Answer {
    pub(crate) sample: Option<String>,
    pub(crate) label: Option<String>,
    pub(crate) skip: bool,
    pub(crate) unsure: bool,
}

/// `swarmlabel label ID SAMPLE LABEL|--skip|--unsure` or `swarmlabel label ID --tui`.
pub(crate) fn label(
    home_path: &Path,
    id: &str,
    answer: Answer,
    json: bool,
    in_terminal: bool,
    quiet: bool,
) -> anyhow::Result<Outcome> {
    let home = open(home_path)?;
    let client = client::Client::connect(&home)?;
    let id = resolve(&home, id);
    if in_terminal {
        tui::run(&client, &id)?;
        return Ok(Outcome::Ok);
    }
    let sample = answer.sample.unwrap_or_default();
    let body = serde_json::json!({
        "sample": sample.trim(),
        "label": answer.label,
        "skip": answer.skip,
        "unsure": answer.unsure,
    });
    let view: serde_json::Value = client.post(&format!("/api/v1/datasets/{id}/labels"), body)?;
    if json {
        out!("{view}");
    } else if !quiet {
        out!(
            "labelled {} as {}",
            view["sample"].as_str().unwrap_or_default(),
            view["value"].as_str().unwrap_or_default()
        );
    }
    Ok(Outcome::Ok)
}

/// `swarmlabel labels ID [--json]`: every annotation the running node holds.
pub(crate) fn labels(
    home_path: &Path,
    id: &str,
    json: bool,
    quiet: bool,
) -> anyhow::Result<Outcome> {
    let home = open(home_path)?;
    let client = client::Client::connect(&home)?;
    let id = resolve(&home, id);
    let list: serde_json::Value = client.get(&format!("/api/v1/datasets/{id}/labels"))?;
    if json {
        out!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(Outcome::Ok);
    }
    for a in list["annotations"].as_array().into_iter().flatten() {
        out!(
            "{}  {}  {}",
            a["sample"].as_str().unwrap_or_default(),
            a["value"].as_str().unwrap_or_default(),
            a["annotator"].as_str().unwrap_or_default()
        );
    }
    if !quiet {
        eprintln!(
            "{} labels",
            list["annotations"].as_array().map_or(0, Vec::len)
        );
    }
    Ok(Outcome::Ok)
}

/// `swarmlabel join ID`.
pub(crate) fn join(home_path: &Path, id: &str, quiet: bool) -> anyhow::Result<Outcome> {
    let client = client::Client::connect(&open(home_path)?)?;
    let _: serde_json::Value =
        client.post("/api/v1/join", serde_json::json!({ "dataset": id.trim() }))?;
    if !quiet {
        out!("joining {}; follow it with `swarmlabel status`", id.trim());
    }
    Ok(Outcome::Ok)
}

/// `swarmlabel gc [--json]`: removes blobs nothing references (the node must be stopped).
pub(crate) fn gc(home_path: &Path, json: bool, quiet: bool) -> anyhow::Result<Outcome> {
    let home = open(home_path)?;
    let _lock = home.try_lock_exclusive()?;
    let weights = swarmlabel_node::models::store::referenced_weights(&home)?;
    let report = Catalog::of(&home).gc_keeping(weights)?;
    if json {
        out!("{}", serde_json::to_string(&report)?);
    } else if !quiet {
        out!(
            "removed {} unreferenced blobs and {} leftover temporary files ({} bytes); kept {} blobs",
            report.removed_blobs,
            report.removed_temporary,
            report.removed_bytes,
            report.kept_blobs
        );
    }
    Ok(Outcome::Ok)
}

/// A dataset id as typed (a full id or a unique prefix; see `Catalog::resolve`), as the node's
/// API names it.
fn resolve(home: &Home, id: &str) -> String {
    Catalog::of(home)
        .resolve(id)
        .map(|d| d.to_string())
        .unwrap_or_else(|_| id.to_owned())
}
