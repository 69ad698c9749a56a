//! Latency in userspace: every packet a router forwards waits in a netfilter queue (the
//! `iptables-legacy` NFQUEUE target: `apt-get install iptables`)
//! until a thread of ours accepts it, a fixed delay after it arrived. Each direction through the
//! router is delayed once, so a path through it gains twice the delay in round-trip time. The
//! kernel here has no `netem`; this is the harness's delaying link.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{Error, Net, run};

/// The netfilter queue a router's delay uses (one delay per router).
const QUEUE: u16 = 7;

/// Packets a queue holds at most (the kernel drops beyond, as a full router buffer does).
const MAX_QUEUED: u32 = 1 << 16;

/// A delay on one router's forwarded traffic; removed on drop.
#[derive(Debug)]
pub struct Delay {
    router: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Delay {
    /// Delays every packet router `r` of `net` forwards, each direction, by `delay`.
    pub fn start(net: &Net, r: u8, delay: Duration) -> Result<Delay, Error> {
        let router = net.ns(&format!("r{r}"));
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (router, stop) = (router.clone(), stop.clone());
            std::thread::spawn(move || match open(&router) {
                Ok(queue) => {
                    let _ = ready_tx.send(Ok(()));
                    forward(queue, delay, &stop);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
        };
        let fail = |reason: String| Error {
            command: format!("delay on {router}"),
            reason,
        };
        ready_rx
            .recv()
            .map_err(|_| fail("the delay thread died".into()))?
            .map_err(fail)?;
        let handle = Delay {
            router: router.clone(),
            stop,
            thread: Some(thread),
        };
        // This kernel has the xtables NFQUEUE target but not nftables' `queue` (NFT_QUEUE).
        run(&[
            "ip",
            "netns",
            "exec",
            &router,
            "iptables-legacy",
            "-I",
            "FORWARD",
            "-j",
            "NFQUEUE",
            "--queue-num",
            &QUEUE.to_string(),
        ])?;
        Ok(handle)
    }
}

/// Binds the queue inside namespace `router` (this thread moves into it).
fn open(router: &str) -> Result<nfq::Queue, String> {
    let file = std::fs::File::open(format!("/run/netns/{router}")).map_err(|e| e.to_string())?;
    // Moves only this thread.
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("setns: {e}"))?;
    let mut queue = nfq::Queue::open().map_err(|e| e.to_string())?;
    queue.bind(QUEUE).map_err(|e| e.to_string())?;
    // Only the metadata comes up (the verdict does not change the packet); big segments whole.
    queue.set_copy_range(QUEUE, 0).map_err(|e| e.to_string())?;
    queue.set_recv_gso(QUEUE, true).map_err(|e| e.to_string())?;
    queue
        .set_queue_max_len(QUEUE, MAX_QUEUED)
        .map_err(|e| e.to_string())?;
    queue.set_nonblocking(true);
    Ok(queue)
}

/// Accepts each packet `delay` after it arrived, in arrival order, until `stop`.
fn forward(mut queue: nfq::Queue, delay: Duration, stop: &AtomicBool) {
    let mut held: VecDeque<(Instant, nfq::Message)> = VecDeque::new();
    while !stop.load(Ordering::Relaxed) {
        let mut idle = true;
        loop {
            match queue.recv() {
                Ok(mut msg) => {
                    msg.set_verdict(nfq::Verdict::Accept);
                    held.push_back((Instant::now() + delay, msg));
                    idle = false;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // A full socket buffer (ENOBUFS) lost notices of packets the kernel drops.
                Err(_) => break,
            }
        }
        let now = Instant::now();
        while held.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, msg)) = held.pop_front() {
                let _ = queue.verdict(msg);
                idle = false;
            }
        }
        if idle {
            let next = held.front().map_or(Duration::from_micros(200), |(due, _)| {
                due.saturating_duration_since(now)
            });
            std::thread::sleep(next.min(Duration::from_micros(200)));
        }
    }
    for (_, msg) in held {
        let _ = queue.verdict(msg);
    }
}

impl Drop for Delay {
    fn drop(&mut self) {
        // The rule first (packets queued with no reader would be dropped), then the reader.
        let _ = run(&[
            "ip",
            "netns",
            "exec",
            &self.router,
            "iptables-legacy",
            "-D",
            "FORWARD",
            "-j",
            "NFQUEUE",
            "--queue-num",
            &QUEUE.to_string(),
        ]);
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
