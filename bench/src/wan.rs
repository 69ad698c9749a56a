//! `wan`: real network paths, in a namespace test bed (`swarmlabel_testbed`: a public segment
//! with the bootstrap peer, hosts behind nftables NAT routers) with the built `swarmlabel` and
//! `swarmlabel-bootstrap` processes. Root only.
//!
//! - `holepunch_success`: of `--pairs` fresh pairs (an owner behind router 1, a labeler behind
//!   router 2, both endpoint-independent), the fraction whose labeler ends with a direct
//!   connection to the owner within 30 s of starting; TCP and QUIC each.
//! - `first_sample_s`: from `run --join` on a labeler behind NAT until its queue offers a sample.
//! - a transfer of `--mib` through router 1 delaying each direction by `--delay-ms` (NFQUEUE in
//!   userspace): the owner behind it serves, a public labeler joins; against one plain TCP
//!   connection carrying the same bytes over the same path into files synced once.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use swarmlabel_testbed::{Delay, Nat, Net};

/// Flags of `swarmlabel-bench wan`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Fresh NATed pairs tried per transport.
    #[arg(long, default_value_t = 20)]
    pairs: usize,
    /// One-way delay of the slow link, in milliseconds.
    #[arg(long, default_value_t = 50)]
    delay_ms: u64,
    /// Size of the dataset sent through the slow link, in MiB (1 MiB samples).
    #[arg(long, default_value_t = 256)]
    mib: usize,
    /// The CSV the first-sample trial serves.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/digits.csv"))]
    csv: PathBuf,
}

/// How long a pair gets to end with a direct connection.
const PAIR_WINDOW: Duration = Duration::from_secs(30);

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The bed: the net, a work directory, the binaries and the bootstrap peer.
struct Bed {
    net: Net,
    work: tempfile::TempDir,
    bin: PathBuf,
    boot_tcp: String,
    boot_quic: String,
    boot: Option<Proc>,
    boots: usize,
}

impl Bed {
    fn new() -> anyhow::Result<Bed> {
        let bin = std::env::current_exe()?.with_file_name("swarmlabel");
        anyhow::ensure!(
            bin.exists() && bin.with_file_name("swarmlabel-bootstrap").exists(),
            "wan runs the built binaries: cargo build --release -p swarmlabel-cli -p swarmlabel-bootstrap first"
        );
        let net = Net::new(90, &[Nat::EndpointIndependent, Nat::EndpointIndependent], 1)?;
        let mut bed = Bed {
            net,
            work: tempfile::tempdir()?,
            bin,
            boot_tcp: String::new(),
            boot_quic: String::new(),
            boot: None,
            boots: 0,
        };
        bed.fresh_bootstrap()?;
        Ok(bed)
    }

    /// Replaces the bootstrap peer with a new one (a new identity, an empty DHT), so that every
    /// trial starts fresh: the peers of earlier trials are gone, and a DHT full of them slows
    /// every lookup of a newcomer.
    fn fresh_bootstrap(&mut self) -> anyhow::Result<()> {
        self.boot = None;
        self.boots += 1;
        let ip = self.net.public_ip();
        let mut boot = self
            .net
            .command("pub", self.bin.with_file_name("swarmlabel-bootstrap"))
            .args(["--key-file"])
            .arg(self.work.path().join(format!("boot{}.key", self.boots)))
            .args(["--listen", &format!("/ip4/{ip}/tcp/4001")])
            .args(["--listen", &format!("/ip4/{ip}/udp/4001/quic-v1")])
            .arg("--listen-addrs-reachable")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut out = String::new();
        let mut stdout = boot.stdout.take().context("no stdout")?;
        let mut byte = [0u8; 1];
        while out.matches("listening on ").count() < 2 || !out.ends_with('\n') {
            anyhow::ensure!(stdout.read(&mut byte)? == 1, "the bootstrap peer exited");
            out.push(byte[0] as char);
        }
        let addr = |kind: &str| {
            out.lines()
                .filter_map(|l| l.strip_prefix("listening on "))
                .find(|a| a.contains(kind))
                .map(str::to_owned)
                .context("the bootstrap peer printed no such address")
        };
        self.boot_tcp = addr("/tcp/")?;
        self.boot_quic = addr("/quic-v1")?;
        self.boot = Some(Proc(boot));
        Ok(())
    }

