//! "Acknowledged means durable", audited on the real binary's system calls.
//!
//! The server runs under `strace` while clients send a concurrent burst of
//! tasks (and retries of some, answered `200`). Then, from the trace, for
//! every answer `201` or `200` that carried a task: the answer went to its
//! socket only after a write of that task's bytes to the data file and an
//! `fdatasync` (or `fsync`) of the data file that began after that write
//! ended and ended before the answer began. A task answered otherwise could
//! be lost by a power cut: it counts as lost. strace's recorded times bound
//! the real ones from outside (see [`strace`]), so an order found between
//! them holds between the real calls too.
//!
//! Then the same in cluster mode ([`cluster`]): every task answered was in
//! the Raft log of a majority of the nodes, each copy synced, before the
//! first answer that carried it.

mod cluster;
mod strace;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use testkit::http::{self, post_task};
use testkit::process::Server;

use crate::datafile::Acks;
use crate::{Ctx, Row};

/// The calls traced: writes to files and sockets, syncs, truncations.
const TRACED: &str = "trace=pwrite64,write,writev,sendto,sendmsg,fdatasync,fsync,ftruncate";
/// Clients sending at once.
const CONCURRENCY: usize = 32;

pub fn run(ctx: &Ctx) -> Row {
    let mut row = Row::new("durability");
    if Command::new("strace").arg("-V").output().is_err() {
        row.fail(
            "strace is not installed, so nothing was audited: install it (apt-get install strace; \
             scripts/reliability does when run as root)",
        );
        return row;
    }
    let tasks = ctx.size(300, 3000);
    let dir = super::temp_dir("durability");
    let data = dir.path().join("tasks.json");
    let prefix = dir.path().join("trace");
    let server = match start_traced(ctx, &data, &prefix) {
        Ok(server) => server,
        Err(e) => {
            row.fail(e);
            return row;
        }
    };

    let (answered, acked) = send_burst(&server.url(), tasks, &mut row);
    if let Err(e) = stop_traced(server) {
        row.fail(e);
        return row;
    }
    let calls = match strace::read_trace(&prefix) {
        Ok(calls) => calls,
        Err(e) => {
            row.fail(format!("cannot read the trace: {e}"));
            return row;
        }
    };
    // strace names the file by its absolute path.
    let data_path = data.canonicalize().unwrap_or(data.clone());
    audit(&calls, &data_path, &answered, &mut row);
    crate::datafile::final_audit(&mut row, &data, &acked, acked.len() as u64);
    cluster::run(ctx, &mut row);
    row
}

/// `strace ... -- taskserver --bind 127.0.0.1:0 --data DATA`.
fn start_traced(ctx: &Ctx, data: &Path, prefix: &Path) -> Result<Server, String> {
    let mut cmd = Command::new("strace");
    cmd.args(["-ff", "-o"])
        .arg(prefix)
        .args([
            "--timestamps=unix,us",
            "-T",
            "-yy",
            "-xx",
            "-s",
            "1048576",
            "-e",
            TRACED,
            "--",
        ])
        .arg(&ctx.tools.taskserver)
        .args(["--bind", "127.0.0.1:0", "--data"])
        .arg(data)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    Server::spawn(cmd).map_err(|r| format!("the traced server did not start: {r}"))
}

/// Stops the server (not strace, which would let it run on untraced) and
/// waits for strace to write the last of the trace.
fn stop_traced(server: Server) -> Result<(), String> {
    let strace = server.pid();
    let children = std::fs::read_to_string(format!("/proc/{strace}/task/{strace}/children"))
        .map_err(|e| format!("cannot find the traced server: {e}"))?;
    let pid: i32 = children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or("strace has no child: the server is gone")?;
    // SAFETY: plain kill(2) of the server strace started for us.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = server
        .wait()
        .map_err(|e| format!("waiting for strace: {e}"))?;
    if !status.success() {
        return Err(format!("the traced server exited with {status}"));
    }
    Ok(())
}

/// What one POST of a burst got: the task's title and the answer.
type Sent = (String, Result<(u16, serde_json::Value), String>);

/// Sends tasks `0..tasks` over `concurrency` clients, task `i` to
/// `urls[i % urls.len()]`, titled `"{name} task {i}"` with the key
/// `"{name}-{i}"` (spaces as dashes); then again every tenth task, the same
/// key and body, which must be answered 200. Every answer, in no order.
async fn burst(urls: &[String], name: &str, tasks: usize, concurrency: usize) -> Vec<Sent> {
    let http = http::client();
    let (urls, name) = (urls.to_vec(), name.to_owned());
    let send = move |i: usize| {
        let (http, url) = (http.clone(), urls[i % urls.len()].clone());
        let titulo = format!("{name} task {i}");
        let key = format!("{}-{i}", name.replace(' ', "-"));
        async move {
            let task = json!({ "titulo": titulo, "cliente": "durability" });
            let answer = post_task(&http, &url, &task, Some(&key)).await;
            (titulo, answer)
        }
    };
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let send = send.clone();
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in (w..tasks).step_by(concurrency) {
                mine.push(send(i).await);
            }
            mine
        }));
    }
    let mut results = Vec::new();
    for worker in workers {
        results.extend(worker.await.unwrap_or_default());
    }
    for i in (0..tasks).step_by(10) {
        results.push(send(i).await);
    }
    results
}

