//! The Raft log and vote of a node, durable, in its Raft directory.
//!
//! # Files
//!
//! - `vote.json`: the last vote. Written as `vote.json.new`, synced, then
//!   renamed over the old one and the directory synced: a crash leaves the
//!   old vote or the new one, never part of one. `purged.json` (the last log
//!   id dropped after a snapshot) is written the same way.
//! - `log-<first index>.wal`: segments of the log, appended in order. Each
//!   record is the entry's length (u32, little-endian), the CRC-32 of the
//!   entry, then the entry as JSON. A new segment starts when the current
//!   one passes [`SEGMENT_BYTES`] (16 MiB), so that dropping the log up to a
//!   snapshot (purging) deletes whole files.
//!
//! # Guarantees
//!
//! - [`LogStore::save_vote`] returns only once the vote is on disk: a node
//!   never votes twice in a term, even across a crash.
//! - Appended entries are readable at once, and openraft is told they are
//!   durable (the `IOFlushed` callback) only after the `fdatasync` of their
//!   segment returned; so a node acknowledges entries to a leader only once
//!   they would survive a power cut.
//! - Every write goes through one writer thread, in the order openraft made
//!   it; appends waiting together share one write and one sync per segment.
//! - The log on disk follows on: an append that does not continue it is
//!   written only past a gap the recorded purge covers (openraft purges up
//!   to a snapshot installed ahead of the log before it appends after it,
//!   and the writer checks that it did); anything else is refused.
//! - Recovery: a record a crash cut short at the end of the last segment
//!   (too short, or its CRC wrong) is dropped and the segment cut there;
//!   damage anywhere else is refused, naming the file.
//!
//! All file operations go through the store's seam ([`Fs`]), so the power
//! cuts of the simulated disk test this log as they test the data file.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::types::{Entry, LogId, TypeConfig, Vote};
use crate::store::file::{DataFile, Fs};

/// Size past which the next append starts a new segment.
pub const SEGMENT_BYTES: u64 = 16 << 20;

/// A handle to a node's log; clones share it (it is its own reader).
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
}

struct Shared {
    /// The log as openraft reads it: everything appended, durable or not.
    mem: Mutex<Mem>,
    /// The writer thread's queue.
    writer: Mutex<mpsc::Sender<Job>>,
}

/// What the log holds, in memory.
#[derive(Default)]
struct Mem {
    vote: Option<Vote>,
    purged: Option<LogId>,
    entries: BTreeMap<u64, Entry>,
}

/// A write, in the order openraft asked for it.
enum Job {
    Append {
        records: Vec<(u64, Vec<u8>)>,
        callback: IOFlushed<TypeConfig>,
    },
    Vote {
        vote: Vote,
        done: mpsc::Sender<io::Result<()>>,
    },
    TruncateAfter {
        after: Option<u64>,
        done: mpsc::Sender<io::Result<()>>,
    },
    Purge {
        upto: LogId,
        done: mpsc::Sender<io::Result<()>>,
    },
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, recovering what a crash left,
    /// and starts its writer thread. Blocking.
    pub fn open(fs: Arc<dyn Fs>, dir: &Path) -> io::Result<LogStore> {
        LogStore::open_with_segments(fs, dir, SEGMENT_BYTES)
    }

    /// [`LogStore::open`], starting a new segment past `segment_bytes`
    /// rather than [`SEGMENT_BYTES`] (the tests' small segments).
    pub fn open_with_segments(
        fs: Arc<dyn Fs>,
        dir: &Path,
        segment_bytes: u64,
    ) -> io::Result<LogStore> {
        fs.create_dir_all(dir)?;
        let vote = read_json::<Vote>(&*fs, &dir.join("vote.json"))?;
        let purged = read_json::<LogId>(&*fs, &dir.join("purged.json"))?;
        let (segments, entries) = recover(&*fs, dir, purged.as_ref().map(|p| p.index()))?;
        let mem = Mem {
            vote,
            purged,
            entries,
        };
        let (queue, jobs) = mpsc::channel();
        let writer = Writer {
            fs,
            dir: dir.to_owned(),
            segments,
            segment_bytes,
            purged: purged.as_ref().map(|p| p.index()),
            failed: None,
        };
        std::thread::Builder::new()
            .name("taskserver-raft-log".into())
            .spawn(move || writer.run(jobs))?;
        Ok(LogStore {
            shared: Arc::new(Shared {
                mem: Mutex::new(mem),
                writer: Mutex::new(queue),
            }),
        })
    }

