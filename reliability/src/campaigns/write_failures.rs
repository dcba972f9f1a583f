//! Write failures while serving: a full disk, a file-size limit, a file
//! made unwritable.
//!
//! Three scenarios, each on a running server under concurrent POSTs:
//!
//! - `tmpfs full`: the data file on a 256 KiB tmpfs mounted for the run,
//!   mostly taken by a filler file: writes fail with ENOSPC. Space returns
//!   when the filler is deleted. Needs root and `mount` (skipped otherwise).
//! - `file-size limit`: the server starts under `RLIMIT_FSIZE` (EFBIG, as a
//!   quota would); the limit is lifted with `prlimit` on the running process.
//! - `immutable file`: `chattr +i` on the data file while the server holds it
//!   open (EPERM on every write, even through the open descriptor); then
//!   `chattr -i`. Needs root and a file system with that attribute.
//!
//! Checks, in each: every answer is 201 or 503, each 503 carrying a message
//! that says what to do; the server keeps running and `GET /tareas` and
//! `GET /health` keep answering 200; the file is a valid array holding
//! exactly the acknowledged tasks (a 503'd task is never stored) after the
//! failures and again at the end; and once the cause is removed, every POST
//! succeeds again.

use std::path::{Path, PathBuf};
use std::process::Command;

use futures::future::join_all;
use serde_json::json;

use crate::datafile::{self, Acks};
use crate::{Ctx, Row};
use testkit::http::{self, get_tasks, post_task};
use testkit::process::{self, Server};

/// Requests in flight while filling up.
const CONCURRENCY: usize = 16;
/// POSTs sent before giving up on a failure that never comes.
const MAX_REQUESTS: usize = 4000;

pub fn run(ctx: &Ctx) -> Row {
    let mut row = Row::new("write-failures");
    let rt = super::runtime();
    let dir = super::temp_dir("write-failures");

    // tmpfs full
    let mount_point = dir.path().join("tmpfs");
    match Tmpfs::mount(&mount_point, "256k") {
        Ok(tmpfs) => {
            let data = tmpfs.path.join("tasks.json");
            let filler = tmpfs.path.join("filler");
            match std::fs::write(&filler, vec![b'x'; 192 * 1024]) {
                Ok(()) => match Server::start(&ctx.tools.taskserver, &data) {
                    Ok(server) => rt.block_on(scenario(
                        &mut row,
                        "tmpfs full",
                        &server,
                        &data,
                        None,
                        || std::fs::remove_file(&filler).map_err(|e| e.to_string()),
                        &["disk space"],
                    )),
                    Err(refused) => {
                        row.fail(format!("tmpfs full: the server did not start: {refused}"))
                    }
                },
                Err(e) => row.fail(format!("tmpfs full: cannot write the filler file: {e}")),
            }
        }
        Err(why) => row.skip(format!("tmpfs full: {why}")),
    }

    // file-size limit
    let data = dir.path().join("fsize.json");
    let mut cmd = process::command(&ctx.tools.taskserver, &data);
    process::limit_file_size(&mut cmd, 16 * 1024);
    match Server::spawn(cmd) {
        Ok(server) => {
            let pid = server.pid();
            rt.block_on(scenario(
                &mut row,
                "file-size limit",
                &server,
                &data,
                None,
                || process::lift_file_size_limit(pid).map_err(|e| format!("prlimit: {e}")),
                &["size limit", "disk space"],
            ));
        }
        Err(refused) => row.fail(format!(
            "file-size limit: the server did not start: {refused}"
        )),
    }

    // immutable file
    let data = dir.path().join("immutable.json");
    match Server::start(&ctx.tools.taskserver, &data) {
        Ok(server) => {
            let immutable = Immutable { path: data.clone() };
            rt.block_on(scenario(
                &mut row,
                "immutable file",
                &server,
                &data,
                Some(&|| immutable.set(true)),
                || immutable.set(false),
                &["write access"],
            ));
            drop(immutable);
        }
        Err(refused) => row.fail(format!(
            "immutable file: the server did not start: {refused}"
        )),
    }
    row
}

