//! The replication of one record set among a few nodes, as a stateright model.
//!
//! Each node runs the real anti-entropy core (`swarmlabel_node::replicate::core::AntiEntropy`)
//! and holds a [`RecordSet`] merged by the real rules. Sessions are the digest protocol every kind
//! shares in spirit and models use on the wire: pull with our digest; the peer answers `same` or
//! its records; we verify them all, merge, and push ours when the peer lacks some; a push is
//! verified whole before anything of it is kept. Local writes are acknowledged once in the set
//! and pushed on gossip to the connected peers.
//!
//! The network carries messages over one channel per (sender, receiver), delivered in order
//! (a connection), and interleaves channels arbitrarily. Its faults, each budgeted so the state
//! space is finite: it loses the next message of a channel, duplicates it (the copy arrives after
//! the others: a reordering), or moves it behind the others (a reordering); it partitions node 0
//! from the others and heals (the healed peers resubscribe, as gossipsub reports them); and it
//! carries a hostile peer's forged records to node 0 (gossip) and node 1 (a push).
//!
//! Which peers a node's round finds is the network's choice before `Settle` (none or any one
//! connected peer: so each round starts at most one session, and the checker tries every choice),
//! and every connected peer after it (a fair network). After `Settle`, the network is also a fair
//! scheduler: the oldest channel's next message is delivered first, and time moves only when
//! nothing is in flight. So safety is checked under every interleaving and fault before `Settle`,
//! and convergence from every state they reach, under one fair schedule.
//!
//! Time is one clock, advanced to the next wakeup of any node's core (a round or a session
//! deadline) up to a horizon, while messages may take any number of ticks to arrive (so they may
//! outlive a session's deadline). Each node's core sees the clock shifted by its own offset, so
//! the nodes' rounds do not coincide. `Settle` ends the faults and gives every node a few more
//! rounds, so that every path ends in a quiet state.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher, Hash};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use stateright::{Model, Property};
use swarmlabel_ids::DatasetId;
use swarmlabel_node::replicate::core::{
    Action as CoreAction, AntiEntropy, Config as CoreConfig, Outcome, SessionId,
};

use super::records::RecordSet;

/// The peer id of the hostile sender (no node of the model).
pub(crate) const HOSTILE: u8 = 99;
/// The dataset every node holds.
const DATASET: DatasetId = DatasetId([0x5a; 32]);

/// What the model is made of.
#[derive(Debug, Clone)]
pub(crate) struct Config<R: RecordSet> {
    /// The set every node starts from (its dataset and merge rule).
    pub(crate) initial: R,
    /// Each node's local writes, in order.
    pub(crate) writes: Vec<Vec<R::Record>>,
    /// Forged records the hostile peer sends.
    pub(crate) forged: Vec<R::Record>,
    /// Anti-entropy settings of every node.
    pub(crate) anti_entropy: CoreConfig,
    /// Rounds each node may run before `Settle` (after the first, at time 0).
    pub(crate) rounds_before: u32,
    /// Rounds each node runs after `Settle`.
    pub(crate) rounds_after: u32,
    /// Messages the network may lose.
    pub(crate) drops: u8,
    /// Messages the network may duplicate.
    pub(crate) duplicates: u8,
    /// Messages the network may move behind the others of their channel.
    pub(crate) reorders: u8,
    /// Whether the network may partition node 0 from the others (once) and heal.
    pub(crate) partition: bool,
    /// Whether local writes are pushed on gossip to the connected peers.
    pub(crate) gossip: bool,
}

/// Where a session this node runs stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Phase {
    Pulled,
    Pushed,
}

/// A message.
#[derive(Debug, Clone, PartialEq, Hash)]
pub(crate) enum Msg<T> {
    Pull {
        session: SessionId,
        digest: [u8; 32],
    },
    Same {
        session: SessionId,
    },
    Records {
        session: SessionId,
        records: Vec<T>,
    },
    Push {
        session: SessionId,
        records: Vec<T>,
    },
    Taken {
        session: SessionId,
    },
    Refused {
        session: SessionId,
    },
    Gossip {
        record: T,
    },
}

/// The messages in flight, per (sender, receiver) channel, oldest first.
type Network<T> = BTreeMap<(u8, u8), VecDeque<Msg<T>>>;

