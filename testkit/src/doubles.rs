//! Doubles of the disk for the store's seam (`taskserver::store::file`): the
//! real file system, with hooks a test can pull.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use taskserver::store::file::{DataFile, Fs, Identity, OsFs, Stat, SyncedEnd};

/// A gate that `fdatasync` must pass: while it is closed, syncs wait.
#[derive(Default)]
pub struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    closed: bool,
    /// Syncs waiting at the gate now.
    waiting: usize,
}

impl Gate {
    /// From now on, syncs wait until [`Gate::open`].
    pub fn close(&self) {
        self.state.lock().unwrap().closed = true;
    }

    /// Lets every waiting sync (and every later one) through.
    pub fn open(&self) {
        self.state.lock().unwrap().closed = false;
        self.changed.notify_all();
    }

    /// Waits until a sync is held at the gate; false after `limit`.
    pub fn wait_for_a_sync(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut state = self.state.lock().unwrap();
        while state.waiting == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self.changed.wait_timeout(state, left).unwrap().0;
        }
        true
    }

    fn pass(&self) {
        let mut state = self.state.lock().unwrap();
        if !state.closed {
            return;
        }
        state.waiting += 1;
        self.changed.notify_all();
        while state.closed {
            state = self.changed.wait(state).unwrap();
        }
        state.waiting -= 1;
    }
}

/// What a test can do to the disk of a [`HookedFs`].
#[derive(Default)]
pub struct Hooks {
    /// Every `fdatasync` passes this gate first.
    pub sync_gate: Gate,
    /// When set, the next data write panics: a bug in the commit path.
    pub panic_on_write: AtomicBool,
}

/// Syncs are held at the gate while this lives (also when a test fails: a
/// sync left waiting would keep the test's runtime from ever ending).
pub struct HeldSyncs(Arc<Hooks>);

impl HeldSyncs {
    /// Lets the syncs go.
    pub fn release(self) {}
}

impl Drop for HeldSyncs {
    fn drop(&mut self) {
        self.0.sync_gate.open();
    }
}

/// The real file system, with [`Hooks`].
#[derive(Clone, Default)]
pub struct HookedFs {
    pub hooks: Arc<Hooks>,
}

impl HookedFs {
    /// Holds every `fdatasync` until the returned value is released or dropped.
    pub fn hold_syncs(&self) -> HeldSyncs {
        self.hooks.sync_gate.close();
        HeldSyncs(self.hooks.clone())
    }
}

impl Fs for HookedFs {
    fn open(&self, path: &Path) -> io::Result<Arc<dyn DataFile>> {
        Ok(Arc::new(HookedFile {
            inner: OsFs.open(path)?,
            hooks: self.hooks.clone(),
        }))
    }

    fn stat(&self, path: &Path) -> io::Result<Option<Stat>> {
        OsFs.stat(path)
    }

    fn create_durable(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        OsFs.create_durable(path, bytes)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        OsFs.rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        OsFs.remove(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<std::path::PathBuf>> {
        OsFs.list(dir)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        OsFs.create_dir_all(dir)
    }
}

struct HookedFile {
    inner: Arc<dyn DataFile>,
    hooks: Arc<Hooks>,
}

impl DataFile for HookedFile {
    fn identity(&self) -> io::Result<Identity> {
        self.inner.identity()
    }
    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, at)
    }
    fn write_all_at(&self, bytes: &[u8], at: u64) -> io::Result<()> {
        if self.hooks.panic_on_write.swap(false, Ordering::SeqCst) {
            panic!("injected by the test: a bug in the commit path");
        }
        self.inner.write_all_at(bytes, at)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.hooks.sync_gate.pass();
        self.inner.sync_data()
    }
    fn lock_writer(&self) -> io::Result<()> {
        self.inner.lock_writer()
    }
    fn unlock_writer(&self) -> io::Result<()> {
        self.inner.unlock_writer()
    }
    fn mark_unsynced(&self, from: u64) -> io::Result<()> {
        self.inner.mark_unsynced(from)
    }
    fn unmark_unsynced(&self) -> io::Result<()> {
        self.inner.unmark_unsynced()
    }
    fn lock_synced(&self, from: u64) -> io::Result<SyncedEnd> {
        self.inner.lock_synced(from)
    }
    fn unlock_synced(&self) -> io::Result<()> {
        self.inner.unlock_synced()
    }
}
