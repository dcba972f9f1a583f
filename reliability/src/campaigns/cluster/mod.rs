//! Cluster mode under faults: three nodes of the real binary, each in a
//! network namespace of its own when run as root (on loopback otherwise,
//! without the partitions), and three writer processes spread over every
//! node, retrying across failures with the same Idempotency-Key.
//!
//! The faults ([`faults::Fault`]), in an order drawn from the seed: `kill -9`
//! of the leader and of a follower, SIGSTOP of the leader, the leader or a
//! follower partitioned from the others (while clients still reach it), the
//! leader's messages to one follower dropped (a one-way cut), a follower
//! cut off again as it catches up, a follower's disk wiped, a voter replaced
//! by a new node under load. After each one the cluster must elect a leader
//! and take writes again within [`faults::RECOVERY`]; while a follower is
//! cut off, the writes may stop only briefly (the other two are a quorum).
//! Each fault has its own bounds, in [`faults`].
//!
//! Checked all along, by a reader thread: a linearizable `GET /tareas/{id}`
//! on a random node, of the latest acknowledged task, finds it (a read after
//! an acknowledgement on any node sees it; a node that cannot tell answers
//! `503`, which is allowed, never `404`). Checked at the end, once the
//! writers stopped and every node applied what was committed: the nodes'
//! data files are byte-identical, valid, and hold every acknowledged task
//! under its id exactly once; `GET /tareas` on each node lists the same.

mod faults;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use faults::{Fault, Target};
use proptest::prelude::Rng as _;
use testkit::cluster::LocalCluster;
use testkit::netns::Net;

use crate::datafile::{self, Acks};
use crate::writer::{publish_addrs, Ack, Writers};
use crate::{Ctx, Row};

const WRITERS: usize = 3;
const CONCURRENCY: usize = 4;
/// Longest random wait between writes going on and the next fault.
const MAX_FAULT_DELAY_MS: u64 = 300;

/// How many of each fault: the smoke run, then the full one.
fn plan(ctx: &Ctx, namespaces: bool) -> Vec<Fault> {
    let counts = [
        (Fault::KillLeader, ctx.size(2, 20)),
        (Fault::KillFollower, ctx.size(1, 5)),
        (Fault::PauseLeader, ctx.size(1, 5)),
        (Fault::IsolateLeader, ctx.size(1, 5)),
        (Fault::IsolateFollower, ctx.size(1, 3)),
        (Fault::OneWayCut, ctx.size(1, 3)),
        (Fault::CutWhileCatchingUp, ctx.size(1, 3)),
        (Fault::WipeFollower, ctx.size(1, 3)),
    ];
    let mut plan: Vec<Fault> = counts
        .iter()
        .filter(|(f, _)| namespaces || !f.needs_namespaces())
        .flat_map(|&(f, n)| std::iter::repeat_n(f, n))
        .collect();
    let mut rng = ctx.rng("cluster-plan");
    // Fisher-Yates, from the seed.
    for i in (1..plan.len()).rev() {
        plan.swap(i, rng.random_range(0..=i));
    }
    // Replacements last: a node wiped later must still find its --peers.
    plan.extend(std::iter::repeat_n(Fault::Replace, ctx.size(1, 2)));
    plan
}

