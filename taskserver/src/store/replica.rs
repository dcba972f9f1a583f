//! The data file as a cluster node's state machine.
//!
//! The same file, the same format and the same code as a single server's
//! store, written by the same steps (decide, write, apply: [`super::plan`]),
//! but fed by the Raft log instead of a queue: [`Replica::apply`] is called
//! with the entries of the log in order, and there is no committer thread.
//! Each task stored this way carries its Raft position, so that the file
//! itself says how far it has applied the log: after a restart, entries up to
//! that position are skipped, never applied twice.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::file::{Fs, OsFs};
use super::plan::Proposal;
use super::{lock, state, Core, Inserted, KeyConflict, Page, StoreError, StoreStats};
use crate::task::RaftPosition;

/// A cheap-to-clone handle to a node's data file.
#[derive(Clone)]
pub struct Replica {
    core: Arc<Core>,
}

/// What applying one proposal did.
pub type Answer = Result<Inserted, KeyConflict>;

impl Replica {
    /// Opens (or creates as `[]`) the data file and loads it. Blocking.
    pub fn open(path: impl Into<PathBuf>) -> Result<Replica, StoreError> {
        Replica::open_on(Arc::new(OsFs), path)
    }

    /// [`Replica::open`] on another file system: a test's double of the disk.
    pub fn open_on(fs: Arc<dyn Fs>, path: impl Into<PathBuf>) -> Result<Replica, StoreError> {
        Ok(Replica {
            core: Arc::new(Core::open(fs, path.into())?),
        })
    }

    /// Stores the proposals of consecutive log entries, in log order, with
    /// one write and one `fdatasync`; one answer per proposal, `None` for
    /// one the file had applied already (its position is at or before the
    /// file's last). Blocking.
    pub fn apply(&self, proposals: &[Proposal<'_>]) -> Result<Vec<Option<Answer>>, StoreError> {
        let applied = self.applied();
        let fresh: Vec<Proposal<'_>> = proposals
            .iter()
            .filter(|p| p.raft > applied)
            .copied()
            .collect();
        let mut answers = self.core.write(&fresh)?.into_iter();
        Ok(proposals
            .iter()
            .map(|p| {
                if p.raft > applied {
                    answers.next()
                } else {
                    None
                }
            })
            .collect())
    }

    /// The last Raft position the file holds a task for.
    pub fn applied(&self) -> Option<RaftPosition> {
        state::read(&self.core.index).last_raft()
    }

    /// The last entry the file surely holds every task of: the one before
    /// its last task's entry. A crash while an entry's tasks were written
    /// may have left only the first of them, and the file cannot tell, so
    /// after a restart the last entry is applied again: [`Replica::apply`]
    /// skips the tasks the file has and adds the rest.
    pub fn applied_whole(&self) -> Option<RaftPosition> {
        state::read(&self.core.index).before_last_entry()
    }

    /// The file up to its last task, closed: a snapshot of the state.
    /// Blocking.
    pub fn snapshot(&self) -> Result<Vec<u8>, StoreError> {
        let mut file = lock(&self.core.file);
        file.begin_write(&self.core.index)?;
        let bytes = file.closed_prefix();
        file.end_write();
        bytes
    }

    /// Replaces the whole file by a snapshot's bytes, atomically, and
    /// loads it. Blocking.
    pub fn install(&self, bytes: &[u8]) -> Result<(), StoreError> {
        lock(&self.core.file).replace_with(bytes, &self.core.index)
    }

    /// Tasks with an id above `after`, at most `limit`, in id order.
    pub async fn page(&self, after: u64, limit: usize) -> Result<Page, StoreError> {
        self.core
            .clone()
            .read(move |index| index.page(after, limit))
            .await
    }

    /// The public JSON of one task.
    pub async fn get(&self, id: u64) -> Result<Option<Bytes>, StoreError> {
        self.core.clone().read(move |index| index.get(id)).await
    }

    /// How many tasks the file holds.
    pub async fn count(&self) -> Result<usize, StoreError> {
        self.core.clone().read(|index| index.len()).await
    }

    /// What the live page shows of the file.
    pub async fn live(&self) -> Result<crate::api::Live, StoreError> {
        let stats = self.core.stats.clone();
        self.core
            .clone()
            .read(move |index| crate::api::Live::of_store(index, &stats))
            .await
    }

    /// The file's metrics.
    pub fn stats(&self) -> &StoreStats {
        &self.core.stats
    }

    /// The data file's path.
    pub fn path(&self) -> &Path {
        &self.core.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewEntry;
    use crate::task::ValidTask;

    fn entry(titulo: &str, key: Option<&str>) -> NewEntry {
        NewEntry {
            task: ValidTask {
                titulo: titulo.into(),
                descripcion: None,
                completada: false,
                cliente: Some("raft".into()),
            },
            idempotency_key: key.map(str::to_owned),
        }
    }

    fn at(index: u64) -> Option<RaftPosition> {
        Some(RaftPosition {
            term: 1,
            index,
            slot: 0,
        })
    }

    /// The same log entries: `(titulo, key)` at indexes 2, 3, ...
    fn log() -> Vec<NewEntry> {
        vec![
            entry("a", Some("k1")),
            entry("b", None),
            entry("a", Some("k1")), // a client's retry on a new leader
            entry("c", Some("k1")), // the key reused with another body
            entry("d", None),
        ]
    }

    fn proposals(entries: &[NewEntry], first_index: u64) -> Vec<Proposal<'_>> {
        entries
            .iter()
            .enumerate()
            .map(|(i, entry)| Proposal {
                entry,
                creada_en: "2026-12-01T00:00:00.000Z",
                raft: at(first_index + i as u64),
            })
            .collect()
    }

    #[test]
    fn nodes_applying_the_same_log_hold_byte_identical_files_and_answers() {
        let dir = tempfile::tempdir().unwrap();
        let entries = log();
        let one = Replica::open(dir.path().join("one.json")).unwrap();
        let two = Replica::open(dir.path().join("two.json")).unwrap();
        // One node applies entry by entry, the other all at once.
        let mut answers_one = Vec::new();
        for p in &proposals(&entries, 2) {
            answers_one.extend(one.apply(std::slice::from_ref(p)).unwrap());
        }
        assert_eq!(one.applied(), at(6), "d, the last entry with a task");
        let answers_two = two.apply(&proposals(&entries, 2)).unwrap();
        assert_eq!(answers_one, answers_two);
        let bytes = |r: &Replica| std::fs::read(r.path()).unwrap();
        assert_eq!(bytes(&one), bytes(&two));
        let tasks: Vec<serde_json::Value> = serde_json::from_slice(&bytes(&one)).unwrap();
        assert_eq!(
            tasks.len(),
            3,
            "a, b, d: the retry and the conflict store nothing"
        );
        let replay = answers_one[2].clone().unwrap().unwrap();
        assert_eq!((replay.id, replay.created), (1, false));
        assert_eq!(answers_one[3], Some(Err(KeyConflict { id: 1 })));
        assert_eq!(tasks[2]["raft"]["index"], 6);
    }

    #[test]
    fn entries_the_file_holds_already_are_never_applied_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tasks.json");
        let entries = log();
        let replica = Replica::open(&path).unwrap();
        replica.apply(&proposals(&entries[..2], 2)).unwrap();
        drop(replica);
        // After a restart the log is applied again from an older point.
        let replica = Replica::open(&path).unwrap();
        assert_eq!(replica.applied(), at(3));
        let answers = replica.apply(&proposals(&entries, 2)).unwrap();
        assert_eq!(answers[0], None);
        assert_eq!(answers[1], None);
        assert!(answers[4].is_some());
        let tasks: Vec<serde_json::Value> =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(tasks.len(), 3);
    }

