//! The race the course warns about, on demand (`--unsafe-no-locking`).
//!
//! **This loses tasks. It exists to be watched doing so.** Each `POST`
//! reads the whole data file, adds its task, and writes the whole file back,
//! with no lock and nothing making requests wait for one another: what an
//! unprotected Flask server does. Two requests that read the file before
//! either wrote it both write an array holding only their own new task; the
//! second write wipes out the first, which was already answered `201`. Each
//! request writes its array to a file of its own and renames it over the
//! data file, so the file is always some request's whole array: the last
//! rename wins, and what the others added is gone.
//!
//! Nothing else changes: the same router, validation and statuses. There is
//! no `Idempotency-Key` deduplication (the course's design has none) and no
//! `fdatasync`. The safe store ([`crate::store`]) is untouched by this
//! module; the server uses one or the other, never both, and never this one
//! in cluster mode.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use prometheus_client::registry::Registry;

use crate::api::{Freshness, Live, Tasks};
use crate::error::ApiError;
use crate::store::{Inserted, NewEntry, Page};
use crate::task::Record;

/// What the log and `/health` say while this mode runs.
pub const WARNING: &str = "UNSAFE MODE (--unsafe-no-locking): every POST reads the whole file, adds its task and writes the file back, with no lock; concurrent requests overwrite each other and acknowledged tasks are lost. This is the race the course warns about, shown on purpose. Never use it for data you want to keep";

/// Numbers each request's new file.
static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The data file, read and rewritten whole by every request.
#[derive(Clone)]
pub struct Racy {
    path: Arc<PathBuf>,
}

impl Racy {
    /// Uses `path`, writing `[]` to it if it does not exist.
    pub async fn open(path: PathBuf) -> std::io::Result<Racy> {
        if tokio::fs::metadata(&path).await.is_err() {
            tokio::fs::write(&path, b"[]\n").await?;
        }
        Ok(Racy {
            path: Arc::new(path),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Reads and parses the whole file, as every request does.
    async fn read_all(&self) -> Result<Vec<Record>, ApiError> {
        let bytes = tokio::fs::read(&*self.path)
            .await
            .map_err(|e| ApiError::Internal(format!("cannot read {}: {e}", self.path.display())))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::Internal(format!(
                "{} is not a JSON array of tasks ({e}) \
                 (the race of --unsafe-no-locking)",
                self.path.display()
            ))
        })
    }
}

impl Tasks for Racy {
    async fn insert(&self, entry: NewEntry) -> Result<Inserted, ApiError> {
        // 1. Read the whole file.
        let mut tasks = self.read_all().await?;
        // 2. Add the task, with the next id as this request sees it.
        let id = tasks.last().map_or(1, |t| t.id + 1);
        let creada_en = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let record = Record::new(id, &entry.task, creada_en, None);
        let json = Bytes::from(record.public_json());
        tasks.push(record);
        // Other requests run here, between this one's read and its write,
        // as they would between the two in an unprotected server.
        tokio::task::yield_now().await;
        // 3. Write the whole array back: to a file of its own, renamed over
        // the data file, so that the file is always one request's whole
        // array (two plain rewrites at once can also leave it broken for
        // good, and then the demonstration shows only errors).
        let mut bytes = serde_json::to_vec_pretty(&tasks).expect("tasks always serialize");
        bytes.push(b'\n');
        let new = self.path.with_extension(format!(
            "json.racy-{}",
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let written = async {
            tokio::fs::write(&new, bytes).await?;
            tokio::fs::rename(&new, &*self.path).await
        };
        written.await.map_err(|e| {
            ApiError::Internal(format!("cannot write {}: {e}", self.path.display()))
        })?;
        Ok(Inserted {
            id,
            json,
            created: true,
        })
    }

    async fn page(&self, after: u64, limit: usize, _: Freshness) -> Result<Page, ApiError> {
        let tasks = self.read_all().await?;
        let mut page = Page {
            parts: Vec::new(),
            count: 0,
        };
        for task in tasks.iter().filter(|t| t.id > after).take(limit) {
            if page.count > 0 {
                page.parts.push(Bytes::from_static(b",\n"));
            }
            page.parts.push(Bytes::from(task.public_json()));
            page.count += 1;
        }
        Ok(page)
    }

    async fn get(&self, id: u64, _: Freshness) -> Result<Option<Bytes>, ApiError> {
        let tasks = self.read_all().await?;
        Ok(tasks
            .iter()
            .find(|t| t.id == id)
            .map(|t| Bytes::from(t.public_json())))
    }

    async fn health(&self) -> Result<serde_json::Value, ApiError> {
        let tareas = self.read_all().await?.len();
        Ok(
            serde_json::json!({ "status": "ok", "tareas": tareas, "mode": "unsafe-no-locking", "warning": WARNING }),
        )
    }

    fn register_metrics(&self, _: &mut Registry) {}

    async fn live(&self) -> Result<Live, ApiError> {
        let tasks = self.read_all().await?;
        let mut clients = std::collections::BTreeMap::new();
        for t in &tasks {
            *clients
                .entry(t.cliente.clone().unwrap_or_default())
                .or_insert(0) += 1;
        }
        Ok(Live {
            mode: "unsafe-no-locking",
            tareas: tasks.len() as u64,
            clients,
            warning: Some(WARNING),
            ..Live::default()
        })
    }
}
