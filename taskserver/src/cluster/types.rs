//! What the Raft log carries and answers, and openraft's type configuration.
//!
//! Every openraft type the rest of the server needs is named here once.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::store::{Inserted, KeyConflict, NewEntry};
use crate::task::RaftPosition;

/// The tasks of one log entry: the writes the leader found waiting when it
/// proposed it, in the order they came ([`super::propose`]). One entry for
/// many writes makes openraft's work per entry (and the log's, the
/// replication's, the followers') be paid once for all of them.
///
/// Written as the JSON list of its tasks. A log written before entries
/// carried several tasks holds one task per entry, as the bare object: it
/// reads as a batch of one, so that such a node starts up and replays its
/// log as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Batch(pub Vec<Proposed>);

impl<'de> Deserialize<'de> for Batch {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Batch, D::Error> {
        struct Tasks;
        impl<'de> serde::de::Visitor<'de> for Tasks {
            type Value = Batch;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a list of proposed tasks, or one")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Batch, A::Error> {
                let mut tasks = Vec::with_capacity(seq.size_hint().unwrap_or(1));
                while let Some(task) = seq.next_element()? {
                    tasks.push(task);
                }
                Ok(Batch(tasks))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Batch, A::Error> {
                let one = Proposed::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(Batch(vec![one]))
            }
        }
        deserializer.deserialize_any(Tasks)
    }
}

impl fmt::Display for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => one.fmt(f),
            [first, ..] => write!(f, "{} tasks, the first {first}", self.0.len()),
            [] => write!(f, "no task"),
        }
    }
}

/// One task as the leader proposes it: what the client sent, and the moment
/// the leader stamped it with. Everything that could differ between nodes
/// (the clock) is decided here, before the entry enters the log, so that
/// applying it is the same on every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposed {
    /// The validated task and its `Idempotency-Key`.
    pub entry: NewEntry,
    /// Its `creada_en`, as the leader's clock read it.
    pub creada_en: String,
}

impl fmt::Display for Proposed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {:?}", self.entry.task.titulo)?;
        if let Some(key) = &self.entry.idempotency_key {
            write!(f, " (key {key})")?;
        }
        Ok(())
    }
}

/// What applying one task of an entry answered, sent back to the node that
/// proposed it (an entry answers one per task, in order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    /// The task is stored under `id` (`created` false for a replay of its
    /// key); `json` is its public JSON.
    Stored {
        id: u64,
        json: String,
        created: bool,
    },
    /// The key was used before for task `id`, with another body.
    KeyConflict { id: u64 },
    /// An entry that stores no task (a leader's first, a membership change),
    /// or one the file had applied before a restart.
    Nothing,
}

impl Applied {
    /// The answer as the store gives it.
    pub fn into_result(self) -> Option<Result<Inserted, KeyConflict>> {
        match self {
            Applied::Stored { id, json, created } => Some(Ok(Inserted {
                id,
                json: json.into(),
                created,
            })),
            Applied::KeyConflict { id } => Some(Err(KeyConflict { id })),
            Applied::Nothing => None,
        }
    }

    /// What the store answered, as the log carries it.
    pub fn from_result(answer: Option<Result<Inserted, KeyConflict>>) -> Applied {
        match answer {
            Some(Ok(inserted)) => Applied::Stored {
                id: inserted.id,
                json: String::from_utf8_lossy(&inserted.json).into_owned(),
                created: inserted.created,
            },
            Some(Err(conflict)) => Applied::KeyConflict { id: conflict.id },
            None => Applied::Nothing,
        }
    }
}

/// A cluster member: where the other nodes and clients reach its HTTP port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// `host:port`.
    pub addr: String,
}

openraft::declare_raft_types!(
    /// The cluster's Raft: tasks in log entries, standard Raft's one
    /// leader per term.
    pub TypeConfig:
        D = Batch,
        R = Vec<Applied>,
        NodeId = u64,
        Node = Member,
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, u64>,
);

/// The Raft node of this server.
pub type Raft = openraft::Raft<TypeConfig, super::state_machine::StateMachine>;
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
/// A snapshot is the data file's bytes up to its last task, closed.
pub type SnapshotData = Vec<u8>;
pub type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, SnapshotData>;

/// A log id as the data file writes it (for the entry's first task).
pub fn position(log_id: &LogId) -> RaftPosition {
    RaftPosition {
        term: log_id.committed_leader_id().term,
        index: log_id.index(),
        slot: 0,
    }
}

/// The log id of a position of the data file.
pub fn log_id(position: RaftPosition) -> LogId {
    openraft::LogId::new_term_index(position.term, position.index)
}

/// An entry as `taskserver raft-log` prints it: index, term, and what it
/// carries (its tasks, a membership, or nothing).
pub fn describe(entry: &Entry) -> serde_json::Value {
    use openraft::entry::RaftEntry;
    let log_id = entry.log_id();
    let (kind, detail) = match &entry.payload {
        openraft::EntryPayload::Blank => ("blank", serde_json::Value::Null),
        openraft::EntryPayload::Normal(proposals) => (
            "tasks",
            proposals
                .0
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "task": p.entry.task,
                        "idempotency_key": p.entry.idempotency_key,
                        "creada_en": p.creada_en,
                    })
                })
                .collect(),
        ),
        openraft::EntryPayload::Membership(m) => (
            "membership",
            serde_json::json!({
                "voters": m.voter_ids().collect::<Vec<_>>(),
                "learners": m.learner_ids().collect::<Vec<_>>(),
                "nodes": m.nodes().map(|(id, n)| (id.to_string(), n.addr.clone())).collect::<std::collections::BTreeMap<_, _>>(),
            }),
        ),
    };
    serde_json::json!({
        "index": log_id.index(),
        "term": log_id.committed_leader_id().term,
        "kind": kind,
        "entry": detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::ValidTask;

    fn proposed(titulo: &str) -> Proposed {
        Proposed {
            entry: NewEntry {
                task: ValidTask {
                    titulo: titulo.into(),
                    descripcion: Some("d".into()),
                    completada: false,
                    cliente: None,
                },
                idempotency_key: Some(format!("key-{titulo}")),
            },
            creada_en: "2026-12-03T00:00:00.000Z".into(),
        }
    }

    #[test]
    fn a_batch_reads_as_written_and_an_older_entry_of_one_task_reads_as_a_batch_of_one() {
        let batch = Batch(vec![proposed("a"), proposed("b")]);
        let json = serde_json::to_string(&batch).unwrap();
        assert!(json.starts_with('['), "{json}");
        assert_eq!(serde_json::from_str::<Batch>(&json).unwrap(), batch);
        // What the log held when an entry carried one task.
        let older = serde_json::to_string(&proposed("c")).unwrap();
        assert!(older.starts_with('{'), "{older}");
        assert_eq!(
            serde_json::from_str::<Batch>(&older).unwrap(),
            Batch(vec![proposed("c")])
        );
        assert!(serde_json::from_str::<Batch>("7").is_err());
    }
}
