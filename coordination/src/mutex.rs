//! The lock recipe: a distributed mutex from ephemeral sequential nodes.
//!
//! ZooKeeper's recipes page, "Locks", step by step (the step numbers in the
//! code are the page's):
//!
//! 1. create `LOCK/_c_<guid>-lock-` with the SEQUENCE and EPHEMERAL flags;
//! 2. `getChildren(LOCK)` without a watch;
//! 3. if our node has the lowest sequence number, we hold the lock;
//! 4. otherwise watch (only) the node with the next lower sequence number;
//! 5. if it is already gone go to 2, else wait for its notification, then go to 2.
//!
//! Unlock: delete our node. Its one successor is notified; nobody else is.
//!
//! What it guarantees, and what it does not:
//!
//! - At most one session's node is lowest at any moment, as the ensemble
//!   orders writes; a holder whose session expires loses the lock with it.
//! - The holder learns of a loss through [`MutexGuard::lost`] before the
//!   ensemble can give the lock to anybody else (see `session.rs` for the
//!   margin), unless the holder's process is paused. For that case every
//!   acquisition carries a fencing token, the zxid of the holder's node,
//!   which is larger for every later holder: a resource that remembers the
//!   largest token it has seen can refuse a stale holder's writes.

use std::time::Duration;

use tokio::time::Instant;

use crate::error::{Error, Loss, Result};
use crate::name::{Kind, Name};
use crate::queue::{self, Abandon, Place, Ticket, Woken};
use crate::session::Session;

/// The label of lock nodes, as Curator's `InterProcessMutex` names them.
pub const LABEL: &str = "lock-";

/// A named lock on one session. Make one per session and lock name; each
/// [`Mutex::acquire`] queues a new node.
#[derive(Clone, Debug)]
pub struct Mutex {
    session: Session,
    name: Name,
    /// `/coordination/locks/NAME`: the lock node of the recipe, persistent.
    dir: String,
}

impl Mutex {
    pub fn new(session: &Session, name: &Name) -> Mutex {
        Mutex {
            session: session.clone(),
            name: name.clone(),
            dir: name.path(Kind::Lock),
        }
    }

    /// The lock's folder, where `zkCli.sh ls` shows holder and waiters.
    pub fn path(&self) -> &str {
        &self.dir
    }

    /// Waits for the lock, at most `timeout` (for ever with `None`).
    ///
    /// On timeout (an [`Error::Busy`]) our node is deleted before this
    /// returns, so the waiter behind us moves up; if the ensemble does not
    /// answer then, or on another error, or if the future is dropped, it is
    /// deleted in the background as soon as the ensemble answers.
    pub async fn acquire(&self, timeout: Option<Duration>) -> Result<MutexGuard> {
        let started = Instant::now();
        let deadline = timeout.map(|t| started + t);
        // Step 1, within the timeout too: a create the ensemble does not
        // answer in time is looked for by its guid, and deleted, later.
        let guid = queue::guid(&self.session);
        let pending = Abandon::guid(&self.session, &self.dir, &guid);
        let created = within(
            deadline,
            queue::enqueue_as(&self.session, &self.dir, LABEL, b"", &guid),
        )
        .await;
        let Ok(ticket) = created else {
            return Err(self.busy(started, "the ensemble did not answer in time".to_owned()));
        };
        let ticket = ticket?;
        pending.disarm();
        let abandon = Abandon::path(&self.session, &ticket.path);
        match within(deadline, self.wait_turn(&ticket)).await {
            Ok(Ok(wakeups)) => {
                abandon.disarm();
                Ok(MutexGuard {
                    session: self.session.clone(),
                    name: self.name.clone(),
                    ticket,
                    wakeups,
                    released: false,
                })
            }
            Ok(Err(e)) => {
                drop(abandon);
                Err(e)
            }
            Err(_elapsed) => {
                // Leave the line now if the ensemble answers soon, so that the
                // error means "not queued"; if it does not, `abandon` deletes
                // our node in the background once it does.
                let left = tokio::time::timeout(self.session.grace(), async {
                    queue::leave(&self.session, &ticket.path).await?;
                    queue::line(&self.session, &self.dir, LABEL).await
                })
                .await;
                let detail = match left {
                    Ok(Ok(line)) => {
                        abandon.disarm();
                        match line.first() {
                            Some(holder) => format!(
                                "{} contender(s) hold or wait for it; the holder's node is {}",
                                line.len(),
                                holder.node
                            ),
                            None => "it was released just as we gave up".to_owned(),
                        }
                    }
                    _ => "the ensemble does not answer".to_owned(),
                };
                Err(self.busy(started, detail))
            }
        }
    }

