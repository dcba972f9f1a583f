//! Test harness: fake servers that break the contract on purpose and keep
//! their own record of what they did, the real taskserver in-process, and
//! helpers to run the emulator in-process.
//!
//! Every fake keeps the protocol (idempotency keys, pagination, /health), so
//! that the only thing wrong with it is its one fault; the tests then compare
//! the emulator's counts with the fake's own record, never with constants.

#![allow(dead_code)] // each test file uses a different part of it

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::header::{CONNECTION, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use clap::Parser as _;
use clientemulator::{Args, Config, Report};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

/// The one way a fake server misbehaves.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// None: a correct in-memory server.
    None,
    /// Answers 201 to every `every`-th new task but does not store it.
    Forget { every: u64 },
    /// Stores every `every`-th new task twice.
    StoreTwice { every: u64 },
    /// Answers 500 to a random `per_mille` share of POSTs, new or repeated.
    /// With `after_storing`, a new task is stored before the 500.
    Random500 { per_mille: u64, after_storing: bool },
    /// Like `Random500 { after_storing: true }` but ignores Idempotency-Key,
    /// so every retry stores another copy.
    Random500IgnoringKeys { per_mille: u64 },
    /// Stores the task, then waits `delay` before answering.
    Slow { delay: Duration },
    /// Answers 503 to the first `n` health polls.
    LateHealth { n: u64 },
    /// Correct, but closes the connection after every answer to a POST, so
    /// a client must open a new one for each task.
    CloseConnections,
    /// Answers every POST with 302 to `GET /tareas`, which answers 200: a
    /// client that follows redirects would take that for an acknowledgement.
    Redirect,
}

/// What a fake server did, for the test to compare with the emulator's report.
#[derive(Debug, Default)]
pub struct FakeLog {
    /// Stored tasks, in id order.
    pub tasks: Vec<Value>,
    /// POST requests received.
    pub posts: u64,
    /// Statuses answered to POSTs.
    pub answered: BTreeMap<u16, u64>,
    /// New tasks acknowledged but not stored.
    pub forgotten: u64,
    /// Tasks stored a second time.
    pub doubled: u64,
    /// Idempotency keys seen, with the id stored for them (if stored).
    pub keys: HashMap<String, Option<u64>>,
    /// Keys that got a 200 or 201 at least once.
    pub acked_keys: HashSet<String>,
    /// GET /health requests.
    pub health_polls: u64,
    /// Random generator state, fixed seed: failures are spread "at random"
    /// but the same sequence every run.
    rng: u64,
}

impl FakeLog {
    fn random_per_mille(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x % 1000
    }

    fn store(&mut self, body: &Value) -> Value {
        let mut task = body.clone();
        let id = self.tasks.last().map_or(0, |t| t["id"].as_u64().unwrap()) + 1;
        task["id"] = json!(id);
        task["creada_en"] = json!("2026-11-23T10:15:30.123Z");
        if task.get("completada").is_none() {
            task["completada"] = json!(false);
        }
        self.tasks.push(task.clone());
        task
    }

    fn answer(&mut self, status: StatusCode, body: Value, key: &str) -> (StatusCode, Json<Value>) {
        *self.answered.entry(status.as_u16()).or_default() += 1;
        if status.is_success() {
            self.acked_keys.insert(key.to_owned());
        }
        (status, Json(body))
    }

    /// Keys whose task the fake stored at least once.
    pub fn stored_keys(&self) -> usize {
        self.keys.values().filter(|id| id.is_some()).count()
    }

    /// Keys never answered 2xx (the emulator's `failed`).
    pub fn unacked_keys(&self) -> usize {
        self.keys.len() - self.acked_keys.len()
    }

    /// How many stored tasks share each `descripcion` (one per task sent).
    pub fn copies(&self) -> HashMap<String, u64> {
        let mut copies = HashMap::new();
        for task in &self.tasks {
            *copies
                .entry(task["descripcion"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        copies
    }

    /// Keys stored but never answered 2xx.
    pub fn stored_unacked_keys(&self) -> usize {
        self.keys
            .iter()
            .filter(|(key, id)| id.is_some() && !self.acked_keys.contains(*key))
            .count()
    }
}

#[derive(Clone)]
struct Fake {
    fault: Fault,
    log: Arc<Mutex<FakeLog>>,
    /// Becomes true when the test drops the server: slow handlers stop waiting.
    closing: watch::Receiver<bool>,
}

/// A fake server on 127.0.0.1:0; dropping it stops it and wakes slow handlers.
pub struct FakeServer {
    pub url: String,
    log: Arc<Mutex<FakeLog>>,
    closing: watch::Sender<bool>,
}

impl FakeServer {
    pub async fn start(fault: Fault) -> FakeServer {
        let log = Arc::new(Mutex::new(FakeLog {
            rng: 0x2545_F491_4F6C_DD1D,
            ..FakeLog::default()
        }));
        let (closing, closed) = watch::channel(false);
        let fake = Fake {
            fault,
            log: log.clone(),
            closing: closed.clone(),
        };
        let app = Router::new()
            .route("/tareas", get(list).post(create))
            .route("/health", get(health))
            .with_state(fake);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mut stop = closed;
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|&c| c).await;
                })
                .await
                .unwrap();
        });
        FakeServer { url, log, closing }
    }

    pub fn log(&self) -> MutexGuard<'_, FakeLog> {
        self.log.lock().unwrap()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        let _ = self.closing.send(true);
    }
}

