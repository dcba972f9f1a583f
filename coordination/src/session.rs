//! A ZooKeeper session: connecting within a deadline, and knowing when the
//! session can no longer be trusted.
//!
//! Every recipe of this crate rests on one rule of ZooKeeper: an ephemeral
//! node lives exactly as long as the session that made it. So a holder must
//! learn when its session may be gone, and must learn it *before* the
//! ensemble can hand what it held to somebody else. [`Session::lost`] is that
//! one place:
//!
//! - **expired**: the ensemble said so, or the client gave up reconnecting
//!   (zookeeper-client expires the session itself 1.4 session timeouts after
//!   the last answer): certainly lost.
//! - **suspended**: the connection broke and no server answered within the
//!   grace period, 0.4 session timeouts. The client notices a silent
//!   connection after a quarter of the timeout (it asks for that connection
//!   timeout), so this fires at most about 0.7 timeouts after the last
//!   answer, while the ensemble cannot expire the session before a full
//!   timeout since it last heard from us. A connection that breaks and comes
//!   back within the grace period changes nothing: a ZooKeeper server
//!   killed, the client moving to the next one, the ensemble electing a new
//!   ZooKeeper leader.
//!
//! That margin holds while both sides' clocks run at the same rate and this
//! process is not paused; a paused process (SIGSTOP, a long GC, a VM
//! migration) learns only when it runs again. Nothing a client does can close
//! that gap, which is why the lock hands out a fencing token.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use zookeeper_client as zk;

use crate::error::{Error, Loss, Result};

/// The session timeout asked of the ensemble unless told otherwise. The
/// servers clamp it to their limits (by default 2 to 20 ticks, 4 to 40 s).
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause between two rounds of connection attempts while no quorum answers.
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// How long the message of a failed connect waits for each server's answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// One session with the ensemble; cheap to clone (clones share the session).
#[derive(Clone, Debug)]
pub struct Session {
    /// The client of zookeeper-client; the session closes when the last clone
    /// of it is dropped.
    client: zk::Client,
    /// The servers as given, for messages.
    servers: String,
}

impl Session {
    /// Connects to `servers` (`HOST:PORT,HOST:PORT,...`), trying every server
    /// in turn and again until one of them, with a quorum behind it, gives a
    /// session, or `deadline` passes. Then the error names each server and
    /// what it answered.
    pub async fn connect(
        servers: &str,
        session_timeout: Duration,
        deadline: Instant,
    ) -> Result<Session> {
        let endpoints = parse_servers(servers)?;
        let started = Instant::now();
        loop {
            // fail_eagerly: one pass over the servers, then an error, so that
            // this loop (not the client) decides how long to keep trying.
            let attempt = zk::Client::connector()
                .with_session_timeout(session_timeout)
                .with_connection_timeout(session_timeout / 4)
                .with_fail_eagerly()
                .connect(servers);
            match tokio::time::timeout_at(deadline, attempt).await {
                Ok(Ok(client)) => {
                    tracing::debug!(session = %client.session_id(), timeout = ?client.session_timeout(), "connected to {servers}");
                    return Ok(Session {
                        client,
                        servers: servers.to_owned(),
                    });
                }
                Ok(Err(err)) => tracing::debug!("no session from {servers} yet: {err}"),
                Err(_elapsed) => {}
            }
            if Instant::now() >= deadline {
                return Err(Error::NoQuorum {
                    waited: started.elapsed(),
                    tried: probe_all(&endpoints).await,
                });
            }
            tokio::time::sleep_until(deadline.min(Instant::now() + RETRY_PAUSE)).await;
        }
    }

    pub fn client(&self) -> &zk::Client {
        &self.client
    }

    pub fn servers(&self) -> &str {
        &self.servers
    }

    /// The session timeout the ensemble granted.
    pub fn timeout(&self) -> Duration {
        self.client.session_timeout()
    }

    /// How long a broken connection may stay broken before [`Session::lost`]
    /// gives up on it: 0.4 session timeouts (see the module docs).
    pub fn grace(&self) -> Duration {
        self.timeout() * 2 / 5
    }

    pub fn id(&self) -> i64 {
        self.client.session_id().0
    }

    /// Resolves when this session can no longer be trusted to hold its
    /// ephemeral nodes; never, while it stays healthy.
    pub async fn lost(&self) -> Loss {
        let mut states = self.client.state_watcher();
        let mut state = states.state();
        loop {
            state = match state {
                zk::SessionState::Expired => return Loss::Expired,
                zk::SessionState::Closed | zk::SessionState::AuthFailed => return Loss::Closed,
                zk::SessionState::Disconnected => {
                    let grace = self.grace();
                    match tokio::time::timeout(grace, states.changed()).await {
                        Ok(next) => next,
                        Err(_) => return Loss::Suspended { grace },
                    }
                }
                zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
                    states.changed().await
                }
            };
        }
    }

    /// Closes the session, once every clone of it is dropped: ZooKeeper then
    /// deletes its ephemeral nodes at once instead of a session timeout later.
    /// Waits at most `patience` for the ensemble to confirm it.
    pub async fn close(self, patience: Duration) {
        let mut states = self.client.state_watcher();
        drop(self);
        if states.peek_state().is_terminated() {
            return;
        }
        let closed = async { while !states.changed().await.is_terminated() {} };
        let _ = tokio::time::timeout(patience, closed).await;
    }

    /// Waits until the session is connected again; fails once it is gone.
    pub async fn connected(&self) -> Result<()> {
        let mut states = self.client.state_watcher();
        let mut state = states.state();
        loop {
            match state {
                zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
                    return Ok(())
                }
                zk::SessionState::Disconnected => state = states.changed().await,
                zk::SessionState::Expired => {
                    return Err(Error::zk("reconnect", "/", zk::Error::SessionExpired))
                }
                zk::SessionState::Closed | zk::SessionState::AuthFailed => {
                    return Err(Error::zk("reconnect", "/", zk::Error::ClientClosed))
                }
            }
        }
    }

    /// Makes the persistent node `path` and its parents unless they exist.
    pub async fn ensure_path(&self, path: &str) -> Result<()> {
        let options = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        retry(|| self.client.mkdir(path, &options))
            .await
            .map_err(|e| Error::zk("create", path, e))
    }

    /// Brings the server this session talks to up to date with the leader of
    /// the ensemble, so that the next read sees every write done before now
    /// (ZooKeeper's reads are otherwise served by whichever server we are on).
    pub async fn sync(&self, path: &str) -> Result<()> {
        retry(|| self.client.sync(path))
            .await
            .map_err(|e| Error::zk("sync", path, e))
    }
}

