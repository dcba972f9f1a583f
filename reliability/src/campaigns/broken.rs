//! Broken files: files no crash could produce.
//!
//! Each file is broken somewhere a crash during an append never writes:
//! in the middle, at the start, in a complete entry, or after the closing
//! `]`. For each, the real server must refuse to start with a non-zero exit
//! status and a message naming the place (`line L, column C`, or the id
//! that appears twice) and saying the file was left untouched; the file must
//! be byte-for-byte what it was, and no side file may appear next to it.

use crate::{Ctx, Row};
use testkit::process::Server;

/// A task as a commit of its own would store it: each id at its own moment,
/// as in a file written over time.
fn task(id: &str, titulo: &str) -> String {
    let millis = id.bytes().map(u32::from).sum::<u32>() % 1000;
    format!(
        r#"{{"id":{id},"titulo":"{titulo}","descripcion":null,"completada":false,"cliente":null,"creada_en":"2026-11-23T10:00:00.{millis:03}Z"}}"#
    )
}

/// One broken file and the place its message must name.
pub struct Case {
    pub name: &'static str,
    pub bytes: Vec<u8>,
    /// Text the refusal must contain.
    pub place: String,
    /// When set, the column named after `place` must be in this range.
    pub columns: Option<std::ops::Range<usize>>,
}

