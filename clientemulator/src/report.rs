//! The report: one struct, printed for people (`Display`) or as JSON.
//!
//! The JSON field names are part of the contract (`sent`, `acknowledged`,
//! `failed`, `verified`, `lost`, `duplicated`, `elapsed_seconds`,
//! `throughput_per_second`, `latency_ms`, `status_counts`, `errors`); the
//! others are additions. Verification counts are `null` when no read-back
//! happened, so that "not checked" can never be mistaken for "0 lost".

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::cli::{Config, Mode};
use crate::client::Load;
use crate::timeline::Timeline;
use crate::verify::{NodeCheck, Verification, VerifyError};
use crate::Exit;

/// Everything a run found out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The `cliente` of this run's tasks.
    pub client_id: String,
    /// Written into each task's `descripcion`; tells this run from others.
    pub run_id: String,
    /// The server's base URL.
    pub url: String,
    /// A number of tasks, or a time.
    pub mode: RunMode,
    /// `-n` in count mode: what `sent` should reach.
    pub planned: Option<u64>,
    /// Workers, that is the most requests in flight.
    pub concurrency: u64,
    /// `--rate` when the open model was used.
    pub rate_per_second: Option<f64>,
    /// Tasks that went out (each maybe several times).
    pub sent: u64,
    /// Tasks answered 200 or 201.
    pub acknowledged: u64,
    /// Tasks without acknowledgement: refused, unreachable, or unknown.
    pub failed: u64,
    /// Of `failed`, tasks that got no answer at all, so may be stored.
    pub unknown: u64,
    /// HTTP requests made, retries included.
    pub requests: u64,
    /// Requests beyond the first of each task.
    pub retries: u64,
    /// Whether the read-back happened.
    pub verification: VerificationState,
    /// Acknowledged and stored exactly once.
    pub verified: Option<u64>,
    /// Acknowledged and not stored.
    pub lost: Option<u64>,
    /// Stored more than once.
    pub duplicated: Option<u64>,
    /// Not acknowledged, stored all the same.
    pub stored_unacknowledged: Option<u64>,
    /// Stored with this run's id but matching nothing it sent.
    pub unexpected: Option<u64>,
    /// Tasks read from the server, of all clients and runs.
    pub tasks_read: Option<u64>,
    /// Of `tasks_read`, those carrying this run's id (copies included).
    pub found: Option<u64>,
    /// Why the read-back failed, when it did.
    pub verify_error: Option<String>,
    /// Sending time, from the first task's start to the last one's end.
    pub elapsed_seconds: f64,
    /// Acknowledged tasks per second of `elapsed_seconds`.
    pub throughput_per_second: f64,
    /// Requests (retries included) per second, comparable to other load tools.
    pub requests_per_second: f64,
    /// Time spent waiting for `GET /health` before the first task.
    pub waited_seconds: f64,
    /// Time the read-back took.
    pub verify_seconds: Option<f64>,
    /// Time to acknowledgement of acknowledged tasks.
    pub latency_ms: LatencyMs,
    /// Ten equal-width ranges of the same latencies.
    pub latency_histogram: Vec<LatencyBucket>,
    /// The same in fifty ranges, the finer picture that `--html` draws.
    #[serde(default)]
    pub latency_distribution: Vec<LatencyBucket>,
    /// Acknowledgements, failed attempts and latency over the run's time.
    #[serde(default)]
    pub timeline: TimelineReport,
    /// HTTP status -> responses, retries included.
    pub status_counts: BTreeMap<String, u64>,
    /// Error kind (`timeout`, `connect`, `connection`, `other`) -> requests
    /// that got no HTTP answer.
    pub errors: BTreeMap<String, u64>,
    /// Error kind -> the first message seen, to show the cause.
    pub error_examples: BTreeMap<String, String>,
    /// Stopped early by Ctrl-C.
    pub interrupted: bool,
    /// What the exit status says: every task acknowledged and verified.
    pub success: bool,
    /// The one-line summary.
    pub verdict: String,
    /// With several servers (a cluster's nodes): what each one's read-back
    /// found; the counts above are the worst of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeReport>,
}