    #[test]
    fn an_entry_a_crash_cut_short_is_completed_by_applying_it_again_not_doubled() {
        let dir = tempfile::tempdir().unwrap();
        let tasks = [
            entry("a", None),
            entry("b", Some("kb")),
            entry("c", None),
            entry("d", None),
        ];
        let at = |index, slot| {
            Some(RaftPosition {
                term: 1,
                index,
                slot,
            })
        };
        let task = |i: usize, index, slot| Proposal {
            entry: &tasks[i],
            creada_en: "2026-12-01T00:00:00.000Z",
            raft: at(index, slot),
        };
        // Entry 2 holds a; entry 3 holds b, c and d.
        let entry_3 = [task(1, 3, 0), task(2, 3, 1), task(3, 3, 2)];
        let whole = Replica::open(dir.path().join("whole.json")).unwrap();
        whole.apply(&[task(0, 2, 0)]).unwrap();
        whole.apply(&entry_3).unwrap();
        assert_eq!(whole.applied(), at(3, 2));
        assert_eq!(whole.applied_whole(), at(2, 0));

        // A crash while entry 3 was written left only b and c of it.
        let path = dir.path().join("cut.json");
        let cut = Replica::open(&path).unwrap();
        cut.apply(&[task(0, 2, 0)]).unwrap();
        cut.apply(&entry_3[..2]).unwrap();
        drop(cut);
        let cut = Replica::open(&path).unwrap();
        assert_eq!(cut.applied(), at(3, 1));
        assert_eq!(
            cut.applied_whole(),
            at(2, 0),
            "entry 3 may be cut short: only entry 2 is surely whole"
        );
        // Applied again from there, entry 3 adds only what is missing.
        let answers = cut.apply(&entry_3).unwrap();
        assert_eq!(answers[..2], [None, None]);
        let d = answers[2].clone().unwrap().unwrap();
        assert_eq!((d.id, d.created), (4, true));
        let bytes = |r: &Replica| std::fs::read(r.path()).unwrap();
        assert_eq!(bytes(&cut), bytes(&whole), "as if nothing had happened");
        let file: Vec<serde_json::Value> = serde_json::from_slice(&bytes(&cut)).unwrap();
        assert_eq!(
            file[3]["raft"],
            serde_json::json!({"term": 1, "index": 3, "slot": 2})
        );
        assert_eq!(
            file[1]["raft"],
            serde_json::json!({"term": 1, "index": 3}),
            "an entry's first task is written as before"
        );
    }

    #[test]
    fn a_snapshot_installed_elsewhere_gives_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let entries = log();
        let leader = Replica::open(dir.path().join("leader.json")).unwrap();
        assert_eq!(leader.snapshot().unwrap(), b"[]\n");
        leader.apply(&proposals(&entries[..4], 2)).unwrap();
        let snapshot = leader.snapshot().unwrap();
        let behind = Replica::open(dir.path().join("behind.json")).unwrap();
        behind.apply(&proposals(&entries[..1], 2)).unwrap();
        behind.install(&snapshot).unwrap();
        assert_eq!(behind.applied(), leader.applied());
        // Both go on with the rest of the log.
        leader.apply(&proposals(&entries[4..], 6)).unwrap();
        behind.apply(&proposals(&entries, 2)).unwrap();
        assert_eq!(
            std::fs::read(leader.path()).unwrap(),
            std::fs::read(behind.path()).unwrap()
        );
    }
}