/// The broken files. What a crash can leave after the last synced entry is
/// repaired, not refused (the power-cut campaign): bytes of one append, in
/// any order, so at most one commit's tasks. So the broken files here have
/// what no crash leaves: tasks of two commits after the bad part, a task
/// with a smaller id, a well-formed object that is not a task, or no array.
pub fn cases() -> Vec<Case> {
    let (t1, t2, t3, t4) = (
        task("1", "uno"),
        task("2", "dos"),
        task("3", "tres"),
        task("4", "cuatro"),
    );
    let middle = |bad: &str| format!("[\n{t1},\n{bad},\n{t3},\n{t4}\n]\n");
    let line3 = || "line 3, column".to_owned();
    let cases = vec![
        (
            "an object instead of an array",
            format!("{{\"tareas\": [{t1}]}}"),
            "line 1, column 1".to_owned(),
        ),
        (
            "bad JSON in the middle",
            middle(r#"{"id":2 "titulo":"x"}"#),
            line3(),
        ),
        (
            "a task with a string id",
            middle(&task("\"2\"", "dos")),
            line3(),
        ),
        (
            "a task with a negative id",
            middle(&task("-2", "dos")),
            line3(),
        ),
        (
            "a task with a fractional id",
            middle(&task("2.5", "dos")),
            line3(),
        ),
        (
            "a task with an id beyond u64",
            middle(&task("18446744073709551616", "dos")),
            line3(),
        ),
        ("a task without titulo", middle(r#"{"id":2}"#), line3()),
        (
            "a task whose titulo is a number",
            middle(r#"{"id":2,"titulo":7}"#),
            line3(),
        ),
        (
            "a task whose titulo is null",
            middle(r#"{"id":2,"titulo":null}"#),
            line3(),
        ),
        (
            "a task whose completada is a string",
            middle(r#"{"id":2,"titulo":"a","completada":"no"}"#),
            line3(),
        ),
        (
            "an array instead of a task",
            middle(r#"[2, "dos"]"#),
            line3(),
        ),
        ("a number instead of a task", middle("2"), line3()),
        ("a string instead of a task", middle("\"dos\""), line3()),
        (
            "two commas",
            format!("[\n{t1},\n,\n{t2},\n{t3}\n]\n"),
            line3(),
        ),
        (
            "a missing comma",
            format!("[\n{t1}\n{t2},\n{t3}\n]\n"),
            "line 3, column".to_owned(),
        ),
        (
            "the same id twice",
            format!("[\n{t1},\n{t2},\n{}\n]\n", task("1", "otra")),
            "task id 1 appears twice".to_owned(),
        ),
        (
            "a second array after the first",
            format!("[\n{t1}\n]\n[\n{t2},\n{t3}\n]\n"),
            "line 4, column 1".to_owned(),
        ),
        (
            "a task with a smaller id after the end",
            format!("[\n{t2}\n]\n{t1}\n"),
            "line 4, column 1".to_owned(),
        ),
        (
            "a byte-order mark before the array",
            format!("\u{feff}[\n{t1}\n]\n"),
            "line 1, column 1".to_owned(),
        ),
        ("null", "null\n".to_owned(), "line 1, column 1".to_owned()),
        (
            "a string",
            "\"tareas\"\n".to_owned(),
            "line 1, column 1".to_owned(),
        ),
        (
            "an array of arrays",
            format!("[[{t1},{t2}]]\n"),
            "line 1, column 2".to_owned(),
        ),
        (
            "a bad entry followed by whole tasks and a cut end",
            format!("[\n{t1},\n{{\"id\":2,,\n{t3},\n{t4},\n{{\"id\":5,\"ti"),
            line3(),
        ),
    ];
    let mut cases: Vec<Case> = cases
        .into_iter()
        .map(|(name, text, place)| Case {
            name,
            bytes: text.into_bytes(),
            place,
            columns: None,
        })
        .collect();
    // One line, no newlines: the column must point into the second task.
    let second = task("\"2\"", "dos");
    let start = 1 + t1.len() + 1 + 1;
    cases.push(Case {
        name: "a string id on a single-line file",
        bytes: format!("[{t1},{second}]").into_bytes(),
        place: "line 1, column ".into(),
        columns: Some(start..start + second.len()),
    });
    cases
}

/// The column number that follows `place` in `log`.
fn column_after(log: &str, place: &str) -> Option<usize> {
    let rest = &log[log.find(place)? + place.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

pub fn run(ctx: &Ctx) -> Row {
    let mut row = Row::new("broken");
    let dir = super::temp_dir("broken");
    for (i, case) in cases().into_iter().enumerate() {
        row.cases += 1;
        let case_dir = dir.path().join(format!("case-{i}"));
        let data = case_dir.join("tasks.json");
        if let Err(e) =
            std::fs::create_dir(&case_dir).and_then(|()| std::fs::write(&data, &case.bytes))
        {
            row.fail(format!("cannot write {}: {e}", data.display()));
            continue;
        }
        match Server::start(&ctx.tools.taskserver, &data) {
            Ok(server) => {
                row.fail(format!(
                    "{}: the server started on it (it must refuse)",
                    case.name
                ));
                server.kill9();
            }
            Err(refused) => {
                match refused.status {
                    Some(status) => row.check(!status.success(), || {
                        format!("{}: refused, but the exit status is 0", case.name)
                    }),
                    None => row.fail(format!(
                        "{}: neither listened nor exited: {refused}",
                        case.name
                    )),
                }
                row.check(refused.log.contains(&case.place), || {
                    format!(
                        "{}: the message does not name {:?}: {}",
                        case.name,
                        case.place,
                        refused.log.trim_end()
                    )
                });
                if let Some(columns) = &case.columns {
                    let column = column_after(&refused.log, &case.place);
                    row.check(column.is_some_and(|c| columns.contains(&c)), || {
                        format!("{}: the column {column:?} is not in {columns:?}", case.name)
                    });
                }
                row.check(refused.log.contains("left untouched"), || {
                    format!(
                        "{}: the message does not say the file was left untouched: {}",
                        case.name,
                        refused.log.trim_end()
                    )
                });
            }
        }
        let unchanged = std::fs::read(&data).is_ok_and(|now| now == case.bytes);
        row.file_checked(if unchanged {
            Ok(())
        } else {
            Err(format!("{}: the file was changed", case.name))
        });
        let others: Vec<String> = std::fs::read_dir(&case_dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|name| name != "tasks.json")
                    .collect()
            })
            .unwrap_or_default();
        row.check(others.is_empty(), || {
            format!("{}: files appeared next to it: {others:?}", case.name)
        });
    }
    row
}