    /// Whether the log holds nothing at all: no vote, no entry, no purge
    /// (a new node, or one whose Raft directory was wiped).
    pub fn is_empty(&self) -> bool {
        let mem = self.mem();
        mem.vote.is_none() && mem.entries.is_empty() && mem.purged.is_none()
    }

    fn mem(&self) -> MutexGuard<'_, Mem> {
        self.shared.mem.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, job: Job) -> io::Result<()> {
        self.shared
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job)
            .map_err(|_| io::Error::other("the Raft log's writer thread has stopped"))
    }

    /// Queues a job and waits for the writer to have done it.
    async fn write(&self, job: impl FnOnce(mpsc::Sender<io::Result<()>>) -> Job) -> io::Result<()> {
        let (done, result) = mpsc::channel();
        self.send(job(done))?;
        tokio::task::spawn_blocking(move || result.recv())
            .await
            .map_err(io::Error::other)?
            .map_err(|_| io::Error::other("the Raft log's writer thread has stopped"))?
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        Ok(self
            .mem()
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.mem().vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let mem = self.mem();
        let last = mem.entries.values().next_back().map(|e| e.log_id());
        Ok(LogState {
            last_log_id: last.or(mem.purged),
            last_purged_log_id: mem.purged,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let vote = *vote;
        self.write(|done| Job::Vote { vote, done }).await?;
        self.mem().vote = Some(vote);
        Ok(())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut records = Vec::new();
        {
            let mut mem = self.mem();
            for entry in entries {
                records.push((entry.index(), encode(&entry)?));
                mem.entries.insert(entry.index(), entry);
            }
        }
        self.send(Job::Append { records, callback })
    }

    async fn truncate_after(&mut self, last: Option<LogId>) -> Result<(), io::Error> {
        let after = last.map(|l| l.index());
        {
            let mut mem = self.mem();
            let from = after.map_or(0, |i| i + 1);
            mem.entries.split_off(&from);
        }
        self.write(|done| Job::TruncateAfter { after, done }).await
    }

    async fn purge(&mut self, upto: LogId) -> Result<(), io::Error> {
        {
            let mut mem = self.mem();
            let keep = mem.entries.split_off(&(upto.index() + 1));
            mem.entries = keep;
            mem.purged = Some(upto);
        }
        self.write(|done| Job::Purge { upto, done }).await
    }
}

/// One segment file, as the writer knows it.
struct Segment {
    /// The index its first record holds (or will hold).
    first: u64,
    file: Arc<dyn DataFile>,
    path: PathBuf,
    len: u64,
    /// Where each entry's record starts: (index, offset).
    starts: Vec<(u64, u64)>,
}

impl Segment {
    fn next_index(&self) -> u64 {
        self.starts.last().map_or(self.first, |(i, _)| i + 1)
    }
}

/// The thread that makes the log durable.
struct Writer {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    segments: Vec<Segment>,
    /// Size past which the next append starts a new segment.
    segment_bytes: u64,
    /// The index of the last purge on disk, if any.
    purged: Option<u64>,
    /// After a write failed, every later one fails too: the log on disk is
    /// no longer known, and openraft stops the node.
    failed: Option<String>,
}

impl Writer {
    fn run(mut self, jobs: mpsc::Receiver<Job>) {
        let mut next = jobs.recv().ok();
        while let Some(job) = next.take() {
            match job {
                Job::Append { records, callback } => {
                    // Appends waiting behind this one share its sync.
                    let mut group = vec![(records, callback)];
                    while let Ok(job) = jobs.try_recv() {
                        match job {
                            Job::Append { records, callback } => group.push((records, callback)),
                            other => {
                                next = Some(other);
                                break;
                            }
                        }
                    }
                    let written = self.guard(|w| w.append(group.iter().flat_map(|(r, _)| r)));
                    for (_, callback) in group {
                        callback.io_completed(clone_result(&written));
                    }
                }
                Job::Vote { vote, done } => {
                    let _ = done
                        .send(self.guard(|w| write_json(&*w.fs, &w.dir.join("vote.json"), &vote)));
                }
                Job::TruncateAfter { after, done } => {
                    let _ = done.send(self.guard(|w| w.truncate_after(after)));
                }
                Job::Purge { upto, done } => {
                    let _ = done.send(self.guard(|w| w.purge(&upto)));
                }
            }
            if next.is_none() {
                next = jobs.recv().ok();
            }
        }
    }

    /// Runs a write unless an earlier one failed; remembers a failure.
    fn guard(&mut self, f: impl FnOnce(&mut Writer) -> io::Result<()>) -> io::Result<()> {
        if let Some(failed) = &self.failed {
            return Err(io::Error::other(format!(
                "an earlier write of the Raft log failed: {failed}"
            )));
        }
        let result = f(self);
        if let Err(e) = &result {
            tracing::error!(error = %e, dir = %self.dir.display(), "cannot write the Raft log; this node stops");
            self.failed = Some(e.to_string());
        }
        result
    }

    /// Writes records at the end of the log, one write and one sync per
    /// segment touched.
    fn append<'a>(&mut self, records: impl Iterator<Item = &'a (u64, Vec<u8>)>) -> io::Result<()> {
        let mut touched: Vec<usize> = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        for (index, record) in records {
            let roll = match self.segments.last() {
                None => true,
                Some(s) if s.next_index() != *index => {
                    self.check_gap(s.next_index(), *index)?;
                    true
                }
                Some(s) => {
                    s.len + pending.len() as u64 >= self.segment_bytes && !s.starts.is_empty()
                }
            };
            if roll {
                self.flush_pending(&mut pending)?;
                self.new_segment(*index)?;
            }
            let s = self.segments.last_mut().expect("a segment");
            s.starts.push((*index, s.len + pending.len() as u64));
            pending.extend_from_slice(record);
            let last = self.segments.len() - 1;
            if touched.last() != Some(&last) {
                touched.push(last);
            }
        }
        self.flush_pending(&mut pending)?;
        for i in touched {
            self.segments[i].file.sync_data()?;
        }
        Ok(())
    }

    /// An append that does not continue the log is allowed only past a
    /// gap the purge on disk already covers (a follower that installed a
    /// snapshot ahead of its log: openraft purges up to it, then appends
    /// after it). Anything else would leave a hole that recovery refuses,
    /// so it is refused here, before a byte of it is written.
    fn check_gap(&self, next: u64, index: u64) -> io::Result<()> {
        if index > next && purge_covers_gap(self.purged, next, index) {
            return Ok(());
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "an append of entry {index} where entry {next} was due, with {}: \
                 refused, as the log on disk would not follow on there",
                match self.purged {
                    Some(p) => format!("the log purged up to entry {p}"),
                    None => "nothing purged".to_owned(),
                }
            ),
        ))
    }

    /// Writes what was gathered for the last segment.
    fn flush_pending(&mut self, pending: &mut Vec<u8>) -> io::Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let s = self
            .segments
            .last_mut()
            .expect("pending bytes have a segment");
        s.file.write_all_at(pending, s.len)?;
        s.len += pending.len() as u64;
        pending.clear();
        Ok(())
    }

    fn new_segment(&mut self, first: u64) -> io::Result<()> {
        if let Some(last) = self.segments.last() {
            last.file.sync_data()?;
        }
        let path = segment_path(&self.dir, first);
        let file = self.fs.open(&path)?;
        file.set_len(0)?;
        self.segments.push(Segment {
            first,
            file,
            path,
            len: 0,
            starts: Vec::new(),
        });
        Ok(())
    }

    /// Deletes every entry after `after` (all of them for `None`), from the
    /// end backwards, so that a crash leaves no hole.
    fn truncate_after(&mut self, after: Option<u64>) -> io::Result<()> {
        let from = after.map_or(0, |i| i + 1);
        while let Some(s) = self.segments.last_mut() {
            if s.first >= from {
                let s = self.segments.pop().expect("last");
                self.fs.remove(&s.path)?;
                continue;
            }
            if let Some(pos) = s.starts.iter().position(|(i, _)| *i >= from) {
                let cut = s.starts[pos].1;
                s.file.set_len(cut)?;
                s.file.sync_data()?;
                s.len = cut;
                s.starts.truncate(pos);
            }
            break;
        }
        Ok(())
    }

    /// Records the purge, then deletes the segments it empties, from the
    /// start, so that a crash leaves no hole (the last segment stays: new
    /// entries go there).
    fn purge(&mut self, upto: &LogId) -> io::Result<()> {
        write_json(&*self.fs, &self.dir.join("purged.json"), upto)?;
        self.purged = Some(upto.index());
        while self.segments.len() > 1 && self.segments[1].first <= upto.index() + 1 {
            let s = self.segments.remove(0);
            self.fs.remove(&s.path)?;
        }
        Ok(())
    }
}

