//! The `swarmlabel` command: parses flags, wires library parts together, maps errors to exit
//! codes. Everything it does is in `swarmlabel-node`, where it can be tested without a process.

mod args;
mod client;
mod commands;
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
use swarmlabel_store::Home;

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
    let quiet = cli.quiet;
    // The commands that describe the program need no home.
    match cli.command {
        Command::Completions { shell } => return commands::completions(shell),
        Command::Man { out } => return commands::man(&out, quiet),
        _ => {}
    }
    let home_path = Home::default_path(cli.home.clone())?;
    match cli.command {
        Command::Completions { .. } | Command::Man { .. } => Ok(Outcome::Ok),
        Command::Init { force } => commands::init(&home_path, force, quiet),
        Command::Id { json } => commands::id(&home_path, json),
        Command::Dataset(cmd) => dataset::run(cmd, &home_path, quiet),
        Command::Run(args) => {
            run::run(open(&home_path)?, args)?;
            Ok(Outcome::Ok)
        }
        Command::Demo(args) => {
            demo::run(args)?;
            Ok(Outcome::Ok)
        }
        Command::Page { open: open_it } => page(&home_path, open_it),
        Command::Status { json } => commands::status(&home_path, json),
        Command::Peers { json } => commands::peers(&home_path, json, quiet),
        Command::Label {
            id,
            sample,
            label,
            skip,
            unsure,
            json,
            tui,
        } => {
            let answer = commands::Answer {
                sample,
                label,
                skip,
                unsure,
            };
            commands::label(&home_path, &id, answer, json, tui, quiet)
        }
        Command::Labels {
            id,
            stats: true,
            method,
            json,
        } => labels::stats(&home_path, &id, method, json),
        Command::Export(args) => labels::export(&home_path, args, cli.quiet),
        Command::Labels { id, json, .. } => commands::labels(&home_path, &id, json, quiet),
        Command::Join { id } => commands::join(&home_path, &id, quiet),
        Command::Gc { json } => commands::gc(&home_path, json, quiet),
    }
}

pub(crate) fn open(home: &Path) -> anyhow::Result<Home> {
    Home::open(home).context("cannot use the home")
}
