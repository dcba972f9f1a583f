//! openraft's own storage test suite, against this node's log store and
//! state machine on a real directory; and both under simulated power cuts.

use std::sync::Arc;

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::StorageError;

use super::log::LogStore;
use super::state_machine::StateMachine;
use super::types::TypeConfig;
use crate::store::file::OsFs;
use crate::store::Replica;

/// A new, empty node directory for each case of the suite.
struct Fresh;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Fresh {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let raft = dir.path().join("raft");
        let fs = Arc::new(OsFs);
        let log = LogStore::open(fs.clone(), &raft).expect("the log opens");
        let replica = Replica::open(dir.path().join("tasks.json")).expect("the data file opens");
        let sm = StateMachine::open(fs, raft, replica).expect("the state machine opens");
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_passes() {
    Suite::test_all(Fresh)
        .await
        .expect("openraft's storage suite");
}

mod power_cut {
    use std::path::Path;

    use openraft::entry::RaftEntry;
    use openraft::storage::{IOFlushed, RaftLogStorage};
    use openraft::type_config::TypeConfigExt;
    use openraft::RaftLogReader;

    use super::super::log::LogStore;
    use super::super::types::{Batch, Entry, Proposed, TypeConfig, Vote};
    use crate::store::file::sim::{Cut, SimDisk};
    use crate::store::NewEntry;
    use crate::task::ValidTask;

    fn entry(term: u64, index: u64) -> Entry {
        let proposed = Proposed {
            entry: NewEntry {
                task: ValidTask {
                    titulo: format!("entry {index}"),
                    descripcion: Some("x".repeat((index as usize * 37) % 300)),
                    completada: false,
                    cliente: None,
                },
                idempotency_key: Some(format!("k{index}")),
            },
            creada_en: "2026-12-01T00:00:00.000Z".into(),
        };
        Entry::new_normal(
            openraft::LogId::new_term_index(term, index),
            Batch(vec![proposed]),
        )
    }

    /// Appends and waits for the log to say they are durable; `false` if it
    /// failed (the power went meanwhile).
    async fn append(log: &mut LogStore, entries: Vec<Entry>) -> bool {
        let (tx, rx) = TypeConfig::oneshot();
        if log.append(entries, IOFlushed::signal(tx)).await.is_err() {
            return false;
        }
        matches!(rx.await, Ok(Ok(())))
    }

    fn cuts() -> Vec<Cut> {
        let mut cuts = Vec::new();
        for seed in 0..12u64 {
            cuts.push(Cut::Sectors { sector: 512, seed });
            cuts.push(Cut::Sectors { sector: 4096, seed });
            cuts.push(Cut::Prefix {
                writes: (seed % 3) as usize,
                bytes: (seed * 97 % 500) as usize,
            });
        }
        cuts
    }

    /// Whatever the disk keeps of what was not synced, every entry the log
    /// said was durable, and every vote it said was saved, is there after
    /// the power comes back; a record the cut tore is dropped, not refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acknowledged_entries_and_votes_survive_every_power_cut() {
        let dir = Path::new("/sim/raft");
        let mut checked = 0;
        for cut in cuts() {
            for cut_at in 1..12u64 {
                let disk = SimDisk::default();
                let mut log = LogStore::open(disk.fs(), dir).unwrap();
                let mut durable: Vec<Entry> = Vec::new();
                let mut vote = None;
                let mut index = 0;
                for round in 0..4u64 {
                    if round == 2 {
                        disk.cut_at_operation(cut_at, cut.clone());
                    }
                    let batch: Vec<Entry> =
                        (0..3).map(|i| entry(1 + round / 2, index + i)).collect();
                    if append(&mut log, batch.clone()).await {
                        durable.extend(batch);
                        index += 3;
                    } else {
                        break;
                    }
                    let v = Vote::new_committed(1 + round / 2, 1);
                    if log.save_vote(&v).await.is_ok() {
                        vote = Some(v);
                    } else {
                        break;
                    }
                }
                if disk.disarm() {
                    disk.cut(&cut);
                }
                drop(log);
                let mut log = LogStore::open(disk.fs(), dir)
                    .unwrap_or_else(|e| panic!("{cut:?} at {cut_at}: {e}"));
                let mut reader = log.get_log_reader().await;
                let got = reader.try_get_log_entries(0..).await.unwrap();
                assert!(
                    got.len() >= durable.len(),
                    "{cut:?} at {cut_at}: lost entries"
                );
                for (want, have) in durable.iter().zip(&got) {
                    assert_eq!(want.log_id(), have.log_id());
                    assert_eq!(format!("{:?}", want.payload), format!("{:?}", have.payload));
                }
                let saved = reader.read_vote().await.unwrap();
                assert!(saved >= vote, "{cut:?} at {cut_at}: the vote went back");
                // And the log goes on from where it is.
                let next = got.len() as u64;
                assert!(append(&mut log, vec![entry(9, next)]).await);
                checked += 1;
            }
        }
        println!("log store: {checked} power cuts, every acknowledged entry and vote kept");
    }

