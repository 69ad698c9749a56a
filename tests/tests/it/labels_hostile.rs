//! A hostile peer — a raw libp2p swarm — pushes forged annotations on gossip and answers the
//! nodes' label pulls with them: a bad signature, a slot claimed with another's key, a sample the
//! manifest does not list. Every node rejects and counts them, and none of them is in any node's
//! labels.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::time::Duration;

use libp2p::PeerId;
use swarmlabel_crdt::{Annotation, AnnotatorKey, SampleId, SignedAnnotation, Value};
use swarmlabel_node::labels::gossip;
use swarmlabel_node::labels::wire::{self as sync, KIND};
use swarmlabel_node::replicate::{Reply, Wire as _};
use swarmlabel_store::Identity;
use swarmlabel_tests::labels::{LabelNet, config, dataset};
use swarmlabel_tests::network::{wait_until, within};
use swarmlabel_tests::raw::RawPeer;

fn annotation(annotator: AnnotatorKey, sample: u8, time_ms: u64) -> Annotation {
    annotation_at(annotator, sample, 1, time_ms)
}

fn annotation_at(annotator: AnnotatorKey, sample: u8, seq: u32, time_ms: u64) -> Annotation {
    Annotation {
        dataset: dataset().id,
        sample: SampleId(swarmlabel_store::BlobId::of(&[sample]).0),
        annotator,
        seq,
        time_ms,
        value: Value::Label(1),
        suggestion: None,
    }
}

fn key_of(id: &Identity) -> AnnotatorKey {
    id.public_key()
}

/// Forgeries, each at a place its chain takes next (so that it is checked, not skipped as held):
/// the hostile key's first label of `sample` with a broken signature, another one for the
/// sentinel's sample after the sentinel, and a label naming the victim as annotator, the second
/// of its chain, signed by the hostile key (a claim on the victim's slot).
struct Forgeries {
    bad_signature: SignedAnnotation,
    bad_signature_again: SignedAnnotation,
    claimed: SignedAnnotation,
}

fn forgeries(hostile: &Identity, victim: AnnotatorKey, sample: u8) -> Forgeries {
    let valid_own = SignedAnnotation::sign(
        annotation(key_of(hostile), sample, 5),
        hostile.signing_key(),
    )
    .unwrap();
    let mut broken = *valid_own.signature();
    broken[10] ^= 1;
    let bad_signature = SignedAnnotation::from_parts(*valid_own.annotation(), broken);
    broken[20] ^= 1;
    let bad_signature_again =
        SignedAnnotation::from_parts(annotation_at(key_of(hostile), 2, 2, 8), broken);
    let claimed =
        SignedAnnotation::from_parts(annotation_at(victim, sample, 2, 6), *valid_own.signature());
    Forgeries {
        bad_signature,
        bad_signature_again,
        claimed,
    }
}

/// A sample (`BlobId::of([b])`) of `shard`.
fn sample_in(shard: u16) -> u8 {
    (0..=255u8)
        .find(|b| {
            let sample = SampleId(swarmlabel_store::BlobId::of(&[*b]).0);
            dataset().layout.shard_of(&sample).0 == shard
        })
        .expect("256 samples cover the 8 shards")
}

