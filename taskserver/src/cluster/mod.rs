//! Cluster mode: the data file replicated by Raft over three or more nodes.
//!
//! Each node keeps its own `tasks.json`, in the format of a single server,
//! as the state machine of a Raft log ([openraft], pinned, behind this
//! module: nothing outside it names an openraft type).
//!
//! # Guarantees
//!
//! - **`201` means committed and durable.** A write is answered only once
//!   its entry is in the log of a majority of voters, each of which had
//!   `fdatasync`ed it before saying so ([`log`]), and once it is applied to
//!   the answering node's own file ([`state_machine`]). The leader proposes
//!   the writes it has waiting together, as one entry ([`propose`]). A
//!   follower passes a write to the leader, in a batch with the others it
//!   has waiting ([`forward`]), and answers once it applied the entry
//!   itself.
//! - **No leader, no acknowledgement.** With no leader or no quorum, a write
//!   is answered `503` with `Retry-After` within [`WRITE_WAIT`]; never `201`
//!   for a task that could be lost. A node cut off from the others (a leader
//!   that heard from no majority, another node that no member sent anything,
//!   for twice the longest election timeout) answers `503` at once, so that
//!   the client goes to another node ([`cut_off`]).
//! - **One task, once, across failovers.** What could differ between nodes
//!   is decided before the entry enters the log: the leader stamps
//!   `creada_en`; ids and `Idempotency-Key` replays are decided by applying
//!   the log in order. So every node's file is byte-identical once it
//!   applied the same log, and a client's retry on a new leader, with the
//!   same key, is answered with the first task.
//! - **Linearizable reads.** `GET /tareas` and `GET /tareas/{id}` include
//!   every task acknowledged by any node before they began: the leader
//!   confirms it still leads (a round of heartbeats), a follower asks the
//!   leader how far the log is committed and waits until it applied that far.
//!   `?consistencia=local` skips that, for speed over freshness.
//! - **Only members speak Raft.** Raft's requests go to `/raft/...` on the
//!   ordinary port and must carry the cluster's secret and name the node
//!   they are for ([`network`], [`routes`]).
//! - **One cluster, created once.** See [`bootstrap`].
//!
//! # Layout
//!
//! - [`config`]: the node's id, the peers, the secret; checked at start-up.
//! - [`types`]: what the log carries; openraft's type configuration.
//! - [`log`]: the Raft log and vote, durable, in the Raft directory.
//! - [`state_machine`]: the node's data file, fed by the log; snapshots.
//! - [`network`]: Raft between nodes, over HTTP with the secret.
//! - [`propose`]: the leader's writes gathered into log entries.
//! - [`forward`]: a follower's writes passed to the leader in batches.
//! - [`cut_off`]: when a node counts itself cut off, and answers `503` at once.
//! - [`routes`]: the HTTP side: `/raft/...`, `/cluster`, membership calls.
//! - [`bootstrap`]: starting a node, creating the cluster exactly once.
//! - [`live`]: every member's status for the live page (`GET /live`).

pub mod bootstrap;
pub mod config;
mod cut_off;
mod forward;
mod live;
pub mod log;
pub mod network;
mod propose;
pub mod routes;
pub mod state_machine;
pub mod types;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use openraft::async_runtime::WatchReceiver as _;
use openraft::errors::ForwardToLeader;
use openraft::ReadPolicy;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::api::{Freshness, Tasks};
use crate::error::ApiError;
use crate::store::{Inserted, NewEntry, Page, Replica};
pub use config::ClusterConfig;
use network::PeerClient;
use types::{Applied, Proposed, Raft};

