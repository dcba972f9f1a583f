//! Starting a node, and creating the cluster exactly once.
//!
//! # The rules
//!
//! 1. A node whose Raft directory holds a log or a vote belongs to a
//!    cluster already: it starts and rejoins. It never initializes again.
//! 2. A node with an empty Raft directory asks the other initial voters
//!    (`/raft/status`). If any of them belongs to a cluster, this node is a
//!    new or wiped member: it starts empty and waits for the leader to send
//!    it the log (or a snapshot). So that it cannot vote a second time in a
//!    term it voted in before it was wiped, it first records the highest
//!    term the others report, with the leader they follow in it (or a vote
//!    for itself, when they know none): a vote it will not give again.
//! 3. Only the initial voter with the smallest id creates the cluster, and
//!    only when its own directory is empty, a majority of the initial voters
//!    answer, and none of them belongs to a cluster yet.
//! 4. The creator gives the cluster a random id, kept in each node's
//!    `node.json` as the nodes learn it. A node whose directory belongs to
//!    another node, or whose cluster id differs from its peers', refuses to
//!    start: it was given another cluster's data.
//! 5. A node back empty (rule 2) also learns the highest log id its peers
//!    know committed. Until its own log reaches it, it grants a vote only to
//!    a candidate whose last log id is at least that one: it may have helped
//!    commit those entries before it lost its disk, and must not now help
//!    elect a leader without them. A candidate that has them is safe to
//!    elect, so a leader's death while this node catches up does not stop
//!    the cluster.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use openraft::storage::RaftLogStorage;
use openraft::{Config, SnapshotPolicy};
use serde::{Deserialize, Serialize};

use super::config::ClusterConfig;
use super::log::{load_json, write_json, LogStore};
use super::network::{Network, PeerClient};
use super::routes::PeerStatus;
use super::state_machine::StateMachine;
use super::types::{Member, Raft, Vote};
use super::{Cluster, ClusterGauges, Inner};
use crate::store::file::{Fs, OsFs};
use crate::store::Replica;

/// `node.json` in the Raft directory: whose it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Identity {
    node_id: u64,
    cluster_id: Option<String>,
}

/// Why a node cannot start, and what to change.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the Raft directory {dir}: {source}")]
    Io { dir: String, source: io::Error },
    #[error("cannot open the data file: {0}")]
    Data(#[from] crate::store::StoreError),
    #[error("the Raft directory {dir} belongs to node {owner}, not to node {me}: give this node its own directory (--raft-dir), or its own id (--node-id)")]
    OtherNode { dir: String, owner: u64, me: u64 },
    #[error("{data} holds tasks applied from a Raft log (up to entry {index}), but the Raft directory {dir} is empty: restore the Raft directory, or move {data} away so that the node catches up from the others")]
    DataWithoutLog {
        data: String,
        dir: String,
        index: u64,
    },
    #[error("this node's data belongs to cluster {mine}, but node {peer} belongs to cluster {theirs}: this node was given another cluster's data; move its Raft directory and data file away to join this cluster as a new node")]
    OtherCluster {
        mine: String,
        theirs: String,
        peer: u64,
    },
    #[error("openraft refused its configuration: {0}")]
    Config(String),
    #[error("Raft did not start: {0}")]
    Raft(String),
}

fn io_error(dir: &std::path::Path) -> impl FnOnce(io::Error) -> StartError + '_ {
    move |source| StartError::Io {
        dir: dir.display().to_string(),
        source,
    }
}

