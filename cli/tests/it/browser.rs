//! The labeling page in a real browser: Debian's Chromium, headless, driven by playwright-core
//! (`tests/browser/label.mjs`) against a real `swarmlabel run` daemon on loopback. `scripts/test`
//! installs both; without them these tests fail and say so.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use swarmlabel_crdt::Value;

use crate::support::process;

use crate::support::labeling;

use crate::support::browser;

use browser::{BROWSER, output_dir, require_browser};
use labeling::{Node, votes};

fn drive(node: &Node, out: &std::path::Path, mode: &str) -> serde_json::Value {
    browser::drive(&node.url, &node.token, out, mode)
}

#[test]
fn five_labels_by_keyboard_and_one_undo_store_four_signed_labels() {
    require_browser();
    let _one = BROWSER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let out = output_dir("label");
    // Instructions with markup the page must keep as text (issue 16: they never reached it).
    let instructions = out.join("instructions.md");
    std::fs::write(
        &instructions,
        "# How to label\n\nPick the **outline** shape.\n\n- circle: round\n- cross: two bars\n\n<script>window.pwned = 1</script> ![logo](http://203.0.113.9/x.png)\n",
    )
    .unwrap();
    let mut node = Node::shapes_with(
        20,
        &[
            "--instructions",
            instructions.to_str().unwrap(),
            "--description",
            "Shapes drawn for the demo",
        ],
    );
    node.start();
    let result = drive(&node, &out, "label");
    let brief = &result["brief"];
    assert_eq!(brief["shown"], true, "{brief}");
    assert_eq!(brief["description"], "Shapes drawn for the demo");
    assert!(
        brief["text"]
            .as_str()
            .unwrap()
            .contains("Pick the outline shape."),
        "{brief}"
    );
    assert_eq!(brief["strong"], serde_json::json!(["outline"]));
    assert_eq!(brief["items"], 2);
    // Script and image syntax stay text: no script, no image, no request for it.
    let markup: Vec<&str> = brief["markup"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        markup
            .iter()
            .all(|t| ["h2", "p", "strong", "ul", "li", "em", "code"].contains(t)),
        "{markup:?}"
    );
    let text = brief["text"].as_str().unwrap();
    assert!(
        text.contains("<script>window.pwned = 1</script>") && text.contains("[image: logo]"),
        "{text}"
    );
    assert!(
        result["error"].is_null(),
        "the page showed an error: {result}"
    );
    let labelled: Vec<String> = result["labelled"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(labelled.len(), 5);
    let distinct: std::collections::HashSet<&String> = labelled.iter().collect();
    assert_eq!(distinct.len(), 5, "five different samples were shown");
    assert_eq!(
        result["undone"], labelled[4],
        "undo shows the last labelled sample again"
    );

    // Through the API: four label votes, the undone sample holds a skip.
    let list = node.get(&format!("{}/labels", node.ds()));
    let values: std::collections::HashMap<String, String> = list.body["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["sample"].as_str().unwrap().to_owned(),
                a["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(values.len(), 5, "{values:?}");
    for (sample, label) in labelled
        .iter()
        .zip(["circle", "square", "triangle", "cross"])
    {
        assert_eq!(values[sample], label, "keys 1 to 4 are the labels in order");
    }
    assert_eq!(values[&labelled[4]], "skip");
    let progress = node.get(&format!("{}/progress", node.ds()));
    assert_eq!(progress.body["my_labels"], 4);

    let shot = std::fs::read(out.join("label.png")).unwrap();
    assert_eq!(&shot[..4], b"\x89PNG", "a screenshot was saved");
    eprintln!("screenshot: {}", out.join("label.png").display());

    // In the CRDT files: exactly four signed label votes (every signature verified), by this
    // node's key, on the first four samples.
    node.stop();
    let stored = node.stored();
    let stored_votes = votes(&stored);
    assert_eq!(stored_votes.len(), 4);
    let mut voted: Vec<String> = stored_votes
        .iter()
        .map(|a| hex::encode(a.annotation().sample.0))
        .collect();
    voted.sort();
    let mut first_four = labelled[..4].to_vec();
    first_four.sort();
    assert_eq!(voted, first_four);
    let undone = stored
        .iter()
        .find(|a| hex::encode(a.annotation().sample.0) == labelled[4])
        .unwrap();
    assert_eq!(undone.annotation().value, Value::Skip);
    let key = process::ok(&node.home, &["id", "--json"]);
    let key: serde_json::Value = serde_json::from_str(&key).unwrap();
    let key = key["public_key"].as_str().unwrap();
    assert!(
        stored
            .iter()
            .all(|a| hex::encode(a.annotation().annotator.0) == key),
        "signed by this node's key"
    );
}

#[test]
fn a_foreign_host_or_a_missing_token_changes_nothing() {
    require_browser();
    let _one = BROWSER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let out = output_dir("refuse");
    let mut node = Node::shapes(8);
    node.start();
    let result = drive(&node, &out, "refuse");
    let check = |what: &str, status: u64, sentence: &str| {
        let r = &result[what];
        assert_eq!(r["status"], status, "{what}: {r}");
        let body: serde_json::Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(sentence), "{what}: {error}");
    };
    check("foreign_host", 403, "is not this node's loopback address");
    check("no_token", 401, "has no token");
    check("in_page_no_token", 401, "has no token");
    let list = node.get(&format!("{}/labels", node.ds()));
    assert_eq!(list.body["annotations"], serde_json::json!([]));
    node.stop();
    assert!(node.stored().is_empty(), "nothing was stored");
}

#[test]
fn keypress_to_next_sample_over_fifty_labels() {
    require_browser();
    let _one = BROWSER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let out = output_dir("latency");
    let mut node = Node::shapes(70);
    node.start();
    let result = drive(&node, &out, "latency");
    // The figure goes to docs/benchmarks.md; the test checks only that it was measured.
    println!("{result}");
    eprintln!("keypress to next sample: {result}");
    assert_eq!(result["labels"], 50, "{result}");
    assert!(result["p99_ms"].as_f64().unwrap() >= result["p50_ms"].as_f64().unwrap());
    node.stop();
    assert_eq!(
        votes(&node.stored()).len(),
        50,
        "every label reached the store"
    );
}

/// Issue 16: the page's address changed at every `swarmlabel run` (port 0), and the browser keeps
/// the page's outbox per address, so answers waiting in it stayed behind on the old address. Now
/// a node started again in the same home listens at the same address, and an answer given while
/// the node was down reaches it once the page is opened again with the new run's token.
#[test]
fn an_answer_queued_while_the_node_was_down_arrives_after_a_restart_at_the_same_address() {
    require_browser();
    let _one = BROWSER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let out = output_dir("restart");
    let mut node = Node::shapes(20);
    node.start();
    let first_url = node.url.clone();
    let mut driver = browser::Driver::start(&node.url, &node.token, &out, "restart");
    let labelled = driver.next();
    assert_eq!(labelled["step"], "labelled", "{labelled}");
    node.stop();
    driver.send("down");
    let queued = driver.next();
    assert_eq!(queued["step"], "queued", "{queued}");
    node.start();
    assert_eq!(
        node.url, first_url,
        "the page keeps its address across restarts"
    );
    // `swarmlabel page` prints the address the user opens again.
    let page = process::ok(&node.home, &["page"]);
    assert_eq!(page.trim(), format!("{}/#token={}", node.url, node.token));
    driver.send(&format!("up {} {}", node.url, node.token));
    let sent = driver.next();
    assert_eq!(sent["step"], "sent", "{sent}");
    driver.finish();
    let list = node.get(&format!("{}/labels", node.ds()));
    let values: std::collections::HashMap<String, String> = list.body["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["sample"].as_str().unwrap().to_owned(),
                a["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let first = labelled["first"].as_str().unwrap();
    let second = queued["second"].as_str().unwrap();
    assert_eq!(
        values.get(first).map(String::as_str),
        Some("circle"),
        "{values:?}"
    );
    assert_eq!(
        values.get(second).map(String::as_str),
        Some("square"),
        "the answer queued while the node was down arrived: {values:?}"
    );
}
