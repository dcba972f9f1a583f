//! Reading the data file: a JSON array of [`Record`]s.
//!
//! One scanner serves both start-up (the whole file, from its first byte) and
//! catching up with another writer (only the bytes after the last entry we
//! know). It accepts any valid JSON formatting, and it tells apart the two
//! ways a file can be invalid:
//!
//! - **Torn**: what a crash in the middle of an append leaves. Appends write
//!   `,\n{task}\n...]\n` over the closing `\n]\n` after the last entry, so
//!   a crash leaves the valid entries, then a prefix of that text, then
//!   perhaps what is left of the old closing bytes, or zeros or stale bytes
//!   where the file system extended the file but the data never arrived.
//!   Such a tail has no complete task after the broken part, and it does not
//!   end with a closing `]` unless that `]` is one of three things: a byte
//!   inside the cut-off entry (a title such as `"[x]"` cut after its `]`),
//!   the old closing `]` after an append that wrote only its comma
//!   (`},]`), or the append's own last `]` followed only by zeros. Torn
//!   tails are repaired; the repair drops no complete entry.
//! - **Broken**: anything else (bad JSON in the middle, an object instead of
//!   an array, a task with a string id, ...). No crash produces it, so only a
//!   person can fix it; the server refuses to touch it.

use serde_json::Deserializer;

use crate::task::Record;

/// One entry of the array and where its bytes are.
#[derive(Debug)]
pub struct Parsed {
    /// The entry itself.
    pub record: Record,
    /// Offset of its `{` in the scanned buffer.
    pub start: usize,
}

/// How the scanned bytes end.
#[derive(Debug, PartialEq, Eq)]
pub enum Tail {
    /// Nothing but whitespace: a new or emptied file, to be read as `[]`.
    Empty,
    /// The array is closed by the `]` at this offset.
    Closed { close: usize },
    /// A crash cut an append short. Everything from `good_end` on is dropped
    /// by the repair; `reason` says what the scanner found there.
    Torn { good_end: usize, reason: String },
}

/// The result of a scan; the entries themselves went to the caller's sink.
#[derive(Debug)]
pub struct Scan {
    /// Offset of the opening `[` (start-up scans only).
    pub open: Option<usize>,
    /// Where the last complete entry is, if any.
    pub last: Option<std::ops::Range<usize>>,
    /// How the bytes end.
    pub tail: Tail,
}

/// Where a file that no crash could have produced is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct Broken {
    /// 1-based line of the problem.
    pub line: usize,
    /// 1-based column (in bytes) of the problem.
    pub column: usize,
    /// What is wrong there.
    pub message: String,
}

/// Where the scan starts.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// At the first byte of the file: whitespace, then `[`.
    File,
    /// Just after the last known entry, or just after `[` when `empty`.
    AfterEntry { empty: bool },
}

