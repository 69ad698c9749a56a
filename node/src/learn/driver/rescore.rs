//! Ranking the pool: the freshest model (unless the rollout guard refuses a merged one) scores
//! every unlabelled sample, and the ranking goes on the board.

use std::sync::Arc;
use std::time::Instant;

use swarmlabel_active_learning::{ScoreConfig, Strategy, score};
use swarmlabel_crdt::SampleId;

use super::super::features::PoolFeatures;
use super::super::guard::GuardConfig;
use super::super::{select, train};
use super::guarded::{Judge, Scored, is_merged};
use super::{Driver, freshest};

impl Driver {
    /// Scores the pool with the freshest model (see [`freshest`]), unless it is a merged model
    /// the rollout guard refuses (see [`super::super::guard`]), and puts the new ranking on the
    /// board.
    pub(super) async fn rescore(&mut self) {
        let merged = self.exchange.merged(self.crdt);
        let pool = self.pool.clone();
        let strategy = self.config.query.strategy;
        let seed = self.seed;
        let candidate = freshest(self.own.as_ref(), merged.as_deref());
        // What a merged model is judged against: this node's own model once there is one (so a
        // merge taken before the node had a model of its own is judged again then), else the
        // model in use.
        let current = self
            .own
            .as_ref()
            .map(|(b, _)| b.clone())
            .or_else(|| self.in_use.clone());
        let judge = self.judgement(merged.as_deref(), candidate.as_ref(), current.as_ref());
        let kept_as_before = matches!(judge, Judge::KeepAsBefore);
        let took_merged = is_merged(merged.as_deref(), candidate.as_ref());
        let guard = self.config.guard;
        let started = Instant::now();
        let scored = tokio::task::spawn_blocking(move || {
            let models = Models {
                candidate,
                current,
                seed,
            };
            models.score(&pool, judge, strategy, &guard)
        })
        .await;
        self.config
            .vitals
            .rescored(&self.crdt, started.elapsed().as_secs_f64());
        let scored = match scored {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                tracing::warn!(dataset = %self.crdt, "cannot score the pool: {e}");
                return;
            }
            Err(e) => {
                tracing::warn!(dataset = %self.crdt, "the scoring thread failed: {e}");
                return;
            }
        };
        if let Some(m) = &merged {
            self.guarded(m, kept_as_before, took_merged, scored.verdict);
        }
        let ranking_hash = scored
            .bytes
            .as_ref()
            .map(|b| hex::encode(blake3::hash(b).as_bytes()));
        self.in_use = scored.bytes;
        let (probs, scores) = (scored.probs, scored.scores);
        let (ranked, name) = self.rank(&scores, strategy);
        let mut board = self.board();
        board.ranked = ranked;
        board.strategy = name;
        // The initial weights are untrained: their "guesses" would only mislead the human.
        board.probs = ranking_hash.is_some().then(|| Arc::new(probs));
        board.progress.model = ranking_hash;
        board.progress.merged = merged.map(|m| hex::encode(m.hash.0));
        board.progress.rescores += 1;
    }

    /// The pool in the order to ask: random while cold (too few labels, or the random
    /// strategy), else by score, interleaved with random picks when exploring.
    fn rank(&self, scores: &[f32], strategy: Strategy) -> (Vec<(SampleId, f32)>, Strategy) {
        let cold = (self.usable.len() as u64) < self.config.initial || strategy == Strategy::Random;
        if cold {
            return (self.random_order(), Strategy::Random);
        }
        let mut order: Vec<usize> = (0..scores.len()).collect();
        // Stable: equal scores keep pool order on every node.
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        let by_score = order
            .into_iter()
            .map(|i| (self.pool.ids[i], scores[i]))
            .collect();
        let ranked = if self.config.query.explore_percent == 0 {
            by_score
        } else {
            select::interleave(by_score, &self.random_order(), &self.config.query)
        };
        (ranked, strategy)
    }
}

/// The models a rescore chooses between.
struct Models {
    /// The freshest model's weights (`None`: the initial weights).
    candidate: Option<Arc<Vec<u8>>>,
    /// The model in use.
    current: Option<Arc<Vec<u8>>>,
    seed: u64,
}

impl Models {
    /// Chooses the model as `judge` says (measuring both on the judge's labels if asked) and
    /// scores the pool with it. Runs off the async threads.
    fn score(
        self,
        pool: &PoolFeatures,
        judge: Judge,
        strategy: Strategy,
        guard: &GuardConfig,
    ) -> Result<Scored, String> {
        let Models {
            candidate,
            current,
            seed,
        } = self;
        let (bytes, verdict) = match judge {
            Judge::Take => (candidate, None),
            Judge::KeepAsBefore => (current, None),
            Judge::Measure(labels) => {
                let rows: Vec<usize> = labels.iter().map(|(r, _)| *r).collect();
                let y: Vec<usize> = labels.iter().map(|(_, c)| *c).collect();
                let x = pool.features.select_rows(&rows);
                let accuracy = |bytes: Option<&Arc<Vec<u8>>>| -> Result<f64, String> {
                    let model = train::start_model(&pool.spec, bytes.map(|b| b.as_slice()), seed)
                        .map_err(|e| e.to_string())?;
                    model.accuracy(&x, &y).map_err(|e| e.to_string())
                };
                let new = accuracy(candidate.as_ref())?;
                let kept = accuracy(current.as_ref())?;
                if super::super::guard::accepts(new, kept, guard) {
                    (candidate, None)
                } else {
                    (current, Some((new, kept, labels.len())))
                }
            }
        };
        let model = train::start_model(&pool.spec, bytes.as_deref().map(Vec::as_slice), seed)
            .map_err(|e| e.to_string())?;
        let scored = score(&model, &pool.features, strategy, &ScoreConfig::default())
            .map_err(|e| e.to_string())?;
        let scores = strategy
            .scores(&scored.probs, &scored.passes)
            .map_err(|e| e.to_string())?;
        Ok(Scored {
            probs: scored.probs,
            scores,
            bytes,
            verdict,
        })
    }
}
