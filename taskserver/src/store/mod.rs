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
//! - **Serialised writers.** One committer thread per process, and an
//!   exclusive `flock` on the file for each commit: one writer across the
//!   processes and containers sharing the file.
//! - **Reads never wait for the disk.** They are answered from the in-memory
//!   index, which holds only durable tasks; the store's mutex is never held
//!   across a commit's `fdatasync`. A read still sees every task that any
//!   process sharing the file acknowledged before it began: before answering
//!   it catches up with the file, reading only bytes that are synced (how it
//!   knows which, without waiting: [`file`](mod@file)). The one exception is a file a
//!   person replaced or edited, which a writer must reread first.
//! - **Other writers are noticed.** Before a commit or a read, the bytes after
//!   the last known entry are reread: appends by another process are indexed,
//!   a reset or edited file is reread whole (ids continue from its largest).
//! - **Recovery.** A missing or empty file becomes `[]`. An incomplete last
//!   entry left by a crash is cut off (kept in a side file, logged) and the
//!   array closed. A file no crash could produce is refused and left as is.
//! - **Idempotency.** A task's `Idempotency-Key` is stored with it, so a retry
//!   finds the first task, even after a restart or through another process.
//! - **A failure is loud.** The commit path returns errors; should it panic
//!   anyway (a bug), the committer stops, every waiting request is answered
//!   `503`, and [`Store::failure`] says why, so that `/health` fails and the
//!   server exits to be restarted. What was acknowledged stays acknowledged.
//!
//! # A commit, step by step
//!
//! ```text
//! committer: take all queued ─► file mutex ─► flock(EX) ─► catch up ─► plan (ids, keys)
//!            ─► mark the append's bytes unsynced ─► pwrite ─► release the mutex
//!            ─► fdatasync ─► file mutex ─► index the tasks ─► unmark, unlock ─► answer
//! ```
//!
//! # Layout
//!
//! - [`file`](mod@file): the seam to the disk, and the two locks on the data file.
//! - [`scan`]: parses the array and tells a crash's torn tail from a broken file.
//! - [`load`]: loads a whole file into an index, in pieces when it can.
//! - [`index`]: the in-memory tasks, packed as JSON, that reads are served from.
//! - [`plan`]: deciding what a group of new tasks becomes (ids, replays).
//! - [`state`]: the file kept in step with the index: catch-up, repair, append.
//! - [`Replica`]: the same file as a cluster node's state machine, applied
//!   from the Raft log instead of a queue.

pub mod file;
pub(crate) mod index;
mod load;
mod plan;
#[cfg(any(test, feature = "sim"))]
pub mod power_cut;
mod replica;
mod scan;
mod state;

use std::io;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::SystemTime;

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use tokio::sync::{mpsc, oneshot, watch};

use file::{Fs, OsFs};
use index::Index;
pub use index::Page;
pub use plan::Proposal;
pub use replica::Replica;
pub use scan::Broken;
use state::FileState;

use crate::task::ValidTask;

/// Most tasks committed in one write; beyond it the next group starts.
const MAX_BATCH: usize = 4096;
/// Batches that may wait for the committer before senders wait too.
const QUEUE: usize = 8192;

/// A task to store, with the client's idempotency key if it sent one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewEntry {
    /// The validated task.
    pub task: ValidTask,
    /// Makes a retry return the first task instead of storing another.
    pub idempotency_key: Option<String>,
}

/// A task the store holds after an insert.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    #[error("{0}; the file is reread before the next request")]
    Inconsistent(#[from] plan::Inconsistent),
    #[error("the store stopped after an internal error ({0}); this server no longer stores tasks and exits so that it can be restarted. A task sent with an Idempotency-Key can be retried with the same key once it is back")]
    Failed(Arc<str>),
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
    /// The same syncs, counted and timed where the live page can read them
    /// (a histogram's sum is not readable): not in `/metrics`.
    pub fsyncs: Counter,
    pub fsync_micros: Counter,
}

impl StoreStats {
    /// Adds these metrics to `/metrics`.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register("tasks", "Tasks in the data file", self.tasks.clone());
        registry.register(
            "tasks_written",
            "Tasks appended to the data file by this process",
            self.written.clone(),
        );
        registry.register(
            "commit_batch_size",
            "Tasks written by one commit (one write and one fdatasync)",
            self.batch_size.clone(),
        );
        registry.register(
            "fsync_seconds",
            "Time of each fdatasync of the data file",
            self.fsync_seconds.clone(),
        );
    }
}

