//! The writes the leader proposes, gathered into log entries.
//!
//! Proposed as one log entry each, every write paid for openraft's work on
//! an entry, the log's, the replication's and each follower's. So the
//! leader proposes the writes it finds waiting together, as one entry
//! ([`Batch`]): at most [`IN_FLIGHT`] entry is on its way through Raft
//! at once, and the writes that arrive meanwhile wait in a queue and go
//! together in the next one, as the forwarder's batches
//! ([`super::forward`]) and the single node's group commit gather theirs.
//! An idle leader proposes a lone write at once. Measured with
//! `bench/experiments/cluster-ab.sh 4 8` (64 connections spread over three
//! nodes) against one entry per write: 1.17 times the writes (1.15 to
//! 1.20), the p99 from 33-52 ms to 11-12 ms, the leader's CPU per write
//! from about 68 µs to 48 and each follower's from 43 to 37. (A first
//! version with two entries in flight gained 1.07, with eight 1.03.) It
//! costs a little where few writes are in flight: with 3 connections, one
//! per node, 0.88 to 0.91 of the writes (a write that comes while an entry
//! is on its way waits for it, where openraft would have pipelined it);
//! with 12, 0.97 to 1.01 (`bench/experiments/README.md`).
//!
//! # Guarantees
//!
//! - Each write keeps its own outcome: applying an entry answers one
//!   [`Applied`] per task, in order, and each goes back to its own write.
//! - An entry holds at most [`MAX_TASKS`] tasks, and takes no more once
//!   those past its first carry [`MAX_BYTES`] of text, so that the
//!   AppendEntries openraft builds from several entries stays below the
//!   peer routes' body limit.
//! - A stuck entry holds up nothing else for long: the next one leaves
//!   after at most [`WAIT_AT_MOST`] even while it hangs (a leader cut off
//!   from the others), and a write whose caller stopped waiting before its
//!   entry left is not proposed at all.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Semaphore};

use super::forward::gather;
use super::types::{Applied, Batch, Proposed, Raft};

/// Entries on their way through Raft at once. One: the next entry gathers
/// every write that came while this one was replicated and applied. (Two
/// made the entries smaller and gained less; see the module's docs.)
pub const IN_FLIGHT: usize = 1;

/// The longest a write waits for the entry in flight before its own entry
/// goes anyway: a few commit rounds of a loaded cluster, so that it only
/// matters when an entry hangs.
pub const WAIT_AT_MOST: Duration = Duration::from_millis(100);

/// The most tasks in one entry.
pub const MAX_TASKS: usize = 256;

/// The bytes of task text (title, description, client, key) past an
/// entry's first task after which it takes no more. A request body is at
/// most 64 KiB, so an entry carries at most about 192 KiB of text, and the
/// up to 300 entries openraft sends in one AppendEntries about 56 MiB,
/// below the 64 MiB body limit of the peer routes. (Tasks of the size the
/// benchmark sends, about 100 bytes, fill [`MAX_TASKS`] first.)
pub const MAX_BYTES: usize = 64 << 10;

/// What the entry carrying a write answered for it.
#[derive(Debug)]
pub struct Written {
    /// What applying the task answered.
    pub applied: Applied,
    /// The entry's log index, for a follower to wait until it applied it.
    pub index: u64,
}

/// Proposes writes in entries (see the module's docs).
#[derive(Clone)]
pub struct Proposer {
    queue: mpsc::UnboundedSender<Waiting>,
}

/// A write waiting for its entry.
struct Waiting {
    proposed: Proposed,
    answer: oneshot::Sender<Result<Written, String>>,
}

impl Proposer {
    /// Starts the task that proposes the entries (inside the runtime).
    pub fn start(raft: Raft) -> Proposer {
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(propose_entries(waiting, raft));
        Proposer { queue }
    }

    /// Proposes `proposed` in an entry with the writes waiting with it, and
    /// returns what applying it answered, or why Raft refused the entry
    /// (this node no longer leads, it is shutting down). Bound it with a
    /// timeout: an entry a quorum never takes is never answered.
    pub async fn propose(&self, proposed: Proposed) -> Result<Written, String> {
        let (answer, answered) = oneshot::channel();
        if self.queue.send(Waiting { proposed, answer }).is_err() {
            return Err("this node is shutting down".into());
        }
        answered
            .await
            .unwrap_or_else(|_| Err("the entry carrying the task was dropped".into()))
    }
}

/// Takes the waiting writes whenever an entry may leave, as many as fit in
/// one, and proposes them.
async fn propose_entries(mut waiting: mpsc::UnboundedReceiver<Waiting>, raft: Raft) {
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = waiting.recv().await {
        let (mut tasks, mut bytes) = (0, 0);
        let (permit, mut entry) = gather(&mut waiting, first, &in_flight, WAIT_AT_MOST, |w| {
            tasks += 1;
            // The first task's text does not count: one task always fits.
            if tasks > 1 {
                bytes += text_bytes(&w.proposed);
            }
            tasks < MAX_TASKS && bytes < MAX_BYTES
        })
        .await;
        // Writes nobody waits for any more stay out.
        entry.retain(|w| !w.answer.is_closed());
        if entry.is_empty() {
            continue;
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let (tasks, answers): (Vec<Proposed>, Vec<_>) =
                entry.into_iter().map(|w| (w.proposed, w.answer)).unzip();
            match raft.client_write(Batch(tasks)).await {
                Ok(written) => {
                    let index = written.log_id.index();
                    let mut applied = written.data.into_iter();
                    for answer in answers {
                        let applied = applied.next().unwrap_or(Applied::Nothing);
                        // A write whose client went away no longer listens.
                        let _ = answer.send(Ok(Written { applied, index }));
                    }
                }
                Err(e) => {
                    let why = e.to_string();
                    for answer in answers {
                        let _ = answer.send(Err(why.clone()));
                    }
                }
            }
            drop(permit);
        });
    }
}

/// The bytes of text a task carries.
fn text_bytes(p: &Proposed) -> usize {
    let task = &p.entry.task;
    task.titulo.len()
        + task.descripcion.as_deref().map_or(0, str::len)
        + task.cliente.as_deref().map_or(0, str::len)
        + p.entry.idempotency_key.as_deref().map_or(0, str::len)
}
