//! The HTTP side of cluster mode, next to the ordinary API on the same port.
//!
//! - `/raft/...`: Raft between nodes (and a follower's writes and reads
//!   passed to the leader). Only requests with the cluster's secret,
//!   addressed to this node by id, are taken; any other is refused with
//!   `401` (or `421`) and changes nothing.
//! - `GET /cluster`: this node's view of the cluster, for anyone.
//! - Membership, with the secret: `POST /cluster/learners`
//!   `{"id":4,"addr":"node4:9000"}` adds a learner and waits until it caught
//!   up; `POST /cluster/voters` `{"id":4}` promotes it; `DELETE
//!   /cluster/members/4` removes a node; `POST /cluster/leader` `{"id":2}`
//!   hands leadership over. Any node takes them and passes them to the leader.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use openraft::ChangeMembers;
use serde::{Deserialize, Serialize};

use super::network::{SNAPSHOT_HEADER, TO_HEADER};
use super::types::{Member, Snapshot, SnapshotMeta, TypeConfig, Vote};
use super::Cluster;
use crate::error::ApiError;
use crate::store::NewEntry;

/// Longest a membership change may take (adding a learner waits for it to
/// catch up).
const ADMIN_WAIT: Duration = Duration::from_secs(120);

#[derive(Clone)]
struct Node {
    cluster: Cluster,
    secret: Arc<str>,
}

/// The routes of cluster mode, to merge with the API's.
pub fn router(cluster: Cluster, secret: Arc<str>) -> Router {
    let node = Node { cluster, secret };
    let peers = Router::new()
        .route("/raft/append", post(append))
        .route("/raft/vote", post(vote))
        .route("/raft/pre-vote", post(pre_vote))
        .route("/raft/transfer-leader", post(transfer_leader))
        .route(
            "/raft/snapshot",
            post(snapshot).layer(DefaultBodyLimit::disable()),
        )
        .route("/raft/write-batch", post(write_batch))
        .route("/raft/read-index", post(read_index))
        .route("/raft/admin", post(admin_here))
        .route("/raft/status", post(status_for_peers))
        .layer(DefaultBodyLimit::max(64 << 20))
        .route_layer(middleware::from_fn_with_state(node.clone(), only_peers));
    let admin = Router::new()
        .route("/cluster/learners", post(add_learner))
        .route("/cluster/voters", post(add_voter))
        .route("/cluster/members/{id}", delete(remove_member))
        .route("/cluster/leader", post(transfer))
        .route_layer(middleware::from_fn_with_state(
            node.clone(),
            only_with_secret,
        ));
    Router::new()
        .route("/cluster", get(status))
        .merge(peers)
        .merge(admin)
        .with_state(node)
}

