//! The load engine: waiting for the server, then workers that send tasks.
//!
//! `concurrency` workers are dealt out over one OS thread per core, each
//! thread with its own single-threaded tokio runtime. Every worker owns one
//! keep-alive connection (see [`connection`]), so `-c` is also the number of
//! connections. A worker takes the next task index from a shared atomic
//! counter, sends it (with retries), records the result and takes the next,
//! until the count or the time is used up.
//!
//! Closed model (the default): a worker starts its next task when the
//! previous one ends, and latency is measured from the actual send.
//! Open model (`--rate`): task `i` is *scheduled* at `start + i / rate`
//! whatever happened before, and its latency is measured from that scheduled
//! time. If the server is slow and every worker is busy, tasks start late and
//! that delay shows up in the latency instead of vanishing from it.
//!
//! The wait for `/health` uses a `reqwest::Client`: a few requests, where
//! convenience beats speed.

use std::future::Future;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Url;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::cli::{Config, Mode};
use crate::stats::{ErrorKind, Ledger, Recorder, Shard, TaskOutcome};

pub mod connection;

use connection::{Connection, Target};

/// Header that lets the server recognise a retry of a task it already stored.
/// A ready `HeaderName`: a string would be parsed, and copied, per request.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Failures that stop a run before any task is sent.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("could not set up the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
    #[error("could not start a load thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error(
        "the server never became reachable: GET {url} did not answer 200 \
         in {waited:.1} s of waiting (last attempt: {last}). \
         Check that the server is running and that --url / SERVER_URL points to it, \
         or wait longer with --wait"
    )]
    Unreachable { url: Url, waited: f64, last: String },
}

/// What the load phase produced.
#[derive(Debug)]
pub struct Load {
    /// The outcome of every task, for verification and the report.
    pub ledger: Ledger,
    /// Latency, status and error counts of the whole run.
    pub stats: Shard,
    /// From the first task's start to the last task's end.
    pub elapsed: Duration,
    /// Whether the stop signal (Ctrl-C) ended the run early.
    pub interrupted: bool,
}