fn clone_result(result: &io::Result<()>) -> io::Result<()> {
    match result {
        Ok(()) => Ok(()),
        Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
    }
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("log-{first:020}.wal"))
}

/// One entry as a record of a segment.
fn encode(entry: &Entry) -> io::Result<Vec<u8>> {
    let json = serde_json::to_vec(entry).map_err(io::Error::other)?;
    let mut record = Vec::with_capacity(json.len() + 8);
    record.extend_from_slice(&(json.len() as u32).to_le_bytes());
    record.extend_from_slice(&crc32fast::hash(&json).to_le_bytes());
    record.extend_from_slice(&json);
    Ok(record)
}

/// How a segment's bytes end.
enum SegmentEnd {
    /// Every record whole.
    Clean,
    /// A record cut short (or its CRC wrong) from this offset on.
    Torn { at: u64, what: String },
}

/// The entries of one segment's bytes, with where each starts.
fn decode(bytes: &[u8]) -> io::Result<(Vec<(u64, Entry)>, SegmentEnd)> {
    let mut entries = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let torn = |what: &str| SegmentEnd::Torn {
            at: at as u64,
            what: what.to_owned(),
        };
        let Some(header) = bytes.get(at..at + 8) else {
            return Ok((entries, torn("a record header cut short")));
        };
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        if len == 0 {
            // No entry is empty: zeros where the disk kept nothing (the CRC
            // of nothing is 0, so the check below would pass them).
            return Ok((entries, torn("zeros where a record should start")));
        }
        let Some(json) = bytes.get(at + 8..at + 8 + len) else {
            return Ok((entries, torn("a record cut short")));
        };
        if crc32fast::hash(json) != crc {
            return Ok((entries, torn("a record whose CRC does not match")));
        }
        let entry: Entry = serde_json::from_slice(json).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a record with a good CRC is not an entry: {e}"),
            )
        })?;
        entries.push((at as u64, entry));
        at += 8 + len;
    }
    Ok((entries, SegmentEnd::Clean))
}

