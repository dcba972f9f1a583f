//! One keep-alive HTTP/1.1 connection per worker, spoken with hyper directly.
//!
//! Why not reqwest here, when the wait and the read-back use it: per request,
//! reqwest re-parses the URL, clones its client and header map, boxes a
//! timer and checks a pool out and back in. On loopback that doubled the CPU
//! the emulator spends per request, and a load generator that needs more
//! CPU than the server it measures measures itself. A worker owns its
//! connection, so there is no pool to share: the connection is opened on
//! first use and again after any failure, and nothing else touches it.
//!
//! Errors keep what matters for verification: whether the request may have
//! reached the server. A connection that cannot be opened, or a request that
//! hyper hands back unsent, certainly stored nothing.

use std::error::Error as StdError;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::IDEMPOTENCY_KEY;
use crate::stats::ErrorKind;

/// Where and how tasks are posted: built once per run, shared by workers.
#[derive(Debug)]
pub struct Target {
    /// `host:port` to connect to; resolved on each (re)connection, so a
    /// server that moves (a restarted container) is found again.
    authority: String,
    /// The `Host` header, required by HTTP/1.1 and not added by hyper.
    host: HeaderValue,
    /// The request target in origin form (`/tareas`).
    path: Uri,
    /// Time limit of one attempt, connecting included.
    timeout: Duration,
}

impl Target {
    /// `url` is the checked `.../tareas` URL of the run.
    pub fn new(url: &reqwest::Url, timeout: Duration) -> Self {
        // `host_str` keeps the brackets of an IPv6 address, as both the
        // socket address and the Host header want them.
        let host = url
            .host_str()
            .expect("checked by cli: http URLs have a host");
        let port = url.port_or_known_default().unwrap_or(80);
        let host_header = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        Self {
            authority: format!("{host}:{port}"),
            host: HeaderValue::from_str(&host_header).expect("a URL host is a valid header"),
            path: url
                .path()
                .parse()
                .expect("a URL path is a valid request target"),
            timeout,
        }
    }
}

/// Why an attempt got no HTTP status.
#[derive(Debug)]
pub struct AttemptError {
    /// Decides whether the task may be stored (see [`ErrorKind`]).
    pub kind: ErrorKind,
    /// The cause, for the report's example message.
    pub source: Box<dyn StdError + Send + Sync>,
}

impl AttemptError {
    fn new(kind: ErrorKind, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self {
            kind,
            source: source.into(),
        }
    }
}

