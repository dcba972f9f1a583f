//! Deciding what a group of new tasks becomes, before anything is written.
//!
//! A commit has three steps, with a type between each:
//!
//! 1. **Decide** ([`plan`]): from the tasks that came in, each with what was
//!    decided for it before (a [`Proposal`]: its moment, and in a cluster its
//!    place in the Raft log), and the tasks already stored (the [`Index`]),
//!    make a [`Plan`]: the [`Record`]s to append, with their ids, and what
//!    each request will be answered. Deterministic: the same proposals and
//!    index give the same plan, which is what lets every node of a cluster
//!    apply the same log to the same file.
//! 2. **Write** (`state.rs`): append the plan's records and `fdatasync`.
//! 3. **Apply**: add them to the index and answer ([`Plan::answers`]).
//!
//! # The rules of deciding
//!
//! - Ids continue from the largest id stored, in the order of the entries.
//! - An entry whose `Idempotency-Key` is stored already is a replay when its
//!   task is the same (answered `200` with the stored task), a conflict when
//!   it is not (`422`). Nothing new is stored for either.
//! - The same holds between the entries of one group: the second entry with
//!   a key is answered with the first one's task.

use std::collections::HashMap;

use bytes::Bytes;

use super::index::Index;
use super::{Inserted, KeyConflict, NewEntry};
use crate::task::{RaftPosition, Record};

/// A task with what was decided for it before it is written: the moment it
/// is stamped with (one for a whole commit of a single server; the
/// leader's, per task, in a cluster) and, in a cluster, where it is in the
/// Raft log.
#[derive(Debug, Clone, Copy)]
pub struct Proposal<'a> {
    /// What came in.
    pub entry: &'a NewEntry,
    /// Its `creada_en`.
    pub creada_en: &'a str,
    /// Its Raft log position, in cluster mode.
    pub raft: Option<RaftPosition>,
}

/// What a group of entries becomes: the records to write, and an answer per
/// entry.
#[derive(Debug)]
pub struct Plan {
    /// The new records, ids increasing: exactly what is appended.
    pub records: Vec<Record>,
    /// One per entry, in order.
    answers: Vec<Answer>,
}

/// How one entry will be answered.
#[derive(Debug)]
enum Answer {
    /// Decided already: a stored task found by its key, or a conflict.
    Known(Result<Inserted, KeyConflict>),
    /// The `n`-th new record; `created` is false for a replay of an earlier
    /// entry of the same group.
    New { n: usize, created: bool },
}

/// The index disagrees with itself: a key points at a task it does not
/// hold, or holds JSON that is not a task. Never expected; the store then
/// rereads the file instead of answering from a broken index.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the in-memory index disagrees with itself: {0}")]
pub struct Inconsistent(pub String);

