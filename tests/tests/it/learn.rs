//! Learning together: an owner serves digits without its labels, three volunteers fetch it over
//! libp2p on 127.0.0.1, each runs the node's learning loop with a simulated labeler answering its
//! picks from the label column. They must end holding the same labels, ranking with the same
//! merged model trained on all of them, and that model must do far better than chance.
//!
//! The models travel through each node's models service (model gossip, weights as verified blobs,
//! registry anti-entropy), behind `learn::exchange::ServiceExchange`.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::future::join_all;
use swarmlabel_active_learning::Model;
use swarmlabel_crdt::{SampleId, Value};
use swarmlabel_formats::import::{Options, import};
use swarmlabel_net::swarm::fetch;
use swarmlabel_node::labels::{self, LabelStore, Labels};
use swarmlabel_node::learn::exchange::{ModelExchange, ServiceExchange};
use swarmlabel_node::learn::{self, Learner, features};
use swarmlabel_node::models::{self, Models};
use swarmlabel_store::progress::NoProgress;
use swarmlabel_tests::network::{TestNode, wait_until, within};
use swarmlabel_tests::{TempHome, test_data};

const VOLUNTEERS: usize = 3;
const LABELS_EACH: usize = 20;

struct Volunteer {
    node: TestNode,
    labels: Labels,
    learner: Learner,
    exchange: Arc<dyn ModelExchange>,
    models: Models,
}

