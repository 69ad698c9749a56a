//! The anti-entropy core: when to sync, with whom, and for how long, as a state machine without
//! I/O in the style of raft-rs `RawNode`. The caller feeds it the time and what happened
//! ([`AntiEntropy::tick`], [`AntiEntropy::peers_found`], [`AntiEntropy::subscribed`],
//! [`AntiEntropy::finished`]) and carries out the [`Action`]s it returns from
//! [`AntiEntropy::ready`]. What a session exchanges is the replicated kind's business.
//!
//! Rules, the same for every kind:
//! - a **round** every `interval`: for each dataset held, ask which connected peers hold it, then
//!   start sessions with up to `peers_per_round` of them drawn uniformly at random (over rounds
//!   every peer is reached; the load of a round is spread);
//! - a peer that **(re)subscribes** to a dataset's topic (a new connection, a healed partition) is
//!   synced with at once, without waiting for the next round;
//! - at most `max_sessions` sessions at once, and **one per peer**;
//! - every session ends within `session_timeout` (then it is abandoned and counts as failed);
//! - a peer whose session failed is left alone for a **backoff** that doubles with each failure
//!   in a row (from `backoff_first` up to `backoff_max`), and forgiven by one success.
//!
//! Time is a [`Duration`] since any fixed origin the caller chooses, so the core runs the same in
//! a tokio task, a simulation or a model checker.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::Hash;
use std::time::Duration;

use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use swarmlabel_ids::DatasetId;

/// Settings of anti-entropy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Config {
    /// How often a round starts; `None` turns anti-entropy off (no rounds, no sessions).
    pub interval: Option<Duration>,
    /// Peers synced with per dataset and round at most.
    pub peers_per_round: usize,
    /// Sessions under way at most (one per peer at a time).
    pub max_sessions: usize,
    /// How long one session may take.
    pub session_timeout: Duration,
    /// How long a peer whose session failed is left alone (doubling with each failure in a row).
    pub backoff_first: Duration,
    /// The longest backoff.
    pub backoff_max: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            interval: Some(Duration::from_secs(30)),
            peers_per_round: 3,
            max_sessions: 4,
            session_timeout: Duration::from_secs(120),
            backoff_first: Duration::from_secs(5),
            backoff_max: Duration::from_secs(300),
        }
    }
}

/// A session's id, unique for the life of the core.
pub type SessionId = u64;

/// What the caller is asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action<P> {
    /// A round starts: a moment for the kind's own upkeep (retrying downloads).
    Round,
    /// Find the connected peers that hold `dataset`, and answer with
    /// [`AntiEntropy::peers_found`].
    FindPeers {
        /// The dataset.
        dataset: DatasetId,
    },
    /// Start session `session` with `peer` for `dataset`, and report its end with
    /// [`AntiEntropy::finished`].
    Start {
        /// The session.
        session: SessionId,
        /// The peer.
        peer: P,
        /// The dataset.
        dataset: DatasetId,
    },
    /// Abandon `session`: it took too long (it already counts as failed; ignore its late
    /// responses and do not report it).
    Abandon {
        /// The session.
        session: SessionId,
    },
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Both sides said all they had to say.
    Completed,
    /// It failed: the peer was unreachable, busy, refused, or sent what we refuse.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Session<P> {
    peer: P,
    dataset: DatasetId,
    deadline: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Backoff {
    failures: u32,
    until: Duration,
}

/// The anti-entropy state of one node for one replicated kind. `P` identifies a peer.
#[derive(Debug, Clone, PartialEq)]
pub struct AntiEntropy<P> {
    config: Config,
    rng: ChaCha8Rng,
    datasets: BTreeSet<DatasetId>,
    next_round: Option<Duration>,
    looking: BTreeSet<DatasetId>,
    sessions: BTreeMap<SessionId, Session<P>>,
    backoff: BTreeMap<P, Backoff>,
    next_id: SessionId,
    actions: Vec<Action<P>>,
}

