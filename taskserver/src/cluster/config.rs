//! Cluster mode's configuration: who this node is, who the others are, and
//! the secret they share, checked before anything starts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The environment variable of the secret the nodes share.
pub const SECRET_ENV: &str = "TASKSERVER_CLUSTER_SECRET";
/// Shortest secret accepted.
const MIN_SECRET: usize = 16;

/// A checked cluster configuration.
#[derive(Clone)]
pub struct ClusterConfig {
    /// This node's id.
    pub me: u64,
    /// The initial voters: id to `host:port`.
    pub peers: BTreeMap<u64, String>,
    /// The node's Raft directory.
    pub raft_dir: PathBuf,
    /// The node's data file.
    pub data: PathBuf,
    /// What the nodes share to speak Raft to one another. Never logged.
    pub secret: Arc<str>,
    /// Raft's timing.
    pub timing: Timing,
    /// A snapshot is built every this many entries; the log keeps a tenth
    /// of that behind it, and drops the rest.
    pub snapshot_every: u64,
}

/// Entries between two snapshots, unless `TASKSERVER_RAFT_SNAPSHOT_EVERY`
/// says otherwise.
pub const SNAPSHOT_EVERY: u64 = 10_000;

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("me", &self.me)
            .field("peers", &self.peers)
            .field("raft_dir", &self.raft_dir)
            .field("data", &self.data)
            .field("secret", &"(hidden)")
            .finish()
    }
}

/// Raft's timing, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How often a leader tells followers it is there.
    pub heartbeat_ms: u64,
    /// A follower that hears nothing for a random time between these two
    /// stands for election.
    pub election_min_ms: u64,
    pub election_max_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        // Measured by hand on loopback, kill -9 of the leader under load
        // to the slowest request: 300-600 ms gave 1.05-1.11 s, 200-400 ms
        // 0.67-0.84 s, 150-300 ms 0.54-0.70 s. 200-400 keeps a margin for
        // a loaded machine; bench/RESULTS.md has its failover over 20
        // kills (752 ms median, 856 ms worst, in the run of 2026-12-01).
        Timing {
            heartbeat_ms: 50,
            election_min_ms: 200,
            election_max_ms: 400,
        }
    }
}

impl Timing {
    /// The default, or `TASKSERVER_RAFT_HEARTBEAT_MS` and
    /// `TASKSERVER_RAFT_ELECTION_MS` (`MIN-MAX`) when set.
    pub fn from_env() -> Result<Timing, ConfigError> {
        let mut timing = Timing::default();
        if let Ok(text) = std::env::var("TASKSERVER_RAFT_HEARTBEAT_MS") {
            timing.heartbeat_ms = text.trim().parse().map_err(|_| {
                ConfigError::BadTiming(format!("TASKSERVER_RAFT_HEARTBEAT_MS={text}"))
            })?;
        }
        if let Ok(text) = std::env::var("TASKSERVER_RAFT_ELECTION_MS") {
            let bad = || ConfigError::BadTiming(format!("TASKSERVER_RAFT_ELECTION_MS={text}"));
            let (min, max) = text.split_once('-').ok_or_else(bad)?;
            timing.election_min_ms = min.trim().parse().map_err(|_| bad())?;
            timing.election_max_ms = max.trim().parse().map_err(|_| bad())?;
        }
        if timing.heartbeat_ms == 0
            || timing.election_min_ms <= timing.heartbeat_ms
            || timing.election_max_ms <= timing.election_min_ms
        {
            return Err(ConfigError::BadTiming(format!(
                "heartbeat {} ms, election {}-{} ms",
                timing.heartbeat_ms, timing.election_min_ms, timing.election_max_ms
            )));
        }
        Ok(timing)
    }
}

/// [`SNAPSHOT_EVERY`], or `TASKSERVER_RAFT_SNAPSHOT_EVERY` when set.
fn snapshot_every_from_env() -> Result<u64, ConfigError> {
    let Ok(text) = std::env::var("TASKSERVER_RAFT_SNAPSHOT_EVERY") else {
        return Ok(SNAPSHOT_EVERY);
    };
    match text.trim().parse::<u64>() {
        Ok(n) if n >= 10 => Ok(n),
        _ => Err(ConfigError::BadSnapshotEvery(text)),
    }
}