/// One node.
#[derive(Debug, Clone, PartialEq, Hash)]
pub(crate) struct Node<R: RecordSet> {
    core: AntiEntropy<u8>,
    set: R,
    /// The node's clock is the system's shifted by this.
    offset: Duration,
    sessions: BTreeMap<SessionId, (u8, Phase)>,
    written: usize,
    /// Ghost: the records this node acknowledged (its own writes).
    acked: Vec<R::Record>,
    /// A round asked which peers hold the dataset; the network answers (before `Settle`).
    looking: bool,
    /// Ghost: sessions abandoned at their deadline, and messages refused.
    abandoned: u8,
    refused: u8,
}

/// The whole system.
#[derive(Debug, Clone, PartialEq, Hash)]
pub(crate) struct State<R: RecordSet> {
    nodes: Vec<Node<R>>,
    time: Duration,
    horizon: Duration,
    network: Network<R::Record>,
    partitioned: bool,
    partitions_left: u8,
    drops_left: u8,
    duplicates_left: u8,
    reorders_left: u8,
    settled: bool,
}

/// A step of the system.
#[derive(Debug, Clone, PartialEq, Hash)]
pub(crate) enum Action {
    /// Node `n` writes its next record.
    Write(u8),
    /// Time reaches the next wakeup of a node's core.
    Tick,
    /// The network tells node `n` which peer holds the dataset (`None`: none).
    Found(u8, Option<u8>),
    /// The next message of the channel (from, to) is delivered.
    Deliver(u8, u8),
    /// The next message of the channel is lost.
    Drop(u8, u8),
    /// The next message of the channel is duplicated; the copy comes last.
    Duplicate(u8, u8),
    /// The next message of the channel is moved behind the others.
    Reorder(u8, u8),
    /// Node 0 is cut off from the others (messages in flight between them are lost).
    Partition,
    /// The partition heals.
    Heal,
    /// Faults end; every node gets its last rounds.
    Settle,
}

/// The model.
#[derive(Debug)]
pub(crate) struct System<R: RecordSet> {
    cfg: Config<R>,
    /// Verifying a peer's records is a pure function of them; its answers are remembered.
    verified: Mutex<HashMap<u64, Option<R>>>,
}

fn crosses(state_partitioned: bool, a: u8, b: u8) -> bool {
    state_partitioned && a != HOSTILE && b != HOSTILE && ((a == 0) != (b == 0))
}

impl<R: RecordSet> System<R> {
    /// The model of `cfg`.
    pub(crate) fn new(cfg: Config<R>) -> Self {
        Self {
            cfg,
            verified: Mutex::default(),
        }
    }

    fn nodes(&self) -> u8 {
        self.cfg.writes.len() as u8
    }

    fn interval(&self) -> Duration {
        self.cfg
            .anti_entropy
            .interval
            .expect("the model runs anti-entropy")
    }

    fn connected(&self, state: &State<R>, n: u8) -> Vec<u8> {
        (0..self.nodes())
            .filter(|p| *p != n && !crosses(state.partitioned, n, *p))
            .collect()
    }

    fn send(state: &mut State<R>, from: u8, to: u8, msg: Msg<R::Record>) {
        if to == HOSTILE || crosses(state.partitioned, from, to) {
            return;
        }
        state.network.entry((from, to)).or_default().push_back(msg);
    }

    /// Carries out what node `n`'s core asks until it asks nothing more.
    fn drive(&self, state: &mut State<R>, n: u8) {
        loop {
            let actions = state.nodes[n as usize].core.ready();
            if actions.is_empty() {
                return;
            }
            for action in actions {
                match action {
                    CoreAction::Round => {}
                    CoreAction::FindPeers { dataset } if state.settled => {
                        let peers = self.connected(state, n);
                        let now = state.time;
                        let node = &mut state.nodes[n as usize];
                        node.core.peers_found(dataset, &peers, now + node.offset);
                    }
                    CoreAction::FindPeers { .. } => state.nodes[n as usize].looking = true,
                    CoreAction::Start { session, peer, .. } => {
                        let node = &mut state.nodes[n as usize];
                        node.sessions.insert(session, (peer, Phase::Pulled));
                        let digest = node.set.digest();
                        Self::send(state, n, peer, Msg::Pull { session, digest });
                    }
                    CoreAction::Abandon { session } => {
                        let node = &mut state.nodes[n as usize];
                        node.sessions.remove(&session);
                        node.abandoned = node.abandoned.saturating_add(1);
                    }
                }
            }
        }
    }

