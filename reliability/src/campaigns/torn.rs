//! Torn writes: every file a crash during one append could leave.
//!
//! The real server writes a file of K tasks (`before`), then appends a
//! batch of M more (`after`); an append overwrites the closing `\n]\n` of
//! `before` with `,\n{task},\n{task}\n]\n`. For every byte offset `c` of
//! that appended part (a sample of them in the smoke run) the campaign
//! builds the files a crash can leave, starts the real server on each, and
//! checks it:
//!
//! - `cut`: `after[..c]`, the write stopped at `c`;
//! - `cut+zeros`: the same followed by 1 to 4096 NUL bytes, a file the file
//!   system extended whose last data never reached the disk;
//! - `cut+garbage`: followed by 1 to 64 random bytes (stale blocks; their
//!   last significant byte is never `]`, see below), before the final `]`;
//! - `overwrite`: `after[..c]` followed by what is left of `before` past
//!   `c`, the in-place write cut short inside the old closing bytes.
//!
//! The server must start, leave a valid array, keep the K tasks exactly,
//! keep exactly the appended tasks complete before the cut (they are
//! entries a crash left whole), list the same over `GET /tareas`, and stop
//! with status 0 on SIGTERM.
//!
//! Random garbage that itself ends in `]`, or garbage after the final `]`,
//! is left out: such a file reads the same as one a person edited badly,
//! which the server must refuse (see [`super::broken`]).

use std::path::Path;

use serde_json::{json, Value};

use crate::datafile;
use crate::harness::Tools;
use crate::{Ctx, Row};
use testkit::http::{self, get_tasks, post_task};
use testkit::process::Server;

/// Titles of the K tasks: brackets, quotes, escapes, non-ASCII, text that
/// looks like JSON; a cut inside any of them is a cut a crash can make.
const BEFORE: [&str; 5] = [
    "uno",
    "with ] bracket]",
    "quote \" and backslash \\ ]",
    "ñandú 🦀 [x]",
    "{\"id\":9,\"titulo\":\"not a task\"}",
];
/// Titles of the appended batch.
const APPENDED: [&str; 3] = ["tail ]", "[x]", "line\nbreak ] \u{0}"];

/// One file a crash could leave, and what the server must keep of it.
#[derive(Debug, Clone)]
pub struct Case {
    /// How it was made, for messages.
    pub label: String,
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// Appended tasks complete before the cut.
    pub kept: usize,
}

/// The two files the real server wrote.
#[derive(Debug, Clone)]
pub struct Append {
    /// K tasks.
    pub before: Vec<u8>,
    /// K + M tasks.
    pub after: Vec<u8>,
    /// Where the append began: the closing bytes of `before`.
    pub at: usize,
    /// End offset (in `after`) of each appended entry.
    pub entry_ends: Vec<usize>,
}

impl Append {
    /// Checks the files have the shape the store's docs describe.
    pub fn new(before: Vec<u8>, after: Vec<u8>) -> Result<Append, String> {
        let at = before
            .len()
            .checked_sub(3)
            .filter(|&at| before.ends_with(b"\n]\n") && after.starts_with(&before[..at]))
            .ok_or(
                "the data file does not grow the documented way (an append after the last entry)",
            )?;
        let mut entry_ends = Vec::new();
        let mut line_start = at;
        for (i, b) in after.iter().enumerate().skip(at) {
            if *b == b'\n' {
                let line = &after[line_start..i];
                if line.first() == Some(&b'{') {
                    let end = if line.ends_with(b",") { i - 1 } else { i };
                    entry_ends.push(end);
                }
                line_start = i + 1;
            }
        }
        Ok(Append {
            before,
            after,
            at,
            entry_ends,
        })
    }

