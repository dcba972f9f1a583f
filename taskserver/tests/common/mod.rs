//! The integration tests' side of `testkit`: the `taskserver` binary cargo
//! built for these tests, and shorthands that fail the test on an error.

#![allow(dead_code, unused_imports)] // each test file uses a different part of it

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
pub use testkit::doubles;
pub use testkit::http::{client, post};
pub use testkit::process::Server;

/// The binary under test.
pub fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_taskserver"))
}

/// `taskserver --bind 127.0.0.1:0 --data DATA`, logs piped.
pub fn command(data: &Path) -> Command {
    testkit::process::command(binary(), data)
}

/// Starts a server on `data` and waits until it listens.
pub fn start(data: &Path) -> Server {
    Server::start(binary(), data).unwrap_or_else(|r| panic!("the server did not start: {r}"))
}

/// A temporary directory with a data file path inside.
pub fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tasks.json");
    (dir, path)
}

/// The data file, as the contract says it must always be: a JSON array of
/// tasks with increasing ids.
pub fn read_tasks(path: &Path) -> Vec<Value> {
    testkit::datafile::read_tasks(path).unwrap_or_else(|e| panic!("{e}"))
}

/// The ids `GET /tareas` answers, checked to increase.
pub async fn list_ids(http: &reqwest::Client, base: &str) -> Vec<u64> {
    testkit::http::list_ids(http, base)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A store on `path` over the disk double `fs`, opened off the runtime.
pub async fn open_store(fs: doubles::HookedFs, path: &Path) -> taskserver::Store {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || taskserver::Store::open_on(std::sync::Arc::new(fs), path))
        .await
        .expect("the opening thread")
        .unwrap_or_else(|e| panic!("the store does not open: {e}"))
}