    fn finish(node: &mut Node<R>, now: Duration, session: SessionId, outcome: Outcome) {
        if node.sessions.remove(&session).is_some() {
            node.core.finished(session, outcome, now + node.offset);
        }
    }

    /// The set of `records` if they all verify (an honest peer never sends a bad one).
    fn verified(&self, template: &R, records: &[R::Record]) -> Option<R> {
        let key = fingerprint(&records);
        let mut memo = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        memo.entry(key)
            .or_insert_with(|| template.verified(records))
            .clone()
    }

    fn deliver(&self, state: &mut State<R>, from: u8, to: u8, msg: Msg<R::Record>) {
        if to == HOSTILE {
            return;
        }
        let i = to as usize;
        let now = state.time;
        match msg {
            Msg::Pull { session, digest } => {
                let set = &state.nodes[i].set;
                let answer = if set.digest() == digest {
                    Msg::Same { session }
                } else {
                    Msg::Records {
                        session,
                        records: set.records(),
                    }
                };
                Self::send(state, to, from, answer);
            }
            Msg::Same { session } | Msg::Taken { session } => {
                Self::finish(&mut state.nodes[i], now, session, Outcome::Completed);
            }
            Msg::Refused { session } => {
                Self::finish(&mut state.nodes[i], now, session, Outcome::Failed);
            }
            Msg::Records { session, records } => {
                let node = &mut state.nodes[i];
                if node.sessions.get(&session) != Some(&(from, Phase::Pulled)) {
                    // Abandoned, or out of protocol: ignored.
                    return;
                }
                let Some(theirs) = self.verified(&node.set, &records) else {
                    node.refused = node.refused.saturating_add(1);
                    Self::finish(node, now, session, Outcome::Failed);
                    return;
                };
                node.set.merge(&theirs);
                if node.set.digest() == theirs.digest() {
                    Self::finish(node, now, session, Outcome::Completed);
                } else {
                    node.sessions.insert(session, (from, Phase::Pushed));
                    let records = node.set.records();
                    Self::send(state, to, from, Msg::Push { session, records });
                }
            }
            Msg::Push { session, records } => {
                let node = &mut state.nodes[i];
                let answer = if let Some(theirs) = self.verified(&node.set, &records) {
                    node.set.merge(&theirs);
                    Msg::Taken { session }
                } else {
                    node.refused = node.refused.saturating_add(1);
                    Msg::Refused { session }
                };
                Self::send(state, to, from, answer);
            }
            Msg::Gossip { record } => {
                let node = &mut state.nodes[i];
                match self.verified(&node.set, std::slice::from_ref(&record)) {
                    Some(theirs) => node.set.merge(&theirs),
                    None => node.refused = node.refused.saturating_add(1),
                }
            }
        }
    }

    /// The network settles: faults stop, rounds waiting for peers get a fair answer, and the
    /// horizon moves on by the rounds after and a session deadline.
    fn settle(&self, state: &mut State<R>) {
        state.settled = true;
        // The rounds waiting for an answer get a fair one.
        for n in 0..self.nodes() {
            let node = &mut state.nodes[n as usize];
            if std::mem::take(&mut node.looking) {
                let now = state.time + node.offset;
                let peers = self.connected(state, n);
                state.nodes[n as usize]
                    .core
                    .peers_found(DATASET, &peers, now);
                self.drive(state, n);
            }
        }
        state.drops_left = 0;
        state.duplicates_left = 0;
        state.reorders_left = 0;
        let extra = self.interval() * self.cfg.rounds_after + self.cfg.anti_entropy.session_timeout;
        state.horizon = state.time.max(state.horizon) + extra;
    }

    /// When, on the system's clock, the next core wakes up.
    fn next_wakeup(state: &State<R>) -> Option<Duration> {
        state
            .nodes
            .iter()
            .filter_map(|n| Some(n.core.next_wakeup()?.saturating_sub(n.offset)))
            .min()
    }