/// Longest a request waits for a leader, a quorum, or its entry to be
/// applied here, before it is answered `503`.
pub const WRITE_WAIT: Duration = Duration::from_secs(10);
/// Pause before asking again when there is no leader yet.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// A cheap-to-clone handle to this node of the cluster.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    /// This node's Raft.
    raft: Raft,
    /// This node's data file, for reads (the state machine writes it).
    replica: Replica,
    /// This node's id.
    me: u64,
    /// Speaks to the other nodes.
    peers: PeerClient,
    /// Proposes the writes this node, the leader, has waiting, together.
    proposer: propose::Proposer,
    /// Passes the writes that reach this node, a follower, to the leader.
    forwarder: forward::Forwarder,
    /// Gauges of `/metrics`, refreshed from Raft's own metrics.
    gauges: ClusterGauges,
    /// The cluster's id, once this node knows it (see [`bootstrap`]).
    identity: std::sync::Mutex<Option<String>>,
    /// A node that came back empty gives no vote until its log reaches
    /// this index (see [`bootstrap`]); 0 once it has.
    vote_after: std::sync::Mutex<Option<types::LogId>>,
    /// The file system of the Raft directory.
    fs: Arc<dyn crate::store::file::Fs>,
    /// The Raft directory.
    dir: std::path::PathBuf,
    /// The members' statuses the live page showed last.
    live_cache: live::Cache,
    /// When another member last sent this node a Raft request of any kind
    /// (its start, before the first): see [`cut_off`].
    heard_from_peer: std::sync::Mutex<Instant>,
    /// The index of the last entry applied here, as the state machine
    /// publishes it: what a forwarded write waits for.
    applied: tokio::sync::watch::Receiver<u64>,
    /// What requests wait on in Raft's metrics, published by
    /// `watch_metrics` when it changes: closed once Raft stopped.
    watched: tokio::sync::watch::Receiver<Watched>,
}

/// The part of Raft's metrics that requests (and the process) wait on,
/// published only when it changes. Raft's metrics change several times for
/// each batch of entries, and waiting on them woke every waiting write, and
/// the main thread, at each change.
#[derive(Default)]
struct Watched {
    /// The leader this node knows.
    leader: Option<u64>,
    /// Why Raft stopped on this node for good, once it did.
    stopped: Option<String>,
}

/// What `/metrics` shows of Raft.
#[derive(Default, Clone)]
struct ClusterGauges {
    term: Gauge,
    last_log_index: Gauge,
    committed: Gauge,
    applied: Gauge,
    is_leader: Gauge,
    /// Leader changes seen by this node.
    leader_changes: Counter,
    /// On the leader: the most entries a follower is behind.
    max_follower_lag: Gauge,
}

/// What a follower learns from the leader about where a read must wait:
/// the index committed when the leader last confirmed, with a quorum, that
/// it still leads. Every task acknowledged before the read began is at or
/// below it.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReadIndex {
    pub index: u64,
}

/// What became of a write proposed on a node.
#[derive(Debug, Serialize, Deserialize)]
pub enum Proposal {
    /// Committed and applied there.
    Done(Forwarded),
    /// That node is not the leader: nothing was appended.
    NotLeader,
    /// The leader could not be reached: nothing was sent.
    Unreachable(String),
    /// Proposed, but leadership moved before an answer: it may or may not
    /// be committed.
    Uncertain(String),
    /// That node leads but has not heard from a majority for longer than
    /// its lease: it is cut off, and another node may lead by now. The
    /// entry, if it was proposed, may or may not be committed.
    NoQuorum(String),
}

/// The leader's answer to a write.
#[derive(Debug, Serialize, Deserialize)]
pub struct Forwarded {
    /// What applying it answered.
    pub applied: Applied,
    /// Its log index, for the follower to wait until it applied it too.
    pub index: u64,
}

impl Cluster {
    /// This node's Raft handle, for the routes.
    fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// Raft's view of this node, now.
    fn metrics(&self) -> openraft::RaftMetrics<types::TypeConfig> {
        self.inner.raft.metrics().borrow_watched().clone()
    }

    /// Reads Raft's view of this node without copying it (what every
    /// request checks).
    fn with_metrics<R>(
        &self,
        read: impl FnOnce(&openraft::RaftMetrics<types::TypeConfig>) -> R,
    ) -> R {
        read(&self.inner.raft.metrics().borrow_watched())
    }