impl Default for StoreStats {
    fn default() -> Self {
        StoreStats {
            tasks: Gauge::default(),
            written: Counter::default(),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            fsync_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            fsyncs: Counter::default(),
            fsync_micros: Counter::default(),
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
    /// What the handles and the committer thread share.
    core: Arc<Core>,
    /// The committer's queue; `None` once closing.
    queue: Option<mpsc::Sender<Batch>>,
    /// The committer thread, joined when the last handle goes.
    committer: Option<JoinHandle<()>>,
}

/// The data file and its index, shared by the handles and the committer.
struct Core {
    /// The file and what is known of its end. A `std` mutex, not an async
    /// one: it is only taken on blocking threads (the committer, reads in
    /// `spawn_blocking`). It is never held across a commit's `fdatasync`,
    /// so a read waits at most for a write or a catch-up, never for the disk.
    file: Mutex<FileState>,
    /// Every durable task of the file, in id order: what reads are answered
    /// from. Written for moments only (a commit's new tasks, another
    /// process's appends), read by many at once.
    index: RwLock<Index>,
    /// Why the committer stopped, once it has: what `/health` reports and
    /// what makes [`crate::run`] end.
    failure: watch::Sender<Option<Arc<str>>>,
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
        Store::open_on(Arc::new(OsFs), path)
    }

    /// [`Store::open`] on another file system: a test's double of the disk.
    pub fn open_on(fs: Arc<dyn Fs>, path: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let path = path.into();
        let core = Arc::new(Core::open(fs, path.clone())?);
        let (queue, rx) = mpsc::channel(QUEUE);
        let committer = std::thread::Builder::new()
            .name("taskserver-commit".into())
            .spawn({
                let core = core.clone();
                move || commit_loop(&core, rx)
            })
            .map_err(|e| StoreError::Io {
                action: "start the commit thread for",
                path,
                error: e.into(),
            })?;
        Ok(Store {
            shared: Arc::new(Shared {
                core,
                queue: Some(queue),
                committer: Some(committer),
            }),
        })
    }

    /// The data file's path.
    pub fn path(&self) -> &Path {
        &self.shared.core.path
    }

    /// The store's metrics.
    pub fn stats(&self) -> &StoreStats {
        &self.shared.core.stats
    }

    /// Why the store stopped storing, if it has: the committer met an
    /// internal error it could not answer with an error (a panic).
    pub fn failure(&self) -> Option<Arc<str>> {
        self.shared.core.failure.borrow().clone()
    }

    /// Completes when the store stops storing, with the reason.
    pub fn failed(&self) -> impl std::future::Future<Output = Arc<str>> + Send + 'static {
        let mut failure = self.shared.core.failure.subscribe();
        async move {
            let reason = match failure.wait_for(Option::is_some).await {
                Ok(reason) => reason.clone(),
                Err(_) => None,
            };
            match reason {
                Some(reason) => reason,
                // The store is gone, and never failed: nothing to report.
                None => std::future::pending().await,
            }
        }
    }

    /// Stores a batch durably; one result per entry, in order.
    pub async fn insert(
        &self,
        items: Vec<NewEntry>,
    ) -> Result<Vec<Result<Inserted, KeyConflict>>, StoreError> {
        let closed = || match self.failure() {
            Some(reason) => StoreError::Failed(reason),
            None => StoreError::Closed,
        };
        let queue = self.shared.queue.as_ref().ok_or_else(closed)?;
        let (reply, result) = oneshot::channel();
        queue
            .send(Batch { items, reply })
            .await
            .map_err(|_| closed())?;
        result.await.map_err(|_| closed())?
    }

    /// Stores one task durably.
    pub async fn insert_one(
        &self,
        entry: NewEntry,
    ) -> Result<Result<Inserted, KeyConflict>, StoreError> {
        let mut results = self.insert(vec![entry]).await?;
        results.pop().ok_or(StoreError::Closed)
    }

    /// Tasks with an id above `after`, at most `limit`, in id order.
    pub async fn page(&self, after: u64, limit: usize) -> Result<Page, StoreError> {
        self.read(move |index| index.page(after, limit)).await
    }

    /// The public JSON of one task.
    pub async fn get(&self, id: u64) -> Result<Option<Bytes>, StoreError> {
        self.read(move |index| index.get(id)).await
    }

    /// How many tasks the file holds.
    pub async fn count(&self) -> Result<usize, StoreError> {
        self.read(|index| index.len()).await
    }

    /// What the live page shows of the store (from memory: no catch-up
    /// with the file).
    pub async fn live(&self) -> Result<crate::api::Live, StoreError> {
        let stats = self.stats().clone();
        self.read(move |index| crate::api::Live::of_store(index, &stats))
            .await
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Index) -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        self.shared.core.clone().read(f).await
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

/// Takes the file mutex. A panic while it was held may have left the index
/// out of step with the file, so the file is then reread.
fn lock(file: &Mutex<FileState>) -> MutexGuard<'_, FileState> {
    file.lock().unwrap_or_else(|poisoned| {
        let mut guard = poisoned.into_inner();
        guard.distrust();
        guard
    })
}