    /// Takes the next message of a channel (dropping the channel once empty).
    fn take(state: &mut State<R>, from: u8, to: u8) -> Option<Msg<R::Record>> {
        let channel = state.network.get_mut(&(from, to))?;
        let msg = channel.pop_front();
        if channel.is_empty() {
            state.network.remove(&(from, to));
        }
        msg
    }

    /// Whether no step is possible any more, the faults over.
    pub(crate) fn quiet(&self, state: &State<R>) -> bool {
        let mut actions = Vec::new();
        self.actions(state, &mut actions);
        state.settled && actions.is_empty()
    }
}

fn fingerprint<T: Hash>(value: &T) -> u64 {
    BuildHasherDefault::<DefaultHasher>::default().hash_one(value)
}

impl<R: RecordSet> Model for System<R> {
    type State = State<R>;
    type Action = Action;

    fn init_states(&self) -> Vec<State<R>> {
        let offset = self.interval() / 3;
        let nodes = (0..self.nodes())
            .map(|n| {
                let mut core = AntiEntropy::new(self.cfg.anti_entropy.clone(), u64::from(n));
                core.hold(DATASET);
                Node {
                    core,
                    set: self.cfg.initial.clone(),
                    offset: offset * u32::from(n),
                    sessions: BTreeMap::new(),
                    written: 0,
                    acked: Vec::new(),
                    looking: false,
                    abandoned: 0,
                    refused: 0,
                }
            })
            .collect();
        let mut network = Network::new();
        if !self.cfg.forged.is_empty() {
            let gossip = self
                .cfg
                .forged
                .iter()
                .map(|record| Msg::Gossip {
                    record: record.clone(),
                })
                .collect();
            network.insert((HOSTILE, 0), gossip);
            let push = Msg::Push {
                session: 0,
                records: self.cfg.forged.clone(),
            };
            network.insert((HOSTILE, 1), VecDeque::from([push]));
        }
        vec![State {
            nodes,
            time: Duration::ZERO,
            horizon: self.interval() * self.cfg.rounds_before,
            network,
            partitioned: false,
            partitions_left: u8::from(self.cfg.partition),
            drops_left: self.cfg.drops,
            duplicates_left: self.cfg.duplicates,
            reorders_left: self.cfg.reorders,
            settled: false,
        }]
    }

    fn actions(&self, state: &State<R>, actions: &mut Vec<Action>) {
        if state.settled {
            // A fair scheduler: deliver what is in flight, oldest channel first; then let time
            // move.
            if let Some(&(from, to)) = state.network.keys().next() {
                actions.push(Action::Deliver(from, to));
            } else if Self::next_wakeup(state).is_some_and(|at| at <= state.horizon) {
                actions.push(Action::Tick);
            }
            return;
        }
        for (n, node) in state.nodes.iter().enumerate() {
            if node.looking {
                actions.push(Action::Found(n as u8, None));
                for peer in self.connected(state, n as u8) {
                    actions.push(Action::Found(n as u8, Some(peer)));
                }
            }
            if !state.settled && node.written < self.cfg.writes[n].len() {
                actions.push(Action::Write(n as u8));
            }
        }
        if Self::next_wakeup(state).is_some_and(|at| at <= state.horizon) {
            actions.push(Action::Tick);
        }
        for (&(from, to), channel) in &state.network {
            actions.push(Action::Deliver(from, to));
            if state.drops_left > 0 {
                actions.push(Action::Drop(from, to));
            }
            if state.duplicates_left > 0 {
                actions.push(Action::Duplicate(from, to));
            }
            if state.reorders_left > 0 && channel.len() > 1 {
                actions.push(Action::Reorder(from, to));
            }
        }
        if !state.settled {
            let written = state
                .nodes
                .iter()
                .enumerate()
                .all(|(n, node)| node.written == self.cfg.writes[n].len());
            if state.partitioned {
                if written {
                    actions.push(Action::Heal);
                }
            } else {
                if state.partitions_left > 0 {
                    actions.push(Action::Partition);
                }
                if written {
                    actions.push(Action::Settle);
                }
            }
        }
    }

