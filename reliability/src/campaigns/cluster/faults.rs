//! The faults of the cluster campaign, each done to a running cluster and
//! undone, with what the cluster must do in between.

use std::time::{Duration, Instant};

use testkit::cluster::LocalCluster;
use testkit::wait_until;

/// How long a fault may keep the cluster from electing a leader and taking
/// writes again before that is a failure.
pub const RECOVERY: Duration = Duration::from_secs(20);
/// The longest writes may stop after the leader is killed, paused or cut
/// off and still pass: past the slowest seen in a full run (5.1 s, before
/// a cut-off leader answered `503` at every attempt; 1.6 s since), short
/// of a write's 10 s wait, so that writes stuck
/// until some timeout, instead of moving to the new leader, fail the case
/// (as batched forwarding once did after a partition).
const WRITES_BACK: Duration = Duration::from_secs(8);
/// The longest writes may stop while a follower is cut off from the leader
/// (partitioned, or the leader's messages to it dropped): the other two
/// nodes are a quorum and go on. The follower counts itself cut off after
/// twice the longest election timeout (800 ms by default) and answers `503`
/// at once, so that the writers go to another node; until then each writer
/// whose next task goes first to that follower waits there, and within a
/// few tasks every writer does. Before that rule writes stalled 8.5 s: the
/// follower held each one it passed on for the whole 10 s wait.
const FOLLOWER_STALL: Duration = Duration::from_millis(2500);
/// How long a follower stays cut off: long enough that a stall past
/// [`FOLLOWER_STALL`] shows while the fault lasts.
const FOLLOWER_OUT_FOR: Duration = Duration::from_secs(4);
/// How long a paused or isolated leader stays so: past any election timeout
/// (at most 400 ms by default), so that the others elect another.
const OUT_FOR: Duration = Duration::from_millis(1500);

/// One fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `kill -9` of the leader, later started again on its data.
    KillLeader,
    /// `kill -9` of a follower, later started again on its data.
    KillFollower,
    /// SIGSTOP of the leader for [`OUT_FOR`], then SIGCONT: it wakes up
    /// believing it leads.
    PauseLeader,
    /// The leader cut off from the other nodes (clients still reach it) for
    /// [`OUT_FOR`], then healed.
    IsolateLeader,
    /// A follower cut off, then healed.
    IsolateFollower,
    /// What the leader sends to one follower dropped (one way), then healed:
    /// the follower hears nothing, the leader and the other follower go on.
    OneWayCut,
    /// A follower partitioned away for [`OUT_FOR`], healed, and at once,
    /// while it catches up, the leader's messages to it dropped: the writes
    /// it passed on then wait on it for entries it cannot apply.
    CutWhileCatchingUp,
    /// A follower killed, its directory removed, started again empty.
    WipeFollower,
    /// A new node added as a learner, made a voter, then an old voter
    /// (maybe the leader) removed and stopped: three voters again.
    Replace,
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::KillLeader => "kill -9 of the leader",
            Fault::KillFollower => "kill -9 of a follower",
            Fault::PauseLeader => "SIGSTOP of the leader",
            Fault::IsolateLeader => "the leader partitioned away",
            Fault::IsolateFollower => "a follower partitioned away",
            Fault::OneWayCut => "the leader's messages to a follower dropped",
            Fault::CutWhileCatchingUp => "a follower cut off again as it catches up",
            Fault::WipeFollower => "a follower's disk wiped",
            Fault::Replace => "a voter replaced by a new node",
        }
    }

    /// Whether it needs the nodes in network namespaces.
    pub fn needs_namespaces(self) -> bool {
        matches!(
            self,
            Fault::IsolateLeader
                | Fault::IsolateFollower
                | Fault::OneWayCut
                | Fault::CutWhileCatchingUp
        )
    }
}

/// What a fault did, for the notes.
#[derive(Debug, Default)]
pub struct Done {
    /// From the fault to the first write acknowledged after it (when the
    /// fault stops the leader).
    pub writes_back_after: Option<Duration>,
    /// Said of it in the notes.
    pub what: String,
}

/// The cluster and what the campaign keeps beside it.
pub struct Target<'a> {
    pub cluster: &'a mut LocalCluster,
    /// The voters, as the campaign changed them.
    pub voters: Vec<u64>,
    /// The id the next new node gets.
    pub next_id: u64,
    /// The writers' acknowledgements so far.
    pub acks: &'a dyn Fn() -> usize,
}

