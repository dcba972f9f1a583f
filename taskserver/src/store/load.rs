//! Loading a whole data file into an [`Index`]: in pieces when it is a file
//! we could have written, whole when only the whole explains it.
//!
//! A file of a million tasks is 220 MB; reading it in [`PIECE`]-sized pieces
//! means the file is never held in memory next to the index built from it
//! (peak memory at start-up 500 -> 300 MB). A file a person edited (ids out
//! of order), or one that is broken, is read whole, so that it can be sorted
//! or refused with the line and column of the problem.

use std::io;

use super::file::DataFile;
use super::index::Index;
use super::scan::{self, Parsed, Start, Tail};

/// Bytes read at a time when loading a file.
pub const PIECE: usize = 8 << 20;

/// A data file loaded by [`load_in_pieces`], ready for
/// [`FileState::settle`](super::state::FileState::settle).
pub struct Loaded {
    /// Every complete task.
    pub index: Index,
    /// Offset of the last complete entry, or of the `[` of an empty array.
    pub anchor_at: u64,
    /// Its bytes.
    pub anchor: Vec<u8>,
    /// The last bytes read, from file offset `rest_at` to the end of the
    /// file; they hold the end of the anchor, or start just after it.
    pub rest: Vec<u8>,
    /// Where `rest` starts in the file.
    pub rest_at: u64,
    /// How `rest` ends: closed, or torn by a crash (offsets in `rest`).
    pub tail: Tail,
}

/// Loads the file `piece` bytes at a time, carrying an unfinished entry over
/// to the next piece, when it is a file we could have written: an array of
/// tasks with increasing ids, closed, or with its last entry torn by a crash
/// (the scan of the last piece tells the same torn tail as a scan of the
/// whole file would, since both go on from the same complete entry).
/// Returns `None` for anything else (empty, broken, ids out of order, a
/// piece ending in a way only the whole file explains): the caller then
/// reads the whole file, which sorts, creates or refuses it.
pub fn load_in_pieces(file: &dyn DataFile, len: u64, piece: usize) -> io::Result<Option<Loaded>> {
    let mut index = Index::with_capacity(len as usize / 160);
    // Unscanned bytes, starting at file offset `base`.
    let mut carry: Vec<u8> = Vec::new();
    let mut base = 0u64;
    let mut read_to = 0u64;
    let mut start = Start::File;
    let mut anchor: Option<(u64, Vec<u8>)> = None;
    loop {
        let n = piece.min((len - read_to) as usize);
        let old = carry.len();
        carry.resize(old + n, 0);
        file.read_exact_at(&mut carry[old..], read_to)?;
        read_to += n as u64;
        let mut sorted = true;
        let Ok(scan) = scan::scan(&carry, start, |p: Parsed| {
            sorted = sorted && index.push_increasing(&p.record);
        }) else {
            return Ok(None);
        };
        if !sorted {
            return Ok(None);
        }
        if let Some(open) = scan.open {
            anchor = Some((base + open as u64, b"[".to_vec()));
        }
        if let Some(last) = scan.last {
            anchor = Some((base + last.start as u64, carry[last].to_vec()));
        }
        match scan.tail {
            Tail::Closed { .. } | Tail::Torn { .. } if read_to == len => {
                let Some((anchor_at, anchor)) = anchor else {
                    return Ok(None);
                };
                return Ok(Some(Loaded {
                    index,
                    anchor_at,
                    anchor,
                    rest: carry,
                    rest_at: base,
                    tail: scan.tail,
                }));
            }
            // Only whitespace so far, before the `[`: read on.
            Tail::Empty if read_to < len => {}
            // The piece ended inside an entry, between two, or after the
            // closing `]` with more of the file to read: go on from the end
            // of the last complete entry (or of the `[`).
            Tail::Torn { .. } | Tail::Closed { .. } if read_to < len => {
                let Some((anchor_at, anchor)) = &anchor else {
                    return Ok(None);
                };
                let keep_from = (anchor_at + anchor.len() as u64 - base) as usize;
                carry.drain(..keep_from);
                base += keep_from as u64;
                start = Start::AfterEntry {
                    last: index.last_id(),
                };
            }
            _ => return Ok(None),
        }
    }
}