/// One server's read-back, when there are several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    pub url: String,
    /// `None` when it could not be read (`error` says why).
    pub verified: Option<u64>,
    pub lost: Option<u64>,
    pub duplicated: Option<u64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunMode {
    /// `-n`: a number of tasks.
    Count,
    /// `-z`: for a time.
    Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerificationState {
    /// Read back and counted.
    Done,
    /// `--no-verify`.
    Skipped,
    /// The read-back failed; see `verify_error`.
    Failed,
}

/// Latency summary in milliseconds; all zero when nothing was acknowledged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyMs {
    /// How many latencies the figures are made of (the acknowledged tasks),
    /// so that zeros can be told from "nothing measured".
    pub count: u64,
    /// The average, which a few slow tasks pull up.
    pub mean: f64,
    /// The median: half the tasks were acknowledged faster.
    pub p50: f64,
    /// The typical slow task.
    pub p90: f64,
    /// The tail that users notice.
    pub p99: f64,
    /// The far tail, where queueing and retries show.
    pub p999: f64,
    /// The fastest task, a floor for what the server can do.
    pub min: f64,
    /// The slowest task.
    pub max: f64,
}

/// Latencies up to `le_ms` (and above the previous bucket's bound).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencyBucket {
    /// Upper bound of the range, in milliseconds.
    pub le_ms: f64,
    /// Acknowledged tasks whose latency fell in the range.
    pub count: u64,
}

/// The run's time in equal intervals (see [`crate::timeline`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TimelineReport {
    /// The width of every interval but perhaps the last.
    pub interval_seconds: f64,
    /// From the start of sending to its end.
    pub intervals: Vec<IntervalReport>,
}

/// What arrived in one interval of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalReport {
    /// When it begins, counted from the start of sending.
    pub start_seconds: f64,
    /// How long it is: `interval_seconds`, or less for the last one.
    pub seconds: f64,
    /// Tasks acknowledged in it.
    pub acknowledged: u64,
    /// `acknowledged` per second of the interval.
    pub acknowledged_per_second: f64,
    /// Attempts answered with anything but 200 or 201, or not answered.
    pub errors: u64,
    /// Latency of the tasks acknowledged in it (`null` when none was).
    pub latency_ms: Option<IntervalLatencyMs>,
}

/// Latency percentiles of one interval, within 1/16 of the true value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IntervalLatencyMs {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl TimelineReport {
    /// The intervals of `timeline` that fall within the `elapsed` sending time.
    fn new(timeline: &Timeline, elapsed: Duration) -> Self {
        let width = timeline.width().as_secs_f64();
        let end = elapsed.as_secs_f64();
        let intervals = timeline
            .intervals()
            .iter()
            .enumerate()
            .map(|(i, interval)| {
                let start = i as f64 * width;
                // The last interval ends with the run; an answer can never
                // arrive after `elapsed`, but keep a floor against rounding.
                let seconds = (end - start).clamp(width / 1000.0, width);
                let quantile = |q| interval.latency_at(q).map_or(0.0, |us| ms(us as f64));
                IntervalReport {
                    start_seconds: start,
                    seconds,
                    acknowledged: interval.acknowledged,
                    acknowledged_per_second: interval.acknowledged as f64 / seconds,
                    errors: interval.errors,
                    latency_ms: (interval.acknowledged > 0).then(|| IntervalLatencyMs {
                        p50: quantile(0.5),
                        p99: quantile(0.99),
                        max: quantile(1.0),
                    }),
                }
            })
            .collect();
        Self {
            interval_seconds: width,
            intervals,
        }
    }
}

