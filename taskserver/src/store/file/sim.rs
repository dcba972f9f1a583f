//! A disk in memory that remembers what was synced, and can lose power.
//!
//! Each file has two images: what reads see (the page cache) and what is
//! *durable* (on the platter). A write changes the first at once; only
//! `fdatasync` copies it into the second. A power cut ([`SimDisk::cut`])
//! keeps what was durable and, of each write since the last sync, what a
//! real disk may keep, as chosen by a [`Cut`]: a prefix of the writes in
//! their order, or any subset of their sectors (4 KiB or 512 B), each kept,
//! lost, zeroed or filled with garbage; and a length from the old one to the
//! new one. Bytes no unsynced write touched stay as they were durable (the
//! "powersafe overwrite" of modern disks: a write to part of a sector never
//! damages the rest of it).
//!
//! A cut can also be armed to happen at the `n`-th operation from now
//! ([`SimDisk::cut_at_operation`]): that operation never reaches the disk and
//! fails, like every later operation of the handles opened before the cut
//! (that process is dead). A store opened again on the disk then finds what
//! a machine finds after it lost power: the test of "acknowledged means
//! durable" (`store/power_cut.rs`).
//!
//! One process only: the locks are not modelled (the store's own mutex
//! orders everything a single process does).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{DataFile, Fs, Identity, Stat, SyncedEnd};

/// What survives a power cut of the writes since the last sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cut {
    /// The first `writes` unsynced writes (and length changes) reach the
    /// disk in order, and `bytes` bytes of the next one.
    Prefix { writes: usize, bytes: usize },
    /// Each `sector`-sized piece written since the last sync is kept, lost
    /// (the durable bytes stay), zeroed or garbage, as drawn from `seed`;
    /// the length is the old or the new one, also drawn.
    Sectors { sector: usize, seed: u64 },
}

/// One change since the last sync.
#[derive(Debug, Clone)]
enum Change {
    Write { at: u64, bytes: Vec<u8> },
    SetLen(u64),
}

/// A file of the disk.
#[derive(Debug, Clone, Default)]
struct SimFile {
    /// What reads see.
    current: Vec<u8>,
    /// What a power cut keeps for sure.
    durable: Vec<u8>,
    /// The changes since the last sync, in order.
    unsynced: Vec<Change>,
    /// Its inode number.
    inode: u64,
}

#[derive(Debug, Default)]
struct DiskState {
    files: BTreeMap<PathBuf, SimFile>,
    /// Bumped by each cut: handles from before fail every operation.
    generation: u64,
    next_inode: u64,
    /// Data operations (read, write, length, sync) so far.
    operations: u64,
    /// A cut waiting for operation number `.0`.
    armed: Option<(u64, Cut)>,
    /// Cuts that happened.
    cuts: u64,
}

/// The shared disk; clone it to give a store its [`Fs`] ([`SimDisk::fs`]).
#[derive(Debug, Clone, Default)]
pub struct SimDisk {
    state: Arc<Mutex<DiskState>>,
}

impl SimDisk {
    /// A file system on this disk, as a process that starts now sees it.
    pub fn fs(&self) -> Arc<dyn Fs> {
        let generation = self.lock().generation;
        Arc::new(SimFs {
            disk: self.clone(),
            generation,
        })
    }

    /// Puts a file on the disk, durably (a file the test starts from).
    pub fn put(&self, path: &Path, bytes: &[u8]) {
        let mut disk = self.lock();
        let inode = disk.new_inode();
        disk.files.insert(
            path.to_owned(),
            SimFile {
                current: bytes.to_vec(),
                durable: bytes.to_vec(),
                unsynced: Vec::new(),
                inode,
            },
        );
    }

    /// What reads see of a file now.
    pub fn read(&self, path: &Path) -> Option<Vec<u8>> {
        self.lock().files.get(path).map(|f| f.current.clone())
    }

    /// Every file on the disk, as reads see it.
    pub fn files(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let disk = self.lock();
        disk.files
            .iter()
            .map(|(path, f)| (path.clone(), f.current.clone()))
            .collect()
    }

    /// Cuts the power now.
    pub fn cut(&self, cut: &Cut) {
        self.lock().cut(cut);
    }

    /// Cuts the power instead of the `n`-th data operation from now (1: the
    /// next one). Replaces a cut armed before.
    pub fn cut_at_operation(&self, n: u64, cut: Cut) {
        let mut disk = self.lock();
        let at = disk.operations + n.max(1);
        disk.armed = Some((at, cut));
    }

    /// Whether an armed cut is still waiting; disarms it.
    pub fn disarm(&self) -> bool {
        self.lock().armed.take().is_some()
    }

    /// How many cuts happened.
    pub fn cuts(&self) -> u64 {
        self.lock().cuts
    }

    fn lock(&self) -> MutexGuard<'_, DiskState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl DiskState {
    fn new_inode(&mut self) -> u64 {
        self.next_inode += 1;
        self.next_inode
    }

