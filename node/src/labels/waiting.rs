//! Records heard before their chain's previous one: a bounded set in arrival order, the oldest
//! dropped first (anti-entropy brings those back). Every operation is O(1) per record, so a
//! peer's page full of gaps costs the labels thread no more than the page's length.

use std::collections::{HashSet, VecDeque};

use swarmlabel_crdt::SignedAnnotation;

/// At most `cap` records, each once.
#[derive(Debug)]
pub(crate) struct Waiting {
    order: VecDeque<SignedAnnotation>,
    held: HashSet<SignedAnnotation>,
    cap: usize,
}

impl Waiting {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            order: VecDeque::new(),
            held: HashSet::new(),
            cap,
        }
    }

    /// Keeps `record` (once), dropping the oldest when full.
    pub(crate) fn insert(&mut self, record: SignedAnnotation) {
        if self.cap == 0 || self.held.contains(&record) {
            return;
        }
        if self.order.len() >= self.cap
            && let Some(oldest) = self.order.pop_front()
        {
            self.held.remove(&oldest);
        }
        self.order.push_back(record);
        self.held.insert(record);
    }

    /// Takes out, in arrival order, the records for which `ready` holds.
    pub(crate) fn take(
        &mut self,
        mut ready: impl FnMut(&SignedAnnotation) -> bool,
    ) -> Vec<SignedAnnotation> {
        let mut taken = Vec::new();
        let held = &mut self.held;
        self.order.retain(|r| {
            if ready(r) {
                held.remove(r);
                taken.push(*r);
                false
            } else {
                true
            }
        });
        taken
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmlabel_crdt::{Annotation, DatasetId, SampleId, Value};
    use swarmlabel_store::identity::Identity;

    fn records(n: u8) -> Vec<SignedAnnotation> {
        let id = Identity::from_secret_bytes([3; 32]);
        (0..n)
            .map(|i| {
                let annotation = Annotation {
                    dataset: DatasetId([1; 32]),
                    sample: SampleId([i; 32]),
                    annotator: id.public_key(),
                    seq: 2,
                    time_ms: 1_000,
                    value: Value::Label(0),
                    suggestion: None,
                };
                SignedAnnotation::sign(annotation, id.signing_key()).unwrap()
            })
            .collect()
    }

    #[test]
    fn keeps_each_record_once_drops_the_oldest_and_takes_in_order() {
        let records = records(5);
        let mut w = Waiting::new(3);
        for r in &records {
            w.insert(*r);
            w.insert(*r);
        }
        assert_eq!(w.len(), 3, "the two oldest dropped, nothing twice");
        let all = w.take(|_| true);
        assert_eq!(all, records[2..].to_vec());
        assert_eq!(w.len(), 0);
        w.insert(records[0]);
        w.insert(records[1]);
        assert_eq!(w.take(|r| *r == records[1]), vec![records[1]]);
        assert_eq!(w.take(|_| true), vec![records[0]]);
    }
}
