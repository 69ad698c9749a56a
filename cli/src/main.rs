//! The `swarmlabel` command: parses flags, wires library parts together, maps errors to exit
//! codes. Everything it does is in `swarmlabel-node`, where it can be tested without a process.

mod args;
mod client;
mod dataset;
mod demo;
mod labels;
mod output;
mod progress;
mod run;
mod status;
mod tui;

use crate::output::out;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use swarmlabel_net::Home;

use args::{Cli, Command, LogFormat};

/// A command's outcome that is not an error but still fails the process (`verify` found damage).
///
/// Exit codes (in `--help` and the README): 0 success, 1 damage found (`dataset verify`), 2 an
/// error (bad input, a usage error as clap reports it, a missing home, an unreachable node), so
/// scripts can tell "the data is damaged" from "the command did not run".
pub(crate) enum Outcome {
    Ok,
    Failed,
}

/// `swarmlabel page [--open]`: prints the running node's page address (with this run's token)
/// and opens it in the desktop's browser. The token never goes on a command line (where other
/// users see it in the process list): the browser is given a file of the home, readable by this
/// user only, that forwards to the page.
fn page(home_path: &std::path::Path, open_it: bool) -> anyhow::Result<Outcome> {
    let home = open(home_path)?;
    let client = client::Client::connect(&home)?;
    // The node answers: the page is there.
    let _: serde_json::Value = client.get("/api/v1/status")?;
    out!("{}", client.page());
    if !open_it {
        return Ok(Outcome::Ok);
    }
    let forward = home.root().join("page.html");
    let html = format!(
        "<!doctype html><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"0; url={0}\">\
         <title>swarmlabel</title><a href=\"{0}\">Open the labeling page</a>\n",
        client.page()
    );
    write_private(&forward, html.as_bytes())
        .with_context(|| format!("cannot write {}", forward.display()))?;
    let opened = std::process::Command::new("xdg-open")
        .arg(&forward)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    if !opened.is_ok_and(|s| s.success()) {
        anyhow::bail!(
            "cannot open a browser (xdg-open failed or is missing); open the address above yourself"
        );
    }
    Ok(Outcome::Ok)
}

/// Writes `bytes` to `path`, readable and writable by this user only.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An older file keeps its mode when opened: set it.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(bytes)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match run(cli) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::from(1),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", message(&e));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes as one sentence. Library errors already name their cause, so a cause
/// whose text is in the message so far is not repeated.
fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

