//! The node's state machine: its own data file, a [`Replica`], fed by the
//! Raft log in order.
//!
//! # What is durable, and where
//!
//! - The tasks, each with its log position: in the data file, synced by
//!   every apply ([`Replica::apply`]). What apply does is deterministic
//!   (ids in log order, `Idempotency-Key` replays, the leader's
//!   `creada_en`), so every node's file is byte-identical once it applied
//!   the same log.
//! - The membership: `membership.json` in the Raft directory, replaced when
//!   a membership entry is applied.
//! - The last snapshot: `snapshot.json` (its log id and membership) and
//!   `snapshot.data` (the data file's bytes at that point), which a node far
//!   behind, new, or wiped, is sent. Building one holds up applying only
//!   while the file's bytes are read; writing and syncing the copy happens
//!   beside the applies, under a lock of its own, and never replaces a
//!   newer snapshot (one installed from the leader meanwhile).
//!
//! After a restart the state machine has applied up to the largest of the
//! entry before the file's last task's (a crash in the middle of an apply
//! may have left only the first tasks of an entry, see
//! [`Replica::applied_whole`]), the membership entry and the snapshot.
//! openraft applies the entries after that again: those that store no task
//! (a new leader's first entry) change nothing, and a task the file holds
//! already is skipped by its position (entry and place in it), so nothing
//! is applied twice and nothing is left out.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use futures::{Stream, TryStreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Mutex};

use super::log::{load_json, write_json};
use super::types::{
    log_id, position, Applied, Entry, LogId, Snapshot, SnapshotData, SnapshotMeta,
    StoredMembership, TypeConfig,
};
use crate::store::file::Fs;
use crate::store::{Proposal, Replica};
use crate::task::RaftPosition;

/// openraft's handle to the state machine; its snapshot builder too.
#[derive(Clone)]
pub struct StateMachine {
    inner: Arc<Mutex<Inner>>,
    /// The stored snapshot's files, and the log id they are the state at.
    /// Apart from `inner`, so that storing a snapshot (the whole data
    /// file, synced) does not hold up the applies. Taken after `inner`
    /// when both are needed.
    stored: Arc<Mutex<Option<LogId>>>,
    /// The index of the last entry applied, published once its tasks are
    /// in the data file: what a follower's forwarded write waits for
    /// ([`StateMachine::applied_index`]). Apart from Raft's metrics, which
    /// change several times for each batch of entries and are copied at
    /// each look: waiting on those cost a loaded follower more than the
    /// write itself.
    applied_index: watch::Sender<u64>,
}

struct Inner {
    replica: Replica,
    fs: Arc<dyn Fs>,
    /// The Raft directory.
    dir: PathBuf,
    /// The last entry applied (or known applied, after a restart).
    applied: Option<LogId>,
    /// The last membership applied.
    membership: StoredMembership,
}

/// `snapshot.json`: what the stored snapshot is of.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
}

impl StateMachine {
    /// The state machine of `replica`, whose Raft directory is `dir`.
    /// Blocking (it reads a few small files).
    pub fn open(fs: Arc<dyn Fs>, dir: PathBuf, replica: Replica) -> io::Result<StateMachine> {
        let membership: Option<StoredMembership> = load_json(&*fs, &dir.join("membership.json"))?;
        let snapshot: Option<StoredSnapshot> = load_json(&*fs, &dir.join("snapshot.json"))?;
        let from_file = replica.applied_whole().map(log_id);
        let mut applied = from_file;
        let mut membership = membership.unwrap_or_default();
        if let Some(s) = &snapshot {
            applied = applied.max(s.meta.last_log_id);
            if s.meta.last_membership.log_id() > membership.log_id() {
                membership = s.meta.last_membership.clone();
            }
        }
        applied = applied.max(*membership.log_id());
        let (applied_index, _) = watch::channel(applied.map_or(0, |l| l.index()));
        Ok(StateMachine {
            inner: Arc::new(Mutex::new(Inner {
                replica,
                fs,
                dir,
                applied,
                membership,
            })),
            stored: Arc::new(Mutex::new(snapshot.and_then(|s| s.meta.last_log_id))),
            applied_index,
        })
    }

    /// The index of the last entry applied to the data file, as it moves.
    pub fn applied_index(&self) -> watch::Receiver<u64> {
        self.applied_index.subscribe()
    }

    /// Publishes that the entries up to `last` are applied.
    fn applied_up_to(&self, last: Option<LogId>) {
        let index = last.map_or(0, |l| l.index());
        self.applied_index.send_if_modified(|applied| {
            let later = index > *applied;
            *applied = (*applied).max(index);
            later
        });
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let inner = self.inner.lock().await;
        Ok((inner.applied, inner.membership.clone()))
    }

