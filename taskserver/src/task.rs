//! The task: what a client sends, what is stored, and the rules between them.
//!
//! Three shapes, kept apart on purpose:
//! - [`NewTask`] is the input as a client wrote it. Deserializing it rejects
//!   unknown fields and wrong types; [`NewTask::validate`] then checks lengths.
//! - [`ValidTask`] is an input that passed every rule, ready for the store.
//! - [`Record`] is one entry of the data file: the task plus what the server
//!   keeps of its own (the idempotency key). [`Record::public_json`] is what
//!   clients see, without the server's own fields.

use serde::{Deserialize, Serialize};

/// Longest `titulo`, in characters, after trimming.
pub const MAX_TITULO: usize = 200;
/// Longest `descripcion`, in characters.
pub const MAX_DESCRIPCION: usize = 2000;
/// Longest `cliente`, in characters.
pub const MAX_CLIENTE: usize = 100;

/// A task as a client sends it in `POST /tareas`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    /// Required; trimmed before it is checked and stored.
    pub titulo: String,
    /// Free text; `null` and absent mean the same.
    #[serde(default)]
    pub descripcion: Option<String>,
    /// Absent or `null` mean `false`.
    #[serde(default)]
    pub completada: Option<bool>,
    /// Who sent it; the emulator puts its client id here.
    #[serde(default)]
    pub cliente: Option<String>,
}

/// A [`NewTask`] that passed validation: what the store accepts (and, in
/// cluster mode, what a Raft log entry carries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidTask {
    /// Trimmed, 1 to [`MAX_TITULO`] characters.
    pub titulo: String,
    /// At most [`MAX_DESCRIPCION`] characters.
    pub descripcion: Option<String>,
    /// Whether the task is done.
    pub completada: bool,
    /// At most [`MAX_CLIENTE`] characters.
    pub cliente: Option<String>,
}

/// Why a well-formed JSON body is still not a valid task.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValidationError {
    #[error("`titulo` is empty: give the task a title of 1 to {MAX_TITULO} characters")]
    EmptyTitulo,
    #[error("`{field}` has {len} characters; the limit is {max}: shorten it")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
}

impl NewTask {
    /// Checks the length rules of the contract and normalises the task.
    pub fn validate(self) -> Result<ValidTask, ValidationError> {
        let titulo = self.titulo.trim();
        if titulo.is_empty() {
            return Err(ValidationError::EmptyTitulo);
        }
        check_len("titulo", titulo, MAX_TITULO)?;
        if let Some(d) = &self.descripcion {
            check_len("descripcion", d, MAX_DESCRIPCION)?;
        }
        if let Some(c) = &self.cliente {
            check_len("cliente", c, MAX_CLIENTE)?;
        }
        Ok(ValidTask {
            titulo: titulo.to_owned(),
            descripcion: self.descripcion,
            completada: self.completada.unwrap_or(false),
            cliente: self.cliente,
        })
    }
}

fn check_len(field: &'static str, value: &str, max: usize) -> Result<(), ValidationError> {
    // Count characters, not bytes: "ñ" is one character of the limit.
    let len = value.chars().count();
    if len > max {
        return Err(ValidationError::TooLong { field, len, max });
    }
    Ok(())
}

/// One entry of the data file.
///
/// Reading is lenient where a person may have written the file by hand: only
/// `id` and `titulo` are required, unknown fields are ignored (and stay in the
/// file, which is never rewritten).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Assigned by the server: unique in the file, increasing.
    pub id: u64,
    /// The task's title.
    pub titulo: String,
    /// Free text, `null` when absent.
    #[serde(default)]
    pub descripcion: Option<String>,
    /// Whether the task is done.
    #[serde(default)]
    pub completada: bool,
    /// Who sent it, `null` when absent.
    #[serde(default)]
    pub cliente: Option<String>,
    /// RFC 3339 UTC time of the commit that stored it. Optional only because a
    /// person may write tasks by hand.
    #[serde(default)]
    pub creada_en: Option<String>,
    /// The client's `Idempotency-Key`, kept in the file so a retry is
    /// recognised even after a restart or by another server process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// In cluster mode, where the task's entry is in the Raft log: how a
    /// node knows, after a restart, how far its file has applied the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft: Option<RaftPosition>,
}

