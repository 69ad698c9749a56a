//! `swarmlabel-bench`: benchmarks of swarmlabel. Each subcommand prints one JSON object on stdout
//! (progress and logs go to stderr) with the keys of `../shared/BENCHMARKS.md`, and measures the
//! peer or physical limit in the same run where one exists.

mod al;
mod chart;
mod crdt;
mod dht;
mod flood;
mod import;
mod quantile;
mod rss;
mod score;
mod sim;
mod transfer;
mod wan;

use clap::{Parser, Subcommand};

/// Benchmarks of swarmlabel; each prints one JSON object.
#[derive(Debug, Parser)]
#[command(name = "swarmlabel-bench", max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest variant (the `al` flags) costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Dataset import throughput against a plain copy of the same files made durable.
    Import(import::Args),
    /// Active-learning learning curve of one strategy (protocol of BENCHMARKS.md, `al`).
    Al(al::Args),
    /// Pool scoring throughput against the same model's matrix products alone.
    Score(score::Args),
    /// Draws the learning curves of several `al` results into one PNG.
    Chart(chart::Args),
    /// Fetching a whole dataset between nodes, against raw TCP into files on loopback.
    Transfer(transfer::Args),
    /// Provider discovery on the DHT of a network of nodes on loopback.
    Dht(dht::Args),
    /// The whole network learning together: accuracy against total labels beside a centralised
    /// learner, duplicate rate, bytes per node (a label-budget planner for data owners).
    Sim(sim::Args),
    /// Signed annotations at scale: merge, load, memory and delta-sync overhead of the CRDT.
    Crdt(crdt::Args),
    /// Honest labelling while hostile peers flood: acknowledgement latency with and without,
    /// the node's peak memory, its disk growth and what of the attacker's it kept.
    Flood(flood::Args),
    /// Real network paths in namespaces with NAT routers (root): hole-punch success over TCP and
    /// QUIC, time to the first sample behind NAT, a transfer through a delaying link against raw
    /// TCP over the same path.
    Wan(wan::Args),
    /// The attacker of `flood` (run by it as a child process).
    #[command(hide = true)]
    FloodAttack(flood::attack::AttackArgs),
    /// Keeps one core busy for SECONDS (run by `flood` as a child process: the CPU the attacker
    /// takes from the node on this machine, without the attack).
    #[command(hide = true)]
    FloodBurn { seconds: u64 },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The nodes' logs, on stderr with the progress, only when asked for (`RUST_LOG`).
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let value = match cli.command {
        Command::Import(args) => import::run(args)?,
        Command::Al(args) => al::run(args)?,
        Command::Score(args) => score::run(args)?,
        Command::Chart(args) => chart::run(args)?,
        Command::Transfer(args) => transfer::run(args)?,
        Command::Dht(args) => dht::run(args)?,
        Command::Crdt(args) => crdt::run(args)?,
        Command::Sim(args) => sim::run(args)?,
        Command::Flood(args) => flood::run(args)?,
        Command::Wan(args) => wan::run(args)?,
        Command::FloodAttack(args) => flood::attack::run(args)?,
        Command::FloodBurn { seconds } => flood::burn(seconds),
    };
    println!("{value}");
    Ok(())
}
