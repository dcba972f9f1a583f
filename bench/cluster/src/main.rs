//! Cluster mode's failover and catch-up, measured on real `taskserver`
//! processes on loopback (the cluster part of `bench/run`).
//!
//! ```text
//! cluster-bench failover --binary target/release/taskserver --kills 20
//! cluster-bench catchup  --binary target/release/taskserver --behind 100000
//! ```
//!
//! - **failover**: writers post tasks over the three nodes without pause;
//!   the leader is killed (`kill -9`); the time from the kill to the first
//!   acknowledgement of a request *begun after the kill* is one sample. The
//!   killed node is started again and catches up before the next kill.
//! - **catchup**: a follower is stopped while the others store `--behind`
//!   tasks, then started again: the time from its start to having applied
//!   everything committed. Then the same node is wiped and started empty.
//!
//! Each measurement is printed as one line, `KEY VALUE`, for `bench/run` to
//! record; what it did goes to stderr. Every run ends by checking that the
//! nodes' files are byte-identical and hold every acknowledged task once:
//! a fast number from a cluster that lost something is not a result.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde_json::json;
use testkit::cluster::LocalCluster;

/// How long anything the cluster must do may take before the run fails.
const PATIENCE: Duration = Duration::from_secs(60);

#[derive(Parser)]
#[command(about = "Failover and catch-up times of taskserver's cluster mode")]
struct Cli {
    /// The taskserver binary to run.
    #[arg(long)]
    binary: std::path::PathBuf,
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Kill the leader under load, again and again.
    Failover {
        /// How many times.
        #[arg(long, default_value_t = 20)]
        kills: usize,
        /// Concurrent writers, spread over the nodes.
        #[arg(long, default_value_t = 16)]
        writers: usize,
    },
    /// A node far behind, then a wiped one, catching up.
    Catchup {
        /// Tasks stored while the node is down.
        #[arg(long, default_value_t = 100_000)]
        behind: u64,
        /// Concurrent writers storing them.
        #[arg(long, default_value_t = 64)]
        writers: usize,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.what {
        What::Failover { kills, writers } => failover(&cli.binary, kills, writers),
        What::Catchup { behind, writers } => catchup(&cli.binary, behind, writers),
    };
    if let Err(e) = result {
        eprintln!("cluster-bench: {e}");
        std::process::exit(1);
    }
}

/// A request acknowledged: when it began (its first attempt) and when the
/// answer came.
#[derive(Clone, Copy)]
struct Ack {
    began: Instant,
    acked: Instant,
}

/// Writers posting tasks over every node until stopped (or until `limit`
/// tasks are acknowledged). A refused connection, a timeout or a `503`
/// sends the same request, with the same `Idempotency-Key`, to the next
/// node, as `clientemulator` does.
struct Load {
    runtime: tokio::runtime::Runtime,
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(urls: Vec<String>, writers: usize, limit: u64) -> Load {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let next = Arc::new(AtomicU64::new(0));
        let http = testkit::http::client();
        let tasks = (0..writers)
            .map(|w| {
                let (urls, stop, acks, next, http) = (
                    urls.clone(),
                    stop.clone(),
                    acks.clone(),
                    next.clone(),
                    http.clone(),
                );
                runtime.spawn(async move {
                    let mut node = w % urls.len();
                    while !stop.load(Ordering::Relaxed) {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= limit {
                            return;
                        }
                        let key = format!("cluster-bench-{n}");
                        let task =
                            json!({"titulo": format!("Tarea {n}"), "cliente": "cluster-bench"});
                        let began = Instant::now();
                        let mut tries = 0;
                        loop {
                            let answer = tokio::time::timeout(
                                Duration::from_secs(5),
                                testkit::http::post_task(&http, &urls[node], &task, Some(&key)),
                            )
                            .await;
                            if let Ok(Ok((200 | 201, _))) = answer {
                                acks.lock().unwrap().push(Ack {
                                    began,
                                    acked: Instant::now(),
                                });
                                break;
                            }
                            if stop.load(Ordering::Relaxed) {
                                return;
                            }
                            node = (node + 1) % urls.len();
                            tries += 1;
                            if tries % urls.len() == 0 {
                                // Every node said no: give the election a moment.
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            runtime,
            stop,
            acks,
            tasks,
        }
    }

    fn acks(&self) -> Vec<Ack> {
        self.acks.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.acks.lock().unwrap().len()
    }

    /// Stops the writers (a request in flight is dropped unanswered: it
    /// was never acknowledged); how many tasks were acknowledged.
    fn finish(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        for task in &self.tasks {
            task.abort();
        }
        self.runtime.shutdown_timeout(Duration::from_secs(5));
        self.acks.lock().unwrap().len()
    }

    /// Waits (until [`PATIENCE`]) until every writer ran out of tasks.
    fn wait_done(&self) -> Result<(), String> {
        let deadline = Instant::now() + PATIENCE * 10;
        while self.tasks.iter().any(|t| !t.is_finished()) {
            if Instant::now() > deadline {
                return Err("the writers did not finish".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

fn start(binary: &std::path::Path, env: &[(&str, &str)]) -> Result<(LocalCluster, u64), String> {
    let cluster = LocalCluster::start_with(binary, 3, env)
        .map_err(|r| format!("a node did not start: {r}"))?;
    let leader = cluster
        .wait_for_leader(PATIENCE)
        .ok_or("no leader was elected")?;
    Ok((cluster, leader))
}

fn urls(cluster: &LocalCluster) -> Vec<String> {
    (1..=3).map(|id| cluster.url(id)).collect()
}

/// A number from a node's `GET /cluster`.
fn field(cluster: &LocalCluster, id: u64, name: &str) -> Option<u64> {
    cluster.status(id).and_then(|s| s[name].as_u64())
}

/// Waits until node `id` has applied index `upto`; the time it took.
fn caught_up(cluster: &LocalCluster, id: u64, upto: u64) -> Result<Duration, String> {
    let t0 = Instant::now();
    while field(cluster, id, "applied").is_none_or(|a| a < upto) {
        if t0.elapsed() > PATIENCE * 5 {
            return Err(format!("node {id} did not catch up to {upto}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(t0.elapsed())
}

/// The nodes' files once quiet: byte-identical, each task once, at least
/// `acked` of them (a request dropped unanswered at the end may be stored
/// too); how many tasks they hold.
fn check_files(cluster: &LocalCluster, acked: usize) -> Result<usize, String> {
    let files = cluster
        .wait_until_quiet(PATIENCE)
        .ok_or("the nodes did not apply everything committed")?;
    let mut files = files.into_iter();
    let (_, first) = files.next().ok_or("no node runs")?;
    if let Some((id, _)) = files.find(|(_, bytes)| *bytes != first) {
        return Err(format!("node {id}'s file differs from the others"));
    }
    let tasks = testkit::datafile::parse_tasks(&first)?;
    let mut titles = std::collections::BTreeSet::new();
    for t in &tasks {
        if !titles.insert(t["titulo"].as_str().unwrap_or_default().to_owned()) {
            return Err(format!("{} is stored twice", t["titulo"]));
        }
    }
    if tasks.len() < acked {
        return Err(format!(
            "{acked} tasks were acknowledged, the files hold {}",
            tasks.len()
        ));
    }
    Ok(tasks.len())
}

fn failover(binary: &std::path::Path, kills: usize, writers: usize) -> Result<(), String> {
    let (mut cluster, _) = start(binary, &[])?;
    let load = Load::start(urls(&cluster), writers, u64::MAX);
    let mut samples = Vec::new();
    for k in 1..=kills {
        let leader = cluster
            .wait_for_leader(PATIENCE)
            .ok_or("no leader before the kill")?;
        // The load is flowing before the kill.
        let before = load.count();
        let deadline = Instant::now() + PATIENCE;
        while load.count() < before + 50 {
            if Instant::now() > deadline {
                return Err(format!("kill {k}: the writers are stuck before the kill"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let killed = Instant::now();
        cluster.kill9(leader);
        // The first acknowledgement of a request begun after the kill (an
        // answer that comes later was acknowledged later: the first one
        // seen is the first).
        let deadline = killed + PATIENCE;
        let first = loop {
            let after: Option<Duration> = load
                .acks()
                .iter()
                .filter(|a| a.began >= killed)
                .map(|a| a.acked - killed)
                .min();
            if let Some(after) = after {
                break after;
            }
            if Instant::now() > deadline {
                return Err(format!("kill {k}: no write acknowledged after the kill"));
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        eprintln!(
            "kill {k}: node {leader}; first write begun after it acknowledged after {} ms",
            first.as_millis()
        );
        samples.push(first);
        cluster
            .restart(leader)
            .map_err(|r| format!("node {leader} did not start again: {r}"))?;
        let new_leader = cluster
            .wait_for_leader(PATIENCE)
            .ok_or("no leader after the restart")?;
        let committed = field(&cluster, new_leader, "committed").unwrap_or(0);
        caught_up(&cluster, leader, committed)?;
    }
    let acked = load.finish();
    let stored = check_files(&cluster, acked)?;
    eprintln!(
        "failover: {kills} kills; {acked} tasks acknowledged, {stored} stored once on every node, files identical"
    );
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("failover.kills {kills}");
    println!("failover.median_ms {:.1}", ms(samples[samples.len() / 2]));
    println!("failover.min_ms {:.1}", ms(samples[0]));
    println!("failover.max_ms {:.1}", ms(samples[samples.len() - 1]));
    println!("failover.acked {acked}");
    Ok(())
}

fn catchup(binary: &std::path::Path, behind: u64, writers: usize) -> Result<(), String> {
    let (mut cluster, leader) = start(binary, &[])?;
    let down = (1..=3).find(|&id| id != leader).expect("a follower");
    let up: Vec<String> = (1..=3)
        .filter(|&id| id != down)
        .map(|id| cluster.url(id))
        .collect();
    cluster.kill9(down);
    eprintln!("catchup: node {down} down; storing {behind} tasks through the other two");
    let t0 = Instant::now();
    let load = Load::start(up, writers, behind);
    load.wait_done()?;
    let write_s = t0.elapsed().as_secs_f64();
    let acked = load.finish();
    if acked as u64 != behind {
        return Err(format!("{acked} of {behind} tasks acknowledged"));
    }
    let leader = cluster
        .wait_for_leader(PATIENCE)
        .ok_or("no leader after the writes")?;
    let committed = field(&cluster, leader, "committed").ok_or("the leader has no index")?;
    let t0 = Instant::now();
    cluster
        .restart(down)
        .map_err(|r| format!("node {down} did not start again: {r}"))?;
    caught_up(&cluster, down, committed)?;
    let behind_s = t0.elapsed().as_secs_f64();
    let snapshot = field(&cluster, down, "snapshot").is_some();
    eprintln!(
        "catchup: node {down}, {behind} tasks behind, caught up in {behind_s:.2} s (start-up included){}",
        if snapshot { ", from a snapshot" } else { ", from the log" }
    );
    cluster.kill9(down);
    cluster.wipe(down);
    let t0 = Instant::now();
    cluster
        .restart(down)
        .map_err(|r| format!("node {down} did not start again: {r}"))?;
    caught_up(&cluster, down, committed)?;
    let wiped_s = t0.elapsed().as_secs_f64();
    eprintln!("catchup: node {down} wiped, caught up in {wiped_s:.2} s");
    let stored = check_files(&cluster, acked)?;
    eprintln!("catchup: {stored} tasks on every node, files identical");
    println!("catchup.behind {behind}");
    println!("catchup.write_rps {:.1}", behind as f64 / write_s);
    println!("catchup.behind_s {behind_s:.3}");
    println!("catchup.from_snapshot {}", u8::from(snapshot));
    println!("catchup.wiped_s {wiped_s:.3}");
    Ok(())
}
