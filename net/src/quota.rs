//! Token buckets per key (a connected peer, an annotator, or one for everyone): how much each may
//! get from a node (records stored, replication requests answered), at a rate and up to a burst.
//! A bucket may go into debt (offers over the quota), which a flooder piles up and an honest peer
//! does not; past four bursts of debt the key is flooding. I/O-free: time is an input.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Instant;

use libp2p::PeerId;

/// Keys tracked at most; past it the full buckets (keys at rest) are forgotten, then, if that
/// is not enough, the most indebted half is kept (a flooder's debt is not forgotten by sending
/// from many keys).
const MAX_KEYS: usize = 65_536;

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

/// A token bucket per key.
#[derive(Debug)]
pub struct Quota<K = PeerId> {
    rate: f64,
    burst: f64,
    buckets: HashMap<K, (f64, Instant)>,
}

impl<K: Hash + Eq + Clone> Quota<K> {
    /// `rate` a second, up to `burst` at once.
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            buckets: HashMap::new(),
        }
    }

    /// Whether `n` could be taken from `key`'s bucket at `now` (nothing is taken).
    pub fn has(&self, key: &K, n: usize, now: Instant) -> bool {
        self.buckets.get(key).is_none_or(|(tokens, at)| {
            let refilled = *tokens + now.saturating_duration_since(*at).as_secs_f64() * self.rate;
            refilled.min(self.burst) >= n as f64
        })
    }

    /// Takes `n` from `key`'s bucket at `now`; over the quota nothing is taken, and what was
    /// offered counts as debt, which refills at the same rate.
    pub fn take(&mut self, key: K, n: usize, now: Instant) -> Take {
        if self.buckets.len() >= MAX_KEYS && !self.buckets.contains_key(&key) {
            let (rate, burst) = (self.rate, self.burst);
            let refilled = |(tokens, at): &(f64, Instant)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate
            };
            self.buckets.retain(|_, b| refilled(b) < burst);
            if self.buckets.len() >= MAX_KEYS {
                let mut debts: Vec<f64> = self.buckets.values().map(refilled).collect();
                debts.sort_by(f64::total_cmp);
                let median = debts[debts.len() / 2];
                self.buckets.retain(|_, b| refilled(b) < median);
            }
        }
        let (tokens, at) = self.buckets.entry(key).or_insert((self.burst, now));
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
