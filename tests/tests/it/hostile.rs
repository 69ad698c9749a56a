//! (e) A hostile peer — a raw libp2p swarm speaking our protocols badly — cannot make a node
//! accept bad data or stop serving.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::gossipsub;
use libp2p::identity::Keypair;
use swarmlabel_net::swarm::announce::{self, Announcement};
use swarmlabel_net::swarm::blob;
use swarmlabel_net::swarm::fetch::Options;
use swarmlabel_store::dataset::manifest::{Root, SignedRoot, Task};
use swarmlabel_store::{Identity, store::BlobId};
use swarmlabel_tests::network::{TestNode, start_bootstrap, wait_until, within};
use swarmlabel_tests::raw::RawPeer;

/// What a request is, its bytes, and the answer expected (`None`: closed without a byte).
type Case = (&'static str, Vec<u8>, Option<Vec<u8>>);

/// A signed root of a made-up dataset, owned by `owner`.
fn made_up_root(owner: &Identity) -> SignedRoot {
    SignedRoot::sign(
        Root {
            name: "made up".into(),
            description: String::new(),
            instructions: String::new(),
            task: Task::TextClassification,
            labels: vec!["a".into()],
            owner: owner.public_key(),
            created_at_ms: 1,
            sample_count: 0,
            gold_count: 0,
            redundancy: 1,
            total_bytes: 0,
            pages: vec![],
        },
        owner,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_messages_are_rejected_and_the_node_keeps_serving() {
    let bootstrap = start_bootstrap(Keypair::generate_ed25519(), 0).await;
    let addrs = bootstrap.listen_addrs().to_vec();
    let owner = TestNode::start(&addrs).await;
    let id = owner.own_digits().await;
    let owner_addr = owner.node.listen_addrs().await.unwrap()[0].clone();

    let mut hostile = RawPeer::new();
    hostile.dial(owner_addr);
    let owner_id = owner.node.peer_id();

    // Blob requests: wrong length, unknown kind, far too large, and a well-formed one for a blob
    // the owner does not serve.
    let not_served = blob::encode_request(&blob::Request::Blob(BlobId([0xab; 32]))).to_vec();
    // (what, bytes, the answer expected: None for "closed without a byte").
    let cases: Vec<Case> = vec![
        ("34 bytes", vec![1; 34], None),
        ("1 byte", vec![1], None),
        ("unknown kind", vec![7; 33], None),
        ("4 MiB", vec![1; 4 * 1024 * 1024], None),
        ("a blob not served", not_served, Some(vec![1])),
    ];
    let mut sent = HashMap::new();
    for (what, bytes, expected) in cases {
        sent.insert(hostile.send(owner_id, true, bytes), (what, expected));
    }
    let mut answers = HashMap::new();
    for id in sent.keys() {
        answers.insert(*id, hostile.answer(*id).await);
    }
    for (request, (what, expected)) in &sent {
        match (&answers[request], expected) {
            (Ok(bytes), Some(expected)) => assert_eq!(bytes, expected, "{what}"),
            (Err(e), Some(_)) => panic!("the well-formed request ({what}) failed: {e}"),
            // The node closes the stream without a byte of answer, or resets it.
            (Ok(bytes), None) => assert!(bytes.is_empty(), "{what} got an answer: {bytes:?}"),
            (Err(_), None) => {}
        }
    }

    // Gossip: garbage and a forged announcement (signature broken), then a valid one. Messages
    // from one peer arrive in order, so once the valid one is known the others were judged.
    let liar = Identity::generate().unwrap();
    let valid = Announcement {
        sequence: 2,
        root: made_up_root(&liar),
    };
    let mut forged = Announcement {
        sequence: 1,
        root: made_up_root(&liar),
    }
    .encode();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let messages = [b"not an announcement".to_vec(), forged, valid.encode()];
    let mut next = 0;
    hostile
        .swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&gossipsub::IdentTopic::new(announce::TOPIC))
        .unwrap();
    within("the owner to accept the valid announcement", async {
        loop {
            if next < messages.len() {
                match hostile.publish(announce::TOPIC, messages[next].clone()) {
                    Ok(_) => next += 1,
                    Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
                    Err(e) => panic!("cannot publish: {e}"),
                }
            }
            let known = owner.node.known_datasets().await.unwrap();
            if !known.is_empty() {
                let ids: Vec<_> = known.iter().map(|k| k.id).collect();
                assert_eq!(
                    ids,
                    vec![valid.dataset()],
                    "only the valid announcement is accepted"
                );
                break;
            }
            hostile.step(Duration::from_millis(50)).await;
        }
    })
    .await;

    // The owner still serves: a newcomer fetches the whole dataset.
    let fetcher = TestNode::start(&addrs).await;
    wait_until("the provider on the DHT", || async {
        !fetcher.node.find_providers(id).await.unwrap().is_empty()
    })
    .await;
    within("the fetch", fetcher.node.fetch(id, Options::default()))
        .await
        .unwrap();
    assert_eq!(fetcher.verify(id).await, 1797);
    bootstrap.shutdown().await;
}

/// Why 5 of issue 14: replication requests were limited in number at once per peer, not in rate,
/// so one peer could keep a kind's service answering it all the time. Past its burst a peer's
/// requests are answered `busy` by the swarm, without reaching the service; another peer is not
/// affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_past_its_request_quota_is_answered_busy_and_others_are_served() {
    use swarmlabel_net::swarm::replication::{Inbound, Kind, status};
    use swarmlabel_net::swarm::{Config, Node, behaviour::Limits};

    const KIND: Kind = Kind {
        tag: 99,
        name: "echo",
        topic_prefix: "/swarmlabel/test-echo/1/",
        max_request: 64,
        max_response: 64,
    };
    let home = swarmlabel_tests::TempHome::new();
    let config = Config {
        limits: Limits {
            // A burst of 8 and a refill too slow to matter during the test.
            replication_requests: (1e-6, 8.0),
            ..Limits::default()
        },
        ..Config::loopback()
    };
    let node = Node::start(home.home.clone(), config).await.unwrap();
    let (tx, mut inbox) = tokio::sync::mpsc::channel(16);
    node.attach(KIND, tx).await.unwrap();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = served.clone();
    tokio::spawn(async move {
        while let Some(inbound) = inbox.recv().await {
            if let Inbound::Request { body, reply, .. } = inbound {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = reply.send([b"echo ".as_slice(), &body].concat());
            }
        }
    });
    let addr = node.listen_addrs().await.unwrap()[0].clone();
    let (mut greedy, mut other) = (RawPeer::new(), RawPeer::new());
    greedy.dial(addr.clone());
    other.dial(addr);
    let mut answers = Vec::new();
    for i in 0..12u8 {
        answers.push(
            greedy
                .replicate(node.peer_id(), KIND.tag, vec![i])
                .await
                .unwrap(),
        );
    }
    let echoed: Vec<Vec<u8>> = (0..8u8)
        .map(|i| vec![b'e', b'c', b'h', b'o', b' ', i])
        .collect();
    assert_eq!(answers[..8], echoed[..], "the burst is served");
    assert!(
        answers[8..].iter().all(|a| *a == [status::BUSY]),
        "then busy: {:?}",
        &answers[8..]
    );
    assert_eq!(
        served.load(std::sync::atomic::Ordering::SeqCst),
        8,
        "busy never reached the kind"
    );
    let theirs = other
        .replicate(node.peer_id(), KIND.tag, vec![1])
        .await
        .unwrap();
    assert_eq!(theirs, b"echo \x01", "another peer has its own quota");
    node.shutdown().await;
}
