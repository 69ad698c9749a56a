//! The simulated labelers: one per volunteer, answering its learning loop's picks as its kind
//! does until the network holds the budget's labels.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use futures::future::join_all;
use rand::SeedableRng as _;
use rand_chacha::ChaCha8Rng;
use swarmlabel_crdt::{SampleId, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::super::spam::Kind;
use super::{Setup, Volunteer};

/// Budget target that tells labelers to stop.
const STOP: usize = usize::MAX;

/// The running labelers and what they share: the budget target, the labels given so far and the
/// picks outside a volunteer's own share.
pub(super) struct Labelers {
    target: watch::Sender<usize>,
    /// Labels given by all labelers together.
    pub(super) total: Arc<AtomicUsize>,
    fallbacks: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Labelers {
    /// Starts one labeler per volunteer, answering from `truth`; none labels before the first
    /// [`Labelers::raise`].
    pub(super) fn spawn(
        setup: &Setup,
        volunteers: &Arc<Vec<Volunteer>>,
        truth: &HashMap<SampleId, usize>,
        crdt: swarmlabel_crdt::DatasetId,
    ) -> Labelers {
        let truth = Arc::new(truth.clone());
        let total = Arc::new(AtomicUsize::new(0));
        let fallbacks = Arc::new(AtomicUsize::new(0));
        let (target, target_rx) = watch::channel(0usize);
        let mut tasks = Vec::new();
        for i in 0..volunteers.len() {
            tasks.push(tokio::spawn(labeler(
                volunteers.clone(),
                i,
                truth.clone(),
                setup.classes.len(),
                setup.kinds.get(i).copied().unwrap_or(Kind::Honest),
                setup.noise,
                setup.seed.wrapping_mul(1_000).wrapping_add(i as u64),
                total.clone(),
                fallbacks.clone(),
                target_rx.clone(),
                crdt,
            )));
        }
        Labelers {
            target,
            total,
            fallbacks,
            tasks,
        }
    }

    /// Lets the labelers go on until the network holds `budget` labels.
    pub(super) fn raise(&self, budget: usize) {
        self.target.send_replace(budget);
    }

    /// Stops the labelers and waits for them; returns the picks outside a volunteer's own share.
    pub(super) async fn stop(self) -> anyhow::Result<usize> {
        self.target.send_replace(STOP);
        for l in join_all(self.tasks).await {
            l??;
        }
        Ok(self.fallbacks.load(Ordering::SeqCst))
    }
}

/// One simulated labeler: takes its loop's next pick, answers it as its kind does, waits for a
/// ranking that can reflect the answer, until the network reaches the budget.
#[allow(clippy::too_many_arguments)]
async fn labeler(
    volunteers: Arc<Vec<Volunteer>>,
    index: usize,
    truth: Arc<HashMap<SampleId, usize>>,
    classes: usize,
    kind: Kind,
    noise: f64,
    seed: u64,
    total: Arc<AtomicUsize>,
    fallbacks: Arc<AtomicUsize>,
    mut target: watch::Receiver<usize>,
    crdt: swarmlabel_crdt::DatasetId,
) -> anyhow::Result<()> {
    let v = &volunteers[index];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut answered: HashSet<SampleId> = HashSet::new();
    loop {
        let goal = *target.borrow_and_update();
        if goal == STOP {
            return Ok(());
        }
        if total.load(Ordering::SeqCst) >= goal {
            target.changed().await?;
            continue;
        }
        let rescores = v.learner.progress().rescores;
        let Some(pick) = v.learner.next(1, &answered).into_iter().next() else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        if total
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                (t < goal).then_some(t + 1)
            })
            .is_err()
        {
            continue;
        }
        let sample = pick.sample;
        let true_class = *truth
            .get(&sample)
            .context("a picked sample is in the pool")?;
        let label = kind.answer(true_class, classes, noise, &mut rng);
        if !pick.own_share {
            fallbacks.fetch_add(1, Ordering::Relaxed);
        }
        let answer = swarmlabel_node::labels::Own {
            sample,
            value: Value::Label(label as u16),
            suggestion: None,
            time_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        v.labels.record_own(crdt, answer).await?;
        answered.insert(sample);
        // A human looks at the next sample once the model has moved; give up waiting after a
        // while so that a quiet network cannot stall the run.
        let waited = Instant::now();
        while v.learner.progress().rescores <= rescores
            && total.load(Ordering::SeqCst) < goal
            && waited.elapsed() < Duration::from_secs(10)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