/// Retries an operation that is safe to repeat (a read, `mkdir -p`, a delete
/// whose NoNode counts as done) while the connection breaks under it. The
/// client queues requests until it is connected again, so this does not spin;
/// once the session is gone, the error comes through.
pub(crate) async fn retry<T, F, Fut>(mut op: F) -> Result<T, zk::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, zk::Error>>,
{
    loop {
        match op().await {
            Err(e) if connection_lost(&e) => continue,
            other => return other,
        }
    }
}

/// True for the errors of a request that was in flight when the connection
/// broke: it may or may not have been applied. zookeeper-client reports
/// them as ConnectionLoss, or as the I/O error or timeout that broke the
/// connection (`Custom`).
pub(crate) fn connection_lost(e: &zk::Error) -> bool {
    matches!(
        e,
        zk::Error::ConnectionLoss | zk::Error::Custom(_) | zk::Error::Timeout
    )
}

/// Splits `HOST:PORT,...` and checks every part, so that a typo is a usage
/// error and not "no quorum".
pub fn parse_servers(servers: &str) -> Result<Vec<String>> {
    let invalid = |reason: String| Error::InvalidServers {
        servers: servers.to_owned(),
        reason,
    };
    let mut endpoints = Vec::new();
    for part in servers.split(',') {
        let part = part.trim();
        let (host, port) = part
            .rsplit_once(':')
            .ok_or_else(|| invalid(format!("{part:?} has no :PORT")))?;
        if host.is_empty() {
            return Err(invalid(format!("{part:?} has no host")));
        }
        if host.contains('/') || port.contains('/') {
            return Err(invalid(format!(
                "{part:?}: a chroot path is not supported here"
            )));
        }
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err(invalid(format!("{part:?}: {port:?} is not a port number"))),
        }
        endpoints.push(part.to_owned());
    }
    Ok(endpoints)
}

/// What each server answers, for the message of a failed connect.
async fn probe_all(endpoints: &[String]) -> String {
    let mut answers = Vec::new();
    for endpoint in endpoints {
        answers.push(format!("{endpoint} ({})", probe(endpoint).await));
    }
    answers.join(", ")
}

/// Asks one server ZooKeeper's `srvr` question (allowed by default), which
/// tells a server that serves from one that is up without a quorum.
async fn probe(endpoint: &str) -> String {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(endpoint).await?;
        stream.write_all(b"srvr").await?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    match tokio::time::timeout(PROBE_TIMEOUT, exchange).await {
        Err(_) => format!("no answer within {} s", PROBE_TIMEOUT.as_secs()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused: no server listens there".to_owned()
        }
        Ok(Err(e)) => format!("cannot connect: {e}"),
        Ok(Ok(answer)) if answer.contains("not currently serving") => {
            "up, but not serving: it cannot reach a majority of the ensemble".to_owned()
        }
        Ok(Ok(answer)) if answer.contains("Mode:") => {
            "serving, but gave no session in time".to_owned()
        }
        Ok(Ok(_)) => "accepted the connection but gave no session".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_lists_are_checked() {
        assert_eq!(
            parse_servers("127.0.0.1:2181,zoo2:2182").unwrap(),
            ["127.0.0.1:2181", "zoo2:2182"]
        );
        for (bad, why) in [
            ("", "no :PORT"),
            ("localhost", "no :PORT"),
            (":2181", "no host"),
            ("a:b", "not a port"),
            ("a:0", "not a port"),
            ("a:70000", "not a port"),
            ("a:2181/chroot", "chroot"),
            ("a:1,,b:2", "no :PORT"),
        ] {
            let err = parse_servers(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[tokio::test]
    async fn no_quorum_names_every_server_tried() {
        // Two ports nothing listens on (bound, then closed).
        let ports: Vec<u16> = (0..2)
            .map(|_| {
                std::net::TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port()
            })
            .collect();
        let servers = format!("127.0.0.1:{},127.0.0.1:{}", ports[0], ports[1]);
        let deadline = Instant::now() + Duration::from_millis(600);
        let err = Session::connect(&servers, DEFAULT_SESSION_TIMEOUT, deadline)
            .await
            .unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, Error::NoQuorum { .. }), "{message}");
        for port in ports {
            assert!(
                message.contains(&format!("127.0.0.1:{port} (connection refused")),
                "{message}"
            );
        }
    }
}
