//! Slow clients over raw TCP, against the real binary.
//!
//! While `connections` clients trickle their headers one byte every half
//! second (never finishing), as many connect and say nothing, and a few
//! trickle a body they never finish, the campaign checks:
//!
//! - the server closes each header-trickling and silent connection within
//!   [`LIMIT`] (it must bound how long a request's headers may take), with
//!   no answer or a 408;
//! - each unfinished body gets the contract's 408, with a JSON message;
//! - a client that sends a valid task slowly but completely gets its 201;
//! - meanwhile other clients' POSTs and GETs are answered within a second;
//! - the data file holds exactly the acknowledged tasks, and the server
//!   still runs.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::tcp::parse_response;
use crate::datafile::{self, Acks};
use crate::{Ctx, Row};
use testkit::http::{self, get_tasks, post_task};
use testkit::process::Server;

/// How long a trickling client may hold its connection before that is a
/// failure (the server's own limits are 10 s for headers and 30 s for a
/// whole request).
const LIMIT: Duration = Duration::from_secs(45);
/// One byte per this.
const TRICKLE: Duration = Duration::from_millis(500);
/// Longest wait of a served client while the slow ones hold connections.
const PROMPT: Duration = Duration::from_secs(1);

/// How a slow connection ended.
#[derive(Debug)]
enum End {
    /// Closed by the server, with the status it sent, if any, after this long.
    Closed(Option<u16>, Option<Vec<u8>>, Duration),
    /// Still open at [`LIMIT`].
    Open,
    Error(String),
}

pub fn run(ctx: &Ctx, row: &mut Row, connections: usize) {
    let target = super::Target::new("bad-input-slow");
    let mut server = match Server::start(&ctx.tools.taskserver, &target.path) {
        Ok(s) => s,
        Err(refused) => {
            row.fail(format!("slow clients: the server did not start: {refused}"));
            return;
        }
    };
    let addr = server.addr;
    let url = server.url();
    let rt = super::super::runtime();
    let head = "POST /tareas HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n";
    let (headers, silent, bodies, complete, served) = rt.block_on(async {
        let spawn_all = |n: usize, prefix: String, trickle: &'static [u8]| {
            (0..n)
                .map(|_| tokio::spawn(slow_connection(addr, prefix.clone().into_bytes(), trickle)))
                .collect::<Vec<_>>()
        };
        let headers = spawn_all(connections, format!("{head}X-Slow: "), b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        let silent = spawn_all(connections, String::new(), b"");
        let unfinished = br#"{"titulo":"never finished aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"#;
        let bodies = spawn_all(
            (connections / 5).max(2),
            format!("{head}Content-Length: 200\r\n\r\n"),
            unfinished,
        );
        let task = br#"{"titulo":"slow but complete"}"#;
        let complete = tokio::spawn(complete_slowly(
            addr,
            format!("{head}Connection: close\r\nContent-Length: {}\r\n\r\n", task.len()),
            task,
        ));
        // Others are served while the slow ones hold their connections.
        let http = http::client();
        let mut served = Vec::new();
        for i in 0..20 {
            let started = Instant::now();
            let titulo = format!("served {i}");
            let post = post_task(&http, &url, &json!({ "titulo": titulo }), None).await;
            let get = get_tasks(&http, &url).await.map(|t| t.len());
            served.push((titulo, post, get, started.elapsed()));
            tokio::time::sleep(Duration::from_millis(250)).await; // spread over the slow clients' time
        }
        let join = |handles: Vec<tokio::task::JoinHandle<End>>| async move {
            let mut ends = Vec::new();
            for h in handles {
                ends.push(h.await.unwrap_or_else(|e| End::Error(e.to_string())));
            }
            ends
        };
        (join(headers).await, join(silent).await, join(bodies).await, complete.await, served)
    });

    let mut acked = Acks::new();
    let mut cases = 0;
    for (kind, ends) in [("trickled-header", &headers), ("silent", &silent)] {
        let mut longest = Duration::ZERO;
        for end in ends {
            cases += 1;
            match end {
                End::Closed(None | Some(408), _, after) => longest = longest.max(*after),
                End::Closed(Some(status), body, _) => row.fail(format!(
                    "{kind}: answered {status}: {}",
                    String::from_utf8_lossy(body.as_deref().unwrap_or_default())
                )),
                End::Open => row.fail(format!(
                    "{kind}: the server still holds the connection after {LIMIT:?}"
                )),
                End::Error(e) => row.fail(format!("{kind}: {e}")),
            }
        }
        if ends
            .iter()
            .all(|e| matches!(e, End::Closed(None | Some(408), _, _)))
        {
            row.note(format!(
                "{} {kind} connections: all closed by the server, the last after {:.1} s",
                ends.len(),
                longest.as_secs_f64()
            ));
        }
    }
    let mut answered_after = Duration::ZERO;
    for end in &bodies {
        cases += 1;
        match end {
            End::Closed(Some(408), Some(body), after) => {
                answered_after = answered_after.max(*after);
                let message: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
                row.check(message["error"].is_string(), || {
                    format!("unfinished body: a 408 without a JSON message: {message}")
                });
            }
            other => row.fail(format!("unfinished body: expected 408, got {other:?}")),
        }
    }
    row.note(format!(
        "{} unfinished bodies: each answered 408, the last after {:.1} s",
        bodies.len(),
        answered_after.as_secs_f64()
    ));
    cases += 1;
    match complete {
        Ok(Ok((201, body))) => {
            let task: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            acked.insert("slow but complete".into(), task["id"].as_u64().unwrap_or(0));
        }
        other => row.fail(format!(
            "a slow but complete POST: expected 201, got {other:?}"
        )),
    }
    let mut slowest = Duration::ZERO;
    for (titulo, post, get, took) in served {
        cases += 1;
        match post {
            Ok((201, body)) => {
                acked.insert(titulo.clone(), body["id"].as_u64().unwrap_or(0));
            }
            other => row.fail(format!(
                "while slow clients wait, POST {titulo:?}: {other:?}"
            )),
        }
        row.check(get.is_ok(), || {
            format!("while slow clients wait, GET /tareas: {get:?}")
        });
        row.check(took <= PROMPT, || {
            format!("while slow clients wait, {titulo:?} took {took:?}")
        });
        slowest = slowest.max(took);
    }
    row.note(format!(
        "served POST + GET while slow clients held their connections: slowest pair {} ms",
        slowest.as_millis()
    ));
    row.acknowledged += acked.len() as u64;
    row.cases += cases;
    row.check(server.is_running(), || {
        "slow clients: the server is no longer running".into()
    });
    match datafile::read_tasks(&target.path) {
        Ok(tasks) => {
            row.file_checked(Ok(()));
            row.add_audit("slow clients", &datafile::audit(&tasks, &acked));
            row.check(tasks.len() == acked.len(), || {
                format!(
                    "slow clients: the file holds {} tasks, {} acknowledged",
                    tasks.len(),
                    acked.len()
                )
            });
        }
        Err(e) => row.file_checked(Err(format!("slow clients: {e}"))),
    }
}