impl Report {
    pub fn new(
        config: &Config,
        waited: Duration,
        load: &Load,
        verification: Option<Result<(Verification, Vec<NodeCheck>), VerifyError>>,
        verify_time: Duration,
    ) -> Self {
        let ledger = &load.ledger;
        let stats = &load.stats;
        let elapsed = load.elapsed.as_secs_f64();
        let per_second = |n: u64| {
            if elapsed > 0.0 {
                n as f64 / elapsed
            } else {
                0.0
            }
        };
        let (mode, planned) = match config.mode {
            Mode::Count(n) => (RunMode::Count, Some(n)),
            Mode::Duration(_) => (RunMode::Duration, None),
        };
        let (state, counts, verify_error, checks) = match verification {
            None => (VerificationState::Skipped, None, None, Vec::new()),
            Some(Ok((v, checks))) => (VerificationState::Done, Some(v), None, checks),
            Some(Err(e)) => (
                VerificationState::Failed,
                None,
                Some(e.to_string()),
                Vec::new(),
            ),
        };
        let nodes = checks
            .into_iter()
            .map(|c| match c.result {
                Ok(v) => NodeReport {
                    url: c.url.to_string(),
                    verified: Some(v.verified),
                    lost: Some(v.lost),
                    duplicated: Some(v.duplicated),
                    error: None,
                },
                Err(e) => NodeReport {
                    url: c.url.to_string(),
                    verified: None,
                    lost: None,
                    duplicated: None,
                    error: Some(e.to_string()),
                },
            })
            .collect();
        let pick = |f: fn(&Verification) -> u64| counts.as_ref().map(f);
        let mut report = Report {
            client_id: config.client_id.clone(),
            run_id: config.run_id.clone(),
            url: config
                .servers
                .iter()
                .map(|s| s.base_url.as_str())
                .collect::<Vec<_>>()
                .join(","),
            mode,
            planned,
            concurrency: config.concurrency as u64,
            rate_per_second: config.rate,
            sent: ledger.sent(),
            acknowledged: ledger.acknowledged(),
            failed: ledger.failed(),
            unknown: ledger.unknown(),
            requests: stats.attempts,
            retries: stats.retries,
            verification: state,
            verified: pick(|v| v.verified),
            lost: pick(|v| v.lost),
            duplicated: pick(|v| v.duplicated),
            stored_unacknowledged: pick(|v| v.stored_unacknowledged),
            unexpected: pick(|v| v.unexpected),
            tasks_read: pick(|v| v.tasks_read),
            found: pick(|v| v.found),
            verify_error,
            elapsed_seconds: elapsed,
            throughput_per_second: per_second(ledger.acknowledged()),
            requests_per_second: per_second(stats.attempts),
            waited_seconds: waited.as_secs_f64(),
            verify_seconds: (state != VerificationState::Skipped)
                .then_some(verify_time.as_secs_f64()),
            latency_ms: latency_summary(&stats.latency_us),
            latency_histogram: latency_buckets(&stats.latency_us, 10),
            latency_distribution: latency_buckets(&stats.latency_us, 50),
            timeline: TimelineReport::new(&stats.timeline, load.elapsed),
            status_counts: stats
                .statuses
                .iter()
                .map(|(s, n)| (s.to_string(), *n))
                .collect(),
            errors: stats
                .errors
                .iter()
                .map(|(k, n)| (k.name().to_owned(), *n))
                .collect(),
            error_examples: stats
                .error_examples
                .iter()
                .map(|(k, m)| (k.name().to_owned(), m.clone()))
                .collect(),
            interrupted: load.interrupted,
            nodes,
            success: false,
            verdict: String::new(),
        };
        report.success = report.judge();
        report.verdict = report.verdict_line();
        report
    }

    /// Success: the whole run went out, every task was acknowledged, and
    /// (unless skipped) the read-back found each exactly once and nothing else.
    fn judge(&self) -> bool {
        // Cut short by Ctrl-C is not the run that was asked for, in either mode.
        let complete = !self.interrupted && self.planned.is_none_or(|n| self.sent == n);
        let verified = match self.verification {
            VerificationState::Skipped => true,
            VerificationState::Failed => false,
            VerificationState::Done => {
                self.verified == Some(self.acknowledged)
                    && self.lost == Some(0)
                    && self.duplicated == Some(0)
                    && self.unexpected == Some(0)
            }
        };
        complete && self.failed == 0 && verified
    }

    /// Prints the report: the human summary, or one JSON object on one line.
    pub fn write_to(&self, mut out: impl std::io::Write, json: bool) -> std::io::Result<()> {
        if json {
            serde_json::to_writer(&mut out, self)?;
            writeln!(out)
        } else {
            write!(out, "{self}")
        }
    }

    /// Writes the report as one self-contained HTML page (see [`crate::html`]).
    pub fn write_html(&self, path: &std::path::Path) -> std::io::Result<()> {
        std::fs::write(path, crate::html::render(self))
    }

    /// The process exit status for this report ([`Exit::NoRun`] is only
    /// for errors that prevent a report).
    pub fn exit_status(&self) -> Exit {
        if self.success {
            Exit::Verified
        } else {
            Exit::Failed
        }
    }

