//! `swarmlabel-bootstrap`: parses flags, starts the peer, serves metrics, stops on Ctrl-C or
//! SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use libp2p::Multiaddr;
use swarmlabel_bootstrap::{Bootstrap, Config, key};

/// The swarmlabel bootstrap peer: the first peer new nodes dial. It is a Kademlia DHT server, a
/// relay for peers behind NAT (with limits), an AutoNAT server, and forwards dataset
/// announcements. It keeps the same peer id across restarts (its key is in --key-file).
///
/// Example: swarmlabel-bootstrap --key-file /var/lib/swarmlabel/bootstrap.key \
///   --listen /ip4/0.0.0.0/tcp/4001 --external /ip4/203.0.113.7/tcp/4001 --metrics 127.0.0.1:9464
#[derive(Debug, Parser)]
#[command(
    name = "swarmlabel-bootstrap",
    version,
    max_term_width = 100,
    verbatim_doc_comment
)]
struct Cli {
    /// The peer's ed25519 key (created with mode 0600 if missing). Back it up: nodes' configs
    /// name this peer id.
    #[arg(long, value_name = "FILE")]
    key_file: PathBuf,
    /// Addresses to listen on (repeat for several).
    #[arg(long, value_name = "MULTIADDR", default_values_t = [
        "/ip4/0.0.0.0/tcp/4001".parse::<Multiaddr>().expect("a valid default"),
        "/ip4/0.0.0.0/udp/4001/quic-v1".parse::<Multiaddr>().expect("a valid default"),
    ])]
    listen: Vec<Multiaddr>,
    /// Public addresses at which nodes reach this peer (repeat for several).
    #[arg(long, value_name = "MULTIADDR")]
    external: Vec<Multiaddr>,
    /// Treat the listen addresses as reachable (a host with a public address, or a LAN).
    #[arg(long)]
    listen_addrs_reachable: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Established connections at most.
    #[arg(long, default_value_t = 10_000)]
    max_connections: u32,
    /// Bytes one relayed circuit may carry (both ways) before this peer closes it. Nodes that
    /// no direct path joins (NATs that hole punching does not get through) exchange everything,
    /// samples and model weights included, over circuits: give the bootstrap peer of your own
    /// datasets a generous budget. 0 relays nothing (no circuit at all; nodes behind NATs are
    /// then reachable only where hole punching works, or through another relay).
    #[arg(long, value_name = "BYTES", default_value_t = 16 << 20)]
    relay_circuit_bytes: u64,
    /// Seconds a relayed circuit may last before this peer closes it (the nodes open another).
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    relay_circuit_secs: u64,
    /// Print the peer id and exit.
    #[arg(long)]
    print_peer_id: bool,
    /// Log format on stderr (level with RUST_LOG).
    #[arg(long, value_parser = ["text", "json"], default_value = "text")]
    log_format: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
    let keypair = key::load_or_create(&cli.key_file)?;
    if cli.print_peer_id {
        println!("{}", keypair.public().to_peer_id());
        return Ok(());
    }
    let mut config = Config {
        listen: cli.listen,
        external: cli.external,
        listen_addrs_reachable: cli.listen_addrs_reachable,
        ..Config::default()
    };
    config.limits.max_connections = cli.max_connections;
    config.relay_circuit_bytes = cli.relay_circuit_bytes;
    config.relay_circuit_duration = std::time::Duration::from_secs(cli.relay_circuit_secs);
    let bootstrap = Bootstrap::start(keypair, config).await?;
    println!("peer id: {}", bootstrap.peer_id());
    for addr in bootstrap.listen_addrs() {
        println!("listening on {addr}");
    }
    if let Some(addr) = cli.metrics {
        let registry = bootstrap.registry();
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
        println!("metrics on http://{}/metrics", listener.local_addr()?);
        tokio::spawn(swarmlabel_net::swarm::metrics::serve(listener, registry));
    }
    wait_for_signal().await;
    eprintln!("stopping");
    bootstrap.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("invariant: installing a SIGTERM handler succeeds on Unix");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
