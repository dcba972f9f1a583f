//! Reading the tasks back and judging each one of this run.
//!
//! The server is read page by page with `GET /tareas?despues_de=N&limite=M`
//! until an empty page, so the client never holds more than one page and a
//! server that caps pages below `M` is still read to the end. Each stored
//! task is matched to this run by the run id in its `descripcion`; tasks of
//! other clients and of earlier runs are counted as read and otherwise
//! ignored. Per task of the run, two bits (seen once, seen again) say how
//! many copies the server holds.

use std::fmt::Write as _;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use crate::cli::Config;
use crate::client::{describe, description_prefix};
use crate::stats::{BitSet, Ledger, TaskOutcome};

/// What the read-back found, for this client and run only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verification {
    /// Tasks read from the server, of every client and run.
    pub tasks_read: u64,
    /// Stored tasks that carry this run's id, copies included.
    pub found: u64,
    /// Acknowledged and stored exactly once.
    pub verified: u64,
    /// Acknowledged but not stored.
    pub lost: u64,
    /// Stored more than once, acknowledged or not.
    pub duplicated: u64,
    /// Not acknowledged (refused or no answer) yet stored.
    pub stored_unacknowledged: u64,
    /// Stored tasks carrying this run's id that match no task it sent:
    /// another title or client, a number never sent, or `completada` true.
    pub unexpected: u64,
}

/// Why the tasks could not be read back. The run then cannot prove anything
/// and fails, even if every task was acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("reading {url} failed: {reason}")]
    Request { url: Url, reason: String },
    #[error("{url} answered HTTP {status}: {body}")]
    Status { url: Url, status: u16, body: String },
    #[error("{url} did not return a JSON array of tasks: {reason}")]
    Parse { url: Url, reason: String },
    #[error(
        "the server ignored despues_de: asked for tasks after id {after}, got id {got}; \
         reading back needs GET /tareas?despues_de=N&limite=M as in the contract"
    )]
    Pagination { after: u64, got: u64 },
}

/// The fields of a stored task that verification looks at; the server may
/// store more, which are ignored.
#[derive(Debug, Deserialize)]
pub struct StoredTask {
    /// Drives pagination: the next page starts after the last id seen.
    pub id: u64,
    /// Must be exactly the title that was sent.
    #[serde(default)]
    pub titulo: String,
    /// Carries the run id and task number that identify this run's tasks.
    #[serde(default)]
    pub descripcion: Option<String>,
    /// Must still be false: the emulator never completes a task.
    #[serde(default)]
    pub completada: bool,
    /// Must be this client's id.
    #[serde(default)]
    pub cliente: Option<String>,
}

/// A page read can take far longer than one small POST on a large file, so
/// reads get at least this long whatever `--timeout` says.
const MIN_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What the read-back of one server of several found.
#[derive(Debug)]
pub struct NodeCheck {
    /// The server's base URL.
    pub url: Url,
    /// Its tally, or why it could not be read.
    pub result: Result<Verification, VerifyError>,
}

/// Reads every server back. With one server, its verification. With
/// several (the nodes of a cluster), each one that answers must hold every
/// acknowledged task exactly once: the tally is the worst of them, and a
/// node that cannot be read (one a student just killed) is reported, and
/// fails the run only if no node can be read.
pub async fn read_back_all(
    http: &reqwest::Client,
    config: &Config,
    ledger: &Ledger,
) -> Result<(Verification, Vec<NodeCheck>), VerifyError> {
    let mut checks = Vec::new();
    for server in &config.servers {
        let result = read_back(http, &server.tasks_url, config, ledger).await;
        checks.push(NodeCheck {
            url: server.base_url.clone(),
            result,
        });
    }
    let mut worst: Option<Verification> = None;
    for v in checks.iter().filter_map(|c| c.result.as_ref().ok()) {
        worst = Some(match worst {
            None => *v,
            Some(w) => Verification {
                tasks_read: w.tasks_read.max(v.tasks_read),
                found: w.found.max(v.found),
                verified: w.verified.min(v.verified),
                lost: w.lost.max(v.lost),
                duplicated: w.duplicated.max(v.duplicated),
                stored_unacknowledged: w.stored_unacknowledged.max(v.stored_unacknowledged),
                unexpected: w.unexpected.max(v.unexpected),
            },
        });
    }
    match worst {
        Some(worst) => Ok((worst, if checks.len() > 1 { checks } else { Vec::new() })),
        None => Err(checks
            .into_iter()
            .find_map(|c| c.result.err())
            .expect("at least one server")),
    }
}

