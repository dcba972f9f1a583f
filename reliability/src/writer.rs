//! Client processes whose every acknowledgement the campaign sees.
//!
//! `reliability writer` posts tasks with `concurrency` requests in flight and
//! prints one JSON line per acknowledged task (`{"id":..,"status":..,
//! "titulo":..}`) the moment it is answered. Task `n` of client `C` has title
//! `"C n"` and `Idempotency-Key: C-n`. A request that fails (connection
//! refused or reset, time-out, 5xx) is sent again with the same body and key
//! until it is answered, rereading the server's address from `--addr-file`
//! each time: so a writer goes on across a `kill -9` and restart, and its
//! retries show whether the server stores a retried task twice. The file may
//! hold several addresses (a cluster's nodes, one per line): task `n` goes
//! first to the `n`-th of them, and each retry to the next.
//!
//! The campaign runs writers with [`Writers::spawn`], publishes each new
//! server address with [`publish_addr`], and reads the acknowledgements as
//! they come.

use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

/// Pause before resending a failed request: a back-off, not a way to wait
/// for anything in particular.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// `reliability writer`: the client process.
#[derive(Debug, Clone, clap::Args)]
pub struct WriterArgs {
    /// File holding the server's current `host:port` (or several, one per
    /// line); reread after every failed request.
    #[arg(long)]
    pub addr_file: PathBuf,
    /// Prefix of every title and Idempotency-Key this process sends.
    #[arg(long)]
    pub client_id: String,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
}

/// One line of a writer's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The id the server answered with.
    pub id: u64,
    /// 201, or 200 for a retry the server recognised.
    pub status: u16,
    /// The task's title, unique per campaign.
    pub titulo: String,
}

/// Runs the client until killed (or its stdout closes).
pub async fn run(args: WriterArgs) -> anyhow::Result<()> {
    let http = testkit::http::client();
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency.max(1) {
        let (http, next, args) = (http.clone(), next.clone(), args.clone());
        workers.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let titulo = format!("{} {n}", args.client_id);
                let key = format!("{}-{n}", args.client_id);
                let line = send_until_answered(&http, &args.addr_file, n, &titulo, &key).await;
                let mut out = std::io::stdout().lock();
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    // Nobody listens any more.
                    std::process::exit(0);
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    Ok(())
}

/// Sends task `n` until a server answers it; the line to print.
async fn send_until_answered(
    http: &reqwest::Client,
    addr_file: &Path,
    n: u64,
    titulo: &str,
    key: &str,
) -> String {
    let task = json!({ "titulo": titulo });
    for attempt in n.. {
        let addrs = read_addrs(addr_file);
        if !addrs.is_empty() {
            let addr = addrs[(attempt % addrs.len() as u64) as usize];
            let base = format!("http://{addr}");
            match testkit::http::post_task(http, &base, &task, Some(key)).await {
                Ok((status @ (200 | 201), body)) => {
                    let ack = Ack {
                        id: body["id"].as_u64().unwrap_or(0),
                        status,
                        titulo: titulo.to_owned(),
                    };
                    return serde_json::to_string(&ack).expect("an ack serializes");
                }
                Ok((status, body)) if status < 500 => {
                    return json!({ "error": format!("{titulo:?} answered {status}: {body}") })
                        .to_string();
                }
                // 5xx or no answer: the server may be gone; try again.
                Ok(_) | Err(_) => {}
            }
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    unreachable!("the attempts run out only after u64::MAX of them")
}

fn read_addrs(path: &Path) -> Vec<SocketAddr> {
    std::fs::read_to_string(path)
        .map(|text| {
            text.split_whitespace()
                .filter_map(|a| a.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Tells the writers where the server now is (written whole, then renamed,
/// so a writer never reads half an address).
pub fn publish_addr(addr_file: &Path, addr: SocketAddr) -> std::io::Result<()> {
    publish_addrs(addr_file, &[addr])
}

/// Tells the writers where the servers (a cluster's nodes) are.
pub fn publish_addrs(addr_file: &Path, addrs: &[SocketAddr]) -> std::io::Result<()> {
    let tmp = addr_file.with_extension("tmp");
    let text: Vec<String> = addrs.iter().map(SocketAddr::to_string).collect();
    std::fs::write(&tmp, text.join("\n"))?;
    std::fs::rename(&tmp, addr_file)
}

/// Running writer processes, and what they reported so far.
pub struct Writers {
    children: Vec<Child>,
    readers: Vec<std::thread::JoinHandle<()>>,
    /// Acknowledgements in the order they were read.
    acks: Arc<Mutex<Vec<Ack>>>,
    /// Answers that were neither an acknowledgement nor retryable.
    errors: Arc<Mutex<Vec<String>>>,
}

impl Writers {
    /// Starts `count` writer processes `<prefix>0`, `<prefix>1`, ...
    pub fn spawn(
        tools: &crate::harness::Tools,
        addr_file: &Path,
        prefix: &str,
        count: usize,
        concurrency: usize,
    ) -> std::io::Result<Writers> {
        let acks = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let mut writers = Writers {
            children: Vec::new(),
            readers: Vec::new(),
            acks: acks.clone(),
            errors: errors.clone(),
        };
        for i in 0..count {
            let mut child = Command::new(&tools.reliability)
                .arg("writer")
                .arg("--addr-file")
                .arg(addr_file)
                .args(["--client-id", &format!("{prefix}{i}")])
                .args(["--concurrency", &concurrency.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()?;
            let stdout = child.stdout.take().expect("stdout is piped");
            let (acks, errors) = (acks.clone(), errors.clone());
            writers.readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    match serde_json::from_str::<Ack>(&line) {
                        Ok(ack) => acks.lock().unwrap_or_else(|p| p.into_inner()).push(ack),
                        Err(_) => errors.lock().unwrap_or_else(|p| p.into_inner()).push(line),
                    }
                }
            }));
            writers.children.push(child);
        }
        Ok(writers)
    }

    /// How many acknowledgements were read so far.
    pub fn ack_count(&self) -> usize {
        self.acks.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The latest acknowledgement read.
    pub fn last_ack(&self) -> Option<Ack> {
        self.acks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last()
            .cloned()
    }

    /// The acknowledgements read so far.
    pub fn acks(&self) -> Vec<Ack> {
        self.acks.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Kills the writers and returns every acknowledgement and error they
    /// printed (their pipes are read to the end).
    pub fn stop(mut self) -> (Vec<Ack>, Vec<String>) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let acks = self.acks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let errors = self
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        (acks, errors)
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
