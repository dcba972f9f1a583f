//! The store's door to the disk: every operation on the data file, and on
//! the side file of a repair, goes through [`Fs`] and [`DataFile`].
//!
//! [`OsFs`] is the real file system. Tests put doubles in its place: one
//! whose `fdatasync` waits until the test lets it go, one that fails or
//! panics on demand, one that remembers what was synced and cuts the power.
//!
//! # The two locks on the data file
//!
//! - **The writer's lock** is `flock(LOCK_EX)` on the whole file, held for a
//!   whole commit: one writer at a time across every process and container
//!   that shares the file. It is also what `flock -s tasks.json cat
//!   tasks.json` waits for.
//! - **The unsynced bytes** are marked with an open-file-description
//!   byte-range lock (Linux's `F_OFD_SETLK`, a lock the kernel keeps per
//!   open file, across processes): from the write of an append until its
//!   `fdatasync` returns, the writer holds a write lock on the bytes from
//!   where the append starts to the end of the file. A reader asks for a
//!   read lock on the bytes it wants to read, without waiting
//!   ([`DataFile::lock_synced`]). If a writer is in the way, the kernel
//!   says where that writer's bytes begin, and the reader takes and reads
//!   only the bytes before them, which are all synced. So a reader never
//!   waits for a sync, and never sees a task that is not yet durable.
//!
//! Where there are no such locks (macOS), a reader takes `flock(LOCK_SH)`
//! instead and so waits for a commit in progress in another process.

#[cfg(any(test, feature = "sim"))]
pub mod sim;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Device and inode: which file a path names.
pub type Identity = (u64, u64);

/// What a path names now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// The file's device and inode.
    pub identity: Identity,
    /// Its length in bytes.
    pub len: u64,
}

/// Where the bytes a reader may read end, with its read lock held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncedEnd {
    /// Every byte of the file is synced: no writer has an append under way.
    Eof,
    /// A writer's unsynced append starts at this offset.
    At(u64),
}

/// The file system, as the store uses it.
pub trait Fs: Send + Sync + 'static {
    /// Opens the file at `path` for reading and writing, creating it if it
    /// is missing (and then syncing its directory, so that the new name
    /// survives a power cut).
    fn open(&self, path: &Path) -> io::Result<Arc<dyn DataFile>>;

    /// What `path` names now; `None` when nothing.
    fn stat(&self, path: &Path) -> io::Result<Option<Stat>>;

    /// Writes `bytes` into a new file at `path` (failing if it exists),
    /// durably: its data, then its name.
    fn create_durable(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;

    /// Renames `from` to `to` (replacing it), durably: the directory is
    /// synced. Cluster mode only: a single-file bind mount cannot be renamed
    /// over, so the single server never does.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes a file, durably.
    fn remove(&self, path: &Path) -> io::Result<()>;

    /// The files in `dir` (none if it does not exist).
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;

    /// Creates `dir` and its parents, if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
}

/// One open data file.
pub trait DataFile: Send + Sync {
    /// Device and inode of this open file.
    fn identity(&self) -> io::Result<Identity>;
    /// Fills `buf` from offset `at`; an error if the file ends first.
    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> io::Result<()>;
    /// Writes all of `bytes` at offset `at`.
    fn write_all_at(&self, bytes: &[u8], at: u64) -> io::Result<()>;
    /// Cuts or extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// `fdatasync`: what was written is on the disk when it returns.
    fn sync_data(&self) -> io::Result<()>;

    /// Takes the writer's lock (`flock(LOCK_EX)`), waiting for it.
    fn lock_writer(&self) -> io::Result<()>;
    /// Releases the writer's lock.
    fn unlock_writer(&self) -> io::Result<()>;

    /// Marks the bytes from `from` to the end of the file as unsynced
    /// (waiting for readers that are reading them, which takes moments).
    fn mark_unsynced(&self, from: u64) -> io::Result<()>;
    /// Says they are synced, or rolled back.
    fn unmark_unsynced(&self) -> io::Result<()>;

    /// Takes a read lock on the synced bytes from `from` on, without
    /// waiting for any sync, and says where they end. Release it with
    /// [`DataFile::unlock_synced`].
    fn lock_synced(&self, from: u64) -> io::Result<SyncedEnd>;
    /// Releases what [`DataFile::lock_synced`] took.
    fn unlock_synced(&self) -> io::Result<()>;
}

/// What [`OsFs::create_durable`] writes and syncs at a time.
const DURABLE_PIECE: usize = 1 << 20;

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsFs;

impl Fs for OsFs {
    fn open(&self, path: &Path) -> io::Result<Arc<dyn DataFile>> {
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        if !existed {
            sync_parent(path)?;
        }
        Ok(Arc::new(OsFile { file }))
    }