async fn health(State(fake): State<Fake>) -> (StatusCode, Json<Value>) {
    let mut log = fake.log.lock().unwrap();
    log.health_polls += 1;
    match fake.fault {
        Fault::LateHealth { n } if log.health_polls <= n => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "starting"})),
        ),
        _ => (
            StatusCode::OK,
            Json(json!({"status": "ok", "tareas": log.tasks.len()})),
        ),
    }
}

#[derive(Deserialize)]
struct Page {
    despues_de: Option<u64>,
    limite: Option<usize>,
}

async fn list(State(fake): State<Fake>, Query(page): Query<Page>) -> Json<Value> {
    let log = fake.log.lock().unwrap();
    let after = page.despues_de.unwrap_or(0);
    let tasks: Vec<Value> = log
        .tasks
        .iter()
        .filter(|t| t["id"].as_u64().unwrap() > after)
        .take(page.limite.unwrap_or(usize::MAX))
        .cloned()
        .collect();
    Json(Value::Array(tasks))
}

async fn create(State(fake): State<Fake>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Fault::Redirect = fake.fault {
        let mut log = fake.log.lock().unwrap();
        log.posts += 1;
        *log.answered.entry(302).or_default() += 1;
        return (StatusCode::FOUND, [(LOCATION, "/tareas")]).into_response();
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|k| k.to_str().ok())
        .expect("the emulator always sends an Idempotency-Key")
        .to_owned();
    let answer = {
        let mut log = fake.log.lock().unwrap();
        log.posts += 1;
        let known = log.keys.get(&key).copied();
        let fail = match fake.fault {
            Fault::Random500 { per_mille, .. } | Fault::Random500IgnoringKeys { per_mille } => {
                log.random_per_mille() < per_mille
            }
            _ => false,
        };
        let honours_keys = !matches!(fake.fault, Fault::Random500IgnoringKeys { .. });
        match known {
            // A key whose task is stored: answer with that task, never store again.
            Some(Some(id)) if honours_keys => {
                if fail {
                    log.answer(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        json!({"error": "boom"}),
                        &key,
                    )
                } else {
                    let task = log.tasks.iter().find(|t| t["id"] == id).unwrap().clone();
                    log.answer(StatusCode::OK, task, &key)
                }
            }
            _ => {
                let store_now = match fake.fault {
                    Fault::Random500 { after_storing, .. } => !fail || after_storing,
                    Fault::Forget { every } => !(log.keys.len() as u64 + 1).is_multiple_of(every),
                    _ => true,
                };
                if !store_now {
                    log.keys.insert(key.clone(), None);
                    if fail {
                        log.answer(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            json!({"error": "boom"}),
                            &key,
                        )
                    } else {
                        log.forgotten += 1;
                        log.answer(StatusCode::CREATED, json!({"id": 0}), &key)
                    }
                } else {
                    let task = log.store(&body);
                    let id = task["id"].as_u64();
                    if let Fault::StoreTwice { every } = fake.fault {
                        if log.stored_keys() as u64 % every == every - 1 {
                            log.store(&body);
                            log.doubled += 1;
                        }
                    }
                    // Under Random500IgnoringKeys a retry overwrites the key's
                    // id, which still marks it stored.
                    log.keys.insert(key.clone(), id);
                    if fail {
                        log.answer(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            json!({"error": "boom"}),
                            &key,
                        )
                    } else if let Fault::Slow { .. } = fake.fault {
                        // Recorded now; the answer itself comes after the delay.
                        (StatusCode::CREATED, Json(task))
                    } else {
                        log.answer(StatusCode::CREATED, task, &key)
                    }
                }
            }
        }
    };
    if let Fault::Slow { delay } = fake.fault {
        let mut closing = fake.closing.clone();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = closing.wait_for(|&c| c) => {}
        }
    }
    let mut response = answer.into_response();
    if let Fault::CloseConnections = fake.fault {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A checked config for an in-process run against `url`, without a progress
/// bar even when the test runs in a terminal.
pub fn config(url: &str, args: &[&str]) -> Config {
    let mut argv = vec!["clientemulator", "--url", url];
    if !args.contains(&"--client-id") {
        argv.extend_from_slice(&["--client-id", "tester"]);
    }
    argv.extend_from_slice(args);
    let mut config = Args::try_parse_from(argv).unwrap().into_config().unwrap();
    config.progress = false;
    config
}

/// Runs the emulator in-process to its report.
pub async fn emulate(url: &str, args: &[&str]) -> Report {
    clientemulator::run(config(url, args), std::future::pending())
        .await
        .expect("the server is up, so the run reports")
}

/// The real taskserver, in-process, on 127.0.0.1:0 over a temporary file.
pub struct RealServer {
    pub url: String,
    pub data: PathBuf,
    /// Keeps the directory until the test ends.
    _dir: tempfile::TempDir,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), taskserver::RunError>>,
}

impl RealServer {
    pub async fn start() -> RealServer {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("tasks.json");
        let path = data.clone();
        let store = tokio::task::spawn_blocking(move || taskserver::Store::open(path))
            .await
            .unwrap()
            .expect("the store opens in an empty directory");
        let listener = taskserver::listen::bind("127.0.0.1:0", taskserver::listen::DEFAULT_BACKLOG)
            .await
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(taskserver::run(listener, store, async {
            let _ = stopped.await;
        }));
        RealServer {
            url,
            data,
            _dir: dir,
            stop,
            task,
        }
    }

    /// Stops the server gracefully and returns the data file's tasks.
    pub async fn stop(self) -> Vec<Value> {
        let _ = self.stop.send(());
        self.task
            .await
            .unwrap()
            .expect("the server shuts down cleanly");
        let text = std::fs::read_to_string(&self.data).unwrap();
        serde_json::from_str(&text).expect("the data file is a JSON array")
    }
}
