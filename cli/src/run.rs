//! `swarmlabel run`: the node as a long-running process.

use std::net::SocketAddr;

use anyhow::Context as _;
use libp2p::Multiaddr;
use swarmlabel_net::{DatasetId, Home, swarm as net};
use swarmlabel_node::daemon::{Daemon, Options};

use crate::args::RunArgs;

pub(crate) fn run(home: Home, args: RunArgs) -> anyhow::Result<()> {
    let config = home.config()?;
    let parse = |addrs: &[String], what: &str| -> anyhow::Result<Vec<Multiaddr>> {
        addrs
            .iter()
            .map(|a| {
                a.parse::<Multiaddr>()
                    .with_context(|| format!("'{a}' in {what} is not a multiaddress"))
            })
            .collect()
    };
    let listen = if args.listen.is_empty() {
        parse(&config.listen, "the config's listen")?
    } else {
        args.listen.clone()
    };
    let bootstrap = if args.bootstrap.is_empty() {
        parse(&config.bootstrap, "the config's bootstrap")?
    } else {
        args.bootstrap.clone()
    };
    let catalog = swarmlabel_net::Catalog::of(&home);
    let resolve = |ids: &[String]| -> anyhow::Result<Vec<DatasetId>> {
        ids.iter()
            .map(|id| {
                catalog
                    .resolve(id)
                    .or_else(|_| id.parse::<DatasetId>().map_err(anyhow::Error::from))
                    .with_context(|| format!("'{id}' is not a dataset id"))
            })
            .collect()
    };
    let serve = args
        .serve
        .iter()
        .map(|id| catalog.resolve(id).map_err(anyhow::Error::from))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let join = resolve(&args.join)?;
    let options = Options {
        net: net::Config {
            listen,
            bootstrap,
            external: args.external.clone(),
            listen_addrs_reachable: args.listen_addrs_reachable,
            use_relays: !args.no_relay,
            private_addrs_routable: args.private_addrs_routable,
            mdns: !args.no_mdns,
            ..net::Config::default()
        },
        serve,
        join,
        api: args.api,
        labels: swarmlabel_node::labels::Config::default(),
        queue: None,
        models: swarmlabel_node::models::Config::default(),
        learn: Some(swarmlabel_node::learn::Config::default()),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let daemon = Daemon::start(home.clone(), options).await?;
        let node = daemon.node();
        println!("peer id: {}", node.peer_id());
        for addr in node.listen_addrs().await? {
            println!("listening on {addr}");
        }
        println!(
            "api: http://{} (token in {})",
            daemon.api_addr(),
            home.root().join("api.json").display()
        );
        println!("metrics: http://{}/metrics", daemon.api_addr());
        println!("labeling page: {}", daemon.api_info().page);
        wait_for_signal().await;
        eprintln!("stopping");
        daemon.shutdown().await;
        anyhow::Ok(())
    })
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("invariant: installing a SIGTERM handler succeeds on Unix");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The default API address: loopback, any free port.
pub(crate) fn default_api() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}