    fn verdict_line(&self) -> String {
        let mut line = match (self.verification, self.verified, self.lost, self.duplicated) {
            (VerificationState::Done, Some(verified), Some(lost), Some(duplicated)) => format!(
                "{}: {verified}/{} stored, {lost} lost, {duplicated} duplicated",
                self.client_id, self.sent
            ),
            (VerificationState::Skipped, ..) => format!(
                "{}: {}/{} acknowledged (not verified: --no-verify)",
                self.client_id, self.acknowledged, self.sent
            ),
            _ => format!(
                "{}: {}/{} acknowledged, NOT verified: the tasks could not be read back",
                self.client_id, self.acknowledged, self.sent
            ),
        };
        if self.failed > 0 {
            line += &format!(", {} not acknowledged", self.failed);
            if self.unknown > 0 {
                line += &format!(" ({} with unknown outcome)", self.unknown);
            }
        }
        if let Some(n) = self.stored_unacknowledged.filter(|&n| n > 0) {
            line += &format!(", {n} stored without acknowledgement");
        }
        if let Some(n) = self.unexpected.filter(|&n| n > 0) {
            line += &format!(", {n} unexpected");
        }
        match (self.planned, self.interrupted) {
            (Some(planned), true) => {
                line += &format!(" (interrupted: {} of {planned} sent)", self.sent)
            }
            (None, true) => line += " (interrupted)",
            _ => {}
        }
        line
    }
}

fn ms(micros: f64) -> f64 {
    micros / 1000.0
}

fn latency_summary(h: &Histogram<u64>) -> LatencyMs {
    if h.is_empty() {
        return LatencyMs::default();
    }
    let q = |quantile: f64| ms(h.value_at_quantile(quantile) as f64);
    LatencyMs {
        count: h.len(),
        mean: ms(h.mean()),
        p50: q(0.5),
        p90: q(0.9),
        p99: q(0.99),
        p999: q(0.999),
        min: ms(h.min() as f64),
        max: ms(h.max() as f64),
    }
}

/// `buckets` equal-width ranges between the smallest and largest latency.
fn latency_buckets(h: &Histogram<u64>, buckets: u64) -> Vec<LatencyBucket> {
    if h.is_empty() {
        return Vec::new();
    }
    let (low, high) = (h.min(), h.max());
    let width = (high - low).div_ceil(buckets).max(1);
    let mut counts = vec![0u64; buckets as usize];
    for value in h.iter_recorded() {
        let at = h.highest_equivalent(value.value_iterated_to()).min(high);
        let slot = ((at.saturating_sub(low)) / width).min(buckets - 1);
        counts[slot as usize] += value.count_at_value();
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(i, count)| LatencyBucket {
            le_ms: ms((low + width * (i as u64 + 1)).min(high) as f64),
            count,
        })
        .collect()
}