/// Where a task is in a cluster's Raft log: the term of the leader that
/// proposed its entry, the entry's index, and the task's place among the
/// tasks of that entry (an entry carries the writes the leader found
/// waiting together). Ordered as the log is: by entry, then by place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RaftPosition {
    /// The proposing leader's term.
    pub term: u64,
    /// The entry's index in the log.
    pub index: u64,
    /// The task's place in its entry, from 0; not written when 0, so that
    /// an entry of one task reads `{"term": 3, "index": 7}`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub slot: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The fields clients see: a [`Record`] without the server's own fields.
#[derive(Serialize)]
struct PublicTask<'a> {
    id: u64,
    titulo: &'a str,
    descripcion: Option<&'a str>,
    completada: bool,
    cliente: Option<&'a str>,
    creada_en: Option<&'a str>,
}

impl Record {
    /// A new record for a validated task.
    pub fn new(id: u64, task: &ValidTask, creada_en: String, key: Option<String>) -> Self {
        Record {
            id,
            titulo: task.titulo.clone(),
            descripcion: task.descripcion.clone(),
            completada: task.completada,
            cliente: task.cliente.clone(),
            creada_en: Some(creada_en),
            idempotency_key: key,
            raft: None,
        }
    }

    /// The compact JSON line written to the data file.
    pub fn file_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a record always serializes")
    }

    /// The compact JSON clients receive.
    pub fn public_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        self.write_public_json(&mut out);
        out
    }

    /// Appends the public JSON to `out` (saves an allocation per task at load).
    pub fn write_public_json(&self, out: &mut Vec<u8>) {
        let public = PublicTask {
            id: self.id,
            titulo: &self.titulo,
            descripcion: self.descripcion.as_deref(),
            completada: self.completada,
            cliente: self.cliente.as_deref(),
            creada_en: self.creada_en.as_deref(),
        };
        serde_json::to_writer(out, &public).expect("a task always serializes");
    }

    /// Whether this record holds the same task as `task`: what makes a retry
    /// with the same `Idempotency-Key` a replay rather than a conflict.
    pub fn same_task(&self, task: &ValidTask) -> bool {
        self.titulo == task.titulo
            && self.descripcion == task.descripcion
            && self.completada == task.completada
            && self.cliente == task.cliente
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(titulo: &str) -> NewTask {
        NewTask {
            titulo: titulo.into(),
            descripcion: None,
            completada: None,
            cliente: None,
        }
    }

    #[test]
    fn titulo_is_trimmed_and_must_not_be_empty() {
        assert_eq!(new("  hola ").validate().unwrap().titulo, "hola");
        assert_eq!(new(" \t\n").validate(), Err(ValidationError::EmptyTitulo));
    }

    #[test]
    fn limits_count_characters_not_bytes() {
        assert!(new(&"ñ".repeat(MAX_TITULO)).validate().is_ok());
        let err = new(&"ñ".repeat(MAX_TITULO + 1)).validate().unwrap_err();
        assert_eq!(
            err,
            ValidationError::TooLong {
                field: "titulo",
                len: MAX_TITULO + 1,
                max: MAX_TITULO
            }
        );
        let mut t = new("x");
        t.cliente = Some("c".repeat(MAX_CLIENTE + 1));
        assert!(matches!(
            t.validate(),
            Err(ValidationError::TooLong {
                field: "cliente",
                ..
            })
        ));
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_refused() {
        assert!(serde_json::from_str::<NewTask>(r#"{"titulo":"a","x":1}"#).is_err());
        assert!(serde_json::from_str::<NewTask>(r#"{"titulo":1}"#).is_err());
        assert!(serde_json::from_str::<NewTask>(r#"{"titulo":"a","titulo":"b"}"#).is_err());
    }

    #[test]
    fn public_json_hides_the_idempotency_key() {
        let valid = new("a").validate().unwrap();
        let r = Record::new(
            7,
            &valid,
            "2026-01-01T00:00:00.000Z".into(),
            Some("k".into()),
        );
        let public: serde_json::Value = serde_json::from_slice(&r.public_json()).unwrap();
        assert_eq!(public["id"], 7);
        assert!(public.get("idempotency_key").is_none());
        let back: Record = serde_json::from_slice(&r.file_json()).unwrap();
        assert_eq!(back, r);
    }
}