    /// Proposes `entry` on this node, if it is the leader, waiting at most
    /// until `deadline` for a quorum to take it (a leader cut off from the
    /// others would wait forever).
    async fn propose(&self, entry: NewEntry, deadline: Instant) -> Proposal {
        if self.with_metrics(|m| m.current_leader) != Some(self.inner.me) {
            // Certain: nothing was appended.
            return Proposal::NotLeader;
        }
        // Checked before proposing, not only while a proposal waits: a
        // cut-off leader's requests were held 5-6 s otherwise.
        if let Some(why) = self.leader_cut_off() {
            return Proposal::NoQuorum(why);
        }
        let creada_en = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let write = self.inner.proposer.propose(Proposed { entry, creada_en });
        let written = tokio::select! {
            written = tokio::time::timeout_at(deadline.into(), write) => written,
            why = self.until_cut_off() => return Proposal::NoQuorum(why),
        };
        match written {
            Ok(Ok(written)) => Proposal::Done(Forwarded {
                applied: written.applied,
                index: written.index,
            }),
            // The entry may have been appended before leadership moved, and
            // may yet be committed by the next leader.
            Ok(Err(why)) => Proposal::Uncertain(why),
            Err(_) => Proposal::Uncertain(format!(
                "no quorum took the entry within {} s",
                WRITE_WAIT.as_secs()
            )),
        }
    }