/// Answers every label request the hostile peer gets: a summary that differs in every shard,
/// and to each pull a forged record of the shard asked for, at the place the asker's chain takes
/// next (from the tips it sent): by turns the hostile key's own with a broken signature, and one
/// naming the victim signed by the hostile key. Until every node has refused `want` pages;
/// returns the pages answered.
async fn answer_pulls_with_forgeries(
    raw: &mut RawPeer,
    net: &LabelNet,
    hostile: &Identity,
    victim: AnnotatorKey,
    want: u64,
) -> usize {
    let shards = usize::from(dataset().layout.shard_count());
    let mut answered = 0;
    within("every node to refuse the forged pages", async {
        loop {
            let mut done = true;
            for n in &net.nodes {
                done &= n.labels.counters().sync_refused >= want;
            }
            if done {
                break;
            }
            raw.step(Duration::from_millis(50)).await;
            for incoming in std::mem::take(&mut raw.replication_requests) {
                let body = &incoming.bytes[1..];
                let reply = match sync::Request::decode(body) {
                    Ok(sync::Request::Summary { .. }) => {
                        Reply::Ok(sync::Response::Summary(vec![[0xee; 32]; shards]))
                    }
                    Ok(sync::Request::Pull { shard, tips, .. }) => {
                        let author = if answered % 2 == 0 {
                            key_of(hostile)
                        } else {
                            victim
                        };
                        let next = tips
                            .iter()
                            .find(|t| t.annotator == author)
                            .map_or(1, |t| t.seq + 1);
                        let own = SignedAnnotation::sign(
                            annotation_at(key_of(hostile), sample_in(shard), next, 9),
                            hostile.signing_key(),
                        )
                        .unwrap();
                        let mut sig = *own.signature();
                        sig[0] ^= 1;
                        let forged = SignedAnnotation::from_parts(
                            annotation_at(author, sample_in(shard), next, 9),
                            if author == victim {
                                *own.signature()
                            } else {
                                sig
                            },
                        );
                        answered += 1;
                        Reply::Ok(sync::Response::Records {
                            records: vec![forged],
                            more: false,
                        })
                    }
                    Err(_) => Reply::Refused,
                };
                raw.respond(incoming, reply.encode().unwrap(), false);
            }
        }
    })
    .await;
    answered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_annotations_by_gossip_and_by_sync_are_rejected_by_every_node() {
    let net = LabelNet::start(3, |i| config(100 + i as u64, true, true)).await;
    let victim_id = &net.nodes[0].node.home.identity;
    let victim = key_of(victim_id);
    // The victim's own label of sample 1, which the forgeries try to replace or shadow.
    let honest = net.nodes[0]
        .label(annotation(victim, 1, 1).sample, 1, Value::Label(0))
        .await;

    let hostile_id = Identity::generate().unwrap();
    let mut hostile = RawPeer::with_identity(hostile_id.clone());
    let topic = KIND.topic(&dataset().id);
    for n in &net.nodes {
        hostile.dial(n.addr.clone());
    }
    // Wait until the hostile peer knows all three nodes subscribe, so one publish reaches each.
    hostile.subscribe(&topic, 3).await;

    // Gossip: the two forgeries, then the hostile key's own valid label of another sample as a
    // sentinel. Messages from one peer arrive in order, but a node may get the sentinel first
    // from another node (forwarded, or by sync): so wait until every node holds the sentinel and
    // has judged two messages, then check what it made of them.
    let g = forgeries(&hostile_id, victim, 1);
    let sentinel = SignedAnnotation::sign(
        annotation(key_of(&hostile_id), 2, 7),
        hostile_id.signing_key(),
    )
    .unwrap();
    for record in [g.bad_signature, g.claimed, sentinel] {
        hostile
            .publish(&topic, gossip::encode(&[record]).unwrap())
            .unwrap();
    }
    let sentinel_triple = (
        sentinel.annotation().sample,
        key_of(&hostile_id),
        Value::Label(1),
    );
    within(
        "every node to take the sentinel and judge the forgeries",
        async {
            loop {
                let mut all = true;
                for n in &net.nodes {
                    all &= n.holdings().await.0.contains(&sentinel_triple)
                        && n.labels.counters().gossip_rejected >= 2;
                }
                if all {
                    break;
                }
                hostile.step(Duration::from_millis(50)).await;
            }
        },
    )
    .await;
    for (i, n) in net.nodes.iter().enumerate() {
        assert_eq!(
            n.labels.counters().gossip_rejected,
            2,
            "node {i} rejected both forged gossip messages"
        );
        let metrics = n.node.node.encode_metrics();
        assert!(
            metrics.contains("swarmlabel_labels_gossip_rejected_total 2"),
            "node {i}'s /metrics show the rejections"
        );
    }

    // Why 5 of issue 14: a reject used to drop the message only. Now it costs the sender its
    // gossip score: after a third forgery every node graylists the hostile peer (everything it
    // sends on gossip is dropped unread) and bans it (disconnected, refused).
    hostile
        .publish(&topic, gossip::encode(&[g.bad_signature_again]).unwrap())
        .unwrap();
    let graylist = swarmlabel_net::swarm::behaviour::score_thresholds().graylist_threshold;
    within("every node to graylist the forger", async {
        loop {
            let mut all = true;
            for n in &net.nodes {
                let score = n.node.node.gossip_score(hostile.peer_id()).await.unwrap();
                let peers = n.node.node.peers().await.unwrap();
                let connected = peers.iter().any(|p| p.peer_id == hostile.peer_id());
                all &= score.is_some_and(|s| s < graylist) && !connected;
            }
            if all {
                break;
            }
            hostile.step(Duration::from_millis(50)).await;
        }
    })
    .await;

    // Sync: another hostile peer, which the nodes pull from (it holds the dataset, as far as
    // they can tell), answers with forgeries in the shard they asked for; every node refuses
    // them, and its third refused page bans the peer (audit 2026-12-04, N7: a refusal used to
    // cost the sender nothing).
    let forger_id = Identity::generate().unwrap();
    let mut forger = RawPeer::with_identity(forger_id.clone());
    for n in &net.nodes {
        forger.dial(n.addr.clone());
    }
    forger.subscribe(&topic, 3).await;
    let answered = answer_pulls_with_forgeries(&mut forger, &net, &forger_id, victim, 3).await;
    assert!(
        answered >= 9,
        "three refused pages per node, {answered} answered"
    );
    within("every node to ban the forger", async {
        loop {
            let mut all = true;
            for n in &net.nodes {
                all &= !connected(n).await.contains(&forger.peer_id());
            }
            if all {
                break;
            }
            forger.step(Duration::from_millis(50)).await;
        }
    })
    .await;

    // Nothing forged anywhere, the honest label intact, even after anti-entropy among the nodes
    // has had rounds to spread anything that slipped in: wait until the nodes agree.
    let agreed = || async {
        let first = net.nodes[0].holdings().await;
        for n in &net.nodes[1..] {
            if n.holdings().await != first {
                return false;
            }
        }
        true
    };
    wait_until("the nodes to agree", agreed).await;
    for (i, n) in net.nodes.iter().enumerate() {
        let (held, rejected) = n.holdings().await;
        assert_eq!(
            held.iter().filter(|t| t.1 == victim).collect::<Vec<_>>(),
            vec![&honest],
            "node {i}: the victim's slots hold only its own label"
        );
        assert_eq!(
            held.len(),
            2,
            "node {i}: the honest label and the sentinel: {held:?}"
        );
        assert_eq!(rejected, 0, "node {i} stored an invalid value");
    }
    net.stop().await;
}

/// A peer that takes label sync requests and never answers them: every node starts a session
/// with it and the session hangs; the nodes must still converge among themselves meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_answers_does_not_stall_sync_among_the_others() {
    use std::collections::HashSet;
    use tokio::sync::{mpsc, oneshot};

    // Gossip off: only anti-entropy can carry the labels, so a stalled session would show.
    let net = LabelNet::start(3, |i| config(200 + i as u64, true, false)).await;
    let mut silent = RawPeer::new();
    for n in &net.nodes {
        silent.dial(n.addr.clone());
    }
    // Subscribed, so the nodes count it among the holders of the dataset and pick it.
    silent.subscribe(&KIND.topic(&dataset().id), 3).await;
    // The silent peer's task: keeps every request's channel unanswered; a query returns the
    // requesters whose requests are all still waiting (none timed out or was given up).
    let (query, mut queries) = mpsc::channel::<oneshot::Sender<HashSet<PeerId>>>(4);
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                () = silent.step(Duration::from_millis(50)) => {}
                Some(reply) = queries.recv() => {
                    let waiting = silent
                        .replication_requests
                        .iter()
                        .filter(|r| r.channel.is_open())
                        .map(|r| r.peer)
                        .collect();
                    let _ = reply.send(waiting);
                }
            }
        }
    });
    let stuck = || async {
        let (reply, rx) = oneshot::channel();
        query.send(reply).await.unwrap();
        rx.await.unwrap()
    };
    let everyone: HashSet<PeerId> = net.nodes.iter().map(|n| n.peer_id()).collect();
    wait_until(
        "every node to be stuck in a session with the silent peer",
        || async { stuck().await == everyone },
    )
    .await;

    // Now every node labels; the others must converge while those sessions still hang.
    let mut acked = Vec::new();
    for (i, n) in net.nodes.iter().enumerate() {
        for s in 0..4u8 {
            let sample = annotation(key_of(&n.node.home.identity), 10 * i as u8 + s, 1).sample;
            acked.push(n.label(sample, 1, Value::Label(2)).await);
        }
    }
    acked.sort();
    net.wait_for("the nodes to converge beside the silent peer", &acked)
        .await;
    assert_eq!(
        stuck().await,
        everyone,
        "every node's session with the silent peer was still waiting when they converged"
    );
    task.abort();
    net.stop().await;
}