/// Reads every task stored at `tasks_url` and tallies this run's.
pub async fn read_back(
    http: &reqwest::Client,
    tasks_url: &Url,
    config: &Config,
    ledger: &Ledger,
) -> Result<Verification, VerifyError> {
    let mut tally = Tally::new(&config.client_id, &config.run_id, ledger.issued());
    let mut after = 0u64;
    loop {
        let mut url = tasks_url.clone();
        url.query_pairs_mut()
            .append_pair("despues_de", &after.to_string())
            .append_pair("limite", &config.page_size.to_string());
        let page = get_page(http, &url, config).await?;
        if page.is_empty() {
            return Ok(tally.finish(ledger));
        }
        for task in &page {
            // Without this check a server that ignores `despues_de` would be
            // read again and again forever.
            if task.id <= after {
                return Err(VerifyError::Pagination {
                    after,
                    got: task.id,
                });
            }
            after = task.id;
            tally.observe(task);
        }
    }
}

/// One page, retried like a task on timeouts, connection errors and 5xx.
async fn get_page(
    http: &reqwest::Client,
    url: &Url,
    config: &Config,
) -> Result<Vec<StoredTask>, VerifyError> {
    let mut attempt = 0;
    loop {
        let error = match http
            .get(url.clone())
            .timeout(config.timeout.max(MIN_READ_TIMEOUT))
            .send()
            .await
        {
            Ok(response) if response.status().is_success() => {
                let bytes = response.bytes().await.map_err(|e| VerifyError::Request {
                    url: url.clone(),
                    reason: describe(&e),
                })?;
                return serde_json::from_slice(&bytes).map_err(|e| VerifyError::Parse {
                    url: url.clone(),
                    reason: e.to_string(),
                });
            }
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.text().await.unwrap_or_default();
                let error = VerifyError::Status {
                    url: url.clone(),
                    status,
                    body: body.chars().take(200).collect(),
                };
                if status < 500 {
                    return Err(error);
                }
                error
            }
            Err(e) => VerifyError::Request {
                url: url.clone(),
                reason: describe(&e),
            },
        };
        if attempt >= config.retries {
            return Err(error);
        }
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(100) * attempt).await;
    }
}

/// Counts copies of this run's tasks as pages arrive, then judges them
/// against the ledger. Kept free of I/O so its rules can be tested directly.
#[derive(Debug)]
pub struct Tally {
    /// Stored tasks of this run are recognised by this `descripcion` prefix.
    prefix: String,
    /// Expected `cliente`.
    client_id: String,
    /// Expected ` de CLIENT` end of the title, built once.
    title_suffix: String,
    /// Task numbers above this were never handed out.
    issued: u64,
    /// Tasks seen at least once, by index.
    once: BitSet,
    /// Tasks seen at least twice, by index.
    again: BitSet,
    /// Reused buffer for the expected title, so matching allocates nothing.
    scratch: String,
    /// Counters filled by `observe`.
    counts: Verification,
}

impl Tally {
    pub fn new(client_id: &str, run_id: &str, issued: u64) -> Self {
        Self {
            prefix: description_prefix(run_id),
            client_id: client_id.to_owned(),
            title_suffix: format!(" de {client_id}"),
            issued,
            once: BitSet::with_capacity(issued),
            again: BitSet::default(),
            scratch: String::new(),
            counts: Verification::default(),
        }
    }

    pub fn observe(&mut self, task: &StoredTask) {
        self.counts.tasks_read += 1;
        let Some(number) = task
            .descripcion
            .as_deref()
            .and_then(|d| d.strip_prefix(self.prefix.as_str()))
        else {
            return;
        };
        self.counts.found += 1;
        match self.matching_seq(number, task) {
            Some(seq) => {
                if !self.once.insert(seq - 1) {
                    self.again.insert(seq - 1);
                }
            }
            None => self.counts.unexpected += 1,
        }
    }

