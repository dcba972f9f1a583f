//! What can go wrong, each with what to do about it.

use std::time::Duration;

use zookeeper_client as zk;

/// Why a session, and with it a held lock or a leadership, can no longer be
/// trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// ZooKeeper expired the session: its ephemeral nodes are gone, and
    /// another contender may already hold what this one held.
    Expired,
    /// No server answered for `grace` after the connection broke. The session
    /// may still be alive, but the ensemble could expire it soon, and nothing
    /// here would hear of it: treated as lost, before anybody else can get in.
    Suspended { grace: Duration },
    /// The session was closed (by this process) or refused authentication.
    Closed,
    /// Our own node was deleted by somebody else (`zkCli.sh delete`, say).
    NodeDeleted,
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Loss::Expired => f.write_str("the ZooKeeper session expired"),
            Loss::Suspended { grace } => write!(
                f,
                "no ZooKeeper server answered for {:.1} s, so the session may expire at any moment",
                grace.as_secs_f64()
            ),
            Loss::Closed => f.write_str("the ZooKeeper session was closed"),
            Loss::NodeDeleted => f.write_str("somebody deleted this contender's znode"),
        }
    }
}

/// The errors of this crate. Every message says what happened and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{name:?} is not a valid znode name: {reason}. Use a single path component such as `jobs` or `nightly-report` (letters, digits, '-', '_', '.')")]
    InvalidName { name: String, reason: &'static str },

    #[error("{servers:?} is not a list of ZooKeeper servers: {reason}. Give HOST:PORT[,HOST:PORT...], e.g. 127.0.0.1:2181,127.0.0.1:2182")]
    InvalidServers { servers: String, reason: String },

    #[error("no ZooKeeper quorum within {:.1} s; tried {tried}. Start enough servers for a majority (2 of 3), check --zookeeper (or ZOOKEEPER), or allow more time with --timeout", waited.as_secs_f64())]
    NoQuorum { waited: Duration, tried: String },

    #[error("{what}: {loss}. Whatever it guarded may now be held by another process; start again with a new session")]
    Lost { what: String, loss: Loss },

    #[error("gave up after {:.1} s waiting for {what}; {detail}. Wait longer with --timeout, or see who holds it with `zkCli.sh ls {path}`", waited.as_secs_f64())]
    Busy {
        what: String,
        path: String,
        waited: Duration,
        detail: String,
    },

    #[error("ZooKeeper refused {op} {path}: {source}. {hint}")]
    ZooKeeper {
        op: &'static str,
        path: String,
        #[source]
        source: zk::Error,
        hint: &'static str,
    },

    #[error("{path} holds data this program cannot read ({reason}); it was not written by `coordination`, or by another version. Delete it with `zkCli.sh deleteall {path}` if nothing else uses it")]
    Corrupt { path: String, reason: String },

    #[error("cannot run {program:?}: {source}. Check the command after `--`: is it installed, on PATH, executable?")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },

    #[error("mutual exclusion was violated on {path}: {detail}. This is a bug in the lock recipe or in a client that writes without the lock")]
    Violation { path: String, detail: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an error of the ZooKeeper client with the operation and path it
    /// was for, and a hint for the cases a person can do something about.
    pub(crate) fn zk(op: &'static str, path: &str, source: zk::Error) -> Error {
        let hint = match source {
            zk::Error::SessionExpired => {
                "The session expired (no server answered within the session timeout): run again"
            }
            zk::Error::NoAuth => "This node's ACL does not let us in: ask whoever set it",
            zk::Error::ConnectionLoss => "The connection broke mid-request: run again",
            zk::Error::ClientClosed => "The session was closed: run again",
            _ => "If it persists, look at the servers' logs",
        };
        Error::ZooKeeper {
            op,
            path: path.to_owned(),
            source,
            hint,
        }
    }

    /// True when the session behind the failed call is gone for good: the
    /// caller needs a new session, not a retry.
    pub fn is_session_gone(&self) -> bool {
        match self {
            Error::Lost { loss, .. } => *loss != Loss::NodeDeleted,
            Error::ZooKeeper { source, .. } => matches!(
                source,
                zk::Error::SessionExpired | zk::Error::ClientClosed | zk::Error::AuthFailed
            ),
            _ => false,
        }
    }
}