/// Scans `buf` from `start`, handing each complete entry to `sink` in file
/// order (streaming, so a big file is never held as parsed records). Offsets
/// are indexes into `buf`.
pub fn scan(buf: &[u8], start: Start, mut sink: impl FnMut(Parsed)) -> Result<Scan, Broken> {
    let mut pos = 0;
    let mut open = None;
    let mut first = match start {
        Start::File => {
            pos = skip_ws(buf, 0);
            if pos == buf.len() {
                return Ok(Scan {
                    open,
                    last: None,
                    tail: Tail::Empty,
                });
            }
            if buf[pos] != b'[' {
                return Err(broken(
                    buf,
                    pos,
                    "the file must be a JSON array of tasks and start with `[`".into(),
                ));
            }
            open = Some(pos);
            pos += 1;
            true
        }
        Start::AfterEntry { empty } => empty,
    };
    let mut last = None;
    let mut good_end = pos;
    let fail = |last, at: usize, good_end: usize, message: String| {
        if looks_torn(&buf[good_end..]) {
            Ok(Scan {
                open,
                last,
                tail: Tail::Torn {
                    good_end,
                    reason: message,
                },
            })
        } else {
            Err(broken(buf, at, message))
        }
    };
    loop {
        pos = skip_ws(buf, pos);
        match buf.get(pos) {
            None => {
                let reason = "the file ends before the array is closed".to_owned();
                return fail(last, pos, good_end, reason);
            }
            Some(b']') => {
                let after = skip_ws(buf, pos + 1);
                if after != buf.len() && buf[after..].iter().all(|b| *b == 0 || is_ws(*b)) {
                    // The append's last bytes arrived, the file grew past
                    // them, and zeros fill the rest: a crash's leftovers.
                    return Ok(Scan {
                        open,
                        last,
                        tail: Tail::Torn {
                            good_end,
                            reason: "zero bytes after the closing `]`".into(),
                        },
                    });
                }
                if after != buf.len() {
                    let msg = "unexpected content after the closing `]`".to_owned();
                    return Err(broken(buf, after, msg));
                }
                return Ok(Scan {
                    open,
                    last,
                    tail: Tail::Closed { close: pos },
                });
            }
            Some(b',') if !first => pos = skip_ws(buf, pos + 1),
            Some(_) if first => {}
            Some(_) => {
                let msg = "expected `,` or `]` after a task".to_owned();
                return fail(last, pos, good_end, msg);
            }
        }
        if buf.get(pos).is_some_and(|b| *b != b'{') {
            // serde would read a record from an array too; only objects are tasks.
            let msg = "expected a task: a JSON object `{...}`".to_owned();
            return fail(last, pos, good_end, msg);
        }
        let mut stream = Deserializer::from_slice(&buf[pos..]).into_iter::<Record>();
        match stream.next() {
            Some(Ok(record)) => {
                let end = pos + stream.byte_offset();
                sink(Parsed { record, start: pos });
                last = Some(pos..end);
                pos = end;
                good_end = end;
                first = false;
            }
            None => {
                let reason = "the file ends where a task should be".to_owned();
                return fail(last, pos, good_end, reason);
            }
            Some(Err(e)) => {
                let at = offset_in(buf, pos, e.line(), e.column());
                let msg = format!("not a valid task: {}", message_of(&e));
                return fail(last, at, good_end, msg);
            }
        }
    }
}

