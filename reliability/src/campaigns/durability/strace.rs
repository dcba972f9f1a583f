//! Reading what `strace` recorded of the server: the system calls the
//! durability audit needs, with their start and end times and their bytes.
//!
//! The trace is taken with `strace -ff -o PREFIX --timestamps=unix,us -T -yy
//! -xx -s 1048576 -e trace=...`: one file per thread (so no call is split
//! into "unfinished" and "resumed" lines), each line
//!
//! ```text
//! 1733000000.123456 pwrite64(7<\x2f\x74\x6d\x70...>, "\x2c\x0a...", 183, 3) = 183 <0.000021>
//! 1733000000.123502 fdatasync(7<\x2f\x74\x6d\x70...>) = 0 <0.000390>
//! 1733000000.124011 writev(9<TCP:[127.0.0.1:9000->127.0.0.1:40112]>, [{iov_base="\x48...", iov_len=190}], 1) = 190 <0.000015>
//! ```
//!
//! with the file (its path in hex too) or socket each descriptor names
//! (`-yy`) and every byte in hex (`-xx`). The times strace records bound the real ones from outside:
//! a call starts no earlier than its recorded start and ends no later than
//! its recorded end, so an order the audit finds between recorded times
//! holds between the real ones too.

use std::path::Path;

/// One system call of the trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// `pwrite64`, `fdatasync`, `writev`, ...
    pub name: String,
    /// What its descriptor names: a path, or `TCP:[...]` for a socket.
    pub target: String,
    /// Recorded start, in microseconds since the epoch.
    pub start_us: u64,
    /// Recorded end: the start plus the time strace measured.
    pub end_us: u64,
    /// The bytes of its string arguments, concatenated (a write's data).
    pub bytes: Vec<u8>,
    /// What it returned (`-1` for an error).
    pub ret: i64,
}

impl Call {
    /// A call on a socket.
    pub fn on_socket(&self) -> bool {
        self.target.starts_with("TCP")
    }
}

/// Every call in the trace files `PREFIX.*`, ordered by start.
pub fn read_trace(prefix: &Path) -> Result<Vec<Call>, String> {
    let dir = prefix.parent().ok_or("the trace prefix has no directory")?;
    let stem = prefix
        .file_name()
        .and_then(|s| s.to_str())
        .ok_or("the trace prefix has no file name")?;
    let mut calls = Vec::new();
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(&format!("{stem}.")) {
            continue;
        }
        let text = std::fs::read_to_string(entry.path())
            .map_err(|e| format!("cannot read {name}: {e}"))?;
        for line in text.lines() {
            if let Some(call) = parse_line(line) {
                calls.push(call);
            }
        }
    }
    calls.sort_by_key(|c| c.start_us);
    Ok(calls)
}

/// One line of a trace file; `None` for what is not a finished call
/// (signals, `+++ exited +++`, a call strace could not decode).
pub fn parse_line(line: &str) -> Option<Call> {
    let (time, rest) = line.split_once(' ')?;
    let start_us = parse_time(time)?;
    let open = rest.find('(')?;
    let name = rest[..open].to_owned();
    let args = &rest[open + 1..];
    let target = args
        .find('<')
        .and_then(|lt| {
            let after = &args[lt + 1..];
            let end = [">, ", ">)"].iter().filter_map(|s| after.find(s)).min()?;
            // `-xx` writes paths in hex too; sockets stay as text.
            let raw = &after[..end];
            Some(if raw.starts_with("\\x") {
                String::from_utf8_lossy(&unhex(raw)).into_owned()
            } else {
                raw.to_owned()
            })
        })
        .unwrap_or_default();
    // `) = 183 <0.000021>` at the end of the line.
    let (call_part, duration) = rest.rsplit_once(" <")?;
    let duration_us = parse_time(duration.strip_suffix('>')?)?;
    let (_, ret) = call_part.rsplit_once(") = ")?;
    let ret = ret.split_whitespace().next()?.parse().ok()?;
    Some(Call {
        name,
        target,
        start_us,
        end_us: start_us + duration_us,
        bytes: strings(args),
        ret,
    })
}

/// `1733000000.123456` as microseconds.
fn parse_time(text: &str) -> Option<u64> {
    let (secs, frac) = text.split_once('.')?;
    let frac = format!("{frac:0<6}");
    Some(secs.parse::<u64>().ok()? * 1_000_000 + frac.get(..6)?.parse::<u64>().ok()?)
}

/// The decoded bytes of every `"\xNN..."` string in `args`, concatenated.
fn strings(args: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut rest = args;
    while let Some(q) = rest.find("\"\\x") {
        let body = &rest[q + 1..];
        let end = body.find('"').unwrap_or(body.len());
        bytes.extend(unhex(&body[..end]));
        rest = body.get(end + 1..).unwrap_or("");
    }
    bytes
}

/// `\x2f\x74...` as bytes.
fn unhex(mut hex: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(hex.len() / 4);
    while let Some(pair) = hex.strip_prefix("\\x") {
        if let Some(byte) = pair.get(..2).and_then(|h| u8::from_str_radix(h, 16).ok()) {
            bytes.push(byte);
        }
        hex = pair.get(2..).unwrap_or("");
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_writes_syncs_and_socket_writes() {
        let write = parse_line(
            r#"1733000000.123456 pwrite64(7<\x2f\x74\x2f\x64>, "\x2c\x0a\x7b\x7d", 4, 3) = 4 <0.000021>"#,
        )
        .unwrap();
        assert_eq!(write.name, "pwrite64");
        assert_eq!(write.target, "/t/d");
        assert_eq!(write.bytes, b",\n{}");
        assert_eq!(
            (write.start_us, write.end_us),
            (1_733_000_000_123_456, 1_733_000_000_123_477)
        );
        assert_eq!(write.ret, 4);

        let sync = parse_line(r"1733000000.200000 fdatasync(7<\x2f\x74>) = 0 <0.000390>").unwrap();
        assert_eq!(
            (sync.name.as_str(), sync.end_us - sync.start_us),
            ("fdatasync", 390)
        );

        let answer = parse_line(
            r#"1733000000.300000 writev(9<TCP:[127.0.0.1:9000->127.0.0.1:40112]>, [{iov_base="\x48\x54", iov_len=2}, {iov_base="\x7b\x7d", iov_len=2}], 2) = 4 <0.000015>"#,
        )
        .unwrap();
        assert!(answer.on_socket());
        assert_eq!(answer.target, "TCP:[127.0.0.1:9000->127.0.0.1:40112]");
        assert_eq!(answer.bytes, b"HT{}");
    }

    #[test]
    fn what_is_not_a_finished_call_is_skipped() {
        assert!(parse_line("1733000000.1 +++ exited with 0 +++").is_none());
        assert!(parse_line("1733000000.1 --- SIGTERM {si_signo=SIGTERM} ---").is_none());
    }
}
