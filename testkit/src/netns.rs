//! A private network of Linux network namespaces, one per node, for the
//! partitions of the cluster campaigns (root only; `ip` and `iptables`).
//!
//! ```text
//!   this process (root namespace) 10.A.B.254 ─┐
//!                                             │ veth
//!   namespace <p>sw:   bridge br0 ────────────┼────────┬────────┐
//!                                             │ veth   │ veth   │ veth
//!   namespace <p>n1: 10.A.B.1   <p>n2: 10.A.B.2   <p>n3: 10.A.B.3  ...
//! ```
//!
//! The bridge lives in a namespace of its own, so that the root namespace's
//! firewall (Docker's `FORWARD` policy is `DROP`) never sees the traffic
//! between nodes. A partition is a pair of `iptables` rules in a node's own
//! namespace: it drops what comes from, and goes to, the other nodes, while
//! this process (the clients) still reaches it; so an isolated leader keeps
//! taking requests it must not acknowledge. Everything is removed on drop.

use std::process::Command;

/// The network; its namespaces and links are deleted when it is dropped.
pub struct Net {
    /// Prefix of every name (`tk<pid>`), short enough for interface names.
    prefix: String,
    /// `10.A.B`: node `i` is `10.A.B.i`, this process `10.A.B.254`.
    subnet: String,
    /// The node namespaces made so far.
    nodes: Vec<u64>,
}

/// Why the network could not be made.
#[derive(Debug)]
pub struct NetError(pub String);

impl std::fmt::Display for NetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn run(args: &[&str]) -> Result<(), NetError> {
    let output = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| NetError(format!("cannot run {}: {e}", args.join(" "))))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(NetError(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

impl Net {
    /// Whether this process can make one: root, with `ip` and `iptables`.
    pub fn available() -> Result<(), NetError> {
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(NetError("network namespaces need root".into()));
        }
        for tool in ["ip", "iptables"] {
            let found = Command::new(tool)
                .arg("-V")
                .output()
                .is_ok_and(|o| o.status.success());
            if !found {
                return Err(NetError(format!("`{tool}` is not installed")));
            }
        }
        Ok(())
    }

    /// The switch namespace and this process's link to it.
    pub fn new() -> Result<Net, NetError> {
        Net::available()?;
        let pid = std::process::id();
        let net = Net {
            prefix: format!("tk{}", pid % 1_000_000),
            subnet: format!("10.{}.{}", 200 + pid % 50, (pid / 50) % 250),
            nodes: Vec::new(),
        };
        let sw = net.switch();
        let (host, host_peer) = (format!("{}h", net.prefix), format!("{}vh", net.prefix));
        run(&["ip", "netns", "add", &sw])?;
        run(&["ip", "-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        run(&["ip", "-n", &sw, "link", "set", "br0", "up"])?;
        run(&[
            "ip", "link", "add", &host, "type", "veth", "peer", "name", &host_peer, "netns", &sw,
        ])?;
        run(&[
            "ip", "-n", &sw, "link", "set", &host_peer, "master", "br0", "up",
        ])?;
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}.254/24", net.subnet),
            "dev",
            &host,
        ])?;
        run(&["ip", "link", "set", &host, "up"])?;
        Ok(net)
    }

    fn switch(&self) -> String {
        format!("{}sw", self.prefix)
    }

    /// The namespace of node `id`.
    pub fn namespace(&self, id: u64) -> String {
        format!("{}n{id}", self.prefix)
    }

    /// Node `id`'s address.
    pub fn ip(&self, id: u64) -> String {
        format!("{}.{id}", self.subnet)
    }

    /// Makes node `id`'s namespace, linked to the bridge (once).
    pub fn add_node(&mut self, id: u64) -> Result<(), NetError> {
        assert!((1..254).contains(&id), "node ids 1 to 253 fit the subnet");
        if self.nodes.contains(&id) {
            return Ok(());
        }
        let (ns, sw) = (self.namespace(id), self.switch());
        let port = format!("{}v{id}", self.prefix);
        run(&["ip", "netns", "add", &ns])?;
        self.nodes.push(id);
        run(&[
            "ip", "link", "add", &port, "netns", &sw, "type", "veth", "peer", "name", "eth0",
            "netns", &ns,
        ])?;
        run(&["ip", "-n", &sw, "link", "set", &port, "master", "br0", "up"])?;
        run(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{}/24", self.ip(id)),
            "dev",
            "eth0",
        ])?;
        run(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
        run(&["ip", "-n", &ns, "link", "set", "lo", "up"])
    }

    /// `program` run inside node `id`'s namespace.
    pub fn command(&self, id: u64, program: &std::path::Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.namespace(id)])
            .arg(program);
        cmd
    }

    /// Cuts node `id` off from every other node (not from this process).
    pub fn isolate(&self, id: u64) -> Result<(), NetError> {
        let ns = self.namespace(id);
        for other in self.nodes.iter().filter(|&&o| o != id) {
            let ip = self.ip(*other);
            run(&[
                "ip", "netns", "exec", &ns, "iptables", "-A", "INPUT", "-s", &ip, "-j", "DROP",
            ])?;
            run(&[
                "ip", "netns", "exec", &ns, "iptables", "-A", "OUTPUT", "-d", &ip, "-j", "DROP",
            ])?;
        }
        Ok(())
    }

    /// Drops what node `from` sends to node `to`, and only that: a one-way
    /// cut (over TCP, connections either way then fail at some point).
    pub fn cut(&self, from: u64, to: u64) -> Result<(), NetError> {
        let (ns, ip) = (self.namespace(from), self.ip(to));
        run(&[
            "ip", "netns", "exec", &ns, "iptables", "-A", "OUTPUT", "-d", &ip, "-j", "DROP",
        ])
    }

    /// Undoes [`Net::isolate`] and [`Net::cut`] of node `id`.
    pub fn heal(&self, id: u64) -> Result<(), NetError> {
        run(&["ip", "netns", "exec", &self.namespace(id), "iptables", "-F"])
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of each link, and so the link.
        for id in &self.nodes {
            let _ = run(&["ip", "netns", "del", &self.namespace(*id)]);
        }
        let _ = run(&["ip", "netns", "del", &self.switch()]);
        let _ = run(&["ip", "link", "del", &format!("{}h", self.prefix)]);
    }
}
