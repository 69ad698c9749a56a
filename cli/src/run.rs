//! `swarmlabel run`: the node as a long-running process.

use crate::output::out;

use anyhow::Context as _;
use libp2p::Multiaddr;
use swarmlabel_net::swarm as net;
use swarmlabel_node::daemon::{Daemon, Options};
use swarmlabel_store::{DatasetId, Home};

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
    let catalog = swarmlabel_store::Catalog::of(&home);
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
    // The page's address is the API's: the same from run to run unless the user names another.
    let (api, api_fallback) = match args.api {
        Some(api) => (api, false),
        None => (
            swarmlabel_node::daemon::last_api(&home)
                .unwrap_or_else(swarmlabel_node::daemon::default_api),
            true,
        ),
    };
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
        api,
        api_fallback,
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
        // From here on a stop is kept until the node is up, then it shuts the node down.
        let mut signals = StopSignals::install();
        let daemon = Daemon::start(home.clone(), options).await?;
        if let Some(taken) = daemon.api_moved_from() {
            eprintln!(
                "warning: {taken} is taken (another swarmlabel node, or another program); the API and the page listen on {} for this run (give --api to choose)",
                daemon.api_addr()
            );
        }
        let node = daemon.node();
        out!("peer id: {}", node.peer_id());
        for addr in node.listen_addrs().await? {
            out!("listening on {addr}");
        }
        out!(
            "api: http://{} (token in {})",
            daemon.api_addr(),
            home.root().join("api.json").display()
        );
        out!("metrics: http://{}/metrics", daemon.api_addr());
        out!("labeling page: {}", daemon.api_info().page);
        signals.recv().await;
        eprintln!("stopping");
        daemon.shutdown().await;
        anyhow::Ok(())
    })
}

/// Ctrl-C and SIGTERM (what `systemctl stop` and `kill` send), listened to from the moment of `install`: a signal that arrives while
/// the caller is busy elsewhere is kept for the next `recv` (a listener made per wait would
/// miss it, and the process would never stop).
pub(crate) struct StopSignals {
    term: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub(crate) fn install() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        Self {
            term: signal(SignalKind::terminate())
                .expect("invariant: installing a SIGTERM handler succeeds on Unix"),
            interrupt: signal(SignalKind::interrupt())
                .expect("invariant: installing a SIGINT handler succeeds on Unix"),
        }
    }

    /// The next Ctrl-C or SIGTERM since `install` (cancel-safe: usable in `select!` loops).
    pub(crate) async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}
