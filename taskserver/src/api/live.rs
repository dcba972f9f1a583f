//! The live page (`GET /`) and what it polls (`GET /live`).
//!
//! The page is one HTML file built into the binary (`page.html`: no build
//! step, nothing fetched from the network). Twice a second it asks
//! `GET /live` for this server's counters, and computes the rates itself
//! from two answers: the answer is a few hundred bytes read from memory,
//! whatever the file holds, so an open page costs the server next to
//! nothing. In cluster mode the answer also has every node's `/cluster`,
//! asked by this node (at most every 250 ms, whoever polls).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::store::index::Index;
use crate::store::StoreStats;

/// The page.
pub const PAGE: &str = include_str!("page.html");

/// What `GET /live` answers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Live {
    /// `single`, `cluster` or `unsafe-no-locking`.
    pub mode: &'static str,
    /// Tasks in this server's file.
    pub tareas: u64,
    /// Tasks per `cliente` ("" for none).
    pub clients: BTreeMap<String, u64>,
    /// Tasks this process wrote to its file, since it started.
    pub written: u64,
    /// `fdatasync`s of the file, and their total time.
    pub fsyncs: u64,
    pub fsync_seconds: f64,
    /// `POST /tareas` answered, and their total time (filled by the HTTP
    /// layer).
    pub posts: u64,
    pub post_seconds: f64,
    /// Said in a red band at the top of the page.
    pub warning: Option<&'static str>,
    /// Cluster mode: this node's id, and every member as its `/cluster`
    /// says (`answers: false` for one that does not answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<serde_json::Value>>,
}

impl Live {
    /// The store's part: its index and its counters.
    pub(crate) fn of_store(index: &Index, stats: &StoreStats) -> Live {
        Live {
            mode: "single",
            tareas: index.len() as u64,
            clients: index.clients(),
            written: stats.written.get(),
            fsyncs: stats.fsyncs.get(),
            fsync_seconds: stats.fsync_micros.get() as f64 / 1e6,
            ..Live::default()
        }
    }
}
