#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod delay;

use std::process::{Command, Stdio};

pub use delay::Delay;

/// A command of the test bed's set-up failed.
#[derive(Debug, thiserror::Error)]
#[error("{command}: {reason}")]
pub struct Error {
    /// The command.
    pub command: String,
    /// Its error output.
    pub reason: String,
}

/// How a router maps its hosts' connections to its public address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// One mapping per host port, whatever the destination (a "full cone" mapping with
    /// address-and-port-dependent filtering, the common home router): hole punching works.
    EndpointIndependent,
    /// A new random public port for every connection ("symmetric"): the port a peer saw is not
    /// the one a new connection gets, so hole punching cannot work.
    Symmetric,
    /// Endpoint-independent mapping, but an unsolicited packet is answered instead of dropped
    /// (a TCP reset, an ICMP port-unreachable), as some real NATs and firewalls do: the first
    /// packets of a hole punch are refused, and the punch fails.
    Rejecting,
}

/// The rules of a router's `unsolicited` chain: answer (reset, port-unreachable) or drop.
fn unsolicited_rules(answer: bool) -> &'static str {
    if answer {
        "    meta l4proto tcp reject with tcp reset\n    reject with icmp type port-unreachable"
    } else {
        "    drop"
    }
}

/// The namespaces of one network.
#[derive(Debug)]
pub struct Net {
    prefix: String,
    id: u8,
    names: Vec<String>,
}

/// Runs a command that must succeed.
fn run(args: &[&str]) -> Result<(), Error> {
    run_with_input(args, None)
}

fn run_with_input(args: &[&str], input: Option<&str>) -> Result<(), Error> {
    let fail = |reason: String| Error {
        command: args.join(" "),
        reason,
    };
    let mut child = Command::new(args[0])
        .args(&args[1..])
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    if let Some(input) = input {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().ok_or_else(|| fail("no stdin".into()))?;
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_owned()))
    }
}

/// A veth pair: end `a.1` in namespace `a.0` with address `a.2` (CIDR), end `b.1` in namespace
/// `b.0` on bridge `b.2`; both up.
fn cable(a: (&str, &str, &str), b: (&str, &str, &str)) -> Result<(), Error> {
    let ((a_ns, a_end, addr), (b_ns, b_end, bridge)) = (a, b);
    run(&[
        "ip", "link", "add", a_end, "netns", a_ns, "type", "veth", "peer", "name", b_end, "netns",
        b_ns,
    ])?;
    run(&["ip", "-n", b_ns, "link", "set", b_end, "master", bridge])?;
    run(&["ip", "-n", b_ns, "link", "set", b_end, "up"])?;
    run(&["ip", "-n", a_ns, "addr", "add", addr, "dev", a_end])?;
    run(&["ip", "-n", a_ns, "link", "set", a_end, "up"])
}

impl Net {
    /// Builds the public segment and one router of each kind in `routers` (at most 9), with
    /// `hosts` hosts (at most 9) behind each. `id` keeps the public subnets of nets that exist
    /// at once apart.
    pub fn new(id: u8, routers: &[Nat], hosts: u8) -> Result<Net, Error> {
        assert!(
            routers.len() <= 9 && hosts <= 9,
            "at most 9 routers and 9 hosts each"
        );
        let mut net = Net {
            prefix: format!("sl{}x{id}", std::process::id()),
            id,
            names: Vec::new(),
        };
        let public = net.add("pub")?;
        run(&["ip", "-n", &public, "link", "add", "br0", "type", "bridge"])?;
        let addr = format!("{}/24", net.public_ip());
        run(&["ip", "-n", &public, "addr", "add", &addr, "dev", "br0"])?;
        run(&["ip", "-n", &public, "link", "set", "br0", "up"])?;
        for (i, nat) in routers.iter().enumerate() {
            net.add_router(i as u8 + 1, *nat, hosts)?;
        }
        Ok(net)
    }