/// The digits rows without their label column, and the true class of each sample (from an
/// import of the full file in a scratch home: sample ids hash only the row values).
fn pool_without_labels(scratch: &TempHome) -> (std::path::PathBuf, HashMap<SampleId, u16>) {
    let source = test_data("digits.csv");
    let classes: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    let full = import(
        &scratch.home,
        &scratch.identity,
        &source,
        &Options::new("digits", classes),
        &NoProgress,
    )
    .unwrap();
    let truth = features::load(&swarmlabel_store::Catalog::of(&scratch.home), &full.id)
        .unwrap()
        .gold;
    let mut reader = csv::Reader::from_path(&source).unwrap();
    let header = reader.headers().unwrap().clone();
    let label_at = header.iter().position(|h| h == "label").unwrap();
    let path = scratch.dir.path().join("pool.csv");
    let mut writer = csv::Writer::from_path(&path).unwrap();
    let keep = |r: &csv::StringRecord| -> Vec<String> {
        r.iter()
            .enumerate()
            .filter(|(i, _)| *i != label_at)
            .map(|(_, v)| v.to_owned())
            .collect()
    };
    writer.write_record(keep(&header)).unwrap();
    for record in reader.records() {
        writer.write_record(keep(&record.unwrap())).unwrap();
    }
    writer.flush().unwrap();
    (path, truth)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volunteers_labelling_their_picks_converge_on_labels_and_a_model_better_than_chance() {
    let scratch = TempHome::new();
    let (pool_csv, truth) = pool_without_labels(&scratch);

    let owner = TestNode::start(&[]).await;
    let classes: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    let dataset = import(
        &owner.home.home,
        &owner.home.identity,
        &pool_csv,
        &Options::new("digits-pool", classes.clone()),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(dataset.root.root().gold_count, 0, "no gold label may leak");
    let (dataset, root) = (dataset.id, dataset.root.root().clone());
    owner.node.serve(dataset).await.unwrap();
    let owner_addr = owner.node.listen_addrs().await.unwrap()[0].clone();

    let crdt = LabelStore::crdt_dataset(&dataset, root.labels.len(), root.sample_count);
    let mut volunteers = Vec::new();
    for i in 0..VOLUNTEERS {
        let node = TestNode::start(std::slice::from_ref(&owner_addr)).await;
        wait_until("the volunteer to find the owner's dataset", || async {
            !node.node.find_providers(dataset).await.unwrap().is_empty()
        })
        .await;
        within(
            "the volunteer's fetch",
            node.node.fetch(dataset, fetch::Options::default()),
        )
        .await
        .unwrap();
        let config = labels::Config {
            anti_entropy: swarmlabel_node::replicate::core::Config {
                interval: Some(std::time::Duration::from_millis(500)),
                ..Default::default()
            },
            seed: Some(i as u64),
            ..labels::Config::default()
        };
        let labels = Labels::start(node.home.home.clone(), Some(node.node.clone()), config)
            .await
            .unwrap();
        labels.open(crdt).await.unwrap();
        let me = node.home.identity.public_key();
        let config = models::Config {
            anti_entropy: swarmlabel_node::replicate::core::Config {
                interval: Some(std::time::Duration::from_millis(500)),
                ..Default::default()
            },
            seed: Some(i as u64),
            ..models::Config::default()
        };
        let models = Models::start(node.home.home.clone(), Some(node.node.clone()), config)
            .await
            .unwrap();
        let exchange: Arc<dyn ModelExchange> = Arc::new(
            ServiceExchange::open(models.clone(), dataset)
                .await
                .unwrap(),
        );
        let learner = Learner::start(
            dataset,
            swarmlabel_store::Catalog::of(&node.home.home),
            labels.clone(),
            me,
            exchange.clone(),
            learn::Config::default(),
        )
        .await
        .unwrap();
        volunteers.push(Volunteer {
            node,
            labels,
            learner,
            exchange,
            models,
        });
    }
    // A full mesh between volunteers, so label gossip reaches everyone.
    for a in 0..VOLUNTEERS {
        for b in a + 1..VOLUNTEERS {
            let addr = volunteers[b].node.node.listen_addrs().await.unwrap()[0].clone();
            let _ = volunteers[a].node.node.dial(addr).await;
        }
    }
    wait_until(
        "every volunteer to see the others on the label topic",
        || async {
            for v in &volunteers {
                if v.labels.peers(dataset).await.unwrap().len() < VOLUNTEERS - 1 {
                    return false;
                }
            }
            true
        },
    )
    .await;

    // Each simulated labeler answers its loop's next pick truthfully, then waits until the pool
    // has been rescored (a merged model moved) before taking the next.
    let work = volunteers.iter().map(|v| {
        let truth = &truth;
        async move {
            let mut answered = HashSet::new();
            for _ in 0..LABELS_EACH {
                let rescores = v.learner.progress().rescores;
                let has_model = v.learner.progress().model.is_some();
                let pick = v.learner.next(1, &answered).remove(0);
                // The model's top classes once a merged model ranks the pool (none are shown
                // from the untrained initial weights, whose guesses would only mislead a human).
                if has_model {
                    assert!(!pick.top.is_empty(), "a pick shows the model's top classes");
                }
                let sample = pick.sample;
                let answer = swarmlabel_node::labels::Own {
                    sample,
                    value: Value::Label(truth[&sample]),
                    suggestion: None,
                    time_ms: now_ms(),
                };
                v.labels.record_own(crdt.id, answer).await.unwrap();
                answered.insert(sample);
                wait_until("the pool to be rescored after a label", || async {
                    v.learner.progress().rescores > rescores
                })
                .await;
            }
        }
    });
    join_all(work).await;

    let total = (VOLUNTEERS * LABELS_EACH) as u64;
    wait_until(
        "every volunteer to hold all labels, train on them and rescore with one merged model in force",
        || async {
            let hashes: HashSet<_> = volunteers
                .iter()
                .map(|v| v.exchange.merged(crdt.id).map(|m| m.hash))
                .collect();
            hashes.len() == 1
                && volunteers.iter().all(|v| {
                    let p = v.learner.progress();
                    let merged = v.exchange.merged(crdt.id).map(|m| hex::encode(m.hash.0));
                    p.annotations == total
                        && p.trained_annotations == total
                        && !p.training
                        && merged.is_some()
                        && p.merged == merged
                })
        },
    )
    .await;

    // The same labels everywhere.
    let mut holdings = Vec::new();
    for v in &volunteers {
        let read = v.labels.read(crdt.id).await.unwrap();
        let mut triples: Vec<_> = read
            .annotations
            .iter()
            .map(|s| (s.annotation().sample, s.annotation().annotator))
            .collect();
        triples.sort();
        holdings.push(triples);
    }
    assert_eq!(holdings[0].len() as u64, total);
    assert!(
        holdings.iter().all(|h| *h == holdings[0]),
        "the labels differ between nodes"
    );

    // One merged model, far better than chance (0.1) on the whole pool.
    // (A volunteer's last update may still be on its way after its last training round: read
    // the merged models again until every volunteer holds the same one.)
    let merged = loop {
        let merged: Vec<_> = volunteers
            .iter()
            .map(|v| v.exchange.merged(crdt.id).unwrap())
            .collect();
        if merged.iter().all(|m| m.hash == merged[0].hash) {
            break merged;
        }
        wait_until("one merged model on every volunteer", || async {
            let hashes: HashSet<_> = volunteers
                .iter()
                .map(|v| v.exchange.merged(crdt.id).map(|m| m.hash))
                .collect();
            hashes.len() == 1
        })
        .await;
    };
    assert_eq!(merged[0].included.len(), VOLUNTEERS);
    let pool = volunteers[0].learner.pool();
    let model = Model::from_safetensors_bytes(&merged[0].weights).unwrap();
    let y: Vec<usize> = pool.ids.iter().map(|id| usize::from(truth[id])).collect();
    let accuracy = model.accuracy(&pool.features, &y).unwrap();
    eprintln!("merged model on the pool after {total} labels: accuracy {accuracy:.3}");
    assert!(
        accuracy > 0.5,
        "accuracy {accuracy} is not far above chance"
    );
    // Every volunteer published, and its history holds its rounds.
    for v in &volunteers {
        let p = v.learner.progress();
        assert!(p.published > 0 && !p.history.is_empty(), "{p:?}");
    }

    for v in volunteers {
        v.models.shutdown().await;
        v.learner.shutdown().await;
        v.labels.shutdown().await;
        v.node.stop().await;
    }
    owner.stop().await;
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
