//! Reads under writes: `GET /tareas` while 32 writers of this campaign and a
//! `clientemulator` process write as fast as the server commits.
//!
//! Three readers loop until the writers finish. Before each GET a reader
//! notes every task acknowledged so far (with the body of its 201); the
//! answer must be a valid JSON array with strictly increasing ids in which
//! each of those tasks appears exactly as it was acknowledged. At the end
//! the file holds every acknowledged task once and the emulator reports
//! nothing lost or duplicated.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::join_all;
use serde_json::{json, Value};

use crate::datafile::{self, Acks};
use crate::{Ctx, Row};
use testkit::http::{self, get_tasks, post_task};
use testkit::process::Server;

const WRITERS: usize = 32;
const READERS: usize = 3;

pub fn run(ctx: &Ctx) -> Row {
    let mut row = Row::new("reads");
    let tasks_to_write = ctx.size(2000, 20000);
    let emulator_tasks = ctx.size(500, 5000);
    let dir = super::temp_dir("reads");
    let data = dir.path().join("tasks.json");
    let server = match Server::start(&ctx.tools.taskserver, &data) {
        Ok(s) => s,
        Err(refused) => {
            row.fail(format!("the server did not start: {refused}"));
            return row;
        }
    };
    let url = server.url();
    let rt = super::runtime();
    // id -> the body of its 201.
    let acked = Arc::new(Mutex::new(BTreeMap::<u64, Value>::new()));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let writing = Arc::new(AtomicBool::new(true));

    let watcher = super::watch_file(data.clone(), writing.clone());
    let (gets, emulator) = rt.block_on(async {
        let http = http::client();
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (http, url, acked, errors) =
                    (http.clone(), url.clone(), acked.clone(), errors.clone());
                tokio::spawn(async move {
                    for i in (w..tasks_to_write).step_by(WRITERS) {
                        let titulo = format!("reads task{i}");
                        match post_task(
                            &http,
                            &url,
                            &json!({ "titulo": titulo, "cliente": "reads" }),
                            None,
                        )
                        .await
                        {
                            Ok((201, body)) => {
                                let id = body["id"].as_u64().unwrap_or(0);
                                acked
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .insert(id, body);
                            }
                            other => errors
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(format!("POST {titulo:?}: {other:?}")),
                        }
                    }
                })
            })
            .collect();
        let mut cmd = tokio::process::Command::new(&ctx.tools.clientemulator);
        cmd.args(["--url", &url, "--json", "--wait", "10", "-c", "16"])
            .args([
                "-n",
                &emulator_tasks.to_string(),
                "--client-id",
                "reads-emulator",
            ])
            .kill_on_drop(true);
        let emulator = tokio::spawn(async move { cmd.output().await });
        let readers: Vec<_> = (0..READERS)
            .map(|_| {
                let (http, url, acked, errors, writing) = (
                    http.clone(),
                    url.clone(),
                    acked.clone(),
                    errors.clone(),
                    writing.clone(),
                );
                tokio::spawn(async move {
                    let mut checks = 0u64;
                    while writing.load(Ordering::SeqCst) || checks == 0 {
                        let before = acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
                        checks += 1;
                        match get_tasks(&http, &url).await {
                            Ok(listed) => {
                                if let Some(problem) = missing_or_changed(&before, &listed) {
                                    errors
                                        .lock()
                                        .unwrap_or_else(|p| p.into_inner())
                                        .push(problem);
                                }
                            }
                            Err(e) => errors.lock().unwrap_or_else(|p| p.into_inner()).push(e),
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
        let gets: u64 = join_all(readers)
            .await
            .into_iter()
            .map(|r| r.unwrap_or(0))
            .sum();
        (gets, emulator.await)
    });
    match watcher.join() {
        Ok(watch) => watch.record(&mut row),
        Err(_) => row.fail("the file reader panicked"),
    }

    for e in errors.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
        row.fail(e);
    }
    let acked = acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
    row.check(acked.len() == tasks_to_write, || {
        format!("{} of {tasks_to_write} POSTs acknowledged", acked.len())
    });
    let mut emulator_acks = 0;
    match emulator {
        Ok(Ok(out)) => {
            let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            emulator_acks = report["acknowledged"].as_u64().unwrap_or(0);
            row.lost += report["lost"].as_u64().unwrap_or(0);
            row.duplicated += report["duplicated"].as_u64().unwrap_or(0);
            row.check(out.status.success(), || {
                format!(
                    "clientemulator exited with {}: {}{}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        }
        other => row.fail(format!("cannot run clientemulator: {other:?}")),
    }
    let by_title: Acks = acked
        .values()
        .map(|t| {
            (
                t["titulo"].as_str().unwrap_or("").to_owned(),
                t["id"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let expected = acked.len() as u64 + emulator_acks;
    datafile::final_audit(&mut row, &data, &by_title, expected);
    match server.terminate() {
        Ok(status) => row.check(status.success(), || {
            format!("the server exited with {status}")
        }),
        Err(e) => row.fail(e.to_string()),
    }
    row.acknowledged = acked.len() as u64 + emulator_acks;
    row.cases = gets;
    row.note(format!(
        "{gets} GET /tareas checks by {READERS} readers during {} POSTs ({WRITERS} in flight) and {emulator_acks} by a clientemulator",
        acked.len()
    ));
    row
}

/// The first acknowledged task that a listing lacks or shows differently.
fn missing_or_changed(acked: &BTreeMap<u64, Value>, listed: &[Value]) -> Option<String> {
    let by_id: HashMap<u64, &Value> = listed
        .iter()
        .filter_map(|t| Some((t["id"].as_u64()?, t)))
        .collect();
    acked.iter().find_map(|(id, task)| match by_id.get(id) {
        None => Some(format!(
            "GET /tareas misses task {id}, acknowledged before it began"
        )),
        Some(seen) if *seen != task => Some(format!(
            "GET /tareas shows task {id} as {seen}, acknowledged as {task}"
        )),
        Some(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_that_misses_or_changes_a_task_is_caught() {
        let acked: BTreeMap<u64, Value> = [
            (1, json!({"id": 1, "titulo": "a"})),
            (2, json!({"id": 2, "titulo": "b"})),
        ]
        .into();
        let good = vec![
            json!({"id": 1, "titulo": "a"}),
            json!({"id": 2, "titulo": "b"}),
            json!({"id": 3, "titulo": "c"}),
        ];
        assert_eq!(missing_or_changed(&acked, &good), None);
        assert!(missing_or_changed(&acked, &good[..1]).is_some());
        let changed = vec![
            json!({"id": 1, "titulo": "a"}),
            json!({"id": 2, "titulo": "B"}),
        ];
        assert!(missing_or_changed(&acked, &changed).is_some());
    }
}
