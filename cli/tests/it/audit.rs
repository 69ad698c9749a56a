//! The 2026-12-04 audit's remote kills, sent to a real `swarmlabel run` over a real libp2p
//! connection by a raw peer: the node must stay up (`/healthz` answers), its memory bounded.
//!
//! The bytes are the attacks as the audit describes them, in the label protocol of the code it
//! read (automerge sync messages inside a labels request): a node of today refuses them at the
//! first byte, a node of then crashed or exhausted its memory. Written to fail on that code; they
//! did (see the closing note of issue 24).

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use crate::support::labeling;
use crate::support::process;

use labeling::Node;
use libp2p::{Multiaddr, PeerId};
use swarmlabel_tests::network::within;
use swarmlabel_tests::raw::RawPeer;

/// The labels kind's tag on `/swarmlabel/replicate/1.0.0`.
const LABELS: u8 = 1;

/// The node's libp2p address and peer id, from `status --json`.
fn address(node: &Node) -> (Multiaddr, PeerId) {
    let status: serde_json::Value =
        serde_json::from_str(&process::ok(&node.home, &["status", "--json"])).unwrap();
    let peer: PeerId = status["peer_id"].as_str().unwrap().parse().unwrap();
    let addr = status["listen_addrs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str()?.parse::<Multiaddr>().ok())
        .find(|a| a.to_string().starts_with("/ip4/127.0.0.1/tcp/"))
        .unwrap();
    (addr, peer)
}

/// The node's peak resident memory in MB (`VmHWM`).
fn peak_rss_mb(node: &Node) -> f64 {
    let pid = node.daemon.as_ref().unwrap().child.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap()
        / 1024.0
}

/// Whether the node still runs and `/healthz` answers `ok`.
fn alive(node: &mut Node) -> bool {
    let running = node
        .daemon
        .as_mut()
        .unwrap()
        .child
        .try_wait()
        .unwrap()
        .is_none();
    running && node.get("/healthz").status == 200
}

/// A digits node with one label (so its shard holds a change), running.
fn labelled_node() -> Node {
    let mut node = Node::digits();
    node.start();
    let queue = node.get(&format!("{}/queue?n=1", node.ds()));
    let sample = queue.body[0]["sample"].as_str().unwrap().to_owned();
    let body = serde_json::json!({ "sample": sample, "label": "3" }).to_string();
    let r = node.post(&format!("{}/labels", node.ds()), &body);
    assert_eq!(r.status, 200, "{:?}", r.body);
    node
}

/// A labels request of the audited protocol: a sync step of `shard` carrying `message`.
fn sync_request(dataset: &str, shard: u16, message: &[u8]) -> Vec<u8> {
    let mut out = vec![0x02];
    out.extend_from_slice(&hex::decode(dataset).unwrap());
    out.extend_from_slice(&shard.to_le_bytes());
    out.push(1); // a new round
    out.extend_from_slice(&(message.len() as u32).to_le_bytes());
    out.extend_from_slice(message);
    out
}

/// Sends `body` as a labels request to the node and waits for its answer or the connection's end.
fn send(node: &Node, body: Vec<u8>) -> Result<Vec<u8>, String> {
    let (addr, peer) = address(node);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut raw = RawPeer::new();
        raw.dial(addr);
        within(
            "the answer to a hostile request",
            raw.replicate(peer, LABELS, body),
        )
        .await
    })
}

/// N1: a sync message whose `have` Bloom filter says one entry, zero bits per entry (three
/// bytes: `01 00 05`): automerge computed `% 0` building the reply, the labels service panicked
/// and the node exited (70).
#[test]
fn a_three_byte_bloom_filter_does_not_stop_the_node() {
    let mut node = labelled_node();
    let mut message = vec![0x42, 1];
    message.extend_from_slice(&[0x5a; 32]); // heads: one hash the node does not know
    message.extend_from_slice(&[0, 1, 0, 3, 0x01, 0x00, 0x05, 0]); // need, have (bloom), changes
    // The node answers (a node that panics on it never does), twice, and is still there.
    for _ in 0..2 {
        let answer = send(&node, sync_request(&node.id, 0, &message));
        assert!(
            answer.is_ok(),
            "no answer to the crafted Bloom filter: {answer:?}"
        );
    }
    assert!(
        alive(&mut node),
        "the node stopped after a crafted Bloom filter"
    );
}

/// Predecessors the bomb claims for its one op (4 GiB of op ids once parsed; kept below what
/// would take the whole machine down on the code it was written against).
const CLAIMED: u64 = 1 << 28;

