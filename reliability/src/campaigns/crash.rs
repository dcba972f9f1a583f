//! Crash loop: `kill -9` at a random moment while three client processes
//! write, then restart on the same file.
//!
//! Three [`Writers`] processes (8 requests in flight each) write for the
//! whole campaign, retrying across restarts with the same Idempotency-Key.
//! Each cycle waits for the running server's first acknowledgement (so the
//! clients are writing), lets a random 0-300 ms pass, kills the server with
//! SIGKILL and starts a new one on the same file. Checks, every cycle:
//! the new server starts (a crash's leftovers are never refused); the file
//! is a valid array with unique, increasing ids; every task acknowledged
//! before the kill is there under its id, exactly once; and `GET /tareas`
//! on the new server lists the same ids as the file. At the end the writers
//! stop, the last server gets SIGTERM (exit 0) and the full audit runs.

use std::time::Duration;

use proptest::prelude::Rng as _;

use super::Findings;
use crate::datafile::{self, Acks};
use crate::writer::{publish_addr, Ack, Writers};
use crate::{Ctx, Row};
use testkit::http::{self, get_tasks};
use testkit::process::Server;
use testkit::wait_until;

/// Client processes, as the issue asks.
const WRITERS: usize = 3;
/// Requests in flight per client process.
const CONCURRENCY: usize = 8;
/// Longest random wait between the cycle's first acknowledgement and the kill.
const MAX_KILL_DELAY_MS: u64 = 300;

pub fn run(ctx: &Ctx) -> Row {
    let mut row = Row::new("crash");
    let cycles = ctx.size(3, 30);
    let mut rng = ctx.rng("crash");
    let dir = super::temp_dir("crash");
    let data = dir.path().join("tasks.json");
    let addr_file = dir.path().join("addr");
    let rt = super::runtime();
    let http = http::client();
    let mut findings = Findings::default();
    let mut repaired = 0;

    let mut server = match Server::start(&ctx.tools.taskserver, &data) {
        Ok(s) => s,
        Err(refused) => {
            row.fail(format!("the first server did not start: {refused}"));
            return row;
        }
    };
    if let Err(e) = publish_addr(&addr_file, server.addr) {
        row.fail(format!("cannot write {}: {e}", addr_file.display()));
        return row;
    }
    let writers = match Writers::spawn(&ctx.tools, &addr_file, "crash-w", WRITERS, CONCURRENCY) {
        Ok(w) => w,
        Err(e) => {
            row.fail(format!("cannot start the writer processes: {e}"));
            return row;
        }
    };

    for cycle in 1..=cycles {
        let before = writers.ack_count();
        if !wait_until(Duration::from_secs(20), || writers.ack_count() > before) {
            row.fail(format!(
                "cycle {cycle}: no task acknowledged in 20 s; server log:\n{}",
                server.log()
            ));
            break;
        }
        // The random moment of the kill (not a wait for anything).
        std::thread::sleep(Duration::from_millis(
            rng.random_range(0..=MAX_KILL_DELAY_MS),
        ));
        server.kill9();
        let acked = acks_map(&writers.acks());
        row.cases += 1;

        server = match Server::start(&ctx.tools.taskserver, &data) {
            Ok(s) => s,
            Err(refused) => {
                row.fail(format!(
                    "cycle {cycle}: after kill -9 the server refused to start: {refused}"
                ));
                return row;
            }
        };
        if server.log().contains("repaired an incomplete last entry") {
            repaired += 1;
        }
        match datafile::read_tasks(&data) {
            Ok(tasks) => {
                row.file_checked(Ok(()));
                findings.add(
                    &mut row,
                    &format!("cycle {cycle}"),
                    datafile::audit(&tasks, &acked),
                );
                match rt.block_on(get_tasks(&http, &server.url())) {
                    Ok(listed) => {
                        row.check(datafile::ids(&listed) == datafile::ids(&tasks), || {
                            format!(
                                "cycle {cycle}: GET /tareas after restart differs from the file"
                            )
                        })
                    }
                    Err(e) => row.fail(format!("cycle {cycle}: {e}")),
                }
            }
            Err(e) => row.file_checked(Err(format!("cycle {cycle}: {e}"))),
        }
        if let Err(e) = publish_addr(&addr_file, server.addr) {
            row.fail(format!("cannot write {}: {e}", addr_file.display()));
            break;
        }
    }

    let (acks, errors) = writers.stop();
    for e in errors {
        row.fail(format!("a writer got an unexpected answer: {e}"));
    }
    match server.terminate() {
        Ok(status) => row.check(status.success(), || {
            format!("the last server exited with {status} on SIGTERM")
        }),
        Err(e) => row.fail(format!("cannot wait for the last server: {e}")),
    }
    match datafile::read_tasks(&data) {
        Ok(tasks) => {
            row.file_checked(Ok(()));
            findings.add(
                &mut row,
                "final audit",
                datafile::audit(&tasks, &acks_map(&acks)),
            );
            row.note(format!(
                "{} tasks in the file after {} kills; {} of the restarts repaired a torn last entry",
                tasks.len(),
                row.cases,
                repaired
            ));
        }
        Err(e) => row.file_checked(Err(format!("final: {e}"))),
    }
    let replays = acks.iter().filter(|a| a.status == 200).count();
    row.acknowledged = acks.len() as u64;
    row.note(format!(
        "{} acknowledged by {WRITERS} client processes ({CONCURRENCY} in flight each); \
         {replays} of them were retries answered 200 with the first task's id",
        acks.len()
    ));
    row
}

fn acks_map(acks: &[Ack]) -> Acks {
    acks.iter().map(|a| (a.titulo.clone(), a.id)).collect()
}
