//! The listening socket, sized on purpose for a burst of connections.
//!
//! The course's exercise is a burst: every client connects at the same
//! moment. A connection the kernel cannot queue (the accept queue, the
//! *listen backlog*, is full) is not refused: its handshake is dropped and
//! the client's kernel sends the SYN again one second later, then after two
//! more, and so on. So an undersized backlog does not show up as errors but
//! as requests that take exactly 1 s, 3 s, 7 s. Rust's standard library (and
//! so `tokio::net::TcpListener::bind`) asks for a backlog of 128; we ask for
//! [`DEFAULT_BACKLOG`], as nginx, Redis and Go servers choose theirs, and say
//! in the log when the kernel caps it.
//!
//! Each connection is also an open file. [`raise_open_files_limit`] lifts the
//! soft limit to the hard one, as Go programs do at start-up, because the
//! soft limit of a shell is often 1,024 (256 on macOS).

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// The listen backlog asked for unless `--backlog` says otherwise: Linux's
/// own default cap (`net.core.somaxconn`) since kernel 5.4.
pub const DEFAULT_BACKLOG: u32 = 4096;

/// Why the server could not listen.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot resolve {addr}: {source}; give an address such as 0.0.0.0:9000 with --bind or TASKSERVER_BIND")]
    Resolve { addr: String, source: io::Error },
    #[error("cannot listen on {addr}: {source}; is another program using that port? Choose another with --bind or TASKSERVER_BIND")]
    Bind { addr: String, source: io::Error },
}

/// Binds `addr` and listens with a backlog of `backlog` connections, logging
/// when the kernel keeps fewer. Must be called inside the runtime.
pub async fn bind(addr: &str, backlog: u32) -> Result<TcpListener, ListenError> {
    let resolved: SocketAddr = tokio::net::lookup_host(addr)
        .await
        .map_err(|source| ListenError::Resolve {
            addr: addr.to_owned(),
            source,
        })?
        .next()
        .ok_or_else(|| ListenError::Resolve {
            addr: addr.to_owned(),
            source: io::Error::new(io::ErrorKind::NotFound, "no address found"),
        })?;
    let bind_error = |source| ListenError::Bind {
        addr: addr.to_owned(),
        source,
    };
    let socket = if resolved.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(bind_error)?;
    // What `TcpListener::bind` does too: a restarted server can listen again
    // at once although connections of the old one linger in TIME_WAIT.
    socket.set_reuseaddr(true).map_err(bind_error)?;
    socket.bind(resolved).map_err(bind_error)?;
    let listener = socket.listen(backlog).map_err(bind_error)?;
    warn_if_capped(backlog);
    Ok(listener)
}

/// The kernel silently keeps at most `net.core.somaxconn` connections in
/// any accept queue: say so when that is fewer than asked.
fn warn_if_capped(backlog: u32) {
    let Some(cap) = somaxconn() else { return };
    if cap < backlog {
        tracing::warn!(
            asked = backlog,
            kept = cap,
            "the kernel caps the listen backlog at {cap} (net.core.somaxconn): in a burst of more \
             than {cap} connections at once, the rest wait 1 s or more for a SYN retransmission. \
             Raise it with `sysctl -w net.core.somaxconn={backlog}` (in Docker: \
             `--sysctl net.core.somaxconn={backlog}`), or ask for less with --backlog"
        );
    }
}

/// `net.core.somaxconn`, where the system says it (Linux).
fn somaxconn() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Raises this process's soft limit of open files to its hard limit and
/// returns the limit now in force, logging a warning when it is below
/// `wanted` (connections the server is asked to take at once).
pub fn raise_open_files_limit(wanted: u64) -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            if limit < wanted {
                tracing::warn!(
                    limit,
                    wanted,
                    "the open-files limit is {limit} (its hard limit): a burst of more than about \
                     {limit} connections at once will be refused. Raise the hard limit \
                     (`ulimit -Hn`, systemd's LimitNOFILE, or `docker run --ulimit nofile=65536`)"
                );
            }
            Some(limit)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-files limit");
            None
        }
    }
}
