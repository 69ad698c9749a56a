//! `crdt`: signed annotations at scale in sharded automerge documents.
//!
//! `annotators` simulated volunteers, spread over `peers` replicas, each label every one of
//! `samples` samples (so `samples × annotators` annotations), in sample order, committing every
//! `commit-batch` annotations per peer. The run works shard by shard so that only the merged
//! replica is ever whole in memory:
//!
//! 1. every peer records its annotations of the shard except the last `delta-fraction` of each
//!    annotator's, which are merged into the replica (timed, `merge_s`) and into two *lagging*
//!    replicas; one of them syncs with the merged replica, so both sides know their shared heads;
//! 2. the peers record the rest, merged into the replica (timed, `merge_s`);
//! 3. `delta_sync_bytes`: the labels' pull protocol (`swarmlabel_node::labels::wire`: a pull
//!    naming where the lagging replica's chains end, pages of records back, every byte of every
//!    request and response as encoded on the wire) brings the lagging replica up to date,
//!    checked by equal heads; `delta_raw_bytes` is the size of the missing signed records (181
//!    bytes each); `sync_overhead` is their ratio.
//!
//! Then the merged replica is saved to a file (`disk_bytes`), dropped, loaded back from the file
//! (`load_s`, file read included), every annotation is read and verified (`validate_s`), and
//! Dawid–Skene runs on all votes. `peak_rss_mb` is the process's `VmHWM` at the end, so it covers
//! the merge phase too; `--save-to FILE` then `--load-from FILE` measures a fresh process that
//! only loads, verifies and aggregates.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, bail, ensure};
use ed25519_dalek::SigningKey;
use rand::{RngCore as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use swarmlabel_consensus::aggregate::{self, TieBreak, Votes};
use swarmlabel_crdt::annotation::SIGNED_LEN;
use swarmlabel_crdt::{
    Annotation, AnnotatorKey, Dataset, DatasetId, Replica, SampleId, ShardId, ShardLayout,
    SignedAnnotation, Signer as _, Suggestion, Value,
};
use swarmlabel_node::labels::wire::{MAX_RECORDS, Range, Request, Response};
use swarmlabel_node::replicate::Wire as _;

/// Flags of `swarmlabel-bench crdt`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Samples in the dataset; every annotator labels each of them.
    #[arg(long, default_value_t = 100_000)]
    samples: u32,
    /// Simulated annotators (accuracy 0.95, 0.90, ... down to 0.40).
    #[arg(long, default_value_t = 10)]
    annotators: u32,
    /// Replicas the annotators write on (annotator `a` on peer `a % peers`).
    #[arg(long, default_value_t = 10)]
    peers: u32,
    /// Share of each annotator's annotations (its last ones) that the lagging replica misses.
    #[arg(long, default_value_t = 0.01)]
    delta_fraction: f64,
    /// Annotations per commit on each peer (one automerge change per touched shard).
    #[arg(long, default_value_t = 1000)]
    commit_batch: u64,
    /// Labels in the label set.
    #[arg(long, default_value_t = 10)]
    labels: u16,
    /// Directory for the saved replica (default: the system temp directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the saved replica in this file (for a later `--load-from`).
    #[arg(long)]
    save_to: Option<PathBuf>,
    /// Only load, verify and aggregate a replica saved by `--save-to` with the same `--samples`,
    /// `--annotators` and `--labels`: measures a fresh process holding the replica.
    #[arg(long)]
    load_from: Option<PathBuf>,
}

const T0_MS: u64 = 1_700_000_000_000;

fn sample_id(i: u32) -> SampleId {
    SampleId(*blake3::hash(&i.to_le_bytes()).as_bytes())
}

/// A deterministic draw in [0, 1) for (annotator, sample, salt).
fn unit(a: u32, i: u32, salt: u64) -> f64 {
    let mut x = (u64::from(a) << 32 | u64::from(i)) ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn truth(i: u32, labels: u16) -> u16 {
    u16::from(sample_id(i).0[1]) % labels
}

fn accuracy(a: u32) -> f64 {
    (0.95 - 0.05 * f64::from(a)).max(0.4)
}

struct Sim<'a> {
    args: &'a Args,
    dataset: Dataset,
    keys: Vec<SigningKey>,
}

