//! The task store: one JSON file, appended in place, with group commit.
//!
//! The store knows nothing of HTTP: a batch of new tasks goes in
//! ([`Store::insert`]), ids come out; reads return JSON straight from memory.
//!
//! # Guarantees
//!
//! - **Acknowledged means durable.** [`Store::insert`] returns only after the
//!   batch's bytes are written and `fdatasync`ed. A failed or short write is
//!   rolled back (truncated to the last good length) and reported, and the
//!   file stays a valid array.
//! - **Group commit.** One committer thread takes every batch waiting in the
//!   queue and commits them with one write and one sync; while it syncs, the
//!   next group gathers. A lone request is never held back by a timer.
//! - **Serialised writers.** Each commit holds the store's mutex (one writer
//!   per process, and no read mid-commit) and then an exclusive `flock` on the
//!   file (one writer across processes and containers sharing the file).
//!   Reads hold the mutex and a shared `flock`. Lock order: mutex, then file.
//! - **Other writers are noticed.** Before a commit or a read, the bytes after
//!   the last known entry are reread: appends by another process are indexed,
//!   a reset or edited file is reread whole (ids continue from its largest).
//! - **Recovery.** A missing or empty file becomes `[]`. An incomplete last
//!   entry left by a crash is cut off (kept in a side file, logged) and the
//!   array closed. A file no crash could produce is refused and left as is.
//! - **Idempotency.** A task's `Idempotency-Key` is stored with it, so a retry
//!   finds the first task, even after a restart or through another process.
//!
//! # Layout
//!
//! - [`scan`]: parses the array and tells a crash's torn tail from a broken file.
//! - [`index`]: the in-memory tasks, packed as JSON, that reads are served from.
//! - [`state`]: the file and the index together: catch-up, repair, append.

mod index;
mod scan;
mod state;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use tokio::sync::{mpsc, oneshot};

pub use index::Page;
pub use scan::Broken;
use state::{Lock, State};

use crate::task::ValidTask;

/// Most tasks committed in one write; beyond it the next group starts.
const MAX_BATCH: usize = 4096;
/// Batches that may wait for the committer before senders wait too.
const QUEUE: usize = 8192;

/// A task to store, with the client's idempotency key if it sent one.
#[derive(Debug, Clone)]
pub struct NewEntry {
    /// The validated task.
    pub task: ValidTask,
    /// Makes a retry return the first task instead of storing another.
    pub idempotency_key: Option<String>,
}

/// A task the store holds after an insert.
#[derive(Debug, Clone)]
pub struct Inserted {
    /// Its id.
    pub id: u64,
    /// Its public JSON, as `GET /tareas/{id}` returns it.
    pub json: Bytes,
    /// `false` when the key was seen before and this is the first task.
    pub created: bool,
}

/// The idempotency key was used before for a different task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this Idempotency-Key was already used for task {id}, with a different body")]
pub struct KeyConflict {
    /// The task stored under that key.
    pub id: u64,
}

/// What can go wrong with the data file. Cloneable so that one failed commit
/// can answer every request of its group.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {action} {}: {error}{}", path.display(), hint(error))]
    Io {
        action: &'static str,
        path: PathBuf,
        /// Not named `source`: the message already says it, and a `source`
        /// would make `{:#}` (anyhow) print it twice.
        error: Arc<io::Error>,
    },
    #[error("{} is not a JSON array of tasks ({broken}); the file was left untouched: fix it by hand, or move it away to start with an empty list", path.display())]
    Corrupt { path: PathBuf, broken: Broken },
    #[error("the store is shutting down")]
    Closed,
}

fn hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
            " (give the server write access to the file and its directory)"
        }
        io::ErrorKind::StorageFull | io::ErrorKind::FileTooLarge => {
            " (free some disk space or raise the file size limit)"
        }
        _ => "",
    }
}

/// The store's metrics, registered by the HTTP layer.
#[derive(Debug, Clone)]
pub struct StoreStats {
    /// Tasks in the file.
    pub tasks: Gauge,
    /// Tasks this process appended: what the activity log line reports.
    pub written: Counter,
    /// Tasks written per commit: how well group commit groups.
    pub batch_size: Histogram,
    /// Time of each `fdatasync`: the floor of a write's latency.
    pub fsync_seconds: Histogram,
}

impl Default for StoreStats {
    fn default() -> Self {
        StoreStats {
            tasks: Gauge::default(),
            written: Counter::default(),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            fsync_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
        }
    }
}

/// A group of tasks waiting for the committer, and where to send the result.
struct Batch {
    items: Vec<NewEntry>,
    reply: oneshot::Sender<Result<Vec<Result<Inserted, KeyConflict>>, StoreError>>,
}

/// A cheap-to-clone handle to the store. The last handle dropped waits for
/// every queued commit to finish.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

