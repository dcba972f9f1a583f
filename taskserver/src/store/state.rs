//! The data file and its in-memory index, kept in step.
//!
//! Everything here runs on blocking threads, under the store's mutex, with the
//! OS lock on the file held (see [`State::locked`]). Nothing in this module
//! knows about HTTP or about other threads.
//!
//! # The file's shape and how it grows
//!
//! ```text
//! [
//! {"id":1,...},
//! {"id":2,...}            <- the anchor: the last entry, as bytes on disk
//! ]                       <- the tail: whatever follows the anchor
//! ```
//!
//! An append overwrites the tail with `,\n{"id":3,...}\n]\n`: one positioned
//! write at the end of the anchor, whatever the file's size, never a rename.
//!
//! # Noticing other writers
//!
//! Before every read and every commit, [`State::catch_up`] rereads the bytes
//! from the anchor to the end of the file (usually a few hundred bytes).
//! Unchanged anchor, more entries after it: another process appended, and only
//! those entries are parsed. Anchor gone or different (a person emptied or
//! edited the file), or the path now names another file: the whole file is
//! read again, and ids continue from its largest.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use super::index::Index;
use super::scan::{self, Parsed, Start, Tail};
use super::{Inserted, KeyConflict, NewEntry, StoreError, StoreStats};
use crate::task::Record;

/// Which OS lock an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// Reads: many at once, none while a commit is under way.
    Shared,
    /// Commits and repairs: one at a time across every process.
    Exclusive,
}

/// What a step of catching up found that it may not do under a shared lock.
enum CatchUp {
    Done,
    NeedsExclusive,
}

/// The data file, its index and what is known of its last bytes.
#[derive(Debug)]
pub struct State {
    /// Where the file is; reopened if the path comes to name another file.
    path: PathBuf,
    /// The open data file: read, appended to and locked through this handle.
    file: File,
    /// Device and inode of `file`, to notice a file replaced under its path.
    identity: (u64, u64),
    /// Every task in the file, in id order: what reads are answered from.
    index: Index,
    /// Offset of the anchor: the last entry (or the `[` of an empty array).
    anchor_at: u64,
    /// The anchor's bytes as they are on disk, to notice a changed file.
    anchor: Vec<u8>,
    /// The bytes after the anchor (`\n]\n`): what a rollback restores.
    tail: Vec<u8>,
    /// Length of the file as last seen.
    len: u64,
    /// Set when the file may no longer match what we know of it (a failed
    /// rollback, a broken file, a poisoned mutex): reread it whole next time.
    needs_reload: bool,
    /// Metrics the store updates.
    stats: StoreStats,
}

impl State {
    /// Opens (or creates) the data file. The contents are read by the first
    /// [`State::locked`] call.
    pub fn open(path: PathBuf, stats: StoreStats) -> Result<State, StoreError> {
        let file = open_file(&path)?;
        let identity = identity_of(&file, &path)?;
        Ok(State {
            path,
            file,
            identity,
            index: Index::default(),
            anchor_at: 0,
            anchor: Vec::new(),
            tail: Vec::new(),
            len: 0,
            needs_reload: true,
            stats,
        })
    }

    /// The in-memory index; only meaningful inside [`State::locked`].
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Marks the state as untrusted, so the next operation rereads the file.
    pub fn distrust(&mut self) {
        self.needs_reload = true;
    }