impl Target<'_> {
    /// The leader every running node agrees on.
    fn leader(&self) -> Result<u64, String> {
        self.cluster
            .wait_for_leader(RECOVERY)
            .ok_or_else(|| format!("no leader within {RECOVERY:?}"))
    }

    /// Waits for a write acknowledged after now, within [`WRITES_BACK`].
    fn writes_go_on(&self, since: Instant, after: &str) -> Result<Duration, String> {
        self.writes_go_on_within(since, after, WRITES_BACK)
    }

    /// Waits for a write acknowledged after now, within `bound`.
    fn writes_go_on_within(
        &self,
        since: Instant,
        after: &str,
        bound: Duration,
    ) -> Result<Duration, String> {
        let before = (self.acks)();
        if wait_until(RECOVERY, || (self.acks)() > before) {
            let stopped = since.elapsed();
            if stopped > bound {
                return Err(format!(
                    "writes stopped for {} ms {after}, longer than {} s: something waited for a timeout instead of going to the new leader",
                    stopped.as_millis(),
                    bound.as_secs()
                ));
            }
            Ok(stopped)
        } else {
            Err(format!("no write acknowledged within {RECOVERY:?} {after}"))
        }
    }

    /// How far node `id` applied the log, as its `GET /cluster` says (0
    /// when it does not answer).
    fn applied(&self, id: u64) -> u64 {
        self.cluster
            .status(id)
            .and_then(|s| s["applied"].as_u64())
            .unwrap_or(0)
    }

    /// Watches the acknowledgements for `during`, the length of a fault,
    /// and returns the longest stretch of it without any (sampled every
    /// 5 ms): how long the fault stopped the writes while it lasted.
    fn longest_stall(&self, during: Duration) -> Duration {
        let start = Instant::now();
        let (mut count, mut last) = ((self.acks)(), start);
        let mut longest = Duration::ZERO;
        while start.elapsed() < during {
            std::thread::sleep(Duration::from_millis(5));
            let now = Instant::now();
            let seen = (self.acks)();
            if seen > count {
                (count, last) = (seen, now);
            }
            longest = longest.max(now - last);
        }
        longest
    }

    /// The rest of a follower fault, once the follower is cut off: watches
    /// the writes for [`FOLLOWER_OUT_FOR`], heals node `heal` (where the
    /// rules are), and checks that the writes stopped no longer than
    /// [`FOLLOWER_STALL`] meanwhile and go on after; the longest stop, in
    /// milliseconds.
    fn follower_out(&self, heal: u64, during: &str) -> Result<u128, String> {
        let stalled = self.longest_stall(FOLLOWER_OUT_FOR);
        self.cluster.heal(heal).map_err(|e| e.to_string())?;
        if stalled > FOLLOWER_STALL {
            return Err(format!(
                "writes stopped for {} ms during {during}, longer than {} ms: the other two \
                 nodes are a quorum, and something waited for a timeout instead of going on \
                 without the follower",
                stalled.as_millis(),
                FOLLOWER_STALL.as_millis()
            ));
        }
        self.writes_go_on(Instant::now(), &format!("after {during} was healed"))?;
        Ok(stalled.as_millis())
    }

    fn follower(&self, leader: u64, rng: &mut impl proptest::prelude::Rng) -> u64 {
        let followers: Vec<u64> = self
            .voters
            .iter()
            .copied()
            .filter(|&v| v != leader)
            .collect();
        followers[rng.random_range(0..followers.len())]
    }

    fn restart(&mut self, id: u64) -> Result<(), String> {
        self.cluster
            .restart(id)
            .map_err(|r| format!("node {id} did not start again: {r}"))
    }

    /// Does `fault` and undoes it; `Err` when the cluster did not do what
    /// it must.
    pub fn apply(
        &mut self,
        fault: Fault,
        rng: &mut impl proptest::prelude::Rng,
    ) -> Result<Done, String> {
        let leader = self.leader()?;
        let mut done = Done::default();
        match fault {
            Fault::KillLeader => {
                let at = Instant::now();
                self.cluster.kill9(leader);
                self.new_leader_other_than(leader)?;
                done.writes_back_after = Some(self.writes_go_on(at, "the kill")?);
                self.restart(leader)?;
                done.what = format!("killed node {leader}");
            }
            Fault::KillFollower => {
                let follower = self.follower(leader, rng);
                self.cluster.kill9(follower);
                self.writes_go_on(Instant::now(), "a follower's kill")?;
                self.restart(follower)?;
                done.what = format!("killed node {follower}");
            }
            Fault::PauseLeader => {
                let at = Instant::now();
                self.cluster.pause(leader, true);
                // How long it stays stopped is the fault, not a wait for anything.
                std::thread::sleep(OUT_FOR);
                let other = self.new_leader_other_than(leader);
                self.cluster.pause(leader, false);
                other?;
                done.writes_back_after = Some(self.writes_go_on(at, "the pause")?);
                done.what = format!("stopped node {leader} for {OUT_FOR:?}");
            }
            Fault::IsolateLeader => {
                let at = Instant::now();
                self.cluster.isolate(leader).map_err(|e| e.to_string())?;
                std::thread::sleep(OUT_FOR);
                // The two others elect one; the isolated one cannot say.
                let other = wait_until(RECOVERY, || {
                    self.voters
                        .iter()
                        .filter(|&&v| v != leader)
                        .filter_map(|&v| self.cluster.status(v))
                        .any(|s| s["role"] == "leader")
                });
                let back = self.writes_go_on(at, "the partition");
                self.cluster.heal(leader).map_err(|e| e.to_string())?;
                if !other {
                    return Err(format!("the nodes cut off from node {leader} elected none"));
                }
                done.writes_back_after = Some(back?);
                done.what = format!("node {leader} cut off for {OUT_FOR:?}");
            }
            Fault::IsolateFollower => {
                let follower = self.follower(leader, rng);
                self.cluster.isolate(follower).map_err(|e| e.to_string())?;
                // Not among writes_back_after: that counts leader faults.
                let stalled = self.follower_out(follower, "a follower's partition")?;
                done.what = format!(
                    "node {follower} cut off for {FOLLOWER_OUT_FOR:?}; writes stopped {stalled} ms at most meanwhile"
                );
            }
            Fault::OneWayCut => {
                let follower = self.follower(leader, rng);
                self.cluster
                    .cut(leader, follower)
                    .map_err(|e| e.to_string())?;
                let stalled = self.follower_out(leader, "a one-way cut")?;
                done.what = format!(
                    "node {leader} to node {follower} dropped for {FOLLOWER_OUT_FOR:?}; \
                     writes stopped {stalled} ms at most meanwhile"
                );
            }
            Fault::CutWhileCatchingUp => {
                let follower = self.follower(leader, rng);
                self.cluster.isolate(follower).map_err(|e| e.to_string())?;
                std::thread::sleep(OUT_FOR);
                let behind = self.applied(follower);
                self.cluster.heal(follower).map_err(|e| e.to_string())?;
                // Cut once it is being sent entries again, not before.
                if !wait_until(RECOVERY, || self.applied(follower) > behind) {
                    return Err(format!("node {follower} applied nothing more once healed"));
                }
                self.cluster
                    .cut(leader, follower)
                    .map_err(|e| e.to_string())?;
                let stalled = self.follower_out(leader, "a cut as the follower caught up")?;
                done.what = format!(
                    "node {follower} cut off for {OUT_FOR:?}, then node {leader} to it dropped \
                     for {FOLLOWER_OUT_FOR:?}; writes stopped {stalled} ms at most meanwhile"
                );
            }
            Fault::WipeFollower => {
                let follower = self.follower(leader, rng);
                self.cluster.kill9(follower);
                self.cluster.wipe(follower);
                self.writes_go_on(Instant::now(), "a follower's wipe")?;
                self.restart(follower)?;
                done.what = format!("wiped node {follower}");
            }
            Fault::Replace => {
                let new = self.next_id;
                self.next_id += 1;
                self.cluster
                    .add_node(new)
                    .map_err(|r| format!("node {new} did not start: {r}"))?;
                let addr = self.cluster.addr(new);
                self.admin(
                    "POST",
                    "/cluster/learners",
                    Some(serde_json::json!({"id": new, "addr": addr})),
                )?;
                self.admin(
                    "POST",
                    "/cluster/voters",
                    Some(serde_json::json!({"id": new})),
                )?;
                let old = self.voters[rng.random_range(0..self.voters.len())];
                self.admin("DELETE", &format!("/cluster/members/{old}"), None)?;
                self.voters.retain(|&v| v != old);
                self.voters.push(new);
                self.cluster.kill9(old);
                self.leader()?;
                self.writes_go_on(Instant::now(), "the membership change")?;
                done.what = format!(
                    "added node {new}, removed node {old}{}",
                    if old == leader { " (the leader)" } else { "" }
                );
            }
        }
        // Every fault ends with every voter running and one leader.
        self.leader()?;
        Ok(done)
    }

    /// Waits for a leader other than `old` among the running nodes.
    fn new_leader_other_than(&self, old: u64) -> Result<u64, String> {
        let deadline = Instant::now() + RECOVERY;
        loop {
            let found = self
                .voters
                .iter()
                .filter(|&&v| v != old)
                .filter_map(|&v| self.cluster.status(v))
                .find(|s| s["role"] == "leader")
                .and_then(|s| s["node_id"].as_u64());
            if let Some(leader) = found {
                return Ok(leader);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no node took over from node {old} within {RECOVERY:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A membership call through a running voter; `Err` unless `200`.
    fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(), String> {
        let via = *self
            .voters
            .iter()
            .find(|&&v| self.cluster.node(v).is_some())
            .ok_or("no voter running")?;
        let (status, answer) = self.cluster.admin(via, method, path, body);
        if status == 200 {
            Ok(())
        } else {
            Err(format!("{method} {path} answered {status}: {answer}"))
        }
    }
}
