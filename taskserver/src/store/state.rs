//! The data file, kept in step with the in-memory index.
//!
//! Everything here runs on blocking threads, under the store's file mutex.
//! Nothing in this module knows about HTTP, the queue or the committer.
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
//! # Writers and readers
//!
//! A **writer** ([`FileState::begin_write`]) holds the writer's lock of
//! [`super::file`] (`flock(LOCK_EX)`) for its whole commit. It catches up
//! with the file, repairs a crash's torn tail, then appends
//! ([`FileState::start_append`]); the `fdatasync` runs without the store's
//! mutex ([`Append::sync`]), and [`FileState::finish_append`] applies or
//! rolls back.
//!
//! A **reader** ([`FileState::refresh`]) only needs the index to include
//! every task acknowledged before it began. If an append of this process is
//! under way, the writer caught up when it took the writer's lock, after
//! which nobody else could acknowledge anything: the index is already
//! enough. Otherwise the reader catches up itself, reading only synced
//! bytes (the second lock of [`super::file`]), and never writes: a torn
//! tail it finds is left for the next writer to repair.
//!
//! # Noticing other writers
//!
//! Catching up rereads the bytes from the anchor to the end of the file
//! (usually a few hundred). Unchanged anchor, more entries after it: another
//! process appended, and only those entries are parsed. Anchor gone or
//! different (a person emptied or edited the file), or the path now names
//! another file: the whole file is read again by a writer, and ids continue
//! from its largest.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Instant, SystemTime};

use bytes::Bytes;

use super::file::{DataFile, Fs, Identity, Stat, SyncedEnd};
use super::index::Index;
use super::load::{build_index, load_in_pieces, PIECE};
use super::scan::{self, Parsed, Start, Tail};
use super::{StoreError, StoreStats};
use crate::task::Record;

/// Who is catching up, and what it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Holds the writer's lock: may repair, create `[]`, reread the file.
    Writer,
    /// Holds a read lock on the synced bytes, which end as said: writes nothing.
    Reader(SyncedEnd),
}

/// What a step of catching up found that only a writer may do.
enum CatchUp {
    Done,
    NeedsWriter,
}

/// What follows the anchor, and the file's length, as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
struct End {
    /// The bytes after the anchor (`\n]\n`): what a rollback restores.
    tail: Vec<u8>,
    /// The file's length.
    len: u64,
}

/// The data file and what is known of its last bytes.
pub struct FileState {
    /// The file system: the real one, or a test's double.
    fs: Arc<dyn Fs>,
    /// Where the file is; reopened if the path comes to name another file.
    path: PathBuf,
    /// The open data file. An `Arc` so that a commit can sync it without
    /// holding the store's mutex.
    file: Arc<dyn DataFile>,
    /// Device and inode of `file`, to notice a file replaced under its path.
    identity: Identity,
    /// Offset of the anchor: the last entry (or the `[` of an empty array).
    anchor_at: u64,
    /// The anchor's bytes as they are on disk, to notice a changed file.
    anchor: Vec<u8>,
    /// What follows the anchor, when known: not after a reader read only as
    /// far as another writer's unsynced bytes, or up to a crash's torn tail.
    end: Option<End>,
    /// Set when the file may no longer match what we know of it (a failed
    /// rollback, a broken file, a poisoned mutex): a writer rereads it whole.
    needs_reload: bool,
    /// An append of ours is written and not yet synced (or rolled back).
    in_flight: bool,
    /// Metrics the store updates.
    stats: StoreStats,
}

/// An append written and not yet synced: [`Append::sync`] it without the
/// store's mutex, then hand it to [`FileState::finish_append`].
pub struct Append {
    /// The file, to sync.
    file: Arc<dyn DataFile>,
    /// Where the append starts: the end of the old anchor.
    at: u64,
    /// The bytes written.
    bytes: Vec<u8>,
    /// The new anchor, within `bytes`.
    last: std::ops::Range<usize>,
}

impl Append {
    /// The `fdatasync` that makes the append durable: the only wait for the
    /// disk in a commit, timed into `stats`.
    pub fn sync(&self, stats: &StoreStats) -> io::Result<()> {
        let started = Instant::now();
        self.file.sync_data()?;
        let took = started.elapsed();
        stats.fsync_seconds.observe(took.as_secs_f64());
        stats.fsyncs.inc();
        stats.fsync_micros.inc_by(took.as_micros() as u64);
        Ok(())
    }
}

