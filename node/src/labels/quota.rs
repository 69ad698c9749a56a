//! The quota of label gossip: how many records each publishing peer (gossipsub's signed source,
//! not the peer that forwarded them) may get stored, as a token bucket per author. Over its
//! quota, an author's messages are ignored (not stored, not forwarded, no penalty: a node that
//! labels faster than the quota loses nothing, anti-entropy brings its labels later). So a
//! flooder's disk growth on a node is bounded by `burst + rate x seconds` records per peer id it
//! connects with, whatever number of annotator keys it signs with. I/O-free: time is an input.

use std::collections::HashMap;
use std::time::Instant;

use libp2p::PeerId;

/// Authors tracked at most; past it the full buckets (authors at rest) are forgotten.
const MAX_AUTHORS: usize = 65_536;

/// A token bucket per author.
#[derive(Debug)]
pub(crate) struct Quota {
    rate: f64,
    burst: f64,
    buckets: HashMap<PeerId, (f64, Instant)>,
}

impl Quota {
    /// `rate` records a second, up to `burst` at once.
    pub(crate) fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            buckets: HashMap::new(),
        }
    }

    /// Takes `n` records from `author`'s bucket at `now`; `false` (nothing taken) when it holds
    /// fewer.
    pub(crate) fn take(&mut self, author: PeerId, n: usize, now: Instant) -> bool {
        if self.buckets.len() >= MAX_AUTHORS && !self.buckets.contains_key(&author) {
            let (rate, burst) = (self.rate, self.burst);
            self.buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = self.buckets.entry(author).or_insert((self.burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * self.rate)
            .min(self.burst);
        *at = now;
        let n = n as f64;
        if *tokens < n {
            return false;
        }
        *tokens -= n;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_author_gets_its_burst_then_its_rate_and_others_are_not_affected() {
        let mut q = Quota::new(10.0, 100.0);
        let (a, b) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        assert!(q.take(a, 100, t0));
        assert!(!q.take(a, 1, t0), "the burst is spent");
        assert!(q.take(b, 100, t0), "another author has its own bucket");
        let t1 = t0 + Duration::from_secs(2);
        assert!(q.take(a, 20, t1), "20 records came back in 2 s");
        assert!(!q.take(a, 1, t1));
        let t2 = t1 + Duration::from_secs(3600);
        assert!(q.take(a, 100, t2), "capped at the burst");
        assert!(!q.take(a, 1, t2));
    }
}