/// The human summary: short, aligned, and ending with the verdict.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "clientemulator {} (run {}) -> {}",
            self.client_id, self.run_id, self.url
        )?;
        if self.waited_seconds > 0.0 {
            writeln!(
                f,
                "The server answered GET /health after {:.2} s.",
                self.waited_seconds
            )?;
        }
        writeln!(f)?;
        let mut how = format!("{} at a time", self.concurrency);
        if let Some(rate) = self.rate_per_second {
            how += &format!(", scheduled at {rate} per second");
        }
        writeln!(
            f,
            "{:<14}{} tasks in {:.2} s, {how}{}",
            "Sent",
            self.sent,
            self.elapsed_seconds,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "{:<14}{:.1} acknowledged tasks/s, {:.1} requests/s",
            "Throughput", self.throughput_per_second, self.requests_per_second
        )?;
        write!(
            f,
            "{:<14}{} acknowledged, {} failed",
            "Outcome", self.acknowledged, self.failed
        )?;
        if self.unknown > 0 {
            write!(f, " ({} with unknown outcome)", self.unknown)?;
        }
        writeln!(f, ", {} retries", self.retries)?;
        let statuses: Vec<String> = self
            .status_counts
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        writeln!(
            f,
            "{:<14}{}",
            "Status codes",
            if statuses.is_empty() {
                "none".to_owned()
            } else {
                statuses.join(", ")
            }
        )?;
        if self.errors.is_empty() {
            writeln!(f, "{:<14}none", "Errors")?;
        }
        for (i, (kind, n)) in self.errors.iter().enumerate() {
            let example = self
                .error_examples
                .get(kind)
                .map(String::as_str)
                .unwrap_or("");
            let label = if i == 0 { "Errors" } else { "" };
            writeln!(f, "{label:<14}{kind}: {n} (e.g. {example})")?;
        }
        let l = &self.latency_ms;
        if l.count == 0 {
            writeln!(f, "{:<14}none: no task was acknowledged", "Latency")?;
        } else {
            writeln!(
                f,
                "{:<14}mean {:.2}  p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
                "Latency (ms)", l.mean, l.p50, l.p90, l.p99, l.p999, l.max
            )?;
            writeln!(f)?;
            let most = self
                .latency_histogram
                .iter()
                .map(|b| b.count)
                .max()
                .unwrap_or(1)
                .max(1);
            for bucket in &self.latency_histogram {
                let bar = "#".repeat((bucket.count * 40).div_ceil(most) as usize);
                writeln!(f, "{:>12.2} ms | {bar} {}", bucket.le_ms, bucket.count)?;
            }
        }
        writeln!(f)?;
        match (self.verification, &self.verify_error) {
            (VerificationState::Skipped, _) => {
                writeln!(f, "{:<14}skipped (--no-verify)", "Read back")?
            }
            (VerificationState::Failed, Some(error)) => {
                writeln!(f, "{:<14}failed: {error}", "Read back")?
            }
            _ => writeln!(
                f,
                "{:<14}{} tasks in {:.2} s, {} of them from this run",
                "Read back",
                self.tasks_read.unwrap_or(0),
                self.verify_seconds.unwrap_or(0.0),
                self.found.unwrap_or(0)
            )?,
        }
        for node in &self.nodes {
            match (&node.error, node.verified, node.lost, node.duplicated) {
                (Some(error), ..) => writeln!(f, "{:<14}{}: not read ({error})", "", node.url)?,
                (None, Some(v), Some(l), Some(d)) => writeln!(
                    f,
                    "{:<14}{}: {v} stored once, {l} lost, {d} duplicated",
                    "", node.url
                )?,
                _ => {}
            }
        }
        writeln!(f)?;
        writeln!(f, "{}", self.verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Args;
    use crate::stats::{Ledger, Recorder, TaskOutcome};
    use clap::Parser;

    fn config(args: &[&str]) -> Config {
        let mut argv = vec!["clientemulator", "--client-id", "c1"];
        argv.extend_from_slice(args);
        Args::try_parse_from(argv).unwrap().into_config().unwrap()
    }

    fn load(issued: u64, marks: &[(u64, TaskOutcome)]) -> Load {
        let mut ledger = Ledger::default();
        for &(index, outcome) in marks {
            ledger.mark(index, outcome);
        }
        ledger.set_issued(issued);
        let recorder = Recorder::new(1);
        for i in 0..issued {
            let at = Duration::from_millis(i * 20);
            recorder.shard(0).record_status(at, 201);
            recorder
                .shard(0)
                .record_latency(at, Duration::from_millis(i + 1));
        }
        Load {
            ledger,
            stats: recorder.merged(),
            elapsed: Duration::from_secs(2),
            interrupted: false,
        }
    }

    fn verified(n: u64) -> Verification {
        Verification {
            tasks_read: n,
            found: n,
            verified: n,
            ..Verification::default()
        }
    }

    #[test]
    fn a_clean_run_succeeds_with_the_contract_verdict() {
        let report = Report::new(
            &config(&["-n", "100"]),
            Duration::ZERO,
            &load(100, &[]),
            Some(Ok((verified(100), Vec::new()))),
            Duration::ZERO,
        );
        assert!(report.success);
        assert_eq!(report.exit_status(), Exit::Verified);
        assert_eq!(report.verdict, "c1: 100/100 stored, 0 lost, 0 duplicated");
        assert_eq!(report.throughput_per_second, 50.0);
        assert_eq!(report.latency_ms.count, 100);
        assert!(report.latency_ms.p50 <= report.latency_ms.p99);
        let bucketed: u64 = report.latency_histogram.iter().map(|b| b.count).sum();
        assert_eq!(bucketed, 100, "every latency falls in one bucket");
        // One acknowledgement every 20 ms for 2 s: 40 ms intervals.
        let timeline = &report.timeline;
        assert_eq!(timeline.interval_seconds, 0.04);
        assert_eq!(timeline.intervals.len(), 50);
        let first = &timeline.intervals[0];
        assert_eq!((first.acknowledged, first.errors), (2, 0));
        assert!((first.acknowledged_per_second - 50.0).abs() < 1e-9);
        let max = first.latency_ms.unwrap().max;
        assert!(
            (2.0..=2.125).contains(&max),
            "tasks 1 and 2 took 1 and 2 ms: {max}"
        );
        let p50 = timeline.intervals[49].latency_ms.unwrap().p50;
        assert!(
            (100.0..=107.0).contains(&p50),
            "task 100 took 100 ms: {p50}"
        );
        let total: u64 = timeline.intervals.iter().map(|i| i.acknowledged).sum();
        assert_eq!(total, 100);
        assert!(report
            .to_string()
            .ends_with("c1: 100/100 stored, 0 lost, 0 duplicated\n"));
    }

    #[test]
    fn the_html_report_embeds_the_json_report_whole_and_escaped() {
        let mut cfg = config(&["-n", "3"]);
        cfg.client_id = "</script><b>c1</b>".into();
        let report = Report::new(
            &cfg,
            Duration::ZERO,
            &load(3, &[]),
            Some(Ok((verified(3), Vec::new()))),
            Duration::ZERO,
        );
        let page = crate::html::render(&report);
        let open = r#"<script type="application/json" id="report">"#;
        let start = page.find(open).unwrap() + open.len();
        let end = start + page[start..].find("</script>").unwrap();
        let embedded = &page[start..end];
        assert!(!embedded.contains('<'));
        assert_eq!(
            embedded.replace("\\u003c", "<"),
            serde_json::to_string(&report).unwrap()
        );
        assert_eq!(
            page.matches("</script>").count(),
            2,
            "the data script and the page's"
        );
    }

    #[test]
    fn any_loss_duplicate_or_failure_fails() {
        let cfg = config(&["-n", "10"]);
        let lost = Verification {
            verified: 9,
            lost: 1,
            ..verified(9)
        };
        let r = Report::new(
            &cfg,
            Duration::ZERO,
            &load(10, &[]),
            Some(Ok((lost, Vec::new()))),
            Duration::ZERO,
        );
        assert_eq!((r.success, r.exit_status()), (false, Exit::Failed));
        assert_eq!(r.verdict, "c1: 9/10 stored, 1 lost, 0 duplicated");

        let dup = Verification {
            duplicated: 1,
            ..verified(10)
        };
        let r = Report::new(
            &cfg,
            Duration::ZERO,
            &load(10, &[]),
            Some(Ok((dup, Vec::new()))),
            Duration::ZERO,
        );
        assert!(!r.success);

        let timed_out = load(10, &[(3, TaskOutcome::Unknown)]);
        let r = Report::new(
            &cfg,
            Duration::ZERO,
            &timed_out,
            Some(Ok((verified(9), Vec::new()))),
            Duration::ZERO,
        );
        assert!(!r.success);
        assert_eq!((r.failed, r.unknown, r.acknowledged), (1, 1, 9));
        assert!(
            r.verdict
                .contains("1 not acknowledged (1 with unknown outcome)"),
            "{}",
            r.verdict
        );
    }

    #[test]
    fn skipped_and_failed_verification_are_not_zero_losses() {
        let cfg = config(&["-n", "5", "--no-verify"]);
        let r = Report::new(&cfg, Duration::ZERO, &load(5, &[]), None, Duration::ZERO);
        assert!(r.success, "--no-verify: acknowledged is enough");
        assert_eq!(r.lost, None);
        let json = serde_json::to_value(&r).unwrap();
        assert!(json["lost"].is_null());

        let error = VerifyError::Pagination { after: 3, got: 1 };
        let r = Report::new(
            &config(&["-n", "5"]),
            Duration::ZERO,
            &load(5, &[]),
            Some(Err(error)),
            Duration::ZERO,
        );
        assert!(!r.success);
        assert_eq!(r.verification, VerificationState::Failed);
        assert!(r.verify_error.unwrap().contains("despues_de"));
    }

    #[test]
    fn an_interrupted_timed_run_is_not_a_success_even_with_nothing_sent() {
        let mut nothing = load(0, &[]);
        nothing.interrupted = true;
        let r = Report::new(
            &config(&["-z", "10s"]),
            Duration::ZERO,
            &nothing,
            Some(Ok((verified(0), Vec::new()))),
            Duration::ZERO,
        );
        assert!(!r.success);
        assert!(r.verdict.ends_with("(interrupted)"), "{}", r.verdict);
    }

    #[test]
    fn an_interrupted_count_run_is_not_a_success() {
        let mut partial = load(4, &[]);
        partial.interrupted = true;
        let r = Report::new(
            &config(&["-n", "10"]),
            Duration::ZERO,
            &partial,
            Some(Ok((verified(4), Vec::new()))),
            Duration::ZERO,
        );
        assert!(!r.success);
        assert!(
            r.verdict.ends_with("(interrupted: 4 of 10 sent)"),
            "{}",
            r.verdict
        );
    }
}
