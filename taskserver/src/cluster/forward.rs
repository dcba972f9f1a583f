//! The writes a follower passes to the leader, gathered into batches.
//!
//! Every write that reaches a follower must go to the leader. Sent as one
//! peer request each, they made the same load go 1.5 times as fast when it
//! was all sent to the leader as when it was spread over the three nodes
//! (`bench/experiments/cluster-costs.sh`; with batches, 1.2 to 1.4 times,
//! though the throughput spread over the nodes moved within that run's
//! noise: see `bench/RESULTS.md`). So a follower sends them in batches: at
//! most [`IN_FLIGHT`] batches are on their way to the leader at once, and
//! the writes that arrive meanwhile wait in a queue and go together in the
//! next one, as the store's group commit gathers tasks for one `fdatasync`.
//! An idle node sends a lone write at once, and no write waits more than
//! [`GATHER_AT_MOST`] for its batch to leave.
//!
//! # Guarantees
//!
//! - Each write keeps its own outcome. The leader proposes the writes of a
//!   batch (together with the others it has waiting, [`super::propose`])
//!   and answers one [`Proposal`] per write, in order; a write's answer is
//!   its own.
//! - A batch that never reached the leader is *certain* for every write in
//!   it ([`Proposal::Unreachable`]: nothing was appended); one that was sent
//!   but got no (or a malformed) answer is *uncertain* for every write in it
//!   ([`Proposal::Uncertain`]), and the caller retries only writes with an
//!   `Idempotency-Key`, as it did for a single write.
//! - A stuck request holds up nothing else. A batch leaves after at most
//!   [`GATHER_AT_MOST`] even while the batches in flight hang; a caller
//!   that sees the leader change stops waiting (its write is uncertain),
//!   and a batch none of whose callers waits any more is dropped at once.
//!   (Seen in the cluster campaign before these two rules: writes stalled
//!   for the full 10 s of a request after the leader was cut off, and after
//!   a one-way cut.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use super::network::{CallError, PeerClient};
use super::Proposal;
use crate::store::NewEntry;

/// Batches on their way to the leader at once. Two keep the link busy while
/// the leader commits one; more would only make each batch smaller.
pub const IN_FLIGHT: usize = 2;

/// The longest a write waits for a batch in flight to come back before it
/// goes anyway, with those waiting with it: a few commit rounds of a
/// loaded cluster (p50 about 14 ms), so that it only matters when a batch
/// hangs. Measured: at 10 ms the batches left too early to gain anything
/// (all-on-leader / spread 1.41), at 100 ms 1.26.
pub const GATHER_AT_MOST: Duration = Duration::from_millis(100);

/// The most writes in one batch: a peer request of at most about 17 MB
/// with 64 KiB tasks, below the peer routes' 64 MiB body limit.
pub const MAX_BATCH: usize = 256;

/// Passes writes to the leader in batches (see the module's docs).
#[derive(Clone)]
pub struct Forwarder {
    queue: mpsc::UnboundedSender<Pending>,
}

/// A write waiting for its batch.
struct Pending {
    leader: u64,
    addr: String,
    entry: NewEntry,
    deadline: Instant,
    answer: oneshot::Sender<Proposal>,
}

impl Forwarder {
    /// Starts the task that sends the batches (inside the runtime).
    pub fn start(peers: PeerClient) -> Forwarder {
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(send_batches(waiting, peers));
        Forwarder { queue }
    }

    /// Passes `entry` to node `leader` at `addr`, with the writes that wait
    /// with it, and returns what the leader made of it; waits at most until
    /// `deadline` for the answer.
    pub async fn forward(
        &self,
        leader: u64,
        addr: &str,
        entry: NewEntry,
        deadline: Instant,
    ) -> Proposal {
        let (answer, answered) = oneshot::channel();
        let pending = Pending {
            leader,
            addr: addr.to_owned(),
            entry,
            deadline,
            answer,
        };
        if self.queue.send(pending).is_err() {
            // The sending task is gone (the runtime is shutting down).
            return Proposal::Unreachable("this node is shutting down".into());
        }
        answered.await.unwrap_or_else(|_| {
            Proposal::Uncertain("the batch carrying the task was dropped".into())
        })
    }
}