/// The connected peers of `node`, as peer ids.
async fn connected(node: &swarmlabel_tests::labels::LabelNode) -> Vec<libp2p::PeerId> {
    node.node
        .node
        .peers()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.peer_id)
        .collect()
}

/// The first `n` records of `author`'s chain in `shard`, each of another sample.
fn chain_of(author: &Identity, shard: u16, n: usize) -> Vec<SignedAnnotation> {
    (0..=255u8)
        .filter(|b| {
            let sample = SampleId(swarmlabel_store::BlobId::of(&[*b]).0);
            dataset().layout.shard_of(&sample).0 == shard
        })
        .take(n)
        .zip(1..)
        .map(|(sample, seq)| {
            SignedAnnotation::sign(
                annotation_at(key_of(author), sample, seq, u64::from(seq)),
                author.signing_key(),
            )
            .unwrap()
        })
        .collect()
}

/// What a user would check of `records`: (sample, annotator, value).
fn triples(records: &[SignedAnnotation]) -> Vec<(SampleId, AnnotatorKey, Value)> {
    records
        .iter()
        .map(|r| {
            let a = r.annotation();
            (a.sample, a.annotator, a.value)
        })
        .collect()
}

/// Audit 2026-12-04, N3: an author over its quota used to get `Reject`, and gossipsub charges a
/// reject to the peer that forwarded the message: an attacker drove its own key into debt at B
/// with replayed records (free: each took quota, got `Ignore`), handed A a few fresh records, and
/// B banned A, the honest relay, until restart. One author per node partitions a network. Now a
/// record costs quota only when it is new, over a quota is `Ignore`, and B keeps A. Written to
/// fail on the code before (B banned A); it did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_relay_of_an_author_over_its_quota_is_never_banned() {
    // B takes 4 records of an author at once, then one every 2 s; A has the default quotas.
    let tight = swarmlabel_node::labels::intake::Limits {
        per_author: (0.5, 4.0),
        ..Default::default()
    };
    let net = LabelNet::start(2, |i| swarmlabel_node::labels::Config {
        intake: if i == 1 { tight } else { Default::default() },
        ..config(300 + i as u64, true, true)
    })
    .await;
    let (a, b) = (&net.nodes[0], &net.nodes[1]);
    let topic = KIND.topic(&dataset().id);
    // One attacker identity, present twice: next to B only, and next to A only.
    let attacker = Identity::generate().unwrap();
    let mut at_b = RawPeer::with_identity(attacker.clone());
    at_b.dial(b.addr.clone());
    at_b.subscribe(&topic, 1).await;
    let records = chain_of(&attacker, 1, 12);
    assert_eq!(records.len(), 12);
    let all = triples(&records);
    // Four fresh records at B: the author's burst there is spent.
    at_b.publish(&topic, gossip::encode(&records[..4]).unwrap())
        .unwrap();
    wait_until("B to take the first four", || async {
        let held = b.holdings().await.0;
        all[..4].iter().all(|t| held.contains(t))
    })
    .await;
    // Then replays of them (each message differs: another order): four, enough to put the
    // author deep in debt where that cost quota, not so many that B would ban the replayer.
    for i in 0..4usize {
        let mut replay = records[..4].to_vec();
        replay.rotate_left(i);
        at_b.publish(&topic, gossip::encode(&replay).unwrap())
            .unwrap();
        at_b.step(Duration::from_millis(10)).await;
    }
    wait_until("B to judge the replays", || async {
        b.labels.counters().gossip_ignored >= 4
    })
    .await;
    // Now the author's chain handed to A, which takes and forwards it to B: the first four B
    // holds, the next are fresh there, and over the author's quota.
    let mut at_a = RawPeer::with_identity(attacker.clone());
    at_a.dial(a.addr.clone());
    at_a.subscribe(&topic, 1).await;
    at_a.publish(&topic, gossip::encode(&records[..4]).unwrap())
        .unwrap();
    for part in records[4..].chunks(2) {
        at_a.publish(&topic, gossip::encode(part).unwrap()).unwrap();
        at_a.step(Duration::from_millis(10)).await;
    }
    wait_until("B to hear A's forwards of the fresh records", || async {
        b.labels.counters().over_quota > 0
    })
    .await;
    let graylist = swarmlabel_net::swarm::behaviour::score_thresholds().graylist_threshold;
    let a_id = a.peer_id();
    let score = b.node.node.gossip_score(a_id).await.unwrap();
    assert!(
        score.is_some_and(|s| s > graylist),
        "B's score of A: {score:?}"
    );
    assert!(
        connected(b).await.contains(&a_id),
        "B keeps the honest relay A"
    );
    assert_eq!(b.labels.counters().gossip_rejected, 0);
    // And the records left for later arrive, within the author's quota, by anti-entropy.
    wait_until("B to hold the author's latest record", || async {
        b.holdings().await.0.contains(&all[11])
    })
    .await;
    assert!(connected(b).await.contains(&a_id));
    net.stop().await;
}

