//! One row per campaign, and the table they make.

use std::fmt;
use std::time::Duration;

/// Failures kept word for word per campaign; the rest are only counted.
const KEPT_FAILURES: usize = 12;

/// What one campaign found.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// The campaign's name, as `--only` takes it.
    pub campaign: &'static str,
    /// Cases tried: kills, cut files, broken files, requests, GETs...
    pub cases: u64,
    /// Tasks the server acknowledged (200 or 201) during the campaign.
    pub acknowledged: u64,
    /// Acknowledged tasks then missing, or stored under another id.
    pub lost: u64,
    /// Tasks stored more than once.
    pub duplicated: u64,
    /// Times the data file was checked against the contract...
    pub files_checked: u64,
    /// ...and found to be a valid array of tasks with unique ids (or, for
    /// broken files, byte-for-byte unchanged).
    pub files_valid: u64,
    /// Every other broken promise, the first few word for word.
    pub failures: Vec<String>,
    /// How many failures there were in all.
    pub failure_count: u64,
    /// Parts that could not run here, and why.
    pub skipped: Vec<String>,
    /// Figures worth keeping beside the table.
    pub notes: Vec<String>,
    /// Wall-clock time of the campaign.
    pub elapsed: Duration,
}

impl Row {
    pub fn new(campaign: &'static str) -> Row {
        Row {
            campaign,
            ..Row::default()
        }
    }

    /// Records a broken promise, and prints it at once so a long run shows
    /// failures as they happen.
    pub fn fail(&mut self, message: impl Into<String>) {
        let message = message.into();
        eprintln!("    FAIL [{}] {message}", self.campaign);
        self.failure_count += 1;
        if self.failures.len() < KEPT_FAILURES {
            self.failures.push(message);
        }
    }

    /// Checks a condition; a failure when it does not hold.
    pub fn check(&mut self, ok: bool, message: impl FnOnce() -> String) {
        if !ok {
            self.fail(message());
        }
    }

    /// Records one check of the data file.
    pub fn file_checked(&mut self, valid: Result<(), String>) {
        self.files_checked += 1;
        match valid {
            Ok(()) => self.files_valid += 1,
            Err(e) => self.fail(e),
        }
    }

    /// Adds lost and duplicated tasks found by an audit.
    pub fn add_audit(&mut self, context: &str, audit: &crate::datafile::Audit) {
        self.lost += audit.lost.len() as u64;
        self.duplicated += audit.duplicated.len() as u64;
        for lost in &audit.lost {
            self.fail(format!("{context}: LOST {lost}"));
        }
        for dup in &audit.duplicated {
            self.fail(format!("{context}: DUPLICATED {dup}"));
        }
    }

    pub fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        eprintln!("    {note}");
        self.notes.push(note);
    }

    pub fn skip(&mut self, why: impl Into<String>) {
        let why = why.into();
        eprintln!("    SKIPPED [{}] {why}", self.campaign);
        self.skipped.push(why);
    }

    /// Adds what a part of the campaign (run on another thread) found.
    pub fn merge(&mut self, part: Row) {
        self.cases += part.cases;
        self.acknowledged += part.acknowledged;
        self.lost += part.lost;
        self.duplicated += part.duplicated;
        self.files_checked += part.files_checked;
        self.files_valid += part.files_valid;
        self.failure_count += part.failure_count;
        for failure in part.failures {
            if self.failures.len() < KEPT_FAILURES {
                self.failures.push(failure);
            }
        }
        self.skipped.extend(part.skipped);
        self.notes.extend(part.notes);
    }

    /// No failure, nothing lost or duplicated, every file valid.
    pub fn passed(&self) -> bool {
        self.failure_count == 0
            && self.lost == 0
            && self.duplicated == 0
            && self.files_valid == self.files_checked
    }

    fn verdict(&self) -> &'static str {
        match (self.passed(), self.skipped.is_empty()) {
            (false, _) => "FAIL",
            (true, true) => "pass",
            (true, false) => "pass (part skipped)",
        }
    }
}

/// Every campaign's row, printed as a Markdown table with the details after.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub rows: Vec<Row>,
}

impl Table {
    pub fn passed(&self) -> bool {
        self.rows.iter().all(Row::passed)
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "| campaign | cases tried | acknowledged tasks | lost | duplicated | file valid after each case | result | time |"
        )?;
        writeln!(f, "|---|--:|--:|--:|--:|---|---|--:|")?;
        for r in &self.rows {
            let valid = if r.files_checked == 0 {
                "-".to_owned()
            } else if r.files_valid == r.files_checked {
                format!("yes ({}/{})", r.files_valid, r.files_checked)
            } else {
                format!("NO ({}/{})", r.files_valid, r.files_checked)
            };
            writeln!(
                f,
                "| {} | {} | {} | {} | {} | {} | {} | {:.1} s |",
                r.campaign,
                r.cases,
                r.acknowledged,
                r.lost,
                r.duplicated,
                valid,
                r.verdict(),
                r.elapsed.as_secs_f64()
            )?;
        }
        for r in &self.rows {
            if r.notes.is_empty() && r.failures.is_empty() && r.skipped.is_empty() {
                continue;
            }
            writeln!(f, "\n**{}**", r.campaign)?;
            for note in &r.notes {
                writeln!(f, "- {note}")?;
            }
            for why in &r.skipped {
                writeln!(f, "- SKIPPED: {why}")?;
            }
            for failure in &r.failures {
                writeln!(f, "- FAILURE: {failure}")?;
            }
            let unlisted = r.failure_count - r.failures.len() as u64;
            if unlisted > 0 {
                writeln!(f, "- ... and {unlisted} more failures")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_fails_on_any_broken_promise() {
        let mut row = Row::new("x");
        row.file_checked(Ok(()));
        assert!(row.passed());
        row.file_checked(Err("bad".into()));
        assert!(!row.passed());
        let mut row = Row::new("y");
        row.add_audit(
            "end",
            &crate::datafile::Audit {
                lost: vec!["t".into()],
                duplicated: vec![],
            },
        );
        assert!(!row.passed());
        assert_eq!(row.lost, 1);
        let table = Table { rows: vec![row] };
        let text = table.to_string();
        assert!(text.contains("| y | 0 | 0 | 1 | 0 | - | FAIL |"), "{text}");
        assert!(text.contains("FAILURE: end: LOST t"), "{text}");
    }
}
