//! Reading the data file: a JSON array of [`Record`]s.
//!
//! One scanner serves both start-up (the whole file, from its first byte) and
//! catching up with another writer (only the bytes after the last entry we
//! know). It accepts any valid JSON formatting, and it tells apart the two
//! ways a file can be invalid:
//!
//! - **Torn**: what a crash in the middle of an append leaves. Appends write
//!   `,\n{task}\n...]\n` over the closing `\n]\n` after the last entry, and
//!   a disk that loses power may keep any part of those bytes: a prefix, or
//!   any of their sectors in any order, with zeros or garbage where the data
//!   never arrived, after or around what is left of the old closing bytes.
//!   Everything before the append is intact (it was synced, and a write to
//!   part of a sector leaves the rest of it alone). So a crash leaves the
//!   valid entries, then bytes that are all of one append: whatever
//!   complete tasks they hold come after the last valid entry, with larger,
//!   increasing ids, and from one commit, so with one `creada_en` (a commit
//!   stamps all its tasks at once; in cluster mode they carry their Raft
//!   position instead, and the log redoes what a repair drops). Torn tails
//!   are repaired: cut after the last valid entry, the dropped bytes kept
//!   in a side file. Tasks in them were never acknowledged: an
//!   acknowledgement waits for the sync.
//! - **Broken**: anything else: no array, a bad entry followed by tasks of
//!   other commits or with smaller ids, a well-formed object that is not a
//!   task (a string id, say). No crash produces it, so only a person can fix
//!   it; the server refuses to touch it.

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
    /// Just after the last known entry, whose id is `last` (or just after
    /// the `[` of an empty array, when `None`).
    AfterEntry { last: Option<u64> },
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
        Start::AfterEntry { last } => last.is_none(),
    };
    let mut last_id = match start {
        Start::AfterEntry { last: Some(id) } => id,
        _ => 0,
    };
    let mut last = None;
    let mut good_end = pos;
    let fail = |last, last_id, at: usize, good_end: usize, message: String| {
        if one_commits_leftovers(&buf[good_end..], last_id) {
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
                return fail(last, last_id, pos, good_end, reason);
            }
            Some(b']') => {
                let after = skip_ws(buf, pos + 1);
                if after != buf.len() {
                    // The old closing bytes, then what reached the disk of
                    // an append (or zeros where it did not).
                    let msg = "unexpected content after the closing `]`".to_owned();
                    return fail(last, last_id, after, good_end, msg);
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
                return fail(last, last_id, pos, good_end, msg);
            }
        }
        if buf.get(pos).is_some_and(|b| *b != b'{') {
            // serde would read a record from an array too; only objects are tasks.
            let msg = "expected a task: a JSON object `{...}`".to_owned();
            return fail(last, last_id, pos, good_end, msg);
        }
        let mut stream = Deserializer::from_slice(&buf[pos..]).into_iter::<Record>();
        match stream.next() {
            Some(Ok(record)) => {
                let end = pos + stream.byte_offset();
                last_id = record.id;
                sink(Parsed { record, start: pos });
                last = Some(pos..end);
                pos = end;
                good_end = end;
                first = false;
            }
            None => {
                let reason = "the file ends where a task should be".to_owned();
                return fail(last, last_id, pos, good_end, reason);
            }
            Some(Err(e)) => {
                let at = offset_in(buf, pos, e.line(), e.column());
                let msg = format!("not a valid task: {}", message_of(&e));
                return fail(last, last_id, at, good_end, msg);
            }
        }
    }
}

/// Whether `rest`, the bytes after the last valid entry (whose id is
/// `last_id`), can be what a crash left of one append (see the module
/// docs). Every `{` in it is tried: a complete task must come after the
/// last valid one, with a larger id than every task before it, and share
/// the commit of the others (one `creada_en`, or Raft positions); any
/// other well-formed object with an `id` is a person's. Fragments, zeros,
/// garbage and closing brackets are what a crash leaves.
fn one_commits_leftovers(rest: &[u8], last_id: u64) -> bool {
    let mut previous_id = last_id;
    let mut commit: Option<Commit> = None;
    let mut at = 0;
    while let Some(i) = rest[at..].iter().position(|b| *b == b'{') {
        let from = at + i;
        let mut tasks = Deserializer::from_slice(&rest[from..]).into_iter::<Record>();
        if let Some(Ok(task)) = tasks.next() {
            let this = Commit::of(&task);
            let same = match (&commit, &this) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(seen), Some(this)) => seen == this,
            };
            if task.id <= previous_id || !same {
                return false;
            }
            previous_id = task.id;
            commit = this;
            at = from + tasks.byte_offset();
            continue;
        }
        let mut values = Deserializer::from_slice(&rest[from..]).into_iter::<serde_json::Value>();
        if let Some(Ok(value)) = values.next() {
            if value.get("id").is_some() && !ours_cut_short(&value) {
                return false;
            }
        }
        at = from + 1;
    }
    true
}

