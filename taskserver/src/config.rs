//! The command line: flags, environment variables and the `healthcheck`
//! subcommand, as the contract lists them.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// A durable, concurrent task server: `GET` and `POST /tareas`, stored in
/// one JSON file.
#[derive(Debug, Parser)]
#[command(name = "taskserver", version, about)]
pub struct Cli {
    /// Address and port to listen on.
    #[arg(long, env = "TASKSERVER_BIND", default_value = "0.0.0.0:9000")]
    pub bind: String,
    /// Connections the kernel may queue before the server accepts them (the
    /// listen backlog); capped by the kernel's net.core.somaxconn.
    #[arg(long, env = "TASKSERVER_BACKLOG", default_value_t = crate::listen::DEFAULT_BACKLOG,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub backlog: u32,
    /// The data file: a JSON array of tasks, created as `[]` if missing.
    #[arg(
        long,
        env = "TASKSERVER_DATA",
        default_value = "tasks.json",
        global = true
    )]
    pub data: PathBuf,
    /// Cluster mode: this node's id, a positive integer (off when absent).
    #[arg(long, env = "TASKSERVER_NODE_ID", value_parser = clap::value_parser!(u64).range(1..))]
    pub node_id: Option<u64>,
    /// Cluster mode: the initial voters, `id=host:port` comma-separated,
    /// this node included; the address is where the other nodes and clients
    /// reach that node's HTTP port.
    #[arg(long, env = "TASKSERVER_PEERS")]
    pub peers: Option<String>,
    /// Cluster mode: the node's Raft state (vote, log, snapshots)
    /// [default: a directory `raft` next to the data file].
    #[arg(long, env = "TASKSERVER_RAFT_DIR", global = true)]
    pub raft_dir: Option<PathBuf>,
    /// UNSAFE, for the course's demonstration only: store as the course
    /// warns against (read the whole file, add, write it back, no lock),
    /// so that concurrent requests lose tasks. Never with --node-id.
    #[arg(long, conflicts_with_all = ["node_id", "peers"])]
    pub unsafe_no_locking: bool,
    /// What to do instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Exit 0 when `GET /health` answers 200 (for Docker's HEALTHCHECK).
    Healthcheck {
        /// The health URL [default: http://127.0.0.1:<port of --bind>/health]
        #[arg(long)]
        url: Option<String>,
    },
    /// Print a cluster node's Raft log as JSON lines, one entry per line
    /// (reads the Raft directory; works while the node runs).
    RaftLog,
}

impl Cli {
    /// The Raft directory of cluster mode: `--raft-dir`, or `raft` next to
    /// the data file.
    pub fn raft_dir(&self) -> PathBuf {
        self.raft_dir.clone().unwrap_or_else(|| {
            let parent = self.data.parent().filter(|p| !p.as_os_str().is_empty());
            parent.unwrap_or(std::path::Path::new(".")).join("raft")
        })
    }

    /// The health URL of a server listening on `--bind`, on this machine.
    pub fn local_health_url(&self) -> String {
        let port = self.bind.rsplit(':').next().unwrap_or("9000");
        format!("http://127.0.0.1:{port}/health")
    }
}