/// A change chunk (automerge's storage format, valid checksum) whose `pred` columns say, in a
/// few bytes of run-length encoding, [`CLAIMED`] predecessors for its one op: parsing it
/// allocated an op id for each.
fn rle_bomb() -> Vec<u8> {
    use automerge::legacy::{Key, ObjectId, Op, OpId, OpType, SortedVec};
    use automerge::{ActorId, Change, ExpandedChange, ScalarValue};
    let actor = ActorId::from(&[7u8; 16][..]);
    let op = Op {
        action: OpType::Put(ScalarValue::Bytes(vec![1, 2, 3])),
        obj: ObjectId::Root,
        key: Key::Map("k".into()),
        pred: SortedVec::from(vec![OpId::new(1, &actor)]),
        insert: false,
    };
    let change = Change::from(ExpandedChange {
        operations: vec![op],
        actor_id: actor,
        hash: None,
        seq: 1,
        start_op: std::num::NonZeroU64::new(2).unwrap(),
        time: 0,
        message: None,
        deps: vec![],
        extra_bytes: vec![],
        author: None,
    });
    let bytes = change.raw_bytes().to_vec();
    // Header: magic (4), checksum (4), type (1), length (uleb); then the change.
    let (len, at) = uleb(&bytes, 9);
    let data = &bytes[at..at + len as usize];
    let mut d = 0;
    let (deps, n) = uleb(data, d);
    d = n + 32 * deps as usize;
    let (actor_len, n) = uleb(data, d);
    d = n + actor_len as usize;
    d = uleb(data, d).1; // seq
    d = uleb(data, d).1; // start op
    d = uleb(data, d).1; // time (a small non-negative value: one byte)
    let (msg_len, n) = uleb(data, d);
    d = n + msg_len as usize;
    let (others, n) = uleb(data, d);
    assert_eq!(others, 0);
    d = n;
    let (columns, n) = uleb(data, d);
    d = n;
    let mut meta = Vec::new();
    for _ in 0..columns {
        let (spec, n) = uleb(data, d);
        let (clen, n2) = uleb(data, n);
        meta.push((spec, clen, d, n2));
        d = n2;
    }
    // Rebuild with the pred group column (spec 0x70) saying: one run of 2^32.
    let mut body = data[..meta[0].2].to_vec();
    let mut columns_data = Vec::new();
    let mut col_at = meta.last().map_or(d, |m| m.3);
    let mut new_meta = Vec::new();
    for (spec, clen, _, _) in &meta {
        let mut col = data[col_at..col_at + *clen as usize].to_vec();
        col_at += *clen as usize;
        // The pred group (how many predecessors: one run of one op, value CLAIMED), the pred
        // actors (one run of CLAIMED zeros) and counters (one run of CLAIMED deltas of 1).
        match *spec {
            0x70 => {
                col = vec![0x01];
                put_uleb(&mut col, CLAIMED);
            }
            0x71 => {
                col = Vec::new();
                put_uleb(&mut col, CLAIMED);
                col.push(0);
            }
            0x73 => {
                col = Vec::new();
                put_uleb(&mut col, CLAIMED);
                col.push(1);
            }
            _ => {}
        }
        put_uleb(&mut new_meta, *spec);
        put_uleb(&mut new_meta, col.len() as u64);
        columns_data.extend_from_slice(&col);
    }
    for spec in [0x70, 0x71, 0x73] {
        assert!(meta.iter().any(|m| m.0 == spec), "a pred column {spec:#x}");
    }
    body.extend_from_slice(&new_meta);
    body.extend_from_slice(&columns_data);
    body.extend_from_slice(&data[col_at..]);
    let mut hashed = vec![bytes[8]];
    put_uleb(&mut hashed, body.len() as u64);
    hashed.extend_from_slice(&body);
    let checksum = sha2_256(&hashed);
    let mut out = bytes[..4].to_vec();
    out.extend_from_slice(&checksum[..4]);
    out.extend_from_slice(&hashed);
    out
}

fn uleb(bytes: &[u8], mut at: usize) -> (u64, usize) {
    let (mut v, mut shift) = (0u64, 0);
    loop {
        let b = bytes[at];
        at += 1;
        v |= u64::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return (v, at);
        }
    }
}

fn put_uleb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// SHA-256, as automerge's chunk checksum uses (first 4 bytes).
fn sha2_256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

/// N2: a change chunk of about a hundred bytes whose run-length columns claim 2^28
/// predecessors for one op: parsing it (before any screening could look at it) allocated by that
/// count.
#[test]
fn a_run_length_bomb_does_not_exhaust_the_node() {
    let mut node = labelled_node();
    let before = peak_rss_mb(&node);
    let chunk = rle_bomb();
    assert!(chunk.len() < 200, "{} bytes", chunk.len());
    let mut message = vec![0x42, 0, 0, 0, 1];
    put_uleb(&mut message, chunk.len() as u64);
    message.extend_from_slice(&chunk);
    let answer = send(&node, sync_request(&node.id, 0, &message));
    assert!(
        answer.is_ok(),
        "no answer to the run-length bomb: {answer:?}"
    );
    assert!(alive(&mut node), "the node stopped after a run-length bomb");
    let after = peak_rss_mb(&node);
    assert!(
        after < before + 100.0,
        "peak memory went from {before:.0} MB to {after:.0} MB"
    );
}