    /// Runs `f` with the OS lock held and the index caught up with the file.
    ///
    /// Lock order: the caller holds the store's mutex; this takes the OS lock.
    /// A shared lock is upgraded (released, retaken exclusive) when the file
    /// needs a repair or its first `[]`.
    pub fn locked<T>(
        &mut self,
        want: Lock,
        f: impl FnOnce(&mut State) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut lock = want;
        loop {
            let taken = match lock {
                Lock::Shared => fs4::FileExt::lock_shared(&self.file),
                Lock::Exclusive => fs4::FileExt::lock(&self.file),
            };
            taken.map_err(|e| self.io("lock", e))?;
            // Checked with the lock held: a file replaced while we waited
            // for the lock must not be the one we write to.
            let result = match self.path_metadata() {
                Ok(Some(m)) if (m.dev(), m.ino()) == self.identity => {
                    match self.catch_up(lock, m.len()) {
                        Ok(CatchUp::Done) => f(self),
                        Ok(CatchUp::NeedsExclusive) => {
                            let _ = fs4::FileExt::unlock(&self.file);
                            lock = Lock::Exclusive;
                            continue;
                        }
                        Err(e) => Err(e),
                    }
                }
                Ok(_) => {
                    let _ = fs4::FileExt::unlock(&self.file);
                    self.reopen()?;
                    continue;
                }
                Err(e) => Err(e),
            };
            // Closing or unlocking cannot lose data: everything was synced.
            let _ = fs4::FileExt::unlock(&self.file);
            return result;
        }
    }

    /// Opens the file the path names now (an editor saved it by rename, or
    /// it was deleted and is created again as `[]`), so we never write to a
    /// file no longer reachable by its name.
    fn reopen(&mut self) -> Result<(), StoreError> {
        tracing::warn!(path = %self.path.display(), "the data file was replaced or removed; reopening it");
        self.file = open_file(&self.path)?;
        self.identity = identity_of(&self.file, &self.path)?;
        self.needs_reload = true;
        Ok(())
    }

