//! The checkpoint at each budget: waiting until the network holds the budget's labels, every
//! node trained on them and all hold one merged model, then measuring the merged models, the
//! labels' duplicates and the screening; and, after the last one, the owner's ban.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use swarmlabel_active_learning::Matrix;
use swarmlabel_crdt::{AnnotatorKey, SampleId, SignedAnnotation};

use super::{Checkpoint, Owner, Setup, Volunteer, ban, within};

/// What the checkpoints look at: the volunteers, their labels' dataset and the test set.
pub(super) struct Observer<'a> {
    pub(super) setup: &'a Setup,
    pub(super) volunteers: &'a [Volunteer],
    pub(super) members: &'a [AnnotatorKey],
    pub(super) crdt: swarmlabel_crdt::DatasetId,
    pub(super) test_x: &'a Matrix,
    pub(super) test_y: &'a [usize],
}

impl Observer<'_> {
    /// Waits until the network holds `budget` labels (counted in `total`) and settled on them;
    /// returns the checkpoint and the annotations as volunteer 0 then holds them.
    pub(super) async fn checkpoint(
        &self,
        budget: usize,
        total: &AtomicUsize,
    ) -> anyhow::Result<(Checkpoint, Vec<SignedAnnotation>)> {
        let (settle_s, converge_s) = self.settle(budget, total).await?;
        self.measure(budget, settle_s, converge_s).await
    }

    /// Waits for `budget` labels, then for every node training on them, then for one merged
    /// model everywhere; returns the seconds to settle and to converge.
    async fn settle(&self, budget: usize, total: &AtomicUsize) -> anyhow::Result<(f64, f64)> {
        let volunteers = self.volunteers;
        within(&format!("{budget} labels"), async {
            while total.load(Ordering::SeqCst) < budget {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await?;
        let reached = Instant::now();
        within(
            &format!("every node training on the {budget} labels"),
            async {
                while !trained(volunteers, budget as u64) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        )
        .await?;
        let last_update = Instant::now();
        within(
            &format!("every node holding one merged model at {budget} labels"),
            async {
                while !settled(volunteers, budget as u64, self.crdt) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        )
        .await?;
        let converge_s = last_update.elapsed().as_secs_f64();
        let settle_s = reached.elapsed().as_secs_f64();
        Ok((settle_s, converge_s))
    }

    /// The checkpoint at `budget`: every merged model's test accuracy, the labels' duplicates
    /// and the annotators screening flags; with the annotations it read.
    async fn measure(
        &self,
        budget: usize,
        settle_s: f64,
        converge_s: f64,
    ) -> anyhow::Result<(Checkpoint, Vec<SignedAnnotation>)> {
        let setup = self.setup;
        let mut accuracy = Vec::new();
        let mut models = HashSet::new();
        for v in self.volunteers {
            let merged = v
                .exchange
                .merged(self.crdt)
                .context("a merged model exists")?;
            models.insert(merged.hash);
            accuracy.push(super::super::accuracy(
                &merged.weights,
                self.test_x,
                self.test_y,
            )?);
        }
        let read = self.volunteers[0].labels.read(self.crdt).await?;
        let mut votes: HashMap<SampleId, u32> = HashMap::new();
        for a in &read.annotations {
            *votes.entry(a.annotation().sample).or_default() += 1;
        }
        let duplicate_rate = super::super::duplicate_rate(&votes, setup.redundancy);
        let flagged =
            super::super::spam::flagged(&read.annotations, setup.classes.len(), self.members);
        eprintln!(
            "sim: {budget} labels: accuracy {:.3} (min {:.3}), duplicates {duplicate_rate:.3}, settled in {settle_s:.2} s, converged in {converge_s:.2} s",
            accuracy.iter().sum::<f64>() / accuracy.len() as f64,
            accuracy.iter().copied().fold(f64::INFINITY, f64::min),
        );
        let checkpoint = Checkpoint {
            accuracy,
            duplicate_rate,
            samples_labelled: votes.len(),
            distinct_models: models.len(),
            settle_s,
            converge_s,
            flagged,
        };
        Ok((checkpoint, read.annotations))
    }

    /// With models over libp2p and annotators flagged at the last checkpoint: the owner bans
    /// them, and the test accuracy of the others' merged models once they settle.
    pub(super) async fn after_ban(
        &self,
        checkpoints: &[Checkpoint],
        owner: &Owner,
    ) -> anyhow::Result<Option<Vec<f64>>> {
        let flagged = checkpoints
            .last()
            .map(|c| c.flagged.clone())
            .unwrap_or_default();
        if !self.setup.network_models || flagged.is_empty() {
            return Ok(None);
        }
        eprintln!("sim: the owner bans volunteers {flagged:?}");
        let accuracy = ban::ban_and_settle(
            self.volunteers,
            &flagged,
            &owner.key,
            self.crdt,
            self.test_x,
            self.test_y,
        )
        .await?;
        Ok(Some(accuracy))
    }
}

/// Every volunteer holds `budget` annotations and has trained on them (published its update).
fn trained(volunteers: &[Volunteer], budget: u64) -> bool {
    volunteers.iter().all(|v| {
        let p = v.learner.progress();
        p.annotations == budget && p.trained_annotations == budget && !p.training
    })
}

/// Every volunteer has trained on the `budget` labels, all hold the same merged model, and each
/// rescored the pool with it in force.
fn settled(volunteers: &[Volunteer], budget: u64, crdt: swarmlabel_crdt::DatasetId) -> bool {
    let mut hashes = HashSet::new();
    let all = volunteers.iter().all(|v| {
        let p = v.learner.progress();
        let merged = v.exchange.merged(crdt).map(|m| hex::encode(m.hash.0));
        hashes.insert(merged.clone());
        p.annotations == budget
            && p.trained_annotations == budget
            && !p.training
            && merged.is_some()
            && p.merged == merged
    });
    all && hashes.len() == 1
}