    /// Every file of the module docs for a cut at `c`.
    pub fn cases_at(&self, c: usize, rng: &mut impl proptest::prelude::Rng) -> Vec<Case> {
        let after = &self.after;
        let kept = self.entry_ends.iter().filter(|&&end| end <= c).count();
        let cut = &after[..c];
        let offset = c - self.at;
        let mut cases = vec![Case {
            label: format!("cut at +{offset}"),
            bytes: cut.to_vec(),
            kept,
        }];
        let zeros = rng.random_range(1..=4096);
        let mut with_zeros = cut.to_vec();
        with_zeros.resize(c + zeros, 0);
        cases.push(Case {
            label: format!("cut at +{offset} and {zeros} zero bytes"),
            bytes: with_zeros,
            kept,
        });
        // Before the final `]` only (see the module docs).
        if c < after.len() - 2 {
            let mut garbage = vec![0u8; rng.random_range(1..=64)];
            rng.fill_bytes(&mut garbage);
            if let Some(last) = garbage
                .iter_mut()
                .rev()
                .find(|b| !matches!(**b, b' ' | b'\t' | b'\n' | b'\r' | 0))
            {
                if *last == b']' {
                    *last = b'#';
                }
            }
            let mut bytes = cut.to_vec();
            bytes.extend_from_slice(&garbage);
            cases.push(Case {
                label: format!("cut at +{offset} and {} random bytes", garbage.len()),
                bytes,
                kept,
            });
        }
        if c < self.before.len() {
            let mut bytes = cut.to_vec();
            bytes.extend_from_slice(&self.before[c..]);
            cases.push(Case {
                label: format!("in-place write of {offset} bytes over the old end"),
                bytes,
                kept,
            });
        }
        cases
    }

    /// The cut offsets to try: all of them, or (smoke) the first and last
    /// few, both sides of every entry's end, and every `stride`-th.
    pub fn offsets(&self, stride: usize) -> Vec<usize> {
        let (at, len) = (self.at, self.after.len());
        (at..=len)
            .filter(|&c| {
                stride <= 1
                    || c < at + 4
                    || c + 4 > len
                    || (c - at) % stride == 0
                    || self.entry_ends.iter().any(|&e| e.abs_diff(c) <= 1)
            })
            .collect()
    }
}

pub fn run(ctx: &Ctx) -> Row {
    let mut row = Row::new("torn");
    let dir = super::temp_dir("torn");
    let append = match write_files(&ctx.tools, dir.path()) {
        Ok(a) => a,
        Err(e) => {
            row.fail(e);
            return row;
        }
    };
    let expected_before = match datafile::parse_tasks(&append.before) {
        Ok(t) => t,
        Err(e) => {
            row.fail(format!("the server's own file: {e}"));
            return row;
        }
    };
    let appended: Vec<Value> = match datafile::parse_tasks(&append.after) {
        Ok(t) => t[expected_before.len()..].to_vec(),
        Err(e) => {
            row.fail(format!("the server's own file: {e}"));
            return row;
        }
    };
    let mut rng = ctx.rng("torn");
    let offsets = append.offsets(ctx.size(16, 1));
    let cases: Vec<Case> = offsets
        .iter()
        .flat_map(|&c| append.cases_at(c, &mut rng))
        .collect();
    row.note(format!(
        "{} tasks, then a batch of {} appended ({} bytes); {} cut offsets tried, {} files",
        expected_before.len(),
        appended.len(),
        append.after.len() - append.at,
        offsets.len(),
        cases.len()
    ));
    // Two servers at a time: the machine has two cores.
    let halves: Vec<Vec<Case>> = vec![
        cases.iter().step_by(2).cloned().collect(),
        cases.iter().skip(1).step_by(2).cloned().collect(),
    ];
    let parts: Vec<Row> = std::thread::scope(|s| {
        let handles: Vec<_> = halves
            .into_iter()
            .enumerate()
            .map(|(i, half)| {
                let (tools, before, appended) = (&ctx.tools, &expected_before, &appended);
                s.spawn(move || check_cases(tools, i, &half, before, appended))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a torn-file worker panicked"))
            .collect()
    });
    for part in parts {
        row.merge(part);
    }
    row
}

/// Has the real server write `before` and `after`.
fn write_files(tools: &Tools, dir: &Path) -> Result<Append, String> {
    let data = dir.join("source.json");
    let rt = super::runtime();
    let http = http::client();
    let mut files = Vec::new();
    for titles in [&BEFORE[..], &APPENDED[..]] {
        let server = Server::start(&tools.taskserver, &data)
            .map_err(|r| format!("server did not start: {r}"))?;
        for titulo in titles {
            let (status, body) = rt.block_on(post_task(
                &http,
                &server.url(),
                &json!({ "titulo": titulo }),
                None,
            ))?;
            if status != 201 {
                return Err(format!("POST {titulo:?} answered {status}: {body}"));
            }
        }
        let status = server.terminate().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("server exited with {status} on SIGTERM"));
        }
        files.push(std::fs::read(&data).map_err(|e| e.to_string())?);
    }
    let after = files.pop().expect("two files");
    let before = files.pop().expect("two files");
    Append::new(before, after)
}

