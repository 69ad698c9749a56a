//! (e) A hostile peer — a raw libp2p swarm speaking our protocols badly — cannot make a node
//! accept bad data or stop serving.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::io;
use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, StreamExt as _};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{StreamProtocol, gossipsub, identity::Keypair, noise, request_response, tcp, yamux};
use swarmlabel_node::dataset::manifest::{Root, SignedRoot, Task};
use swarmlabel_node::net::announce::{self, Announcement};
use swarmlabel_node::net::behaviour::gossipsub as our_gossipsub;
use swarmlabel_node::net::blob;
use swarmlabel_node::net::fetch::Options;
use swarmlabel_node::{Identity, store::BlobId};
use swarmlabel_tests::network::{TestNode, start_bootstrap, wait_until, within};

/// Sends arbitrary bytes as a request and reads whatever comes back (bounded).
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
    ) -> io::Result<Vec<u8>> {
        Err(io::Error::other("the hostile peer serves nothing"))
    }
    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        io.take(1 << 20).read_to_end(&mut out).await?;
        Ok(out)
    }
    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&req).await?;
        io.close().await
    }
    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
        _: Vec<u8>,
    ) -> io::Result<()> {
        Ok(())
    }
}

/// What a request is, its bytes, and the answer expected (`None`: closed without a byte).
type Case = (&'static str, Vec<u8>, Option<Vec<u8>>);

#[derive(NetworkBehaviour)]
struct Hostile {
    raw: request_response::Behaviour<RawCodec>,
    gossipsub: gossipsub::Behaviour,
}

/// A signed root of a made-up dataset, owned by `owner`.
fn made_up_root(owner: &Identity) -> SignedRoot {
    SignedRoot::sign(
        Root {
            name: "made up".into(),
            description: String::new(),
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

    let key = Keypair::generate_ed25519();
    let mut hostile = libp2p::SwarmBuilder::with_existing_identity(key.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|key| Hostile {
            raw: request_response::Behaviour::with_codec(
                RawCodec,
                [(blob::PROTOCOL, request_response::ProtocolSupport::Outbound)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(30)),
            ),
            gossipsub: our_gossipsub(key),
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let topic = gossipsub::IdentTopic::new(announce::TOPIC);
    hostile.behaviour_mut().gossipsub.subscribe(&topic).unwrap();
    hostile.dial(owner_addr).unwrap();
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
    let mut sent = std::collections::HashMap::new();
    for (what, bytes, expected) in cases {
        sent.insert(
            hostile.behaviour_mut().raw.send_request(&owner_id, bytes),
            (what, expected),
        );
    }
    let mut answers = std::collections::HashMap::new();
    within("answers to every hostile request", async {
        while answers.len() < sent.len() {
            match hostile.select_next_some().await {
                SwarmEvent::Behaviour(HostileEvent::Raw(request_response::Event::Message {
                    message:
                        request_response::Message::Response {
                            request_id,
                            response,
                        },
                    ..
                })) => {
                    answers.insert(request_id, Ok(response));
                }
                SwarmEvent::Behaviour(HostileEvent::Raw(
                    request_response::Event::OutboundFailure {
                        request_id, error, ..
                    },
                )) => {
                    answers.insert(request_id, Err(error.to_string()));
                }
                _ => {}
            }
        }
    })
    .await;
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
    within("the owner to accept the valid announcement", async {
        loop {
            if next < messages.len() {
                match hostile
                    .behaviour_mut()
                    .gossipsub
                    .publish(topic.clone(), messages[next].clone())
                {
                    Ok(_) => next += 1,
                    Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
                    Err(e) => panic!("cannot publish: {e}"),
                }
            }
            let known = owner.node.known_datasets().await.unwrap();
            if !known.is_empty() {
                let ids: Vec<_> = known.iter().map(|k| k.id.clone()).collect();
                assert_eq!(
                    ids,
                    vec![valid.dataset().to_string()],
                    "only the valid announcement is accepted"
                );
                break;
            }
            let _ =
                tokio::time::timeout(Duration::from_millis(50), hostile.select_next_some()).await;
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
