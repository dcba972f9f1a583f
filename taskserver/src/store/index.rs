//! The in-memory copy of the data file that reads are answered from.
//!
//! Each task is kept only as its public JSON (what a `GET` returns), packed
//! into chunks of about [`CHUNK`] bytes separated by `,\n`, plus a small slot
//! per task (id, chunk, offset, length) sorted by id. So:
//! - memory is about the file's size plus 24 bytes a task (no parsed structs);
//! - a range of tasks is a few slices of shared chunks: `GET /tareas` with a
//!   million tasks copies at most one chunk's worth, from the one still growing;
//! - a lookup by id is a binary search.

use std::collections::HashMap;

use bytes::Bytes;

use crate::task::{RaftPosition, Record};

/// Size at which the growing chunk is frozen into a shared one.
const CHUNK: usize = 1 << 20;
/// Between two tasks in a chunk, and between chunks in a response.
const SEP: &[u8] = b",\n";

/// Where one task's JSON is.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// The task id: slots are sorted by it.
    id: u64,
    /// Index into `frozen`, or `frozen.len()` for the growing chunk.
    chunk: u32,
    /// Offset of the task's JSON in its chunk.
    start: u32,
    /// Length of the task's JSON.
    len: u32,
}

/// All tasks of the file, in id order.
#[derive(Debug, Default)]
pub struct Index {
    /// Full chunks, shared with responses being sent.
    frozen: Vec<Bytes>,
    /// The chunk that new tasks are appended to.
    growing: Vec<u8>,
    /// One per task, sorted by id.
    slots: Vec<Slot>,
    /// Idempotency key to task id, for every task stored with a key.
    /// foldhash rather than SipHash: hashing a million keys at start-up was
    /// a fifth of the start-up time; its per-process seed keeps it
    /// unpredictable to clients.
    keys: HashMap<Box<str>, u64, foldhash::fast::RandomState>,
    /// In cluster mode, the largest Raft position of the tasks: how far the
    /// file has applied the log.
    last_raft: Option<RaftPosition>,
    /// In cluster mode, the last position of the entry before `last_raft`'s:
    /// the last entry the file surely holds whole.
    before_last_entry: Option<RaftPosition>,
    /// Tasks per `cliente` ("" for none): what the live page shows, kept
    /// as tasks come so that it never walks a million of them.
    clients: HashMap<Box<str>, u64, foldhash::fast::RandomState>,
}

/// A run of tasks ready to be sent: the JSON of each, `,\n`-separated, as
/// shared slices. Wrap it in `[` and `]` to get the JSON array.
#[derive(Debug, Default)]
pub struct Page {
    /// The pieces, in order, already separated.
    pub parts: Vec<Bytes>,
    /// How many tasks the pieces hold.
    pub count: usize,
}

impl Index {
    /// An empty index with room for about `tasks` tasks, so loading a big
    /// file does not grow and rehash its tables again and again.
    pub fn with_capacity(tasks: usize) -> Index {
        Index {
            slots: Vec::with_capacity(tasks),
            keys: HashMap::with_capacity_and_hasher(tasks, Default::default()),
            ..Index::default()
        }
    }

    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are no tasks.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The largest id, 0 when empty: the next id is one more.
    pub fn max_id(&self) -> u64 {
        self.last_id().unwrap_or(0)
    }

    /// The id of the last task, if there is one.
    pub fn last_id(&self) -> Option<u64> {
        self.slots.last().map(|s| s.id)
    }

    /// Adds a record whose id is larger than every id so far.
    pub fn push(&mut self, record: &Record) {
        debug_assert!(record.id > self.max_id(), "ids must increase");
        if self.growing.len() >= CHUNK {
            self.frozen
                .push(Bytes::from(std::mem::take(&mut self.growing)));
        }
        if !self.growing.is_empty() {
            self.growing.extend_from_slice(SEP);
        }
        // Serialized straight into the chunk: no buffer per task at start-up.
        let start = self.growing.len();
        record.write_public_json(&mut self.growing);
        self.slots.push(Slot {
            id: record.id,
            chunk: self.frozen.len() as u32,
            start: start as u32,
            len: (self.growing.len() - start) as u32,
        });
        if let Some(key) = &record.idempotency_key {
            self.keys.insert(key.as_str().into(), record.id);
        }
        let client = record.cliente.as_deref().unwrap_or("");
        match self.clients.get_mut(client) {
            Some(n) => *n += 1,
            None => {
                self.clients.insert(client.into(), 1);
            }
        }
        if record.raft > self.last_raft {
            if let (Some(last), Some(new)) = (self.last_raft, record.raft) {
                if new.index != last.index {
                    self.before_last_entry = Some(last);
                }
            }
            self.last_raft = record.raft;
        }
    }

    /// How many tasks each `cliente` has ("" for tasks without one).
    pub fn clients(&self) -> std::collections::BTreeMap<String, u64> {
        self.clients
            .iter()
            .map(|(name, n)| (name.to_string(), *n))
            .collect()
    }