impl Sim<'_> {
    /// Annotator `a`'s signed annotation of sample `i`, at place `seq` of its chain.
    fn annotation(&self, a: u32, i: u32, seq: u32) -> anyhow::Result<SignedAnnotation> {
        let labels = self.args.labels;
        let t = truth(i, labels);
        let label = if unit(a, i, 1) < accuracy(a) {
            t
        } else {
            // A wrong label, uniform over the others.
            let l = (unit(a, i, 2) * f64::from(labels - 1)) as u16;
            if l >= t { l + 1 } else { l }
        };
        let key = &self.keys[a as usize];
        let annotation = Annotation {
            dataset: self.dataset.id,
            sample: sample_id(i),
            annotator: AnnotatorKey(key.public_key()),
            seq,
            time_ms: T0_MS + u64::from(i) * 1000 + u64::from(a),
            value: Value::Label(label),
            suggestion: Some(Suggestion::with_probability(t, unit(a, i, 3))),
        };
        Ok(SignedAnnotation::sign(annotation, key)?)
    }

    /// Records peer `p`'s annotations of `samples` (in order), committing at the peer's global
    /// batch boundaries; returns the number recorded.
    fn record(&self, peer: &mut Replica, p: u32, samples: &[u32]) -> anyhow::Result<u64> {
        let mine: Vec<u32> = (0..self.args.annotators)
            .filter(|a| a % self.args.peers == p)
            .collect();
        let per_sample = mine.len() as u64;
        let mut last_batch = None;
        let mut n = 0;
        for &i in samples {
            for (j, &a) in mine.iter().enumerate() {
                let k = u64::from(i) * per_sample + j as u64;
                let batch = k / self.args.commit_batch;
                if last_batch != Some(batch) {
                    peer.commit();
                    last_batch = Some(batch);
                }
                let annotator = AnnotatorKey(self.keys[a as usize].public_key());
                let seq = peer.next_seq(&annotator, &sample_id(i));
                peer.record(&self.annotation(a, i, seq)?)?;
                n += 1;
            }
        }
        peer.commit();
        Ok(n)
    }
}

/// Brings `to` up to date with `from` on `shard` by the labels' pull protocol; returns (bytes
/// on the wire both ways, messages, largest message).
fn pull_shard(
    to: &mut Replica,
    from: &mut Replica,
    shard: ShardId,
) -> anyhow::Result<(u64, u64, u64)> {
    let (mut bytes, mut messages, mut largest) = (0u64, 0u64, 0u64);
    let mut count = |len: usize| {
        bytes += len as u64;
        messages += 1;
        largest = largest.max(len as u64);
    };
    for _ in 0..10_000 {
        let tips = to.tips(shard);
        let request = Request::Pull {
            dataset: to.dataset().id,
            shard: shard.0,
            range: Range::ALL,
            tips: tips.clone(),
        };
        count(request.encode()?.len());
        let page = from.missing(shard, &tips, MAX_RECORDS);
        let more = page.more;
        let response = Response::Records {
            records: page.records,
            more,
        };
        count(response.encode()?.len());
        let Response::Records { records, .. } = response else {
            unreachable!("built as records above")
        };
        for record in &records {
            to.record(record)?;
        }
        to.commit();
        if !more {
            ensure!(
                to.heads(shard) == from.heads(shard),
                "the pull of shard {} ended with different heads",
                shard.0
            );
            return Ok((bytes, messages, largest));
        }
    }
    bail!("the pull of shard {} did not finish", shard.0)
}