    /// Counts a data operation of a handle of `generation`; an error when
    /// that process is dead, or when the power goes now.
    fn operation(&mut self, generation: u64) -> io::Result<()> {
        if generation != self.generation {
            return Err(dead());
        }
        self.operations += 1;
        if let Some((at, _)) = &self.armed {
            if *at <= self.operations {
                let (_, cut) = self.armed.take().expect("armed");
                self.cut(&cut);
                return Err(dead());
            }
        }
        Ok(())
    }

    fn cut(&mut self, cut: &Cut) {
        for file in self.files.values_mut() {
            let image = survivor(file, cut);
            file.current = image.clone();
            file.durable = image;
            file.unsynced.clear();
        }
        self.generation += 1;
        self.cuts += 1;
    }
}

fn dead() -> io::Error {
    io::Error::other("the power was cut (simulated)")
}

/// What a power cut leaves of `file`.
fn survivor(file: &SimFile, cut: &Cut) -> Vec<u8> {
    match *cut {
        Cut::Prefix { writes, bytes } => {
            let mut image = file.durable.clone();
            for (i, change) in file.unsynced.iter().enumerate() {
                match change {
                    Change::Write { at, bytes: data } if i < writes => {
                        write_into(&mut image, *at, data)
                    }
                    Change::Write { at, bytes: data } if i == writes => {
                        write_into(&mut image, *at, &data[..bytes.min(data.len())]);
                    }
                    Change::SetLen(len) if i < writes => image.resize(*len as usize, 0),
                    _ => {}
                }
            }
            image
        }
        Cut::Sectors { sector, seed } => {
            let mut rng = SplitMix(seed);
            // Which bytes unsynced writes touched.
            let mut touched = vec![false; file.current.len().max(file.durable.len())];
            for change in &file.unsynced {
                if let Change::Write { at, bytes } = change {
                    let n = touched.len();
                    let (from, to) = (*at as usize, *at as usize + bytes.len());
                    for t in &mut touched[from.min(n)..to.min(n)] {
                        *t = true;
                    }
                }
            }
            let len = if rng.next().is_multiple_of(2) {
                file.durable.len()
            } else {
                file.current.len()
            };
            let mut image = vec![0; len];
            let durable_part = len.min(file.durable.len());
            image[..durable_part].copy_from_slice(&file.durable[..durable_part]);
            for start in (0..len).step_by(sector) {
                let end = (start + sector).min(len);
                if !touched[start..end].iter().any(|&t| t) {
                    continue;
                }
                let fate = rng.next() % 4;
                for i in start..end {
                    if !touched[i] {
                        continue;
                    }
                    image[i] = match fate {
                        0 => file.current.get(i).copied().unwrap_or(0), // reached the disk
                        1 => file.durable.get(i).copied().unwrap_or(0), // never did
                        2 => 0,                                         // zeroed
                        _ => rng.next() as u8,                          // garbage
                    };
                }
            }
            image
        }
    }
}

fn write_into(image: &mut Vec<u8>, at: u64, bytes: &[u8]) {
    let at = at as usize;
    if image.len() < at + bytes.len() {
        image.resize(at + bytes.len(), 0);
    }
    image[at..at + bytes.len()].copy_from_slice(bytes);
}

/// A small deterministic generator: the cut's choices from its seed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The disk as one process sees it.
struct SimFs {
    disk: SimDisk,
    /// The disk's generation when this process started.
    generation: u64,
}

impl Fs for SimFs {
    fn open(&self, path: &Path) -> io::Result<Arc<dyn DataFile>> {
        let mut disk = self.disk.lock();
        if disk.generation != self.generation {
            return Err(dead());
        }
        if !disk.files.contains_key(path) {
            // Created, and its name synced (the real code syncs the directory).
            let inode = disk.new_inode();
            disk.files.insert(
                path.to_owned(),
                SimFile {
                    inode,
                    ..SimFile::default()
                },
            );
        }
        let inode = disk.files[path].inode;
        Ok(Arc::new(SimHandle {
            disk: self.disk.clone(),
            path: path.to_owned(),
            inode,
            generation: self.generation,
        }))
    }

    fn stat(&self, path: &Path) -> io::Result<Option<Stat>> {
        let disk = self.disk.lock();
        if disk.generation != self.generation {
            return Err(dead());
        }
        Ok(disk.files.get(path).map(|f| Stat {
            identity: (0, f.inode),
            len: f.current.len() as u64,
        }))
    }

    fn create_durable(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut disk = self.disk.lock();
        disk.operation(self.generation)?;
        if disk.files.contains_key(path) {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        let inode = disk.new_inode();
        disk.files.insert(
            path.to_owned(),
            SimFile {
                current: bytes.to_vec(),
                durable: bytes.to_vec(),
                unsynced: Vec::new(),
                inode,
            },
        );
        Ok(())
    }

    // Names change at once and durably (the real code syncs the directory):
    // a cut keeps or loses only the data of files.

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut disk = self.disk.lock();
        disk.operation(self.generation)?;
        let file = disk
            .files
            .remove(from)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        disk.files.insert(to.to_owned(), file);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.disk.lock();
        disk.operation(self.generation)?;
        disk.files
            .remove(path)
            .map(drop)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let disk = self.disk.lock();
        if disk.generation != self.generation {
            return Err(dead());
        }
        Ok(disk
            .files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .cloned()
            .collect())
    }

    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
}