/// The HTTP client of the wait and the read-back (not of the load itself,
/// which goes through each worker's [`Connection`]).
pub fn http_client(config: &Config) -> Result<reqwest::Client, ClientError> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(config.timeout)
        .connect_timeout(config.timeout)
        // A redirected POST would come back as a GET whose 200 looks like an
        // acknowledgement: only the server's own answer counts.
        .redirect(reqwest::redirect::Policy::none())
        // Small JSON requests: do not let Nagle's algorithm hold them back.
        .tcp_nodelay(true)
        // Load must go straight to the server under test, never through a
        // proxy named in the environment.
        .no_proxy()
        .user_agent(concat!("clientemulator/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(ClientError::Build)
}

/// Polls `GET /health` of each server in turn until one answers 2xx or
/// `wait` is over; returns how long that took. Compose starts the clients
/// together with the server, so the first polls are expected to be refused.
/// With several servers (a cluster) one that answers is enough to begin.
pub async fn wait_for_server(
    http: &reqwest::Client,
    health_urls: &[Url],
    wait: Duration,
) -> Result<Duration, ClientError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(50);
    let mut told = false;
    for turn in 0usize.. {
        let health_url = &health_urls[turn % health_urls.len()];
        let remaining = wait.saturating_sub(started.elapsed());
        // A server that accepts connections but hangs must not eat the whole
        // wait in one poll, nor be given less than a moment to answer.
        let per_try = remaining.clamp(Duration::from_millis(200), Duration::from_secs(5));
        let last = match http.get(health_url.clone()).timeout(per_try).send().await {
            Ok(response) if response.status().is_success() => {
                let waited = started.elapsed();
                if told {
                    // Logs show the wait began; show where it ended too.
                    eprintln!(
                        "clientemulator: {health_url} answered after {:.1} s",
                        waited.as_secs_f64()
                    );
                }
                return Ok(waited);
            }
            Ok(response) => format!("HTTP {}", response.status()),
            Err(error) => describe(&error),
        };
        let waited = started.elapsed();
        if waited >= wait {
            return Err(ClientError::Unreachable {
                url: health_url.clone(),
                waited: waited.as_secs_f64(),
                last,
            });
        }
        if !told {
            eprintln!(
                "clientemulator: waiting up to {:.0} s for {health_url} ({last})",
                wait.as_secs_f64()
            );
            told = true;
        }
        if (turn + 1) % health_urls.len() == 0 {
            tokio::time::sleep(pause.min(wait - waited)).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }
    unreachable!("the loop ends by returning")
}

/// Sends the run's tasks and returns what happened. Every problem with a
/// request is an outcome to count, not an error; only failing to start the
/// load threads is.
///
/// When `stop` completes, workers take no new task, finish the ones in flight
/// (so that no outcome is left unknown by the client itself), and the run
/// ends as interrupted.
pub async fn send(config: &Config, stop: impl Future<Output = ()>) -> Result<Load, ClientError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(config.concurrency);
    let (stop_tx, stop_rx) = watch::channel(false);
    let start = Instant::now();
    let shared = Arc::new(Shared {
        targets: config
            .servers
            .iter()
            .map(|s| Target::new(&s.tasks_url, config.timeout))
            .collect(),
        template: TaskTemplate::new(&config.client_id, &config.run_id),
        next_index: AtomicU64::new(0),
        limit: match config.mode {
            Mode::Count(n) => Some(n),
            Mode::Duration(_) => None,
        },
        deadline: match config.mode {
            Mode::Count(_) => None,
            Mode::Duration(d) => Some(start + d),
        },
        start,
        rate: config.rate,
        retries: config.retries,
        stopping: AtomicBool::new(false),
        finished: AtomicU64::new(0),
        recorder: Recorder::new(threads),
        ledger: Mutex::new(Ledger::default()),
    });

    let mut load_threads = Vec::with_capacity(threads);
    for thread in 0..threads {
        // Workers are dealt out evenly: thread t runs workers t, t+threads, ...
        let workers = (config.concurrency - thread).div_ceil(threads);
        match LoadThread::start(thread, threads, workers, shared.clone(), stop_rx.clone()) {
            Ok(started) => load_threads.push(started),
            Err(error) => {
                // Threads already started must not go on sending unseen.
                shared.stopping.store(true, Relaxed);
                let _ = stop_tx.send(true);
                return Err(error);
            }
        }
    }
    let progress = config
        .progress
        .then(|| Progress::start(shared.clone(), config.mode));

    let all_done = futures::future::join_all(load_threads.into_iter().map(LoadThread::join));
    tokio::pin!(all_done);
    let interrupted = tokio::select! {
        _ = &mut all_done => false,
        () = stop => {
            shared.stopping.store(true, Relaxed);
            let _ = stop_tx.send(true);
            (&mut all_done).await;
            true
        }
    };
    let elapsed = start.elapsed();
    if let Some(progress) = progress {
        progress.finish();
    }

    let issued = shared.next_index.load(Relaxed);
    let issued = shared.limit.map_or(issued, |n| issued.min(n));
    let mut ledger =
        std::mem::take(&mut *shared.ledger.lock().unwrap_or_else(PoisonError::into_inner));
    ledger.set_issued(issued);
    Ok(Load {
        ledger,
        stats: shared.recorder.merged(),
        elapsed,
        interrupted,
    })
}

/// One OS thread per core, each with its own single-threaded runtime and
/// recorder shard, running its share of the workers.
///
/// Why not one multi-threaded runtime: there a worker and the connection
/// task it talks to often sit on different threads, so each request costs
/// cross-thread wake-ups and the load generator burns more CPU per request
/// than the server it measures. Kept on one thread, a worker, its
/// connections and its counters stay in that core's caches.
struct LoadThread {
    /// Resolves when the thread's workers are all done; carries a panic.
    done: tokio::sync::oneshot::Receiver<std::thread::Result<()>>,
}

