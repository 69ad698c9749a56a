//! The record sets of the model: the real merge rules, behind one small interface.
//!
//! - [`Annotations`]: one chain per annotator (`swarmlabel_crdt::chain`), each record checked
//!   with `swarmlabel_crdt::validate::check_record` (dataset, label range, ed25519 signature) and
//!   taken by `swarmlabel_crdt::chain::place`, the rule every label replica applies: a chain's
//!   records in order, each once; a slot reads its chain's latest. Its broken variant keeps the
//!   first record it saw of each annotator and takes no later one.
//! - [`Models`]: `swarmlabel_crdt::registry::Registry` itself (its `insert` verifies, its
//!   `merge` and `digest` are the production ones).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Mutex, OnceLock, PoisonError};

use swarmlabel_crdt::registry::{Registry, SignedUpdate};
use swarmlabel_crdt::validate::{Dataset, check_record};
use swarmlabel_crdt::{AnnotatorKey, SampleId, SignedAnnotation, chain, slot};

/// A replicated set of signed records, as one node holds it.
pub(crate) trait RecordSet:
    Clone + Debug + Hash + PartialEq + Send + Sync + 'static
{
    /// One signed record.
    type Record: Clone + Debug + Hash + PartialEq + Send + Sync + 'static;

    /// Writes this node's own records (`mine`, verified), by the real rule whatever the
    /// variant: acknowledged once it returns.
    fn write(&mut self, mine: &Self);

    /// The set of a peer's `records`, if every one verifies (nothing is kept of a peer's message
    /// holding a bad one: an honest peer never sends one).
    fn verified(&self, records: &[Self::Record]) -> Option<Self>;

    /// Merges a verified set from a peer into this one.
    fn merge(&mut self, theirs: &Self);

    /// Every record held, as anti-entropy sends them, in a fixed order.
    fn records(&self) -> Vec<Self::Record>;

    /// A digest of the set: equal sets, equal digests.
    fn digest(&self) -> [u8; 32];

    /// Whether `acked` is held, or superseded by what is held (a later record of its slot).
    fn covers(&self, acked: &Self::Record) -> bool;

    /// Whether a record verifies on its own (signature and content).
    fn verifies(record: &Self::Record) -> bool;
}

/// Verification is a pure function of the record's bytes; the model asks it again and again,
/// so its answers are remembered.
fn memo<K: Hash>(key: K, check: impl FnOnce() -> bool) -> bool {
    static MEMO: OnceLock<Mutex<HashMap<u64, bool>>> = OnceLock::new();
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    let k = BuildHasherDefault::<DefaultHasher>::default().hash_one(&key);
    let memo = MEMO.get_or_init(Mutex::default);
    if let Some(v) = memo.lock().unwrap_or_else(PoisonError::into_inner).get(&k) {
        return *v;
    }
    let v = check();
    memo.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(k, v);
    v
}

/// Annotations of one dataset: each annotator's chain, in `seq` order.
#[derive(Clone, Debug, Hash, PartialEq)]
pub(crate) struct Annotations {
    dataset: Dataset,
    /// The broken variant: keep the first record seen of each annotator, take no later one.
    keep_first: bool,
    chains: BTreeMap<AnnotatorKey, Vec<SignedAnnotation>>,
}

impl Annotations {
    /// An empty set of `dataset`'s annotations, merged by the real rule or, with `keep_first`,
    /// by a broken one.
    pub(crate) fn new(dataset: Dataset, keep_first: bool) -> Self {
        Self {
            dataset,
            keep_first,
            chains: BTreeMap::new(),
        }
    }

    /// Takes `record` by the chain rule (or the broken one).
    fn take(&mut self, record: &SignedAnnotation, keep_first: bool) {
        let a = record.annotation();
        let chain = self.chains.entry(a.annotator).or_default();
        if keep_first && !chain.is_empty() {
            return;
        }
        if chain::place(chain.len() as u32, a.seq) == chain::Place::Next {
            chain.push(*record);
        }
    }

