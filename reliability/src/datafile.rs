//! The audit of a campaign: against what the campaign was told, no
//! acknowledged task missing and none stored twice. The checks of the file
//! itself are `testkit::datafile`'s.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::Value;
pub use testkit::datafile::{ids, parse_tasks, read_tasks};

/// Every acknowledged task of a campaign: its `titulo` (unique within a
/// campaign) and the id the server answered with.
pub type Acks = BTreeMap<String, u64>;

/// What [`audit`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Audit {
    /// Acknowledged tasks not stored under the id they were acknowledged with.
    pub lost: Vec<String>,
    /// Titles stored more than once.
    pub duplicated: Vec<String>,
}

/// Compares stored tasks with acknowledged ones. Titles are unique per
/// campaign, so a title stored twice is a duplicate.
pub fn audit(tasks: &[Value], acked: &Acks) -> Audit {
    let mut stored: HashMap<&str, Vec<u64>> = HashMap::with_capacity(tasks.len());
    for task in tasks {
        if let (Some(titulo), Some(id)) = (task["titulo"].as_str(), task["id"].as_u64()) {
            stored.entry(titulo).or_default().push(id);
        }
    }
    let mut result = Audit::default();
    for (titulo, id) in acked {
        match stored.get(titulo.as_str()) {
            None => result
                .lost
                .push(format!("{titulo:?} acknowledged as id {id}, not stored")),
            Some(ids) if !ids.contains(id) => result.lost.push(format!(
                "{titulo:?} acknowledged as id {id}, stored as {ids:?}"
            )),
            Some(_) => {}
        }
    }
    let mut duplicated: Vec<String> = stored
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|(titulo, ids)| format!("{titulo:?} stored {} times, ids {ids:?}", ids.len()))
        .collect();
    duplicated.sort();
    result.duplicated = duplicated;
    result
}

/// The end of a campaign: reads the data file and checks it holds exactly
/// the acknowledged tasks, those in `acked` one by one and `expected` in
/// all (tasks acknowledged to clientemulator processes are only counted).
/// Returns the tasks for further checks, `None` if the file is not valid.
pub fn final_audit(
    row: &mut crate::Row,
    data: &Path,
    acked: &Acks,
    expected: u64,
) -> Option<Vec<Value>> {
    match read_tasks(data) {
        Ok(tasks) => {
            row.file_checked(Ok(()));
            row.add_audit("final audit", &audit(&tasks, acked));
            row.check(tasks.len() as u64 == expected, || {
                format!(
                    "the file holds {} tasks; {expected} were acknowledged",
                    tasks.len()
                )
            });
            Some(tasks)
        }
        Err(e) => {
            row.file_checked(Err(e));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_array_checks_can_fail() {
        assert!(parse_tasks(br#"[{"id":1,"titulo":"a"},{"id":2,"titulo":"b"}]"#).is_ok());
        assert!(parse_tasks(b"[]").is_ok());
        for bad in [
            &b"{}"[..],
            b"[{\"id\":1,\"titulo\":\"a\"}",
            br#"[{"id":2,"titulo":"a"},{"id":2,"titulo":"b"}]"#,
            br#"[{"id":3,"titulo":"a"},{"id":2,"titulo":"b"}]"#,
            br#"[{"id":"1","titulo":"a"}]"#,
            br#"[{"id":1}]"#,
            br#"[{"id":-1,"titulo":"a"}]"#,
        ] {
            assert!(
                parse_tasks(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn the_audit_finds_lost_moved_and_duplicated_tasks() {
        let tasks = vec![
            json!({"id": 1, "titulo": "a"}),
            json!({"id": 2, "titulo": "b"}),
            json!({"id": 3, "titulo": "b"}),
            json!({"id": 4, "titulo": "c"}),
        ];
        let acked: Acks = [("a".into(), 1), ("c".into(), 5), ("d".into(), 6)].into();
        let found = audit(&tasks, &acked);
        assert_eq!(found.lost.len(), 2, "{found:?}");
        assert_eq!(found.duplicated.len(), 1, "{found:?}");
        let clean: Acks = [("a".into(), 1), ("c".into(), 4)].into();
        assert_eq!(audit(&tasks[..2], &clean).lost.len(), 1);
        assert_eq!(
            audit(&tasks[..1], &[("a".into(), 1)].into()),
            Audit::default()
        );
    }
}