impl LoadThread {
    fn start(
        thread: usize,
        threads: usize,
        workers: usize,
        shared: Arc<Shared>,
        stop: watch::Receiver<bool>,
    ) -> Result<Self, ClientError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ClientError::Thread)?;
        let (done_tx, done) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("load-{thread}"))
            .spawn(move || {
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    runtime.block_on(async {
                        let mut set = JoinSet::new();
                        for k in 0..workers {
                            // Worker number thread + k * threads, spread
                            // over the servers.
                            let number = thread + k * threads;
                            let worker = Worker {
                                server: number % shared.targets.len(),
                                shared: shared.clone(),
                                connection: Connection::default(),
                                shard: thread,
                            };
                            set.spawn(worker.work(stop.clone()));
                        }
                        while let Some(joined) = set.join_next().await {
                            if let Err(error) = joined {
                                if error.is_panic() {
                                    std::panic::resume_unwind(error.into_panic());
                                }
                            }
                        }
                    });
                }));
                let _ = done_tx.send(outcome);
            })
            .map_err(ClientError::Thread)?;
        Ok(Self { done })
    }

    /// Waits for the thread's workers; a worker's panic is raised again here.
    async fn join(self) {
        match self.done.await {
            Ok(Ok(())) => {}
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => panic!("a load thread ended without reporting"),
        }
    }
}

/// State shared by all workers of a run, on every load thread.
struct Shared {
    /// Where tasks are posted (one per server), and the time limit of one
    /// attempt.
    targets: Vec<Target>,
    /// Builds each task's body and key without reformatting the fixed parts.
    template: TaskTemplate,
    /// The next task index to hand out; indexes are dense from 0, so that a
    /// task's outcome fits in a bitset position.
    next_index: AtomicU64,
    /// Count mode: indexes at or past this are not tasks.
    limit: Option<u64>,
    /// Duration mode: no task starts at or after this instant.
    deadline: Option<Instant>,
    /// The open model's schedule counts from here.
    start: Instant,
    /// Open model rate, tasks per second.
    rate: Option<f64>,
    /// Retries allowed per task.
    retries: u32,
    /// Set on Ctrl-C; checked before each new task (a relaxed load is enough:
    /// a worker that misses it by one task just sends one more).
    stopping: AtomicBool,
    /// Tasks finished, for the progress bar only.
    finished: AtomicU64,
    /// Latency, status and error counts.
    recorder: Recorder,
    /// Tasks that were not acknowledged; locked only for those, so the
    /// common case never waits on it.
    ledger: Mutex<Ledger>,
}

/// What one attempt of a task came to.
enum Attempt {
    /// 200 or 201: stored, says the server.
    Acknowledged,
    /// An HTTP answer that says the task is not stored and a retry cannot help.
    Refused,
    /// A 5xx, or a connection that could not be opened: retry.
    Retryable,
    /// No answer after the request may have reached the server: retry, and
    /// if no retry settles it, the outcome is unknown.
    NoAnswer,
}

/// One worker: the run's shared state, its own connection, its thread's shard.
struct Worker {
    /// Which of the servers it sends to now.
    server: usize,
    /// The task counter, schedule, ledger and counters of the whole run.
    shared: Arc<Shared>,
    /// Kept alive from task to task, and only this worker uses it.
    connection: Connection,
    /// The recorder shard of the worker's thread, never contended.
    shard: usize,
}