impl FileState {
    /// Opens (or creates) the data file. Its contents are read by the first
    /// [`FileState::begin_write`].
    pub fn open(fs: Arc<dyn Fs>, path: PathBuf, stats: StoreStats) -> Result<Self, StoreError> {
        let file = fs
            .open(&path)
            .map_err(|e| io_error("open for reading and writing", &path, e))?;
        let identity = file.identity().map_err(|e| io_error("inspect", &path, e))?;
        Ok(FileState {
            fs,
            path,
            file,
            identity,
            anchor_at: 0,
            anchor: Vec::new(),
            end: None,
            needs_reload: true,
            in_flight: false,
            stats,
        })
    }

    /// Marks the state as untrusted, so that the next writer rereads the file.
    pub fn distrust(&mut self) {
        self.needs_reload = true;
    }

    /// Takes the writer's lock and catches up with the file: repairs a torn
    /// tail, creates `[]` in an empty file, rereads a replaced or edited
    /// one. On success the lock is held until [`FileState::end_write`].
    pub fn begin_write(&mut self, index: &RwLock<Index>) -> Result<(), StoreError> {
        loop {
            self.file.lock_writer().map_err(|e| self.io("lock", e))?;
            // Checked with the lock held: a file replaced while we waited
            // for the lock must not be the one we write to.
            let result = match self.path_stat() {
                Ok(Some(stat)) if stat.identity == self.identity => {
                    self.catch_up(Role::Writer, stat.len, index).map(drop)
                }
                Ok(_) => {
                    self.end_write();
                    self.reopen()?;
                    continue;
                }
                Err(e) => Err(e),
            };
            if result.is_err() {
                self.end_write();
            }
            return result;
        }
    }

    /// Releases the writer's lock. Unlocking cannot lose data: what was
    /// acknowledged was synced.
    pub fn end_write(&mut self) {
        let _ = self.file.unlock_writer();
    }

    /// Brings the index up to date for a read: with every task acknowledged
    /// by any process before this call, and no task that is not durable.
    /// Never waits for a sync, except after a person replaced or edited the
    /// file (then a writer's reread is needed, see [`FileState::begin_write`]).
    pub fn refresh(&mut self, index: &RwLock<Index>) -> Result<(), StoreError> {
        if self.in_flight {
            // Our own append is under way: its writer caught up under the
            // writer's lock, and nobody has acknowledged anything since.
            return Ok(());
        }
        if !self.needs_reload {
            let synced = self
                .file
                .lock_synced(self.anchor_at)
                .map_err(|e| self.io("lock", e))?;
            let result = match self.path_stat() {
                Ok(Some(stat)) if stat.identity == self.identity => {
                    self.catch_up(Role::Reader(synced), stat.len, index)
                }
                Ok(_) => Ok(CatchUp::NeedsWriter),
                Err(e) => Err(e),
            };
            let _ = self.file.unlock_synced();
            if let CatchUp::Done = result? {
                return Ok(());
            }
        }
        self.begin_write(index)?;
        self.end_write();
        Ok(())
    }

    /// Opens the file the path names now (an editor saved it by rename, or
    /// it was deleted and is created again as `[]`), so we never write to a
    /// file no longer reachable by its name.
    fn reopen(&mut self) -> Result<(), StoreError> {
        tracing::info!(path = %self.path.display(), "the data file was replaced or removed; reopening it");
        self.file = self
            .fs
            .open(&self.path)
            .map_err(|e| self.io("open for reading and writing", e))?;
        self.identity = self.file.identity().map_err(|e| self.io("inspect", e))?;
        self.needs_reload = true;
        Ok(())
    }

    /// What the path names now; `None` if nothing. When it is our file, its
    /// length is our file's length too: one `statx` answers both questions.
    fn path_stat(&self) -> Result<Option<Stat>, StoreError> {
        self.fs.stat(&self.path).map_err(|e| self.io("inspect", e))
    }

