//! Several processes: four servers on one data file, each under load.
//!
//! Per server, 8 concurrent writers of this campaign (every acknowledgement
//! seen, with the time it arrived) and one `clientemulator` process (its own
//! read-back verification). While they write, one reader per server loops:
//! it notes the tasks acknowledged so far, by any server, then sends
//! `GET /tareas` to its server and checks the answer is a valid array with
//! strictly increasing ids that contains every one of them.
//!
//! At the end: the file is a valid array; every acknowledged task is in it
//! exactly once under its id; the emulators report nothing lost or
//! duplicated and exit 0; every server lists the same ids as the file and
//! exits 0 on SIGTERM.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::join_all;
use serde_json::{json, Value};

use crate::datafile::{self, Acks};
use crate::{Ctx, Row};
use testkit::http::{self, get_tasks, post_task};
use testkit::process::Server;

const SERVERS: usize = 4;
const WRITERS_PER_SERVER: usize = 8;

pub fn run(ctx: &Ctx) -> Row {
    let mut row = Row::new("processes");
    let per_server = ctx.size(200, 2000);
    let emulator_tasks = ctx.size(100, 1000);
    let dir = super::temp_dir("processes");
    let data = dir.path().join("tasks.json");
    let mut servers = Vec::new();
    for _ in 0..SERVERS {
        match Server::start(&ctx.tools.taskserver, &data) {
            Ok(s) => servers.push(s),
            Err(refused) => {
                row.fail(format!("a server did not start: {refused}"));
                return row;
            }
        }
    }
    let urls: Vec<String> = servers.iter().map(Server::url).collect();
    let rt = super::runtime();
    let acked = Arc::new(Mutex::new(Acks::new()));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let writing = Arc::new(AtomicBool::new(true));

    let watcher = super::watch_file(data.clone(), writing.clone());
    let (gets, emulators) = rt.block_on(async {
        let http = http::client();
        let mut writers = Vec::new();
        for (s, url) in urls.iter().enumerate() {
            for w in 0..WRITERS_PER_SERVER {
                let (http, url, acked, errors) = (http.clone(), url.clone(), acked.clone(), errors.clone());
                writers.push(tokio::spawn(async move {
                    for i in (w..per_server).step_by(WRITERS_PER_SERVER) {
                        let titulo = format!("server{s} task{i}");
                        match post_task(&http, &url, &json!({ "titulo": titulo }), None).await {
                            Ok((201, body)) => {
                                let id = body["id"].as_u64().unwrap_or(0);
                                acked.lock().unwrap_or_else(|p| p.into_inner()).insert(titulo, id);
                            }
                            other => errors
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(format!("POST {titulo:?} to server {s}: {other:?}")),
                        }
                    }
                }));
            }
        }
        let emulators: Vec<_> = urls
            .iter()
            .enumerate()
            .map(|(s, url)| {
                let mut cmd = tokio::process::Command::new(&ctx.tools.clientemulator);
                cmd.args(["--url", url, "--json", "--wait", "10", "-c", "8"])
                    .args(["-n", &emulator_tasks.to_string()])
                    .args(["--client-id", &format!("processes-emulator{s}")])
                    .kill_on_drop(true);
                async move { cmd.output().await }
            })
            .collect();
        let emulators = tokio::spawn(join_all(emulators));
        let readers: Vec<_> = urls
            .iter()
            .enumerate()
            .map(|(s, url)| {
                let (http, url, acked, errors, writing) =
                    (http.clone(), url.clone(), acked.clone(), errors.clone(), writing.clone());
                tokio::spawn(async move {
                    let mut checks = 0u64;
                    while writing.load(Ordering::SeqCst) || checks == 0 {
                        let before: BTreeSet<u64> =
                            acked.lock().unwrap_or_else(|p| p.into_inner()).values().copied().collect();
                        checks += 1;
                        match get_tasks(&http, &url).await {
                            Ok(listed) => {
                                let seen: BTreeSet<u64> = datafile::ids(&listed).into_iter().collect();
                                let missing: Vec<_> = before.difference(&seen).take(10).collect();
                                if !missing.is_empty() {
                                    errors.lock().unwrap_or_else(|p| p.into_inner()).push(format!(
                                        "GET /tareas on server {s} misses ids {missing:?} acknowledged before it began"
                                    ));
                                }
                            }
                            Err(e) => errors.lock().unwrap_or_else(|p| p.into_inner()).push(format!("server {s}: {e}")),
                        }
                    }
                    checks
                })
            })
            .collect();
        for w in writers {
            let _ = w.await;
        }
        writing.store(false, Ordering::SeqCst);
        let gets: u64 = join_all(readers).await.into_iter().map(|r| r.unwrap_or(0)).sum();
        let emulators = emulators.await.unwrap_or_default();
        (gets, emulators)
    });
    match watcher.join() {
        Ok(watch) => watch.record(&mut row),
        Err(_) => row.fail("the file reader panicked"),
    }

    for e in errors.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
        row.fail(e);
    }
    let acked = acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
    row.acknowledged += acked.len() as u64;
    row.check(acked.len() == SERVERS * per_server, || {
        format!(
            "{} of {} POSTs acknowledged",
            acked.len(),
            SERVERS * per_server
        )
    });
    let mut emulator_acks = 0;
    for (s, output) in emulators.into_iter().enumerate() {
        match output {
            Ok(out) => {
                let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
                let count = |field: &str| report[field].as_u64();
                emulator_acks += count("acknowledged").unwrap_or(0);
                row.lost += count("lost").unwrap_or(0);
                row.duplicated += count("duplicated").unwrap_or(0);
                row.check(
                    out.status.success()
                        && count("lost") == Some(0)
                        && count("duplicated") == Some(0),
                    || {
                        format!(
                            "clientemulator on server {s} exited with {}: {}{}",
                            out.status,
                            String::from_utf8_lossy(&out.stdout),
                            String::from_utf8_lossy(&out.stderr)
                        )
                    },
                );
            }
            Err(e) => row.fail(format!("cannot run clientemulator: {e}")),
        }
    }
    row.acknowledged += emulator_acks;

    let http = http::client();
    let expected = acked.len() as u64 + emulator_acks;
    if let Some(tasks) = datafile::final_audit(&mut row, &data, &acked, expected) {
        for (s, url) in urls.iter().enumerate() {
            match rt.block_on(get_tasks(&http, url)) {
                Ok(listed) => row.check(datafile::ids(&listed) == datafile::ids(&tasks), || {
                    format!("server {s} lists other ids than the file")
                }),
                Err(e) => row.fail(format!("server {s} at the end: {e}")),
            }
        }
    }
    for (s, server) in servers.into_iter().enumerate() {
        match server.terminate() {
            Ok(status) => row.check(status.success(), || {
                format!("server {s} exited with {status}")
            }),
            Err(e) => row.fail(format!("server {s}: {e}")),
        }
    }
    row.cases = (SERVERS * per_server) as u64 + gets;
    row.note(format!(
        "{SERVERS} servers; {} POSTs of this campaign and {} by {SERVERS} clientemulator processes; {gets} GET /tareas checks",
        SERVERS * per_server,
        emulator_acks
    ));
    row
}
