//! A small internet in Linux network namespaces, for tests that run the real binaries behind real
//! NAT routers (root only, which CI is; `scripts/test` installs `iproute2` and `nftables`).
//!
//! ```text
//!   public segment 10.77.N.0/24 (bridge in namespace `pub`, which also hosts peers: .1)
//!     ├─ router A  10.77.N.2  ── masquerade (nftables) ── 192.168.1.0/24 ── host A 192.168.1.2
//!     └─ router B  10.77.N.3  ── masquerade (nftables) ── 192.168.2.0/24 ── host B 192.168.2.2
//! ```
//!
//! Hosts behind a router reach the public segment; nothing on it can open a connection to them.
//! Every name carries the test process id, so parallel tests and leftover runs never collide;
//! dropping the `Net` deletes every namespace (processes in them must be stopped first).

use std::process::Command;

/// Runs a command that must succeed (a failure says which and why).
fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The namespaces of one test's network.
pub(crate) struct Net {
    prefix: String,
    names: Vec<String>,
}

impl Net {
    /// Builds the public segment, `routers` NAT routers (1 or 2) and one host behind each.
    /// `id` (0–255) keeps the public subnets of tests running at once apart.
    pub(crate) fn new(id: u8, routers: u8) -> Net {
        let prefix = format!("sl{}x{id}", std::process::id());
        let mut net = Net {
            prefix: prefix.clone(),
            names: Vec::new(),
        };
        let public = net.add("pub");
        run(&["ip", "-n", &public, "link", "add", "br0", "type", "bridge"]);
        run(&[
            "ip",
            "-n",
            &public,
            "addr",
            "add",
            &format!("10.77.{id}.1/24"),
            "dev",
            "br0",
        ]);
        run(&["ip", "-n", &public, "link", "set", "br0", "up"]);
        for r in 1..=routers {
            let router = net.add(&format!("r{r}"));
            let host = net.add(&format!("h{r}"));
            // router <-> public bridge
            let (up, up_peer) = (format!("{prefix}u{r}"), format!("{prefix}U{r}"));
            run(&[
                "ip", "link", "add", &up, "type", "veth", "peer", "name", &up_peer,
            ]);
            run(&["ip", "link", "set", &up, "netns", &router]);
            run(&["ip", "link", "set", &up_peer, "netns", &public]);
            run(&[
                "ip", "-n", &public, "link", "set", &up_peer, "master", "br0",
            ]);
            run(&["ip", "-n", &public, "link", "set", &up_peer, "up"]);
            let wan = format!("10.77.{id}.{}", r + 1);
            run(&[
                "ip",
                "-n",
                &router,
                "addr",
                "add",
                &format!("{wan}/24"),
                "dev",
                &up,
            ]);
            run(&["ip", "-n", &router, "link", "set", &up, "up"]);
            // router <-> host
            let (down, down_peer) = (format!("{prefix}d{r}"), format!("{prefix}D{r}"));
            run(&[
                "ip", "link", "add", &down, "type", "veth", "peer", "name", &down_peer,
            ]);
            run(&["ip", "link", "set", &down, "netns", &router]);
            run(&["ip", "link", "set", &down_peer, "netns", &host]);
            let lan = format!("192.168.{r}");
            run(&[
                "ip",
                "-n",
                &router,
                "addr",
                "add",
                &format!("{lan}.1/24"),
                "dev",
                &down,
            ]);
            run(&["ip", "-n", &router, "link", "set", &down, "up"]);
            run(&[
                "ip",
                "-n",
                &host,
                "addr",
                "add",
                &format!("{lan}.2/24"),
                "dev",
                &down_peer,
            ]);
            run(&["ip", "-n", &host, "link", "set", &down_peer, "up"]);
            run(&[
                "ip",
                "-n",
                &host,
                "route",
                "add",
                "default",
                "via",
                &format!("{lan}.1"),
            ]);
            run(&[
                "ip",
                "netns",
                "exec",
                &router,
                "sysctl",
                "-q",
                "-w",
                "net.ipv4.ip_forward=1",
            ]);
            // Masquerade what leaves towards the public segment: an endpoint-independent
            // mapping (Linux keeps the source port when it is free), no inbound without state.
            let rules = format!(
                "table ip nat {{\n chain post {{\n  type nat hook postrouting priority 100;\n  \
                 oifname \"{up}\" masquerade\n }}\n}}\n\
                 table ip filter {{\n chain forwarding {{\n  type filter hook forward priority 0; policy drop;\n  \
                 ct state established,related accept\n  iifname \"{down}\" accept\n }}\n}}\n"
            );
            let out = Command::new("ip")
                .args(["netns", "exec", &router, "nft", "-f", "-"])
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .and_then(|mut child| {
                    use std::io::Write as _;
                    child.stdin.take().unwrap().write_all(rules.as_bytes())?;
                    child.wait_with_output()
                })
                .unwrap();
            assert!(
                out.status.success(),
                "nft: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        net
    }

    fn add(&mut self, name: &str) -> String {
        let full = format!("{}{name}", self.prefix);
        run(&["ip", "netns", "add", &full]);
        run(&["ip", "-n", &full, "link", "set", "lo", "up"]);
        self.names.push(full.clone());
        full
    }

    /// The namespace of the public segment (`"pub"`), of router `n` (`"r1"`) or host `n`
    /// (`"h1"`).
    pub(crate) fn ns(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// A command that runs `program` inside namespace `name`.
    pub(crate) fn command(&self, name: &str, program: &std::path::Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(name)]).arg(program);
        cmd
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for name in self.names.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}