/// Starts this node: opens its log and data file, joins or creates the
/// cluster as the rules say.
pub async fn start(config: ClusterConfig) -> Result<Cluster, StartError> {
    let fs: Arc<dyn Fs> = Arc::new(OsFs);
    let dir = config.raft_dir.clone();
    let (log, replica, identity) = {
        let (fs, dir, data) = (fs.clone(), dir.clone(), config.data.clone());
        tokio::task::spawn_blocking(move || -> Result<_, StartError> {
            let log = LogStore::open(fs.clone(), &dir).map_err(io_error(&dir))?;
            let identity: Option<Identity> =
                load_json(&*fs, &dir.join("node.json")).map_err(io_error(&dir))?;
            let replica = Replica::open(data)?;
            Ok((log, replica, identity))
        })
        .await
        .map_err(|e| StartError::Raft(e.to_string()))??
    };
    if let Some(identity) = &identity {
        if identity.node_id != config.me {
            return Err(StartError::OtherNode {
                dir: dir.display().to_string(),
                owner: identity.node_id,
                me: config.me,
            });
        }
    }
    if log.is_empty() {
        if let Some(applied) = replica.applied() {
            return Err(StartError::DataWithoutLog {
                data: config.data.display().to_string(),
                dir: dir.display().to_string(),
                index: applied.index,
            });
        }
    }
    let peers = PeerClient::new(config.secret.clone());
    // Only an empty node needs to know, before it starts, whether the
    // cluster exists (rule 2); any node checks its cluster id (rule 4).
    let rounds = if log.is_empty() { 3 } else { 1 };
    let statuses = ask_peers(&peers, &config, rounds).await;
    check_cluster(identity.as_ref(), &statuses)?;
    let mut log = log;
    let mut vote_after = None;
    if log.is_empty() {
        let newest = statuses
            .values()
            .filter(|s| s.initialized)
            .max_by_key(|s| (s.term, s.leader_id.is_some()));
        if let Some(newest) = newest {
            // Rule 2: a new or wiped member. No second vote in a known term.
            let term = newest.term;
            let vote = match newest.leader_id {
                Some(leader) => Vote::new_committed(term, leader),
                None => Vote::new(term, config.me),
            };
            log.save_vote(&vote).await.map_err(io_error(&dir))?;
            vote_after = statuses.values().filter_map(|s| s.committed).max();
            let catch_up_to = vote_after.map_or(0, |c| c.index());
            tracing::info!(term, catch_up_to, "this node's Raft directory is empty and the cluster exists: joining it as a new member; until its log reaches what the others committed, it votes only for a candidate that holds all of that");
        }
    }
    let state_machine = {
        let (fs, dir, replica) = (fs.clone(), dir.clone(), replica.clone());
        tokio::task::spawn_blocking(move || StateMachine::open(fs, dir, replica))
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?
            .map_err(io_error(&config.raft_dir))?
    };
    let applied = state_machine.applied_index();
    let (publish, watched) = tokio::sync::watch::channel(super::Watched::default());
    let raft_config = raft_config(&config)?;
    let network = Network {
        client: peers.clone(),
        me: config.me,
    };
    let raft = Raft::new(config.me, raft_config, network, log, state_machine)
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
    let cluster = Cluster {
        inner: Arc::new(Inner {
            proposer: super::propose::Proposer::start(raft.clone()),
            raft,
            replica,
            me: config.me,
            forwarder: super::forward::Forwarder::start(peers.clone()),
            peers,
            gauges: ClusterGauges::default(),
            identity: std::sync::Mutex::new(identity.and_then(|i| i.cluster_id)),
            vote_after: std::sync::Mutex::new(vote_after),
            fs,
            dir,
            live_cache: Default::default(),
            heard_from_peer: std::sync::Mutex::new(std::time::Instant::now()),
            applied,
            watched,
        }),
    };
    cluster.watch_metrics(publish);
    tokio::spawn(cluster.clone().settle_identity(config));
    Ok(cluster)
}

/// openraft's configuration for this node.
fn raft_config(config: &ClusterConfig) -> Result<Arc<Config>, StartError> {
    let timing = config.timing;
    let raft = Config {
        cluster_name: "taskserver".into(),
        heartbeat_interval: timing.heartbeat_ms,
        election_timeout_min: timing.election_min_ms,
        election_timeout_max: timing.election_max_ms,
        // A node cut off and back asks before it disrupts the leader.
        enable_pre_vote: Some(true),
        // A restarted leader stands for election like anyone else.
        enable_leader_restore: Some(false),
        // A wiped follower comes back with less than the leader knew it
        // had: the leader starts it over (safe, as it does not vote until it
        // has caught up: rule 2) rather than stopping.
        allow_log_reversion: Some(true),
        // Snapshot every 10,000 entries (by default) and keep a tenth of
        // that behind it, so that the log stays bounded however long the
        // cluster runs, and a follower a little behind needs no snapshot.
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
        max_in_snapshot_log_to_keep: config.snapshot_every / 10,
        // A snapshot is the data file: give its transfer time.
        install_snapshot_timeout: 120_000,
        ..Config::default()
    };
    raft.validate()
        .map(Arc::new)
        .map_err(|e| StartError::Config(e.to_string()))
}