impl<P: Copy + Ord> AntiEntropy<P> {
    /// A core with `config` whose random choices come from `seed`. The first round is due at
    /// the first [`AntiEntropy::tick`].
    pub fn new(config: Config, seed: u64) -> Self {
        Self {
            next_round: config.interval.map(|_| Duration::ZERO),
            config,
            rng: ChaCha8Rng::seed_from_u64(seed),
            datasets: BTreeSet::new(),
            looking: BTreeSet::new(),
            sessions: BTreeMap::new(),
            backoff: BTreeMap::new(),
            next_id: 0,
            actions: Vec::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// From now on `dataset` is held: rounds sync it.
    pub fn hold(&mut self, dataset: DatasetId) {
        self.datasets.insert(dataset);
    }

    /// `dataset` is no longer held: no new session for it (running ones finish).
    pub fn release(&mut self, dataset: &DatasetId) {
        self.datasets.remove(dataset);
    }

    /// The datasets held.
    pub fn held(&self) -> &BTreeSet<DatasetId> {
        &self.datasets
    }

    /// Whether a session with `peer` is under way.
    pub fn in_session(&self, peer: &P) -> bool {
        self.sessions.values().any(|s| s.peer == *peer)
    }

    /// Sessions under way.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// When the core next needs a [`AntiEntropy::tick`]: the next round or the earliest session
    /// deadline (`None`: nothing is scheduled).
    pub fn next_wakeup(&self) -> Option<Duration> {
        let deadline = self.sessions.values().map(|s| s.deadline).min();
        match (self.next_round, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Advances time to `now`: abandons sessions past their deadline and starts a round when
    /// one is due.
    pub fn tick(&mut self, now: Duration) {
        let expired: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for session in expired {
            self.end(session, Outcome::Failed, now);
            self.actions.push(Action::Abandon { session });
        }
        let (Some(due), Some(interval)) = (self.next_round, self.config.interval) else {
            return;
        };
        if due > now {
            return;
        }
        self.next_round = Some(now + interval);
        self.actions.push(Action::Round);
        for dataset in &self.datasets {
            // One question at a time per dataset, so a busy network cannot pile them up.
            if self.looking.insert(*dataset) {
                self.actions.push(Action::FindPeers { dataset: *dataset });
            }
        }
    }

    /// The answer to [`Action::FindPeers`]: the connected peers holding `dataset`. Starts
    /// sessions with up to `peers_per_round` of them that are free and not backing off.
    pub fn peers_found(&mut self, dataset: DatasetId, peers: &[P], now: Duration) {
        self.looking.remove(&dataset);
        if !self.datasets.contains(&dataset) {
            return;
        }
        let room = self.config.max_sessions.saturating_sub(self.sessions.len());
        let k = self.config.peers_per_round.min(room);
        let mut free: Vec<P> = Vec::with_capacity(peers.len());
        for p in peers {
            if self.available(p, now) && !free.contains(p) {
                free.push(*p);
            }
        }
        let k = k.min(free.len());
        // A partial Fisher–Yates shuffle: the first k are a uniform sample.
        for i in 0..k {
            let j = self.rng.random_range(i..free.len());
            free.swap(i, j);
        }
        for peer in free.into_iter().take(k) {
            self.start(peer, dataset, now);
        }
    }

    /// `peer` subscribed to `dataset`'s topic: syncs with it now if it is free, not backing off,
    /// and a session slot is free (anti-entropy on).
    pub fn subscribed(&mut self, peer: P, dataset: DatasetId, now: Duration) {
        if self.config.interval.is_none()
            || !self.datasets.contains(&dataset)
            || self.sessions.len() >= self.config.max_sessions
            || !self.available(&peer, now)
        {
            return;
        }
        self.start(peer, dataset, now);
    }

    /// Session `session` ended. Unknown or abandoned sessions are ignored.
    pub fn finished(&mut self, session: SessionId, outcome: Outcome, now: Duration) {
        self.end(session, outcome, now);
    }

    /// The actions to carry out, oldest first.
    pub fn ready(&mut self) -> Vec<Action<P>> {
        std::mem::take(&mut self.actions)
    }

    fn available(&self, peer: &P, now: Duration) -> bool {
        !self.in_session(peer) && self.backoff.get(peer).is_none_or(|b| b.until <= now)
    }

    fn start(&mut self, peer: P, dataset: DatasetId, now: Duration) {
        let session = self.next_id;
        self.next_id += 1;
        self.sessions.insert(
            session,
            Session {
                peer,
                dataset,
                deadline: now + self.config.session_timeout,
            },
        );
        self.actions.push(Action::Start {
            session,
            peer,
            dataset,
        });
    }

    fn end(&mut self, session: SessionId, outcome: Outcome, now: Duration) {
        let Some(s) = self.sessions.remove(&session) else {
            return;
        };
        match outcome {
            Outcome::Completed => {
                self.backoff.remove(&s.peer);
            }
            Outcome::Failed => {
                let failures = self.backoff.get(&s.peer).map_or(0, |b| b.failures) + 1;
                let factor = 1u32 << (failures - 1).min(16);
                let wait = self
                    .config
                    .backoff_first
                    .saturating_mul(factor)
                    .min(self.config.backoff_max);
                self.backoff.insert(
                    s.peer,
                    Backoff {
                        failures,
                        until: now + wait,
                    },
                );
            }
        }
    }
}

impl<P: Hash> Hash for AntiEntropy<P> {
    /// Hashes the state that decides what happens next (the model checker's fingerprint); the
    /// random generator is hashed by its position in its stream.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.config.hash(state);
        self.rng.get_word_pos().hash(state);
        self.datasets.hash(state);
        self.next_round.hash(state);
        self.looking.hash(state);
        self.sessions.hash(state);
        self.backoff.hash(state);
        self.next_id.hash(state);
        self.actions.hash(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn config() -> Config {
        Config {
            interval: Some(10 * S),
            peers_per_round: 2,
            max_sessions: 3,
            session_timeout: 5 * S,
            backoff_first: 4 * S,
            backoff_max: 16 * S,
        }
    }

    fn d(b: u8) -> DatasetId {
        DatasetId([b; 32])
    }

    fn started(actions: &[Action<u32>]) -> Vec<(SessionId, u32, DatasetId)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Start {
                    session,
                    peer,
                    dataset,
                } => Some((*session, *peer, *dataset)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_round_asks_for_peers_once_per_dataset_then_syncs_with_a_few_of_them() {
        let mut core = AntiEntropy::<u32>::new(config(), 1);
        core.hold(d(1));
        core.hold(d(2));
        core.tick(Duration::ZERO);
        assert_eq!(
            core.ready(),
            [
                Action::Round,
                Action::FindPeers { dataset: d(1) },
                Action::FindPeers { dataset: d(2) }
            ]
        );
        // Not again until the first answer comes, even when the next round is due.
        core.tick(10 * S);
        assert!(
            !core
                .ready()
                .iter()
                .any(|a| matches!(a, Action::FindPeers { .. }))
        );
        core.peers_found(d(1), &[7, 8, 9, 7], 10 * S);
        let s = started(&core.ready());
        assert_eq!(s.len(), 2, "peers_per_round");
        assert!(
            s.iter()
                .all(|(_, p, ds)| [7, 8, 9].contains(p) && *ds == d(1))
        );
        assert_ne!(s[0].1, s[1].1, "distinct peers");
        // One slot left (max 3), and the busy peers are not picked again.
        core.peers_found(d(2), &[s[0].1, s[1].1, 5, 6], 10 * S);
        let more = started(&core.ready());
        assert_eq!(more.len(), 1);
        assert!([5, 6].contains(&more[0].1));
        assert_eq!(core.sessions(), 3);
    }

    #[test]
    fn every_free_peer_is_reached_over_rounds() {
        let mut core = AntiEntropy::<u32>::new(config(), 7);
        core.hold(d(1));
        let mut seen = BTreeSet::new();
        for round in 0..50u32 {
            let now = 10 * S * round;
            core.tick(now);
            core.ready();
            core.peers_found(d(1), &[1, 2, 3, 4, 5, 6], now);
            for (id, peer, _) in started(&core.ready()) {
                seen.insert(peer);
                core.finished(id, Outcome::Completed, now);
            }
        }
        assert_eq!(seen.len(), 6);
    }

    #[test]
    fn a_session_past_its_deadline_is_abandoned_and_its_late_end_ignored() {
        let mut core = AntiEntropy::<u32>::new(config(), 1);
        core.hold(d(1));
        core.subscribed(4, d(1), S);
        let [(id, 4, _)] = started(&core.ready())[..] else {
            panic!("a subscribed peer is synced with at once");
        };
        assert_eq!(core.next_wakeup(), Some(Duration::ZERO), "the first round");
        core.tick(5 * S);
        let actions = core.ready();
        assert!(
            !actions.contains(&Action::Abandon { session: id }),
            "not yet"
        );
        core.tick(6 * S);
        assert!(core.ready().contains(&Action::Abandon { session: id }));
        assert!(!core.in_session(&4));
        core.finished(id, Outcome::Completed, 7 * S);
        // The timeout counted as a failure: backing off until 6 + 4 s.
        core.subscribed(4, d(1), 9 * S);
        assert!(started(&core.ready()).is_empty());
        core.subscribed(4, d(1), 10 * S);
        assert_eq!(started(&core.ready()).len(), 1);
    }

    #[test]
    fn backoff_doubles_with_failures_in_a_row_up_to_the_cap_and_a_success_forgives() {
        let mut core = AntiEntropy::<u32>::new(config(), 1);
        core.hold(d(1));
        let mut now = Duration::ZERO;
        let mut waits = Vec::new();
        for _ in 0..5 {
            // Try every second until the peer is available again.
            let mut waited = Duration::ZERO;
            let id = loop {
                core.subscribed(9, d(1), now + waited);
                if let [(id, ..)] = started(&core.ready())[..] {
                    break id;
                }
                waited += S;
            };
            waits.push(waited.as_secs());
            now += waited;
            core.finished(id, Outcome::Failed, now);
        }
        assert_eq!(waits, [0, 4, 8, 16, 16]);
        core.subscribed(9, d(1), now + 16 * S);
        let [(id, ..)] = started(&core.ready())[..] else {
            panic!("available after the cap");
        };
        core.finished(id, Outcome::Completed, now + 16 * S);
        core.subscribed(9, d(1), now + 16 * S);
        assert_eq!(started(&core.ready()).len(), 1, "forgiven at once");
    }

    #[test]
    fn off_means_no_rounds_and_no_sessions_and_unheld_datasets_are_never_synced() {
        let mut core = AntiEntropy::<u32>::new(
            Config {
                interval: None,
                ..config()
            },
            1,
        );
        core.hold(d(1));
        core.tick(100 * S);
        core.subscribed(3, d(1), 100 * S);
        assert!(core.ready().is_empty());
        assert_eq!(core.next_wakeup(), None);

        let mut core = AntiEntropy::<u32>::new(config(), 1);
        core.subscribed(3, d(2), S);
        core.peers_found(d(2), &[3], S);
        assert!(core.ready().is_empty());
    }
}