pub fn run(ctx: &Ctx) -> Row {
    let mut row = Row::new("cluster");
    let env = [("RUST_LOG", "info,openraft=error")];
    let started = match Net::available() {
        Ok(()) => LocalCluster::start_in_namespaces(&ctx.tools.taskserver, 3, &env)
            .map_err(|e| e.to_string()),
        Err(why) => {
            row.skip(format!("partitions ({why}): the nodes run on loopback"));
            Ok(LocalCluster::start_with(&ctx.tools.taskserver, 3, &env))
        }
    };
    let namespaces = started.is_ok() && Net::available().is_ok();
    let mut cluster = match started {
        Ok(Ok(cluster)) => cluster,
        Ok(Err(refused)) => {
            row.fail(format!("the cluster did not start: {refused}"));
            return row;
        }
        Err(e) => {
            row.fail(format!("cannot make the network namespaces: {e}"));
            return row;
        }
    };
    if cluster.wait_for_leader(faults::RECOVERY).is_none() {
        row.fail("the three nodes elected no leader");
        return row;
    }
    let dir = super::temp_dir("cluster");
    let addr_file = dir.path().join("addrs");
    let mut voters: Vec<u64> = vec![1, 2, 3];
    if let Err(e) = publish(&addr_file, &cluster, &voters) {
        row.fail(e);
        return row;
    }
    let writers = match Writers::spawn(&ctx.tools, &addr_file, "cluster-w", WRITERS, CONCURRENCY) {
        Ok(w) => Arc::new(w),
        Err(e) => {
            row.fail(format!("cannot start the writer processes: {e}"));
            return row;
        }
    };
    let urls = Arc::new(Mutex::new(urls_of(&cluster, &voters)));
    let reading = Arc::new(AtomicBool::new(true));
    let reader = read_after_ack(
        writers.clone(),
        urls.clone(),
        reading.clone(),
        ctx.seed_for("cluster-reads"),
    );

    let mut rng = ctx.rng("cluster");
    let mut back_after = Vec::new();
    let mut next_id = 4;
    let acks = {
        let writers = writers.clone();
        move || writers.ack_count()
    };
    for (n, fault) in plan(ctx, namespaces).into_iter().enumerate() {
        let mut target = Target {
            cluster: &mut cluster,
            voters: voters.clone(),
            next_id,
            acks: &acks,
        };
        let before = acks();
        if !testkit::wait_until(faults::RECOVERY, || acks() > before) {
            row.fail(format!("before fault {n}: no write acknowledged in 20 s"));
            break;
        }
        // The random moment of the fault (not a wait for anything).
        std::thread::sleep(Duration::from_millis(
            rng.random_range(0..=MAX_FAULT_DELAY_MS),
        ));
        let result = target.apply(fault, &mut rng);
        (voters, next_id) = (target.voters.clone(), target.next_id);
        row.cases += 1;
        match result {
            Ok(done) => {
                let back = done
                    .writes_back_after
                    .map(|d| format!("; writes again after {} ms", d.as_millis()))
                    .unwrap_or_default();
                eprintln!("    {n}: {}: {}{back}", fault.name(), done.what);
                back_after.extend(done.writes_back_after);
            }
            Err(e) => {
                row.fail(format!("{n}: {}: {e}", fault.name()));
                break;
            }
        }
        if let Err(e) = publish(&addr_file, &cluster, &voters) {
            row.fail(e);
            break;
        }
        *urls.lock().unwrap_or_else(|p| p.into_inner()) = urls_of(&cluster, &voters);
    }

    // A fault that failed half-way may have left a voter down, stopped or
    // cut off: the final checks need them all.
    for &v in &voters {
        let _ = cluster.heal(v);
        cluster.pause(v, false);
        if cluster.node(v).is_none() {
            if let Err(refused) = cluster.restart(v) {
                row.fail(format!(
                    "node {v} did not start again at the end: {refused}"
                ));
            }
        }
    }
    drop(acks);
    reading.store(false, Ordering::SeqCst);
    let reads = reader.join().expect("the reader thread");
    let Ok(writers) = Arc::try_unwrap(writers) else {
        unreachable!("the reader, the only other owner, has ended")
    };
    let (acks, errors) = writers.stop();
    for e in errors {
        row.fail(format!("a writer got an unexpected answer: {e}"));
    }
    row.acknowledged = acks.len() as u64;
    reads.record(&mut row);
    final_checks(&mut row, &cluster, &acks);
    back_after.sort();
    if let (Some(first), Some(last)) = (back_after.first(), back_after.last()) {
        row.note(format!(
            "writes acknowledged again {:.0}-{:.0} ms (median {:.0}) after the leader stopped, \
             over {} faults",
            first.as_secs_f64() * 1e3,
            last.as_secs_f64() * 1e3,
            back_after[back_after.len() / 2].as_secs_f64() * 1e3,
            back_after.len()
        ));
    }
    row.note(format!(
        "{} faults{}; {} acknowledged by {WRITERS} writer processes ({CONCURRENCY} in flight each) \
         spread over every node",
        row.cases,
        if namespaces {
            ", each node in its own network namespace"
        } else {
            ""
        },
        acks.len()
    ));
    row
}

/// Tells the writers where the voters are.
fn publish(
    addr_file: &std::path::Path,
    cluster: &LocalCluster,
    voters: &[u64],
) -> Result<(), String> {
    let addrs: Vec<SocketAddr> = voters
        .iter()
        .filter_map(|&v| cluster.addr(v).parse().ok())
        .collect();
    publish_addrs(addr_file, &addrs)
        .map_err(|e| format!("cannot write the writers' addresses: {e}"))
}

