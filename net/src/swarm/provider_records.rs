//! When to publish provider records: a bounded queue of datasets to announce on the DHT, with
//! retries. No sockets or clocks inside: the actor passes the time in and starts the queries.
//!
//! Why it exists: libp2p's `start_providing` first looks up the closest peers of the key and only
//! then sends `ADD_PROVIDER` to them. When that lookup hits the query timeout (a loaded machine,
//! a slow network, many publications at once), libp2p reports `Timeout` and sends the record to
//! nobody; left alone, the record would wait for libp2p's next republication (hours later), and
//! nobody could find the dataset until then. So a failed publication is retried with a backoff,
//! and only a few run at once, so that a node serving many datasets does not time itself out.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

use swarmlabel_store::dataset::DatasetId;

/// Publications under way at once, by default.
pub(crate) const MAX_IN_FLIGHT: usize = 4;
/// Delay before the first retry of a failed publication; it doubles with each failure.
pub(crate) const FIRST_RETRY: Duration = Duration::from_secs(5);
/// Longest delay between retries.
pub(crate) const MAX_RETRY: Duration = Duration::from_secs(5 * 60);

/// The publication schedule of one node. `Q` identifies a running publication (libp2p's
/// `kad::QueryId` in the node).
#[derive(Debug)]
pub(crate) struct Publisher<Q> {
    max_in_flight: usize,
    pending: VecDeque<DatasetId>,
    queued: HashSet<DatasetId>,
    in_flight: HashMap<Q, DatasetId>,
    /// Failures in a row, per dataset, until a publication succeeds.
    failures: HashMap<DatasetId, u32>,
    /// When each failed publication is tried again.
    due: HashMap<DatasetId, Instant>,
}

impl<Q: Copy + Eq + Hash> Publisher<Q> {
    /// A schedule running at most `max_in_flight` publications at once (at least one).
    pub(crate) fn new(max_in_flight: usize) -> Self {
        Self {
            max_in_flight: max_in_flight.max(1),
            pending: VecDeque::new(),
            queued: HashSet::new(),
            in_flight: HashMap::new(),
            failures: HashMap::new(),
            due: HashMap::new(),
        }
    }

    /// Asks for `dataset` to be published as soon as a slot is free. A dataset already waiting is
    /// not queued twice; a pending retry is replaced by this request.
    pub(crate) fn request(&mut self, dataset: DatasetId) {
        self.due.remove(&dataset);
        if self.queued.insert(dataset) {
            self.pending.push_back(dataset);
        }
    }

    /// The next dataset to publish now, if a slot is free: retries that are due first, then the
    /// datasets requested, in order. The caller starts the query and reports it with
    /// [`Publisher::started`].
    pub(crate) fn next(&mut self, now: Instant) -> Option<DatasetId> {
        let due: Vec<DatasetId> = self
            .due
            .iter()
            .filter(|(_, due)| **due <= now)
            .map(|(d, _)| *d)
            .collect();
        for dataset in due {
            self.due.remove(&dataset);
            if self.queued.insert(dataset) {
                self.pending.push_front(dataset);
            }
        }
        if self.in_flight.len() >= self.max_in_flight {
            return None;
        }
        let dataset = self.pending.pop_front()?;
        self.queued.remove(&dataset);
        Some(dataset)
    }

    /// Records that the publication of `dataset` runs as `query`.
    pub(crate) fn started(&mut self, query: Q, dataset: DatasetId) {
        self.in_flight.insert(query, dataset);
    }

    /// Records the end of `query`. Returns the dataset it published, or `None` when the query is
    /// not one of ours (libp2p's own republication). A failure schedules a retry.
    pub(crate) fn finished(&mut self, query: Q, ok: bool, now: Instant) -> Option<DatasetId> {
        let dataset = self.in_flight.remove(&query)?;
        if ok {
            self.failures.remove(&dataset);
        } else {
            self.failed(dataset, now);
        }
        Some(dataset)
    }

    /// Schedules a retry of `dataset` after a failure (ours, or libp2p's own republication).
    /// Returns the delay until the retry.
    pub(crate) fn failed(&mut self, dataset: DatasetId, now: Instant) -> Duration {
        let failures = self.failures.entry(dataset).or_insert(0);
        *failures += 1;
        let delay = FIRST_RETRY
            .saturating_mul(1 << (*failures - 1).min(16))
            .min(MAX_RETRY);
        self.due.insert(dataset, now + delay);
        delay
    }

    /// Failed publications waiting for their retry.
    #[cfg(test)]
    pub(crate) fn retrying(&self) -> usize {
        self.due.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset(n: u8) -> DatasetId {
        DatasetId([n; 32])
    }

    #[test]
    fn runs_at_most_the_limit_at_once_and_in_order() {
        let now = Instant::now();
        let mut p = Publisher::new(2);
        for n in 0..4 {
            p.request(dataset(n));
        }
        p.request(dataset(0));
        let a = p.next(now).expect("a free slot");
        p.started(1, a);
        let b = p.next(now).expect("a free slot");
        p.started(2, b);
        assert_eq!((a, b), (dataset(0), dataset(1)));
        assert_eq!(p.next(now), None, "both slots are taken");
        assert_eq!(p.finished(1, true, now), Some(dataset(0)));
        assert_eq!(p.next(now), Some(dataset(2)));
        assert_eq!(p.next(now), Some(dataset(3)));
        assert_eq!(p.next(now), None, "dataset 0 was queued once only");
    }

    #[test]
    fn a_failed_publication_is_retried_after_a_growing_delay() {
        let now = Instant::now();
        let mut p = Publisher::new(4);
        p.request(dataset(7));
        let d = p.next(now).expect("a free slot");
        p.started(1, d);
        assert_eq!(p.finished(1, false, now), Some(d));
        assert_eq!(p.retrying(), 1);
        assert_eq!(p.next(now + FIRST_RETRY / 2), None, "not due yet");
        assert_eq!(p.next(now + FIRST_RETRY), Some(d));
        p.started(2, d);
        let later = now + FIRST_RETRY;
        p.finished(2, false, later);
        assert_eq!(p.next(later + FIRST_RETRY), None, "the delay doubled");
        assert_eq!(p.next(later + FIRST_RETRY * 2), Some(d));
        p.started(3, d);
        let last = later + FIRST_RETRY * 2;
        p.finished(3, true, last);
        assert_eq!(p.retrying(), 0);
        assert_eq!(
            p.next(last + MAX_RETRY * 2),
            None,
            "nothing left to publish"
        );
        assert_eq!(
            p.failed(d, last),
            FIRST_RETRY,
            "a success reset the backoff"
        );
    }

    #[test]
    fn the_retry_delay_is_capped() {
        let now = Instant::now();
        let mut p = Publisher::<u32>::new(1);
        let mut delay = Duration::ZERO;
        for _ in 0..40 {
            delay = p.failed(dataset(1), now);
        }
        assert_eq!(delay, MAX_RETRY);
    }

    #[test]
    fn queries_that_are_not_ours_are_ignored() {
        let mut p = Publisher::<u32>::new(1);
        assert_eq!(p.finished(9, false, Instant::now()), None);
        assert_eq!(p.retrying(), 0);
    }
}