pub(crate) fn run(args: Args) -> anyhow::Result<serde_json::Value> {
    check_flags(&args)?;
    let sim = Sim::new(&args);
    let layout = sim.dataset.layout;
    let by_shard = samples_by_shard(layout, args.samples);
    let work = match &args.dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .context("cannot create a working directory")?;
    let (path, built) = replica_file(&sim, &by_shard, work.path())?;
    let disk_bytes = std::fs::metadata(&path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();

    eprintln!("loading (rss peak {:.0} MB)", crate::rss::peak_rss_mb());
    let start = Instant::now();
    let mut loaded = load(sim.dataset, &path)?;
    let load_s = start.elapsed().as_secs_f64();
    let rss_after_load_mb = current_rss_mb();
    if let Some(b) = &built {
        let heads: Vec<_> = layout.shards().map(|s| loaded.heads(s)).collect();
        ensure!(
            heads == b.heads,
            "the loaded replica differs from the saved one"
        );
    }

    eprintln!(
        "reading and verifying every annotation (rss peak {:.0} MB)",
        crate::rss::peak_rss_mb()
    );
    let start = Instant::now();
    let (votes, validated, rejected) = sim.read_votes(&mut loaded)?;
    let validate_s = start.elapsed().as_secs_f64();
    let expected = u64::from(args.samples) * u64::from(args.annotators);
    ensure!(
        validated == expected && rejected == 0,
        "read {validated} valid and {rejected} rejected annotations, expected {expected} valid"
    );
    drop(loaded);

    let aggregated = Aggregated::of(&votes, &args);
    let mut out = json!({
        "bench": "crdt",
        "annotations": validated,
        "load_s": load_s,
        "peak_rss_mb": crate::rss::peak_rss_mb(),
        "disk_bytes": disk_bytes,
        "samples": args.samples,
        "annotators": args.annotators,
        "shards": layout.shard_count(),
        "rss_after_load_mb": rss_after_load_mb,
        "validate_s": validate_s,
        "dawid_skene_s": aggregated.ds_s,
        "dawid_skene_iterations": aggregated.iterations,
        "dawid_skene_accuracy": aggregated.ds_right as f64 / f64::from(args.samples),
        "majority_accuracy": aggregated.mv_right as f64 / f64::from(args.samples),
    });
    if let Some(b) = built {
        add_built(&mut out, &b, &args);
    }
    Ok(out)
}

/// Checks the flags' ranges.
fn check_flags(args: &Args) -> anyhow::Result<()> {
    ensure!(
        args.samples > 0 && args.annotators > 0 && args.peers > 0 && args.commit_batch > 0,
        "samples, annotators, peers and commit-batch must be at least 1"
    );
    ensure!(args.labels >= 2, "the label set needs at least 2 labels");
    ensure!(
        (0.0..1.0).contains(&args.delta_fraction),
        "delta-fraction must be in [0, 1)"
    );
    Ok(())
}

impl<'a> Sim<'a> {
    /// The simulation `args` describe: its dataset and its annotators' keys (seeded, so every
    /// run signs with the same keys).
    fn new(args: &'a Args) -> Sim<'a> {
        let layout = ShardLayout::for_sample_count(u64::from(args.samples));
        let dataset = Dataset {
            id: DatasetId(*blake3::hash(b"swarmlabel-bench crdt dataset").as_bytes()),
            label_count: args.labels,
            layout,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let keys = (0..args.annotators)
            .map(|_| {
                let mut secret = [0u8; 32];
                rng.fill_bytes(&mut secret);
                SigningKey::from_bytes(&secret)
            })
            .collect();
        Sim {
            args,
            dataset,
            keys,
        }
    }

    /// Reads and verifies every annotation of `loaded` into votes; returns them with the counts
    /// of valid and rejected annotations.
    fn read_votes(&self, loaded: &mut Replica) -> anyhow::Result<(Votes, u64, u64)> {
        let args = self.args;
        let mut votes = Votes::new(args.labels)?;
        let mut validated = 0u64;
        let mut rejected = 0u64;
        let sample_index: HashMap<SampleId, u32> =
            (0..args.samples).map(|i| (sample_id(i), i)).collect();
        let key_index: HashMap<AnnotatorKey, u32> = (0..args.annotators)
            .map(|a| (AnnotatorKey(self.keys[a as usize].public_key()), a))
            .collect();
        for shard in self.dataset.layout.shards() {
            let read = loaded.read_shard(shard);
            validated += read.annotations.len() as u64;
            rejected += read.rejected.total();
            for s in &read.annotations {
                let a = s.annotation();
                let (Some(&item), Some(&rater)) =
                    (sample_index.get(&a.sample), key_index.get(&a.annotator))
                else {
                    bail!(
                        "an annotation by an unknown annotator or of an unknown sample: were the flags the same as when the file was saved?"
                    );
                };
                if let Some(label) = a.value.label() {
                    votes.push(item, rater, label)?;
                }
            }
        }
        Ok((votes, validated, rejected))
    }
}

/// The samples `0..samples` grouped by the shard each falls in.
fn samples_by_shard(layout: ShardLayout, samples: u32) -> Vec<Vec<u32>> {
    let mut by_shard: Vec<Vec<u32>> = vec![Vec::new(); usize::from(layout.shard_count())];
    for i in 0..samples {
        by_shard[usize::from(layout.shard_of(&sample_id(i)).0)].push(i);
    }
    by_shard
}

/// The replica's file: the one `--load-from` names, or one built and saved (to `--save-to`, or
/// into `work`), with what building it measured.
fn replica_file(
    sim: &Sim<'_>,
    by_shard: &[Vec<u32>],
    work: &Path,
) -> anyhow::Result<(PathBuf, Option<Built>)> {
    match (&sim.args.load_from, &sim.args.save_to) {
        (Some(from), _) => {
            eprintln!("crdt: loading {} only", from.display());
            Ok((from.clone(), None))
        }
        (None, to) => {
            let path = to.clone().unwrap_or_else(|| work.join("replica.bin"));
            Ok((path.clone(), Some(build_and_save(sim, by_shard, &path)?)))
        }
    }
}

/// Dawid–Skene and the majority vote on every vote, each consensus checked against the truth.
struct Aggregated {
    ds_s: f64,
    iterations: usize,
    /// Samples whose Dawid–Skene consensus is the true label.
    ds_right: u64,
    /// Samples whose majority vote is the true label.
    mv_right: u64,
}

impl Aggregated {
    /// Aggregates `votes` (Dawid–Skene timed) and counts the right consensus labels.
    fn of(votes: &Votes, args: &Args) -> Aggregated {
        eprintln!("aggregating (rss peak {:.0} MB)", crate::rss::peak_rss_mb());
        let start = Instant::now();
        let fit = aggregate::dawid_skene(votes, &[], aggregate::Config::default());
        let ds_s = start.elapsed().as_secs_f64();
        let majority = aggregate::majority(votes);
        let (mut ds_right, mut mv_right) = (0u64, 0u64);
        for i in 0..args.samples {
            let t = truth(i, args.labels);
            ds_right += u64::from(fit.consensus(i).map(|c| c.0) == Some(t));
            mv_right += u64::from(majority[i as usize].label(TieBreak::LowestIndex) == Some(t));
        }
        Aggregated {
            ds_s,
            iterations: fit.iterations,
            ds_right,
            mv_right,
        }
    }
}

/// Adds what building the replica measured to the report `out`.
fn add_built(out: &mut serde_json::Value, b: &Built, args: &Args) {
    let Some(map) = out.as_object_mut() else {
        return;
    };
    let delta_raw_bytes = b.delta_annotations * SIGNED_LEN as u64;
    for (k, v) in [
        ("merge_s", json!(b.merge_s)),
        ("delta_sync_bytes", json!(b.delta_sync_bytes)),
        ("delta_raw_bytes", json!(delta_raw_bytes)),
        (
            "sync_overhead",
            json!(b.delta_sync_bytes as f64 / delta_raw_bytes.max(1) as f64),
        ),
        ("peers", json!(args.peers)),
        ("commit_batch", json!(args.commit_batch)),
        ("delta_fraction", json!(args.delta_fraction)),
        ("delta_annotations", json!(b.delta_annotations)),
        ("delta_sync_messages", json!(b.delta_messages)),
        ("largest_sync_message_bytes", json!(b.largest_message)),
        ("largest_shard_bytes", json!(b.largest_shard)),
        ("record_s", json!(b.record_s)),
        ("save_s", json!(b.save_s)),
        ("rss_peak_after_merge_mb", json!(b.rss_peak_mb)),
    ] {
        map.insert(k.into(), v);
    }
}

/// What building, merging, syncing and saving measured.
struct Built {
    heads: Vec<Vec<swarmlabel_crdt::ChangeHash>>,
    record_s: f64,
    merge_s: f64,
    save_s: f64,
    delta_annotations: u64,
    delta_sync_bytes: u64,
    delta_messages: u64,
    largest_message: u64,
    largest_shard: u64,
    rss_peak_mb: f64,
}

/// Steps 1 to 3 of the module docs, shard by shard, then the merged replica saved to `path`.
fn build_and_save(sim: &Sim<'_>, by_shard: &[Vec<u32>], path: &Path) -> anyhow::Result<Built> {
    let args = sim.args;
    let dataset = sim.dataset;
    let layout = dataset.layout;
    let shards = by_shard.len();
    // Each annotator labels samples in index order, so its last `delta_fraction` are these.
    let delta_from = ((1.0 - args.delta_fraction) * f64::from(args.samples)).round() as u32;
    eprintln!(
        "crdt: {} samples x {} annotators on {} peers, {} shards, commit every {}",
        args.samples, args.annotators, args.peers, shards, args.commit_batch
    );
    let mut full = Replica::new(dataset);
    let (mut record_s, mut merge_s) = (0.0, 0.0);
    let (mut annotations, mut delta_annotations) = (0u64, 0u64);
    let (mut delta_sync_bytes, mut delta_messages, mut largest_message) = (0u64, 0u64, 0u64);
    for shard in layout.shards() {
        let samples = &by_shard[usize::from(shard.0)];
        let split = samples.partition_point(|&i| i < delta_from);
        let (before, delta) = samples.split_at(split);
        // A lagging replica: it holds what the peers wrote before the delta.
        let mut lagging = Replica::new(dataset);
        let mut peers = (0..args.peers)
            .map(|_| Replica::new(dataset))
            .collect::<Vec<_>>();
        let start = Instant::now();
        for (p, peer) in (0..).zip(peers.iter_mut()) {
            annotations += sim.record(peer, p, before)?;
        }
        record_s += start.elapsed().as_secs_f64();
        let start = Instant::now();
        for peer in &mut peers {
            full.merge(peer)?;
        }
        merge_s += start.elapsed().as_secs_f64();
        for peer in &mut peers {
            lagging.merge(peer)?;
        }

        let start = Instant::now();
        for (p, peer) in (0..).zip(peers.iter_mut()) {
            let n = sim.record(peer, p, delta)?;
            annotations += n;
            delta_annotations += n;
        }
        record_s += start.elapsed().as_secs_f64();
        let start = Instant::now();
        for peer in &mut peers {
            full.merge(peer)?;
        }
        merge_s += start.elapsed().as_secs_f64();
        drop(peers);

        let (bytes, messages, largest) = pull_shard(&mut lagging, &mut full, shard)?;
        delta_sync_bytes += bytes;
        delta_messages += messages;
        largest_message = largest_message.max(largest);
        if shard.0 % 8 == 7 {
            eprintln!(
                "  shard {}/{shards}: {annotations} annotations, record {record_s:.1} s, merge \
                 {merge_s:.1} s, rss peak {:.0} MB",
                shard.0 + 1,
                crate::rss::peak_rss_mb()
            );
        }
    }
    let heads: Vec<_> = layout.shards().map(|s| full.heads(s)).collect();
    let rss_peak_mb = crate::rss::peak_rss_mb();
    eprintln!(
        "merged {annotations} annotations (rss peak {rss_peak_mb:.0} MB); saving to {}",
        path.display()
    );
    let start = Instant::now();
    let mut largest_shard = 0u64;
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::new(file);
    for shard in layout.shards() {
        let bytes = full.save_shard(shard);
        largest_shard = largest_shard.max(bytes.len() as u64);
        out.write_all(&shard.0.to_le_bytes())?;
        out.write_all(&(bytes.len() as u64).to_le_bytes())?;
        out.write_all(&bytes)?;
    }
    out.into_inner()?.sync_all()?;
    let save_s = start.elapsed().as_secs_f64();
    Ok(Built {
        heads,
        record_s,
        merge_s,
        save_s,
        delta_annotations,
        delta_sync_bytes,
        delta_messages,
        largest_message,
        largest_shard,
        rss_peak_mb,
    })
}

/// Reads a replica saved by [`build_and_save`]: per shard a `u16` shard id, a `u64` length and
/// the shard's saved bytes.
fn load(dataset: Dataset, path: &Path) -> anyhow::Result<Replica> {
    let mut loaded = Replica::new(dataset);
    let mut input = BufReader::new(
        File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
    );
    let mut header = [0u8; 10];
    let mut buf = Vec::new();
    for _ in 0..dataset.layout.shard_count() {
        input
            .read_exact(&mut header)
            .with_context(|| format!("{} is cut short", path.display()))?;
        let shard = ShardId(u16::from_le_bytes([header[0], header[1]]));
        let mut len = [0u8; 8];
        len.copy_from_slice(&header[2..]);
        buf.resize(usize::try_from(u64::from_le_bytes(len))?, 0);
        input.read_exact(&mut buf)?;
        loaded
            .load_shard(shard, &buf)
            .with_context(|| format!("shard {} of {}", shard.0, path.display()))?;
    }
    Ok(loaded)
}

/// Current resident set size in MB (`VmRSS`), or 0 where unknown.
fn current_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}
