//! The generated requests over real TCP to the real binary, written byte
//! by byte: headers as generated, the body with `Content-Length` or
//! chunked, `Connection: close`, and the answer read to the end.

use std::cell::RefCell;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use proptest::test_runner::TestCaseError;

use super::gen::{self, Case};
use super::{check_answer, model, record, runner, Observed, Tally, Target};
use crate::{Ctx, Row};
use testkit::process::Server;

pub fn run(ctx: &Ctx, row: &mut Row, seed: u64, cases: u32) {
    let target = Target::new("bad-input-tcp");
    let server = match Server::start(&ctx.tools.taskserver, &target.path) {
        Ok(s) => s,
        Err(refused) => {
            row.fail(format!("TCP: the server did not start: {refused}"));
            return;
        }
    };
    let state = RefCell::new((target, Tally::default()));
    let mut runner = runner(seed ^ 0x7c9, cases);
    let result = runner.run(&gen::case(), |case| {
        let (target, tally) = &mut *state.borrow_mut();
        one(server.addr, target, tally, &case).map_err(TestCaseError::fail)
    });
    record(row, "TCP", seed ^ 0x7c9, result);
    let (target, tally) = state.into_inner();
    tally.into_row(row, "over TCP to the binary");
    match crate::datafile::read_tasks(&target.path) {
        Ok(_) => row.file_checked(Ok(())),
        Err(e) => row.file_checked(Err(format!("TCP: at the end: {e}"))),
    }
    let mut server = server;
    row.check(server.is_running(), || {
        "TCP: the server is no longer running".into()
    });
}

fn one(
    addr: SocketAddr,
    target: &mut Target,
    tally: &mut Tally,
    case: &Case,
) -> Result<(), String> {
    let (before, verdict) = target.before(case)?;
    let answer = exchange(addr, &request_bytes(case));
    let after = std::fs::read(&target.path).map_err(|e| e.to_string())?;
    let (status, body) = match answer {
        Ok(answer) => answer,
        // A server may stop reading a body it already refused for its size
        // and close the connection, losing its answer to a reset.
        Err(e) if case.body.len() > model::BODY_LIMIT && after == before => {
            tally.cases += 1;
            tally.files_checked += 1;
            *tally.statuses.entry(0).or_default() += 1;
            let _ = e;
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let seen = Observed {
        status,
        body: &body,
        before: &before,
        after: &after,
    };
    check_answer(&verdict, case.key.as_deref(), &seen, target, tally)
}

/// The request as it goes on the wire.
pub fn request_bytes(case: &Case) -> Vec<u8> {
    let mut out = b"POST /tareas HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n".to_vec();
    for (name, value) in [
        ("Content-Type", &case.content_type),
        ("Idempotency-Key", &case.key),
    ] {
        if let Some(value) = value {
            out.extend_from_slice(format!("{name}: ").as_bytes());
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
    }
    if case.declare_length {
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", case.body.len()).as_bytes());
        out.extend_from_slice(&case.body);
    } else {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
        if !case.body.is_empty() {
            out.extend_from_slice(format!("{:x}\r\n", case.body.len()).as_bytes());
            out.extend_from_slice(&case.body);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
    }
    out
}

/// Sends `request`, reads the answer to the end; its status and body.
fn exchange(addr: SocketAddr, request: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(|e| e.to_string())?;
    // The server may answer (and close) before it read everything.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer);
    if answer.is_empty() {
        return Err(format!("no answer: {read:?}"));
    }
    parse_response(&answer)
}

/// The status and (de-chunked) body of an HTTP/1.1 response.
pub fn parse_response(bytes: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let text = || String::from_utf8_lossy(bytes).into_owned();
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {:?}", text()))?;
    let head = String::from_utf8_lossy(&bytes[..split]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {:?}", text()))?;
    let mut body = bytes[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body).ok_or_else(|| format!("bad chunked body in {:?}", text()))?;
    }
    Ok((status, body))
}

fn dechunk(mut bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = bytes.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&bytes[..line_end]).ok()?.trim(), 16).ok()?;
        bytes = &bytes[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(bytes.get(..size)?);
        bytes = bytes.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_http_by_hand() {
        let case = Case {
            content_type: Some(b"application/json".to_vec()),
            key: None,
            body: b"{}".to_vec(),
            declare_length: false,
        };
        let bytes = request_bytes(&case);
        assert!(bytes.ends_with(b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"));
        let (status, body) =
            parse_response(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((status, body.as_slice()), (201, &b"{}"[..]));
        let (_, body) = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n1\r\nd\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(body, b"abcd");
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }
}