    /// Brings the index up to date with the file (see the module docs),
    /// whose length is `len`.
    fn catch_up(
        &mut self,
        role: Role,
        len: u64,
        index: &RwLock<Index>,
    ) -> Result<CatchUp, StoreError> {
        let needs_writer = |s: &mut Self| match role {
            Role::Writer => s.reload(len, index),
            Role::Reader(_) => Ok(CatchUp::NeedsWriter),
        };
        if self.needs_reload {
            return needs_writer(self);
        }
        // A reader reads only the synced bytes.
        let read_to = match role {
            Role::Writer | Role::Reader(SyncedEnd::Eof) => len,
            Role::Reader(SyncedEnd::At(at)) => at.min(len),
        };
        let anchor_end = self.anchor_at + self.anchor.len() as u64;
        if read_to < anchor_end {
            return needs_writer(self);
        }
        let mut buf = vec![0; (read_to - self.anchor_at) as usize];
        self.file
            .read_exact_at(&mut buf, self.anchor_at)
            .map_err(|e| self.io("read", e))?;
        if !buf.starts_with(&self.anchor) {
            return needs_writer(self);
        }
        let rest = &buf[self.anchor.len()..];
        if read_to == len
            && self
                .end
                .as_ref()
                .is_some_and(|e| e.len == len && e.tail == rest)
        {
            return Ok(CatchUp::Done);
        }
        let mut appended = Vec::new();
        let start = Start::AfterEntry {
            last: read(index).last_id(),
        };
        let Ok(scan) = scan::scan(rest, start, |p| appended.push(p)) else {
            // Reread whole, so the error names the right line.
            return needs_writer(self);
        };
        if !increasing(read(index).max_id(), &appended) {
            // Someone appended ids out of order by hand: rebuild sorted.
            return needs_writer(self);
        }
        {
            let mut index = write(index);
            for p in &appended {
                index.push(&p.record);
            }
        }
        let last = scan.last.map(|r| shift(r, self.anchor.len()));
        let tail = shift_tail(scan.tail, self.anchor.len());
        match (role, tail) {
            (Role::Reader(_), Tail::Torn { .. }) => {
                // Another writer's unsynced bytes follow, or a crash's
                // leftovers that the next writer repairs: keep what is
                // complete, write nothing.
                if let Some(last) = last {
                    self.anchor_at += last.start as u64;
                    self.anchor = buf[last].to_vec();
                }
                self.end = None;
                self.stats.tasks.set(read(index).len() as i64);
            }
            (_, tail) => self.settle(&buf, self.anchor_at, last, tail, read(index).len())?,
        }
        Ok(CatchUp::Done)
    }

    /// Reads the whole file, whose length is `len`, and rebuilds the index.
    /// Writers only.
    fn reload(&mut self, len: u64, index: &RwLock<Index>) -> Result<CatchUp, StoreError> {
        self.needs_reload = true;
        let started = Instant::now();
        // A file of ours, closed or torn by a crash, is read in pieces, so
        // the whole file is never held next to the index built from it;
        // anything else takes the whole-file path below, with its sorting
        // and precise errors.
        let loaded = load_in_pieces(&*self.file, len, PIECE).map_err(|e| self.io("read", e))?;
        if let Some(loaded) = loaded {
            let tasks = loaded.index.len();
            *write(index) = loaded.index;
            self.anchor_at = loaded.anchor_at;
            self.anchor = loaded.anchor;
            self.settle(&loaded.rest, loaded.rest_at, None, loaded.tail, tasks)?;
            self.needs_reload = false;
            self.log_loaded(len, tasks, started);
            return Ok(CatchUp::Done);
        }
        let mut buf = vec![0; len as usize];
        self.file
            .read_exact_at(&mut buf, 0)
            .map_err(|e| self.io("read", e))?;
        let (loaded, scan) = build_index(&buf).map_err(|broken| StoreError::Corrupt {
            path: self.path.clone(),
            broken,
        })?;
        let tasks = loaded.len();
        *write(index) = loaded;
        let last = match (scan.last, scan.open) {
            (Some(last), _) => Some(last),
            (None, Some(open)) => Some(open..open + 1),
            (None, None) => None,
        };
        self.settle(&buf, 0, last, scan.tail, tasks)?;
        self.needs_reload = false;
        self.log_loaded(len, tasks, started);
        Ok(CatchUp::Done)
    }

    fn log_loaded(&self, len: u64, tasks: usize, started: Instant) {
        tracing::info!(
            path = %self.path.display(),
            tasks,
            bytes = len,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "data file loaded"
        );
    }

