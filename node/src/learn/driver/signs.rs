//! The vital signs the driver counts at each read of the labels (see [`crate::learn::vitals`]);
//! the annotators flagged come with the consensus summary (`usable_labels`).

use std::collections::{HashMap, HashSet};

use swarmlabel_crdt::{Annotations, SampleId};

use super::super::vitals::Signs;
use super::Driver;

const HOUR_MS: u64 = 3_600_000;

impl Driver {
    /// Counts the vital signs of `read` (`counts`: label votes per sample, `mine`: samples this
    /// labeler answered) at wall time `wall_ms`.
    pub(super) fn vital_signs(
        &mut self,
        read: &Annotations,
        counts: &HashMap<SampleId, u32>,
        mine: &HashSet<SampleId>,
        wall_ms: u64,
    ) {
        let target = self
            .config
            .redundancy
            .unwrap_or(self.pool.redundancy)
            .max(1);
        let below = |s: &SampleId| counts.get(s).copied().unwrap_or(0) < target;
        let mut votes: HashMap<SampleId, (u16, bool, u32)> = HashMap::new();
        let (mut local, mut network) = (0, 0);
        for a in read.annotations.iter().map(|a| a.annotation()) {
            if a.time_ms >= wall_ms.saturating_sub(HOUR_MS) {
                network += 1;
                if a.annotator == self.me {
                    local += 1;
                }
            }
            if let Some(label) = a.value.label() {
                let entry = votes.entry(a.sample).or_insert((label, false, 0));
                entry.1 |= entry.0 != label;
                entry.2 += 1;
            }
        }
        let multi = votes.values().filter(|v| v.2 >= 2).count();
        let differing = votes.values().filter(|v| v.2 >= 2 && v.1).count();
        let signs = Signs {
            queue_depth: self
                .pool
                .ids
                .iter()
                .filter(|s| below(s) && !mine.contains(*s))
                .count() as i64,
            local_per_hour: local,
            network_per_hour: network,
            disagreement: if multi == 0 {
                0.0
            } else {
                differing as f64 / multi as f64
            },
            below_target: self.pool.ids.iter().filter(|s| below(s)).count() as i64,
        };
        self.config.vitals.signs(&self.crdt, &signs);
    }
}