    fn add_router(&mut self, r: u8, nat: Nat, hosts: u8) -> Result<(), Error> {
        let public = self.ns("pub");
        let router = self.add(&format!("r{r}"))?;
        let wan = format!("{}/24", self.router_ip(r));
        cable((&router, "wan", &wan), (&public, &format!("r{r}"), "br0"))?;
        run(&["ip", "-n", &router, "link", "add", "lan", "type", "bridge"])?;
        let lan = format!("192.168.{r}.1/24");
        run(&["ip", "-n", &router, "addr", "add", &lan, "dev", "lan"])?;
        run(&["ip", "-n", &router, "link", "set", "lan", "up"])?;
        run(&[
            "ip",
            "netns",
            "exec",
            &router,
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ip_forward=1",
        ])?;
        for k in 1..=hosts {
            let host = self.add(&format!("h{r}.{k}"))?;
            let addr = format!("192.168.{r}.{}/24", k + 1);
            cable((&host, "eth0", &addr), (&router, &format!("l{k}"), "lan"))?;
            let gateway = format!("192.168.{r}.1");
            run(&[
                "ip", "-n", &host, "route", "add", "default", "via", &gateway,
            ])?;
        }
        let masquerade = match nat {
            Nat::EndpointIndependent | Nat::Rejecting => "masquerade",
            Nat::Symmetric => "masquerade random",
        };
        // `cut` holds the addresses this router's hosts are partitioned from; chain
        // `unsolicited` says what an unsolicited packet from the internet gets.
        let rules = format!(
            "table ip nat {{
  chain post {{ type nat hook postrouting priority 100; oifname \"wan\" {masquerade}; }}
}}
table ip filter {{
  set cut {{ type ipv4_addr; }}
  chain unsolicited {{
{}
  }}
  chain forwarding {{
    type filter hook forward priority 0; policy drop;
    ip saddr @cut drop
    ip daddr @cut drop
    ct state established,related accept
    iifname \"lan\" accept
    iifname \"wan\" jump unsolicited
  }}
  chain input {{
    type filter hook input priority 0; policy accept;
    iifname \"wan\" ct state established,related accept
    iifname \"wan\" jump unsolicited
  }}
}}
",
            unsolicited_rules(nat == Nat::Rejecting)
        );
        run_with_input(
            &["ip", "netns", "exec", &router, "nft", "-f", "-"],
            Some(&rules),
        )
    }

    /// Makes router `r` answer unsolicited packets from the internet (a TCP reset, an ICMP
    /// port-unreachable) or drop them, from now on; connections it tracks are kept.
    pub fn answer_unsolicited(&self, r: u8, answer: bool) -> Result<(), Error> {
        let router = self.ns(&format!("r{r}"));
        let rules = format!(
            "flush chain ip filter unsolicited\ntable ip filter {{\n  chain unsolicited {{\n{}\n  }}\n}}\n",
            unsolicited_rules(answer)
        );
        run_with_input(
            &["ip", "netns", "exec", &router, "nft", "-f", "-"],
            Some(&rules),
        )
    }

    fn add(&mut self, name: &str) -> Result<String, Error> {
        let full = self.ns(name);
        run(&["ip", "netns", "add", &full])?;
        self.names.push(full.clone());
        run(&["ip", "-n", &full, "link", "set", "lo", "up"])?;
        Ok(full)
    }

    /// The full name of namespace `name`: `"pub"`, router `"r1"`, host `"h1.1"`.
    pub fn ns(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The public segment's own address (peers started in `pub` have it).
    pub fn public_ip(&self) -> String {
        format!("10.77.{}.1", self.id)
    }

    /// Router `r`'s public address.
    pub fn router_ip(&self, r: u8) -> String {
        format!("10.77.{}.{}", self.id, r + 1)
    }

    /// A command that runs `program` inside namespace `name` (`"pub"`, `"h1.1"`, …).
    pub fn command(&self, name: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(name)]).arg(program);
        cmd
    }

    /// Runs `f` on a new thread inside namespace `name` (its sockets live there), for a
    /// harness's own traffic: a baseline sender or receiver, an HTTP call to a node's API.
    pub fn spawn_in<T: Send + 'static>(
        &self,
        name: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<InNamespace<T>, Error> {
        let path = format!("/run/netns/{}", self.ns(name));
        let fail = |reason: String| Error {
            command: format!("setns {path}"),
            reason,
        };
        let file = std::fs::File::open(&path).map_err(|e| fail(e.to_string()))?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::spawn(move || {
            let entered = nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET);
            let ok = entered.is_ok();
            let _ = tx.send(entered.map_err(|e| e.to_string()));
            ok.then(f)
        });
        rx.recv()
            .map_err(|_| fail("the thread died".into()))?
            .map_err(fail)?;
        Ok(InNamespace(thread))
    }

    /// Partitions router `r`'s hosts from `addrs` (public addresses: the public segment's,
    /// other routers'): their packets are dropped both ways until [`Net::heal`].
    pub fn cut(&self, r: u8, addrs: &[String]) -> Result<(), Error> {
        let router = self.ns(&format!("r{r}"));
        let set = format!("{{ {} }}", addrs.join(", "));
        run(&[
            "ip", "netns", "exec", &router, "nft", "add", "element", "ip", "filter", "cut", &set,
        ])
    }

    /// Ends router `r`'s partitions.
    pub fn heal(&self, r: u8) -> Result<(), Error> {
        let router = self.ns(&format!("r{r}"));
        run(&[
            "ip", "netns", "exec", &router, "nft", "flush", "set", "ip", "filter", "cut",
        ])
    }
}

/// A thread running inside a namespace ([`Net::spawn_in`]).
#[derive(Debug)]
pub struct InNamespace<T>(std::thread::JoinHandle<Option<T>>);

impl<T> InNamespace<T> {
    /// Waits for the thread's result (a panic in it is raised here).
    pub fn join(self) -> T {
        match self.0.join() {
            Ok(Some(value)) => value,
            // `spawn_in` returned only once the thread was in the namespace.
            Ok(None) => unreachable!("the thread entered its namespace"),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for name in self.names.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}
