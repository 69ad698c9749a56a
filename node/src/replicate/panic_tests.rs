//! A service that panics stops the node loudly (exit code 70), so that a supervisor restarts it
//! on its durable state; before issue 14 a panic in the labels thread stopped labelling for good
//! while the node went on running. `std::process::exit` ends the whole process, so the test runs
//! itself again as a child process that panics, and checks how that child ends.

use std::process::Command;

use libp2p::PeerId;
use swarmlabel_net::swarm::replication::{Kind, Verdict};

use super::service::{Handle, Settings};
use super::{Context, Gossip, Replicated, Reply, Step};
use crate::models::wire::{Request, Response};

const CHILD: &str = "SWARMLABEL_TEST_PANICKING_SERVICE";

/// A kind whose every command is a bug.
struct Panicking;

impl Replicated for Panicking {
    const KIND: Kind = Kind {
        tag: 200,
        name: "panicking",
        topic_prefix: "/swarmlabel/test-panicking/1/",
        max_request: 1024,
        max_response: 1024,
    };
    type Request = Request;
    type Response = Response;
    type Session = ();
    type Command = ();
    type Event = ();

    fn held(&self) -> Vec<swarmlabel_ids::DatasetId> {
        Vec::new()
    }

    fn begin(
        &mut self,
        _: PeerId,
        _: swarmlabel_ids::DatasetId,
        _: &mut Context<Self>,
    ) -> Option<((), Request)> {
        None
    }

    fn step(
        &mut self,
        _: PeerId,
        _: &mut (),
        _: Reply<Response>,
        _: &mut Context<Self>,
    ) -> Step<Request> {
        Step::Done
    }

    fn answer(&mut self, _: PeerId, _: Request, _: &mut Context<Self>) -> Reply<Response> {
        Reply::Refused
    }

    fn judge(&mut self, _: Gossip, _: &mut Context<Self>) -> Verdict {
        Verdict::Ignore
    }

    fn command(&mut self, (): (), _: &mut Context<Self>) {
        panic!("a bug in a service");
    }
}

fn settings() -> Settings {
    Settings {
        anti_entropy: super::core::Config::default(),
        seed: Some(1),
    }
}

#[test]
fn a_panicking_service_stops_the_node_with_exit_code_70() {
    if std::env::var_os(CHILD).is_some() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let handle = Handle::start(Panicking, None, settings()).await.unwrap();
            let _ = handle
                .call(|_reply: tokio::sync::oneshot::Sender<()>| ())
                .await;
            // The service's thread ends the process at once. A node that went on running without
            // its service would reach the lines below (a guard against a hang, not a timing).
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            eprintln!("the node is still running after its service panicked");
            std::process::exit(3);
        });
        return;
    }
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "replicate::panic_tests::a_panicking_service_stops_the_node_with_exit_code_70",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert_eq!(child.status.code(), Some(70), "{stderr}");
    assert!(
        stderr.contains("the panicking service panicked; stopping (exit code 70)"),
        "{stderr}"
    );
}