/// Sends `tasks` tasks over CONCURRENCY clients, then retries a tenth of
/// them; every task has its own key. Returns, per title, how many answers
/// 200 or 201 it got; and the acknowledged tasks with their ids.
fn send_burst(url: &str, tasks: usize, row: &mut Row) -> (BTreeMap<String, u32>, Acks) {
    let rt = super::runtime();
    let results = rt.block_on(burst(&[url.to_owned()], "durability", tasks, CONCURRENCY));
    let mut answered = BTreeMap::new();
    let mut acked = Acks::new();
    for (titulo, answer) in results {
        match answer {
            Ok((201, body)) => {
                row.acknowledged += 1;
                acked.insert(titulo.clone(), body["id"].as_u64().unwrap_or(0));
                *answered.entry(titulo).or_insert(0) += 1;
            }
            Ok((200, _)) => *answered.entry(titulo).or_insert(0) += 1,
            other => row.fail(format!("POST {titulo:?} under strace: {other:?}")),
        }
    }
    row.note(format!(
        "{} tasks and {} retries sent over {CONCURRENCY} connections to taskserver under strace",
        tasks,
        tasks.div_ceil(10)
    ));
    (answered, acked)
}

/// The check of the module docs, for every answer found in the trace.
fn audit(calls: &[strace::Call], data: &Path, answered: &BTreeMap<String, u32>, row: &mut Row) {
    let data = data.to_string_lossy();
    let on_data = |c: &&strace::Call| c.target == data && c.ret >= 0;
    let writes: Vec<&strace::Call> = calls
        .iter()
        .filter(on_data)
        .filter(|c| matches!(c.name.as_str(), "pwrite64" | "write"))
        .collect();
    let syncs: Vec<&strace::Call> = calls
        .iter()
        .filter(on_data)
        .filter(|c| matches!(c.name.as_str(), "fdatasync" | "fsync"))
        .collect();
    let answers: Vec<&strace::Call> = calls
        .iter()
        .filter(|c| c.on_socket() && c.ret > 0)
        .filter(|c| c.bytes.starts_with(b"HTTP/1.1 201") || c.bytes.starts_with(b"HTTP/1.1 200"))
        .collect();
    let mut slowest_margin = Duration::MAX;
    for (titulo, &count) in answered {
        let needle = format!("\"titulo\":\"{titulo}\"");
        let has = |c: &&&strace::Call| contains(&c.bytes, needle.as_bytes());
        let mine: Vec<&&strace::Call> = answers.iter().filter(has).collect();
        if mine.len() != count as usize {
            row.fail(format!(
                "{titulo}: {count} answers received, {} found whole in one socket write of the trace",
                mine.len()
            ));
            continue;
        }
        let Some(write) = writes.iter().find(has) else {
            row.lost += 1;
            row.fail(format!(
                "LOST {titulo}: answered, but its bytes were never written to {data}"
            ));
            continue;
        };
        for answer in mine {
            row.cases += 1;
            // The first sync to begin after the write ended ends first.
            let sync = syncs.iter().find(|s| s.start_us > write.end_us);
            match sync {
                Some(sync) if sync.end_us < answer.start_us => {
                    slowest_margin =
                        slowest_margin.min(Duration::from_micros(answer.start_us - sync.end_us));
                }
                Some(sync) => {
                    row.lost += 1;
                    row.fail(format!(
                        "LOST {titulo}: answered at {} us, while the fdatasync after its write (at {} us) ran until {} us",
                        answer.start_us, write.end_us, sync.end_us
                    ));
                }
                None => {
                    row.lost += 1;
                    row.fail(format!(
                        "LOST {titulo}: answered, and no fdatasync of {data} began after its write"
                    ));
                }
            }
        }
    }
    row.note(format!(
        "trace: {} data-file writes, {} fdatasyncs, {} answers with a task; every answer checked against them{}",
        writes.len(),
        syncs.len(),
        answers.len(),
        if slowest_margin == Duration::MAX {
            String::new()
        } else {
            format!(" (closest: the answer began {} us after its sync ended)", slowest_margin.as_micros())
        }
    ));
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
