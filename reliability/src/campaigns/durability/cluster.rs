//! The same audit in cluster mode: three nodes, each under `strace`, tasks
//! sent to all of them (a follower forwards to the leader).
//!
//! A `201` in cluster mode promises the task is in the Raft log of a
//! majority, each copy synced. So for every task answered, from the three
//! traces (one clock: the same machine): on at least two nodes, a write of
//! the task's bytes to a segment of the node's Raft log and an `fdatasync`
//! of that segment that began after the write ended, both before the
//! *first* answer anywhere that carried the task began (the leader's answer
//! to a forwarding follower comes before the follower's answer to the
//! client, so the first one is the strictest). A task answered otherwise
//! counts as lost.
//!
//! And hop by hop: a node that answers the leader's `AppendEntries` (the
//! request read from a socket, with the entries' tasks in it) answers only
//! after those tasks' bytes were written to its Raft log and synced: what
//! lets the leader count it in the majority. The reads are traced too for
//! this.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use testkit::cluster::LocalCluster;

use super::strace::{self, Call};
use super::{contains, TRACED};
use crate::{Ctx, Row};

/// Clients sending at once, spread over the nodes.
const CONCURRENCY: usize = 24;

/// Runs the cluster audit, adding to `row`.
pub fn run(ctx: &Ctx, row: &mut Row) {
    let tasks = ctx.size(150, 1500);
    let dir = super::super::temp_dir("durability-cluster");
    let wrapper = match write_wrapper(dir.path(), &ctx.tools.taskserver) {
        Ok(wrapper) => wrapper,
        Err(e) => return row.fail(format!("cannot write the strace wrapper: {e}")),
    };
    let mut cluster = match LocalCluster::start(&wrapper, 3) {
        Ok(cluster) => cluster,
        Err(r) => return row.fail(format!("a traced node did not start: {r}")),
    };
    if cluster.wait_for_leader(Duration::from_secs(60)).is_none() {
        return row.fail("the traced cluster elected no leader".to_owned());
    }
    let urls: Vec<String> = (1..=3).map(|id| cluster.url(id)).collect();
    let answered = send(&urls, tasks, row);
    if cluster.wait_until_quiet(Duration::from_secs(60)).is_none() {
        row.fail("the traced nodes did not apply everything committed".to_owned());
    }
    for id in 1..=3 {
        if let Some(server) = cluster.take(id) {
            if let Err(e) = super::stop_traced(server) {
                row.fail(format!("node {id}: {e}"));
            }
        }
    }
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        let prefix = dir.path().join(format!("trace-node{id}"));
        match strace::read_trace(&prefix) {
            Ok(calls) => nodes.push(calls),
            Err(e) => return row.fail(format!("cannot read node {id}'s trace: {e}")),
        }
    }
    audit(&nodes, &answered, row);
    audit_hops(&nodes, row);
}

/// A script that runs the taskserver under strace, one trace per node (the
/// node's id is the fourth argument testkit passes: `--bind A --node-id N`).
fn write_wrapper(dir: &Path, taskserver: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("traced-taskserver");
    let script = format!(
        "#!/bin/sh\n[ \"$3\" = --node-id ] || {{ echo 'traced-taskserver: expected --bind A --node-id N' >&2; exit 2; }}\n\
         exec strace -ff -o '{}/trace-node'\"$4\" --timestamps=unix,us -T -yy -xx -s 1048576 -e {TRACED},read,recvfrom -- '{}' \"$@\"\n",
        dir.display(),
        taskserver.display()
    );
    std::fs::write(&path, script)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// Sends `tasks` tasks with keys, task i to node i % 3, then retries a
/// tenth of them; per title, how many answers 200 or 201 it got.
fn send(urls: &[String], tasks: usize, row: &mut Row) -> BTreeMap<String, u32> {
    let rt = super::super::runtime();
    let results = rt.block_on(super::burst(urls, "cluster durability", tasks, CONCURRENCY));
    let mut answered = BTreeMap::new();
    for (titulo, answer) in results {
        match answer {
            Ok((201, _)) => {
                row.acknowledged += 1;
                *answered.entry(titulo).or_insert(0) += 1;
            }
            Ok((200, _)) => *answered.entry(titulo).or_insert(0) += 1,
            other => row.fail(format!("POST {titulo:?} to the traced cluster: {other:?}")),
        }
    }
    row.note(format!(
        "cluster mode: {tasks} tasks and {} retries sent over {CONCURRENCY} connections spread over 3 nodes, each under strace",
        tasks.div_ceil(10)
    ));
    answered
}

/// What one node's trace says of its Raft log: writes to its segments and
/// syncs of them.
struct LogCalls<'a> {
    writes: Vec<&'a Call>,
    syncs: Vec<&'a Call>,
}