/// A valid record by a fresh key, the first of its chain, of a sample in `shard`.
fn fresh_key_record(shard: u16, n: u32) -> SignedAnnotation {
    let key = Identity::from_secret_bytes(*blake3::hash(&n.to_le_bytes()).as_bytes());
    SignedAnnotation::sign(
        annotation_at(key_of(&key), sample_in(shard), 1, 1),
        key.signing_key(),
    )
    .unwrap()
}

/// Audit 2026-12-04, N4: the gossip quota was keyed on gossipsub's `source`, which a sender
/// picks fresh (a fresh libp2p key, fresh annotator keys); sync had no quota at all. Now a node
/// takes records through buckets per connected peer and for all peers together, on gossip and
/// sync alike: whatever number of keys the flood comes from, what it stores is bounded. Written
/// to fail on the code before (it stored every record); it did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_from_fresh_keys_by_gossip_and_by_sync_store_a_bounded_number_of_records() {
    // Each peer may make this node store 40 records, all peers together 100 (no refill).
    let limits = swarmlabel_node::labels::intake::Limits {
        per_peer: (0.0, 40.0),
        per_author: (0.0, 1_000.0),
        all: (0.0, 100.0),
    };
    let net = LabelNet::start(1, |_| swarmlabel_node::labels::Config {
        intake: limits,
        ..config(400, true, true)
    })
    .await;
    let victim = &net.nodes[0];
    let topic = KIND.topic(&dataset().id);
    let held = || async { victim.holdings().await.0.len() };

    // Sync: the victim pulls from a peer that answers every pull with a page of 4,096 valid
    // records, each by a fresh key.
    let mut syncer = RawPeer::new();
    syncer.dial(victim.addr.clone());
    syncer.subscribe(&topic, 1).await;
    let shards = usize::from(dataset().layout.shard_count());
    let mut offered = 0u32;
    within("the victim to pull pages and leave most for later", async {
        while victim.labels.counters().over_quota == 0 || offered < 3 * 4096 {
            syncer.step(Duration::from_millis(20)).await;
            for incoming in std::mem::take(&mut syncer.replication_requests) {
                let reply = match sync::Request::decode(&incoming.bytes[1..]) {
                    Ok(sync::Request::Summary { .. }) => {
                        Reply::Ok(sync::Response::Summary(vec![[0xee; 32]; shards]))
                    }
                    Ok(sync::Request::Pull { shard, .. }) => {
                        let records = (offered..offered + 4096)
                            .map(|n| fresh_key_record(shard, n))
                            .collect();
                        offered += 4096;
                        Reply::Ok(sync::Response::Records {
                            records,
                            more: true,
                        })
                    }
                    Err(_) => Reply::Refused,
                };
                syncer.respond(incoming, reply.encode().unwrap(), false);
            }
        }
    })
    .await;
    let by_sync = held().await;
    assert!(
        (1..=40).contains(&by_sync),
        "{by_sync} of {offered} records offered by one peer's pages were stored"
    );

    // Gossip: 20 peers, each a fresh libp2p key (a fresh gossip source), each 10 messages of 16
    // records by fresh annotator keys.
    let mut flooders: Vec<RawPeer> = (0..20).map(|_| RawPeer::new()).collect();
    for f in &mut flooders {
        f.dial(victim.addr.clone());
        f.subscribe(&topic, 1).await;
    }
    let before = victim.labels.counters();
    let mut n = 1_000_000u32;
    for f in &mut flooders {
        for _ in 0..10 {
            let batch: Vec<_> = (0..16)
                .map(|_| {
                    n += 1;
                    fresh_key_record((n % 8) as u16, n)
                })
                .collect();
            f.publish(&topic, gossip::encode(&batch).unwrap()).unwrap();
        }
        f.step(Duration::from_millis(5)).await;
    }
    within("the victim to judge the 200 messages", async {
        loop {
            let c = victim.labels.counters();
            let judged = c.gossip_accepted + c.gossip_ignored + c.gossip_rejected
                - (before.gossip_accepted + before.gossip_ignored + before.gossip_rejected);
            if judged >= 200 {
                break;
            }
            for f in &mut flooders {
                f.step(Duration::from_millis(1)).await;
            }
        }
    })
    .await;
    let total = held().await;
    assert!(
        total <= 100,
        "{total} records stored of {} offered by 21 peers and 3,220 keys",
        offered + 3200
    );
    assert_eq!(
        victim.labels.counters().gossip_rejected,
        0,
        "valid records are never rejected"
    );
    let log = victim
        .node
        .home
        .home
        .root()
        .join("labels")
        .join(hex::encode(dataset().id.0))
        .join("records.log");
    let bytes = std::fs::metadata(&log).unwrap().len();
    assert!(
        bytes <= 100 * swarmlabel_node::labels::LOG_ENTRY_BYTES,
        "the record log holds {bytes} bytes"
    );
    net.stop().await;
}
