//! `swarmlabel-bench`: benchmarks of swarmlabel. Each subcommand prints one JSON object on stdout
//! (progress and logs go to stderr) with the keys of `../shared/BENCHMARKS.md`, and measures the
//! peer or physical limit in the same run where one exists.

mod import;
mod rss;

use clap::{Parser, Subcommand};

/// Benchmarks of swarmlabel; each prints one JSON object.
#[derive(Debug, Parser)]
#[command(name = "swarmlabel-bench", max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Dataset import throughput against a plain copy of the same files made durable.
    Import(import::Args),
    // Further benchmarks (al, score, ...) are registered here, one module each.
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let value = match cli.command {
        Command::Import(args) => import::run(args)?,
    };
    println!("{value}");
    Ok(())
}