    /// The metadata of the file the path names now; `None` if none. When
    /// its device and inode are ours, its length is our file's length too:
    /// one `statx` per operation answers both questions.
    fn path_metadata(&self) -> Result<Option<std::fs::Metadata>, StoreError> {
        match std::fs::metadata(&self.path) {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io("inspect", e)),
        }
    }

    /// Brings the index up to date with the file (see the module docs),
    /// whose length is `len`.
    fn catch_up(&mut self, lock: Lock, len: u64) -> Result<CatchUp, StoreError> {
        if self.needs_reload {
            return self.reload(lock, len);
        }
        let anchor_end = self.anchor_at + self.anchor.len() as u64;
        if len < anchor_end {
            return self.reload(lock, len);
        }
        let mut buf = vec![0; (len - self.anchor_at) as usize];
        self.file
            .read_exact_at(&mut buf, self.anchor_at)
            .map_err(|e| self.io("read", e))?;
        if !buf.starts_with(&self.anchor) {
            return self.reload(lock, len);
        }
        let rest = &buf[self.anchor.len()..];
        if len == self.len && rest == self.tail.as_slice() {
            return Ok(CatchUp::Done);
        }
        let mut appended = Vec::new();
        let start = Start::AfterEntry {
            empty: self.index.is_empty(),
        };
        let Ok(scan) = scan::scan(rest, start, |p| appended.push(p)) else {
            // Reread whole, so the error names the right line.
            return self.reload(lock, len);
        };
        if appended
            .iter()
            .zip(std::iter::once(self.index.max_id()).chain(appended.iter().map(|p| p.record.id)))
            .any(|(p, before)| p.record.id <= before)
        {
            // Someone appended ids out of order by hand: rebuild sorted.
            return self.reload(lock, len);
        }
        if matches!(scan.tail, Tail::Torn { .. }) && lock == Lock::Shared {
            return Ok(CatchUp::NeedsExclusive);
        }
        for p in &appended {
            self.index.push(&p.record);
        }
        let last = scan.last.map(|r| shift(r, self.anchor.len()));
        self.settle(
            &buf,
            self.anchor_at,
            last,
            shift_tail(scan.tail, self.anchor.len()),
        )?;
        Ok(CatchUp::Done)
    }

    /// Reads the whole file, whose length is `len`, and rebuilds the index.
    fn reload(&mut self, lock: Lock, len: u64) -> Result<CatchUp, StoreError> {
        self.needs_reload = true;
        let started = Instant::now();
        // A file of ours, closed or torn by a crash, is read in pieces, so
        // the whole file is never held next to the index built from it;
        // anything else takes the whole-file path below, with its sorting
        // and precise errors.
        let loaded = load_in_pieces(&self.file, len, PIECE).map_err(|e| self.io("read", e))?;
        if let Some(loaded) = loaded {
            if matches!(loaded.tail, Tail::Torn { .. }) && lock == Lock::Shared {
                return Ok(CatchUp::NeedsExclusive);
            }
            self.index = loaded.index;
            self.anchor_at = loaded.anchor_at;
            self.anchor = loaded.anchor;
            self.settle(&loaded.rest, loaded.rest_at, None, loaded.tail)?;
            self.needs_reload = false;
            self.log_loaded(len, started);
            return Ok(CatchUp::Done);
        }
        let mut buf = vec![0; len as usize];
        self.file
            .read_exact_at(&mut buf, 0)
            .map_err(|e| self.io("read", e))?;
        let (index, scan) = build_index(&buf).map_err(|broken| StoreError::Corrupt {
            path: self.path.clone(),
            broken,
        })?;
        if matches!(scan.tail, Tail::Empty | Tail::Torn { .. }) && lock == Lock::Shared {
            return Ok(CatchUp::NeedsExclusive);
        }
        self.index = index;
        let last = match (scan.last, scan.open) {
            (Some(last), _) => Some(last),
            (None, Some(open)) => Some(open..open + 1),
            (None, None) => None,
        };
        self.settle(&buf, 0, last, scan.tail)?;
        self.needs_reload = false;
        self.log_loaded(len, started);
        Ok(CatchUp::Done)
    }

    fn log_loaded(&self, len: u64, started: Instant) {
        tracing::info!(
            path = %self.path.display(),
            tasks = self.index.len(),
            bytes = len,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "data file loaded"
        );
    }

    /// Records the new anchor and tail after a scan of `buf` (which starts at
    /// file offset `base`), repairing a torn tail or an empty file first.
    /// `last` is the new anchor within `buf`, `None` to keep the current one
    /// (which then ends at or after `base`).
    fn settle(
        &mut self,
        buf: &[u8],
        base: u64,
        last: Option<std::ops::Range<usize>>,
        tail: Tail,
    ) -> Result<(), StoreError> {
        if let Some(last) = &last {
            self.anchor_at = base + last.start as u64;
            self.anchor = buf[last.clone()].to_vec();
        }
        match tail {
            Tail::Closed { .. } => {
                let anchor_end = (self.anchor_at + self.anchor.len() as u64 - base) as usize;
                self.tail = buf[anchor_end..].to_vec();
                self.len = base + buf.len() as u64;
            }
            Tail::Empty => {
                // A missing or empty file starts as `[]`.
                self.rewrite_tail(0, b"[]\n")?;
                self.anchor_at = 0;
                self.anchor = b"[".to_vec();
                self.tail = b"]\n".to_vec();
                self.len = 3;
            }
            Tail::Torn { good_end, reason } => {
                let dropped = &buf[good_end..];
                let side = self.save_torn_tail(dropped)?;
                let at = base + good_end as u64;
                self.rewrite_tail(at, b"\n]\n")?;
                tracing::warn!(
                    path = %self.path.display(),
                    dropped_bytes = dropped.len(),
                    kept_tasks = self.index.len(),
                    side_file = %side.display(),
                    found = %reason,
                    "repaired an incomplete last entry left by a crash during a write; the dropped bytes are kept in the side file"
                );
                self.tail = b"\n]\n".to_vec();
                self.len = at + 3;
            }
        }
        self.stats.tasks.set(self.index.len() as i64);
        Ok(())
    }

    /// Truncates the file at `at`, writes `bytes` there and syncs.
    fn rewrite_tail(&mut self, at: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let result = self
            .file
            .set_len(at)
            .and_then(|()| self.file.write_all_at(bytes, at))
            .and_then(|()| self.file.sync_data());
        result.map_err(|e| self.io("repair", e))
    }

    /// Keeps the bytes a repair drops in `<data file>.torn-<millis>`.
    fn save_torn_tail(&self, dropped: &[u8]) -> Result<PathBuf, StoreError> {
        let millis = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".torn-{millis}"));
        let side = PathBuf::from(name);
        let write = || -> io::Result<()> {
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&side)?;
            file.write_all_at(dropped, 0)?;
            file.sync_all()?;
            sync_parent(&side)
        };
        write().map_err(|e| StoreError::Io {
            action: "save the torn tail (nothing was repaired) to",
            path: side.clone(),
            error: e.into(),
        })?;
        Ok(side)
    }

    /// Stores new tasks: assigns ids, appends them in one write, syncs.
    ///
    /// Called by the committer inside [`State::locked`] with the exclusive
    /// lock. Either every new task of the batch is durable, or none is and
    /// the file is as it was.
    pub fn commit(
        &mut self,
        items: &[&NewEntry],
    ) -> Result<Vec<Result<Inserted, KeyConflict>>, StoreError> {
        enum Outcome {
            Done(Result<Inserted, KeyConflict>),
            /// The n-th new record; `created` is false for an in-batch replay.
            New(usize, bool),
        }
        let creada_en = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let mut next_id = self.index.max_id() + 1;
        let mut records: Vec<Record> = Vec::new();
        let mut outcomes = Vec::with_capacity(items.len());
        for item in items {
            let key = item.idempotency_key.as_deref();
            if let Some(id) = key.and_then(|k| self.index.id_for_key(k)) {
                let json = self.index.get(id).expect("keys point at stored tasks");
                let stored: Record = serde_json::from_slice(&json).expect("the index holds tasks");
                outcomes.push(Outcome::Done(if stored.same_task(&item.task) {
                    Ok(Inserted {
                        id,
                        json,
                        created: false,
                    })
                } else {
                    Err(KeyConflict { id })
                }));
                continue;
            }
            if let Some(n) = key.and_then(|k| {
                records
                    .iter()
                    .position(|r| r.idempotency_key.as_deref() == Some(k))
            }) {
                outcomes.push(if records[n].same_task(&item.task) {
                    Outcome::New(n, false)
                } else {
                    Outcome::Done(Err(KeyConflict { id: records[n].id }))
                });
                continue;
            }
            outcomes.push(Outcome::New(records.len(), true));
            records.push(Record::new(
                next_id,
                &item.task,
                creada_en.clone(),
                key.map(str::to_owned),
            ));
            next_id += 1;
        }
        let mut public = Vec::with_capacity(records.len());
        if !records.is_empty() {
            self.append(&records)?;
            for r in &records {
                self.index.push(r);
                public.push(self.index.get(r.id).expect("just pushed"));
            }
            self.stats.tasks.set(self.index.len() as i64);
        }
        Ok(outcomes
            .into_iter()
            .map(|o| match o {
                Outcome::Done(result) => result,
                Outcome::New(n, created) => Ok(Inserted {
                    id: records[n].id,
                    json: public[n].clone(),
                    created,
                }),
            })
            .collect())
    }

    /// Writes `records` after the anchor and syncs; rolls back on failure.
    fn append(&mut self, records: &[Record]) -> Result<(), StoreError> {
        let at = self.anchor_at + self.anchor.len() as u64;
        let mut bytes = Vec::with_capacity(records.len() * 200 + 3);
        let mut last = 0..0;
        for (i, r) in records.iter().enumerate() {
            let first_in_file = i == 0 && self.index.is_empty();
            bytes.extend_from_slice(if first_in_file { b"\n" } else { b",\n" });
            let start = bytes.len();
            bytes.extend_from_slice(&r.file_json());
            last = start..bytes.len();
        }
        bytes.extend_from_slice(b"\n]\n");
        let new_len = at + bytes.len() as u64;

        let written = self.file.write_all_at(&bytes, at).and_then(|()| {
            // A hand-written tail longer than ours leaves whitespace only,
            // but trimming it keeps the file exactly what we wrote.
            if new_len < self.len {
                self.file.set_len(new_len)?;
            }
            let started = Instant::now();
            self.file.sync_data()?;
            self.stats
                .fsync_seconds
                .observe(started.elapsed().as_secs_f64());
            Ok(())
        });
        if let Err(e) = written {
            self.roll_back(at);
            return Err(self.io("write", e));
        }
        self.stats.batch_size.observe(records.len() as f64);
        self.stats.written.inc_by(records.len() as u64);
        self.anchor_at = at + last.start as u64;
        self.anchor = bytes[last].to_vec();
        self.tail = b"\n]\n".to_vec();
        self.len = new_len;
        Ok(())
    }

    /// Puts back the bytes an append overwrote (a failed or short write, a
    /// failed sync), so the file is again what it was before the commit.
    fn roll_back(&mut self, at: u64) {
        let restored = self
            .file
            .set_len(self.len)
            .and_then(|()| self.file.write_all_at(&self.tail, at))
            .and_then(|()| self.file.sync_data());
        if let Err(e) = restored {
            // The file may now end in a partial entry: the next operation
            // rereads it and repairs it like a crash's leftovers.
            tracing::error!(path = %self.path.display(), error = %e, "could not roll back a failed write; the file will be checked and repaired before the next operation");
            self.needs_reload = true;
        }
    }

    fn io(&self, action: &'static str, e: io::Error) -> StoreError {
        StoreError::Io {
            action,
            path: self.path.clone(),
            error: e.into(),
        }
    }
}

