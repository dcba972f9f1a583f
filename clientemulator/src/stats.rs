//! What the load phase remembers: per-task outcomes in a few bits each, and
//! latency, status and error counts in fixed-size structures.
//!
//! Nothing here grows with the number of successful requests: latencies go
//! into an HDR histogram (a fixed array of counters with 3 significant
//! digits), and a task costs memory only in the bitsets of the [`Ledger`]:
//! none when acknowledged, at most three bits otherwise. What happened when
//! goes into a [`Timeline`] of at most a few hundred intervals.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::timeline::Timeline;

/// A growable set of task indexes, one bit each.
#[derive(Debug, Default, Clone)]
pub struct BitSet {
    /// Bit `i % 64` of word `i / 64` is index `i`; grown on demand so that a
    /// timed run needs no size up front.
    words: Vec<u64>,
}

impl BitSet {
    /// An empty set with room for indexes below `len` without growing.
    pub fn with_capacity(len: u64) -> Self {
        Self {
            words: Vec::with_capacity(words_for(len)),
        }
    }

    /// Adds `index`; returns whether it was absent.
    pub fn insert(&mut self, index: u64) -> bool {
        let (word, bit) = split(index);
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        let absent = self.words[word] & bit == 0;
        self.words[word] |= bit;
        absent
    }

    pub fn contains(&self, index: u64) -> bool {
        let (word, bit) = split(index);
        self.words.get(word).is_some_and(|w| w & bit != 0)
    }

    pub fn len(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }
}

fn words_for(len: u64) -> usize {
    usize::try_from(len.div_ceil(64)).unwrap_or(usize::MAX)
}

fn split(index: u64) -> (usize, u64) {
    let word = usize::try_from(index / 64).expect("task index fits in memory");
    (word, 1 << (index % 64))
}

/// The final outcome of one task, after all its attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskOutcome {
    /// The server answered 200 or 201: it says the task is stored.
    Acknowledged,
    /// The server answered with an error, or could not be reached at all:
    /// it says the task is not stored (verification checks that too).
    Failed,
    /// Some attempt got no answer (timeout, connection cut after sending) and
    /// no later attempt settled it: the task may or may not be stored.
    Unknown,
    /// The index was handed out but the task never went out, because the run
    /// was stopped or its time was up first.
    NotSent,
}

/// The outcome of every task of the run, by task index (sequence number − 1).
///
/// Acknowledged is the common case, so it is the absence of a mark: the happy
/// path never touches the ledger, and only exceptions cost a lock.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Indexes `0..issued` were handed to workers; each one has an outcome.
    issued: u64,
    /// Tasks the server refused or that never reached it.
    failed: BitSet,
    /// Tasks whose fate the client cannot know without reading back.
    unknown: BitSet,
    /// Indexes handed out that were never sent.
    not_sent: BitSet,
}

impl Ledger {
    /// Records a final outcome other than the default, acknowledged.
    pub fn mark(&mut self, index: u64, outcome: TaskOutcome) {
        match outcome {
            TaskOutcome::Acknowledged => {}
            TaskOutcome::Failed => {
                self.failed.insert(index);
            }
            TaskOutcome::Unknown => {
                self.unknown.insert(index);
            }
            TaskOutcome::NotSent => {
                self.not_sent.insert(index);
            }
        }
    }

    /// Sets how many indexes were handed out, once the workers are done.
    pub fn set_issued(&mut self, issued: u64) {
        self.issued = issued;
    }

    pub fn issued(&self) -> u64 {
        self.issued
    }

    pub fn outcome(&self, index: u64) -> TaskOutcome {
        if self.not_sent.contains(index) {
            TaskOutcome::NotSent
        } else if self.unknown.contains(index) {
            TaskOutcome::Unknown
        } else if self.failed.contains(index) {
            TaskOutcome::Failed
        } else {
            TaskOutcome::Acknowledged
        }
    }

    /// Tasks that actually went out.
    pub fn sent(&self) -> u64 {
        self.issued - self.not_sent.len()
    }

    /// Tasks without an acknowledgement (failed plus unknown).
    pub fn failed(&self) -> u64 {
        self.failed.len() + self.unknown.len()
    }

