//! What the HTTP API needs from whatever keeps the tasks.
//!
//! The handlers are written once, against [`Tasks`]. The data file's
//! [`Store`] implements it here; so does the benchmark's ceiling, which
//! keeps nothing, so that the ratio between the two measures the store
//! alone, through the same router, middleware and accept loop.

use std::future::Future;

use bytes::Bytes;
use prometheus_client::registry::Registry;

use super::live::Live;
use crate::error::ApiError;
use crate::store::{Inserted, NewEntry, Page, Store};

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Freshness {
    /// Every task acknowledged by any server before the read began is in
    /// it (the default).
    #[default]
    Linearizable,
    /// What this server holds now, with no question asked of the others
    /// (`?consistencia=local`, in cluster mode: faster, maybe behind).
    Local,
}

/// A keeper of tasks, as the API sees it.
pub trait Tasks: Clone + Send + Sync + 'static {
    /// Stores one task durably, or finds the one stored with its key.
    fn insert(&self, entry: NewEntry) -> impl Future<Output = Result<Inserted, ApiError>> + Send;

    /// Tasks with an id above `after`, at most `limit`, in id order.
    fn page(
        &self,
        after: u64,
        limit: usize,
        fresh: Freshness,
    ) -> impl Future<Output = Result<Page, ApiError>> + Send;

    /// The public JSON of one task.
    fn get(
        &self,
        id: u64,
        fresh: Freshness,
    ) -> impl Future<Output = Result<Option<Bytes>, ApiError>> + Send;

    /// The body of `GET /health` (`{"status":"ok","tareas":N}` and more),
    /// or why this server is not healthy ([`ApiError::Unhealthy`]).
    fn health(&self) -> impl Future<Output = Result<serde_json::Value, ApiError>> + Send;

    /// Adds its own metrics to `/metrics`.
    fn register_metrics(&self, registry: &mut Registry);

    /// Brings what it registered up to date, before `/metrics` is encoded
    /// (for metrics read from elsewhere at a scrape, not kept on the way).
    fn refresh_metrics(&self) {}

    /// What the live page shows of it (`GET /live`), from memory. A keeper
    /// with nothing to show (the benchmark's ceiling) keeps this default.
    fn live(&self) -> impl Future<Output = Result<Live, ApiError>> + Send {
        async {
            Ok(Live {
                mode: "none",
                ..Live::default()
            })
        }
    }
}

impl Tasks for Store {
    async fn insert(&self, entry: NewEntry) -> Result<Inserted, ApiError> {
        Ok(self.insert_one(entry).await??)
    }

    // A single server's reads are always linearizable: they catch up with
    // the file first.
    async fn page(&self, after: u64, limit: usize, _: Freshness) -> Result<Page, ApiError> {
        Ok(Store::page(self, after, limit).await?)
    }

    async fn get(&self, id: u64, _: Freshness) -> Result<Option<Bytes>, ApiError> {
        Ok(Store::get(self, id).await?)
    }

    async fn health(&self) -> Result<serde_json::Value, ApiError> {
        if let Some(reason) = self.failure() {
            return Err(ApiError::Unhealthy(
                crate::store::StoreError::Failed(reason).to_string(),
            ));
        }
        let tareas = self.count().await?;
        Ok(serde_json::json!({ "status": "ok", "tareas": tareas }))
    }

    fn register_metrics(&self, registry: &mut Registry) {
        self.stats().register(registry);
    }

    async fn live(&self) -> Result<Live, ApiError> {
        Ok(Store::live(self).await?)
    }
}
