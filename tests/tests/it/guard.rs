//! The rollout guard of merged models (issue 17): a node whose merged model turns poisoned keeps
//! ranking with the model it had, says why and counts it. Real learning loop, real labels
//! service and real candle models; the models travel through the in-process exchange (three
//! poisoning peers publish into it as peers would over the models service).

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use std::sync::Arc;

use swarmlabel_crdt::registry::Validation;
use swarmlabel_crdt::registry::merge::Method;
use swarmlabel_formats::import::{Options, import};
use swarmlabel_node::labels::{self, LabelStore, Labels};
use swarmlabel_node::learn::exchange::{LocalExchange, ModelExchange, architecture};
use swarmlabel_node::learn::{self, Learner, Progress, seed_of, train};
use swarmlabel_store::progress::NoProgress;
use swarmlabel_store::{Catalog, Identity};
use swarmlabel_tests::network::wait_until;
use swarmlabel_tests::{TempHome, test_data};

/// A node holding digits with its gold labels (the usable labels its loop trains on and the
/// guard judges with), its learning loop ranking with its own model.
struct Setup {
    _home: TempHome,
    learner: Learner,
    exchange: LocalExchange,
    crdt: swarmlabel_crdt::DatasetId,
    dataset: swarmlabel_store::DatasetId,
    registry: prometheus_client::registry::Registry,
}

async fn setup(guard: learn::guard::GuardConfig) -> Setup {
    let home = TempHome::new();
    let classes: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    let report = import(
        &home.home,
        &home.identity,
        &test_data("digits.csv"),
        &Options::new("digits", classes),
        &NoProgress,
    )
    .unwrap();
    let dataset = report.id;
    let root = report.root.root().clone();
    let pool = learn::features::load(&Catalog::of(&home.home), &dataset).unwrap();
    assert!(pool.gold.len() > 1_000, "digits carries its gold labels");
    let crdt = LabelStore::crdt_dataset(&dataset, root.labels.len(), root.sample_count);
    let labels = Labels::start(home.home.clone(), None, labels::Config::default())
        .await
        .unwrap();
    labels.open(crdt).await.unwrap();
    let me = home.identity.public_key();
    let exchange = LocalExchange::new(Method::Median);
    let config = learn::Config {
        guard,
        ..learn::Config::default()
    };
    let mut registry = prometheus_client::registry::Registry::default();
    config.vitals.register(&mut registry);
    let learner = Learner::start(
        dataset,
        Catalog::of(&home.home),
        labels,
        me,
        Arc::new(exchange.peer(home.identity.clone())),
        config,
    )
    .await
    .unwrap();
    wait_until(
        "the node to train on its labels and rank with its model",
        || {
            let p = learner.progress();
            async move { p.published >= 1 && p.model.is_some() && !p.training }
        },
    )
    .await;
    Setup {
        _home: home,
        learner,
        exchange,
        crdt: crdt.id,
        dataset,
        registry,
    }
}

/// Three peers publish one model trained on every digit labelled as the next digit, claiming
/// far more labels than the node's own model: the merge (a median of four) becomes that model,
/// and by label count it is fresher than the node's own, so the node would rank with it.
async fn poison(setup: &Setup) -> String {
    let pool =
        Arc::new(learn::features::load(&Catalog::of(&setup._home.home), &setup.dataset).unwrap());
    let wrong: Vec<(usize, usize)> = pool
        .ids
        .iter()
        .enumerate()
        .map(|(row, id)| (row, (usize::from(pool.gold[id]) + 1) % 10))
        .collect();
    let spec = pool.spec.clone();
    let job = train::Job {
        pool,
        start: None,
        seed: seed_of(&setup.dataset),
        labels: wrong,
        fresh: Vec::new(),
        augment: swarmlabel_active_learning::Augment::Off,
    };
    let weights = tokio::task::spawn_blocking(move || train::run(&job).unwrap().weights)
        .await
        .unwrap();
    for _ in 0..3 {
        let peer = setup.exchange.peer(Identity::generate().unwrap());
        peer.publish(
            setup.crdt,
            weights.clone(),
            100_000,
            architecture(&spec),
            Validation::from_counts(0, 0),
        )
        .await
        .unwrap();
    }
    let merged = setup
        .exchange
        .peer(Identity::generate().unwrap())
        .merged(setup.crdt);
    hex::encode(merged.unwrap().hash.0)
}

async fn after_the_merge(setup: &Setup, merged: &str) -> Progress {
    let merged = merged.to_owned();
    let learner = setup.learner.clone();
    wait_until(
        "the node to rescore with the poisoned merge in force",
        || {
            let p = learner.progress();
            let merged = merged.clone();
            async move { p.merged.as_deref() == Some(merged.as_str()) && !p.training }
        },
    )
    .await;
    setup.learner.progress()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_merged_model_is_refused_with_the_reason_and_counted() {
    let setup = setup(learn::guard::GuardConfig::default()).await;
    let own = setup.learner.progress().model.unwrap();
    let merged = poison(&setup).await;
    let progress = after_the_merge(&setup, &merged).await;
    assert_eq!(
        progress.model.as_deref(),
        Some(own.as_str()),
        "the node keeps ranking with its own model"
    );
    let refusal = progress
        .guard
        .expect("the refusal is on the node's progress");
    assert_eq!(refusal.merged, merged);
    assert!(
        refusal.merged_accuracy < 0.2 && refusal.kept_accuracy > 0.9,
        "{refusal:?}"
    );
    assert!(
        refusal
            .reason
            .starts_with("kept the model in use: the new merged model"),
        "{}",
        refusal.reason
    );
    // Each poisoned merge on the way (one, then two, then three poisoned updates of four) that
    // was worse is counted once.
    assert!(progress.refused_merges >= 1);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &setup.registry).unwrap();
    let line = format!(
        "swarmlabel_learn_merged_refused_total{{dataset=\"{}\"}} {}",
        setup.crdt, progress.refused_merges
    );
    assert!(text.contains(&line), "{line} in\n{text}");
    setup.learner.shutdown().await;
}

/// The same poisoning with the guard off: the node ranks with the poisoned merge (what every
/// node did before the guard).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_guard_the_poisoned_merge_is_used() {
    let setup = setup(learn::guard::GuardConfig {
        enabled: false,
        ..Default::default()
    })
    .await;
    let merged = poison(&setup).await;
    let progress = after_the_merge(&setup, &merged).await;
    let learner = setup.learner.clone();
    let want = merged.clone();
    wait_until("the node to rank with the merged model", || {
        let p = learner.progress();
        let want = want.clone();
        async move { p.model.as_deref() == Some(want.as_str()) }
    })
    .await;
    assert_eq!(progress.guard, None);
    assert_eq!(progress.refused_merges, 0);
    setup.learner.shutdown().await;
}
