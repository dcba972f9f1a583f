//! Test harness: the real `taskserver` binary on 127.0.0.1:0 over a data file
//! in a temporary directory, plus helpers to read that file.

#![allow(dead_code)] // each test file uses a different part of it

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

pub mod doubles;

/// How long a server may take to start listening before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `taskserver` process.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    /// Everything the server wrote to stderr so far.
    pub log: Arc<Mutex<String>>,
}

/// How a server process ended before it listened.
#[derive(Debug)]
pub struct Refused {
    pub status: ExitStatus,
    pub log: String,
}

pub fn command(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_taskserver"));
    cmd.args(["--bind", "127.0.0.1:0", "--data"])
        .arg(data)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

impl Server {
    /// Starts a server on `data` and waits until it listens.
    pub fn start(data: &Path) -> Server {
        Server::spawn(command(data)).unwrap_or_else(|r| panic!("server refused to start: {r:?}"))
    }

    /// Starts `cmd` and waits for the "listening" log line (with its port),
    /// or for the process to exit.
    pub fn spawn(mut cmd: Command) -> Result<Server, Refused> {
        let mut child = cmd.spawn().expect("cannot run the taskserver binary");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        // Drains stderr for the whole life of the process, so it never blocks.
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("addr="))
                    .and_then(|a| a.parse::<SocketAddr>().ok())
                {
                    let _ = tx.send(addr);
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => Ok(Server { child, addr, log }),
            Err(_) => {
                // The reader thread ended (process exited) or the time ran out.
                let status = match child.try_wait().expect("wait") {
                    Some(s) => s,
                    None => {
                        let _ = child.kill();
                        child.wait().expect("wait")
                    }
                };
                // stderr is closed now: the reader finishes the last lines.
                reader.join().expect("stderr reader");
                let log = log.lock().unwrap().clone();
                Err(Refused { status, log })
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// `kill -9`: no chance to finish anything.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(mut self) -> ExitStatus {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        self.child.wait().expect("wait")
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary directory with a data file path inside.
pub fn data_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tasks.json");
    (dir, path)
}

/// Parses the data file as the contract says it must always be: a JSON array
/// of task objects with unique ids.
pub fn read_tasks(path: &Path) -> Vec<Value> {
    let bytes = std::fs::read(path).expect("read data file");
    let tasks: Vec<Value> = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "data file is not valid JSON ({e}):\n{}",
            String::from_utf8_lossy(&bytes)
        )
    });
    let ids: BTreeSet<u64> = tasks
        .iter()
        .map(|t| t["id"].as_u64().expect("u64 id"))
        .collect();
    assert_eq!(ids.len(), tasks.len(), "duplicate ids in the data file");
    tasks
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .expect("client")
}

/// POSTs a task with a title; returns (status, body).
pub async fn post(
    client: &reqwest::Client,
    server: &str,
    titulo: &str,
    key: Option<&str>,
) -> reqwest::Result<(u16, Value)> {
    let mut req = client
        .post(format!("{server}/tareas"))
        .header("content-type", "application/json")
        .body(serde_json::json!({ "titulo": titulo }).to_string());
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    let res = req.send().await?;
    let status = res.status().as_u16();
    let body = res.json::<Value>().await?;
    Ok((status, body))
}

/// The ids returned by `GET /tareas`, checking they strictly increase.
pub async fn list_ids(client: &reqwest::Client, server: &str) -> Vec<u64> {
    let tasks: Vec<Value> = client
        .get(format!("{server}/tareas"))
        .send()
        .await
        .expect("GET /tareas")
        .json()
        .await
        .expect("GET /tareas returns a JSON array");
    let ids: Vec<u64> = tasks.iter().map(|t| t["id"].as_u64().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids not increasing: {ids:?}"
    );
    ids
}