    pub fn unknown(&self) -> u64 {
        self.unknown.len()
    }

    pub fn acknowledged(&self) -> u64 {
        self.sent() - self.failed()
    }
}

/// Why an attempt got no HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorKind {
    /// No answer within `--timeout`; the server may still store the task.
    Timeout,
    /// The connection could not be opened (refused, unreachable, DNS): the
    /// request never left, so the task is certainly not stored.
    Connect,
    /// The connection broke after the request may have been sent.
    Connection,
    /// Anything else reqwest reports.
    Other,
}

impl ErrorKind {
    const ALL: [ErrorKind; 4] = [Self::Timeout, Self::Connect, Self::Connection, Self::Other];

    /// The key used in the report's `errors` object.
    pub fn name(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Connection => "connection",
            Self::Other => "other",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Latencies are recorded in microseconds up to one hour; a longer one is
/// clamped to the top, which no real run reaches with `--timeout`.
const HISTOGRAM_MAX_MICROS: u64 = 3_600_000_000;

/// Counters filled by the workers while they send.
///
/// One shard per load thread, each behind its own mutex: the workers of a
/// thread never run at the same time, so the lock is never contended and
/// costs a few nanoseconds; it is there because the shards are merged from
/// another thread at the end. A histogram per worker instead would cost
/// ~200 KB each, which at `-c 10000` is gigabytes.
#[derive(Debug)]
pub struct Recorder {
    /// Indexed by load thread.
    shards: Box<[Mutex<Shard>]>,
}

/// One shard of the [`Recorder`]; also the merged result.
#[derive(Debug, Clone)]
pub struct Shard {
    /// Time to acknowledgement of each acknowledged task, in microseconds.
    pub latency_us: Histogram<u64>,
    /// Every HTTP status received, retries included, so that a 500 that a
    /// retry later hid is still visible.
    pub statuses: BTreeMap<u16, u64>,
    /// Every attempt that got no HTTP answer, by kind.
    pub errors: BTreeMap<ErrorKind, u64>,
    /// The first message seen for each error kind, to show the user the real
    /// cause (say, "Connection refused") next to the count.
    pub error_examples: BTreeMap<ErrorKind, String>,
    /// Requests sent, retries included.
    pub attempts: u64,
    /// Attempts beyond the first of a task.
    pub retries: u64,
    /// Acknowledgements, failed attempts and latency by when they happened.
    pub timeline: Timeline,
}

impl Shard {
    fn new() -> Self {
        Self {
            latency_us: Histogram::new_with_bounds(1, HISTOGRAM_MAX_MICROS, 3)
                .expect("static histogram bounds are valid"),
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
            error_examples: BTreeMap::new(),
            attempts: 0,
            retries: 0,
            timeline: Timeline::default(),
        }
    }

    /// An HTTP answer `status` that arrived `at` after the start of sending;
    /// an acknowledgement's latency is recorded by [`Self::record_latency`].
    pub fn record_status(&mut self, at: Duration, status: u16) {
        self.attempts += 1;
        *self.statuses.entry(status).or_default() += 1;
        if !matches!(status, 200 | 201) {
            self.timeline.error(at);
        }
    }

    /// An attempt without an HTTP answer, given up `at` after the start.
    /// `message` is only called the first time a kind is seen, so the common
    /// repeated error costs no formatting.
    pub fn record_error(
        &mut self,
        at: Duration,
        kind: ErrorKind,
        message: impl FnOnce() -> String,
    ) {
        self.attempts += 1;
        *self.errors.entry(kind).or_default() += 1;
        self.error_examples.entry(kind).or_insert_with(message);
        self.timeline.error(at);
    }

    pub fn record_retry(&mut self) {
        self.retries += 1;
    }

    /// A task acknowledged `at` after the start, `latency` after it began.
    pub fn record_latency(&mut self, at: Duration, latency: Duration) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.latency_us.saturating_record(micros);
        self.timeline.acknowledged(at, latency);
    }

    fn merge(&mut self, other: &Shard) {
        self.latency_us
            .add(&other.latency_us)
            .expect("histograms with the same bounds always add");
        for (status, n) in &other.statuses {
            *self.statuses.entry(*status).or_default() += n;
        }
        for kind in ErrorKind::ALL {
            if let Some(n) = other.errors.get(&kind) {
                *self.errors.entry(kind).or_default() += n;
            }
            if let Some(example) = other.error_examples.get(&kind) {
                self.error_examples
                    .entry(kind)
                    .or_insert_with(|| example.clone());
            }
        }
        self.attempts += other.attempts;
        self.retries += other.retries;
        self.timeline.merge(&other.timeline);
    }
}

impl Recorder {
    pub fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(Shard::new()))
                .collect(),
        }
    }

    /// Shard `index` (taken modulo the shard count). A poisoned lock only
    /// means a worker panicked mid-update; the counters are still usable.
    pub fn shard(&self, index: usize) -> MutexGuard<'_, Shard> {
        self.shards[index % self.shards.len()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// All shards added together.
    pub fn merged(&self) -> Shard {
        let mut total = Shard::new();
        for shard in &self.shards {
            total.merge(&shard.lock().unwrap_or_else(PoisonError::into_inner));
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitset_inserts_once_and_counts() {
        let mut set = BitSet::default();
        assert!(set.is_empty());
        assert!(set.insert(0));
        assert!(set.insert(130));
        assert!(!set.insert(130));
        assert!(set.contains(130) && set.contains(0));
        assert!(!set.contains(129) && !set.contains(10_000));
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn ledger_counts_each_outcome() {
        let mut ledger = Ledger::default();
        ledger.mark(1, TaskOutcome::Failed);
        ledger.mark(2, TaskOutcome::Unknown);
        ledger.mark(9, TaskOutcome::NotSent);
        ledger.mark(3, TaskOutcome::Acknowledged);
        ledger.set_issued(10);
        assert_eq!(ledger.sent(), 9);
        assert_eq!(ledger.failed(), 2);
        assert_eq!(ledger.unknown(), 1);
        assert_eq!(ledger.acknowledged(), 7);
        assert_eq!(ledger.outcome(1), TaskOutcome::Failed);
        assert_eq!(ledger.outcome(2), TaskOutcome::Unknown);
        assert_eq!(ledger.outcome(3), TaskOutcome::Acknowledged);
        assert_eq!(ledger.outcome(9), TaskOutcome::NotSent);
    }

    #[test]
    fn shards_merge_into_totals() {
        let recorder = Recorder::new(3);
        for worker in 0..6 {
            let mut shard = recorder.shard(worker);
            let at = Duration::from_millis(worker as u64 * 10);
            shard.record_status(at, 201);
            shard.record_latency(at, Duration::from_millis(worker as u64 + 1));
        }
        recorder.shard(1).record_status(Duration::ZERO, 500);
        recorder.shard(1).record_retry();
        recorder
            .shard(2)
            .record_error(Duration::ZERO, ErrorKind::Timeout, || "slow".into());
        // The same shard (5 % 3 == 2) already has an example: no formatting.
        recorder
            .shard(5)
            .record_error(Duration::ZERO, ErrorKind::Timeout, || unreachable!());
        let total = recorder.merged();
        assert_eq!(total.statuses[&201], 6);
        assert_eq!(total.statuses[&500], 1);
        assert_eq!(total.errors[&ErrorKind::Timeout], 2);
        assert_eq!(total.error_examples[&ErrorKind::Timeout], "slow");
        assert_eq!(total.attempts, 9);
        assert_eq!(total.retries, 1);
        assert_eq!(total.latency_us.len(), 6);
        // HDR keeps 3 significant digits: the max is 6000 µs within that.
        assert!(total.latency_us.equivalent(total.latency_us.max(), 6000));
        // The timeline of the merged shards: one acknowledgement per 10 ms,
        // and the 500 and the two timeouts in the first interval.
        let intervals = total.timeline.intervals();
        assert_eq!(intervals.len(), 6);
        assert!(intervals.iter().all(|i| i.acknowledged == 1));
        assert_eq!(intervals[0].errors, 3);
    }
}