/// Bytes read at a time when loading a file.
const PIECE: usize = 8 << 20;

/// A data file loaded by [`load_in_pieces`], ready for [`State::settle`].
struct Loaded {
    /// Every complete task.
    index: Index,
    /// Offset of the last complete entry, or of the `[` of an empty array.
    anchor_at: u64,
    /// Its bytes.
    anchor: Vec<u8>,
    /// The last bytes read, from file offset `rest_at` to the end of the
    /// file; they hold the end of the anchor, or start just after it.
    rest: Vec<u8>,
    /// Where `rest` starts in the file.
    rest_at: u64,
    /// How `rest` ends: closed, or torn by a crash (offsets in `rest`).
    tail: Tail,
}

/// Loads the file `piece` bytes at a time, carrying an unfinished entry over
/// to the next piece, when it is a file we could have written: an array of
/// tasks with increasing ids, closed, or with its last entry torn by a crash
/// (the scan of the last piece tells the same torn tail as a scan of the
/// whole file would, since both go on from the same complete entry).
/// Returns `None` for anything else (empty, broken, ids out of order, a
/// piece ending in a way only the whole file explains): the caller then
/// reads the whole file, which sorts, creates or refuses it.
fn load_in_pieces(file: &File, len: u64, piece: usize) -> io::Result<Option<Loaded>> {
    let mut index = Index::with_capacity(len as usize / 160);
    // Unscanned bytes, starting at file offset `base`.
    let mut carry: Vec<u8> = Vec::new();
    let mut base = 0u64;
    let mut read_to = 0u64;
    let mut start = Start::File;
    let mut anchor: Option<(u64, Vec<u8>)> = None;
    loop {
        let n = piece.min((len - read_to) as usize);
        let old = carry.len();
        carry.resize(old + n, 0);
        file.read_exact_at(&mut carry[old..], read_to)?;
        read_to += n as u64;
        let mut sorted = true;
        let Ok(scan) = scan::scan(&carry, start, |p: Parsed| {
            sorted = sorted && index.push_increasing(&p.record);
        }) else {
            return Ok(None);
        };
        if !sorted {
            return Ok(None);
        }
        if let Some(open) = scan.open {
            anchor = Some((base + open as u64, b"[".to_vec()));
        }
        if let Some(last) = scan.last {
            anchor = Some((base + last.start as u64, carry[last].to_vec()));
        }
        match scan.tail {
            Tail::Closed { .. } | Tail::Torn { .. } if read_to == len => {
                let Some((anchor_at, anchor)) = anchor else {
                    return Ok(None);
                };
                return Ok(Some(Loaded {
                    index,
                    anchor_at,
                    anchor,
                    rest: carry,
                    rest_at: base,
                    tail: scan.tail,
                }));
            }
            // Only whitespace so far, before the `[`: read on.
            Tail::Empty if read_to < len => {}
            // The piece ended inside an entry, between two, or after the
            // closing `]` with more of the file to read: go on from the end
            // of the last complete entry (or of the `[`).
            Tail::Torn { .. } | Tail::Closed { .. } if read_to < len => {
                let Some((anchor_at, anchor)) = &anchor else {
                    return Ok(None);
                };
                let keep_from = (anchor_at + anchor.len() as u64 - base) as usize;
                carry.drain(..keep_from);
                base += keep_from as u64;
                start = Start::AfterEntry {
                    empty: index.is_empty(),
                };
            }
            _ => return Ok(None),
        }
    }
}