/// Takes the waiting writes, as many as are there, whenever a batch may
/// leave, and sends them.
async fn send_batches(mut waiting: mpsc::UnboundedReceiver<Pending>, peers: PeerClient) {
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = waiting.recv().await {
        // While the batches in flight are out, the writes arriving gather
        // here; but never for longer than GATHER_AT_MOST: batches stuck on
        // a leader that went silent (a one-way cut: its answers do not
        // come back) must not hold up the writes behind them.
        let mut taken = 0;
        let (permit, batch) = gather(&mut waiting, first, &in_flight, GATHER_AT_MOST, |_| {
            taken += 1;
            taken < MAX_BATCH
        })
        .await;
        let peers = peers.clone();
        tokio::spawn(async move {
            // Nearly always one leader; a batch taken while the leader
            // changed goes out as one request per leader.
            let mut by_leader: Vec<Vec<Pending>> = Vec::new();
            for pending in batch {
                match by_leader
                    .iter_mut()
                    .find(|g| g[0].leader == pending.leader && g[0].addr == pending.addr)
                {
                    Some(group) => group.push(pending),
                    None => by_leader.push(vec![pending]),
                }
            }
            futures::future::join_all(by_leader.into_iter().map(|g| send(&peers, g))).await;
            drop(permit);
        });
    }
}

/// Waits for a place among the batches in flight, for `wait_at_most` at
/// most (then goes without one), and takes `first` and the items waiting
/// behind it for as long as `room`, shown each item taken (`first`
/// included), says there is room for another: what a batch of the
/// forwarder, and an entry of the leader's proposer ([`super::propose`]),
/// is made of.
pub(super) async fn gather<T>(
    waiting: &mut mpsc::UnboundedReceiver<T>,
    first: T,
    in_flight: &Arc<Semaphore>,
    wait_at_most: Duration,
    mut room: impl FnMut(&T) -> bool,
) -> (Option<OwnedSemaphorePermit>, Vec<T>) {
    let permit = tokio::time::timeout(wait_at_most, in_flight.clone().acquire_owned())
        .await
        .ok()
        .and_then(Result::ok);
    let mut more = room(&first);
    let mut batch = vec![first];
    while more {
        let Ok(next) = waiting.try_recv() else { break };
        more = room(&next);
        batch.push(next);
    }
    (permit, batch)
}