    /// `swarmlabel ARGS` in `ns` with `home`: its stdout (it must succeed).
    fn cli(&self, ns: &str, home: &Path, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .net
            .command(ns, &self.bin)
            .args(args)
            .env("SWARMLABEL_HOME", home)
            .env_remove("RUST_LOG")
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "swarmlabel {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?)
    }

    fn json(&self, ns: &str, home: &Path, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let mut args = args.to_vec();
        args.push("--json");
        Ok(serde_json::from_str(&self.cli(ns, home, &args)?)?)
    }

    fn home(&self, name: &str) -> anyhow::Result<PathBuf> {
        let home = self.work.path().join(name);
        self.cli("pub", &home, &["init"])?;
        Ok(home)
    }

    /// `swarmlabel run` in `ns` on `transport` ("tcp" or "quic"), with `extra` arguments.
    fn run(&self, ns: &str, home: &Path, quic: bool, extra: &[&str]) -> anyhow::Result<Proc> {
        let (listen, boot) = if quic {
            ("/ip4/0.0.0.0/udp/0/quic-v1", &self.boot_quic)
        } else {
            ("/ip4/0.0.0.0/tcp/0", &self.boot_tcp)
        };
        let mut child = self
            .net
            .command(ns, &self.bin)
            .args(["run", "--listen", listen, "--bootstrap", boot])
            .arg("--private-addrs-routable")
            .args(extra)
            .env("SWARMLABEL_HOME", home)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut stdout = child.stdout.take().context("no stdout")?;
        let mut out = String::new();
        let mut byte = [0u8; 1];
        while !out.contains("api: ") {
            anyhow::ensure!(stdout.read(&mut byte)? == 1, "swarmlabel run exited");
            out.push(byte[0] as char);
        }
        // Keep reading so the child never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Ok(Proc(child))
    }