    async fn apply<S>(&mut self, mut stream: S) -> Result<(), io::Error>
    where
        S: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut entries = Vec::new();
        let mut responders = Vec::new();
        while let Some((entry, responder)) = stream.try_next().await? {
            entries.push(entry);
            responders.push(responder);
        }
        let Some(last) = entries.last().map(|e| e.log_id()) else {
            return Ok(());
        };
        let mut inner = self.inner.lock().await;
        let replica = inner.replica.clone();
        // The tasks of the batch, in one write and one fdatasync.
        let (entries, answers) = tokio::task::spawn_blocking(move || {
            let answers = apply_tasks(&replica, &entries);
            (entries, answers)
        })
        .await
        .map_err(io::Error::other)?;
        let mut answers = answers?.into_iter();
        let mut replies = Vec::with_capacity(entries.len());
        for entry in &entries {
            replies.push(match &entry.payload {
                EntryPayload::Normal(proposals) => (&mut answers).take(proposals.0.len()).collect(),
                EntryPayload::Membership(m) => {
                    inner.membership = StoredMembership::new(Some(entry.log_id()), m.clone());
                    Vec::new()
                }
                EntryPayload::Blank => Vec::new(),
            });
        }
        if entries
            .iter()
            .any(|e| matches!(e.payload, EntryPayload::Membership(_)))
        {
            let (fs, path, membership) = (
                inner.fs.clone(),
                inner.dir.join("membership.json"),
                inner.membership.clone(),
            );
            tokio::task::spawn_blocking(move || write_json(&*fs, &path, &membership))
                .await
                .map_err(io::Error::other)??;
        }
        inner.applied = Some(last);
        drop(inner);
        self.applied_up_to(Some(last));
        for (responder, reply) in responders.into_iter().zip(replies) {
            if let Some(responder) = responder {
                responder.send(reply);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let mut inner = self.inner.lock().await;
        let mut stored = self.stored.lock().await;
        let (replica, fs, dir, meta_owned) = (
            inner.replica.clone(),
            inner.fs.clone(),
            inner.dir.clone(),
            meta.clone(),
        );
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            store_snapshot(&*fs, &dir, &meta_owned, &snapshot)?;
            replica.install(&snapshot).map_err(io::Error::other)?;
            write_json(
                &*fs,
                &dir.join("membership.json"),
                &meta_owned.last_membership,
            )
        })
        .await
        .map_err(io::Error::other)??;
        *stored = meta.last_log_id;
        inner.applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        self.applied_up_to(meta.last_log_id);
        tracing::info!(last = ?meta.last_log_id, "installed a snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let inner = self.inner.lock().await;
        let (fs, dir) = (inner.fs.clone(), inner.dir.clone());
        drop(inner);
        // Not while a snapshot is being stored: its data and meta are
        // renamed in one after the other.
        let _stored = self.stored.lock().await;
        tokio::task::spawn_blocking(move || -> io::Result<Option<Snapshot>> {
            let Some(stored) = load_json::<StoredSnapshot>(&*fs, &dir.join("snapshot.json"))?
            else {
                return Ok(None);
            };
            let path = dir.join("snapshot.data");
            let len = fs.stat(&path)?.map_or(0, |s| s.len);
            let mut data = vec![0; len as usize];
            fs.open(&path)?.read_exact_at(&mut data, 0)?;
            Ok(Some(Snapshot {
                meta: stored.meta,
                snapshot: data,
            }))
        })
        .await
        .map_err(io::Error::other)?
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        // The bytes under the lock, so that no apply runs between them and
        // the log id they are the state of; the copy is written without it.
        let inner = self.inner.lock().await;
        let meta = SnapshotMeta {
            last_log_id: inner.applied,
            last_membership: inner.membership.clone(),
        };
        let (replica, fs, dir) = (inner.replica.clone(), inner.fs.clone(), inner.dir.clone());
        let data = tokio::task::spawn_blocking(move || replica.snapshot())
            .await
            .map_err(io::Error::other)?
            .map_err(io::Error::other)?;
        drop(inner);
        let mut stored = self.stored.lock().await;
        let data = if *stored < meta.last_log_id {
            let copy = meta.clone();
            let data = tokio::task::spawn_blocking(move || {
                store_snapshot(&*fs, &dir, &copy, &data).map(|()| data)
            });
            let data = data.await.map_err(io::Error::other)??;
            *stored = meta.last_log_id;
            tracing::info!(last = ?meta.last_log_id, bytes = data.len(), "built a snapshot");
            data
        } else {
            // A snapshot installed from the leader meanwhile is newer: it
            // stays stored, and this one is only returned.
            tracing::info!(last = ?meta.last_log_id, "built a snapshot older than the stored one, kept that one");
            data
        };
        drop(stored);
        Ok(Snapshot {
            meta,
            snapshot: data,
        })
    }
}

/// Stores the tasks of consecutive entries (the others store nothing).
fn apply_tasks(replica: &Replica, entries: &[Entry]) -> io::Result<Vec<Applied>> {
    let mut proposals: Vec<Proposal<'_>> = Vec::new();
    for entry in entries {
        if let EntryPayload::Normal(tasks) = &entry.payload {
            let at = position(&entry.log_id());
            proposals.extend(tasks.0.iter().zip(0..).map(|(proposed, slot)| Proposal {
                entry: &proposed.entry,
                creada_en: &proposed.creada_en,
                raft: Some(RaftPosition { slot, ..at }),
            }));
        }
    }
    if proposals.is_empty() {
        return Ok(Vec::new());
    }
    let answers = replica.apply(&proposals).map_err(io::Error::other)?;
    Ok(answers.into_iter().map(Applied::from_result).collect())
}

/// Keeps a snapshot in the Raft directory: its data, then its meta, each
/// written whole and renamed in.
fn store_snapshot(
    fs: &dyn Fs,
    dir: &std::path::Path,
    meta: &SnapshotMeta,
    data: &[u8],
) -> io::Result<()> {
    let path = dir.join("snapshot.data");
    let new = dir.join("snapshot.data.new");
    if fs.stat(&new)?.is_some() {
        fs.remove(&new)?;
    }
    fs.create_durable(&new, data)?;
    fs.rename(&new, &path)?;
    write_json(
        fs,
        &dir.join("snapshot.json"),
        &StoredSnapshot { meta: meta.clone() },
    )
}
