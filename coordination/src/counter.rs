//! The demo's shared counter: a znode that workers add 1 to, each time under
//! the mutex, with a read and a write that would lose updates without it.
//!
//! The node holds `{"total": N, "by": {"worker": n, ...}}`. Each addition,
//! under the lock of the same name: read the node, add 1 to `total` and to
//! the worker's own count, write it back.
//!
//! The write names the version it read. Under a working lock nobody else can
//! write in between, so a version mismatch is reported as a violation of
//! mutual exclusion instead of being retried away. The one honest doubt is a
//! write whose answer was lost (the connection broke, the session expired):
//! it may or may not have been applied. The worker's own count in the node
//! settles it, read again under the lock: only this worker ever changes it.
//!
//! A worker started again under the same ID (the demo run a second time)
//! carries on from the count the node holds for it: the first read sets its
//! base, and from then on the node must hold exactly base + its additions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use zookeeper_client as zk;

use crate::error::{Error, Result};
use crate::mutex::Mutex;
use crate::name::{Kind, Name};
use crate::session::{connection_lost, retry, Session};

/// The counter's value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub total: u64,
    pub by: BTreeMap<String, u64>,
}

/// One worker adding to one counter, across sessions.
#[derive(Debug)]
pub struct Worker {
    name: Name,
    id: String,
    /// The node's count for this worker at its first read; `None` before.
    base: Option<u64>,
    /// Additions this worker knows were applied (on top of `base`).
    done: u64,
    /// The last write's answer was lost: it may have been applied.
    in_doubt: bool,
}

impl Worker {
    pub fn new(name: &Name, id: &str) -> Worker {
        Worker {
            name: name.clone(),
            id: id.to_owned(),
            base: None,
            done: 0,
            in_doubt: false,
        }
    }

    /// Additions of this worker known to be applied so far.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// Adds 1 until this worker has made `target` additions, on `session`.
    /// On an error whose [`Error::is_session_gone`] holds, call again with a
    /// new session: the worker carries on where it was.
    pub async fn run(&mut self, session: &Session, target: u64) -> Result<()> {
        let mutex = Mutex::new(session, &self.name);
        let path = self.name.path(Kind::Counter);
        while self.done < target {
            let guard = mutex.acquire(None).await?;
            let (mut tally, version) = read(session, &path).await?;
            let recorded = tally.by.get(&self.id).copied().unwrap_or(0);
            let base = *self.base.get_or_insert(recorded);
            let mine = recorded - base.min(recorded);
            if self.in_doubt && mine == self.done + 1 {
                // The write in doubt was applied.
                self.done += 1;
            }
            self.in_doubt = false;
            if recorded != base + self.done {
                return Err(Error::Violation {
                    path,
                    detail: format!(
                        "the counter says worker {} is at {recorded}, but it started at {base} and added {}",
                        self.id, self.done
                    ),
                });
            }
            if self.done == target {
                guard.release().await?;
                break;
            }
            tally.total += 1;
            tally.by.insert(self.id.clone(), recorded + 1);
            let data = serde_json::to_vec(&tally).expect("a tally serialises");
            let written = match version {
                Some(version) => session
                    .client()
                    .set_data(&path, &data, Some(version))
                    .await
                    .map(drop),
                None => {
                    let options = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
                    session
                        .client()
                        .create(&path, &data, &options)
                        .await
                        .map(drop)
                }
            };
            match written {
                Ok(()) => self.done += 1,
                Err(zk::Error::BadVersion | zk::Error::NodeExists) => {
                    return Err(Error::Violation {
                        path,
                        detail: format!(
                            "somebody wrote the counter between worker {}'s read and write, while it held the lock",
                            self.id
                        ),
                    })
                }
                Err(e) if connection_lost(&e) => {
                    // Still our session: the next round settles the doubt
                    // under the lock (released below).
                    self.in_doubt = true;
                }
                Err(e @ zk::Error::SessionExpired) => {
                    self.in_doubt = true;
                    return Err(Error::zk("write", &path, e));
                }
                Err(e) => return Err(Error::zk("write", &path, e)),
            }
            guard.release().await?;
        }
        Ok(())
    }
}

/// The counter's value now (after a `sync`, so it includes every addition
/// that finished before this call).
pub async fn tally(session: &Session, name: &Name) -> Result<Tally> {
    let path = name.path(Kind::Counter);
    session.ensure_path(crate::name::ROOT).await?;
    session.sync(crate::name::ROOT).await?;
    Ok(read(session, &path).await?.0)
}

/// The tally and its version; version `None` while the node does not exist.
async fn read(session: &Session, path: &str) -> Result<(Tally, Option<i32>)> {
    match retry(|| session.client().get_data(path)).await {
        Ok((data, stat)) => {
            let tally = serde_json::from_slice(&data).map_err(|e| Error::Corrupt {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
            Ok((tally, Some(stat.version)))
        }
        Err(zk::Error::NoNode) => {
            // Its folder must exist for the first write to create it.
            session
                .ensure_path(&path[..path.rfind('/').unwrap_or(0)])
                .await?;
            Ok((Tally::default(), None))
        }
        Err(e) => Err(Error::zk("read", path, e)),
    }
}
