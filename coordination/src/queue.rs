//! The part the lock and the election share: a line of ephemeral sequential
//! nodes under one folder, where the lowest sequence number is first and
//! everybody else waits for the one just ahead of it.
//!
//! Each function here is one step of the recipes on ZooKeeper's recipes page
//! (<https://zookeeper.apache.org/doc/current/recipes.html>); `mutex.rs` and
//! `election.rs` put them in order.

use std::sync::atomic::{AtomicU64, Ordering};

use zookeeper_client as zk;

use crate::error::{Error, Result};
use crate::session::{connection_lost, retry, Session};

/// A place in the line: the node this contender made.
#[derive(Clone, Debug)]
pub struct Ticket {
    /// The node's full path.
    pub path: String,
    /// Its last component, as `getChildren` lists it.
    pub node: String,
    /// The sequence number ZooKeeper appended; the line's order.
    pub sequence: i64,
    /// The zxid of the node's creation: grows with every later node, in this
    /// folder and anywhere else in the ensemble (the lock's fencing token).
    pub czxid: i64,
}

/// Where a contender stands after a look at the line.
#[derive(Debug, PartialEq, Eq)]
pub enum Place {
    /// Lowest sequence number: holds the lock, or leads.
    First,
    /// Waits for this node (the next lower sequence number) to go.
    Behind { predecessor: String, ahead: usize },
    /// Our node is not in the line any more (deleted, or the session expired).
    Gone,
}

/// One node of the line, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub node: String,
    pub sequence: i64,
}

/// Tells this process's contenders apart within one session.
static NEXT_CONTENDER: AtomicU64 = AtomicU64::new(0);