impl<'a> LogCalls<'a> {
    fn of(calls: &'a [Call]) -> LogCalls<'a> {
        let segment = |c: &&Call| c.target.ends_with(".wal") && c.ret >= 0;
        LogCalls {
            writes: calls
                .iter()
                .filter(segment)
                .filter(|c| matches!(c.name.as_str(), "pwrite64" | "write"))
                .collect(),
            syncs: calls
                .iter()
                .filter(segment)
                .filter(|c| matches!(c.name.as_str(), "fdatasync" | "fsync"))
                .collect(),
        }
    }

    /// When the first sync of the segment holding `needle`, begun after
    /// that write ended, itself ended (µs); `None` if there is none.
    fn synced_at(&self, needle: &[u8]) -> Option<u64> {
        let write = self.writes.iter().find(|c| contains(&c.bytes, needle))?;
        self.syncs
            .iter()
            .find(|s| s.target == write.target && s.start_us > write.end_us)
            .map(|s| s.end_us)
    }
}

fn audit(nodes: &[Vec<Call>], answered: &BTreeMap<String, u32>, row: &mut Row) {
    let logs: Vec<LogCalls> = nodes.iter().map(|calls| LogCalls::of(calls)).collect();
    let answers: Vec<&Call> = nodes
        .iter()
        .flatten()
        .filter(|c| c.on_socket() && c.ret > 0)
        .filter(|c| c.bytes.starts_with(b"HTTP/1.1 201") || c.bytes.starts_with(b"HTTP/1.1 200"))
        .collect();
    let mut closest = Duration::MAX;
    let mut checked = 0;
    for titulo in answered.keys() {
        let needle = format!("\"titulo\":\"{titulo}\"");
        let Some(first) = answers
            .iter()
            .filter(|c| contains(&c.bytes, needle.as_bytes()))
            .map(|c| c.start_us)
            .min()
        else {
            row.fail(format!(
                "{titulo}: answered, but no answer carrying it was found whole in one socket write of the traces"
            ));
            continue;
        };
        row.cases += 1;
        checked += 1;
        // When each node had it on disk, earliest first.
        let mut synced: Vec<u64> = logs
            .iter()
            .filter_map(|log| log.synced_at(needle.as_bytes()))
            .collect();
        synced.sort();
        // A majority of three: the second node to have it synced.
        match synced.get(1) {
            Some(&second) if second < first => {
                closest = closest.min(Duration::from_micros(first - second));
            }
            Some(&second) => {
                row.lost += 1;
                row.fail(format!(
                    "LOST {titulo}: first answered at {first} us, but only one node's Raft log had it synced by then (the second at {second} us)"
                ));
            }
            None => {
                row.lost += 1;
                row.fail(format!(
                    "LOST {titulo}: answered, and fewer than two nodes ever synced it to their Raft log ({} did)",
                    synced.len()
                ));
            }
        }
    }
    let writes: usize = logs.iter().map(|l| l.writes.len()).sum();
    let syncs: usize = logs.iter().map(|l| l.syncs.len()).sum();
    row.note(format!(
        "cluster trace: {writes} Raft-log writes and {syncs} syncs on 3 nodes; {checked} tasks checked: each on a majority's disk before its first answer{}",
        if closest == Duration::MAX {
            String::new()
        } else {
            format!(" (closest: {} us before)", closest.as_micros())
        }
    ));
}

/// The tasks of this audit named in `bytes`: the number of each
/// `"titulo":"cluster durability task N"`.
fn tasks_in(bytes: &[u8]) -> Vec<&[u8]> {
    const PREFIX: &[u8] = b"\"titulo\":\"cluster durability task ";
    let mut found = Vec::new();
    let mut rest = bytes;
    while let Some(at) = rest.windows(PREFIX.len()).position(|w| w == PREFIX) {
        let from = at + PREFIX.len();
        let len = rest[from..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if rest.get(from + len) == Some(&b'"') {
            found.push(&rest[at..from + len + 1]);
        }
        rest = &rest[from + len..];
    }
    found
}

/// The check of the module docs, hop by hop, for every `AppendEntries`
/// request read whole with tasks in it.
fn audit_hops(nodes: &[Vec<Call>], row: &mut Row) {
    let mut checked = 0u64;
    let mut closest = Duration::MAX;
    for (n, calls) in nodes.iter().enumerate() {
        let log = LogCalls::of(calls);
        let appends = calls.iter().filter(|c| {
            c.on_socket()
                && c.ret > 0
                && matches!(c.name.as_str(), "read" | "recvfrom")
                && contains(&c.bytes, b"\"entries\":[")
        });
        for request in appends {
            let tasks = tasks_in(&request.bytes);
            if tasks.is_empty() {
                continue;
            }
            // The answer: the next write on the same socket.
            let Some(answer) = calls.iter().find(|c| {
                c.target == request.target
                    && c.start_us >= request.end_us
                    && c.ret > 0
                    && matches!(c.name.as_str(), "write" | "writev" | "sendto" | "sendmsg")
            }) else {
                continue;
            };
            for needle in tasks {
                checked += 1;
                match log.synced_at(needle) {
                    Some(synced) if synced < answer.start_us => {
                        closest = closest.min(Duration::from_micros(answer.start_us - synced));
                    }
                    synced => {
                        row.lost += 1;
                        row.fail(format!(
                            "node {} answered the leader's AppendEntries with {} at {} us, before its Raft log had it synced ({})",
                            n + 1,
                            String::from_utf8_lossy(needle),
                            answer.start_us,
                            synced.map_or("never synced".to_owned(), |s| format!("synced at {s} us"))
                        ));
                    }
                }
            }
        }
    }
    if checked == 0 {
        row.fail("no AppendEntries request with tasks was found in the followers' traces: the hop-by-hop audit checked nothing".to_owned());
    }
    row.note(format!(
        "cluster hops: {checked} entries in AppendEntries requests read by the followers, each answered after the follower synced it{}",
        if closest == Duration::MAX {
            String::new()
        } else {
            format!(" (closest: {} us after)", closest.as_micros())
        }
    ));
}