/// Reads every segment in order; cuts a torn end off the last one.
fn recover(
    fs: &dyn Fs,
    dir: &Path,
    purged: Option<u64>,
) -> io::Result<(Vec<Segment>, BTreeMap<u64, Entry>)> {
    let mut paths: Vec<(u64, PathBuf)> = segment_files(fs, dir)?;
    paths.sort();
    let count = paths.len();
    let mut segments = Vec::new();
    let mut entries = BTreeMap::new();
    // The last index read, to check the log has no hole.
    let mut previous: Option<u64> = None;
    for (n, (first, path)) in paths.into_iter().enumerate() {
        let file = fs.open(&path)?;
        let len = fs.stat(&path)?.map_or(0, |s| s.len);
        let mut bytes = vec![0; len as usize];
        file.read_exact_at(&mut bytes, 0)?;
        let (decoded, end) = decode(&bytes)?;
        let mut good_len = len;
        if let SegmentEnd::Torn { at, what } = end {
            if n + 1 != count {
                return Err(corrupt(&path, &what, at));
            }
            tracing::warn!(segment = %path.display(), at, found = %what, "the Raft log ends in a record a crash cut short; dropping it");
            file.set_len(at)?;
            file.sync_data()?;
            good_len = at;
        }
        let mut starts = Vec::new();
        for (offset, entry) in decoded {
            let index = entry.index();
            let expected = match (previous, starts.is_empty()) {
                (_, true) => first,
                (Some(p), false) => p + 1,
                (None, false) => unreachable!("a record was read before"),
            };
            // A segment may start after a hole that the purge covers: a
            // follower that installed a snapshot ahead of its log is told
            // to purge up to it, then appends after it, in a new segment,
            // while its old last segment stays until the next purge.
            let purged_hole = starts.is_empty()
                && previous.is_some_and(|p| purge_covers_gap(purged, p + 1, index));
            let continues = previous.is_none_or(|p| index == p + 1) || purged_hole;
            if index != expected || !continues {
                return Err(corrupt(
                    &path,
                    &format!("entry {index} where {expected} was expected"),
                    offset,
                ));
            }
            previous = Some(index);
            starts.push((index, offset));
            if purged.is_none_or(|p| index > p) {
                entries.insert(index, entry);
            }
        }
        segments.push(Segment {
            first,
            file,
            path,
            len: good_len,
            starts,
        });
    }
    Ok((segments, entries))
}