    /// Records the new anchor and tail after a scan of `buf` (which starts at
    /// file offset `base`), repairing a torn tail or an empty file first.
    /// `last` is the new anchor within `buf`, `None` to keep the current one
    /// (which then ends at or after `base`). Writers only, but for a
    /// closed tail.
    fn settle(
        &mut self,
        buf: &[u8],
        base: u64,
        last: Option<std::ops::Range<usize>>,
        tail: Tail,
        tasks: usize,
    ) -> Result<(), StoreError> {
        if let Some(last) = &last {
            self.anchor_at = base + last.start as u64;
            self.anchor = buf[last.clone()].to_vec();
        }
        match tail {
            Tail::Closed { .. } => {
                let anchor_end = (self.anchor_at + self.anchor.len() as u64 - base) as usize;
                self.end = Some(End {
                    tail: buf[anchor_end..].to_vec(),
                    len: base + buf.len() as u64,
                });
            }
            Tail::Empty => {
                // A missing or empty file starts as `[]`.
                self.rewrite_tail(0, b"[]\n")?;
                self.anchor_at = 0;
                self.anchor = b"[".to_vec();
                self.end = Some(End {
                    tail: b"]\n".to_vec(),
                    len: 3,
                });
            }
            Tail::Torn { good_end, reason } => {
                let dropped = &buf[good_end..];
                let side = self.save_torn_tail(dropped)?;
                let at = base + good_end as u64;
                self.rewrite_tail(at, b"\n]\n")?;
                tracing::warn!(
                    path = %self.path.display(),
                    dropped_bytes = dropped.len(),
                    kept_tasks = tasks,
                    side_file = %side.display(),
                    found = %reason,
                    "repaired an incomplete last entry left by a crash during a write; the dropped bytes are kept in the side file"
                );
                self.end = Some(End {
                    tail: b"\n]\n".to_vec(),
                    len: at + 3,
                });
            }
        }
        self.stats.tasks.set(tasks as i64);
        Ok(())
    }

    /// Truncates the file at `at`, writes `bytes` there and syncs.
    fn rewrite_tail(&mut self, at: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let file = &self.file;
        let result = file
            .mark_unsynced(at)
            .and_then(|()| file.set_len(at))
            .and_then(|()| file.write_all_at(bytes, at))
            .and_then(|()| file.sync_data());
        let _ = file.unmark_unsynced();
        result.map_err(|e| self.io("repair", e))
    }

    /// Keeps the bytes a repair drops in `<data file>.torn-<millis>`, or
    /// `.torn-<millis>-<n>` when that name is taken (a clock set back after
    /// a power cut can give the same millisecond again).
    fn save_torn_tail(&self, dropped: &[u8]) -> Result<PathBuf, StoreError> {
        let millis = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let mut n = 0;
        loop {
            let mut name = self.path.as_os_str().to_owned();
            name.push(format!(".torn-{millis}"));
            if n > 0 {
                name.push(format!("-{n}"));
            }
            let side = PathBuf::from(name);
            match self.fs.create_durable(&side, dropped) {
                Ok(()) => return Ok(side),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => {
                    return Err(io_error(
                        "save the torn tail (nothing was repaired) to",
                        &side,
                        e,
                    ))
                }
            }
        }
    }

    /// Writes `records` after the anchor, marked unsynced; the caller syncs
    /// the returned [`Append`] and then calls [`FileState::finish_append`].
    /// Needs the writer's lock. A failed write is rolled back here.
    pub fn start_append(&mut self, records: &[Record], empty: bool) -> Result<Append, StoreError> {
        let at = self.anchor_at + self.anchor.len() as u64;
        let mut bytes = Vec::with_capacity(records.len() * 200 + 3);
        let mut last = 0..0;
        for (i, r) in records.iter().enumerate() {
            let first_in_file = i == 0 && empty;
            bytes.extend_from_slice(if first_in_file { b"\n" } else { b",\n" });
            let start = bytes.len();
            bytes.extend_from_slice(&r.file_json());
            last = start..bytes.len();
        }
        bytes.extend_from_slice(b"\n]\n");
        let new_len = at + bytes.len() as u64;
        let old_len = self.end.as_ref().map_or(0, |e| e.len);

        self.file
            .mark_unsynced(at)
            .map_err(|e| self.io("lock", e))?;
        let written = self.file.write_all_at(&bytes, at).and_then(|()| {
            // A hand-written tail longer than ours leaves whitespace only,
            // but trimming it keeps the file exactly what we wrote.
            if new_len < old_len {
                self.file.set_len(new_len)?;
            }
            Ok(())
        });
        if let Err(e) = written {
            self.roll_back(at);
            let _ = self.file.unmark_unsynced();
            return Err(self.io("write", e));
        }
        self.in_flight = true;
        Ok(Append {
            file: self.file.clone(),
            at,
            bytes,
            last,
        })
    }

