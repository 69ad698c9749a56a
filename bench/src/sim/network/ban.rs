//! The owner bans the annotators the screening flagged, and the network learns without them:
//! the ban is the owner's signed policy (`swarmlabel_node::policy::edit`), put in force on every
//! volunteer's labels and models services as the policy service does when the policy arrives
//! (its distribution by gossip and anti-entropy is tested in the node's policy tests, not
//! timed here). Then every other volunteer retrains on the labels left and they settle on one
//! merged model without the banned updates.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use swarmlabel_active_learning::Matrix;
use swarmlabel_crdt::AnnotatorKey;
use swarmlabel_node::policy::{Change, edit};
use swarmlabel_store::Identity;

use super::{Volunteer, within};

/// Test accuracy of each volunteer's merged model (banned volunteers left out) once the ban of
/// `banned` (volunteer indices) is in force everywhere and the others hold one merged model.
pub(super) async fn ban_and_settle(
    volunteers: &[Volunteer],
    banned: &[usize],
    owner: &Identity,
    crdt: swarmlabel_crdt::DatasetId,
    test_x: &Matrix,
    test_y: &[usize],
) -> anyhow::Result<Vec<f64>> {
    let keys: Vec<AnnotatorKey> = banned.iter().map(|&i| volunteers[i].me).collect();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let signed = edit(
        crdt,
        None,
        Change::Ban(keys.clone(), "flagged by screening".into()),
        owner,
        now,
    )?;
    let policy = Some(Arc::new(signed.policy().clone()));
    for v in volunteers {
        // Labels and models take it in before their next event (see `Replicated::refresh`).
        v.policy.send_replace(policy.clone());
    }
    let banned_keys: HashSet<AnnotatorKey> = keys.into_iter().collect();
    let left = volunteers[0]
        .labels
        .read(crdt)
        .await?
        .annotations
        .iter()
        .filter(|a| !banned_keys.contains(&a.annotation().annotator))
        .count() as u64;
    let honest: Vec<&Volunteer> = volunteers
        .iter()
        .enumerate()
        .filter(|(i, _)| !banned.contains(i))
        .map(|(_, v)| v)
        .collect();
    within("every other volunteer settling without the banned", async {
        loop {
            let mut hashes = HashSet::new();
            let settled = honest.iter().all(|v| {
                let p = v.learner.progress();
                let merged = v.exchange.merged(crdt).map(|m| hex::encode(m.hash.0));
                hashes.insert(merged.clone());
                p.annotations == left
                    && p.trained_annotations == left
                    && !p.training
                    && merged.is_some()
                    && p.merged == merged
            });
            if settled && hashes.len() == 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await?;
    let mut accuracy = Vec::new();
    for v in &honest {
        let merged = v.exchange.merged(crdt).context("a merged model exists")?;
        accuracy.push(super::super::accuracy(&merged.weights, test_x, test_y)?);
    }
    Ok(accuracy)
}
