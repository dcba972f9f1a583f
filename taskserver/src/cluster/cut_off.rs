//! When a node counts itself cut off from the others, and so answers `503`
//! at once instead of holding a request for the whole [`super::WRITE_WAIT`].
//!
//! A request that reaches a node cut off from the others could only wait:
//! for a quorum that will not answer, for a leader whose answers do not
//! come back, for an election this node cannot take part in. Meanwhile the
//! other nodes may be taking writes. So each node watches how long it has
//! gone without hearing from the other side, and past the *silence limit*,
//! twice the longest election timeout (800 ms by default, long after the
//! next election would have begun), it answers `503` saying why, and the
//! client goes to another node with the same `Idempotency-Key`:
//!
//! - a leader that heard from no majority of the voters (openraft's
//!   `last_quorum_acked`): [`Cluster::leader_cut_off`];
//! - any other node that was sent nothing by any member: no entries or
//!   heartbeat from the leader (its packets dropped, or this node
//!   partitioned away), not even a vote request, as every election sends
//!   (it is alone, or the only one up): [`Cluster::cut_off_from`].
//!
//! A lone voter is never cut off: it is its own majority. Nothing here
//! decides anything about the log; it only stops waiting sooner. The cluster
//! campaign holds the writes after these faults to bounds (RELIABILITY.md).

use std::time::{Duration, Instant};

use super::Cluster;

impl Cluster {
    /// Why this node counts itself cut off now, if it does, `leader` being
    /// the leader it knows: as a leader ([`Cluster::leader_cut_off`]) or
    /// not ([`Cluster::cut_off_from`]). Cheap: checked before every attempt
    /// of every linearizable read; it copies nothing of Raft's metrics.
    pub(super) fn cut_off_now(&self, leader: Option<u64>) -> Option<String> {
        match leader {
            Some(leader) if leader == self.inner.me => self.leader_cut_off(),
            other => self.cut_off_from(other),
        }
    }

    /// Completes, with the reason, once this node counts itself cut off
    /// ([`Cluster::cut_off_now`]), whatever its role meanwhile. Wakes only
    /// when the silence limit would pass, or at every heartbeat interval
    /// while it leads.
    pub(super) async fn until_cut_off_now(&self) -> String {
        let every = Duration::from_millis(self.inner.raft.config().heartbeat_interval);
        loop {
            let leader = self.with_metrics(|m| m.current_leader);
            if let Some(why) = self.cut_off_now(leader) {
                return why;
            }
            let wake = if leader == Some(self.inner.me) {
                Some(Instant::now() + every)
            } else {
                self.cut_off_at()
            };
            match wake {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        }
    }

    /// Completes once this node, the leader, counts itself cut off
    /// ([`Cluster::leader_cut_off`]) or no longer leads. Checked at every
    /// heartbeat interval from one interval on (`propose` checked now).
    pub(super) async fn until_cut_off(&self) -> String {
        let every = Duration::from_millis(self.inner.raft.config().heartbeat_interval);
        let mut tick = tokio::time::interval_at((Instant::now() + every).into(), every);
        loop {
            tick.tick().await;
            if self.with_metrics(|m| m.current_leader) != Some(self.inner.me) {
                return "this node no longer leads".into();
            }
            if let Some(why) = self.leader_cut_off() {
                return why;
            }
        }
    }

    /// Whether this node is the only voter: its own majority, never cut off.
    fn lone_voter(&self) -> bool {
        self.with_metrics(|m| {
            let mut voters = m.membership_config.membership().voter_ids();
            voters.next() == Some(self.inner.me) && voters.next().is_none()
        })
    }

    /// Why this node, the leader, counts itself cut off from the others,
    /// which may have elected another leader: it has heard from no
    /// majority for longer than the silence limit. Never, for a lone voter
    /// (openraft's lease holds).
    pub(super) fn leader_cut_off(&self) -> Option<String> {
        use openraft::Instant as _;
        if self.lone_voter() {
            return None;
        }
        let silent = self.with_metrics(|m| m.last_quorum_acked.as_ref().map(|a| a.elapsed()))?;
        (silent > self.silence_limit()).then(|| {
            format!(
                "node {} leads but has heard from no majority of the voters for {} ms: \
                 it is cut off from them, and another node may lead now",
                self.inner.me,
                silent.as_millis()
            )
        })
    }

    /// The longest a node goes without hearing from the other side before
    /// it counts itself cut off: twice the longest election timeout, long
    /// after the next election would have begun.
    pub(super) fn silence_limit(&self) -> Duration {
        Duration::from_millis(2 * self.inner.raft.config().election_timeout_max)
    }

    /// Notes that another member sent this node a Raft request: entries or
    /// a heartbeat from the leader, a vote request, a forwarded write.
    pub(super) fn heard_from_peer(&self) {
        *self.inner.heard_from_peer.lock().unwrap() = Instant::now();
    }

    /// When this node, not the leader, will count itself cut off if no
    /// member sends it anything meanwhile; `None` for a lone voter.
    fn cut_off_at(&self) -> Option<Instant> {
        if self.lone_voter() {
            return None;
        }
        Some(*self.inner.heard_from_peer.lock().unwrap() + self.silence_limit())
    }

    /// Why this node, a follower of `leader` or a node that knows none,
    /// counts itself cut off from the others: no member sent it anything
    /// for longer than the silence limit, neither the leader's entries or
    /// heartbeats nor a vote request, which every election sends to all.
    /// (After a leader's death the others' elections keep reaching it, so
    /// that a failover is waited for, not refused.) Its writes and reads
    /// would only hang until they time out, while the other nodes may carry
    /// on. Never, for a lone voter.
    pub(super) fn cut_off_from(&self, leader: Option<u64>) -> Option<String> {
        let at = self.cut_off_at()?;
        let now = Instant::now();
        if now < at {
            return None;
        }
        let me = self.inner.me;
        let ms = (now - at + self.silence_limit()).as_millis();
        Some(match leader {
            Some(leader) => format!(
                "node {me} has been sent nothing by the leader {leader}, nor by any other \
                 member, for {ms} ms: it is cut off from them"
            ),
            None => format!(
                "node {me} knows no leader and has been sent nothing by any other member \
                 for {ms} ms: it is cut off from the others, or the only node up"
            ),
        })
    }

    /// Completes, with the reason, once this node no longer sees `leader`
    /// as the leader (it started an election, or heard of a newer leader),
    /// or counts itself cut off from it ([`Cluster::cut_off_from`]). Wakes
    /// only when the leader changes or the silence limit would pass (not
    /// at every change of Raft's metrics: many writes wait here at once).
    pub(super) async fn leader_gone(&self, leader: u64) -> String {
        let mut changes = self.inner.watched.clone();
        loop {
            changes.borrow_and_update();
            // Raft's own view, which the published leader follows a moment
            // later.
            if self.with_metrics(|m| m.current_leader) != Some(leader) {
                return format!("the leader {leader} went silent");
            }
            if let Some(why) = self.cut_off_from(Some(leader)) {
                return why;
            }
            let at = self.cut_off_at();
            tokio::select! {
                changed = changes.changed() => if changed.is_err() {
                    return "this node is shutting down".into();
                },
                () = async {
                    match at {
                        Some(at) => tokio::time::sleep_until(at.into()).await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
        }
    }
}