/// Whether the bytes after the last good entry look like a crash's leftovers
/// (see the module docs): no complete task after the first line, and no
/// closing `]` at the end but one a crash can leave there.
fn looks_torn(rest: &[u8]) -> bool {
    let complete_task_follows = rest.split(|b| *b == b'\n').skip(1).any(|line| {
        let line = trim(line);
        line.first() == Some(&b'{') && serde_json::from_slice::<Record>(line).is_ok()
    });
    if complete_task_follows {
        return false;
    }
    // Zeros and blanks at the very end are where data never arrived.
    let end = rest
        .iter()
        .rposition(|b| !is_ws(*b) && *b != 0)
        .map_or(0, |i| i + 1);
    let rest = &rest[..end];
    if rest.last() != Some(&b']') {
        return true;
    }
    // The old closing `]` after an append that wrote only its comma...
    // (The first entry of an array has no comma before it.)
    let trimmed = trim_start(rest);
    let entry = trimmed.strip_prefix(b",").map_or(trimmed, trim_start);
    if entry == b"]" {
        return true;
    }
    // ...or a `]` inside the entry the crash cut short: the entry is an
    // unfinished JSON value (a syntax-only read of it runs out of bytes).
    entry.first() == Some(&b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(entry).is_err_and(|e| e.is_eof())
}

fn trim_start(mut bytes: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = bytes {
        if !is_ws(*first) {
            break;
        }
        bytes = rest;
    }
    bytes
}

fn trim(mut line: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = line {
        if is_ws(*first) || *first == b',' {
            line = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = line {
        if is_ws(*last) || *last == b',' {
            line = rest;
        } else {
            break;
        }
    }
    line
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The offset of the first byte at or after `pos` that is not JSON whitespace.
pub fn skip_ws(buf: &[u8], mut pos: usize) -> usize {
    while pos < buf.len() && is_ws(buf[pos]) {
        pos += 1;
    }
    pos
}

/// A [`Broken`] at byte `at` of `buf`, with its line and column.
pub fn broken(buf: &[u8], at: usize, message: String) -> Broken {
    let at = at.min(buf.len());
    let line_start = buf[..at]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    Broken {
        line: 1 + buf[..at].iter().filter(|b| **b == b'\n').count(),
        column: 1 + at - line_start,
        message,
    }
}

/// Turns serde_json's line and column, counted from `base`, into an offset.
fn offset_in(buf: &[u8], base: usize, line: usize, column: usize) -> usize {
    let mut pos = base;
    for _ in 1..line {
        match buf[pos..].iter().position(|b| *b == b'\n') {
            Some(i) => pos += i + 1,
            None => return buf.len(),
        }
    }
    (pos + column.saturating_sub(1)).min(buf.len())
}

/// serde_json's message without its " at line L column C", which counts
/// from the entry rather than from the file.
fn message_of(e: &serde_json::Error) -> String {
    let full = e.to_string();
    match full.rsplit_once(" at line ") {
        Some((message, _)) => message.to_owned(),
        None => full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: &str = r#"{"id":1,"titulo":"a","descripcion":null,"completada":false,"cliente":null,"creada_en":"2026-01-01T00:00:00.000Z"}"#;
    const T2: &str = r#"{"id":2,"titulo":"b","descripcion":null,"completada":false,"cliente":null,"creada_en":"2026-01-01T00:00:00.000Z"}"#;

    /// Scans and collects the entries.
    fn scan_all(buf: &[u8], start: Start) -> Result<(Scan, Vec<Parsed>), Broken> {
        let mut entries = Vec::new();
        let s = scan(buf, start, |p| entries.push(p))?;
        Ok((s, entries))
    }

    fn file(tasks: &[&str]) -> String {
        if tasks.is_empty() {
            return "[]\n".into();
        }
        format!("[\n{}\n]\n", tasks.join(",\n"))
    }

    #[test]
    fn reads_our_own_format_and_any_other_formatting() {
        let (s, entries) = scan_all(file(&[T1, T2]).as_bytes(), Start::File).unwrap();
        assert_eq!(entries.len(), 2);
        assert!(matches!(s.tail, Tail::Closed { .. }));
        let pretty = serde_json::to_string_pretty(
            &serde_json::from_str::<serde_json::Value>(&file(&[T1, T2])).unwrap(),
        )
        .unwrap();
        let (_, entries) = scan_all(pretty.as_bytes(), Start::File).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].record.titulo, "b");
    }

    #[test]
    fn empty_and_whitespace_files_are_empty() {
        assert_eq!(scan_all(b"", Start::File).unwrap().0.tail, Tail::Empty);
        assert_eq!(scan_all(b" \n", Start::File).unwrap().0.tail, Tail::Empty);
        let (s, _) = scan_all(b"[]", Start::File).unwrap();
        assert_eq!(s.tail, Tail::Closed { close: 1 });
    }

    #[test]
    fn every_cut_of_an_append_is_torn_and_keeps_the_old_entries() {
        let before = file(&[T1]);
        let after = file(&[T1, T2]);
        let appended_from = before.len() - "\n]\n".len();
        for cut in appended_from..after.len() - 1 {
            for garbage in [&b""[..], b"\0\0\0\0", b"x7#\xff{"] {
                let mut bytes = after.as_bytes()[..cut].to_vec();
                bytes.extend_from_slice(garbage);
                let (s, entries) = scan_all(&bytes, Start::File)
                    .unwrap_or_else(|e| panic!("cut at {cut} with {garbage:?} refused: {e}"));
                assert!(
                    matches!(s.tail, Tail::Torn { .. } | Tail::Closed { .. }),
                    "cut at {cut}"
                );
                assert!(!entries.is_empty(), "cut at {cut} lost the old entry");
                assert_eq!(entries[0].record.id, 1);
            }
        }
    }

    #[test]
    fn a_closing_bracket_a_crash_can_leave_is_torn_too() {
        const BRACKETS: &str = r#"{"id":2,"titulo":"[x] y","descripcion":null,"completada":false,"cliente":null,"creada_en":"2026-01-01T00:00:00.000Z"}"#;
        let before = file(&[T1]);
        let after = file(&[T1, BRACKETS]);
        let at = before.len() - "\n]\n".len();
        let cut = &after[..after.find("[x]").unwrap() + 3];
        let cases = [
            // Cut right after a `]` inside the new entry's title, with and
            // without zeros where the data never arrived.
            (cut.to_owned(), 1),
            (format!("{cut}\0\0\0"), 1),
            // Only the append's comma reached the old closing bytes.
            (format!("{},{}", &before[..at], &before[at + 1..]), 1),
            // The same in the first entry of the array: no comma before it.
            (
                format!("[\n{}", &BRACKETS[..BRACKETS.find("[x]").unwrap() + 3]),
                0,
            ),
            // Everything arrived, then zeros where the file grew further.
            (format!("{after}\0\0\0\0"), 2),
            (format!("{}\0", &after[..after.len() - 1]), 2),
        ];
        for (text, kept) in cases {
            let (s, entries) = scan_all(text.as_bytes(), Start::File)
                .unwrap_or_else(|e| panic!("{text:?} refused: {e}"));
            assert!(
                matches!(s.tail, Tail::Torn { .. }),
                "{text:?}: {:?}",
                s.tail
            );
            assert_eq!(entries.len(), kept, "{text:?}");
        }
    }

    #[test]
    fn files_no_crash_produces_are_broken_with_a_place() {
        let cases = [
            (r#"{"id":1}"#.to_owned(), 1),
            (format!("[\n{T1},\n{{\"id\":2,\"titulo\":}},\n{T2}\n]\n"), 3),
            (
                format!("[\n{T1},\n{}\n]\n", T2.replace("\"id\":2", "\"id\":\"2\"")),
                3,
            ),
            (format!("[\n{T1}\n]\n]"), 4),
            (format!("[\n{T1},\n{T1} x\n]\n"), 3),
            (format!("[\n{T1},\n[3, \"t\"]\n]\n"), 3),
            // A closing `]` no crash leaves: after a whole bad entry, or
            // followed by something other than zeros.
            (
                format!("[\n{T1},\n{{\"id\":\"2\",\"titulo\":\"x\"}}\n]\n"),
                3,
            ),
            (format!("[\n{T1}\n]\n\0x"), 4),
        ];
        for (text, line) in cases {
            let err = scan_all(text.as_bytes(), Start::File).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
        }
    }

    #[test]
    fn a_broken_middle_is_not_mistaken_for_a_torn_tail() {
        // Bad entry in the middle, file cut at the end: still broken, because
        // complete tasks follow the bad one.
        let text = format!("[\n{T1},\n{{\"id\":2,,\n{T2},\n{T2}");
        let err = scan_all(text.as_bytes(), Start::File).unwrap_err();
        assert_eq!(err.line, 3);
    }

    #[test]
    fn continues_after_a_known_entry() {
        let full = file(&[T1, T2]);
        let from = full.find(T1).unwrap() + T1.len();
        let (_, entries) =
            scan_all(&full.as_bytes()[from..], Start::AfterEntry { empty: false }).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].record.id, 2);
        let (s, entries) = scan_all(b"\n]\n", Start::AfterEntry { empty: false }).unwrap();
        assert!(entries.is_empty());
        assert_eq!(s.tail, Tail::Closed { close: 1 });
    }
}
