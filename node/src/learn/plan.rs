//! When to train: the I/O-free decisions of the learning loop, driven by explicit inputs (label
//! changes, times in milliseconds, training outcomes) so they can be tested without a runtime.
//!
//! - One training at a time: triggers that arrive while a training runs coalesce into one more
//!   training after it.
//! - Debounced: a burst of labels trains once, [`Config::debounce_ms`] after the last change,
//!   unless [`Config::max_pending`] labels have piled up, so a steady stream cannot starve it.
//! - Nothing to train on (no labels, or nothing new since the last training) means no training.
//! - After a training the model is published when it was trained on labels not published yet.

/// Timing of the learning loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Quiet time after the last label change before training.
    pub debounce_ms: u64,
    /// Label changes since the last training after which training starts without waiting.
    pub max_pending: u64,
    /// Labels needed before the first training.
    pub min_labels: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            debounce_ms: 200,
            max_pending: 10,
            min_labels: 1,
        }
    }
}

/// The labels a training runs on: a version of the label set (it grows with every change the
/// driver sees) and how many usable labels it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// The driver's version of the label set (strictly increasing with changes).
    pub version: u64,
    /// Usable labels in it (consensus labels of samples).
    pub labels: u64,
}

/// What the driver should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start training on the labels of this snapshot (the plan counts it as running).
    Train(Snapshot),
    /// Nothing yet; ask again at this time (milliseconds) or on the next change.
    WaitUntil(u64),
    /// Nothing to do until labels change.
    Idle,
}

/// The decision state of one dataset's learning loop.
#[derive(Debug, Clone)]
pub struct Plan {
    config: Config,
    latest: Option<Snapshot>,
    changed_at_ms: u64,
    trained: Option<Snapshot>,
    published_labels: u64,
    running: bool,
}

impl Plan {
    /// A plan that has seen no labels.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            latest: None,
            changed_at_ms: 0,
            trained: None,
            published_labels: 0,
            running: false,
        }
    }

    /// The label set changed at `now_ms`; `snapshot` describes it now.
    pub fn labels_changed(&mut self, snapshot: Snapshot, now_ms: u64) {
        if self.latest.is_some_and(|l| l.version >= snapshot.version) {
            return;
        }
        self.latest = Some(snapshot);
        self.changed_at_ms = now_ms;
    }

    /// What to do at `now_ms`. Returns [`Action::Train`] at most once until
    /// [`Plan::trained`] or [`Plan::failed`] is called.
    pub fn next(&mut self, now_ms: u64) -> Action {
        let Some(latest) = self.latest else {
            return Action::Idle;
        };
        if self.running
            || latest.labels < self.config.min_labels
            || self.trained.is_some_and(|t| t.version >= latest.version)
        {
            return Action::Idle;
        }
        let trained_version = self.trained.map_or(0, |t| t.version);
        let pending = latest.version.saturating_sub(trained_version);
        let due = self.changed_at_ms.saturating_add(self.config.debounce_ms);
        if now_ms >= due || pending >= self.config.max_pending {
            self.running = true;
            Action::Train(latest)
        } else {
            Action::WaitUntil(due)
        }
    }

    /// The training on `snapshot` finished; returns whether its model should be published (it
    /// was trained on more labels than the last published one, or on a newer label set).
    pub fn trained(&mut self, snapshot: Snapshot) -> bool {
        self.running = false;
        let newer = self.trained.is_none_or(|t| snapshot.version > t.version);
        if newer {
            self.trained = Some(snapshot);
        }
        let publish = newer && snapshot.labels > 0;
        if publish {
            self.published_labels = snapshot.labels;
        }
        publish
    }

    /// The training failed; the same labels are tried again after the next change.
    pub fn failed(&mut self) {
        self.running = false;
        if let Some(latest) = self.latest {
            // Do not retry in a loop on the same labels: wait for a change.
            self.trained = Some(Snapshot {
                version: latest.version,
                labels: self.trained.map_or(0, |t| t.labels),
            });
        }
    }

    /// Whether a training is under way.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// The snapshot of the last finished training.
    pub fn last_trained(&self) -> Option<Snapshot> {
        self.trained
    }

    /// Labels of the last published model.
    pub fn published_labels(&self) -> u64 {
        self.published_labels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(version: u64, labels: u64) -> Snapshot {
        Snapshot { version, labels }
    }

    fn plan() -> Plan {
        Plan::new(Config {
            debounce_ms: 100,
            max_pending: 5,
            min_labels: 2,
        })
    }

    #[test]
    fn a_burst_of_labels_trains_once_after_the_quiet_time() {
        let mut p = plan();
        assert_eq!(p.next(0), Action::Idle);
        p.labels_changed(snap(1, 2), 0);
        p.labels_changed(snap(2, 3), 40);
        assert_eq!(p.next(50), Action::WaitUntil(140));
        assert_eq!(p.next(140), Action::Train(snap(2, 3)));
        // Running: no second training, whatever arrives.
        p.labels_changed(snap(3, 4), 150);
        assert_eq!(p.next(1_000), Action::Idle);
        assert!(p.trained(snap(2, 3)));
        // The triggers that arrived meanwhile coalesce into one more training.
        assert_eq!(p.next(1_000), Action::Train(snap(3, 4)));
        assert!(p.trained(snap(3, 4)));
        assert_eq!(p.next(5_000), Action::Idle);
        assert_eq!(p.published_labels(), 4);
    }

    #[test]
    fn a_steady_stream_does_not_starve_training() {
        let mut p = plan();
        for v in 1..=4 {
            p.labels_changed(snap(v, v + 1), v * 10);
            assert!(matches!(p.next(v * 10), Action::WaitUntil(_)));
        }
        p.labels_changed(snap(5, 6), 50);
        assert_eq!(p.next(50), Action::Train(snap(5, 6)));
    }

    #[test]
    fn too_few_labels_or_nothing_new_means_no_training() {
        let mut p = plan();
        p.labels_changed(snap(1, 1), 0);
        assert_eq!(p.next(10_000), Action::Idle);
        // An old snapshot arriving late changes nothing.
        p.labels_changed(snap(3, 2), 0);
        p.labels_changed(snap(2, 9), 0);
        assert_eq!(p.next(10_000), Action::Train(snap(3, 2)));
        assert!(p.trained(snap(3, 2)));
        assert_eq!(p.next(20_000), Action::Idle);
    }

    #[test]
    fn a_failed_training_waits_for_new_labels() {
        let mut p = plan();
        p.labels_changed(snap(1, 3), 0);
        assert_eq!(p.next(100), Action::Train(snap(1, 3)));
        p.failed();
        assert_eq!(p.next(10_000), Action::Idle);
        assert!(!p.is_running());
        p.labels_changed(snap(2, 4), 10_000);
        assert_eq!(p.next(10_100), Action::Train(snap(2, 4)));
    }

    #[test]
    fn a_stale_training_result_is_not_published() {
        let mut p = plan();
        p.labels_changed(snap(2, 3), 0);
        assert_eq!(p.next(100), Action::Train(snap(2, 3)));
        assert!(p.trained(snap(2, 3)));
        assert!(!p.trained(snap(1, 2)));
        assert_eq!(p.last_trained(), Some(snap(2, 3)));
    }
}