    fn stat(&self, path: &Path) -> io::Result<Option<Stat>> {
        match std::fs::metadata(path) {
            Ok(m) => Ok(Some(Stat {
                identity: (m.dev(), m.ino()),
                len: m.len(),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn create_durable(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let file = OpenOptions::new().write(true).create_new(true).open(path)?;
        // Synced a piece at a time: on ext4 (data=ordered) a small file's
        // fdatasync that commits the journal also waits for every dirty
        // page of the files in that commit, so megabytes written at once
        // here (a snapshot) would hold up the Raft log's next syncs.
        let mut at = 0;
        for piece in bytes.chunks(DURABLE_PIECE) {
            file.write_all_at(piece, at)?;
            file.sync_data()?;
            at += piece.len() as u64;
        }
        file.sync_all()?;
        sync_parent(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)?;
        sync_parent(to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)?;
        sync_parent(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        match std::fs::read_dir(dir) {
            Ok(entries) => entries.map(|e| e.map(|e| e.path())).collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }
}

fn sync_parent(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

/// A data file of the real file system.
#[derive(Debug)]
struct OsFile {
    file: File,
}

impl DataFile for OsFile {
    fn identity(&self) -> io::Result<Identity> {
        let m = self.file.metadata()?;
        Ok((m.dev(), m.ino()))
    }

    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, at)
    }

    fn write_all_at(&self, bytes: &[u8], at: u64) -> io::Result<()> {
        self.file.write_all_at(bytes, at)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn lock_writer(&self) -> io::Result<()> {
        fs4::FileExt::lock(&self.file)
    }

    fn unlock_writer(&self) -> io::Result<()> {
        fs4::FileExt::unlock(&self.file)
    }

    #[cfg(target_os = "linux")]
    fn mark_unsynced(&self, from: u64) -> io::Result<()> {
        ofd::lock(&self.file, libc::F_OFD_SETLKW, libc::F_WRLCK, from, 0).map(drop)
    }

    #[cfg(not(target_os = "linux"))]
    fn mark_unsynced(&self, _from: u64) -> io::Result<()> {
        Ok(())
    }

    #[cfg(target_os = "linux")]
    fn unmark_unsynced(&self) -> io::Result<()> {
        ofd::lock(&self.file, libc::F_OFD_SETLK, libc::F_UNLCK, 0, 0).map(drop)
    }

    #[cfg(not(target_os = "linux"))]
    fn unmark_unsynced(&self) -> io::Result<()> {
        Ok(())
    }

    #[cfg(target_os = "linux")]
    fn lock_synced(&self, from: u64) -> io::Result<SyncedEnd> {
        loop {
            // The common case: no writer has unsynced bytes; they cannot
            // start any while we hold this.
            match ofd::lock(&self.file, libc::F_OFD_SETLK, libc::F_RDLCK, from, 0) {
                Ok(_) => return Ok(SyncedEnd::Eof),
                Err(e) if !ofd::is_conflict(&e) => return Err(e),
                Err(_) => {}
            }
            // A writer is in the way: where do its bytes start?
            let writer = ofd::lock(&self.file, libc::F_OFD_GETLK, libc::F_RDLCK, from, 0)?;
            if writer.l_type == libc::F_UNLCK as libc::c_short {
                continue; // it finished meanwhile
            }
            let start = writer.l_start as u64;
            if start <= from {
                // Nothing before its bytes; nothing to lock.
                return Ok(SyncedEnd::At(from));
            }
            // Only one writer at a time (the flock), and it writes from
            // `start` on: the bytes before are synced and stay as they are.
            match ofd::lock(
                &self.file,
                libc::F_OFD_SETLK,
                libc::F_RDLCK,
                from,
                start - from,
            ) {
                Ok(_) => return Ok(SyncedEnd::At(start)),
                Err(e) if !ofd::is_conflict(&e) => return Err(e),
                Err(_) => {} // another writer, earlier in the file: ask again
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn lock_synced(&self, _from: u64) -> io::Result<SyncedEnd> {
        fs4::FileExt::lock_shared(&self.file).map(|()| SyncedEnd::Eof)
    }

    #[cfg(target_os = "linux")]
    fn unlock_synced(&self) -> io::Result<()> {
        ofd::lock(&self.file, libc::F_OFD_SETLK, libc::F_UNLCK, 0, 0).map(drop)
    }

    #[cfg(not(target_os = "linux"))]
    fn unlock_synced(&self) -> io::Result<()> {
        fs4::FileExt::unlock(&self.file)
    }
}

/// Open-file-description locks: `fcntl(F_OFD_*)`, Linux 3.15 and later.
#[cfg(target_os = "linux")]
mod ofd {
    use std::fs::File;
    use std::io;
    use std::os::fd::AsRawFd as _;

    /// `fcntl(cmd)` on the byte range `[start, start + len)` (`len` 0: to
    /// the end of the file and beyond); returns the `flock` the kernel
    /// filled in (for `F_OFD_GETLK`, the lock in the way, if any).
    pub fn lock(
        file: &File,
        cmd: libc::c_int,
        kind: libc::c_int,
        start: u64,
        len: u64,
    ) -> io::Result<libc::flock> {
        // SAFETY: an all-zero `flock` is a valid value of this plain C struct.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = kind as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_start = start as libc::off_t;
        fl.l_len = len as libc::off_t;
        // OFD locks require l_pid 0 (zeroed above).
        loop {
            // SAFETY: a valid descriptor and a pointer to a live `flock`.
            if unsafe { libc::fcntl(file.as_raw_fd(), cmd, &mut fl) } == 0 {
                return Ok(fl);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Whether a non-waiting `F_OFD_SETLK` failed because of another lock.
    pub fn is_conflict(e: &io::Error) -> bool {
        matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES))
    }
}