/// Builds the index of a whole file. Entries are streamed into the index;
/// a file whose ids are not increasing (edited by hand) is read a second
/// time and sorted, and one with a duplicate id is refused.
fn build_index(buf: &[u8]) -> Result<(Index, scan::Scan), scan::Broken> {
    // Our entries take about 200 bytes; a generous guess costs little.
    let mut index = Index::with_capacity(buf.len() / 160);
    let mut sorted = true;
    let scan = scan::scan(buf, Start::File, |p: Parsed| {
        sorted = sorted && index.push_increasing(&p.record);
    })?;
    if sorted {
        return Ok((index, scan));
    }
    let mut all: Vec<Parsed> = Vec::new();
    let scan = scan::scan(buf, Start::File, |p| all.push(p))?;
    all.sort_by_key(|p| p.record.id);
    let mut index = Index::default();
    for (i, p) in all.iter().enumerate() {
        if i > 0 && all[i - 1].record.id == p.record.id {
            let message = format!(
                "task id {} appears twice; ids must be unique: give one of them another id",
                p.record.id
            );
            let at = p.start.max(all[i - 1].start);
            return Err(scan::broken(buf, at, message));
        }
        index.push(&p.record);
    }
    Ok((index, scan))
}

fn shift(r: std::ops::Range<usize>, by: usize) -> std::ops::Range<usize> {
    r.start + by..r.end + by
}

