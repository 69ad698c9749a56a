//! Token buckets per peer: how much each peer may get from a node (label records stored from
//! its gossip, replication requests answered), at a rate and up to a burst. A bucket may go into
//! debt (offers over the quota), which a flooder piles up and an honest peer does not; past four
//! bursts of debt the peer is flooding. I/O-free: time is an input.

use std::collections::HashMap;
use std::time::Instant;

use libp2p::PeerId;

/// Peers tracked at most; past it the full buckets (peers at rest) are forgotten.
const MAX_AUTHORS: usize = 65_536;

/// What taking from a bucket found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Within the quota: taken.
    Taken,
    /// Over it: refuse this one (an honest peer that is merely fast loses nothing).
    Over,
    /// Over it by more than four bursts' worth, still sending: no honest peer does that.
    Flooding,
}

/// A token bucket per peer.
#[derive(Debug)]
pub struct Quota {
    rate: f64,
    burst: f64,
    buckets: HashMap<PeerId, (f64, Instant)>,
}

impl Quota {
    /// `rate` a second, up to `burst` at once.
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            buckets: HashMap::new(),
        }
    }

    /// Takes `n` from `author`'s bucket at `now`; over the quota nothing is taken, and what was
    /// offered counts as debt, which refills at the same rate.
    pub fn take(&mut self, author: PeerId, n: usize, now: Instant) -> Take {
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
        if *tokens >= n {
            *tokens -= n;
            return Take::Taken;
        }
        // Tokens below zero are debt: records offered over the quota.
        *tokens -= n;
        if *tokens < -4.0 * self.burst {
            Take::Flooding
        } else {
            Take::Over
        }
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
        assert_eq!(q.take(a, 100, t0), Take::Taken);
        assert_eq!(q.take(a, 1, t0), Take::Over, "the burst is spent");
        assert_eq!(
            q.take(b, 100, t0),
            Take::Taken,
            "another author has its own bucket"
        );
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(q.take(a, 20, t1), Take::Over, "the debt of 1 is paid first");
        let t2 = t1 + Duration::from_secs(5);
        assert_eq!(
            q.take(a, 20, t2),
            Take::Taken,
            "then records come back at the rate"
        );
        let t3 = t2 + Duration::from_secs(3600);
        assert_eq!(q.take(a, 100, t3), Take::Taken, "capped at the burst");
        // A flooder keeps sending over its quota: past four bursts of debt it is flooding.
        let mut last = Take::Taken;
        for _ in 0..10 {
            last = q.take(a, 100, t3);
        }
        assert_eq!(last, Take::Flooding);
    }
}
