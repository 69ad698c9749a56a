//! Issue 15 in a real network: the built binaries in Linux network namespaces, hosts behind
//! nftables NAT routers, a bootstrap peer on the public segment (`swarmlabel_testbed`). Root
//! only (CI is). Each test has its own net number, so they run in parallel.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use crate::support::bed;
use crate::support::process;

use bed::{Bed, EIM, REJECTING, SYMMETRIC};
use process::wait_until;

/// Scenario (d) and an owner behind a NAT: a public labeler joins the dataset of an owner behind
/// a NAT router after the bootstrap peer was killed and restarted under both running nodes. The
/// owner reserves a relay slot on the restarted peer again and publishes its records again; the
/// labeler finds it through the relayed address, the owner dials it back, and the dataset
/// arrives whole over that direct connection.
#[test]
fn a_public_labeler_joins_an_owner_behind_a_nat_after_the_bootstrap_peer_restarts() {
    let mut bed = Bed::new(1, &[EIM], 1);
    let (owner, id, _owner_node) = bed.digits_owner_behind_nat("h1.1");
    let labeler = bed.home("labeler");
    let _labeler_node = bed.run("pub", &labeler, &[]);

    bed.kill_bootstrap();
    wait_until("the owner to lose its reservation", || {
        !bed.has_relay_slot("h1.1", &owner)
    });
    bed.start_bootstrap();
    bed.cli("pub", &labeler, &["join", &id]);
    bed.assert_joined_directly("pub", &labeler, &id, &owner);
}

/// Scenario (a): owner behind NAT 1, labeler behind NAT 2, bootstrap public. The labeler reaches
/// the owner through the relay, hole punching (DCUtR) makes a direct connection, and the whole
/// dataset arrives over it.
#[test]
fn a_labeler_behind_a_nat_fetches_from_an_owner_behind_another() {
    let bed = Bed::new(2, &[EIM, EIM], 1);
    let (owner, id, _owner_node) = bed.digits_owner_behind_nat("h1.1");
    let labeler = bed.home("labeler");
    let _labeler_node = bed.run("h2.1", &labeler, &["--join", &id]);
    bed.assert_joined_directly("h2.1", &labeler, &id, &owner);
}

/// Scenario (e): a labeler behind a port-randomising ("symmetric") NAT cannot hole-punch to an
/// owner behind a NAT. It fetches the dataset from a public provider, its connection to the owner
/// stays relayed (`peers` says why), and its labels still reach the owner.
#[test]
fn a_labeler_behind_a_symmetric_nat_fetches_from_a_public_provider_and_its_labels_reach_the_owner()
{
    let bed = Bed::new(3, &[EIM, SYMMETRIC], 1);
    let (owner, id, _owner_node) = bed.digits_owner_behind_nat("h1.1");
    let public = bed.home("public");
    let _public_node = bed.run("pub", &public, &["--join", &id]);
    wait_until("the public provider's copy", || {
        bed.join_state("pub", &public, &id) == "done"
    });

    let labeler = bed.home("labeler");
    let _labeler_node = bed.run("h2.1", &labeler, &["--join", &id]);
    bed.assert_joined_directly("h2.1", &labeler, &id, &public);

    let owner_id = Bed::peer_id(&owner);
    wait_until("the labeler to give up hole punching to the owner", || {
        bed.peer("h2.1", &labeler, &owner_id)
            .is_some_and(|p| p["relayed_only"] == true && p["direct_failure"].is_string())
    });
    let to_owner = bed.peer("h2.1", &labeler, &owner_id).unwrap();
    let why = to_owner["direct_failure"].as_str().unwrap();
    assert!(why.contains("hole punch"), "{why}");

    let sample = &Bed::samples(&owner, &id)[0];
    bed.cli("h2.1", &labeler, &["label", &id, sample, "7"]);
    let labeler_id = Bed::annotator(&labeler);
    wait_until("the owner to hold the label", || {
        bed.labels("h1.1", &owner, &id)
            .iter()
            .any(|(who, s, v)| *who == labeler_id && s == sample && v == "7")
    });
}

