//! `testkit`: what the workspace's tests, the reliability campaigns and the
//! benchmarks share. A dev-only crate: never published, never in the image.
//!
//! # Layout
//!
//! - [`process`]: the real `taskserver` binary as a process on
//!   `127.0.0.1:0`, its port read from its "listening" log line; file-size
//!   limits that make its writes fail.
//! - [`http`]: an HTTP client for loopback load, and the requests the
//!   tests make.
//! - [`datafile`]: the contract's checks of the data file (and of
//!   `GET /tareas`): a JSON array of tasks with strictly increasing ids.
//! - [`cluster`]: a cluster of real processes on loopback, each with its own
//!   directory: kill, pause, restart, wipe, and what `/cluster` says; or in
//!   network namespaces ([`netns`]), where one can be cut off.
//! - [`doubles`]: doubles of the disk for the store's seam
//!   (`taskserver::store::file`): syncs held at a gate, a write that panics.
//!
//! Binaries are passed in by path: the integration tests give
//! `env!("CARGO_BIN_EXE_taskserver")`, the campaigns find them at run time.

pub mod cluster;
pub mod datafile;
pub mod doubles;
pub mod http;
pub mod netns;
pub mod process;

use std::time::{Duration, Instant};

/// Polls `done` every few milliseconds until it holds or `limit` passes;
/// whether it held. The bounded wait used instead of sleeps.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