    /// The task number when the stored task is exactly what was sent.
    fn matching_seq(&mut self, number: &str, task: &StoredTask) -> Option<u64> {
        // Digits only, no sign or leading zero: the exact text that was sent.
        if number.is_empty()
            || !number.bytes().all(|b| b.is_ascii_digit())
            || number.starts_with('0')
        {
            return None;
        }
        let seq: u64 = number.parse().ok()?;
        if seq > self.issued
            || task.completada
            || task.cliente.as_deref() != Some(self.client_id.as_str())
        {
            return None;
        }
        self.scratch.clear();
        let _ = write!(self.scratch, "Tarea {seq}{}", self.title_suffix);
        (task.titulo == self.scratch).then_some(seq)
    }

    /// Judges every task of the run from its outcome and its stored copies.
    pub fn finish(self, ledger: &Ledger) -> Verification {
        let mut counts = self.counts;
        for index in 0..self.issued {
            let copies = u8::from(self.once.contains(index)) + u8::from(self.again.contains(index));
            let outcome = ledger.outcome(index);
            if copies == 2 {
                counts.duplicated += 1;
            }
            match (outcome, copies) {
                (TaskOutcome::Acknowledged, 0) => counts.lost += 1,
                (TaskOutcome::Acknowledged, 1) => counts.verified += 1,
                (TaskOutcome::Acknowledged, _) => {}
                (TaskOutcome::Failed | TaskOutcome::Unknown, 0) => {}
                (TaskOutcome::Failed | TaskOutcome::Unknown, _) => {
                    counts.stored_unacknowledged += 1
                }
                // A task that never went out cannot be stored; if it is, the
                // server invented it.
                (TaskOutcome::NotSent, 0) => {}
                (TaskOutcome::NotSent, n) => counts.unexpected += u64::from(n),
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(id: u64, client: &str, run: &str, seq: u64) -> StoredTask {
        StoredTask {
            id,
            titulo: crate::client::title(seq, client),
            descripcion: Some(format!("{}{seq}", description_prefix(run))),
            completada: false,
            cliente: Some(client.to_owned()),
        }
    }

    #[test]
    fn counts_verified_lost_duplicated_and_ignores_others() {
        let mut ledger = Ledger::default();
        ledger.mark(3, TaskOutcome::Failed); // task 4: refused, not stored
        ledger.mark(4, TaskOutcome::Unknown); // task 5: timed out, stored anyway
        ledger.set_issued(6);
        let mut tally = Tally::new("c1", "run1", 6);
        let mut id = 0;
        let mut next = || {
            id += 1;
            id
        };
        for seq in [1, 2, 2, 5, 6] {
            tally.observe(&stored(next(), "c1", "run1", seq));
        }
        // Another client, an earlier run of the same client, a foreign task.
        tally.observe(&stored(next(), "c2", "run2", 3));
        tally.observe(&stored(next(), "c1", "run0", 3));
        tally.observe(&StoredTask {
            id: next(),
            titulo: "comprar pan".into(),
            descripcion: None,
            completada: false,
            cliente: None,
        });
        let v = tally.finish(&ledger);
        assert_eq!(v.tasks_read, 8);
        assert_eq!(v.found, 5);
        assert_eq!(
            v.verified, 2,
            "tasks 1 and 6 are acknowledged and stored once"
        );
        assert_eq!(v.lost, 1, "task 3 was acknowledged and is missing");
        assert_eq!(v.duplicated, 1, "task 2 is stored twice");
        assert_eq!(v.stored_unacknowledged, 1, "task 5 timed out but is stored");
        assert_eq!(v.unexpected, 0);
    }

    #[test]
    fn altered_or_invented_tasks_are_unexpected() {
        let mut ledger = Ledger::default();
        ledger.set_issued(2);
        let mut tally = Tally::new("c1", "r", 2);
        let mut altered = stored(1, "c1", "r", 1);
        altered.titulo = "Tarea 1 de otro".into();
        tally.observe(&altered);
        let mut done = stored(2, "c1", "r", 2);
        done.completada = true;
        tally.observe(&done);
        tally.observe(&stored(3, "c1", "r", 3)); // never issued
        let mut padded = stored(4, "c1", "r", 1);
        padded.descripcion = Some(format!("{}01", description_prefix("r")));
        tally.observe(&padded);
        let v = tally.finish(&ledger);
        assert_eq!(v.unexpected, 4);
        assert_eq!(v.lost, 2, "neither acknowledged task is stored as sent");
        assert_eq!(v.verified, 0);
    }
}
