//! `transfer`: fetching a whole dataset between nodes on loopback, against the same bytes over
//! one plain TCP connection written into files and synced once (the machine's limit for this
//! job): read ahead on the sending side, written by several threads on the receiving side, as
//! the fetcher has many blobs in flight and stores them concurrently.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use swarmlabel_formats::import::{self, Format, Options};
use swarmlabel_net::swarm::{Config, Node, fetch};
use swarmlabel_store::progress::NoProgress;
use swarmlabel_store::store::sync_filesystem;
use swarmlabel_store::{DatasetId, Home};

/// Flags of `swarmlabel-bench transfer`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Size of the dataset in MiB.
    #[arg(long, default_value_t = 1024)]
    mib: usize,
    /// Size of each sample in KiB.
    #[arg(long, default_value_t = 1024)]
    sample_kib: usize,
    /// Nodes serving the dataset (the first imports it, the others fetch it first).
    #[arg(long, default_value_t = 1)]
    providers: usize,
    /// Directory to work in (default: the system temp directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(args.providers >= 1, "--providers must be at least 1");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let work = match &args.dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .context("cannot create a working directory")?;
    let count = (args.mib * 1024 / args.sample_kib).max(1);
    eprintln!("generating {count} samples of ~{} KiB", args.sample_kib);
    let source = work.path().join("source");
    crate::import::generate(&source, count, args.sample_kib)?;
    let (owner_home, owner_key) = Home::init(&work.path().join("owner"), false)?;
    let mut opts = Options::new("transfer", vec!["noise".into()]);
    opts.format = Format::Images;
    let report = import::import(&owner_home, &owner_key, &source, &opts, &NoProgress)?;
    std::fs::remove_dir_all(&source)?;
    let id = report.id;
    let bytes = report.root.root().total_bytes;

    let (fetch_s, samples) = runtime.block_on(fetch_phase(
        work.path(),
        owner_home.clone(),
        id,
        args.providers,
    ))?;
    eprintln!("swarmlabel: {bytes} bytes in {fetch_s:.2} s");

    // The same sample bytes over one TCP connection, written into files and synced once.
    let paths: Vec<PathBuf> = samples.iter().map(|s| owner_home.blobs().path(s)).collect();
    let raw_dir = work.path().join("raw");
    std::fs::create_dir(&raw_dir)?;
    let raw_s = raw_tcp(&paths, &raw_dir)?;
    eprintln!("raw tcp: {bytes} bytes in {raw_s:.2} s");

    let mb = bytes as f64 / 1e6;
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    Ok(serde_json::json!({
        "bench": "transfer",
        "bytes": bytes,
        "samples": count,
        "providers": args.providers,
        "swarmlabel_mb_s": round(mb / fetch_s),
        "raw_tcp_mb_s": round(mb / raw_s),
        "ratio": round(raw_s / fetch_s),
        "fetch_s": round(fetch_s),
        "raw_s": round(raw_s),
        "peak_rss_mb": round(crate::rss::peak_rss_mb()),
    }))
}