/// Whether the request carries the secret (compared in constant time).
fn has_secret(headers: &HeaderMap, secret: &str) -> bool {
    let Some(given) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (given.as_bytes(), secret.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

async fn only_with_secret(State(node): State<Node>, req: Request, next: Next) -> Response {
    if !has_secret(req.headers(), &node.secret) {
        tracing::warn!(
            path = req.uri().path(),
            "refused a cluster request without the cluster's secret"
        );
        return ApiError::Forbidden.into_response();
    }
    next.run(req).await
}

async fn only_peers(State(node): State<Node>, req: Request, next: Next) -> Response {
    if !has_secret(req.headers(), &node.secret) {
        tracing::warn!(
            path = req.uri().path(),
            "refused a Raft request without the cluster's secret"
        );
        return ApiError::Forbidden.into_response();
    }
    let me = node.cluster.inner.me;
    let to = req.headers().get(TO_HEADER).and_then(|v| v.to_str().ok());
    if to != Some(me.to_string().as_str()) {
        let message = format!(
            "this is node {me}, not node {}: the address in --peers may name another node",
            to.unwrap_or("(none)")
        );
        return (StatusCode::MISDIRECTED_REQUEST, message).into_response();
    }
    node.cluster.heard_from_peer();
    next.run(req).await
}

/// A Raft answer: its JSON, or 500 with the reason.
fn answer<T: Serialize, E: std::fmt::Display>(result: Result<T, E>) -> Response {
    match result {
        Ok(value) => Json(value).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn append(
    State(node): State<Node>,
    Json(rpc): Json<AppendEntriesRequest<TypeConfig>>,
) -> Response {
    answer(node.cluster.raft().append_entries(rpc).await)
}

async fn vote(State(node): State<Node>, Json(rpc): Json<VoteRequest<TypeConfig>>) -> Response {
    if let Some(refusal) = node.cluster.not_voting_yet(rpc.last_log_id.as_ref()) {
        return Json(refusal).into_response();
    }
    answer(node.cluster.raft().vote(rpc).await)
}

async fn pre_vote(State(node): State<Node>, Json(rpc): Json<VoteRequest<TypeConfig>>) -> Response {
    if let Some(refusal) = node.cluster.not_voting_yet(rpc.last_log_id.as_ref()) {
        return Json(refusal).into_response();
    }
    answer(node.cluster.raft().pre_vote(rpc).await)
}

async fn transfer_leader(
    State(node): State<Node>,
    Json(rpc): Json<TransferLeaderRequest<TypeConfig>>,
) -> Response {
    answer(node.cluster.raft().handle_transfer_leader(rpc).await)
}

async fn snapshot(State(node): State<Node>, headers: HeaderMap, body: Bytes) -> Response {
    let meta = headers
        .get(SNAPSHOT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| serde_json::from_str::<(Vote, SnapshotMeta)>(v).ok());
    let Some((vote, meta)) = meta else {
        return (
            StatusCode::BAD_REQUEST,
            "a snapshot needs its vote and meta in a header",
        )
            .into_response();
    };
    let snapshot = Snapshot {
        meta,
        snapshot: body.to_vec(),
    };
    answer(
        node.cluster
            .raft()
            .install_full_snapshot(vote, snapshot)
            .await,
    )
}

/// The writes a follower passed on (see [`super::forward`]): each proposed
/// here on its own, all at once, if this node still leads (within the time
/// the follower waits); one answer per write, in order.
async fn write_batch(
    State(node): State<Node>,
    Json(entries): Json<Vec<NewEntry>>,
) -> Json<Vec<super::Proposal>> {
    let deadline = std::time::Instant::now() + super::WRITE_WAIT;
    let proposals = entries
        .into_iter()
        .map(|entry| node.cluster.propose(entry, deadline));
    Json(futures::future::join_all(proposals).await)
}

async fn read_index(State(node): State<Node>) -> Json<Result<super::ReadIndex, String>> {
    Json(node.cluster.read_index().await)
}

/// What a node starting up needs to know of a peer.
#[derive(Debug, Serialize, Deserialize)]
pub struct PeerStatus {
    pub node_id: u64,
    /// Whether it has a log or a vote: it belongs to a cluster.
    pub initialized: bool,
    pub term: u64,
    /// The leader it follows in that term, if it knows one.
    pub leader_id: Option<u64>,
    /// How far it knows the log committed.
    pub committed: Option<super::types::LogId>,
    /// The cluster it belongs to, once it knows.
    pub cluster_id: Option<String>,
}

async fn status_for_peers(State(node): State<Node>) -> Json<PeerStatus> {
    Json(node.cluster.peer_status().await)
}

async fn status(State(node): State<Node>) -> Json<super::Status> {
    Json(node.cluster.status())
}

/// A membership change, done on the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Admin {
    AddLearner { id: u64, addr: String },
    AddVoter { id: u64 },
    Remove { id: u64 },
    TransferLeader { id: u64 },
}

#[derive(Deserialize)]
struct Learner {
    id: u64,
    addr: String,
}

#[derive(Deserialize)]
struct Id {
    id: u64,
}

async fn add_learner(
    State(node): State<Node>,
    Json(l): Json<Learner>,
) -> Result<Response, ApiError> {
    node.cluster
        .admin(Admin::AddLearner {
            id: l.id,
            addr: l.addr,
        })
        .await
}

async fn add_voter(State(node): State<Node>, Json(v): Json<Id>) -> Result<Response, ApiError> {
    node.cluster.admin(Admin::AddVoter { id: v.id }).await
}

async fn remove_member(
    State(node): State<Node>,
    Path(id): Path<u64>,
) -> Result<Response, ApiError> {
    node.cluster.admin(Admin::Remove { id }).await
}

async fn transfer(State(node): State<Node>, Json(v): Json<Id>) -> Result<Response, ApiError> {
    node.cluster.admin(Admin::TransferLeader { id: v.id }).await
}

/// A membership change passed on by another node: done here, if this node
/// leads.
async fn admin_here(
    State(node): State<Node>,
    Json(op): Json<Admin>,
) -> Json<Result<String, String>> {
    Json(node.cluster.admin_on_leader(op).await)
}

impl Cluster {
    /// Does a membership change on the leader, wherever it is.
    async fn admin(&self, op: Admin) -> Result<Response, ApiError> {
        let status = self.status();
        let done = match status.leader_id {
            Some(leader) if leader == self.inner.me => self.admin_on_leader(op).await,
            Some(leader) => {
                let addr = status.leader_addr.unwrap_or_default();
                match self
                    .inner
                    .peers
                    .call(leader, &addr, "admin", &op, ADMIN_WAIT)
                    .await
                {
                    Ok(done) => done,
                    Err(e) => Err(format!("the leader {leader} did not answer: {e}")),
                }
            }
            None => Err("there is no leader now".into()),
        };
        match done {
            Ok(what) => Ok(
                Json(serde_json::json!({ "done": what, "cluster": self.status() })).into_response(),
            ),
            Err(e) => Err(ApiError::Unavailable(format!(
                "the membership change was not made: {e}"
            ))),
        }
    }

    /// Does a membership change here, as the leader.
    async fn admin_on_leader(&self, op: Admin) -> Result<String, String> {
        let raft = self.raft();
        let result = match &op {
            Admin::AddLearner { id, addr } => raft
                .add_learner(*id, Member { addr: addr.clone() }, true)
                .await
                .map(|_| format!("node {id} ({addr}) is a learner and has caught up")),
            Admin::AddVoter { id } => raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([*id])), false)
                .await
                .map(|_| format!("node {id} is a voter")),
            Admin::Remove { id } => {
                let ids = BTreeSet::from([*id]);
                let change = if self.status().voters.contains(id) {
                    ChangeMembers::RemoveVoters(ids)
                } else {
                    ChangeMembers::RemoveNodes(ids)
                };
                raft.change_membership(change, false)
                    .await
                    .map(|_| format!("node {id} is no longer a member"))
            }
            Admin::TransferLeader { id } => {
                return raft
                    .trigger()
                    .transfer_leader(*id)
                    .await
                    .map(|()| format!("leadership is being handed to node {id}"))
                    .map_err(|e| e.to_string())
            }
        };
        result.map_err(|e| e.to_string())
    }
}