type Answers = Vec<Result<Inserted, KeyConflict>>;

impl Core {
    /// Runs `f` on an index that includes every task acknowledged before
    /// this call, by this process or another one sharing the file.
    async fn read<T: Send + 'static>(
        self: Arc<Core>,
        f: impl FnOnce(&Index) -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        tokio::task::spawn_blocking(move || {
            lock(&self.file).refresh(&self.index)?;
            Ok(f(&state::read(&self.index)))
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    /// Opens the data file on `fs` and loads it.
    fn open(fs: Arc<dyn Fs>, path: PathBuf) -> Result<Core, StoreError> {
        let stats = StoreStats::default();
        let mut file = FileState::open(fs, path.clone(), stats.clone())?;
        let index = RwLock::new(Index::default());
        file.begin_write(&index)?;
        file.end_write();
        Ok(Core {
            file: Mutex::new(file),
            index,
            failure: watch::Sender::new(None),
            stats,
            path,
        })
    }

    /// Commits one group of a single server: every task stamped with the
    /// moment the commit began.
    fn commit(&self, items: &[&NewEntry]) -> Result<Answers, StoreError> {
        let creada_en = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let proposals: Vec<Proposal<'_>> = items
            .iter()
            .map(|entry| Proposal {
                entry,
                creada_en: &creada_en,
                raft: None,
            })
            .collect();
        self.write(&proposals)
    }

    /// Decides, writes and applies `proposals` as one group: the steps of
    /// the module docs. Both modes: a single server's committer, and a
    /// cluster node applying its log ([`Replica::apply`]).
    fn write(&self, proposals: &[Proposal<'_>]) -> Result<Answers, StoreError> {
        let mut file = lock(&self.file);
        file.begin_write(&self.index)?;
        let planned = {
            let index = state::read(&self.index);
            plan::plan(proposals, &index).map(|plan| (plan, index.is_empty()))
        };
        let (plan, empty) = match planned {
            Ok(planned) => planned,
            Err(e) => {
                file.distrust();
                file.end_write();
                return Err(e.into());
            }
        };
        if plan.records.is_empty() {
            file.end_write();
            return Ok(plan.answers(&[]));
        }
        let append = match file.start_append(&plan.records, empty) {
            Ok(append) => append,
            Err(e) => {
                file.end_write();
                return Err(e);
            }
        };
        // Reads go on meanwhile: they see that an append is under way.
        drop(file);
        let synced = append.sync(&self.stats);
        let mut file = lock(&self.file);
        let stored = file.finish_append(append, synced, &plan.records, &self.index);
        file.end_write();
        drop(file);
        Ok(plan.answers(&stored?))
    }

    /// Records why the committer stops; the first reason stays.
    fn fail(&self, reason: &str) {
        tracing::error!(reason, path = %self.path.display(), "the commit thread stopped: this server no longer stores tasks");
        self.failure.send_if_modified(|failure| {
            if failure.is_some() {
                return false;
            }
            *failure = Some(reason.into());
            true
        });
    }
}

/// The committer: takes everything queued, commits it as one group, answers.
/// A panic in a commit stops it, after answering every waiting request.
fn commit_loop(core: &Core, mut queue: mpsc::Receiver<Batch>) {
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
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| core.commit(&items)));
        match result {
            Ok(Ok(answers)) => {
                let mut answers = answers.into_iter();
                for batch in group {
                    let mine = answers.by_ref().take(batch.items.len()).collect();
                    // A requester that gave up (timeout) still has its task stored.
                    let _ = batch.reply.send(Ok(mine));
                }
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, tasks = items.len(), "commit failed; nothing of it was acknowledged");
                for batch in group {
                    let _ = batch.reply.send(Err(e.clone()));
                }
            }
            Err(panic) => {
                core.fail(&panic_message(&*panic));
                let failed =
                    || StoreError::Failed(core.failure.borrow().clone().unwrap_or_default());
                for batch in group {
                    let _ = batch.reply.send(Err(failed()));
                }
                // Everything queued behind is answered too, and nothing more
                // is taken.
                queue.close();
                while let Some(batch) = queue.blocking_recv() {
                    let _ = batch.reply.send(Err(failed()));
                }
                return;
            }
        }
    }
}

/// The text a panic carried, for the log and `/health`.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with no message".into());
    format!("panic in the commit path: {text}")
}
