//! A cluster of real `taskserver` processes on loopback, each with its own
//! directory (data file and Raft directory), for the tests and campaigns of
//! cluster mode; or each in a network namespace of its own ([`crate::netns`]),
//! where one can be cut off from the others.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::netns::{Net, NetError};
use crate::process::{Refused, Server};

/// The secret the nodes share in tests.
pub const SECRET: &str = "testkit-cluster-secret-0123456789";

/// A cluster of processes; nodes are numbered from 1.
pub struct LocalCluster {
    binary: PathBuf,
    /// Keeps the directories until the cluster is dropped.
    _root: tempfile::TempDir,
    root: PathBuf,
    /// Node id to its port, for every node ever started.
    ports: BTreeMap<u64, u16>,
    /// The initial voters, as `--peers` gives them.
    peers: String,
    /// The running processes.
    nodes: BTreeMap<u64, Server>,
    /// Extra environment for every node (timing, log filter).
    env: Vec<(String, String)>,
    /// The namespaces, when the nodes run in them; after `nodes`, so that
    /// the processes are gone before their namespaces are deleted.
    net: Option<Net>,
}

/// A free port on 127.0.0.1 (free when asked: another program may take it
/// before the node listens, which then fails loudly).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl LocalCluster {
    /// Starts `n` nodes of the binary at `binary`, all initial voters.
    pub fn start(binary: &Path, n: u64) -> Result<LocalCluster, Refused> {
        LocalCluster::start_with(binary, n, &[])
    }

    /// [`LocalCluster::start`] with extra environment for every node.
    pub fn start_with(
        binary: &Path,
        n: u64,
        env: &[(&str, &str)],
    ) -> Result<LocalCluster, Refused> {
        LocalCluster::start_on(binary, n, env, None)
    }

    /// [`LocalCluster::start_with`], each node in a network namespace of its
    /// own, so that [`LocalCluster::isolate`] can cut one off (root only).
    pub fn start_in_namespaces(
        binary: &Path,
        n: u64,
        env: &[(&str, &str)],
    ) -> Result<Result<LocalCluster, Refused>, NetError> {
        let mut net = Net::new()?;
        for id in 1..=n {
            net.add_node(id)?;
        }
        Ok(LocalCluster::start_on(binary, n, env, Some(net)))
    }

    fn start_on(
        binary: &Path,
        n: u64,
        env: &[(&str, &str)],
        net: Option<Net>,
    ) -> Result<LocalCluster, Refused> {
        let root = tempfile::Builder::new()
            .prefix("testkit-cluster-")
            .tempdir()
            .expect("a temporary directory");
        let ports: BTreeMap<u64, u16> = (1..=n).map(|id| (id, free_port())).collect();
        let host = |id: u64| {
            net.as_ref()
                .map_or("127.0.0.1".to_owned(), |net| net.ip(id))
        };
        let peers = ports
            .iter()
            .map(|(&id, port)| format!("{id}={}:{port}", host(id)))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = LocalCluster {
            binary: binary.to_owned(),
            root: root.path().to_owned(),
            _root: root,
            ports,
            peers,
            nodes: BTreeMap::new(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            net,
        };
        // All at once, as a compose file starts them: each waits for the
        // others to answer before the cluster is created.
        let ids: Vec<u64> = cluster.ports.keys().copied().collect();
        let handles: Vec<_> = ids
            .iter()
            .map(|&id| {
                let cmd = cluster.command(id);
                std::thread::spawn(move || (id, Server::spawn(cmd)))
            })
            .collect();
        for handle in handles {
            let (id, server) = handle.join().expect("a starting thread");
            cluster.nodes.insert(id, server?);
        }
        Ok(cluster)
    }

    /// Starts a new node `id`, not an initial voter: its `--peers` are the
    /// initial voters and itself. It waits, empty, to be added as a learner.
    pub fn add_node(&mut self, id: u64) -> Result<(), Refused> {
        self.make_room(id)?;
        self.ports.insert(id, free_port());
        let server = Server::spawn(self.command(id))?;
        self.nodes.insert(id, server);
        Ok(())
    }

    /// The command that starts node `id` with the cluster's peers.
    pub fn command(&self, id: u64) -> Command {
        let mut cmd = match &self.net {
            Some(net) => net.command(id, &self.binary),
            None => Command::new(&self.binary),
        };
        crate::process::logs_piped(&mut cmd);
        let bind = self.addr(id);
        let peers = if self.peers.contains(&format!("{id}=")) {
            self.peers.clone()
        } else {
            format!("{},{id}={}", self.peers, self.addr(id))
        };
        cmd.args(["--bind", &bind, "--node-id", &id.to_string()])
            .env("TASKSERVER_PEERS", peers)
            .arg("--data")
            .arg(self.data(id))
            .arg("--raft-dir")
            .arg(self.raft_dir(id))
            .env("TASKSERVER_CLUSTER_SECRET", SECRET);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Node `id`'s directory.
    pub fn dir(&self, id: u64) -> PathBuf {
        self.root.join(format!("node{id}"))
    }

    /// Node `id`'s data file.
    pub fn data(&self, id: u64) -> PathBuf {
        let dir = self.dir(id);
        std::fs::create_dir_all(&dir).expect("a node directory");
        dir.join("tasks.json")
    }

    /// Node `id`'s Raft directory.
    pub fn raft_dir(&self, id: u64) -> PathBuf {
        self.dir(id).join("raft")
    }

    /// `http://<host>:<port>` of node `id`.
    pub fn url(&self, id: u64) -> String {
        format!("http://{}", self.addr(id))
    }

    /// `host:port` of node `id`, as the membership names it: on
    /// `127.0.0.1`, or its namespace's address.
    pub fn addr(&self, id: u64) -> String {
        let host = self
            .net
            .as_ref()
            .map_or("127.0.0.1".to_owned(), |n| n.ip(id));
        format!("{host}:{}", self.ports[&id])
    }

    /// A namespace for node `id` when the nodes run in them.
    fn make_room(&mut self, id: u64) -> Result<(), Refused> {
        match &mut self.net {
            Some(net) => net.add_node(id).map_err(|e| Refused {
                status: None,
                log: format!("no namespace for node {id}: {e}"),
            }),
            None => Ok(()),
        }
    }

    /// Cuts node `id` off from the other nodes (the clients still reach
    /// it). Only when the nodes run in namespaces.
    pub fn isolate(&self, id: u64) -> Result<(), NetError> {
        match &self.net {
            Some(net) => net.isolate(id),
            None => Err(NetError("the nodes do not run in namespaces".into())),
        }
    }

    /// Drops what node `from` sends to node `to` (a one-way cut). Only when
    /// the nodes run in namespaces.
    pub fn cut(&self, from: u64, to: u64) -> Result<(), NetError> {
        match &self.net {
            Some(net) => net.cut(from, to),
            None => Err(NetError("the nodes do not run in namespaces".into())),
        }
    }

    /// Undoes [`LocalCluster::isolate`] and [`LocalCluster::cut`] of `id`.
    pub fn heal(&self, id: u64) -> Result<(), NetError> {
        match &self.net {
            Some(net) => net.heal(id),
            None => Ok(()),
        }
    }

    /// The ids of the running nodes.
    pub fn running(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// The running process of node `id`.
    pub fn node(&self, id: u64) -> Option<&Server> {
        self.nodes.get(&id)
    }

    /// `kill -9` of node `id`.
    pub fn kill9(&mut self, id: u64) {
        if let Some(server) = self.nodes.remove(&id) {
            server.kill9();
        }
    }

    /// Node `id`'s process, no longer the cluster's to stop (to stop it
    /// another way than `kill -9`).
    pub fn take(&mut self, id: u64) -> Option<Server> {
        self.nodes.remove(&id)
    }

    /// SIGSTOP / SIGCONT of node `id`.
    pub fn pause(&self, id: u64, paused: bool) {
        if let Some(server) = self.nodes.get(&id) {
            let signal = if paused { libc::SIGSTOP } else { libc::SIGCONT };
            // SAFETY: kill(2) of our own child.
            unsafe { libc::kill(server.pid(), signal) };
        }
    }

    /// Starts node `id` again (after a kill, or for a node never started:
    /// a new one, which must then be added as a learner).
    pub fn restart(&mut self, id: u64) -> Result<(), Refused> {
        self.make_room(id)?;
        if let std::collections::btree_map::Entry::Vacant(e) = self.ports.entry(id) {
            e.insert(free_port());
        }
        let server = Server::spawn(self.command(id))?;
        self.nodes.insert(id, server);
        Ok(())
    }

    /// Removes node `id`'s data file and Raft directory (it must be down).
    pub fn wipe(&mut self, id: u64) {
        assert!(
            !self.nodes.contains_key(&id),
            "wipe a node only while it is down"
        );
        let _ = std::fs::remove_dir_all(self.dir(id));
    }

    /// `GET /cluster` of node `id`, `None` if it does not answer.
    pub fn status(&self, id: u64) -> Option<Value> {
        get_json(&format!("{}/cluster", self.url(id)))
    }

    /// The leader every running node that answers agrees on, once one is
    /// there; `None` after `limit`.
    pub fn wait_for_leader(&self, limit: Duration) -> Option<u64> {
        let deadline = Instant::now() + limit;
        loop {
            let leaders: Vec<Option<u64>> = self
                .running()
                .iter()
                .filter_map(|&id| self.status(id))
                .map(|s| s["leader_id"].as_u64())
                .collect();
            if let Some(Some(leader)) = leaders.first() {
                if leaders.iter().all(|l| l == &Some(*leader)) && self.nodes.contains_key(leader) {
                    return Some(*leader);
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every running node applied as far as the leader
    /// committed, and returns each node's data file then.
    pub fn wait_until_quiet(&self, limit: Duration) -> Option<BTreeMap<u64, Vec<u8>>> {
        let deadline = Instant::now() + limit;
        loop {
            let statuses: Vec<Value> = self
                .running()
                .iter()
                .filter_map(|&id| self.status(id))
                .collect();
            let committed = statuses
                .iter()
                .filter_map(|s| s["committed"].as_u64())
                .max();
            if statuses.len() == self.nodes.len()
                && committed.is_some()
                && statuses.iter().all(|s| s["applied"].as_u64() == committed)
            {
                return Some(
                    self.running()
                        .into_iter()
                        .map(|id| (id, std::fs::read(self.data(id)).unwrap_or_default()))
                        .collect(),
                );
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A membership call (`POST /cluster/learners` ...) to node `via`, with
    /// the secret; the status and the JSON answer.
    pub fn admin(&self, via: u64, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.url(via));
        let mut args = vec![
            "-s".to_owned(),
            "-m".into(),
            "180".into(),
            "-o".into(),
            "-".into(),
            "-w".into(),
            "\n%{http_code}".into(),
            "-X".into(),
            method.into(),
            "-H".into(),
            format!("Authorization: Bearer {SECRET}"),
        ];
        if let Some(body) = body {
            args.extend([
                "-H".into(),
                "Content-Type: application/json".into(),
                "-d".into(),
                body.to_string(),
            ]);
        }
        args.push(url);
        let output = Command::new("curl")
            .args(&args)
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&output.stdout);
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (
            code.trim().parse().unwrap_or(0),
            serde_json::from_str(body).unwrap_or(Value::Null),
        )
    }
}

/// A GET of `url` as JSON, `None` if it fails (short time limit).
fn get_json(url: &str) -> Option<Value> {
    let output = Command::new("curl")
        .args(["-s", "-f", "-m", "2", url])
        .output()
        .ok()?;
    serde_json::from_slice(&output.stdout).ok()
}