/// Scenario (c): a labeler is cut off from the owner and the other labeler (nftables drops
/// between its router and the rest) while all three label; the connected side keeps syncing, and
/// once the cut heals every node holds the union: no acknowledged label is lost.
#[test]
fn after_a_partition_heals_every_node_holds_every_acknowledged_label() {
    let bed = Bed::new(4, &[EIM, EIM], 1);
    let (owner, id) = bed.digits_owner("owner");
    let _owner_node = bed.run("pub", &owner, &[]);
    let nodes = [
        ("pub", owner.clone()),
        ("h1.1", bed.home("l1")),
        ("h2.1", bed.home("l2")),
    ];
    let _labelers: Vec<_> = nodes[1..]
        .iter()
        .map(|(ns, home)| bed.run(ns, home, &["--join", &id]))
        .collect();
    for (ns, home) in &nodes[1..] {
        wait_until("the joins to finish", || {
            bed.join_state(ns, home, &id) == "done"
        });
    }

    bed.net
        .cut(2, &[bed.net.public_ip(), bed.net.router_ip(1)])
        .unwrap();
    let samples = Bed::samples(&owner, &id);
    let mut acknowledged = Vec::new();
    for (i, (ns, home)) in nodes.iter().enumerate() {
        bed.cli(ns, home, &["label", &id, &samples[i], "1"]);
        acknowledged.push((Bed::annotator(home), samples[i].clone(), "1".to_owned()));
    }
    acknowledged.sort();
    let l1 = &acknowledged
        .iter()
        .find(|(who, ..)| *who == Bed::annotator(&nodes[1].1))
        .unwrap()
        .clone();
    wait_until("the owner to hold the label of its side", || {
        bed.labels("pub", &owner, &id).contains(l1)
    });
    let l2 = Bed::annotator(&nodes[2].1);
    assert!(
        !bed.labels("pub", &owner, &id)
            .iter()
            .any(|(who, ..)| *who == l2),
        "the cut let a label through"
    );

    bed.net.heal(2).unwrap();
    for (ns, home) in &nodes {
        wait_until("every node to hold every label", || {
            bed.labels(ns, home, &id) == acknowledged
        });
    }
}

/// Scenario (b): eight nodes, two behind each of three NAT routers and two on the public
/// segment, label and train: every node ends with every label, and every node's merged model is
/// the same (one weights digest).
#[test]
fn eight_nodes_over_three_nats_converge_on_labels_and_one_merged_model() {
    let bed = Bed::new(5, &[EIM, EIM, EIM], 2);
    let (owner, id) = bed.digits_owner("owner");
    let mut nodes = vec![("pub".to_owned(), owner.clone())];
    let mut daemons = vec![bed.run("pub", &owner, &[])];
    let mut others = vec![("pub".to_owned(), bed.home("public"))];
    for r in 1..=3 {
        for k in 1..=2 {
            others.push((format!("h{r}.{k}"), bed.home(&format!("n{r}{k}"))));
        }
    }
    for (ns, home) in &others {
        daemons.push(bed.run(ns, home, &["--join", &id]));
    }
    for (ns, home) in &others {
        wait_until("every join to finish", || {
            bed.join_state(ns, home, &id) == "done"
        });
    }
    nodes.extend(others);

    let samples = Bed::samples(&owner, &id);
    let mut acknowledged = Vec::new();
    for (i, (ns, home)) in nodes.iter().enumerate() {
        let annotator = Bed::annotator(home);
        for j in 0..3 {
            let sample = &samples[i * 3 + j];
            let label = ((i + j) % 10).to_string();
            bed.cli(ns, home, &["label", &id, sample, &label]);
            acknowledged.push((annotator.clone(), sample.clone(), label));
        }
    }
    acknowledged.sort();
    for (ns, home) in &nodes {
        wait_until("every node to hold every label", || {
            bed.labels(ns, home, &id) == acknowledged
        });
    }
    let model =
        |ns: &str, home: &std::path::Path| bed.json(ns, home, &["status"])["models"][&id].clone();
    wait_until(
        "one merged model on every node, of every node's update",
        || {
            let models: Vec<_> = nodes.iter().map(|(ns, home)| model(ns, home)).collect();
            models[0]["peers"] == nodes.len()
                && models.iter().all(|m| m["hash"] == models[0]["hash"])
        },
    );
    drop(daemons);
}