/// Sends one batch, all to the same leader, and hands out the answers.
/// Writes whose caller stopped waiting (it saw the leader change) are left
/// out, and once no caller of the batch waits any more, the request is
/// dropped: a batch stuck on a leader cut off from this node must not hold
/// its place among the [`IN_FLIGHT`] while the writes go to the next one.
async fn send(peers: &PeerClient, batch: Vec<Pending>) {
    let batch: Vec<Pending> = batch
        .into_iter()
        .filter(|p| !p.answer.is_closed())
        .collect();
    let Some(first) = batch.first() else {
        return;
    };
    let (leader, addr) = (first.leader, first.addr.clone());
    let latest = batch.iter().map(|p| p.deadline).max().expect("never empty");
    let left = latest
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(100));
    let (entries, mut answers): (Vec<NewEntry>, Vec<oneshot::Sender<Proposal>>) =
        batch.into_iter().map(|p| (p.entry, p.answer)).unzip();
    let call = peers.call::<_, Vec<Proposal>>(leader, &addr, "write-batch", &entries, left);
    let abandoned = futures::future::join_all(answers.iter_mut().map(|a| a.closed()));
    let answer = tokio::select! {
        answer = call => answer,
        _ = abandoned => return,
    };
    let proposals: Vec<Proposal> = match answer {
        Ok(proposals) if proposals.len() == entries.len() => proposals,
        Ok(proposals) => {
            let why = format!(
                "the leader {leader} answered {} writes of the {} it was sent",
                proposals.len(),
                entries.len()
            );
            entries
                .iter()
                .map(|_| Proposal::Uncertain(why.clone()))
                .collect()
        }
        // Never sent: certain.
        Err(CallError::Unreachable(_)) => {
            let why = format!("the leader {leader} cannot be reached");
            entries
                .iter()
                .map(|_| Proposal::Unreachable(why.clone()))
                .collect()
        }
        // Sent, maybe taken: uncertain.
        Err(e) => {
            let why = format!("the leader {leader} did not answer: {e}");
            entries
                .iter()
                .map(|_| Proposal::Uncertain(why.clone()))
                .collect()
        }
    };
    for (answer, proposal) in answers.into_iter().zip(proposals) {
        // A write whose client went away no longer listens.
        let _ = answer.send(proposal);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::routing::post;
    use axum::{Json, Router};

    use super::*;
    use crate::task::ValidTask;

    fn entry(n: usize) -> NewEntry {
        NewEntry {
            task: ValidTask {
                titulo: format!("task {n}"),
                descripcion: None,
                completada: false,
                cliente: None,
            },
            idempotency_key: None,
        }
    }

    /// A leader that answers each write with its own title (as an
    /// `Uncertain` reason, the variant that carries a string), after a
    /// pause so that writes pile up behind the batches in flight; counts
    /// the requests and the largest batch.
    async fn slow_leader(requests: Arc<AtomicUsize>, largest: Arc<AtomicUsize>) -> String {
        let app = Router::new().route(
            "/raft/write-batch",
            post(move |Json(entries): Json<Vec<NewEntry>>| {
                let (requests, largest) = (requests.clone(), largest.clone());
                async move {
                    requests.fetch_add(1, Ordering::SeqCst);
                    largest.fetch_max(entries.len(), Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Json(
                        entries
                            .into_iter()
                            .map(|e| Proposal::Uncertain(e.task.titulo))
                            .collect::<Vec<_>>(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }

    #[tokio::test]
    async fn writes_that_wait_go_together_and_each_gets_its_own_answer() {
        let (requests, largest) = (Arc::default(), Arc::default());
        let addr = slow_leader(Arc::clone(&requests), Arc::clone(&largest)).await;
        let forwarder = Forwarder::start(PeerClient::new("secret".into()));
        let deadline = Instant::now() + Duration::from_secs(10);
        let answers = futures::future::join_all(
            (0..100).map(|n| forwarder.forward(1, &addr, entry(n), deadline)),
        )
        .await;
        for (n, answer) in answers.into_iter().enumerate() {
            match answer {
                Proposal::Uncertain(title) => assert_eq!(title, format!("task {n}")),
                other => panic!("write {n} got {other:?}"),
            }
        }
        let (requests, largest) = (
            requests.load(Ordering::SeqCst),
            largest.load(Ordering::SeqCst),
        );
        assert!(requests < 10, "100 writes in {requests} requests");
        assert!(largest > 10, "the largest batch held {largest} writes");
    }

    #[tokio::test]
    async fn a_batch_that_cannot_reach_the_leader_is_certain_for_every_write() {
        // A port nobody listens on.
        let addr = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().to_string()
        };
        let forwarder = Forwarder::start(PeerClient::new("secret".into()));
        let deadline = Instant::now() + Duration::from_secs(5);
        let answers = futures::future::join_all(
            (0..5).map(|n| forwarder.forward(1, &addr, entry(n), deadline)),
        )
        .await;
        for answer in answers {
            assert!(
                matches!(&answer, Proposal::Unreachable(why) if why.contains("cannot be reached")),
                "{answer:?}"
            );
        }
    }

    #[tokio::test]
    async fn batches_stuck_on_a_silent_leader_do_not_hold_up_the_next_one() {
        // A "leader" that takes connections and never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_addr = silent.local_addr().unwrap().to_string();
        let (accepted, mut connections) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = silent.accept().await {
                held.push(socket);
                let _ = accepted.send(());
            }
        });
        let (requests, largest) = (Arc::default(), Arc::default());
        let addr = slow_leader(requests, largest).await;
        let forwarder = Forwarder::start(PeerClient::new("secret".into()));
        let deadline = Instant::now() + Duration::from_secs(10);
        // Enough writes to fill every batch in flight. The callers of the
        // first ones give up once their batch is out, as they do when they
        // see the leader change; the last ones go on waiting (a one-way
        // cut: the leader has not changed for them).
        for round in 0..IN_FLIGHT + 1 {
            let stuck = forwarder.forward(1, &silent_addr, entry(round), deadline);
            tokio::select! {
                answer = stuck => panic!("the silent leader answered: {answer:?}"),
                _ = connections.recv() => {}
            }
        }
        for round in 0..IN_FLIGHT {
            let forwarder = forwarder.clone();
            let silent_addr = silent_addr.clone();
            tokio::spawn(async move {
                forwarder
                    .forward(1, &silent_addr, entry(round), deadline)
                    .await
            });
            // Its batch is out, on a connection of its own.
            connections.recv().await.unwrap();
        }
        let started = Instant::now();
        let answer = forwarder.forward(2, &addr, entry(7), deadline).await;
        assert!(
            matches!(&answer, Proposal::Uncertain(t) if t == "task 7"),
            "{answer:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the write to the new leader waited {:?}",
            started.elapsed()
        );
    }
}