/// Sends `prefix`, then `trickle` one byte per [`TRICKLE`], until the
/// server closes the connection or [`LIMIT`] passes.
async fn slow_connection(
    addr: std::net::SocketAddr,
    prefix: Vec<u8>,
    trickle: &'static [u8],
) -> End {
    let started = Instant::now();
    let mut stream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => return End::Error(format!("connect: {e}")),
    };
    if let Err(e) = stream.write_all(&prefix).await {
        return End::Error(format!("write: {e}"));
    }
    let (mut reader, mut writer) = stream.into_split();
    let read_all = async move {
        let mut answer = Vec::new();
        let _ = reader.read_to_end(&mut answer).await;
        answer
    };
    let trickle_bytes = async move {
        for b in trickle {
            tokio::time::sleep(TRICKLE).await;
            if writer.write_all(&[*b]).await.is_err() {
                break;
            }
        }
        // Out of bytes: keep the connection open, say nothing more.
        std::future::pending::<()>().await;
    };
    let answer = tokio::select! {
        answer = read_all => answer,
        () = trickle_bytes => unreachable!("pending never completes"),
        () = tokio::time::sleep(LIMIT) => return End::Open,
    };
    let took = started.elapsed();
    if answer.is_empty() {
        return End::Closed(None, None, took);
    }
    match parse_response(&answer) {
        Ok((status, body)) => End::Closed(Some(status), Some(body), took),
        Err(e) => End::Error(e),
    }
}

/// Sends a whole request, its body a byte every 50 ms; the answer.
async fn complete_slowly(
    addr: std::net::SocketAddr,
    head: String,
    body: &'static [u8],
) -> Result<(u16, Vec<u8>), String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    for b in body {
        tokio::time::sleep(Duration::from_millis(50)).await;
        stream.write_all(&[*b]).await.map_err(|e| e.to_string())?;
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(LIMIT, stream.read_to_end(&mut answer)).await;
    parse_response(&answer)
}