/// A LAN: two nodes behind one router, with no bootstrap peer and nothing said about their
/// addresses, find each other by mDNS; the labeler fetches the whole dataset from the owner over
/// the LAN, at its private address.
#[test]
fn two_nodes_on_one_lan_find_each_other_without_a_bootstrap_peer() {
    let bed = Bed::new(6, &[EIM], 2);
    let (owner, id) = bed.digits_owner("owner");
    let _owner_node = bed.run_alone("h1.1", &owner, &[]);
    let labeler = bed.home("labeler");
    let _labeler_node = bed.run_alone("h1.2", &labeler, &["--join", &id]);
    bed.assert_joined_directly("h1.2", &labeler, &id, &owner);
    let to_owner = bed.peer("h1.2", &labeler, &Bed::peer_id(&owner)).unwrap();
    let addresses = to_owner["addresses"].as_array().unwrap();
    assert!(
        addresses
            .iter()
            .any(|a| a.as_str().unwrap().starts_with("/ip4/192.168.1.")),
        "not over the LAN: {to_owner}"
    );
}

/// Scenario (f): owner and labeler behind routers that answer unsolicited packets (a TCP reset,
/// an ICMP port-unreachable) instead of dropping them, with latency on the path, so the first
/// packets of a hole punch are refused. The labeler still gets a verified copy of the whole
/// dataset from the owner, its only provider, over the relayed connection; `peers` and `status`
/// say which path is used and why. Once the routers allow it, hole punching tried again on a
/// new relayed connection makes the connection direct.
#[test]
fn a_labeler_gets_a_verified_copy_from_an_owner_when_both_routers_answer_unsolicited_packets() {
    let bed = Bed::new(7, &[REJECTING, REJECTING], 1);
    // 60 ms each way through the owner's router: a hole punch's packets leave the two routers
    // at different times, as over a real path, so the first to arrive meets a router that
    // answers it (on a path of no latency the two SYNs cross and every punch succeeds).
    let delay = swarmlabel_testbed::Delay::start(&bed.net, 1, std::time::Duration::from_millis(60))
        .unwrap();
    let (owner, id, _owner_node) = bed.digits_owner_behind_nat("h1.1");
    let labeler = bed.home("labeler");
    let started = std::time::Instant::now();
    let _labeler_node = bed.run("h2.1", &labeler, &["--join", &id]);
    wait_until("the join to finish", || {
        bed.join_state("h2.1", &labeler, &id) == "done"
    });
    let verify = bed.cli("h2.1", &labeler, &["dataset", "verify", &id]);
    assert!(verify.contains("all 1797 samples intact"), "{verify}");
    let took = started.elapsed();

    // The samples came over the relayed connection: the join's report names the owner as
    // reached through a relay, `peers` says the path and why a direct one failed, and `status`
    // counts the relayed peer.
    let owner_id = Bed::peer_id(&owner);
    let status = bed.json("h2.1", &labeler, &["status"]);
    let report = &status["joins"][id.as_str()]["report"];
    assert_eq!(report["relayed"], serde_json::json!([owner_id]), "{report}");
    assert!(status["peers_relayed"].as_u64() >= Some(1), "{status}");
    let to_owner = bed
        .peer("h2.1", &labeler, &owner_id)
        .expect("connected to the owner");
    assert_eq!(to_owner["path"], "relayed", "{to_owner}");
    let why = to_owner["direct_failure"].as_str().unwrap();
    assert!(why.contains("hole punch"), "{why}");
    assert!(to_owner["next_punch_in_s"].is_u64(), "{to_owner}");
    eprintln!(
        "scenario (f): verified copy through the relay in {:.1} s from the labeler's start",
        took.as_secs_f64()
    );

    // Hole punching is tried again (30 s after the failure, on a new relayed connection); once
    // the routers drop unsolicited packets instead (as after a firewall change) it gets
    // through, and the relayed connection gives way.
    drop(delay);
    bed.net.answer_unsolicited(1, false).unwrap();
    bed.net.answer_unsolicited(2, false).unwrap();
    wait_until("a retried hole punch to make the path direct", || {
        bed.peer("h2.1", &labeler, &owner_id)
            .is_some_and(|p| p["path"] == "direct")
    });
}