/// Whether a well-formed object that is not a task can still be one of
/// our entries cut short, closed by a stray `}` of garbage: we write `id`
/// first and `titulo` second, so only `{"id":N}` can be.
fn ours_cut_short(value: &serde_json::Value) -> bool {
    value
        .as_object()
        .is_some_and(|fields| fields.len() == 1 && fields.get("id").is_some_and(|id| id.is_u64()))
}

/// What the tasks of one commit share.
#[derive(Debug, PartialEq, Eq)]
enum Commit {
    /// A single server's commit: its moment.
    Stamped(String),
    /// A cluster node's apply: every task has its log position.
    Replicated,
}

impl Commit {
    fn of(task: &Record) -> Option<Commit> {
        match (&task.raft, &task.creada_en) {
            (Some(_), _) => Some(Commit::Replicated),
            (None, Some(moment)) => Some(Commit::Stamped(moment.clone())),
            (None, None) => None,
        }
    }
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

    /// A third task, committed at another moment than T1 and T2.
    const T3_LATER: &str = r#"{"id":3,"titulo":"c","descripcion":null,"completada":false,"cliente":null,"creada_en":"2026-01-02T00:00:00.000Z"}"#;

    #[test]
    fn files_no_crash_produces_are_broken_with_a_place() {
        let cases = [
            (r#"{"id":1}"#.to_owned(), 1),
            // A bad entry, then tasks of two commits: a person's edit.
            (
                format!("[\n{T1},\n{{\"id\":2,\"titulo\":}},\n{T2},\n{T3_LATER}\n]\n"),
                3,
            ),
            // A well-formed object with an id that is not a task.
            (
                format!("[\n{T1},\n{}\n]\n", T2.replace("\"id\":2", "\"id\":\"2\"")),
                3,
            ),
            (
                format!("[\n{T1},\n{{\"id\":\"2\",\"titulo\":\"x\"}}\n]\n"),
                3,
            ),
            // A task again after junk: its id is not larger.
            (format!("[\n{T1},\n{T2} x\n{T1}\n]\n"), 3),
            // Not one of ours cut short: a second field, or an id we never write.
            (
                format!("[\n{T1},\n{{\"id\":2,\"completada\":true}}\n]\n"),
                3,
            ),
            // A task written by hand (no creada_en) after junk.
            (
                format!("[\n{T1},\n@@\n{{\"id\":5,\"titulo\":\"a mano\"}}\n]\n"),
                3,
            ),
        ];
        for (text, line) in cases {
            let err = scan_all(text.as_bytes(), Start::File).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
        }
    }

    /// A disk that loses power may keep any of an append's sectors, in any
    /// order, with zeros or garbage for the rest: whatever it keeps after
    /// the last synced entry is torn, and the repair keeps every entry
    /// before it.
    #[test]
    fn what_a_disk_keeps_of_an_append_in_any_order_is_torn() {
        let before = file(&[T1]);
        let after = file(&[T1, T2]);
        let at = before.len() - "\n]\n".len();
        let (old_tail, appended) = (&before[at..], &after[at..]);
        let mid = appended.len() / 2;
        let zeros = |n: usize| "\0".repeat(n);
        let cases = [
            // The old closing bytes, zeros, then the append's second half
            // (its own closing `]` included).
            format!(
                "{}{old_tail}{}{}",
                &before[..at],
                zeros(mid - old_tail.len()),
                &appended[mid..]
            ),
            // The append's first half, then garbage.
            format!("{}{}#\u{7f}x{{", &before[..at], &appended[..mid]),
            // Only the old closing bytes, and more of them.
            format!("{}\n]\n]", &before[..at]),
            format!("{}\n]\n\0x", &before[..at]),
            // An empty array's closing `]`, zeros, then part of the first task.
            format!("[]\n{}{}", zeros(40), &T2[20..]),
            // A task of the append, whole, behind a lost sector; and two.
            format!("{}{old_tail}{}\n{T2}\n]\n", &before[..at], zeros(30)),
            format!("[]\n{}{T1},\n{T2}\n]\n", zeros(10)),
            format!("{},\n[3, \"t\"]\n]\n", &before[..at]),
            // Cut after the new entry's id, then a stray `}` of garbage.
            format!("{},\n{{\"id\":2}}\u{6}x", &before[..at]),
        ];
        for text in cases {
            let (s, entries) = scan_all(text.as_bytes(), Start::File)
                .unwrap_or_else(|e| panic!("{text:?} refused: {e}"));
            let Tail::Torn { good_end, .. } = s.tail else {
                panic!("{text:?}: {:?}", s.tail);
            };
            let kept = if text.starts_with("[]") { 0 } else { 1 };
            assert_eq!(entries.len(), kept, "{text:?}");
            assert!(good_end <= at, "{text:?}: the cut keeps only synced bytes");
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
        let (_, entries) = scan_all(
            &full.as_bytes()[from..],
            Start::AfterEntry { last: Some(1) },
        )
        .unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].record.id, 2);
        let (s, entries) = scan_all(b"\n]\n", Start::AfterEntry { last: Some(1) }).unwrap();
        assert!(entries.is_empty());
        assert_eq!(s.tail, Tail::Closed { close: 1 });
    }
}