/// Whether the log may go on at entry `index` where entry `next` was due:
/// the purge on disk (`purged`) covers every entry in between. The one rule
/// for a gap in the log, for the writer and for recovery alike.
fn purge_covers_gap(purged: Option<u64>, next: u64, index: u64) -> bool {
    purged.is_some_and(|p| next <= p + 1 && index <= p + 1)
}

fn corrupt(path: &Path, what: &str, at: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "the Raft log segment {} is damaged at byte {at} ({what}), and not at its end, where a crash could cut it: \
             restore the node's Raft directory, or remove it (and the node's data file) so that the node catches up from the others",
            path.display()
        ),
    )
}

/// The segment files of `dir`, with their first index.
fn segment_files(fs: &dyn Fs, dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    Ok(fs
        .list(dir)?
        .into_iter()
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?;
            let first = name
                .strip_prefix("log-")?
                .strip_suffix(".wal")?
                .parse()
                .ok()?;
            Some((first, path))
        })
        .collect())
}

/// Every entry of the log in `dir` after the last purge, in order, read
/// without changing anything (`taskserver raft-log`, next to the node).
pub fn read_entries(fs: &dyn Fs, dir: &Path) -> io::Result<Vec<Entry>> {
    let purged = peek_json::<LogId>(fs, &dir.join("purged.json"))?;
    let mut paths = segment_files(fs, dir)?;
    paths.sort();
    let mut all = Vec::new();
    for (_, path) in paths {
        let len = fs.stat(&path)?.map_or(0, |s| s.len);
        let mut bytes = vec![0; len as usize];
        fs.open(&path)?.read_exact_at(&mut bytes, 0)?;
        all.extend(
            decode(&bytes)?
                .0
                .into_iter()
                .map(|(_, e)| e)
                .filter(|e| purged.is_none_or(|p| e.index() > p.index())),
        );
    }
    Ok(all)
}

/// Reads a small JSON file, `None` when missing. A `.new` file left by a
/// crash before its rename is dropped: the old file is the one in force.
fn read_json<T: DeserializeOwned>(fs: &dyn Fs, path: &Path) -> io::Result<Option<T>> {
    let new = with_suffix(path, ".new");
    if fs.stat(&new)?.is_some() {
        fs.remove(&new)?;
    }
    peek_json(fs, path)
}

/// Reads a small JSON file, `None` when missing, changing nothing (the
/// node that owns it may be running).
fn peek_json<T: DeserializeOwned>(fs: &dyn Fs, path: &Path) -> io::Result<Option<T>> {
    let Some(stat) = fs.stat(path)? else {
        return Ok(None);
    };
    let mut bytes = vec![0; stat.len as usize];
    fs.open(path)?.read_exact_at(&mut bytes, 0)?;
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not what this node wrote: {e}", path.display()),
        )
    })
}

/// Replaces a small JSON file durably: write a new one, sync, rename over.
pub fn write_json<T: Serialize>(fs: &dyn Fs, path: &Path, value: &T) -> io::Result<()> {
    let new = with_suffix(path, ".new");
    if fs.stat(&new)?.is_some() {
        fs.remove(&new)?;
    }
    let bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
    fs.create_durable(&new, &bytes)?;
    fs.rename(&new, path)
}

/// Reads a small JSON file written by [`write_json`].
pub fn load_json<T: DeserializeOwned>(fs: &dyn Fs, path: &Path) -> io::Result<Option<T>> {
    read_json(fs, path)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