/// Starts the providers and a fetcher; returns the fetch time and the sample ids.
async fn fetch_phase(
    work: &std::path::Path,
    owner_home: Home,
    id: DatasetId,
    providers: usize,
) -> anyhow::Result<(f64, Vec<swarmlabel_store::store::BlobId>)> {
    let owner = Node::start(owner_home.clone(), Config::loopback()).await?;
    owner.serve(id).await?;
    let bootstrap = owner.listen_addrs().await?;
    let config = Config {
        bootstrap: bootstrap.clone(),
        ..Config::loopback()
    };
    let mut nodes = vec![owner];
    for i in 1..providers {
        let (home, _) = Home::init(&work.join(format!("provider{i}")), false)?;
        let node = Node::start(home, config.clone()).await?;
        node.fetch(id, fetch::Options::default()).await?;
        node.serve(id).await?;
        nodes.push(node);
    }
    let (home, _) = Home::init(&work.join("fetcher"), false)?;
    let fetcher = Node::start(home.clone(), config).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while fetcher.find_providers(id).await?.len() < providers {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the fetcher did not find all {providers} providers"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let start = Instant::now();
    let report = fetcher.fetch(id, fetch::Options::default()).await?;
    let fetch_s = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        report.already_stored == 0,
        "the fetcher had blobs before the fetch"
    );
    let catalog = swarmlabel_store::Catalog::of(&home);
    let listed = catalog.get(&id)?;
    let mut samples = Vec::new();
    for index in 0..listed.root.root().pages.len() {
        samples.extend(catalog.page(&listed, index)?.samples.iter().map(|s| s.id));
    }
    for node in &nodes {
        node.shutdown().await;
    }
    fetcher.shutdown().await;
    Ok((fetch_s, samples))
}

/// Files written at once by the raw receiver, and read ahead by the raw sender.
const RAW_WRITERS: usize = 4;

/// Sends every file over one loopback TCP connection (length-prefixed), read ahead by a reader
/// thread; the receiver hands each into a file of its own to [`RAW_WRITERS`] writer threads and
/// syncs once, as the fetcher does (many blobs in flight, written concurrently, one sync).
/// Returns the seconds from connect to durable.
fn raw_tcp(paths: &[PathBuf], out: &std::path::Path) -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let out = out.to_owned();
    let receiver = std::thread::spawn(move || -> anyhow::Result<()> {
        let (stream, _) = listener.accept()?;
        receive(stream, &out)?;
        sync_filesystem(&out)?;
        Ok(())
    });
    let start = Instant::now();
    let stream = TcpStream::connect(addr)?;
    send(stream, paths)?;
    receiver
        .join()
        .map_err(|_| anyhow::anyhow!("the receiver thread panicked"))??;
    Ok(start.elapsed().as_secs_f64())
}

/// Writes the files at `paths` to `stream`, length-prefixed, read by a thread ahead of the
/// socket; closes the stream at the end.
pub(crate) fn send(mut stream: TcpStream, paths: &[PathBuf]) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<Vec<u8>>>(RAW_WRITERS * 4);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        scope.spawn(move || {
            for path in paths {
                if tx.send(std::fs::read(path)).is_err() {
                    break;
                }
            }
        });
        for data in rx {
            let data = data?;
            stream.write_all(&(data.len() as u64).to_le_bytes())?;
            stream.write_all(&data)?;
        }
        Ok(())
    })?;
    drop(stream);
    Ok(())
}

/// Reads length-prefixed files from `stream` until it closes and writes each into a file of its
/// own in `out`, [`RAW_WRITERS`] at once (not synced: the caller syncs once).
pub(crate) fn receive(mut stream: TcpStream, out: &std::path::Path) -> anyhow::Result<()> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<(u64, Vec<u8>)>(RAW_WRITERS * 4);
    let rx = std::sync::Mutex::new(rx);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let writers: Vec<_> = (0..RAW_WRITERS)
            .map(|_| {
                scope.spawn(|| -> std::io::Result<()> {
                    loop {
                        let next = rx
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .recv();
                        let Ok((i, buf)) = next else { return Ok(()) };
                        std::fs::write(out.join(i.to_string()), &buf)?;
                    }
                })
            })
            .collect();
        let mut len = [0u8; 8];
        let mut i = 0u64;
        while stream.read_exact(&mut len).is_ok() {
            let mut buf = vec![0u8; u64::from_le_bytes(len) as usize];
            stream.read_exact(&mut buf)?;
            if tx.send((i, buf)).is_err() {
                break;
            }
            i += 1;
        }
        drop(tx);
        for writer in writers {
            writer
                .join()
                .map_err(|_| anyhow::anyhow!("a writer thread panicked"))??;
        }
        Ok(())
    })
}