struct Shared {
    /// The file and the index. A `std` mutex, not an async one: it is only
    /// taken on blocking threads (the committer, `spawn_blocking` reads),
    /// and it is the process-wide half of the writer lock.
    state: Arc<Mutex<State>>,
    /// The committer's queue; `None` once closing.
    queue: Option<mpsc::Sender<Batch>>,
    /// The committer thread, joined when the last handle goes.
    committer: Option<JoinHandle<()>>,
    /// Metrics, shared with whoever registers them.
    stats: StoreStats,
    /// The data file's path, for messages.
    path: PathBuf,
}

impl Store {
    /// Opens the data file (creating `[]` if missing or empty), repairs a
    /// crash's torn tail, indexes every task and starts the committer.
    /// Blocking: call it before the runtime or in `spawn_blocking`.
    pub fn open(path: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let path = path.into();
        let stats = StoreStats::default();
        let mut state = State::open(path.clone(), stats.clone())?;
        state.locked(Lock::Exclusive, |_| Ok(()))?;
        let state = Arc::new(Mutex::new(state));
        let (queue, rx) = mpsc::channel(QUEUE);
        let committer = std::thread::Builder::new()
            .name("taskserver-commit".into())
            .spawn({
                let state = state.clone();
                move || commit_loop(&state, rx)
            })
            .map_err(|e| StoreError::Io {
                action: "start the commit thread for",
                path: path.clone(),
                error: e.into(),
            })?;
        Ok(Store {
            shared: Arc::new(Shared {
                state,
                queue: Some(queue),
                committer: Some(committer),
                stats,
                path,
            }),
        })
    }

    /// The data file's path.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The store's metrics.
    pub fn stats(&self) -> &StoreStats {
        &self.shared.stats
    }

    /// Stores a batch durably; one result per entry, in order.
    pub async fn insert(
        &self,
        items: Vec<NewEntry>,
    ) -> Result<Vec<Result<Inserted, KeyConflict>>, StoreError> {
        let queue = self.shared.queue.as_ref().ok_or(StoreError::Closed)?;
        let (reply, result) = oneshot::channel();
        queue
            .send(Batch { items, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        result.await.map_err(|_| StoreError::Closed)?
    }

    /// Stores one task durably.
    pub async fn insert_one(
        &self,
        entry: NewEntry,
    ) -> Result<Result<Inserted, KeyConflict>, StoreError> {
        let mut results = self.insert(vec![entry]).await?;
        Ok(results.pop().expect("one result per entry"))
    }

    /// Tasks with an id above `after`, at most `limit`, in id order.
    pub async fn page(&self, after: u64, limit: usize) -> Result<Page, StoreError> {
        self.read(move |s| s.index().page(after, limit)).await
    }

    /// The public JSON of one task.
    pub async fn get(&self, id: u64) -> Result<Option<Bytes>, StoreError> {
        self.read(move |s| s.index().get(id)).await
    }

    /// How many tasks the file holds.
    pub async fn count(&self) -> Result<usize, StoreError> {
        self.read(|s| s.index().len()).await
    }

    /// Runs `f` on the caught-up state under the mutex and a shared lock.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&State) -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        let state = self.shared.state.clone();
        tokio::task::spawn_blocking(move || lock(&state).locked(Lock::Shared, |s| Ok(f(s))))
            .await
            .map_err(|_| StoreError::Closed)?
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Closing the queue lets the committer finish what is queued, then stop.
        self.queue.take();
        if let Some(committer) = self.committer.take() {
            let _ = committer.join();
        }
    }
}

/// Takes the state's mutex. A panic while it was held may have left the
/// index out of step with the file, so the file is then reread.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|poisoned| {
        let mut guard = poisoned.into_inner();
        guard.distrust();
        guard
    })
}

/// The committer: takes everything queued, commits it as one group, answers.
fn commit_loop(state: &Mutex<State>, mut queue: mpsc::Receiver<Batch>) {
    while let Some(first) = queue.blocking_recv() {
        let mut waiting = first.items.len();
        let mut group = vec![first];
        while waiting < MAX_BATCH {
            match queue.try_recv() {
                Ok(batch) => {
                    waiting += batch.items.len();
                    group.push(batch);
                }
                Err(_) => break,
            }
        }
        let items: Vec<&NewEntry> = group.iter().flat_map(|b| &b.items).collect();
        let result = lock(state).locked(Lock::Exclusive, |s| s.commit(&items));
        match result {
            Ok(outcomes) => {
                let mut outcomes = outcomes.into_iter();
                for batch in group {
                    let mine = outcomes.by_ref().take(batch.items.len()).collect();
                    // A requester that gave up (timeout) still has its task stored.
                    let _ = batch.reply.send(Ok(mine));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, tasks = items.len(), "commit failed; nothing of it was acknowledged");
                for batch in group {
                    let _ = batch.reply.send(Err(e.clone()));
                }
            }
        }
    }
}
