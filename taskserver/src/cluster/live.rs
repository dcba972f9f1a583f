//! The cluster's part of the live page: every member's `GET /cluster`, as
//! this node gets it, shared by everyone polling for 250 ms.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::Cluster;
use crate::api::Live;
use crate::error::ApiError;

/// How long one round of asking the members serves every poll.
const FRESH: Duration = Duration::from_millis(250);
/// How long a member may take to answer before the page says it does not.
const PATIENCE: Duration = Duration::from_millis(400);

/// The last round of answers.
pub(super) type Cache = tokio::sync::Mutex<Option<(Instant, Vec<Value>)>>;

impl Cluster {
    /// What `GET /live` answers on a node.
    pub(super) async fn live(&self) -> Result<Live, ApiError> {
        let mut live = self.inner.replica.live().await?;
        live.mode = "cluster";
        live.node_id = Some(self.inner.me);
        live.nodes = Some(self.members_now().await);
        Ok(live)
    }

    /// Every member's status: this node's own, the others' asked at once.
    async fn members_now(&self) -> Vec<Value> {
        let mut cache = self.inner.live_cache.lock().await;
        if let Some((at, nodes)) = &*cache {
            if at.elapsed() < FRESH {
                return nodes.clone();
            }
        }
        let me = self.status();
        let asks = me.members.iter().map(|(id, addr)| {
            let id: u64 = id.parse().unwrap_or(0);
            async move {
                if id == self.inner.me {
                    return entry(id, addr, serde_json::to_value(self.status()).ok());
                }
                let status = self.inner.peers.status_of(addr, PATIENCE).await;
                entry(id, addr, status)
            }
        });
        let nodes = futures::future::join_all(asks).await;
        *cache = Some((Instant::now(), nodes.clone()));
        nodes
    }
}

/// One member's row: its `/cluster` fields, or `answers: false`.
fn entry(id: u64, addr: &str, status: Option<Value>) -> Value {
    match status {
        Some(s) => json!({
            "id": id,
            "addr": addr,
            "answers": true,
            "role": s["role"],
            "term": s["term"],
            "leader_id": s["leader_id"],
            "committed": s["committed"],
            "applied": s["applied"],
            "last_log_index": s["last_log_index"],
        }),
        None => json!({ "id": id, "addr": addr, "answers": false }),
    }
}
