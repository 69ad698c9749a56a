//! A hostile peer — a raw libp2p swarm — pushes forged annotations on gossip and through the label
//! sync protocol: a bad signature, and a slot claimed with another's key. Every node rejects and
//! counts them, and none of them is in any node's labels.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::time::Duration;

use automerge::sync::SyncDoc as _;
use automerge::transaction::Transactable as _;
use libp2p::PeerId;
use swarmlabel_crdt::layout::slot_key;
use swarmlabel_crdt::{Annotation, AnnotatorKey, SampleId, SignedAnnotation, Value};
use swarmlabel_net::Identity;
use swarmlabel_node::labels::gossip;
use swarmlabel_node::labels::wire::{self as sync, KIND};
use swarmlabel_node::replicate::{Reply, Wire as _};
use swarmlabel_tests::labels::{LabelNet, config, dataset};
use swarmlabel_tests::network::{wait_until, within};
use swarmlabel_tests::raw::RawPeer;

fn annotation(annotator: AnnotatorKey, sample: u8, time_ms: u64) -> Annotation {
    Annotation {
        dataset: dataset().id,
        sample: SampleId(swarmlabel_net::BlobId::of(&[sample]).0),
        annotator,
        time_ms,
        value: Value::Label(1),
        suggestion: None,
    }
}

fn key_of(id: &Identity) -> AnnotatorKey {
    AnnotatorKey(id.public_key().0)
}

/// Three forgeries: the hostile key's own label with a broken signature; a label naming the
/// victim as annotator but signed by the hostile key (a claim on the victim's slot); and, for
/// sync only, the hostile key's valid label stored under the victim's slot key.
struct Forgeries {
    bad_signature: SignedAnnotation,
    bad_signature_again: SignedAnnotation,
    claimed: SignedAnnotation,
    valid_own: SignedAnnotation,
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
    let bad_signature_again = SignedAnnotation::from_parts(*valid_own.annotation(), broken);
    let claimed =
        SignedAnnotation::from_parts(annotation(victim, sample, 6), *valid_own.signature());
    Forgeries {
        bad_signature,
        bad_signature_again,
        claimed,
        valid_own,
    }
}

async fn request(raw: &mut RawPeer, peer: PeerId, req: sync::Request) -> Reply<sync::Response> {
    let body = req.encode().unwrap();
    let answer = raw
        .replicate(peer, KIND.tag, body)
        .await
        .unwrap_or_else(|e| panic!("a sync request failed: {e}"));
    Reply::decode(&answer).unwrap()
}

/// Runs automerge's sync of a document holding `key` → `record` with `peer`, as an honest peer
/// would; returns whether the peer refused a message.
async fn push_by_sync(
    raw: &mut RawPeer,
    peer: PeerId,
    key: &str,
    record: &SignedAnnotation,
) -> bool {
    let mut doc = automerge::AutoCommit::new();
    doc.put(
        automerge::ROOT,
        key,
        automerge::ScalarValue::Bytes(record.to_bytes().to_vec()),
    )
    .unwrap();
    let shard = dataset().layout.shard_of(&record.annotation().sample);
    let mut state = automerge::sync::State::new();
    for step in 0..8 {
        let message = doc
            .sync()
            .generate_sync_message(&mut state)
            .map(|m| m.encode())
            .unwrap_or_default();
        let req = sync::Request::Sync {
            dataset: dataset().id,
            shard: shard.0,
            new_round: step == 0,
            message,
        };
        match request(raw, peer, req).await {
            Reply::Refused => return true,
            Reply::Ok(sync::Response::Sync(bytes)) if !bytes.is_empty() => {
                let m = automerge::sync::Message::decode(&bytes).unwrap();
                doc.sync().receive_sync_message(&mut state, m).unwrap();
            }
            Reply::Ok(sync::Response::Sync(_)) => {}
            other => panic!("unexpected sync response {other:?}"),
        }
    }
    false
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

    // Sync: each forgery in a document of its own, synced with each node as an honest peer
    // would; every node refuses every one.
    let s = forgeries(&hostile_id, victim, 3);
    let victim_slot = slot_key(&s.valid_own.annotation().sample, &victim);
    let own_slot = slot_key(&s.valid_own.annotation().sample, &key_of(&hostile_id));
    let cases = [
        ("a bad signature", own_slot, s.bad_signature),
        ("the victim's slot claimed", victim_slot.clone(), s.claimed),
        ("another's slot holding our label", victim_slot, s.valid_own),
    ];
    for n in &net.nodes {
        for (what, key, record) in &cases {
            assert!(
                push_by_sync(&mut hostile, n.peer_id(), key, record).await,
                "{what} was not refused"
            );
        }
    }
    for (i, n) in net.nodes.iter().enumerate() {
        assert!(
            n.labels.counters().sync_refused >= 3,
            "node {i} refused each forged sync: {:?}",
            n.labels.counters()
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
                let connected = peers
                    .iter()
                    .any(|p| p.peer_id == hostile.peer_id().to_string());
                all &= score.is_some_and(|s| s < graylist) && !connected;
            }
            if all {
                break;
            }
            hostile.step(Duration::from_millis(50)).await;
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