    fn merge_by(&mut self, theirs: &Self, keep_first: bool) {
        for record in theirs.chains.values().flatten() {
            self.take(record, keep_first);
        }
    }

    fn valid(&self, record: &SignedAnnotation) -> bool {
        let dataset = self.dataset;
        memo((record, dataset), || check_record(&dataset, record).is_ok())
    }

    /// What a slot reads: the latest record of its chain there.
    fn slots(&self) -> BTreeMap<(SampleId, AnnotatorKey), SignedAnnotation> {
        let mut out = BTreeMap::new();
        for record in self.chains.values().flatten() {
            let a = record.annotation();
            out.insert((a.sample, a.annotator), *record);
        }
        out
    }
}

impl RecordSet for Annotations {
    type Record = SignedAnnotation;

    fn write(&mut self, mine: &Self) {
        self.merge_by(mine, false);
    }

    /// A peer's records, all verified, as they came (each taken against this node's chains
    /// when merged, in `seq` order).
    fn verified(&self, records: &[SignedAnnotation]) -> Option<Self> {
        let mut theirs = Self::new(self.dataset, self.keep_first);
        for r in records {
            if !self.valid(r) {
                return None;
            }
            theirs
                .chains
                .entry(r.annotation().annotator)
                .or_default()
                .push(*r);
        }
        for chain in theirs.chains.values_mut() {
            chain.sort_by_key(|r| r.annotation().seq);
            chain.dedup();
        }
        Some(theirs)
    }

    fn merge(&mut self, theirs: &Self) {
        self.merge_by(theirs, self.keep_first);
    }

    fn records(&self) -> Vec<SignedAnnotation> {
        self.chains.values().flatten().copied().collect()
    }

    fn digest(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        for r in self.chains.values().flatten() {
            h.update(&r.to_bytes());
        }
        *h.finalize().as_bytes()
    }

    /// Held, or read over by a later record of its chain on its slot.
    fn covers(&self, acked: &SignedAnnotation) -> bool {
        let a = acked.annotation();
        self.chains
            .get(&a.annotator)
            .is_some_and(|chain| chain.get(a.seq as usize - 1) == Some(acked))
            && self
                .slots()
                .get(&(a.sample, a.annotator))
                .is_some_and(|held| held == acked || slot::wins(held, acked))
    }

    fn verifies(record: &SignedAnnotation) -> bool {
        memo((record, "signature"), || record.verify())
    }
}

/// A model registry: each peer's signed update in force, equivocation kept as evidence (its
/// digest kept beside it: the model compares and hashes sets at every state).
#[derive(Clone, Debug)]
pub(crate) struct Models {
    registry: Registry,
    digest: [u8; 32],
}

impl Models {
    /// `registry`, with its digest.
    pub(crate) fn new(registry: Registry) -> Self {
        let digest = registry.digest();
        Self { registry, digest }
    }
}

impl PartialEq for Models {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}

impl Hash for Models {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.digest.hash(state);
    }
}

impl RecordSet for Models {
    type Record = SignedUpdate;

    fn write(&mut self, mine: &Self) {
        self.merge(mine);
    }

    fn verified(&self, records: &[SignedUpdate]) -> Option<Self> {
        let mut theirs = Registry::new(self.registry.dataset());
        for r in records {
            theirs.insert(r.clone()).ok()?;
        }
        Some(Models::new(theirs))
    }

    fn merge(&mut self, theirs: &Self) {
        self.registry
            .merge(&theirs.registry)
            .expect("every registry of the model is of one dataset");
        self.digest = self.registry.digest();
    }

    fn records(&self) -> Vec<SignedUpdate> {
        self.registry.records()
    }

    fn digest(&self) -> [u8; 32] {
        self.digest
    }

    fn covers(&self, acked: &SignedUpdate) -> bool {
        let u = acked.update();
        self.registry
            .get(&u.peer)
            .is_some_and(|e| e.latest().update().version >= u.version)
    }

    fn verifies(record: &SignedUpdate) -> bool {
        let dataset = record.update().dataset;
        memo(record, || record.verify(dataset).is_ok())
    }
}