/// Decides the records and answers of `proposals` against the tasks of
/// `index`.
pub fn plan(proposals: &[Proposal<'_>], index: &Index) -> Result<Plan, Inconsistent> {
    let mut next_id = index.max_id() + 1;
    let mut records: Vec<Record> = Vec::new();
    let mut answers = Vec::with_capacity(proposals.len());
    // Keys of this group's new records: record number by key.
    let mut new_keys: HashMap<&str, usize> = HashMap::new();
    for proposal in proposals {
        let entry = proposal.entry;
        let key = entry.idempotency_key.as_deref();
        if let Some(id) = key.and_then(|k| index.id_for_key(k)) {
            answers.push(Answer::Known(stored_answer(index, id, entry)?));
            continue;
        }
        if let Some(&n) = key.and_then(|k| new_keys.get(k)) {
            let first: &Record = &records[n];
            answers.push(if first.same_task(&entry.task) {
                Answer::New { n, created: false }
            } else {
                Answer::Known(Err(KeyConflict { id: first.id }))
            });
            continue;
        }
        if let Some(k) = key {
            new_keys.insert(k, records.len());
        }
        answers.push(Answer::New {
            n: records.len(),
            created: true,
        });
        let mut record = Record::new(
            next_id,
            &entry.task,
            proposal.creada_en.to_owned(),
            key.map(str::to_owned),
        );
        record.raft = proposal.raft;
        records.push(record);
        next_id += 1;
    }
    Ok(Plan { records, answers })
}

/// The answer to an entry whose key is stored as task `id`.
fn stored_answer(
    index: &Index,
    id: u64,
    entry: &NewEntry,
) -> Result<Result<Inserted, KeyConflict>, Inconsistent> {
    let json = index
        .get(id)
        .ok_or_else(|| Inconsistent(format!("a key points at task {id}, which is not there")))?;
    let stored: Record = serde_json::from_slice(&json)
        .map_err(|e| Inconsistent(format!("task {id} is not a task ({e})")))?;
    Ok(if stored.same_task(&entry.task) {
        Ok(Inserted {
            id,
            json,
            created: false,
        })
    } else {
        Err(KeyConflict { id })
    })
}

impl Plan {
    /// The answers, once the records are stored: `public` holds the public
    /// JSON of each record of [`Plan::records`], in order.
    pub fn answers(self, public: &[Bytes]) -> Vec<Result<Inserted, KeyConflict>> {
        let records = self.records;
        self.answers
            .into_iter()
            .map(|answer| match answer {
                Answer::Known(result) => result,
                Answer::New { n, created } => Ok(Inserted {
                    id: records[n].id,
                    json: public[n].clone(),
                    created,
                }),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::ValidTask;

    fn entry(titulo: &str, key: Option<&str>) -> NewEntry {
        NewEntry {
            task: ValidTask {
                titulo: titulo.into(),
                descripcion: None,
                completada: false,
                cliente: Some("c".into()),
            },
            idempotency_key: key.map(str::to_owned),
        }
    }

    /// Each entry, stamped `creada_en`, as a single server's commit does.
    fn proposals<'a>(entries: &[&'a NewEntry], creada_en: &'a str) -> Vec<Proposal<'a>> {
        entries
            .iter()
            .map(|entry| Proposal {
                entry,
                creada_en,
                raft: None,
            })
            .collect()
    }

    fn stored(index: &mut Index, plan: &Plan) -> Vec<Bytes> {
        plan.records
            .iter()
            .map(|r| {
                index.push(r);
                index.get(r.id).unwrap()
            })
            .collect()
    }

    #[test]
    fn ids_follow_the_largest_and_the_entries_order() {
        let mut index = Index::default();
        let first = [entry("a", None), entry("b", Some("k"))];
        let p = plan(&proposals(&first.iter().collect::<Vec<_>>(), "t0"), &index).unwrap();
        let public = stored(&mut index, &p);
        assert_eq!(p.records.iter().map(|r| r.id).collect::<Vec<_>>(), [1, 2]);
        let answers = p.answers(&public);
        assert!(answers.iter().all(|a| a.as_ref().unwrap().created));

        let second = [entry("c", None)];
        let p = plan(&proposals(&second.iter().collect::<Vec<_>>(), "t1"), &index).unwrap();
        assert_eq!(p.records[0].id, 3);
        assert_eq!(p.records[0].creada_en.as_deref(), Some("t1"));
    }

    #[test]
    fn a_stored_key_replays_or_conflicts_and_stores_nothing() {
        let mut index = Index::default();
        let p = plan(&proposals(&[&entry("a", Some("k"))], "t0"), &index).unwrap();
        stored(&mut index, &p);
        let again = [entry("a", Some("k")), entry("other", Some("k"))];
        let p = plan(&proposals(&again.iter().collect::<Vec<_>>(), "t1"), &index).unwrap();
        assert!(p.records.is_empty());
        let answers = p.answers(&[]);
        let replay = answers[0].as_ref().unwrap();
        assert_eq!((replay.id, replay.created), (1, false));
        assert_eq!(answers[1], Err(KeyConflict { id: 1 }));
    }

    #[test]
    fn keys_repeated_within_a_group_store_one_task() {
        let index = Index::default();
        let group: Vec<NewEntry> = (0..4096)
            .map(|i| entry(&format!("t{}", i % 2), Some(&format!("k{}", i / 4))))
            .collect();
        let refs: Vec<&NewEntry> = group.iter().collect();
        let p = plan(&proposals(&refs, "t0"), &index).unwrap();
        // Keys k0, k1, ... each come four times: t0, t1, t0, t1.
        assert_eq!(p.records.len(), 1024);
        let mut index = Index::default();
        let public = stored(&mut index, &p);
        let answers = p.answers(&public);
        for (i, answer) in answers.iter().enumerate() {
            let first_id = (i / 4) as u64 + 1;
            match i % 4 {
                0 => assert_eq!(answer.as_ref().unwrap().id, first_id),
                2 => assert!(!answer.as_ref().unwrap().created),
                _ => assert_eq!(answer, &Err(KeyConflict { id: first_id })),
            }
        }
    }

    #[test]
    fn an_index_that_disagrees_with_itself_is_an_error_not_a_panic() {
        let mut index = Index::default();
        let p = plan(&proposals(&[&entry("a", Some("k"))], "t0"), &index).unwrap();
        stored(&mut index, &p);
        index.forget_task_keeping_its_key(1);
        let err = plan(&proposals(&[&entry("a", Some("k"))], "t1"), &index).unwrap_err();
        assert!(err.0.contains("task 1"), "{err}");
    }
}