    /// Purging after a snapshot deletes every segment wholly before it, so
    /// that the log's files stay bounded however many entries went
    /// through; what is left reopens as the log's tail.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn purging_deletes_whole_segments_and_the_tail_reopens() {
        let dir = Path::new("/sim/raft");
        let disk = SimDisk::default();
        let segment_bytes = 4096;
        let log_bytes = |disk: &SimDisk| -> (usize, usize) {
            let files = disk.files();
            let segments: Vec<_> = files
                .iter()
                .filter(|(p, _)| p.extension().is_some_and(|e| e == "wal"))
                .collect();
            (segments.len(), segments.iter().map(|(_, b)| b.len()).sum())
        };
        let mut log = LogStore::open_with_segments(disk.fs(), dir, segment_bytes).unwrap();
        let mut most = 0;
        for round in 0..10u64 {
            let batch: Vec<Entry> = (round * 100..(round + 1) * 100)
                .map(|i| entry(1, i))
                .collect();
            assert!(append(&mut log, batch).await);
            // As openraft does after a snapshot: drop all but the last 20.
            let upto = openraft::LogId::new_term_index(1, (round + 1) * 100 - 21);
            log.purge(upto).await.unwrap();
            let (segments, bytes) = log_bytes(&disk);
            most = most.max(bytes);
            assert!(
                bytes as u64 <= 2 * segment_bytes + 4096,
                "round {round}: {segments} segments, {bytes} bytes kept for 20 entries"
            );
        }
        drop(log);
        let mut log = LogStore::open_with_segments(disk.fs(), dir, segment_bytes).unwrap();
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|l| l.index()), Some(979));
        assert_eq!(state.last_log_id.map(|l| l.index()), Some(999));
        let mut reader = log.get_log_reader().await;
        let got = reader.try_get_log_entries(980..).await.unwrap();
        let indexes: Vec<u64> = got.iter().map(|e| e.log_id().index()).collect();
        assert_eq!(indexes, (980..1000).collect::<Vec<_>>());
        println!("log store: 1,000 entries through, at most {most} bytes of segments kept");
    }

    /// A follower that installed a snapshot ahead of its log is told to
    /// purge up to it, then appends after it: the log reopens (it once
    /// took the hole left below the new segment for damage, and the node
    /// could not start again: the cluster campaign's full run of
    /// 2026-12-02, a follower killed after it caught up from a snapshot).
    #[tokio::test]
    async fn a_snapshot_ahead_of_the_log_then_appends_reopens() {
        let dir = Path::new("/sim/raft");
        let disk = SimDisk::default();
        let mut log = LogStore::open_with_segments(disk.fs(), dir, 1 << 20).unwrap();
        assert!(append(&mut log, (1..=10).map(|i| entry(1, i)).collect()).await);
        log.purge(openraft::LogId::new_term_index(1, 50))
            .await
            .unwrap();
        assert!(append(&mut log, (51..=60).map(|i| entry(1, i)).collect()).await);
        drop(log);
        let mut log = LogStore::open_with_segments(disk.fs(), dir, 1 << 20).unwrap();
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|l| l.index()), Some(50));
        assert_eq!(state.last_log_id.map(|l| l.index()), Some(60));
        let mut reader = log.get_log_reader().await;
        let got = reader.try_get_log_entries(51..).await.unwrap();
        let indexes: Vec<u64> = got.iter().map(|e| e.log_id().index()).collect();
        assert_eq!(indexes, (51..=60).collect::<Vec<_>>());
        // The next purge drops the old segment; the log still reopens.
        log.purge(openraft::LogId::new_term_index(1, 55))
            .await
            .unwrap();
        drop(reader);
        drop(log);
        let mut log = LogStore::open_with_segments(disk.fs(), dir, 1 << 20).unwrap();
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id.map(|l| l.index()), Some(60));
        let segments = disk
            .files()
            .iter()
            .filter(|(p, _)| p.extension().is_some_and(|e| e == "wal"))
            .count();
        assert_eq!(segments, 1, "the segment the purge emptied is gone");
    }

    /// The same steps under power cuts at every write: the log reopens
    /// whatever the disk kept, keeps each purge and entry it acknowledged,
    /// holds no hole between the purge and its last entry, and goes on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_snapshot_ahead_of_the_log_survives_every_power_cut() {
        let dir = Path::new("/sim/raft");
        let mut checked = 0;
        for cut in cuts() {
            for cut_at in 1..16u64 {
                let disk = SimDisk::default();
                let mut log = LogStore::open_with_segments(disk.fs(), dir, 1 << 20).unwrap();
                let mut durable: Vec<Entry> = (1..=10).map(|i| entry(1, i)).collect();
                assert!(append(&mut log, durable.clone()).await);
                disk.cut_at_operation(cut_at, cut.clone());
                let mut purged = None;
                let steps: [(u64, std::ops::RangeInclusive<u64>); 2] =
                    [(50, 51..=60), (55, 61..=62)];
                for (upto, next) in steps {
                    let upto = openraft::LogId::new_term_index(1, upto);
                    if log.purge(upto).await.is_err() {
                        break;
                    }
                    purged = Some(upto.index());
                    let batch: Vec<Entry> = next.map(|i| entry(1, i)).collect();
                    if !append(&mut log, batch.clone()).await {
                        break;
                    }
                    durable.extend(batch);
                }
                if disk.disarm() {
                    disk.cut(&cut);
                }
                drop(log);
                let mut log = LogStore::open_with_segments(disk.fs(), dir, 1 << 20)
                    .unwrap_or_else(|e| panic!("{cut:?} at {cut_at}: {e}"));
                let state = log.get_log_state().await.unwrap();
                let on_disk = state.last_purged_log_id.map(|l| l.index());
                assert!(
                    on_disk >= purged,
                    "{cut:?} at {cut_at}: the purge went back"
                );
                let last = state.last_log_id.map_or(0, |l| l.index());
                let from = on_disk.map_or(1, |p| p + 1);
                let mut reader = log.get_log_reader().await;
                let got = reader.try_get_log_entries(from..).await.unwrap();
                let indexes: Vec<u64> = got.iter().map(|e| e.log_id().index()).collect();
                assert_eq!(
                    indexes,
                    (from..=last).collect::<Vec<_>>(),
                    "{cut:?} at {cut_at}: a hole after the purge"
                );
                for want in durable.iter().filter(|e| e.log_id().index() >= from) {
                    assert!(
                        indexes.contains(&want.log_id().index()),
                        "{cut:?} at {cut_at}: entry {} lost",
                        want.log_id().index()
                    );
                }
                assert!(append(&mut log, vec![entry(1, last + 1)]).await);
                checked += 1;
            }
        }
        println!(
            "log store: {checked} power cuts around a purge ahead of the log, none left a hole"
        );
    }

    /// An append that would leave a hole no purge covers is refused before
    /// it is written, so that the log on disk still reopens.
    #[tokio::test]
    async fn an_append_past_a_gap_no_purge_covers_is_refused() {
        let dir = Path::new("/sim/raft");
        let disk = SimDisk::default();
        let mut log = LogStore::open(disk.fs(), dir).unwrap();
        assert!(append(&mut log, (1..=10).map(|i| entry(1, i)).collect()).await);
        assert!(!append(&mut log, vec![entry(1, 20)]).await);
        drop(log);
        let mut log = LogStore::open(disk.fs(), dir).unwrap();
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id.map(|l| l.index()), Some(10));
    }
}