impl Worker {
    /// Takes task after task until none is left.
    async fn work(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            if self.shared.stopping.load(Relaxed) {
                return;
            }
            let index = self.shared.next_index.fetch_add(1, Relaxed);
            if self.shared.limit.is_some_and(|n| index >= n) {
                return;
            }
            let scheduled = match self.shared.rate {
                Some(rate) => self.shared.start + Duration::from_secs_f64(index as f64 / rate),
                None => Instant::now(),
            };
            if self
                .shared
                .deadline
                .is_some_and(|deadline| scheduled >= deadline)
            {
                self.mark(index, TaskOutcome::NotSent);
                return;
            }
            if self.shared.rate.is_some() {
                // Sleep until the slot, but wake at once on Ctrl-C: at a low
                // rate a worker may hold a slot many seconds ahead.
                let stopped = tokio::select! {
                    () = tokio::time::sleep_until(scheduled) => false,
                    _ = stop.wait_for(|&stopped| stopped) => true,
                };
                if stopped {
                    self.mark(index, TaskOutcome::NotSent);
                    return;
                }
            }
            let outcome = self.send_task(index, scheduled).await;
            self.mark(index, outcome);
            self.shared.finished.fetch_add(1, Relaxed);
        }
    }

    fn mark(&self, index: u64, outcome: TaskOutcome) {
        if outcome != TaskOutcome::Acknowledged {
            self.shared
                .ledger
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .mark(index, outcome);
        }
    }

    /// Sends task `index` until it is acknowledged, refused, or out of
    /// retries. Every attempt carries the same body and Idempotency-Key, so a
    /// server that keeps its contract stores it at most once.
    async fn send_task(&mut self, index: u64, started: Instant) -> TaskOutcome {
        let seq = index + 1;
        let body = self.shared.template.body(seq);
        let key = self.shared.template.idempotency_key(seq);
        // Once an attempt may have reached the server without an answer, a
        // later refusal no longer proves the task is not stored.
        let mut maybe_stored = false;
        let mut attempt = 0;
        loop {
            match self.attempt(body.clone(), key.clone(), started).await {
                Attempt::Acknowledged => return TaskOutcome::Acknowledged,
                Attempt::Refused => break,
                Attempt::Retryable => self.next_server(),
                Attempt::NoAnswer => {
                    maybe_stored = true;
                    self.next_server();
                }
            }
            if attempt == self.shared.retries {
                break;
            }
            attempt += 1;
            self.shared.recorder.shard(self.shard).record_retry();
            tokio::time::sleep(backoff(seq, attempt)).await;
        }
        if maybe_stored {
            TaskOutcome::Unknown
        } else {
            TaskOutcome::Failed
        }
    }

    /// After a refused connection, a 5xx or no answer, the retry goes to
    /// the next server (a cluster's node that may be up, or lead), with the
    /// same body and key.
    fn next_server(&mut self) {
        let servers = self.shared.targets.len();
        if servers > 1 {
            self.server = (self.server + 1) % servers;
            self.connection = Connection::default();
        }
    }

    /// One POST. Its status (and, when acknowledged, the task's latency from
    /// `started`) is recorded under a single lock of the thread's shard.
    async fn attempt(&mut self, body: Bytes, key: HeaderValue, started: Instant) -> Attempt {
        let answer = self
            .connection
            .post(&self.shared.targets[self.server], body, key)
            .await;
        let now = Instant::now();
        let at = now - self.shared.start;
        let mut counters = self.shared.recorder.shard(self.shard);
        match answer {
            Ok(status) => {
                counters.record_status(at, status);
                match status {
                    200 | 201 => {
                        counters.record_latency(at, now - started);
                        Attempt::Acknowledged
                    }
                    500..=599 => Attempt::Retryable,
                    _ => Attempt::Refused,
                }
            }
            Err(error) => {
                counters.record_error(at, error.kind, || describe(&*error.source));
                match error.kind {
                    ErrorKind::Connect => Attempt::Retryable,
                    ErrorKind::Timeout | ErrorKind::Connection | ErrorKind::Other => {
                        Attempt::NoAnswer
                    }
                }
            }
        }
    }
}

/// Waits before retry `attempt` (1-based): 50 ms doubling up to 2 s, spread
/// by ±50 % so that workers that failed together do not retry together.
fn backoff(seq: u64, attempt: u32) -> Duration {
    let base = Duration::from_millis(50) * 2u32.saturating_pow(attempt - 1);
    let base = base.min(Duration::from_secs(2));
    // A fixed mix of the task and attempt numbers is random enough to spread
    // retries and needs no generator state.
    let mut x = seq ^ (u64::from(attempt) << 56) ^ 0x9E37_79B9_7F4A_7C15;
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    let spread = 0.5 + (x >> 11) as f64 / (1u64 << 53) as f64;
    base.mul_f64(spread)
}

/// The innermost cause of an error ("Connection refused (os error 111)"),
/// which says more to a person than reqwest's outer "error sending request".
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// The text of task number `seq` (1-based) of a client: what a student sees
/// in `tasks.json`.
pub fn title(seq: u64, client_id: &str) -> String {
    format!("Tarea {seq} de {client_id}")
}

/// The `descripcion` of every task of a run starts with this, followed by
/// the task's number: it is how verification finds this run's tasks among
/// other clients' and earlier runs'.
pub fn description_prefix(run_id: &str) -> String {
    format!("clientemulator run {run_id}, task ")
}

/// The fixed parts of a task body, JSON-escaped once, so that a request only
/// writes its number into a buffer instead of serializing a struct.
#[derive(Debug)]
pub struct TaskTemplate {
    /// `{"titulo":"Tarea `
    head: String,
    /// ` de CLIENT","descripcion":"clientemulator run RUN, task `
    middle: String,
    /// `","cliente":"CLIENT"}`
    tail: String,
    /// `RUN-`, to which the number is appended for the Idempotency-Key.
    key_prefix: String,
}