    /// The largest Raft position among the tasks (cluster mode).
    pub fn last_raft(&self) -> Option<RaftPosition> {
        self.last_raft
    }

    /// The position of the last task of the entry before the last task's
    /// (cluster mode): the last entry whose tasks the file surely holds
    /// all of. A crash in the middle of an apply can leave only the first
    /// tasks of the last entry.
    pub fn before_last_entry(&self) -> Option<RaftPosition> {
        self.before_last_entry
    }

    /// Adds `record` if its id is larger than every id so far; returns
    /// whether it did. Loading streams a file through this, and falls back
    /// to sorting when a hand-edited file breaks the order.
    pub fn push_increasing(&mut self, record: &Record) -> bool {
        let increasing = record.id > self.max_id();
        if increasing {
            self.push(record);
        }
        increasing
    }

    /// The id of the task stored with this idempotency key.
    pub fn id_for_key(&self, key: &str) -> Option<u64> {
        self.keys.get(key).copied()
    }

    /// The public JSON of one task.
    pub fn get(&self, id: u64) -> Option<Bytes> {
        let i = self.slots.binary_search_by_key(&id, |s| s.id).ok()?;
        let slot = self.slots[i];
        Some(self.slice(slot.chunk, slot.range()))
    }

    /// The public JSON of the task pushed last (empty when there is none).
    pub fn last_json(&self) -> Bytes {
        self.slots
            .last()
            .map(|slot| self.slice(slot.chunk, slot.range()))
            .unwrap_or_default()
    }

    /// Drops a task's slot but not its key: an index that disagrees with
    /// itself, for the tests of what happens then.
    #[cfg(test)]
    pub fn forget_task_keeping_its_key(&mut self, id: u64) {
        self.slots.retain(|s| s.id != id);
    }

    /// Tasks with an id above `after`, at most `limit` of them.
    pub fn page(&self, after: u64, limit: usize) -> Page {
        let from = self.slots.partition_point(|s| s.id <= after);
        let to = from.saturating_add(limit).min(self.slots.len());
        let mut page = Page {
            parts: Vec::new(),
            count: to - from,
        };
        let mut i = from;
        while i < to {
            // The longest run of slots in one chunk is one contiguous slice,
            // separators included.
            let chunk = self.slots[i].chunk;
            let mut j = i;
            while j + 1 < to && self.slots[j + 1].chunk == chunk {
                j += 1;
            }
            if !page.parts.is_empty() {
                page.parts.push(Bytes::from_static(SEP));
            }
            let start = self.slots[i].start as usize;
            let end = self.slots[j].range().end;
            page.parts.push(self.slice(chunk, start..end));
            i = j + 1;
        }
        page
    }

    /// Bytes `range` of a chunk: shared for a frozen chunk, copied (only
    /// that range) from the growing one.
    fn slice(&self, chunk: u32, range: std::ops::Range<usize>) -> Bytes {
        match self.frozen.get(chunk as usize) {
            Some(bytes) => bytes.slice(range),
            None => Bytes::copy_from_slice(&self.growing[range]),
        }
    }
}

impl Slot {
    fn range(&self) -> std::ops::Range<usize> {
        self.start as usize..(self.start + self.len) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64, titulo: &str) -> Record {
        Record {
            id,
            titulo: titulo.into(),
            descripcion: None,
            completada: false,
            cliente: None,
            creada_en: None,
            idempotency_key: Some(format!("k{id}")),
            raft: None,
        }
    }

    fn array(page: &Page) -> Vec<u64> {
        let mut text = b"[".to_vec();
        for part in &page.parts {
            text.extend_from_slice(part);
        }
        text.push(b']');
        let tasks: Vec<serde_json::Value> = serde_json::from_slice(&text).unwrap();
        assert_eq!(tasks.len(), page.count);
        tasks.iter().map(|t| t["id"].as_u64().unwrap()).collect()
    }

    #[test]
    fn pages_cross_chunks_and_stay_valid_json() {
        let mut index = Index::default();
        let long = "x".repeat(150);
        for id in 1..=20_000 {
            index.push(&record(id, &long));
        }
        assert!(index.frozen.len() >= 2, "the test must cross chunks");
        assert_eq!(
            array(&index.page(0, usize::MAX)),
            (1..=20_000).collect::<Vec<_>>()
        );
        assert_eq!(
            array(&index.page(6_990, 30)),
            (6_991..=7_020).collect::<Vec<_>>()
        );
        assert_eq!(array(&index.page(20_000, 10)), Vec::<u64>::new());
        assert_eq!(index.page(19_999, 0).count, 0);
    }

    #[test]
    fn lookups_by_id_and_key() {
        let mut index = Index::default();
        for id in [3, 5, 9] {
            index.push(&record(id, "t"));
        }
        let five: serde_json::Value = serde_json::from_slice(&index.get(5).unwrap()).unwrap();
        assert_eq!(five["id"], 5);
        assert!(index.get(4).is_none());
        assert_eq!(index.id_for_key("k9"), Some(9));
        assert_eq!(index.max_id(), 9);
    }
}