fn check_cases(
    tools: &Tools,
    worker: usize,
    cases: &[Case],
    before: &[Value],
    appended: &[Value],
) -> Row {
    let mut row = Row::new("torn");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let http = http::client();
    let dir = super::temp_dir(&format!("torn-{worker}"));
    for case in cases {
        row.cases += 1;
        // A fresh directory per case: no side file of an earlier repair.
        let case_dir = dir.path().join(format!("case-{}", row.cases));
        let data = case_dir.join("tasks.json");
        if let Err(e) =
            std::fs::create_dir(&case_dir).and_then(|()| std::fs::write(&data, &case.bytes))
        {
            row.fail(format!("cannot write {}: {e}", data.display()));
            continue;
        }
        let server = match Server::start(&tools.taskserver, &data) {
            Ok(s) => s,
            Err(refused) => {
                row.fail(format!(
                    "{}: the server refused a file a crash can leave ({refused}); the file ends with {:?}",
                    case.label,
                    String::from_utf8_lossy(&case.bytes[case.bytes.len().saturating_sub(40)..])
                ));
                continue;
            }
        };
        match datafile::read_tasks(&data) {
            Ok(tasks) => {
                row.file_checked(Ok(()));
                let kept_before = tasks.len() >= before.len() && tasks[..before.len()] == *before;
                row.check(kept_before, || {
                    format!(
                        "{}: the {} earlier tasks were not all kept as they were",
                        case.label,
                        before.len()
                    )
                });
                let rest = &tasks[before.len().min(tasks.len())..];
                row.check(rest == &appended[..case.kept], || {
                    format!(
                        "{}: kept {} appended tasks, expected the {} complete before the cut",
                        case.label,
                        rest.len(),
                        case.kept
                    )
                });
                match rt.block_on(get_tasks(&http, &server.url())) {
                    Ok(listed) => row.check(listed.len() == tasks.len(), || {
                        format!(
                            "{}: GET /tareas lists {} tasks, the file {}",
                            case.label,
                            listed.len(),
                            tasks.len()
                        )
                    }),
                    Err(e) => row.fail(format!("{}: {e}", case.label)),
                }
            }
            Err(e) => row.file_checked(Err(format!("{}: after start-up: {e}", case.label))),
        }
        match server.terminate() {
            Ok(status) => row.check(status.success(), || {
                format!("{}: exit {status} on SIGTERM", case.label)
            }),
            Err(e) => row.fail(format!("{}: {e}", case.label)),
        }
        let _ = std::fs::remove_dir_all(&case_dir);
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append() -> Append {
        let before = b"[\n{\"id\":1,\"titulo\":\"a]\"}\n]\n".to_vec();
        let after =
            b"[\n{\"id\":1,\"titulo\":\"a]\"},\n{\"id\":2,\"titulo\":\"b\"},\n{\"id\":3,\"titulo\":\"c\"}\n]\n"
                .to_vec();
        Append::new(before, after).unwrap()
    }

    #[test]
    fn finds_where_the_append_and_its_entries_end() {
        let a = append();
        assert_eq!(&a.after[a.at..a.at + 3], b",\n{");
        let ends: Vec<&[u8]> = a.entry_ends.iter().map(|&e| &a.after[e - 2..e]).collect();
        assert_eq!(ends, vec![&b"\"}"[..], b"\"}"]);
        assert!(Append::new(b"[]".to_vec(), b"[]".to_vec()).is_err());
    }

    #[test]
    fn cases_cover_every_offset_and_count_whole_entries() {
        let a = append();
        let mut rng = crate::seeded(7);
        let all = a.offsets(1);
        assert_eq!(all.len(), a.after.len() - a.at + 1);
        let whole = a.cases_at(a.after.len(), &mut rng);
        assert_eq!(whole[0].bytes, a.after);
        assert_eq!(whole[0].kept, 2);
        let first = a.cases_at(a.at + 1, &mut rng);
        assert_eq!(first[0].kept, 0);
        let overwrite = first
            .iter()
            .find(|c| c.label.starts_with("in-place"))
            .unwrap();
        assert!(
            overwrite.bytes.ends_with(b"},]\n"),
            "{:?}",
            String::from_utf8_lossy(&overwrite.bytes)
        );
        for case in a.cases_at(a.at + 10, &mut rng) {
            let significant = case
                .bytes
                .iter()
                .rev()
                .find(|b| !matches!(**b, b' ' | b'\t' | b'\n' | b'\r' | 0));
            assert_ne!(significant, Some(&b']'), "{}", case.label);
        }
        assert!(a.offsets(16).len() < all.len());
    }
}