/// A new contender's guid: our session id and a counter.
pub fn guid(session: &Session) -> String {
    format!(
        "{:016x}-{:x}",
        session.id(),
        NEXT_CONTENDER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Recipe step 1 with a new guid; see [`enqueue_as`].
pub async fn enqueue(session: &Session, dir: &str, label: &str, data: &[u8]) -> Result<Ticket> {
    enqueue_as(session, dir, label, data, &guid(session)).await
}

/// Recipe step 1: create an EPHEMERAL_SEQUENTIAL node `DIR/_c_<guid>-<label>`.
///
/// The guid is what makes the step safe to retry: if the connection breaks
/// before the answer arrives, the node may or may not exist, and creating
/// another would leave a ghost in the line that nobody releases until the
/// session ends. So on a lost connection we list the folder and look for our
/// guid before creating again. (An [`Abandon::guid`] does the same for a
/// create that is given up on.)
pub async fn enqueue_as(
    session: &Session,
    dir: &str,
    label: &str,
    data: &[u8],
    guid: &str,
) -> Result<Ticket> {
    let prefix = format!("{dir}/_c_{guid}-{label}");
    let options = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
    loop {
        match session.client().create(&prefix, data, &options).await {
            Ok((stat, sequence)) => {
                let node = format!("{}{sequence}", &prefix[dir.len() + 1..]);
                return Ok(Ticket {
                    path: format!("{dir}/{node}"),
                    node,
                    sequence: sequence.into_i64(),
                    czxid: stat.czxid,
                });
            }
            // The folder is made on first use (and never deleted: its child
            // counter is where the sequence numbers come from).
            Err(zk::Error::NoNode) => session.ensure_path(dir).await?,
            Err(e) if connection_lost(&e) => {
                if let Some(ticket) = find(session, dir, guid).await? {
                    return Ok(ticket);
                }
            }
            Err(e) => return Err(Error::zk("create", &prefix, e)),
        }
    }
}

/// After a lost connection: our node, if the create went through.
async fn find(session: &Session, dir: &str, guid: &str) -> Result<Option<Ticket>> {
    let children = retry(|| session.client().list_children(dir))
        .await
        .map_err(|e| Error::zk("list", dir, e))?;
    let Some(node) = children.into_iter().find(|c| c.contains(guid)) else {
        return Ok(None);
    };
    let path = format!("{dir}/{node}");
    let Some(sequence) = sequence_of(&node) else {
        return Ok(None);
    };
    match retry(|| session.client().check_stat(&path)).await {
        Ok(Some(stat)) => Ok(Some(Ticket {
            path,
            node,
            sequence,
            czxid: stat.czxid,
        })),
        Ok(None) => Ok(None),
        Err(e) => Err(Error::zk("stat", &path, e)),
    }
}

/// Recipe step 2: `getChildren` of the folder, *without* a watch (a watch on
/// the folder would wake every waiter at every change: the herd effect the
/// recipe exists to avoid). Sorted by sequence number; nodes of other labels
/// (a Curator lock's `_c_..-read-` say) are left out.
pub async fn line(session: &Session, dir: &str, label: &str) -> Result<Vec<Entry>> {
    let children = match retry(|| session.client().list_children(dir)).await {
        Ok(children) => children,
        Err(zk::Error::NoNode) => Vec::new(),
        Err(e) => return Err(Error::zk("list", dir, e)),
    };
    let mut line: Vec<Entry> = children
        .into_iter()
        .filter(|node| node.contains(label))
        .filter_map(|node| sequence_of(&node).map(|sequence| Entry { node, sequence }))
        .collect();
    line.sort_by_key(|e| e.sequence);
    Ok(line)
}

/// Recipe step 3: are we first? If not, who is just ahead of us.
pub fn place(line: &[Entry], ticket: &Ticket) -> Place {
    match line.iter().position(|e| e.node == ticket.node) {
        None => Place::Gone,
        Some(0) => Place::First,
        Some(i) => Place::Behind {
            predecessor: line[i - 1].node.clone(),
            ahead: i,
        },
    }
}

/// What ended a wait on a node.
#[derive(Debug, PartialEq, Eq)]
pub enum Woken {
    /// The node was already gone when we looked: no watch was set.
    AlreadyGone,
    /// A watch event for the node arrived (it was deleted, or its data
    /// changed): look at the line again.
    Event,
}

/// Recipe steps 4 and 5: set a watch on `path` alone and wait for it to fire.
///
/// The recipe calls `exists()` with a watch; we call `getData()` with a watch,
/// as Curator does: when the node is already gone, `exists()` would leave a
/// watch for its *creation* on the server, which never comes (sequence
/// numbers are not reused), while `getData()` fails with NoNode and leaves
/// nothing behind.
pub async fn wait_for(session: &Session, path: &str) -> Result<Woken> {
    let watcher = match retry(|| session.client().get_and_watch_data(path)).await {
        Ok((_data, _stat, watcher)) => watcher,
        Err(zk::Error::NoNode) => return Ok(Woken::AlreadyGone),
        Err(e) => return Err(Error::zk("watch", path, e)),
    };
    let event = watcher.changed().await;
    match event.event_type {
        // A session event on a one-shot watch comes only when the session is
        // over (expired or closed); the client re-arms watches across a
        // reconnection by itself.
        zk::EventType::Session => Err(Error::zk(
            "watch",
            path,
            match event.session_state {
                zk::SessionState::Expired => zk::Error::SessionExpired,
                _ => zk::Error::ClientClosed,
            },
        )),
        _ => Ok(Woken::Event),
    }
}

/// Leaves the line: deletes our node. A NoNode answer (a retry after a lost
/// connection, an expired session) means it is gone, which is what we want.
pub async fn leave(session: &Session, path: &str) -> Result<()> {
    match retry(|| session.client().delete(path, None)).await {
        Ok(()) | Err(zk::Error::NoNode) | Err(zk::Error::SessionExpired) => Ok(()),
        Err(e) => Err(Error::zk("delete", path, e)),
    }
}

/// Deletes a node in the background unless [`Abandon::disarm`]ed: what a
/// contender that is dropped half-way (a cancelled wait, a panic) leaves
/// behind must not block the line until its session ends.
pub struct Abandon {
    session: Session,
    target: Option<Target>,
}

enum Target {
    /// Our node, by its path.
    Path(String),
    /// The node a create may or may not have made, by its guid.
    Guid { dir: String, guid: String },
}

impl Abandon {
    pub fn path(session: &Session, path: &str) -> Abandon {
        Abandon {
            session: session.clone(),
            target: Some(Target::Path(path.to_owned())),
        }
    }

    /// For a create under way: if it is given up on, the node it may have
    /// made is looked for by its guid and deleted.
    pub fn guid(session: &Session, dir: &str, guid: &str) -> Abandon {
        Abandon {
            session: session.clone(),
            target: Some(Target::Guid {
                dir: dir.to_owned(),
                guid: guid.to_owned(),
            }),
        }
    }

    pub fn disarm(mut self) {
        self.target = None;
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        let Some(target) = self.target.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let session = self.session.clone();
        runtime.spawn(async move {
            let path = match target {
                Target::Path(path) => path,
                Target::Guid { dir, guid } => match find(&session, &dir, &guid).await {
                    Ok(Some(ticket)) => ticket.path,
                    _ => return,
                },
            };
            if let Err(e) = leave(&session, &path).await {
                tracing::warn!("could not delete {path} after giving up on it: {e}");
            }
        });
    }
}

/// The sequence number ZooKeeper appended to a node's name: its last ten
/// digits (nineteen once the counter passes 2^31, as zookeeper-client prints).
pub fn sequence_of(node: &str) -> Option<i64> {
    let digits = node.len() - node.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits < 10 {
        return None;
    }
    node[node.len() - digits..].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(node: &str) -> Entry {
        Entry {
            node: node.to_owned(),
            sequence: sequence_of(node).unwrap(),
        }
    }

    #[test]
    fn sequence_numbers_are_the_trailing_digits() {
        assert_eq!(sequence_of("_c_00ab-0-lock-0000000042"), Some(42));
        assert_eq!(
            sequence_of("_c_1-2-latch-2147483648000"),
            Some(2147483648000)
        );
        assert_eq!(sequence_of("_c_1-2-lock-12"), None);
        assert_eq!(sequence_of("lock"), None);
    }

    #[test]
    fn the_line_is_ordered_by_sequence_not_by_name() {
        // Guids differ, so names sort differently from sequence numbers.
        let line = [
            entry("_c_ff-0-lock-0000000003"),
            entry("_c_aa-0-lock-0000000005"),
            entry("_c_cc-0-lock-0000000009"),
        ];
        let ticket = |node: &str| Ticket {
            path: format!("/l/{node}"),
            node: node.to_owned(),
            sequence: sequence_of(node).unwrap(),
            czxid: 0,
        };
        assert_eq!(
            place(&line, &ticket("_c_ff-0-lock-0000000003")),
            Place::First
        );
        assert_eq!(
            place(&line, &ticket("_c_cc-0-lock-0000000009")),
            Place::Behind {
                predecessor: "_c_aa-0-lock-0000000005".into(),
                ahead: 2
            }
        );
        assert_eq!(
            place(&line, &ticket("_c_dd-0-lock-0000000004")),
            Place::Gone
        );
    }
}