    /// Polls `check` every 100 ms until it holds or `within` passes.
    fn until(
        within: Duration,
        mut check: impl FnMut() -> anyhow::Result<bool>,
    ) -> anyhow::Result<bool> {
        let start = Instant::now();
        while start.elapsed() < within {
            if check()? {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(false)
    }

    fn has_relay_slot(&self, ns: &str, home: &Path) -> anyhow::Result<bool> {
        let status = self.json(ns, home, &["status"])?;
        Ok(status["listen_addrs"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a.as_str().unwrap_or_default().contains("/p2p-circuit")))
    }

    fn peer_id(&self, home: &Path) -> anyhow::Result<String> {
        let id = self.json("pub", home, &["id"])?;
        Ok(id["peer_id"].as_str().unwrap_or_default().to_owned())
    }

    fn join_done(&self, ns: &str, home: &Path, id: &str) -> anyhow::Result<bool> {
        let status = self.json(ns, home, &["status"])?;
        anyhow::ensure!(
            status["joins"][id]["state"] != "failed",
            "the join failed: {status}"
        );
        Ok(status["joins"][id]["state"] == "done")
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<serde_json::Value> {
    let mut bed = Bed::new()?;
    let tiny = bed.work.path().join("tiny.csv");
    let mut rows = String::from("x,y\n");
    for i in 0..20 {
        rows.push_str(&format!("{i},{}\n", i * 2));
    }
    std::fs::write(&tiny, rows)?;

    let mut punch = serde_json::Map::new();
    for quic in [false, true] {
        let name = if quic { "quic" } else { "tcp" };
        let mut direct = 0;
        let mut seconds = Vec::new();
        for pair in 0..args.pairs {
            bed.fresh_bootstrap()?;
            let owner = bed.home(&format!("{name}-owner{pair}"))?;
            let create = ["-q", "dataset", "create"];
            let tiny_arg = tiny.to_string_lossy();
            let id = bed
                .cli(
                    "pub",
                    &owner,
                    &[&create[..], &[&tiny_arg, "--name", "t", "--labels", "a,b"]].concat(),
                )?
                .trim()
                .to_owned();
            let _owner_node = bed.run("h1.1", &owner, quic, &[])?;
            anyhow::ensure!(
                Bed::until(PAIR_WINDOW, || bed.has_relay_slot("h1.1", &owner))?,
                "the owner got no relay slot ({name})"
            );
            let owner_id = bed.peer_id(&owner)?;
            let labeler = bed.home(&format!("{name}-labeler{pair}"))?;
            let start = Instant::now();
            let _labeler_node = bed.run("h2.1", &labeler, quic, &["--join", &id])?;
            let made = Bed::until(PAIR_WINDOW, || {
                let peers = bed.json("h2.1", &labeler, &["peers"])?;
                Ok(peers
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p["peer_id"] == owner_id.as_str() && p["relayed_only"] == false))
            })?;
            if made {
                direct += 1;
                seconds.push(start.elapsed().as_secs_f64());
            }
            eprintln!(
                "{name} pair {pair}: {}",
                if made { "direct" } else { "relayed only" }
            );
        }
        seconds.sort_by(f64::total_cmp);
        punch.insert(
            name.to_owned(),
            serde_json::json!({
                "pairs": args.pairs,
                "direct": direct,
                "holepunch_success": round(direct as f64 / args.pairs.max(1) as f64),
                "median_s_to_direct": seconds.get(seconds.len() / 2).copied().map(round),
            }),
        );
    }

    bed.fresh_bootstrap()?;
    let first_sample_s = first_sample(&bed, &args.csv)?;
    eprintln!("first sample after {first_sample_s:.2} s");
    bed.fresh_bootstrap()?;
    let transfer = slow_transfer(&bed, &args)?;
    Ok(serde_json::json!({
        "bench": "wan",
        "holepunch": punch,
        "first_sample_s": round(first_sample_s),
        "transfer": transfer,
    }))
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A labeler behind NAT 2 joins the owner behind NAT 1: seconds from `run --join` to the first
/// sample its queue offers.
fn first_sample(bed: &Bed, csv: &Path) -> anyhow::Result<f64> {
    let owner = bed.home("first-owner")?;
    let labels = "0,1,2,3,4,5,6,7,8,9";
    let csv = csv.to_string_lossy();
    let args = [
        "-q", "dataset", "create", &csv, "--name", "d", "--labels", labels,
    ];
    let id = bed.cli("pub", &owner, &args)?.trim().to_owned();
    let _owner_node = bed.run("h1.1", &owner, false, &[])?;
    anyhow::ensure!(
        Bed::until(PAIR_WINDOW, || bed.has_relay_slot("h1.1", &owner))?,
        "the owner got no relay slot"
    );
    let labeler = bed.home("first-labeler")?;
    let start = Instant::now();
    let _labeler_node = bed.run("h2.1", &labeler, false, &["--join", &id])?;
    let api: serde_json::Value = serde_json::from_slice(&std::fs::read(labeler.join("api.json"))?)?;
    let url = format!(
        "{}/api/v1/datasets/{id}/queue",
        api["url"].as_str().unwrap_or_default()
    );
    let token = format!("Bearer {}", api["token"].as_str().unwrap_or_default());
    let got = Bed::until(Duration::from_secs(120), || {
        let (url, token) = (url.clone(), token.clone());
        let picks = bed
            .net
            .spawn_in("h2.1", move || -> Option<serde_json::Value> {
                let mut response = ureq::get(&url)
                    .header("authorization", &token)
                    .call()
                    .ok()?;
                response.body_mut().read_json().ok()
            })?
            .join();
        Ok(picks.is_some_and(|p| p.as_array().is_some_and(|a| !a.is_empty())))
    })?;
    anyhow::ensure!(got, "the labeler's queue offered no sample within 120 s");
    Ok(start.elapsed().as_secs_f64())
}

/// The owner behind router 1 (delayed) serves `--mib` of 1 MiB samples; a public labeler joins.
/// Against one TCP connection from the owner's host carrying the same sample files to the
/// public segment, written into files and synced once.
fn slow_transfer(bed: &Bed, args: &Args) -> anyhow::Result<serde_json::Value> {
    let source = bed.work.path().join("images");
    crate::import::generate(&source, args.mib, 1024)?;
    let owner = bed.home("slow-owner")?;
    let source_arg = source.to_string_lossy();
    let create = [
        "-q",
        "dataset",
        "create",
        &source_arg,
        "--name",
        "s",
        "--labels",
        "x",
    ];
    let id = bed.cli("pub", &owner, &create)?.trim().to_owned();
    let bytes: u64 = std::fs::read_dir(&source)?
        .map(|e| e.and_then(|e| e.metadata()).map(|m| m.len()))
        .sum::<std::io::Result<u64>>()?;
    let _delay = Delay::start(&bed.net, 1, Duration::from_millis(args.delay_ms))?;
    let _owner_node = bed.run("h1.1", &owner, false, &[])?;
    anyhow::ensure!(
        Bed::until(PAIR_WINDOW, || bed.has_relay_slot("h1.1", &owner))?,
        "the owner got no relay slot"
    );
    let labeler = bed.home("slow-labeler")?;
    let _labeler_node = bed.run("pub", &labeler, false, &[])?;
    let start = Instant::now();
    bed.cli("pub", &labeler, &["join", &id])?;
    anyhow::ensure!(
        Bed::until(Duration::from_secs(1800), || bed
            .join_done("pub", &labeler, &id))?,
        "the join did not finish in 30 minutes"
    );
    let fetch_s = start.elapsed().as_secs_f64();
    eprintln!("swarmlabel: {bytes} bytes through the slow link in {fetch_s:.2} s");

    // The same files over one TCP connection through the same router.
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&source)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    paths.sort();
    let out = bed.work.path().join("raw");
    std::fs::create_dir(&out)?;
    let listen = format!("{}:4100", bed.net.public_ip());
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
    let receiver = bed.net.spawn_in("pub", {
        let out = out.clone();
        move || -> anyhow::Result<()> {
            let listener = std::net::TcpListener::bind(&listen)?;
            let _ = ready_tx.send(());
            let (stream, _) = listener.accept()?;
            crate::transfer::receive(stream, &out)?;
            swarmlabel_store::store::sync_filesystem(&out)?;
            Ok(())
        }
    })?;
    ready_rx.recv().context("the raw receiver did not start")?;
    let target = format!("{}:4100", bed.net.public_ip());
    let start = Instant::now();
    bed.net
        .spawn_in("h1.1", move || -> anyhow::Result<()> {
            let stream = std::net::TcpStream::connect(&target)?;
            crate::transfer::send(stream, &paths)
        })?
        .join()?;
    receiver.join()?;
    let raw_s = start.elapsed().as_secs_f64();
    eprintln!("raw tcp: {bytes} bytes through the slow link in {raw_s:.2} s");
    let mb = bytes as f64 / 1e6;
    Ok(serde_json::json!({
        "delay_ms_each_way": args.delay_ms,
        "bytes": bytes,
        "swarmlabel_mb_s": round(mb / fetch_s),
        "raw_tcp_mb_s": round(mb / raw_s),
        "ratio": round(raw_s / fetch_s),
        "fetch_s": round(fetch_s),
        "raw_s": round(raw_s),
    }))
}