/// An open file of a [`SimFs`].
struct SimHandle {
    disk: SimDisk,
    path: PathBuf,
    inode: u64,
    generation: u64,
}

impl SimHandle {
    /// Runs `f` on the file as one data operation.
    fn with<T>(&self, f: impl FnOnce(&mut SimFile) -> io::Result<T>) -> io::Result<T> {
        let mut disk = self.disk.lock();
        disk.operation(self.generation)?;
        match disk.files.get_mut(&self.path) {
            Some(file) if file.inode == self.inode => f(file),
            _ => Err(io::Error::other("the simulated file was replaced")),
        }
    }
}

impl DataFile for SimHandle {
    fn identity(&self) -> io::Result<Identity> {
        Ok((0, self.inode))
    }

    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> io::Result<()> {
        self.with(|file| {
            let at = at as usize;
            let bytes = file
                .current
                .get(at..at + buf.len())
                .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
            buf.copy_from_slice(bytes);
            Ok(())
        })
    }

    fn write_all_at(&self, bytes: &[u8], at: u64) -> io::Result<()> {
        self.with(|file| {
            write_into(&mut file.current, at, bytes);
            file.unsynced.push(Change::Write {
                at,
                bytes: bytes.to_vec(),
            });
            Ok(())
        })
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(|file| {
            file.current.resize(len as usize, 0);
            file.unsynced.push(Change::SetLen(len));
            Ok(())
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.with(|file| {
            file.durable = file.current.clone();
            file.unsynced.clear();
            Ok(())
        })
    }

    fn lock_writer(&self) -> io::Result<()> {
        Ok(())
    }

    fn unlock_writer(&self) -> io::Result<()> {
        Ok(())
    }

    fn mark_unsynced(&self, _from: u64) -> io::Result<()> {
        Ok(())
    }

    fn unmark_unsynced(&self) -> io::Result<()> {
        Ok(())
    }

    fn lock_synced(&self, _from: u64) -> io::Result<SyncedEnd> {
        Ok(SyncedEnd::Eof)
    }

    fn unlock_synced(&self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(disk: &SimDisk) -> Arc<dyn DataFile> {
        disk.fs().open(Path::new("f")).unwrap()
    }

    #[test]
    fn a_cut_keeps_what_was_synced_and_kills_the_process() {
        let disk = SimDisk::default();
        let f = file(&disk);
        f.write_all_at(b"synced", 0).unwrap();
        f.sync_data().unwrap();
        f.write_all_at(b" and not", 6).unwrap();
        disk.cut(&Cut::Prefix {
            writes: 0,
            bytes: 0,
        });
        assert_eq!(disk.read(Path::new("f")).unwrap(), b"synced");
        assert!(f.write_all_at(b"x", 0).is_err(), "the old process is dead");
        let f = file(&disk);
        let mut buf = [0; 6];
        f.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"synced");
    }

    #[test]
    fn a_prefix_cut_keeps_whole_writes_in_order_then_part_of_one() {
        let disk = SimDisk::default();
        let f = file(&disk);
        f.write_all_at(b"aaaa", 0).unwrap();
        f.write_all_at(b"bbbb", 4).unwrap();
        disk.cut(&Cut::Prefix {
            writes: 1,
            bytes: 2,
        });
        assert_eq!(disk.read(Path::new("f")).unwrap(), b"aaaabb");
    }

    #[test]
    fn a_sector_cut_never_touches_bytes_no_unsynced_write_touched() {
        for seed in 0..200 {
            let disk = SimDisk::default();
            let f = file(&disk);
            f.write_all_at(&[7; 1500], 0).unwrap();
            f.sync_data().unwrap();
            f.write_all_at(&[9; 1000], 1200).unwrap();
            disk.cut(&Cut::Sectors { sector: 512, seed });
            let image = disk.read(Path::new("f")).unwrap();
            assert!(image.len() == 1500 || image.len() == 2200);
            assert!(image[..1200].iter().all(|&b| b == 7), "seed {seed}");
        }
    }

    #[test]
    fn an_armed_cut_replaces_the_operation_it_falls_on() {
        let disk = SimDisk::default();
        let f = file(&disk);
        f.write_all_at(b"one", 0).unwrap();
        disk.cut_at_operation(
            2,
            Cut::Prefix {
                writes: 9,
                bytes: 0,
            },
        );
        f.write_all_at(b"two", 3).unwrap();
        assert!(f.sync_data().is_err(), "the power went instead");
        // Both writes were unsynced; the prefix cut keeps them.
        assert_eq!(disk.read(Path::new("f")).unwrap(), b"onetwo");
        assert_eq!(disk.cuts(), 1);
    }
}