    fn busy(&self, started: Instant, detail: String) -> Error {
        Error::Busy {
            what: format!("the lock {}", self.name),
            path: self.dir.clone(),
            waited: started.elapsed(),
            detail,
        }
    }

    /// Steps 2 to 5, until our node is first. Returns how many times a watch
    /// woke us: once per predecessor that left the line, never more.
    async fn wait_turn(&self, ticket: &Ticket) -> Result<u32> {
        let mut wakeups = 0;
        loop {
            // Step 2.
            let line = queue::line(&self.session, &self.dir, LABEL).await?;
            match queue::place(&line, ticket) {
                // Step 3.
                Place::First => return Ok(wakeups),
                Place::Behind { predecessor, ahead } => {
                    tracing::debug!("{}: {ahead} ahead, watching {predecessor}", ticket.node);
                    // Steps 4 and 5: the watch is on the predecessor alone, so
                    // that a release wakes one waiter and not the whole line.
                    let path = format!("{}/{predecessor}", self.dir);
                    if queue::wait_for(&self.session, &path).await? == Woken::Event {
                        wakeups += 1;
                    }
                }
                Place::Gone => {
                    return Err(Error::Lost {
                        what: format!("waiting for the lock {}", self.name),
                        loss: Loss::NodeDeleted,
                    })
                }
            }
        }
    }
}

/// The lock, held. Release it with [`MutexGuard::release`]; dropping it
/// releases it in the background.
#[derive(Debug)]
pub struct MutexGuard {
    session: Session,
    name: Name,
    /// Our node: the lock is ours while it is the lowest in the line.
    ticket: Ticket,
    /// How many watch events woke this acquisition (see `wait_turn`).
    wakeups: u32,
    /// Set by `release`, so that `Drop` has nothing left to do.
    released: bool,
}

impl MutexGuard {
    /// The fencing token: the zxid that created our node. Every later
    /// acquisition of this lock has a larger one.
    pub fn fencing_token(&self) -> i64 {
        self.ticket.czxid
    }

    /// Our node's sequence number in the lock's folder.
    pub fn sequence(&self) -> i64 {
        self.ticket.sequence
    }

    /// Our node, for `zkCli.sh`.
    pub fn node_path(&self) -> &str {
        &self.ticket.path
    }

    /// How many watch notifications this acquisition took: one per
    /// predecessor that left the line (so 0 or 1 when nobody gave up).
    pub fn wakeups(&self) -> u32 {
        self.wakeups
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Resolves when the lock can no longer be trusted to be ours: the
    /// session expired or is suspended past its grace, or somebody deleted
    /// our node. Never, while we hold it.
    pub async fn lost(&self) -> Loss {
        let node_deleted = async {
            loop {
                // A watch on our own node: deleting it by hand takes the lock
                // away as surely as an expired session.
                match queue::wait_for(&self.session, &self.ticket.path).await {
                    Ok(Woken::AlreadyGone) => return Loss::NodeDeleted,
                    Ok(Woken::Event) => {}
                    // The session is over: `session.lost()` says how.
                    Err(_) => std::future::pending::<()>().await,
                }
            }
        };
        tokio::select! {
            loss = self.session.lost() => loss,
            loss = node_deleted => loss,
        }
    }

    /// Unlock: delete our node. The waiter just behind us is notified.
    pub async fn release(mut self) -> Result<()> {
        self.released = true;
        queue::leave(&self.session, &self.ticket.path).await
    }
}

impl Drop for MutexGuard {
    fn drop(&mut self) {
        if !self.released {
            tracing::debug!(
                "lock {} dropped without release; releasing in the background",
                self.name
            );
            drop(Abandon::path(&self.session, &self.ticket.path));
        }
    }
}

/// `f` within `deadline`, or without one.
async fn within<F: std::future::Future>(
    deadline: Option<Instant>,
    f: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, f).await,
        None => Ok(f.await),
    }
}