/// A worker's connection, or none yet (or none since the last failure).
#[derive(Debug, Default)]
pub struct Connection {
    /// The request half of the hyper connection; its other half runs as a
    /// task on the same thread.
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    /// POSTs `body` and returns the status once the whole response is read,
    /// all within the target's timeout. A request that failed or timed out
    /// leaves the connection in an unknown state, so any failure drops it.
    pub async fn post(
        &mut self,
        target: &Target,
        body: Bytes,
        key: HeaderValue,
    ) -> Result<u16, AttemptError> {
        let deadline = Instant::now() + target.timeout;
        let result = self.exchange(target, body, key, deadline).await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    async fn exchange(
        &mut self,
        target: &Target,
        body: Bytes,
        key: HeaderValue,
        deadline: Instant,
    ) -> Result<u16, AttemptError> {
        let mut request = Request::post(target.path.clone())
            .header(HOST, target.host.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(
                USER_AGENT,
                HeaderValue::from_static(concat!("clientemulator/", env!("CARGO_PKG_VERSION"))),
            )
            .header(IDEMPOTENCY_KEY, key)
            .body(Full::new(body))
            .expect("a request built from checked parts is valid");
        // A kept-alive connection may have been closed by the server while
        // idle; hyper then hands the request back unsent, and one fresh
        // connection is tried before calling it a failure.
        for fresh in [false, true] {
            let reused = self.sender.is_some() && !fresh;
            let sender = self.ready_sender(target, deadline, fresh).await?;
            let sent = tokio::time::timeout_at(deadline, async {
                let response = sender.try_send_request(request).await?;
                let status = response.status().as_u16();
                // Read the body to its end so the connection can carry the
                // next request; its content is not needed, the read-back
                // checks what was stored.
                let mut body = response.into_body();
                while let Some(frame) = body.frame().await {
                    if frame.is_err() {
                        // The status arrived, so the server has decided;
                        // only this connection is lost.
                        return Ok((status, false));
                    }
                }
                Ok::<_, hyper::client::conn::TrySendError<Request<Full<Bytes>>>>((status, true))
            })
            .await;
            match sent {
                Err(_elapsed) => {
                    return Err(AttemptError::new(
                        ErrorKind::Timeout,
                        "no answer within --timeout",
                    ))
                }
                Ok(Ok((status, reusable))) => {
                    if !reusable {
                        self.sender = None;
                    }
                    return Ok(status);
                }
                Ok(Err(mut error)) => match error.take_message() {
                    Some(unsent) if reused => {
                        request = unsent;
                        self.sender = None;
                    }
                    Some(_) => {
                        return Err(AttemptError::new(ErrorKind::Connect, error.into_error()))
                    }
                    None => {
                        return Err(AttemptError::new(ErrorKind::Connection, error.into_error()))
                    }
                },
            }
        }
        unreachable!("the second pass uses a fresh connection, which never retries")
    }

    /// The open connection, or a new one when there is none, it closed, or
    /// `fresh` asks for one.
    async fn ready_sender(
        &mut self,
        target: &Target,
        deadline: Instant,
        fresh: bool,
    ) -> Result<&mut SendRequest<Full<Bytes>>, AttemptError> {
        if fresh || self.sender.as_ref().is_some_and(SendRequest::is_closed) {
            self.sender = None;
        }
        if let Some(sender) = &mut self.sender {
            if tokio::time::timeout_at(deadline, sender.ready())
                .await
                .is_ok_and(|r| r.is_ok())
            {
                return Ok(self.sender.as_mut().expect("checked above"));
            }
            self.sender = None;
        }
        let opened = tokio::time::timeout_at(deadline, connect(target)).await;
        match opened {
            Ok(Ok(sender)) => Ok(self.sender.insert(sender)),
            Ok(Err(error)) => Err(error),
            Err(_elapsed) => Err(AttemptError::new(
                ErrorKind::Connect,
                "connecting timed out",
            )),
        }
    }
}

async fn connect(target: &Target) -> Result<SendRequest<Full<Bytes>>, AttemptError> {
    let connect_error = |e: std::io::Error| AttemptError::new(ErrorKind::Connect, e);
    let stream = TcpStream::connect(target.authority.as_str())
        .await
        .map_err(connect_error)?;
    // Small JSON requests: do not let Nagle's algorithm hold them back.
    stream.set_nodelay(true).map_err(connect_error)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| AttemptError::new(ErrorKind::Connect, e))?;
    // The connection half does the reading and writing; it ends when the
    // sender is dropped or the server closes.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        Target::new(&reqwest::Url::parse(url).unwrap(), Duration::from_secs(1))
    }

    #[test]
    fn target_keeps_an_explicit_port_in_the_host_header_only() {
        let t = target("http://server:9000/tareas");
        assert_eq!(
            (t.authority.as_str(), t.host.to_str().unwrap()),
            ("server:9000", "server:9000")
        );
        assert_eq!(t.path, "/tareas");
        let t = target("http://server/api/tareas");
        assert_eq!(
            (t.authority.as_str(), t.host.to_str().unwrap()),
            ("server:80", "server")
        );
        assert_eq!(t.path, "/api/tareas");
        let t = target("http://[::1]:9000/tareas");
        assert_eq!(
            (t.authority.as_str(), t.host.to_str().unwrap()),
            ("[::1]:9000", "[::1]:9000")
        );
    }
}