/// What the other initial voters say, trying `rounds` times a second apart
/// for those that do not answer yet (they may be starting too).
async fn ask_peers(
    peers: &PeerClient,
    config: &ClusterConfig,
    rounds: u32,
) -> BTreeMap<u64, PeerStatus> {
    let mut answered = BTreeMap::new();
    for round in 0..rounds {
        for (&id, addr) in &config.peers {
            if id == config.me || answered.contains_key(&id) {
                continue;
            }
            let status: Result<PeerStatus, _> = peers
                .call(id, addr, "status", &(), Duration::from_secs(1))
                .await;
            if let Ok(status) = status {
                answered.insert(id, status);
            }
        }
        if answered.len() + 1 == config.peers.len() || round + 1 == rounds {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    answered
}

/// Rule 4: this node's cluster id must be its peers'.
fn check_cluster(
    identity: Option<&Identity>,
    statuses: &BTreeMap<u64, PeerStatus>,
) -> Result<(), StartError> {
    let Some(mine) = identity.and_then(|i| i.cluster_id.as_ref()) else {
        return Ok(());
    };
    for (&peer, status) in statuses {
        if let Some(theirs) = &status.cluster_id {
            if theirs != mine {
                return Err(StartError::OtherCluster {
                    mine: mine.clone(),
                    theirs: theirs.clone(),
                    peer,
                });
            }
        }
    }
    Ok(())
}

/// A new cluster's id: 16 random bytes, in hex.
fn new_cluster_id() -> String {
    let mut bytes = [0u8; 16];
    if let Ok(mut random) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut random, &mut bytes);
    }
    if bytes == [0; 16] {
        // No /dev/urandom: the time and the process make it unique enough.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes = (now ^ u128::from(std::process::id()) << 64).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Cluster {
    /// What `/raft/status` answers.
    pub(super) async fn peer_status(&self) -> PeerStatus {
        let initialized = self.inner.raft.is_initialized().await.unwrap_or(false);
        let m = self.metrics();
        PeerStatus {
            node_id: self.inner.me,
            initialized,
            term: m.current_term,
            leader_id: m.current_leader,
            committed: m.local_committed,
            cluster_id: self.cluster_id(),
        }
    }

    fn cluster_id(&self) -> Option<String> {
        self.inner
            .identity
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records the cluster id in `node.json`.
    async fn keep_identity(&self, cluster_id: String) -> io::Result<()> {
        *self
            .inner
            .identity
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(cluster_id.clone());
        let (fs, path, identity) = (
            self.inner.fs.clone(),
            self.inner.dir.join("node.json"),
            Identity {
                node_id: self.inner.me,
                cluster_id: Some(cluster_id),
            },
        );
        tokio::task::spawn_blocking(move || write_json(&*fs, &path, &identity)).await?
    }

    /// Rules 3 and 4, in the background: until this node knows its cluster
    /// id, ask the peers; create the cluster if this node is the one to.
    async fn settle_identity(self, config: ClusterConfig) {
        let creator = config.peers.keys().next().copied() == Some(config.me);
        let quorum = config.peers.len() / 2 + 1;
        let mut warned = false;
        while self.cluster_id().is_none() {
            let statuses = ask_peers(&self.inner.peers, &config, 1).await;
            if let Some(id) = statuses.values().find_map(|s| s.cluster_id.clone()) {
                if let Err(e) = self.keep_identity(id.clone()).await {
                    tracing::error!(error = %e, "cannot write node.json");
                }
                tracing::info!(cluster = %id, "this node belongs to cluster {id}");
                break;
            }
            let initialized_here = self.inner.raft.is_initialized().await.unwrap_or(true);
            let initialized_there = statuses.values().any(|s| s.initialized);
            if creator && !initialized_here && !initialized_there && statuses.len() + 1 >= quorum {
                let id = new_cluster_id();
                if let Err(e) = self.keep_identity(id.clone()).await {
                    tracing::error!(error = %e, "cannot write node.json; not creating the cluster");
                } else {
                    let voters: BTreeMap<u64, Member> = config
                        .peers
                        .iter()
                        .map(|(&id, addr)| (id, Member { addr: addr.clone() }))
                        .collect();
                    match self.inner.raft.initialize(voters).await {
                        Ok(()) => {
                            tracing::info!(cluster = %id, peers = ?config.peers, "created the cluster")
                        }
                        Err(e) => tracing::warn!(error = %e, "did not create the cluster"),
                    }
                    break;
                }
            }
            if !warned && statuses.len() + 1 < quorum {
                tracing::info!(
                    answered = statuses.len(),
                    "waiting for a majority of the initial voters to answer before the cluster can start"
                );
                warned = true;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}
