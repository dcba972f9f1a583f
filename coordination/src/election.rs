//! The leader-election recipe: the same line as the lock, held for as long as
//! a candidate wants to lead.
//!
//! ZooKeeper's recipes page, "Leader Election":
//!
//! 1. create `ELECTION/_c_<guid>-latch-` with SEQUENCE and EPHEMERAL, our ID
//!    as its data;
//! 2. let C be the children of ELECTION;
//! 3. if our node is the smallest in C, we lead; otherwise watch the node
//!    just below ours, and when it goes, start again at 2 (it going does not
//!    make us the leader: the one below it may still be there).
//!
//! A leader stops leading when its session is lost (expired, or suspended
//! past its grace: see `session.rs`), when its node is deleted, or when it
//! resigns. It says so ([`Event::Defeated`]) before the ensemble can let
//! anybody else lead, except when its process is paused; then it says so as
//! soon as it runs again, and the ensemble has had one leader at every moment
//! all the same.
//!
//! The nodes are named as Curator's `LeaderLatch` names them, and hold the
//! candidate's ID as its `LeaderLatch` participant id does.

use crate::error::{Error, Loss, Result};
use crate::name::{Kind, Name};
use crate::queue::{self, Place, Ticket};
use crate::session::Session;

/// The label of election nodes, as Curator's `LeaderLatch` names them.
pub const LABEL: &str = "latch-";

/// An election, seen from one session.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    session: Session,
    /// `/coordination/elections/NAME`, persistent.
    dir: String,
}

/// The leader, as the ensemble sees it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leader {
    /// The ID it campaigns as.
    pub id: String,
    /// Its node in the election's folder.
    pub node: String,
}

/// A change of our own role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// We lead from now on.
    Elected,
    /// We no longer lead, for this reason.
    Defeated(Loss),
}

impl LeaderElection {
    pub fn new(session: &Session, name: &Name) -> LeaderElection {
        LeaderElection {
            session: session.clone(),
            dir: name.path(Kind::Election),
        }
    }

    pub fn path(&self) -> &str {
        &self.dir
    }

    /// Who leads, read after a `sync`, so it is at least as recent as any
    /// change of leader that finished before this call. `None` when nobody
    /// campaigns.
    pub async fn leader(&self) -> Result<Option<Leader>> {
        self.session.ensure_path(&self.dir).await?;
        self.session.sync(&self.dir).await?;
        loop {
            let line = queue::line(&self.session, &self.dir, LABEL).await?;
            let Some(first) = line.first() else {
                return Ok(None);
            };
            let path = format!("{}/{}", self.dir, first.node);
            match crate::session::retry(|| self.session.client().get_data(&path)).await {
                Ok((data, _stat)) => {
                    return Ok(Some(Leader {
                        id: String::from_utf8_lossy(&data).into_owned(),
                        node: first.node.clone(),
                    }))
                }
                // It went between the two reads: look again.
                Err(zookeeper_client::Error::NoNode) => continue,
                Err(e) => return Err(Error::zk("read", &path, e)),
            }
        }
    }

    /// Step 1: join the election as `id`. Follow it with
    /// [`Campaign::next`].
    pub async fn campaign(&self, id: &str) -> Result<Campaign> {
        let ticket = queue::enqueue(&self.session, &self.dir, LABEL, id.as_bytes()).await?;
        Ok(Campaign {
            election: self.clone(),
            id: id.to_owned(),
            ticket: Some(ticket),
            leading: false,
        })
    }
}

/// One candidate in one election. Drop it or [`Campaign::resign`] to leave.
#[derive(Debug)]
pub struct Campaign {
    election: LeaderElection,
    /// What our node holds, so that a recreated node holds it too.
    id: String,
    /// Our node; `None` after somebody deleted it, until we queue again.
    ticket: Option<Ticket>,
    /// What we last told the caller.
    leading: bool,
}

impl Campaign {
    pub fn is_leader(&self) -> bool {
        self.leading
    }

    /// Our node's path, while we have one.
    pub fn node_path(&self) -> Option<&str> {
        self.ticket.as_ref().map(|t| t.path.as_str())
    }

    /// Waits for our role to change and says how. An error means the
    /// session is gone (see [`Error::is_session_gone`]): campaign again on a
    /// new one.
    pub async fn next(&mut self) -> Result<Event> {
        if self.leading {
            let loss = self.leadership_lost().await;
            self.leading = false;
            if loss == Loss::NodeDeleted {
                self.ticket = None;
            }
            return Ok(Event::Defeated(loss));
        }
        self.wait_until_first().await?;
        self.leading = true;
        Ok(Event::Elected)
    }

    /// Steps 2 and 3, as a candidate that does not lead yet.
    async fn wait_until_first(&mut self) -> Result<()> {
        let session = &self.election.session;
        // After a suspension, look again only once connected: a look while
        // disconnected would only queue behind the reconnection anyway.
        session.connected().await?;
        loop {
            let ticket = match &self.ticket {
                Some(ticket) => ticket.clone(),
                None => {
                    // Our node was deleted under us: back in line, at the end.
                    let ticket =
                        queue::enqueue(session, &self.election.dir, LABEL, self.id.as_bytes())
                            .await?;
                    self.ticket = Some(ticket.clone());
                    ticket
                }
            };
            // Step 2.
            let line = queue::line(session, &self.election.dir, LABEL).await?;
            match queue::place(&line, &ticket) {
                // Step 3: smallest, we lead.
                Place::First => return Ok(()),
                Place::Behind { predecessor, ahead } => {
                    tracing::debug!("{}: {ahead} ahead, watching {predecessor}", self.id);
                    // The watch is on the candidate just below us only: when
                    // the leader goes, its one successor looks, nobody else.
                    let path = format!("{}/{predecessor}", self.election.dir);
                    queue::wait_for(session, &path).await?;
                }
                Place::Gone => self.ticket = None,
            }
        }
    }

    /// As the leader: waits until we can no longer be sure we lead.
    async fn leadership_lost(&self) -> Loss {
        let session = &self.election.session;
        let Some(ticket) = &self.ticket else {
            return Loss::NodeDeleted;
        };
        let node_deleted = async {
            loop {
                // A watch on our own node: if somebody deletes it, the next
                // candidate leads, so we must stop.
                match queue::wait_for(session, &ticket.path).await {
                    Ok(queue::Woken::AlreadyGone) => return Loss::NodeDeleted,
                    Ok(queue::Woken::Event) => {}
                    Err(_) => std::future::pending::<()>().await,
                }
            }
        };
        tokio::select! {
            loss = session.lost() => loss,
            loss = node_deleted => loss,
        }
    }

    /// Leaves the election: deletes our node, so the next candidate leads.
    pub async fn resign(mut self) -> Result<()> {
        match self.ticket.take() {
            Some(ticket) => queue::leave(&self.election.session, &ticket.path).await,
            None => Ok(()),
        }
    }
}

impl Drop for Campaign {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            drop(queue::Abandon::path(&self.election.session, &ticket.path));
        }
    }
}
