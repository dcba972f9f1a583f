//! What happened when: acknowledgements, failures and latency over the run's
//! time, in memory that does not grow with the run's length.
//!
//! The run is cut into equal intervals, 10 ms wide to begin with. When an
//! answer would fall past the last of [`MAX_INTERVALS`] intervals, every pair
//! of neighbours is merged and the width doubles, so a 100-task burst keeps
//! 10 ms detail, a minute's run has intervals of 1.28 s and an hour's of
//! 82 s: between 32 and 64 points for a chart, whatever the length (enough
//! answers in each for its rate and percentiles to mean something). Each interval
//! holds two counters and a small latency histogram (HDR with one
//! significant digit, under 2 KB), allocated only once something was
//! acknowledged in it.
//!
//! Intervals are placed by the time the *answer* arrived, counted from the
//! start of sending, as the "over time" charts of k6 or Gatling are.

use std::time::Duration;

use hdrhistogram::Histogram;

/// The most intervals a timeline keeps (between half of it and all of it
/// once the run is longer than `MAX_INTERVALS` × 10 ms).
pub const MAX_INTERVALS: usize = 64;

/// The width of an interval before any doubling.
const START_WIDTH_MICROS: u64 = 10_000;

/// As the run's main histogram (see `stats.rs`): microseconds, up to an hour.
const MAX_MICROS: u64 = 3_600_000_000;

/// Answers by the interval of the run they arrived in.
#[derive(Debug, Clone)]
pub struct Timeline {
    /// Width of every interval, in microseconds: `START_WIDTH_MICROS` × 2ᵏ.
    width_us: u64,
    /// Interval `i` covers `[i × width, (i + 1) × width)` from the start.
    intervals: Vec<Interval>,
}

/// What arrived during one interval.
#[derive(Debug, Clone, Default)]
pub struct Interval {
    /// Tasks acknowledged (200 or 201).
    pub acknowledged: u64,
    /// Attempts that were not acknowledged: any other status, or no answer.
    pub errors: u64,
    /// Latency of the acknowledged ones, in microseconds; `None` while
    /// there are none, so that quiet intervals cost no histogram.
    latency_us: Option<Histogram<u32>>,
}

impl Interval {
    /// The latency at `quantile` (0 to 1) in this interval, in microseconds.
    pub fn latency_at(&self, quantile: f64) -> Option<u64> {
        let h = self.latency_us.as_ref()?;
        Some(h.highest_equivalent(h.value_at_quantile(quantile)))
    }

    fn add(&mut self, other: &Interval) {
        self.acknowledged += other.acknowledged;
        self.errors += other.errors;
        if let Some(theirs) = &other.latency_us {
            match &mut self.latency_us {
                Some(ours) => ours
                    .add(theirs)
                    .expect("interval histograms share their bounds"),
                None => self.latency_us = Some(theirs.clone()),
            }
        }
    }
}

fn interval_histogram() -> Histogram<u32> {
    Histogram::new_with_bounds(1, MAX_MICROS, 1).expect("static histogram bounds are valid")
}

impl Default for Timeline {
    fn default() -> Self {
        Self {
            width_us: START_WIDTH_MICROS,
            intervals: Vec::new(),
        }
    }
}

impl Timeline {
    /// An acknowledgement that arrived `at` after the start, `latency` after
    /// its task began.
    pub fn acknowledged(&mut self, at: Duration, latency: Duration) {
        let interval = self.interval(at);
        interval.acknowledged += 1;
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        interval
            .latency_us
            .get_or_insert_with(interval_histogram)
            .saturating_record(micros.clamp(1, MAX_MICROS));
    }

    /// An attempt that was not acknowledged, answered (or given up) `at`.
    pub fn error(&mut self, at: Duration) {
        self.interval(at).errors += 1;
    }

    /// The width of each interval.
    pub fn width(&self) -> Duration {
        Duration::from_micros(self.width_us)
    }

    /// The intervals from the start, up to the last one anything arrived in.
    pub fn intervals(&self) -> &[Interval] {
        &self.intervals
    }