/// One scenario. Without `cause`, POSTs go on until writes fail by
/// themselves; with it, a burst succeeds, then `cause` makes writes fail
/// (the scenario is skipped when it cannot). `restore` removes the cause.
async fn scenario(
    row: &mut Row,
    name: &str,
    server: &Server,
    data: &Path,
    cause: Option<&dyn Fn() -> Result<(), String>>,
    restore: impl FnOnce() -> Result<(), String>,
    hints: &[&str],
) {
    let http = http::client();
    let url = server.url();
    let mut acked = Acks::new();
    let mut sent = 0;
    let mut failed = 0;
    if let Some(cause) = cause {
        burst(row, name, &http, &url, &mut acked, &mut sent, hints).await;
        if let Err(why) = cause() {
            row.skip(format!("{name}: {why}"));
            return;
        }
    }
    // Until failures come, then one more burst in the failed state.
    let mut bursts_after_failure = 0;
    while bursts_after_failure < 2 {
        let before = failed;
        failed += burst(row, name, &http, &url, &mut acked, &mut sent, hints).await;
        if failed > before {
            bursts_after_failure += 1;
        }
        if sent >= MAX_REQUESTS {
            row.fail(format!("{name}: no write failed in {sent} POSTs"));
            break;
        }
    }
    row.note(format!(
        "{name}: {} acknowledged, then {failed} POSTs answered 503",
        acked.len()
    ));
    check_state(
        row,
        &format!("{name}, while failing"),
        server,
        &http,
        &url,
        data,
        &acked,
    )
    .await;
    if let Err(e) = restore() {
        row.fail(format!("{name}: cannot remove the cause: {e}"));
        return;
    }
    let before = acked.len();
    let answered_503 = burst(row, name, &http, &url, &mut acked, &mut sent, hints).await;
    row.check(
        answered_503 == 0 && acked.len() == before + CONCURRENCY,
        || format!("{name}: after the cause was removed, {answered_503} POSTs still got 503"),
    );
    check_state(
        row,
        &format!("{name}, after recovery"),
        server,
        &http,
        &url,
        data,
        &acked,
    )
    .await;
    row.cases += sent as u64;
    row.acknowledged += acked.len() as u64;
}

/// Sends CONCURRENCY POSTs at once; how many got 503 (checked to carry a
/// hint). Anything but 201 or 503 is a failure.
async fn burst(
    row: &mut Row,
    name: &str,
    http: &reqwest::Client,
    url: &str,
    acked: &mut Acks,
    sent: &mut usize,
    hints: &[&str],
) -> usize {
    let titles: Vec<String> = (0..CONCURRENCY)
        .map(|i| format!("{name} {}", *sent + i))
        .collect();
    *sent += CONCURRENCY;
    let answers = join_all(titles.iter().map(|titulo| {
        let task = json!({ "titulo": titulo });
        async move { post_task(http, url, &task, None).await }
    }))
    .await;
    let mut unavailable = 0;
    for (titulo, answer) in titles.into_iter().zip(answers) {
        match answer {
            Ok((201, body)) => {
                acked.insert(titulo, body["id"].as_u64().unwrap_or(0));
            }
            Ok((503, body)) => {
                unavailable += 1;
                let message = body["error"].as_str().unwrap_or("");
                row.check(
                    hints.iter().any(|h| message.contains(h))
                        && message.contains("Nothing was stored"),
                    || format!("{name}: a 503 without a clear message: {body}"),
                );
            }
            Ok((status, body)) => row.fail(format!("{name}: POST answered {status}: {body}")),
            Err(e) => row.fail(format!("{name}: POST failed: {e}")),
        }
    }
    unavailable
}

/// The server runs and serves reads; the file holds exactly `acked`.
async fn check_state(
    row: &mut Row,
    when: &str,
    server: &Server,
    http: &reqwest::Client,
    url: &str,
    data: &Path,
    acked: &Acks,
) {
    let health = http
        .get(format!("{url}/health"))
        .send()
        .await
        .map(|r| r.status().as_u16());
    row.check(matches!(health, Ok(200)), || {
        format!("{when}: GET /health: {health:?}; log:\n{}", server.log())
    });
    let expected: Vec<u64> = acked
        .values()
        .copied()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    match get_tasks(http, url).await {
        Ok(listed) => row.check(datafile::ids(&listed) == expected, || {
            format!("{when}: GET /tareas lists other tasks than the acknowledged ones")
        }),
        Err(e) => row.fail(format!("{when}: {e}")),
    }
    match datafile::read_tasks(data) {
        Ok(tasks) => {
            row.file_checked(Ok(()));
            row.add_audit(when, &datafile::audit(&tasks, acked));
            row.check(tasks.len() == acked.len(), || {
                format!("{when}: the file holds {} tasks but {} were acknowledged: a refused task was stored", tasks.len(), acked.len())
            });
        }
        Err(e) => row.file_checked(Err(format!("{when}: {e}"))),
    }
}

/// A tmpfs mounted for the run, unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cannot mount a tmpfs (needs root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            path: path.to_owned(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// The immutable attribute of a file; cleared when dropped.
struct Immutable {
    path: PathBuf,
}

impl Immutable {
    fn set(&self, on: bool) -> Result<(), String> {
        let out = Command::new("chattr")
            .arg(if on { "+i" } else { "-i" })
            .arg(&self.path)
            .output()
            .map_err(|e| format!("cannot run chattr: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "chattr cannot make the file immutable (needs root and a file system with the attribute): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = self.set(false);
    }
}
