//! Sequential ids from sequential znodes (the course's "Secuenciales").
//!
//! ZooKeeper appends to the name of a SEQUENTIAL node the number of changes
//! its parent's children have seen so far (the parent's `cversion`). Creating
//! such a node is one write ordered by the ensemble, so the numbers are
//! unique and grow in the order the creates were applied, whichever server
//! and client made them. [`SequentialIds::next`] creates one and deletes it
//! again: the number is the id, the node is not needed afterwards.
//!
//! The ids are not consecutive: deleting a child also counts as a change of
//! the parent's children, so with nobody else drawing, one `next` after
//! another gives 0, 2, 4, ... They are 32-bit on the server; past 2^31 the
//! server starts printing 64-bit numbers (ZOOKEEPER-4706).

use crate::error::Result;
use crate::name::{Kind, Name};
use crate::queue;
use crate::session::Session;

/// The label of id nodes.
const LABEL: &str = "id-";

/// A named sequence of ids.
#[derive(Clone, Debug)]
pub struct SequentialIds {
    session: Session,
    /// `/coordination/ids/NAME`: its children counter is the sequence.
    dir: String,
}

impl SequentialIds {
    pub fn new(session: &Session, name: &Name) -> SequentialIds {
        SequentialIds {
            session: session.clone(),
            dir: name.path(Kind::Ids),
        }
    }

    /// The next id: larger than every id any client drew before this call
    /// began.
    pub async fn next(&self) -> Result<i64> {
        // Ephemeral, so that a crash between the two steps leaves nothing.
        // The guid in the name makes the create safe to retry (see queue.rs).
        let ticket = queue::enqueue(&self.session, &self.dir, LABEL, b"").await?;
        queue::leave(&self.session, &ticket.path).await?;
        Ok(ticket.sequence)
    }
}
