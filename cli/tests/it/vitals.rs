//! The learning loop's vital signs in a running node's `/metrics` (issue 17: the metrics were
//! all about bytes, blobs and sync; nothing told how the loop of people and models was doing).
//! A real `swarmlabel run` on loopback, labels given through the page's API.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use crate::support::process;

use crate::support::labeling;

use labeling::{Node, SHAPES};
use process::wait_until;

/// The value of the series `name{labels}` in an OpenMetrics text, if it is there.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split(' ').next()?.parse().ok())
}

fn scrape(node: &Node) -> String {
    ureq::get(format!("{}/metrics", node.url))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap()
}

#[test]
fn every_vital_sign_is_in_metrics_after_a_short_run_with_labels() {
    let mut node = Node::shapes(16);
    node.start();
    let picks = node.get(&format!("{}/queue?n=12", node.ds()));
    let picks: Vec<String> = picks
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["sample"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(picks.len(), 12);
    for (i, sample) in picks.iter().enumerate() {
        let body = serde_json::json!({
            "sample": sample, "label": SHAPES[i % 4], "think_ms": 1_500,
        });
        let r = node.post(&format!("{}/labels", node.ds()), &body.to_string());
        assert_eq!(r.status, 200, "{:?}", r.body);
    }

    let ds = format!("{{dataset=\"{}\"}}", node.id);
    let scoped = |scope: &str| format!("{{dataset=\"{}\",scope=\"{scope}\"}}", node.id);
    // Wait (for a hang only) until the loop has read the 12 answers and trained once.
    let mut text = String::new();
    wait_until("the loop to read the 12 answers and train", || {
        text = scrape(&node);
        let read = value(
            &text,
            &format!("swarmlabel_learn_answers_last_hour{}", scoped("network")),
        ) == Some(12.0);
        read && value(
            &text,
            &format!("swarmlabel_learn_training_seconds_count{ds}"),
        )
        .is_some_and(|n| n >= 1.0)
    });
    let get = |series: String| {
        value(&text, &series).unwrap_or_else(|| panic!("{series} is not in /metrics:\n{text}"))
    };
    // Twelve answers of this node's human, all in the last hour, none disagreeing (one vote
    // each); 4 of the 16 samples still below the target of one label, all 4 open to this human.
    assert_eq!(
        get(format!(
            "swarmlabel_learn_answers_last_hour{}",
            scoped("local")
        )),
        12.0
    );
    assert_eq!(
        get(format!("swarmlabel_learn_samples_below_target{ds}")),
        4.0
    );
    assert_eq!(get(format!("swarmlabel_learn_queue_depth{ds}")), 4.0);
    assert_eq!(get(format!("swarmlabel_learn_disagreement_rate{ds}")), 0.0);
    assert_eq!(get(format!("swarmlabel_learn_annotators_flagged{ds}")), 0.0);
    assert_eq!(
        get(format!("swarmlabel_learn_merged_refused_total{ds}")),
        0.0
    );
    // The page's answer times: 12 of 1.5 s.
    assert_eq!(
        get(format!("swarmlabel_learn_answer_seconds_count{ds}")),
        12.0
    );
    assert_eq!(
        get(format!("swarmlabel_learn_answer_seconds_sum{ds}")),
        18.0
    );
    assert!(get(format!("swarmlabel_learn_rescoring_seconds_count{ds}")) >= 1.0);
    let accuracy = get(format!("swarmlabel_learn_heldout_accuracy{ds}"));
    assert!((0.0..=1.0).contains(&accuracy), "{accuracy}");
}