fn shift_tail(tail: Tail, by: usize) -> Tail {
    match tail {
        Tail::Closed { close } => Tail::Closed { close: close + by },
        Tail::Torn { good_end, reason } => Tail::Torn {
            good_end: good_end + by,
            reason,
        },
        Tail::Empty => Tail::Empty,
    }
}

fn open_file(path: &Path) -> Result<File, StoreError> {
    let existed = path.exists();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| StoreError::Io {
            action: "open for reading and writing",
            path: path.to_owned(),
            error: e.into(),
        })?;
    if !existed {
        // The new file's name must survive a power cut too.
        sync_parent(path).map_err(|e| StoreError::Io {
            action: "sync the directory of",
            path: path.to_owned(),
            error: e.into(),
        })?;
    }
    Ok(file)
}

fn identity_of(file: &File, path: &Path) -> Result<(u64, u64), StoreError> {
    let m = file.metadata().map_err(|e| StoreError::Io {
        action: "inspect",
        path: path.to_owned(),
        error: e.into(),
    })?;
    Ok((m.dev(), m.ino()))
}

fn sync_parent(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64, titulo: &str) -> Record {
        Record {
            id,
            titulo: titulo.into(),
            descripcion: Some("línea 1\nlínea 2, \"citada\"".into()),
            completada: id % 2 == 0,
            cliente: Some("client1".into()),
            creada_en: Some("2026-11-23T10:00:00.000Z".into()),
            idempotency_key: Some(format!("run-{id}")),
        }
    }

    fn ours(records: &[Record]) -> Vec<u8> {
        if records.is_empty() {
            return b"[]\n".to_vec();
        }
        let lines: Vec<String> = records
            .iter()
            .map(|r| String::from_utf8(r.file_json()).unwrap())
            .collect();
        format!("[\n{}\n]\n", lines.join(",\n")).into_bytes()
    }

    /// What a load found, in terms both paths can be compared in.
    #[derive(Debug, PartialEq, Eq)]
    struct Outcome {
        /// Every task's public JSON, in order.
        json: Vec<u8>,
        tasks: usize,
        anchor_at: u64,
        anchor: Vec<u8>,
        end: End,
    }

    #[derive(Debug, PartialEq, Eq)]
    enum End {
        /// The bytes after the anchor.
        Closed(Vec<u8>),
        /// Where the repair cuts the file, and why.
        Torn { at: u64, reason: String },
    }

    /// What the whole-file path makes of `buf`; `None` when it refuses it
    /// or finds it empty.
    fn whole(buf: &[u8]) -> Option<Outcome> {
        let (index, scan) = build_index(buf).ok()?;
        let last = scan.last.or(scan.open.map(|open| open..open + 1))?;
        let end = match scan.tail {
            Tail::Closed { .. } => End::Closed(buf[last.end..].to_vec()),
            Tail::Torn { good_end, reason } => End::Torn {
                at: good_end as u64,
                reason,
            },
            Tail::Empty => return None,
        };
        Some(Outcome {
            json: index.page(0, usize::MAX).parts.concat(),
            tasks: index.len(),
            anchor_at: last.start as u64,
            anchor: buf[last].to_vec(),
            end,
        })
    }

    /// What the piecewise path makes of `buf`; `None` when it declines it.
    fn in_pieces(buf: &[u8], piece: usize) -> Option<Outcome> {
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, buf).unwrap();
        let loaded = load_in_pieces(&file, buf.len() as u64, piece).unwrap()?;
        let end = match loaded.tail {
            Tail::Closed { .. } => {
                let anchor_end = loaded.anchor_at + loaded.anchor.len() as u64 - loaded.rest_at;
                End::Closed(loaded.rest[anchor_end as usize..].to_vec())
            }
            Tail::Torn { good_end, reason } => End::Torn {
                at: loaded.rest_at + good_end as u64,
                reason,
            },
            Tail::Empty => panic!("an empty file is left to the whole-file path"),
        };
        Some(Outcome {
            json: loaded.index.page(0, usize::MAX).parts.concat(),
            tasks: loaded.index.len(),
            anchor_at: loaded.anchor_at,
            anchor: loaded.anchor,
            end,
        })
    }

    fn piece_sizes(len: usize) -> Vec<usize> {
        let mut sizes: Vec<usize> = (1..=300).collect();
        sizes.extend([500, 1000, 4096, len - 1, len, len + 1, PIECE]);
        sizes
    }

    #[test]
    fn pieces_of_any_size_load_a_clean_file_as_the_whole_file_does() {
        let records: Vec<Record> = (1..=25)
            .map(|i| record(i * 3, &format!("Tarea [{i}], de ñandú ]")))
            .collect();
        let pretty = serde_json::to_vec_pretty(&records).unwrap();
        for buf in [ours(&records), pretty, ours(&[]), b"  [ ]  ".to_vec()] {
            let expected = whole(&buf).expect("a clean file");
            assert!(matches!(expected.end, End::Closed(_)));
            for piece in piece_sizes(buf.len()) {
                let got = in_pieces(&buf, piece).unwrap_or_else(|| {
                    panic!(
                        "piece {piece} declined a clean file: {:?}",
                        String::from_utf8_lossy(&buf[..buf.len().min(40)])
                    )
                });
                assert!(got == expected, "piece {piece} differs");
            }
        }
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, &ours(&records)).unwrap();
        let loaded = load_in_pieces(&file, file.metadata().unwrap().len(), 100).unwrap();
        assert_eq!(loaded.unwrap().index.id_for_key("run-9"), Some(9));
    }

    /// A crash can cut an append anywhere: wherever it does, the piecewise
    /// load finds the same complete tasks and the same torn tail as the
    /// whole-file scan, whatever the piece size.
    #[test]
    fn pieces_of_any_size_find_the_torn_tail_the_whole_file_scan_finds() {
        let records: Vec<Record> = (1..=6)
            .map(|i| record(i, &format!("Tarea [{i}] ]")))
            .collect();
        let full = ours(&records);
        let before_last = ours(&records[..5]);
        let mut torn_files: Vec<Vec<u8>> = (2..full.len())
            .step_by(7)
            .map(|cut| full[..cut].to_vec())
            .collect();
        // An append that wrote only its comma over the old closing bytes.
        let mut comma = before_last[..before_last.len() - 3].to_vec();
        comma.extend_from_slice(b",]\n");
        torn_files.push(comma);
        // The file grew but the data never arrived: zeros after a cut.
        let mut zeros = full[..full.len() - 50].to_vec();
        zeros.extend_from_slice(&[0; 300]);
        torn_files.push(zeros);
        // The append's own last `]`, then zeros.
        let mut closed_zeros = full.clone();
        closed_zeros.extend_from_slice(&[0; 64]);
        torn_files.push(closed_zeros);

        let mut torn_seen = 0;
        for buf in &torn_files {
            let expected = whole(buf);
            torn_seen += matches!(
                expected,
                Some(Outcome {
                    end: End::Torn { .. },
                    ..
                })
            ) as usize;
            for piece in [
                1,
                2,
                3,
                5,
                7,
                11,
                13,
                17,
                23,
                37,
                64,
                100,
                1000,
                buf.len() - 1,
                buf.len(),
                PIECE,
            ] {
                let got = in_pieces(buf, piece);
                assert!(
                    got == expected,
                    "piece {piece}, file of {} bytes ending {:?}: {got:?} != {expected:?}",
                    buf.len(),
                    String::from_utf8_lossy(&buf[buf.len().saturating_sub(30)..])
                );
            }
        }
        assert!(
            torn_seen > torn_files.len() / 2,
            "the cases must be torn files"
        );
    }

    #[test]
    fn a_hand_edited_file_out_of_order_is_loaded_sorted() {
        let records: Vec<Record> = [5, 2, 9, 1].iter().map(|&i| record(i, "t")).collect();
        let (index, _) = build_index(&ours(&records)).unwrap();
        let json = index.page(0, usize::MAX).parts.concat();
        let ids: Vec<u64> =
            serde_json::from_slice::<Vec<Record>>(&[b"[", &json[..], b"]"].concat())
                .unwrap()
                .iter()
                .map(|r| r.id)
                .collect();
        assert_eq!(ids, vec![1, 2, 5, 9]);
        assert_eq!(index.id_for_key("run-9"), Some(9));
    }

    #[test]
    fn broken_unsorted_and_empty_files_are_left_to_the_whole_file_path() {
        let records: Vec<Record> = (1..=6).map(|i| record(i, "t")).collect();
        let full = ours(&records);
        let mut unsorted = records.clone();
        unsorted.swap(2, 4);
        let broken = String::from_utf8(full.clone())
            .unwrap()
            .replacen("\"id\":3", "\"id\":\"3\"", 1)
            .into_bytes();
        for buf in [ours(&unsorted), broken, b"".to_vec(), b"{}".to_vec()] {
            for piece in piece_sizes(buf.len().max(2)) {
                assert!(
                    in_pieces(&buf, piece).is_none(),
                    "piece {piece} took {buf:?}"
                );
            }
        }
    }
}
