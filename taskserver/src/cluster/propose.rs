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

/// The bytes of task text (title, description, client, key), as JSON
/// writes it, past an entry's first task after which it takes no more.
/// A task carries at most 2,500 characters of text, at most 6 bytes each
/// as JSON (a control character is written `\u0001`), about 15 KiB, and
/// about 140 bytes of field names and `creada_en` around it; so an entry
/// is at most about 130 KiB of JSON, and the up to 300 entries openraft
/// sends in one AppendEntries about 38 MiB, below the 64 MiB body limit of
/// the peer routes. (Counted as JSON, not as characters: titles of
/// control characters would otherwise make entries six times as large, and
/// an AppendEntries past the limit, which the follower refuses every time
/// it is sent again. Tasks of the size the benchmark sends, about 100
/// bytes, fill [`MAX_TASKS`] first.)
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

/// The bytes of text a task carries, as JSON writes it.
fn text_bytes(p: &Proposed) -> usize {
    let task = &p.entry.task;
    json_len(&task.titulo)
        + task.descripcion.as_deref().map_or(0, json_len)
        + task.cliente.as_deref().map_or(0, json_len)
        + p.entry.idempotency_key.as_deref().map_or(0, json_len)
}

/// The length of `s` as a JSON string, without its quotes: what
/// `serde_json` writes (`\"`, `\\` and `\n`-like escapes take 2 bytes,
/// other control characters 6; the rest as they are in UTF-8).
fn json_len(s: &str) -> usize {
    s.len()
        + s.bytes()
            .map(|b| match b {
                b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 1,
                0..=0x1f => 5,
                _ => 0,
            })
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewEntry;
    use crate::task::ValidTask;

    #[test]
    fn text_is_counted_as_json_writes_it() {
        for s in [
            "",
            "plain",
            "tilde: año, emoji: 🦀",
            "quote \" and backslash \\",
            "\n\r\t\u{8}\u{c}",
            "\u{1}\u{1f}\u{0}\u{7f}",
        ] {
            let written = serde_json::to_string(s).unwrap();
            assert_eq!(json_len(s), written.len() - 2, "{s:?} is written {written}");
        }
    }

    #[test]
    fn a_task_of_control_characters_counts_six_bytes_each() {
        let proposed = Proposed {
            entry: NewEntry {
                task: ValidTask {
                    titulo: "\u{1}".repeat(200),
                    descripcion: Some("\u{2}".repeat(2000)),
                    completada: false,
                    cliente: None,
                },
                idempotency_key: Some("k".into()),
            },
            creada_en: "2026-12-04T20:30:00.000Z".into(),
        };
        let json = serde_json::to_string(&proposed.entry.task).unwrap();
        assert_eq!(text_bytes(&proposed), 6 * 2200 + 1);
        assert!(json.len() < text_bytes(&proposed) + 100, "{}", json.len());
    }
}