    /// A write, wherever the leader is: proposed here if this node leads,
    /// passed to the leader otherwise, retried while there is none, for at
    /// most [`WRITE_WAIT`]. A write whose fate is uncertain (leadership moved
    /// while it was in flight) is retried only when it has an
    /// `Idempotency-Key`, which makes the retry find the first one if it was
    /// committed after all; without a key it is answered `503`, since a
    /// retry could store it twice.
    async fn write(&self, entry: NewEntry) -> Result<Applied, ApiError> {
        let deadline = Instant::now() + WRITE_WAIT;
        let keyed = entry.idempotency_key.is_some();
        let uncertain = |why: String| {
            ApiError::Unavailable(format!(
                "the leader changed while the task was being stored, and whether it was is not known ({why}); \
                 send tasks with an Idempotency-Key, and a retry will find it if it was"
            ))
        };
        let mut last_problem;
        loop {
            self.running()?;
            let leader = self.with_metrics(|m| m.current_leader);
            // A follower cut off from the others: answered at once, so that
            // the client goes to another node (a retry with the key finds
            // the task). A cut-off leader's `propose` says so itself.
            if leader != Some(self.inner.me) {
                if let Some(why) = self.cut_off_from(leader) {
                    return Err(ApiError::Unavailable(format!(
                        "{why}; send the task to another node"
                    )));
                }
            }
            let outcome = match leader {
                Some(leader) if leader == self.inner.me => {
                    self.propose(entry.clone(), deadline).await
                }
                Some(leader) => match self.addr_of(leader) {
                    Some(addr) => self.forward(leader, &addr, &entry, deadline).await,
                    None => Proposal::NotLeader,
                },
                None => Proposal::NotLeader,
            };
            match outcome {
                Proposal::Done(done) => {
                    if leader != Some(self.inner.me) {
                        self.wait_applied(&done, keyed, deadline).await?;
                    }
                    return Ok(done.applied);
                }
                Proposal::NotLeader => last_problem = "no leader with a quorum is known".to_owned(),
                Proposal::Unreachable(why) => last_problem = why,
                Proposal::Uncertain(why) if !keyed => return Err(uncertain(why)),
                Proposal::Uncertain(why) => last_problem = why,
                // Cut off here: answered at once, so that the client goes
                // to another node (a retry with the key finds the task).
                Proposal::NoQuorum(why) if leader == Some(self.inner.me) => {
                    return Err(ApiError::Unavailable(format!(
                        "{why}; send the task to another node"
                    )))
                }
                Proposal::NoQuorum(why) if !keyed => return Err(uncertain(why)),
                Proposal::NoQuorum(why) => last_problem = why,
            }
            if Instant::now() + RETRY_PAUSE >= deadline {
                return Err(ApiError::Unavailable(format!(
                    "no leader with a quorum took the task within {} s ({last_problem})",
                    WRITE_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// Passes a write to the leader, in a batch with the others waiting
    /// ([`forward`]). Should this node stop seeing it as the leader
    /// meanwhile (it went silent: killed, stopped, cut off), or count
    /// itself cut off from it, the answer is not waited for: the write is
    /// uncertain, and retried through the next leader when it has a key.
    async fn forward(
        &self,
        leader: u64,
        addr: &str,
        entry: &NewEntry,
        deadline: Instant,
    ) -> Proposal {
        let passed = self
            .inner
            .forwarder
            .forward(leader, addr, entry.clone(), deadline);
        tokio::select! {
            proposal = passed => proposal,
            why = self.leader_gone(leader) => Proposal::Uncertain(format!(
                "{why} while it had the task"
            )),
        }
    }

    /// The address of member `id`, as the membership has it.
    fn addr_of(&self, id: u64) -> Option<String> {
        self.with_metrics(|m| {
            let node = m.membership_config.membership().get_node(&id)?;
            Some(node.addr.clone())
        })
    }

    /// Waits until this node applied a write the leader committed, as
    /// `201` means applied on the answering node. The write is stored
    /// whatever happens here; should this node not apply it in time, or
    /// count itself cut off meanwhile (the leader's messages no longer
    /// reach it: the entry's commit would not either), the answer is `503`,
    /// at once, saying so, so that the client asks another node instead of
    /// waiting out [`WRITE_WAIT`] here. (Seen in the cluster campaign: a
    /// one-way cut held the writes waiting here for the whole 10 s, then
    /// answered them `201` although this node had not applied them.)
    async fn wait_applied(
        &self,
        done: &Forwarded,
        keyed: bool,
        deadline: Instant,
    ) -> Result<(), ApiError> {
        let at_least = Instant::now() + Duration::from_millis(100);
        let why = tokio::select! {
            // Applied wins when both are ready: then there is no reason to refuse.
            biased;
            applied = self.applied_up_to(done.index, deadline.max(at_least)) => {
                if applied {
                    return Ok(());
                }
                format!("it was not applied here within {} s", WRITE_WAIT.as_secs())
            }
            why = self.until_cut_off_now() => why,
        };
        let stored = match &done.applied {
            Applied::Stored { id, .. } => format!(" as task {id}"),
            Applied::KeyConflict { .. } | Applied::Nothing => String::new(),
        };
        let then = if keyed {
            "send it again with the same Idempotency-Key to another node, which answers with it"
        } else {
            "read it on another node; sent again without an Idempotency-Key it would be stored twice"
        };
        Err(ApiError::Unavailable(format!(
            "the task is stored{stored}, committed by a majority of the voters, \
             but this node has not applied it ({why}); {then}"
        )))
    }

    /// Waits, until `deadline` at most, for the data file to hold every
    /// entry up to `index`; says whether it does. It follows the state
    /// machine's applied index, which moves once per batch applied, not
    /// Raft's metrics, which change several times per batch and which each
    /// waiting request would copy at every change. (Comparing indexes alone
    /// is enough: only committed entries are applied, and a committed index
    /// holds the same entry on every node.)
    async fn applied_up_to(&self, index: u64, deadline: Instant) -> bool {
        let mut applied = self.inner.applied.clone();
        let waited =
            tokio::time::timeout_at(deadline.into(), applied.wait_for(|a| *a >= index)).await;
        matches!(waited, Ok(Ok(_)))
    }

    /// Waits until a read started now would see every task acknowledged by
    /// any node before now.
    async fn read_barrier(&self) -> Result<(), ApiError> {
        let deadline = Instant::now() + WRITE_WAIT;
        let mut last_problem;
        loop {
            self.running()?;
            if let Some(why) = self.cut_off_now(self.with_metrics(|m| m.current_leader)) {
                return Err(ApiError::Unavailable(format!(
                    "{why}; ask another node, or read what this node holds with \
                     ?consistencia=local"
                )));
            }
            let confirmed = self.inner.raft.get_read_linearizer(ReadPolicy::ReadIndex);
            // A leader cut off from the others could wait for them forever.
            let Ok(confirmed) = tokio::time::timeout_at(deadline.into(), confirmed).await else {
                return Err(ApiError::Unavailable(format!(
                    "no quorum confirmed within {} s that this node still leads; \
                     ?consistencia=local reads what this node holds without asking",
                    WRITE_WAIT.as_secs()
                )));
            };
            match confirmed {
                Ok(linearizer) => {
                    let index = linearizer.read_log_id().index();
                    if self.applied_up_to(index, deadline).await {
                        return Ok(());
                    }
                    last_problem = format!("this node did not apply up to entry {index} in time");
                }
                Err(e) => match e.forward_to_leader() {
                    Some(ForwardToLeader {
                        leader_id: Some(leader),
                        leader_node: Some(node),
                        ..
                    }) if *leader != self.inner.me => {
                        match self.follower_read(*leader, &node.addr, deadline).await {
                            Ok(()) => return Ok(()),
                            Err(problem) => last_problem = problem,
                        }
                    }
                    Some(_) => {
                        last_problem = "the leader is not known yet, or has no quorum".into()
                    }
                    None => last_problem = e.to_string(),
                },
            }
            if Instant::now() + RETRY_PAUSE >= deadline {
                return Err(ApiError::Unavailable(format!(
                    "no leader confirmed within {} s how far the log is committed ({last_problem}); \
                     ?consistencia=local reads what this node holds without asking",
                    WRITE_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// A follower's linearizable read: the leader says how far the log is
    /// committed; this node waits until it applied that far.
    async fn follower_read(
        &self,
        leader: u64,
        addr: &str,
        deadline: Instant,
    ) -> Result<(), String> {
        let left = deadline.saturating_duration_since(Instant::now());
        let call = self.inner.peers.call(leader, addr, "read-index", &(), left);
        let index: Result<Result<ReadIndex, String>, _> = tokio::select! {
            index = call => index,
            why = self.leader_gone(leader) => return Err(why),
        };
        let index = match index {
            Ok(Ok(index)) => index,
            Ok(Err(refused)) => return Err(format!("the leader {leader} refused: {refused}")),
            Err(e) => return Err(format!("the leader {leader} did not answer: {e}")),
        };
        if self.applied_up_to(index.index, deadline).await {
            Ok(())
        } else {
            Err("this node did not catch up with the leader in time".into())
        }
    }

    /// The leader's side of a follower's read: where the read must wait.
    async fn read_index(&self) -> Result<ReadIndex, String> {
        let linearizer = self
            .inner
            .raft
            .get_read_linearizer(ReadPolicy::ReadIndex)
            .await
            .map_err(|e| e.to_string())?;
        Ok(ReadIndex {
            index: linearizer.read_log_id().index(),
        })
    }

    /// The state of this node, as `GET /cluster` shows it.
    pub fn status(&self) -> Status {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        let learners: Vec<u64> = membership.learner_ids().collect();
        let members: BTreeMap<String, String> = membership
            .nodes()
            .map(|(id, node)| (id.to_string(), node.addr.clone()))
            .collect();
        let replication = m.replication.as_ref().map(|r| {
            r.iter()
                .filter(|(id, _)| **id != self.inner.me)
                .map(|(id, matched)| (id.to_string(), matched.map(|l| l.index())))
                .collect()
        });
        Status {
            node_id: self.inner.me,
            role: role(&m.state),
            term: m.current_term,
            leader_id: m.current_leader,
            leader_addr: m
                .current_leader
                .and_then(|l| members.get(&l.to_string()).cloned()),
            last_log_index: m.last_log_index,
            committed: m.local_committed.map(|l| l.index()),
            applied: m.last_applied.map(|l| l.index()),
            snapshot: m.snapshot.map(|l| l.index()),
            voters,
            learners,
            members,
            replication,
        }
    }

    /// Publishes what requests wait on to `publish` (`Inner::watched`),
    /// and counts and logs the changes of leader. It watches openraft's
    /// server metrics, which change with the role, the vote or the
    /// membership, not at every entry; they close when Raft stops, and
    /// why it stopped is published then.
    fn watch_metrics(&self, publish: tokio::sync::watch::Sender<Watched>) {
        let cluster = self.clone();
        let mut server = self.inner.raft.server_metrics();
        tokio::spawn(async move {
            let mut leader = None;
            loop {
                let now = server.borrow_watched().current_leader;
                if now != leader {
                    if leader.is_some() || now.is_some() {
                        cluster.inner.gauges.leader_changes.inc();
                        let term = cluster.with_metrics(|m| m.current_term);
                        tracing::info!(leader = ?now, term, "the leader changed");
                    }
                    leader = now;
                }
                publish.send_if_modified(|was| {
                    let changed = was.leader != leader;
                    was.leader = leader;
                    changed
                });
                if server.changed().await.is_err() {
                    let stopped = cluster.with_metrics(|m| match &m.running_state {
                        Err(fatal) => fatal.to_string(),
                        Ok(()) => "Raft stopped".to_owned(),
                    });
                    publish.send_modify(|was| was.stopped = Some(stopped));
                    return;
                }
            }
        });
    }

    /// Prints the Raft log in `dir` as JSON lines (`taskserver raft-log`).
    pub fn print_log(dir: &std::path::Path, mut out: impl std::io::Write) -> std::io::Result<()> {
        for entry in log::read_entries(&crate::store::file::OsFs, dir)? {
            serde_json::to_writer(&mut out, &types::describe(&entry))?;
            writeln!(out)?;
        }
        Ok(())
    }

    /// A refusal of a vote (or pre-vote) while this node, back empty, has
    /// not caught up with what was committed without it: unless the
    /// candidate's last log id is at least that committed one, and so holds
    /// it and everything before (Raft's log matching). Without this, the
    /// empty node could help elect a candidate lacking a task it had helped
    /// commit before it lost its disk. `None`: let Raft decide.
    fn not_voting_yet(
        &self,
        candidate_last: Option<&types::LogId>,
    ) -> Option<openraft::raft::VoteResponse<types::TypeConfig>> {
        let mut after = self
            .inner
            .vote_after
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let committed = (*after)?;
        let m = self.metrics();
        if m.last_log_index.unwrap_or(0) >= committed.index() {
            *after = None;
            tracing::info!(
                index = committed.index(),
                "caught up with what was committed: this node votes again"
            );
            return None;
        }
        if candidate_last.is_some_and(|last| *last >= committed) {
            return None;
        }
        let last = m.last_applied.max(m.snapshot);
        Some(openraft::raft::VoteResponse::new(m.vote, last, false))
    }

    /// `Err` once Raft stopped on this node for good: nothing that needs
    /// it can succeed here any more.
    fn running(&self) -> Result<(), ApiError> {
        self.with_metrics(|m| match &m.running_state {
            Ok(()) => Ok(()),
            Err(fatal) => Err(ApiError::Unhealthy(format!(
                "Raft stopped on this node ({fatal}); the process exits so that it can be \
                 restarted, and catches up then: send the request to another node (with the same \
                 Idempotency-Key, for a POST)"
            ))),
        })
    }

    /// Completes when Raft stopped on this node for good (its log or data
    /// file could not be written, say), with the reason. Until then, every
    /// request that needs Raft would only wait and fail.
    pub async fn failed(&self) -> String {
        let mut watched = self.inner.watched.clone();
        loop {
            if let Some(fatal) = &watched.borrow_and_update().stopped {
                return fatal.clone();
            }
            if watched.changed().await.is_err() {
                return "Raft stopped".to_owned();
            }
        }
    }

    /// Stops Raft (at shutdown).
    pub async fn shutdown(&self) {
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "Raft did not stop cleanly");
        }
    }
}

/// `GET /cluster`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Status {
    pub node_id: u64,
    pub role: &'static str,
    pub term: u64,
    pub leader_id: Option<u64>,
    pub leader_addr: Option<String>,
    pub last_log_index: Option<u64>,
    pub committed: Option<u64>,
    pub applied: Option<u64>,
    pub snapshot: Option<u64>,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub members: BTreeMap<String, String>,
    /// On the leader: each follower's matched log index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication: Option<BTreeMap<String, Option<u64>>>,
}

fn role(state: &openraft::ServerState) -> &'static str {
    match state {
        openraft::ServerState::Leader => "leader",
        openraft::ServerState::Candidate => "candidate",
        openraft::ServerState::Learner => "learner",
        openraft::ServerState::Follower => "follower",
        openraft::ServerState::Shutdown => "shutdown",
    }
}

impl Tasks for Cluster {
    async fn insert(&self, entry: NewEntry) -> Result<Inserted, ApiError> {
        match self.write(entry).await?.into_result() {
            Some(answer) => Ok(answer?),
            None => Err(ApiError::Unavailable(
                "the entry was applied without an answer (this node restarted meanwhile)".into(),
            )),
        }
    }

    async fn page(&self, after: u64, limit: usize, fresh: Freshness) -> Result<Page, ApiError> {
        if fresh == Freshness::Linearizable {
            self.read_barrier().await?;
        }
        Ok(self.inner.replica.page(after, limit).await?)
    }

    async fn get(&self, id: u64, fresh: Freshness) -> Result<Option<Bytes>, ApiError> {
        if fresh == Freshness::Linearizable {
            self.read_barrier().await?;
        }
        Ok(self.inner.replica.get(id).await?)
    }

    async fn live(&self) -> Result<crate::api::Live, ApiError> {
        Cluster::live(self).await
    }

    async fn health(&self) -> Result<serde_json::Value, ApiError> {
        self.running()?;
        let m = self.metrics();
        let tareas = self.inner.replica.count().await?;
        Ok(serde_json::json!({
            "status": "ok",
            "tareas": tareas,
            "node_id": self.inner.me,
            "role": role(&m.state),
            "leader_id": m.current_leader,
        }))
    }

    /// Sets the gauges from Raft's metrics, at each scrape.
    fn refresh_metrics(&self) {
        let g = &self.inner.gauges;
        self.with_metrics(|m| {
            g.term.set(m.current_term as i64);
            g.last_log_index.set(m.last_log_index.unwrap_or(0) as i64);
            g.committed
                .set(m.local_committed.map_or(0, |l| l.index()) as i64);
            g.applied
                .set(m.last_applied.map_or(0, |l| l.index()) as i64);
            g.is_leader
                .set(i64::from(m.current_leader == Some(self.inner.me)));
            let last = m.last_log_index.unwrap_or(0);
            let lag = m
                .replication
                .as_ref()
                .and_then(|r| {
                    r.values()
                        .map(|matched| last.saturating_sub(matched.map_or(0, |l| l.index())))
                        .max()
                })
                .unwrap_or(0);
            g.max_follower_lag.set(lag as i64);
        });
    }

    fn register_metrics(&self, registry: &mut Registry) {
        self.inner.replica.stats().register(registry);
        let g = &self.inner.gauges;
        registry.register("raft_term", "The Raft term this node is in", g.term.clone());
        registry.register(
            "raft_last_log_index",
            "Index of the last entry in this node's log",
            g.last_log_index.clone(),
        );
        registry.register(
            "raft_committed_index",
            "Index of the last entry this node knows committed",
            g.committed.clone(),
        );
        registry.register(
            "raft_applied_index",
            "Index of the last entry applied to this node's data file",
            g.applied.clone(),
        );
        registry.register(
            "raft_is_leader",
            "1 on the leader, 0 elsewhere",
            g.is_leader.clone(),
        );
        registry.register(
            "raft_leader_changes",
            "Changes of leader this node saw",
            g.leader_changes.clone(),
        );
        registry.register(
            "raft_max_follower_lag",
            "On the leader: entries the furthest follower is behind",
            g.max_follower_lag.clone(),
        );
    }
}