impl TaskTemplate {
    pub fn new(client_id: &str, run_id: &str) -> Self {
        let client = serde_json::to_string(client_id).expect("a string always serializes");
        let client_inner = &client[1..client.len() - 1];
        let prefix =
            serde_json::to_string(&description_prefix(run_id)).expect("a string always serializes");
        let prefix_inner = &prefix[1..prefix.len() - 1];
        Self {
            head: r#"{"titulo":"Tarea "#.to_owned(),
            middle: format!(r#" de {client_inner}","descripcion":"{prefix_inner}"#),
            tail: format!(r#"","cliente":{client}}}"#),
            // The run id is hex, and the key only needs to be unique per
            // task and run: the run id already tells clients apart.
            key_prefix: format!("{run_id}-"),
        }
    }

    /// The JSON body of task `seq`, in one allocation.
    pub fn body(&self, seq: u64) -> Bytes {
        let mut buf =
            Vec::with_capacity(self.head.len() + self.middle.len() + self.tail.len() + 40);
        buf.extend_from_slice(self.head.as_bytes());
        write!(buf, "{seq}").expect("writing to a Vec cannot fail");
        buf.extend_from_slice(self.middle.as_bytes());
        write!(buf, "{seq}").expect("writing to a Vec cannot fail");
        buf.extend_from_slice(self.tail.as_bytes());
        Bytes::from(buf)
    }

    pub fn idempotency_key(&self, seq: u64) -> HeaderValue {
        let mut buf = Vec::with_capacity(self.key_prefix.len() + 20);
        buf.extend_from_slice(self.key_prefix.as_bytes());
        write!(buf, "{seq}").expect("writing to a Vec cannot fail");
        HeaderValue::from_bytes(&buf).expect("a hex run id and digits are a valid header value")
    }
}

/// The progress bar on stderr, fed from the workers' shared counter.
struct Progress {
    /// Drawn by indicatif at its own rate.
    bar: ProgressBar,
    /// Copies the counter into the bar ten times a second.
    ticker: tokio::task::JoinHandle<()>,
}

impl Progress {
    fn start(shared: Arc<Shared>, mode: Mode) -> Self {
        let (bar, template) = match mode {
            Mode::Count(n) => (
                ProgressBar::new(n),
                "{bar:40} {pos}/{len} tasks  {per_sec}  {elapsed}",
            ),
            // In duration mode the bar is time; the task count goes in the message.
            Mode::Duration(d) => (
                ProgressBar::new(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                "{bar:40} {elapsed} of the run  {msg}",
            ),
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        let ticking = bar.clone();
        let ticker = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(100));
            loop {
                every.tick().await;
                let finished = shared.finished.load(Relaxed);
                match mode {
                    Mode::Count(_) => ticking.set_position(finished),
                    Mode::Duration(_) => {
                        ticking.set_position(shared.start.elapsed().as_millis() as u64);
                        ticking.set_message(format!("{finished} tasks"));
                    }
                }
            }
        });
        Self { bar, ticker }
    }

    fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_the_task_json_with_escaped_client() {
        let client = "cli\"ent ñ";
        let template = TaskTemplate::new(client, "00ff");
        let body: serde_json::Value = serde_json::from_slice(&template.body(17)).unwrap();
        assert_eq!(body["titulo"], title(17, client));
        assert_eq!(
            body["descripcion"],
            format!("{}17", description_prefix("00ff"))
        );
        assert_eq!(body["cliente"], client);
        assert_eq!(body.as_object().unwrap().len(), 3);
        assert_eq!(template.idempotency_key(17), "00ff-17");
    }

    #[test]
    fn backoff_grows_is_capped_and_spread() {
        let first = backoff(1, 1);
        assert!(first >= Duration::from_millis(25) && first <= Duration::from_millis(75));
        let late = backoff(1, 30);
        assert!(late >= Duration::from_secs(1) && late <= Duration::from_secs(3));
        let spread: std::collections::HashSet<_> = (1..50).map(|seq| backoff(seq, 2)).collect();
        assert!(
            spread.len() > 40,
            "retries of different tasks should not line up"
        );
    }

    #[test]
    fn describe_reaches_the_innermost_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused by peer");
        let outer = std::io::Error::other(io);
        assert_eq!(describe(&outer), "refused by peer");
    }
}
