//! The labeling API of a real `swarmlabel run` daemon on loopback: what the page does works, and
//! every bad request gets a 4xx with one clear sentence and stores nothing (checked in the CRDT
//! files afterwards, every signature verified).

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use swarmlabel_crdt::Value;

use crate::support::labeling;

use labeling::{Node, SHAPES, votes};

/// A bad request: what it is, its extra headers, its body, the status and a part of the sentence
/// it must get.
type Case<'a> = (&'a str, Vec<(&'a str, String)>, String, u16, &'a str);

fn label_body(sample: &str, label: &str) -> String {
    serde_json::json!({ "sample": sample, "label": label }).to_string()
}

fn queue(node: &Node, n: usize) -> Vec<String> {
    let r = node.get(&format!("{}/queue?n={n}", node.ds()));
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["sample"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn bad_requests_get_one_clear_sentence_and_store_nothing() {
    let mut node = Node::shapes(12);
    node.start();
    let samples = queue(&node, 4);
    let labels = format!("{}/labels", node.ds());

    // One good label, whose request is then replayed.
    let replayed = "replayed-request-1";
    let good = label_body(&samples[0], "circle");
    let r = node.send("POST", &labels, &[("X-Request-Id", replayed)], Some(&good));
    assert_eq!(r.status, 200, "{:?}", r.body);
    let again = label_body(&samples[0], "square");
    let r = node.send("POST", &labels, &[("X-Request-Id", replayed)], Some(&again));
    assert_eq!(r.status, 409);
    assert!(r.error().contains("already applied"), "{}", r.error());

    let unknown = "ab".repeat(32);
    let cases: Vec<Case<'_>> = vec![
        (
            "unknown sample",
            vec![],
            label_body(&unknown, "circle"),
            404,
            "is not in dataset",
        ),
        (
            "not a sample id",
            vec![],
            label_body("xyz", "circle"),
            400,
            "is not a sample id",
        ),
        (
            "label not in the label set",
            vec![],
            label_body(&samples[1], "hexagon"),
            400,
            "is not in the label set (circle,square,triangle,cross)",
        ),
        (
            "malformed JSON",
            vec![],
            "{\"sample\": ".into(),
            400,
            "is not the JSON this request takes",
        ),
        (
            "unknown field",
            vec![],
            serde_json::json!({ "sample": samples[1], "label": "circle", "weight": 2 }).to_string(),
            400,
            "unknown field",
        ),
        (
            "label and skip at once",
            vec![],
            serde_json::json!({ "sample": samples[1], "label": "circle", "skip": true })
                .to_string(),
            400,
            "exactly one of a label, skip or unsure",
        ),
        (
            "missing token",
            vec![("Authorization", String::new())],
            label_body(&samples[1], "circle"),
            401,
            "has no token",
        ),
        (
            "wrong token",
            vec![("Authorization", "Bearer 123.abc".into())],
            label_body(&samples[1], "circle"),
            401,
            "the token is wrong",
        ),
        (
            "foreign Host header",
            vec![("Host", "evil.example".into())],
            label_body(&samples[1], "circle"),
            403,
            "Host header 'evil.example' is not this node's loopback address",
        ),
        (
            "foreign Origin",
            vec![("Origin", "http://evil.example".into())],
            label_body(&samples[1], "circle"),
            403,
            "requests from the web page at 'http://evil.example' are refused",
        ),
        (
            "no request id",
            vec![("X-Request-Id", String::new())],
            label_body(&samples[1], "circle"),
            400,
            "no X-Request-Id",
        ),
    ];
    for (i, (what, headers, body, status, sentence)) in cases.iter().enumerate() {
        let id = format!("bad-request-{i:03}");
        let mut all: Vec<(&str, &str)> = vec![("X-Request-Id", id.as_str())];
        all.extend(headers.iter().map(|(k, v)| (*k, v.as_str())));
        let r = node.send("POST", &labels, &all, Some(body));
        assert_eq!(r.status, *status, "{what}: {:?}", r.body);
        let error = r.error();
        assert!(error.contains(sentence), "{what}: {error}");
        assert_eq!(
            error.matches(". ").count(),
            0,
            "{what}: one sentence, got {error}"
        );
    }
    // Reads are refused the same way without the token or with a foreign Host.
    let r = node.send(
        "GET",
        &format!("{}/queue", node.ds()),
        &[("Authorization", "")],
        None,
    );
    assert_eq!(r.status, 401, "{:?}", r.body);
    let r = node.send(
        "GET",
        &format!("{}/queue", node.ds()),
        &[("Host", "rebound.example:80")],
        None,
    );
    assert_eq!(r.status, 403);
    let r = node.get(&format!("{}/queue?n=1000", node.ds()));
    assert_eq!(r.status, 400);
    assert!(r.error().contains("between 1 and 64"), "{}", r.error());
    let r = node.get(&format!("{}/samples/{unknown}", node.ds()));
    assert_eq!(r.status, 404);
    let r = node.post("/api/v1/datasets/beef/undo", "");
    assert_eq!(r.status, 400);
    assert!(r.error().contains("is not a dataset id"), "{}", r.error());

    // A token from an earlier run of the node is refused after a restart, and named stale.
    let old = node.token.clone();
    node.stop();
    node.start();
    assert_ne!(old, node.token, "a new run has a new token");
    let r = node.send(
        "POST",
        &labels,
        &[
            ("Authorization", &format!("Bearer {old}")),
            ("X-Request-Id", "stale-token-0001"),
        ],
        Some(&label_body(&samples[2], "cross")),
    );
    assert_eq!(r.status, 401);
    assert!(r.error().contains("earlier run"), "{}", r.error());
    node.stop();

    // The store holds exactly the one good label: nothing of the refused requests.
    let stored = node.stored();
    assert_eq!(stored.len(), 1, "{stored:?}");
    let a = stored[0].annotation();
    assert_eq!(hex::encode(a.sample.0), samples[0]);
    assert_eq!(a.value, Value::Label(0), "circle, not the replayed square");
}

#[test]
fn the_page_flow_queue_content_label_edit_undo_and_progress() {
    let mut node = Node::shapes(10);
    node.start();
    let datasets = node.get("/api/v1/datasets");
    assert_eq!(datasets.status, 200);
    assert_eq!(datasets.body[0]["id"], node.id.as_str());
    assert_eq!(datasets.body[0]["samples"], 10);
    assert_eq!(datasets.body[0]["labels"], serde_json::json!(SHAPES));

    let picks = node.get(&format!("{}/queue?n=10", node.ds()));
    let picks = picks.body.as_array().unwrap().clone();
    assert_eq!(picks.len(), 10, "every sample is wanted");
    // No label yet: the learning loop (or, while it starts, the fallback) has no model to ask,
    // so picks are random and carry no guesses.
    let why = picks[0]["why"].as_str().unwrap();
    match picks[0]["strategy"].as_str().unwrap() {
        "fallback" => assert!(why.contains("no model yet"), "{why}"),
        "random" => assert!(why.contains("too few labels"), "{why}"),
        other => panic!("a pick with no label stored came from {other}: {why}"),
    }
    assert_eq!(picks[0]["guesses"], serde_json::json!([]));
    let samples: Vec<String> = picks
        .iter()
        .map(|p| p["sample"].as_str().unwrap().to_owned())
        .collect();
    // Excluded samples (the page holds them) are not offered again.
    let rest = queue_excluding(&node, &samples[..3]);
    assert_eq!(rest.len(), 7);
    assert!(rest.iter().all(|s| !samples[..3].contains(s)));

    // The content is the sample's bytes: a PNG whose BLAKE3 is its id.
    let content = node.get(&format!("{}/samples/{}", node.ds(), samples[0]));
    assert_eq!(content.status, 200);
    let png = png_bytes(&node, &samples[0]);
    assert_eq!(&png[..4], b"\x89PNG");
    assert_eq!(blake3::hash(&png).to_hex().as_str(), samples[0]);

    // Label three, edit the second, mark the fourth unsure, undo the last.
    for (s, l) in samples[..3].iter().zip(["circle", "square", "cross"]) {
        let r = node.post(&format!("{}/labels", node.ds()), &label_body(s, l));
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let r = node.post(
        &format!("{}/labels", node.ds()),
        &label_body(&samples[1], "triangle"),
    );
    assert_eq!(r.body["value"], "triangle");
    let unsure = serde_json::json!({ "sample": samples[3], "unsure": true }).to_string();
    assert_eq!(
        node.post(&format!("{}/labels", node.ds()), &unsure).status,
        200
    );
    let undo = node.post(&format!("{}/undo", node.ds()), "");
    assert_eq!(undo.status, 200, "{:?}", undo.body);
    assert_eq!(undo.body["sample"], samples[3].as_str());
    assert_eq!(undo.body["undone"], "unsure");
    let undo = node.post(&format!("{}/undo", node.ds()), "");
    assert_eq!(
        undo.body["sample"],
        samples[1].as_str(),
        "the edit was the next newest"
    );

    // The undone samples come back to the queue, after the ones never seen.
    let again = queue(&node, 10);
    assert!(!again.contains(&samples[0]) && !again.contains(&samples[2]));
    assert_eq!(again.len(), 8);
    assert!(again[6..].contains(&samples[1]) && again[6..].contains(&samples[3]));

    let mine = node.get(&format!("{}/mine", node.ds()));
    assert_eq!(mine.body.as_array().unwrap().len(), 4, "{:?}", mine.body);
    let progress = node.get(&format!("{}/progress?since_ms=0", node.ds()));
    assert_eq!(progress.status, 200, "{:?}", progress.body);
    assert_eq!(progress.body["my_labels"], 2);
    assert_eq!(progress.body["network_labels"], 2);
    assert_eq!(progress.body["samples"], 10);
    assert_eq!(progress.body["peers_online"], 0);
    assert_eq!(progress.body["accuracy"], serde_json::json!([]));
    node.stop();

    let stored = node.stored();
    assert_eq!(stored.len(), 4);
    let stored_votes = votes(&stored);
    assert_eq!(
        stored_votes.len(),
        2,
        "circle and cross; the undone ones are skips"
    );
}

#[test]
fn a_table_row_comes_as_named_columns() {
    let mut node = Node::digits();
    node.start();
    let sample = queue(&node, 1).remove(0);
    let row = node.get(&format!("{}/samples/{sample}", node.ds()));
    assert_eq!(row.status, 200, "{:?}", row.body);
    let columns = row.body["columns"].as_array().unwrap();
    let values = row.body["values"].as_array().unwrap();
    assert_eq!(columns.len(), 64, "digits has 8x8 pixel columns");
    assert_eq!(values.len(), columns.len());
    assert!(values.iter().all(|v| v.as_f64().is_some()));
}

fn queue_excluding(node: &Node, exclude: &[String]) -> Vec<String> {
    let r = node.get(&format!(
        "{}/queue?n=64&exclude={}",
        node.ds(),
        exclude.join(",")
    ));
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["sample"].as_str().unwrap().to_owned())
        .collect()
}

fn png_bytes(node: &Node, sample: &str) -> Vec<u8> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent
        .get(format!("{}{}/samples/{sample}", node.url, node.ds()))
        .header("Authorization", format!("Bearer {}", node.token))
        .call()
        .unwrap();
    assert_eq!(
        r.headers().get("content-type").unwrap().to_str().unwrap(),
        "image/png"
    );
    r.body_mut().read_to_vec().unwrap()
}

/// What a monitoring system scrapes from a node: `/metrics` as OpenMetrics (it was sent as
/// Prometheus 0.0.4 text, which it is not), the build-info series, and `/healthz` (it did not
/// exist), none of them needing the token.
#[test]
fn metrics_are_openmetrics_with_build_info_and_healthz_answers() {
    let mut node = Node::shapes(8);
    node.start();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent.get(format!("{}/metrics", node.url)).call().unwrap();
    assert_eq!(r.status(), 200);
    let content_type = r.headers().get("content-type").unwrap().to_str().unwrap();
    assert!(
        content_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{content_type}"
    );
    let body = r.body_mut().read_to_string().unwrap();
    assert!(
        body.contains(&format!(
            "swarmlabel_build_info{{component=\"node\",version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{body}"
    );
    let mut r = agent.get(format!("{}/healthz", node.url)).call().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.body_mut().read_to_string().unwrap(), "ok\n");
}