    /// Adds another timeline (another load thread's) into this one; the
    /// finer of the two is coarsened to the other's width first.
    pub fn merge(&mut self, other: &Timeline) {
        let mut other = other.clone();
        while other.width_us < self.width_us {
            other.coarsen();
        }
        while self.width_us < other.width_us {
            self.coarsen();
        }
        if self.intervals.len() < other.intervals.len() {
            self.intervals
                .resize_with(other.intervals.len(), Interval::default);
        }
        for (ours, theirs) in self.intervals.iter_mut().zip(&other.intervals) {
            ours.add(theirs);
        }
    }

    fn interval(&mut self, at: Duration) -> &mut Interval {
        let micros = u64::try_from(at.as_micros()).unwrap_or(u64::MAX);
        let mut index = micros / self.width_us;
        while index >= MAX_INTERVALS as u64 {
            self.coarsen();
            index = micros / self.width_us;
        }
        let index = index as usize;
        if index >= self.intervals.len() {
            self.intervals.resize_with(index + 1, Interval::default);
        }
        &mut self.intervals[index]
    }

    /// Doubles the width: intervals 2i and 2i+1 become interval i.
    fn coarsen(&mut self) {
        let merged = self
            .intervals
            .chunks(2)
            .map(|pair| {
                let mut one = pair[0].clone();
                if let Some(second) = pair.get(1) {
                    one.add(second);
                }
                one
            })
            .collect();
        self.intervals = merged;
        self.width_us *= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn answers_land_in_the_interval_they_arrived_in() {
        let mut t = Timeline::default();
        t.acknowledged(ms(1), ms(5));
        t.acknowledged(ms(9), ms(7));
        t.error(ms(25));
        assert_eq!(t.width(), ms(10));
        let i = t.intervals();
        assert_eq!(i.len(), 3);
        assert_eq!((i[0].acknowledged, i[0].errors), (2, 0));
        assert_eq!((i[1].acknowledged, i[1].errors), (0, 0));
        assert_eq!((i[2].acknowledged, i[2].errors), (0, 1));
        assert!(
            i[1].latency_at(0.5).is_none(),
            "no histogram where nothing was acknowledged"
        );
        // One significant digit: 7 ms reads back within 1/16 of itself.
        let max = i[0].latency_at(1.0).unwrap();
        assert!((7_000..=7_000 + 7_000 / 16).contains(&max), "{max}");
    }

    #[test]
    fn a_long_run_doubles_the_width_and_keeps_every_count() {
        let mut t = Timeline::default();
        // One acknowledgement every 5 ms for 60 s: 12,000 answers.
        for k in 0..12_000u64 {
            t.acknowledged(ms(5 * k), ms(1 + k % 10));
        }
        assert!(t.intervals().len() <= MAX_INTERVALS);
        assert!(t.intervals().len() > MAX_INTERVALS / 2);
        assert_eq!(
            t.width(),
            ms(10 * 128),
            "60 s over at most 64 intervals of 10 ms × 2^k"
        );
        let total: u64 = t.intervals().iter().map(|i| i.acknowledged).sum();
        assert_eq!(total, 12_000);
        assert_eq!(
            t.intervals()[0].acknowledged,
            256,
            "1,280 ms at one per 5 ms"
        );
    }

    #[test]
    fn merging_timelines_of_different_widths_adds_them_at_the_coarser_one() {
        let mut short = Timeline::default();
        short.acknowledged(ms(15), ms(2));
        short.error(ms(15));
        let mut long = Timeline::default();
        long.acknowledged(ms(5_000), ms(3));
        long.acknowledged(ms(1), ms(4));
        assert_eq!(long.width(), ms(80));
        short.merge(&long);
        assert_eq!(short.width(), ms(80));
        let i = short.intervals();
        assert_eq!(i.len(), 63);
        assert_eq!((i[0].acknowledged, i[0].errors), (2, 1));
        assert_eq!(i[62].acknowledged, 1);
        let total: u64 = i.iter().map(|i| i.acknowledged).sum();
        assert_eq!(total, 3);
    }
}