/// What is wrong with a cluster configuration, and what to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--peers (TASKSERVER_PEERS) is missing: cluster mode (--node-id) needs the initial voters, such as 1=node1:9000,2=node2:9000,3=node3:9000")]
    NoPeers,
    #[error("--peers has {0:?}, which is not id=host:port: write it as 1=node1:9000,2=node2:9000,3=node3:9000")]
    BadPeer(String),
    #[error("--peers names node {0} twice: give every node its own id")]
    DuplicateId(u64),
    #[error(
        "--peers gives {addr} to nodes {first} and {second}: every node needs its own address"
    )]
    DuplicateAddr {
        addr: String,
        first: u64,
        second: u64,
    },
    #[error("this node's id {me} (--node-id) is not in --peers ({ids}): add {me}=<its host:port> to --peers, or give this node one of those ids")]
    NotAPeer { me: u64, ids: String },
    #[error("{SECRET_ENV} is not set: the nodes of a cluster share a secret to speak Raft to one another; set the same one, of at least {MIN_SECRET} characters, on every node (for example: openssl rand -hex 16)")]
    NoSecret,
    #[error(
        "{SECRET_ENV} is {0} characters long; use at least {MIN_SECRET}, the same on every node"
    )]
    ShortSecret(usize),
    #[error("TASKSERVER_RAFT_SNAPSHOT_EVERY={0} is not usable: give the number of log entries between two snapshots, 10 or more (the default is {SNAPSHOT_EVERY})")]
    BadSnapshotEvery(String),
    #[error("Raft's timing {0} is not usable: the election timeout must be a range MIN-MAX of milliseconds with MIN below MAX and above the heartbeat, such as TASKSERVER_RAFT_HEARTBEAT_MS=50 TASKSERVER_RAFT_ELECTION_MS=300-600")]
    BadTiming(String),
}

impl ClusterConfig {
    /// Checks the flags and the environment's secret.
    pub fn new(
        me: u64,
        peers: Option<&str>,
        raft_dir: PathBuf,
        data: PathBuf,
        secret: Option<String>,
    ) -> Result<ClusterConfig, ConfigError> {
        let peers = parse_peers(peers.ok_or(ConfigError::NoPeers)?)?;
        if !peers.contains_key(&me) {
            let ids = peers
                .keys()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ConfigError::NotAPeer { me, ids });
        }
        let secret = secret
            .filter(|s| !s.is_empty())
            .ok_or(ConfigError::NoSecret)?;
        if secret.chars().count() < MIN_SECRET {
            return Err(ConfigError::ShortSecret(secret.chars().count()));
        }
        Ok(ClusterConfig {
            me,
            peers,
            raft_dir,
            data,
            secret: secret.into(),
            timing: Timing::from_env()?,
            snapshot_every: snapshot_every_from_env()?,
        })
    }

    /// This node's address.
    pub fn my_addr(&self) -> &str {
        &self.peers[&self.me]
    }
}

/// `1=node1:9000,2=node2:9000` as a map.
pub fn parse_peers(text: &str) -> Result<BTreeMap<u64, String>, ConfigError> {
    let mut peers: BTreeMap<u64, String> = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || ConfigError::BadPeer(part.to_owned());
        let (id, addr) = part.split_once('=').ok_or_else(bad)?;
        let id: u64 = id
            .trim()
            .parse()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(bad)?;
        let addr = addr.trim();
        let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(bad());
        }
        if let Some((&first, _)) = peers.iter().find(|(_, a)| a.as_str() == addr) {
            return Err(ConfigError::DuplicateAddr {
                addr: addr.to_owned(),
                first,
                second: id,
            });
        }
        if peers.insert(id, addr.to_owned()).is_some() {
            return Err(ConfigError::DuplicateId(id));
        }
    }
    if peers.is_empty() {
        return Err(ConfigError::NoPeers);
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(me: u64, peers: &str, secret: &str) -> Result<ClusterConfig, ConfigError> {
        ClusterConfig::new(me, Some(peers), "r".into(), "d".into(), Some(secret.into()))
    }

    const SECRET: &str = "0123456789abcdef";

    #[test]
    fn a_good_configuration_is_read() {
        let c = config(2, "1=a:9000, 2=b:9000,3=c:9001", SECRET).unwrap();
        assert_eq!(c.my_addr(), "b:9000");
        assert_eq!(c.peers.len(), 3);
        assert!(
            !format!("{c:?}").contains(SECRET),
            "the secret is never printed"
        );
    }

    #[test]
    fn every_mistake_says_what_to_change() {
        let cases = [
            (config(1, "1=a:9000,1=b:9000", SECRET), "names node 1 twice"),
            (
                config(1, "1=a:9000,2=a:9000", SECRET),
                "every node needs its own address",
            ),
            (
                config(4, "1=a:9000,2=b:9000", SECRET),
                "is not in --peers (1, 2)",
            ),
            (config(1, "1=a", SECRET), "not id=host:port"),
            (config(1, "x=a:9000", SECRET), "not id=host:port"),
            (config(1, "1=a:9000", ""), "is not set"),
            (config(1, "1=a:9000", "short"), "at least 16"),
        ];
        for (result, says) in cases {
            let message = result.unwrap_err().to_string();
            assert!(message.contains(says), "{message}");
        }
    }
}