/// Builds the index of a whole file. Entries are streamed into the index;
/// a file whose ids are not increasing (edited by hand) is read a second
/// time and sorted, and one with a duplicate id is refused.
pub fn build_index(buf: &[u8]) -> Result<(Index, scan::Scan), scan::Broken> {
    // Our entries take about 200 bytes; a generous guess costs little.
    let mut index = Index::with_capacity(buf.len() / 160);
    let mut sorted = true;
    let scan = scan::scan(buf, Start::File, |p: Parsed| {
        sorted = sorted && index.push_increasing(&p.record);
    })?;
    if sorted {
        return Ok((index, scan));
    }
    let mut all: Vec<Parsed> = Vec::new();
    let scan = scan::scan(buf, Start::File, |p| all.push(p))?;
    all.sort_by_key(|p| p.record.id);
    let mut index = Index::default();
    for (i, p) in all.iter().enumerate() {
        if i > 0 && all[i - 1].record.id == p.record.id {
            let message = format!(
                "task id {} appears twice; ids must be unique: give one of them another id",
                p.record.id
            );
            let at = p.start.max(all[i - 1].start);
            return Err(scan::broken(buf, at, message));
        }
        index.push(&p.record);
    }
    Ok((index, scan))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::file::{Fs as _, OsFs};
    use crate::task::Record;

    /// A real file holding `bytes`, opened as the store opens its data file.
    fn file_with(bytes: &[u8]) -> std::sync::Arc<dyn DataFile> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tasks.json");
        std::fs::write(&path, bytes).unwrap();
        // The open file outlives its directory entry: enough for reading.
        OsFs.open(&path).unwrap()
    }

    fn record(id: u64, titulo: &str) -> Record {
        Record {
            id,
            titulo: titulo.into(),
            descripcion: Some("línea 1\nlínea 2, \"citada\"".into()),
            completada: id.is_multiple_of(2),
            cliente: Some("client1".into()),
            creada_en: Some("2026-11-23T10:00:00.000Z".into()),
            idempotency_key: Some(format!("run-{id}")),
            raft: None,
        }
    }

    fn ours(records: &[Record]) -> Vec<u8> {
        if records.is_empty() {
            return b"[]\n".to_vec();
        }
        let lines: Vec<String> = records
            .iter()
            .map(|r| String::from_utf8(r.file_json()).unwrap())
            .collect();
        format!("[\n{}\n]\n", lines.join(",\n")).into_bytes()
    }

    /// What a load found, in terms both paths can be compared in.
    #[derive(Debug, PartialEq, Eq)]
    struct Outcome {
        /// Every task's public JSON, in order.
        json: Vec<u8>,
        tasks: usize,
        anchor_at: u64,
        anchor: Vec<u8>,
        end: End,
    }

    #[derive(Debug, PartialEq, Eq)]
    enum End {
        /// The bytes after the anchor.
        Closed(Vec<u8>),
        /// Where the repair cuts the file, and why.
        Torn { at: u64, reason: String },
    }

    /// What the whole-file path makes of `buf`; `None` when it refuses it
    /// or finds it empty.
    fn whole(buf: &[u8]) -> Option<Outcome> {
        let (index, scan) = build_index(buf).ok()?;
        let last = scan.last.or(scan.open.map(|open| open..open + 1))?;
        let end = match scan.tail {
            Tail::Closed { .. } => End::Closed(buf[last.end..].to_vec()),
            Tail::Torn { good_end, reason } => End::Torn {
                at: good_end as u64,
                reason,
            },
            Tail::Empty => return None,
        };
        Some(Outcome {
            json: index.page(0, usize::MAX).parts.concat(),
            tasks: index.len(),
            anchor_at: last.start as u64,
            anchor: buf[last].to_vec(),
            end,
        })
    }

    /// What the piecewise path makes of `buf`; `None` when it declines it.
    fn in_pieces(buf: &[u8], piece: usize) -> Option<Outcome> {
        let file = file_with(buf);
        let loaded = load_in_pieces(&*file, buf.len() as u64, piece).unwrap()?;
        let end = match loaded.tail {
            Tail::Closed { .. } => {
                let anchor_end = loaded.anchor_at + loaded.anchor.len() as u64 - loaded.rest_at;
                End::Closed(loaded.rest[anchor_end as usize..].to_vec())
            }
            Tail::Torn { good_end, reason } => End::Torn {
                at: loaded.rest_at + good_end as u64,
                reason,
            },
            Tail::Empty => panic!("an empty file is left to the whole-file path"),
        };
        Some(Outcome {
            json: loaded.index.page(0, usize::MAX).parts.concat(),
            tasks: loaded.index.len(),
            anchor_at: loaded.anchor_at,
            anchor: loaded.anchor,
            end,
        })
    }

    fn piece_sizes(len: usize) -> Vec<usize> {
        let mut sizes: Vec<usize> = (1..=300).collect();
        sizes.extend([500, 1000, 4096, len - 1, len, len + 1, PIECE]);
        sizes
    }

    #[test]
    fn pieces_of_any_size_load_a_clean_file_as_the_whole_file_does() {
        let records: Vec<Record> = (1..=25)
            .map(|i| record(i * 3, &format!("Tarea [{i}], de ñandú ]")))
            .collect();
        let pretty = serde_json::to_vec_pretty(&records).unwrap();
        for buf in [ours(&records), pretty, ours(&[]), b"  [ ]  ".to_vec()] {
            let expected = whole(&buf).expect("a clean file");
            assert!(matches!(expected.end, End::Closed(_)));
            for piece in piece_sizes(buf.len()) {
                let got = in_pieces(&buf, piece).unwrap_or_else(|| {
                    panic!(
                        "piece {piece} declined a clean file: {:?}",
                        String::from_utf8_lossy(&buf[..buf.len().min(40)])
                    )
                });
                assert!(got == expected, "piece {piece} differs");
            }
        }
        let bytes = ours(&records);
        let file = file_with(&bytes);
        let loaded = load_in_pieces(&*file, bytes.len() as u64, 100).unwrap();
        assert_eq!(loaded.unwrap().index.id_for_key("run-9"), Some(9));
    }

    /// A crash can cut an append anywhere: wherever it does, the piecewise
    /// load finds the same complete tasks and the same torn tail as the
    /// whole-file scan, whatever the piece size.
    #[test]
    fn pieces_of_any_size_find_the_torn_tail_the_whole_file_scan_finds() {
        let records: Vec<Record> = (1..=6)
            .map(|i| record(i, &format!("Tarea [{i}] ]")))
            .collect();
        let full = ours(&records);
        let before_last = ours(&records[..5]);
        let mut torn_files: Vec<Vec<u8>> = (2..full.len())
            .step_by(7)
            .map(|cut| full[..cut].to_vec())
            .collect();
        // An append that wrote only its comma over the old closing bytes.
        let mut comma = before_last[..before_last.len() - 3].to_vec();
        comma.extend_from_slice(b",]\n");
        torn_files.push(comma);
        // The file grew but the data never arrived: zeros after a cut.
        let mut zeros = full[..full.len() - 50].to_vec();
        zeros.extend_from_slice(&[0; 300]);
        torn_files.push(zeros);
        // The append's own last `]`, then zeros.
        let mut closed_zeros = full.clone();
        closed_zeros.extend_from_slice(&[0; 64]);
        torn_files.push(closed_zeros);

        let mut torn_seen = 0;
        for buf in &torn_files {
            let expected = whole(buf);
            torn_seen += matches!(
                expected,
                Some(Outcome {
                    end: End::Torn { .. },
                    ..
                })
            ) as usize;
            for piece in [
                1,
                2,
                3,
                5,
                7,
                11,
                13,
                17,
                23,
                37,
                64,
                100,
                1000,
                buf.len() - 1,
                buf.len(),
                PIECE,
            ] {
                let got = in_pieces(buf, piece);
                assert!(
                    got == expected,
                    "piece {piece}, file of {} bytes ending {:?}: {got:?} != {expected:?}",
                    buf.len(),
                    String::from_utf8_lossy(&buf[buf.len().saturating_sub(30)..])
                );
            }
        }
        assert!(
            torn_seen > torn_files.len() / 2,
            "the cases must be torn files"
        );
    }

    #[test]
    fn a_hand_edited_file_out_of_order_is_loaded_sorted() {
        let records: Vec<Record> = [5, 2, 9, 1].iter().map(|&i| record(i, "t")).collect();
        let (index, _) = build_index(&ours(&records)).unwrap();
        let json = index.page(0, usize::MAX).parts.concat();
        let ids: Vec<u64> =
            serde_json::from_slice::<Vec<Record>>(&[b"[", &json[..], b"]"].concat())
                .unwrap()
                .iter()
                .map(|r| r.id)
                .collect();
        assert_eq!(ids, vec![1, 2, 5, 9]);
        assert_eq!(index.id_for_key("run-9"), Some(9));
    }

    #[test]
    fn broken_unsorted_and_empty_files_are_left_to_the_whole_file_path() {
        let records: Vec<Record> = (1..=6).map(|i| record(i, "t")).collect();
        let full = ours(&records);
        let mut unsorted = records.clone();
        unsorted.swap(2, 4);
        let broken = String::from_utf8(full.clone())
            .unwrap()
            .replacen("\"id\":3", "\"id\":\"3\"", 1)
            .into_bytes();
        for buf in [ours(&unsorted), broken, b"".to_vec(), b"{}".to_vec()] {
            for piece in piece_sizes(buf.len().max(2)) {
                assert!(
                    in_pieces(&buf, piece).is_none(),
                    "piece {piece} took {buf:?}"
                );
            }
        }
    }
}