fn urls_of(cluster: &LocalCluster, voters: &[u64]) -> Vec<String> {
    voters.iter().map(|&v| cluster.url(v)).collect()
}

/// What the reader thread saw.
#[derive(Debug, Default)]
struct Reads {
    found: u64,
    unavailable: u64,
    missed: Vec<String>,
}

impl Reads {
    fn record(self, row: &mut Row) {
        for m in &self.missed {
            row.lost += 1;
            row.fail(format!(
                "a read after the acknowledgement did not see it: {m}"
            ));
        }
        row.note(format!(
            "{} linearizable reads of the latest acknowledged task, on a random node: {} found \
             it, {} answered 503 or nothing (a node that cannot tell), {} missed it",
            self.found + self.unavailable + self.missed.len() as u64,
            self.found,
            self.unavailable,
            self.missed.len()
        ));
    }
}

/// Reads the latest acknowledged task from a random node, over and over,
/// while `running` holds.
fn read_after_ack(
    writers: Arc<Writers>,
    urls: Arc<Mutex<Vec<String>>>,
    running: Arc<AtomicBool>,
    seed: u64,
) -> std::thread::JoinHandle<Reads> {
    std::thread::spawn(move || {
        let rt = super::runtime();
        let http = testkit::http::client();
        let mut rng = crate::seeded(seed);
        let mut reads = Reads::default();
        while running.load(Ordering::SeqCst) {
            let Some(ack) = writers.last_ack() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let url = {
                let urls = urls.lock().unwrap_or_else(|p| p.into_inner());
                urls[rng.random_range(0..urls.len())].clone()
            };
            let answer = rt.block_on(async {
                let res = http
                    .get(format!("{url}/tareas/{}", ack.id))
                    .timeout(Duration::from_secs(15))
                    .send()
                    .await?;
                let status = res.status().as_u16();
                let body: serde_json::Value = res.json().await.unwrap_or_default();
                Ok::<_, reqwest::Error>((status, body))
            });
            match answer {
                Ok((200, body)) if body["titulo"] == ack.titulo.as_str() => reads.found += 1,
                Ok((status, _)) if status >= 500 => reads.unavailable += 1,
                Err(_) => reads.unavailable += 1,
                Ok((status, body)) => reads.missed.push(format!(
                    "{:?} (id {}) on {url}: {status} {body}",
                    ack.titulo, ack.id
                )),
            }
            // Pacing, so the reader does not take a core from the nodes.
            std::thread::sleep(Duration::from_millis(5));
        }
        reads
    })
}

/// Once quiet: the same bytes on every node, and every acknowledged task
/// in them once.
fn final_checks(row: &mut Row, cluster: &LocalCluster, acks: &[Ack]) {
    let Some(files) = cluster.wait_until_quiet(Duration::from_secs(60)) else {
        row.fail("the nodes did not all apply what was committed within 60 s");
        return;
    };
    let mut distinct: Vec<&Vec<u8>> = files.values().collect();
    distinct.dedup();
    row.check(distinct.len() == 1, || {
        format!(
            "the nodes' data files differ: {:?}",
            files
                .iter()
                .map(|(id, f)| (id, f.len()))
                .collect::<Vec<_>>()
        )
    });
    let acked: Acks = acks.iter().map(|a| (a.titulo.clone(), a.id)).collect();
    let rt = super::runtime();
    let http = testkit::http::client();
    let mut findings = super::Findings::default();
    for (id, bytes) in &files {
        match datafile::parse_tasks(bytes) {
            Ok(tasks) => {
                row.file_checked(Ok(()));
                findings.add(
                    row,
                    &format!("node {id}'s file"),
                    datafile::audit(&tasks, &acked),
                );
                match rt.block_on(testkit::http::get_tasks(&http, &cluster.url(*id))) {
                    Ok(listed) => row
                        .check(datafile::ids(&listed) == datafile::ids(&tasks), || {
                            format!("GET /tareas on node {id} differs from its file")
                        }),
                    Err(e) => row.fail(format!("GET /tareas on node {id}: {e}")),
                }
            }
            Err(e) => row.file_checked(Err(format!("node {id}: {e}"))),
        }
    }
    row.note(format!(
        "{} nodes' files byte-identical at the end: {}",
        files.len(),
        distinct.len() == 1
    ));
}