    /// Ends an append: on a successful sync, the records become the new end
    /// of the file and are added to the index (their public JSON returned,
    /// in order); on a failed one, the file is rolled back to what it was.
    pub fn finish_append(
        &mut self,
        append: Append,
        synced: io::Result<()>,
        records: &[Record],
        index: &RwLock<Index>,
    ) -> Result<Vec<Bytes>, StoreError> {
        self.in_flight = false;
        if let Err(e) = synced {
            self.roll_back(append.at);
            let _ = self.file.unmark_unsynced();
            return Err(self.io("write", e));
        }
        let _ = self.file.unmark_unsynced();
        self.anchor_at = append.at + append.last.start as u64;
        self.anchor = append.bytes[append.last].to_vec();
        self.end = Some(End {
            tail: b"\n]\n".to_vec(),
            len: append.at + append.bytes.len() as u64,
        });
        let mut index = write(index);
        let public = records
            .iter()
            .map(|r| {
                index.push(r);
                index.last_json()
            })
            .collect();
        self.stats.tasks.set(index.len() as i64);
        self.stats.batch_size.observe(records.len() as f64);
        self.stats.written.inc_by(records.len() as u64);
        Ok(public)
    }

    /// Puts back the bytes an append overwrote (a failed or short write, a
    /// failed sync), so the file is again what it was before the commit.
    fn roll_back(&mut self, at: u64) {
        let restored = match &self.end {
            Some(end) => self
                .file
                .set_len(end.len)
                .and_then(|()| self.file.write_all_at(&end.tail, at))
                .and_then(|()| self.file.sync_data()),
            None => Err(io::Error::other("the old tail is not known")),
        };
        if let Err(e) = restored {
            // The file may now end in a partial entry: the next writer
            // rereads it and repairs it like a crash's leftovers.
            tracing::error!(path = %self.path.display(), error = %e, "could not roll back a failed write; the file will be checked and repaired before the next operation");
            self.needs_reload = true;
        }
    }

    /// The file as it is up to its last entry, closed: what it would be if
    /// nothing else were appended (a cluster node's snapshot). Needs the
    /// writer's lock, so that the end is known.
    pub fn closed_prefix(&self) -> Result<Vec<u8>, StoreError> {
        if self.anchor == b"[" {
            return Ok(b"[]\n".to_vec());
        }
        let end = self.anchor_at + self.anchor.len() as u64;
        let mut bytes = vec![0; end as usize];
        self.file
            .read_exact_at(&mut bytes, 0)
            .map_err(|e| self.io("read", e))?;
        bytes.extend_from_slice(b"\n]\n");
        Ok(bytes)
    }

    /// Replaces the whole file by `bytes`, atomically (a new file renamed
    /// over it), and reloads: a cluster node installing a snapshot. Not for
    /// a single-file bind mount, which cannot be renamed over.
    pub fn replace_with(&mut self, bytes: &[u8], index: &RwLock<Index>) -> Result<(), StoreError> {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".installing");
        let new = PathBuf::from(name);
        if self
            .fs
            .stat(&new)
            .map_err(|e| self.io("inspect", e))?
            .is_some()
        {
            // Left by a crash in the middle of an earlier install.
            self.fs
                .remove(&new)
                .map_err(|e| io_error("remove", &new, e))?;
        }
        self.fs
            .create_durable(&new, bytes)
            .map_err(|e| io_error("write", &new, e))?;
        self.fs
            .rename(&new, &self.path)
            .map_err(|e| io_error("rename over the data file", &new, e))?;
        self.reopen()?;
        self.begin_write(index)?;
        self.end_write();
        Ok(())
    }

    fn io(&self, action: &'static str, e: io::Error) -> StoreError {
        io_error(action, &self.path, e)
    }
}

fn io_error(action: &'static str, path: &std::path::Path, e: io::Error) -> StoreError {
    StoreError::Io {
        action,
        path: path.to_owned(),
        error: e.into(),
    }
}

/// The index for reading. A panic while it was held for writing may have
/// left a push half done; the file mutex's poisoning rereads the file then,
/// so the lock's own poisoning is ignored.
pub fn read(index: &RwLock<Index>) -> RwLockReadGuard<'_, Index> {
    index.read().unwrap_or_else(|p| p.into_inner())
}

/// The index for writing; see [`read`].
pub fn write(index: &RwLock<Index>) -> RwLockWriteGuard<'_, Index> {
    index.write().unwrap_or_else(|p| p.into_inner())
}

/// Whether `appended` continues the ids after `max_id` in increasing order.
fn increasing(max_id: u64, appended: &[Parsed]) -> bool {
    appended
        .iter()
        .zip(std::iter::once(max_id).chain(appended.iter().map(|p| p.record.id)))
        .all(|(p, before)| p.record.id > before)
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
