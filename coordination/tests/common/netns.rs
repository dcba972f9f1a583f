//! A network namespace of the test's own, for cutting a contender off.

use std::process::{Command, Stdio};

/// A network namespace of this test's own, joined to the host by a veth
/// pair: a host on the other side of a network link that the test can cut
/// (iptables inside the namespace), without touching the host's own rules.
pub struct NetNs {
    pub name: String,
    /// The host's end of the link: where servers for the namespace listen.
    pub host_address: String,
    host_link: String,
}

impl NetNs {
    /// Needs root (CI runs as root); fails loudly otherwise.
    pub fn create() -> NetNs {
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "the partition test makes a network namespace and iptables rules, which needs root: run it as root (CI does)"
        );
        let n = std::process::id() % 200 + 20;
        let name = format!("zkt-{}", std::process::id());
        let host_link = format!("zkt{n}h");
        let ns_link = format!("zkt{n}n");
        let host_address = format!("10.231.{n}.1");
        // A stale namespace of an earlier run with the same pid.
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &host_link])
            .stderr(Stdio::null())
            .status();
        for args in [
            vec!["netns", "add", &name],
            vec![
                "link", "add", &host_link, "type", "veth", "peer", "name", &ns_link,
            ],
            vec!["link", "set", &ns_link, "netns", &name],
            vec![
                "addr",
                "add",
                &format!("{host_address}/30"),
                "dev",
                &host_link,
            ],
            vec!["link", "set", &host_link, "up"],
            vec![
                "netns",
                "exec",
                &name,
                "ip",
                "addr",
                "add",
                &format!("10.231.{n}.2/30"),
                "dev",
                &ns_link,
            ],
            vec!["netns", "exec", &name, "ip", "link", "set", &ns_link, "up"],
            vec!["netns", "exec", &name, "ip", "link", "set", "lo", "up"],
        ] {
            run("ip", &args);
        }
        NetNs {
            name,
            host_address,
            host_link,
        }
    }

    /// `command` run inside the namespace (`ip netns exec` execs it, so the
    /// pid is the command's own).
    pub fn wrap(&self, command: &Command) -> Command {
        let mut wrapped = Command::new("ip");
        wrapped
            .args(["netns", "exec", &self.name])
            .arg(command.get_program())
            .args(command.get_args());
        for (key, value) in command.get_envs() {
            match value {
                Some(value) => wrapped.env(key, value),
                None => wrapped.env_remove(key),
            };
        }
        wrapped
    }

    /// Drops every packet between the namespace and the host, both ways:
    /// connections hang as they do when a network cable is cut.
    pub fn cut(&self) {
        for chain in [["-A", "OUTPUT", "-d"], ["-A", "INPUT", "-s"]] {
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &self.name,
                    "iptables",
                    chain[0],
                    chain[1],
                    chain[2],
                    &self.host_address,
                    "-j",
                    "DROP",
                ],
            );
        }
    }

    pub fn heal(&self) {
        run("ip", &["netns", "exec", &self.name, "iptables", "-F"]);
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .stderr(Stdio::null())
            .status();
    }
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .expect("run ip/iptables");
    assert!(status.success(), "{program} {} failed", args.join(" "));
}