    fn next_state(&self, last: &State<R>, action: Action) -> Option<State<R>> {
        let mut state = last.clone();
        match action {
            Action::Write(n) => {
                let node = &mut state.nodes[n as usize];
                let record = self.cfg.writes[n as usize][node.written].clone();
                let mine = self
                    .verified(&node.set, std::slice::from_ref(&record))
                    .expect("the model's own writes are valid");
                node.set.write(&mine);
                node.written += 1;
                node.acked.push(record.clone());
                let peers = if self.cfg.gossip {
                    self.connected(&state, n)
                } else {
                    Vec::new()
                };
                for peer in peers {
                    let record = record.clone();
                    Self::send(&mut state, n, peer, Msg::Gossip { record });
                }
            }
            Action::Tick => {
                state.time = state.time.max(Self::next_wakeup(&state)?);
                for n in 0..self.nodes() {
                    let node = &mut state.nodes[n as usize];
                    let now = state.time + node.offset;
                    node.core.tick(now);
                    self.drive(&mut state, n);
                }
            }
            Action::Found(n, peer) => {
                let now = state.time;
                let node = &mut state.nodes[n as usize];
                node.looking = false;
                let peers: Vec<u8> = peer.into_iter().collect();
                node.core.peers_found(DATASET, &peers, now + node.offset);
                self.drive(&mut state, n);
            }
            Action::Deliver(from, to) => {
                let msg = Self::take(&mut state, from, to)?;
                self.deliver(&mut state, from, to, msg);
                if to != HOSTILE {
                    self.drive(&mut state, to);
                }
            }
            Action::Drop(from, to) => {
                Self::take(&mut state, from, to)?;
                state.drops_left -= 1;
            }
            Action::Duplicate(from, to) => {
                let channel = state.network.get_mut(&(from, to))?;
                let copy = channel.front()?.clone();
                channel.push_back(copy);
                state.duplicates_left -= 1;
            }
            Action::Reorder(from, to) => {
                let channel = state.network.get_mut(&(from, to))?;
                let first = channel.pop_front()?;
                channel.push_back(first);
                state.reorders_left -= 1;
            }
            Action::Partition => {
                state.partitioned = true;
                state.partitions_left -= 1;
                // Connections break: what was in flight between the sides is lost.
                state
                    .network
                    .retain(|(from, to), _| !crosses(true, *from, *to));
            }
            Action::Heal => {
                state.partitioned = false;
                // gossipsub reports the peers of the other side subscribing again.
                for n in 0..self.nodes() {
                    for p in 0..self.nodes() {
                        if p != n && ((n == 0) != (p == 0)) {
                            let now = state.time;
                            let node = &mut state.nodes[n as usize];
                            node.core.subscribed(p, DATASET, now + node.offset);
                        }
                    }
                    self.drive(&mut state, n);
                }
                // Healing ends the faulty phase: what follows is the fair schedule (exploring
                // every interleaving after a heal too is beyond this machine's memory).
                self.settle(&mut state);
            }
            Action::Settle => self.settle(&mut state),
        }
        Some(state)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut properties = vec![
            Property::always("acknowledged records are never lost", |_, s: &State<R>| {
                s.nodes
                    .iter()
                    .all(|n| n.acked.iter().all(|r| n.set.covers(r)))
            }),
            Property::always(
                "no record with a bad signature is held",
                |_, s: &State<R>| {
                    s.nodes
                        .iter()
                        .all(|n| n.set.records().iter().all(R::verifies))
                },
            ),
            Property::always(
                "once quiet, every node holds the same digest",
                |m: &Self, s: &State<R>| {
                    !m.quiet(s) || s.nodes.iter().all(|n| n.set == s.nodes[0].set)
                },
            ),
            Property::sometimes("every node holds every write", |m: &Self, s: &State<R>| {
                s.nodes
                    .iter()
                    .all(|n| m.cfg.writes.iter().flatten().all(|r| n.set.covers(r)))
            }),
            Property::sometimes("a forged record was refused", |_, s: &State<R>| {
                s.nodes.iter().any(|n| n.refused > 0)
            }),
        ];
        // Only a lost message leaves a session waiting for its deadline.
        if self.cfg.drops > 0 {
            properties.push(Property::sometimes(
                "a session was abandoned at its deadline",
                |_, s: &State<R>| s.nodes.iter().any(|n| n.abandoned > 0),
            ));
        }
        properties
    }
}