/// Whether output stopped because the reader went away (`swarmlabel dataset export ID | head`):
/// not an error worth reporting.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run(cli: Cli) -> anyhow::Result<Outcome> {
    // The commands that describe the program need no home.
    match &cli.command {
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut command, "swarmlabel", &mut std::io::stdout());
            return Ok(Outcome::Ok);
        }
        Command::Man { out } => {
            std::fs::create_dir_all(out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let command = <Cli as clap::CommandFactory>::command();
            clap_mangen::generate_to(command, out)
                .with_context(|| format!("cannot write the man pages into {}", out.display()))?;
            if !cli.quiet {
                out!("man pages written to {}", out.display());
            }
            return Ok(Outcome::Ok);
        }
        _ => {}
    }
    let home_path = Home::default_path(cli.home.clone())?;
    match cli.command {
        Command::Completions { .. } | Command::Man { .. } => Ok(Outcome::Ok),
        Command::Init { force } => {
            let (home, identity) = Home::init(&home_path, force)?;
            if cli.quiet {
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
        Command::Id { json } => {
            let identity = open(&home_path)?.identity()?;
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
        Command::Dataset(cmd) => dataset::run(cmd, &home_path, cli.quiet),
        Command::Run(args) => {
            run::run(open(&home_path)?, args)?;
            Ok(Outcome::Ok)
        }
        Command::Demo(args) => {
            demo::run(args)?;
            Ok(Outcome::Ok)
        }
        Command::Page { open: open_it } => page(&home_path, open_it),
        Command::Status { json } => {
            let client = client::Client::connect(&open(&home_path)?)?;
            let mut status: serde_json::Value = client.get("/api/v1/status")?;
            if json {
                status["page"] = serde_json::Value::from(client.page());
                out!("{}", serde_json::to_string_pretty(&status)?);
            } else {
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
            }
            Ok(Outcome::Ok)
        }
        Command::Peers { json } => {
            let peers: Vec<serde_json::Value> =
                client::Client::connect(&open(&home_path)?)?.get("/api/v1/peers")?;
            if json {
                out!("{}", serde_json::to_string_pretty(&peers)?);
            } else {
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
                if !cli.quiet {
                    eprintln!("{} peers connected", peers.len());
                }
            }
            Ok(Outcome::Ok)
        }
        Command::Label {
            id,
            sample,
            label,
            skip,
            unsure,
            json,
            tui,
        } => {
            let client = client::Client::connect(&open(&home_path)?)?;
            let home = open(&home_path)?;
            let id = swarmlabel_net::Catalog::of(&home)
                .resolve(&id)
                .map(|d| d.to_string())
                .unwrap_or(id);
            if tui {
                tui::run(&client, &id)?;
                return Ok(Outcome::Ok);
            }
            let sample = sample.unwrap_or_default();
            let body = serde_json::json!({ "sample": sample.trim(), "label": label, "skip": skip, "unsure": unsure });
            let view: serde_json::Value =
                client.post(&format!("/api/v1/datasets/{id}/labels"), body)?;
            if json {
                out!("{view}");
            } else if !cli.quiet {
                out!(
                    "labelled {} as {}",
                    view["sample"].as_str().unwrap_or_default(),
                    view["value"].as_str().unwrap_or_default()
                );
            }
            Ok(Outcome::Ok)
        }
        Command::Labels {
            id,
            stats: true,
            method,
            json,
        } => labels::stats(&home_path, &id, method, json),
        Command::Export(args) => labels::export(&home_path, args, cli.quiet),
        Command::Labels { id, json, .. } => {
            let home = open(&home_path)?;
            let client = client::Client::connect(&home)?;
            let id = swarmlabel_net::Catalog::of(&home)
                .resolve(&id)
                .map(|d| d.to_string())
                .unwrap_or(id);
            let list: serde_json::Value = client.get(&format!("/api/v1/datasets/{id}/labels"))?;
            if json {
                out!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for a in list["annotations"].as_array().into_iter().flatten() {
                    out!(
                        "{}  {}  {}",
                        a["sample"].as_str().unwrap_or_default(),
                        a["value"].as_str().unwrap_or_default(),
                        a["annotator"].as_str().unwrap_or_default()
                    );
                }
                if !cli.quiet {
                    eprintln!(
                        "{} labels",
                        list["annotations"].as_array().map_or(0, Vec::len)
                    );
                }
            }
            Ok(Outcome::Ok)
        }
        Command::Join { id } => {
            let client = client::Client::connect(&open(&home_path)?)?;
            let _: serde_json::Value =
                client.post("/api/v1/join", serde_json::json!({ "dataset": id.trim() }))?;
            if !cli.quiet {
                out!("joining {}; follow it with `swarmlabel status`", id.trim());
            }
            Ok(Outcome::Ok)
        }
        Command::Gc { json } => {
            let home = open(&home_path)?;
            let _lock = home.try_lock_exclusive()?;
            let weights = swarmlabel_node::models::store::referenced_weights(&home)?;
            let report = swarmlabel_net::Catalog::of(&home).gc_keeping(weights)?;
            if json {
                out!("{}", serde_json::to_string(&report)?);
            } else if !cli.quiet {
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
    }
}

pub(crate) fn open(home: &Path) -> anyhow::Result<Home> {
    Home::open(home).context("cannot use the home")
}
