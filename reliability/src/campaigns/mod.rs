//! One module per campaign; each turns a [`Ctx`] into a [`Row`].

pub mod bad_input;
pub mod broken;
pub mod cluster;
pub mod crash;
pub mod durability;
pub mod power_cut;
pub mod processes;
pub mod reads;
pub mod torn;
pub mod write_failures;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::datafile::Audit;
use crate::{Campaign, Ctx, Row};

/// Runs one campaign.
pub fn run(campaign: Campaign, ctx: &Ctx) -> Row {
    match campaign {
        Campaign::Crash => crash::run(ctx),
        Campaign::Torn => torn::run(ctx),
        Campaign::Broken => broken::run(ctx),
        Campaign::WriteFailures => write_failures::run(ctx),
        Campaign::Processes => processes::run(ctx),
        Campaign::BadInput => bad_input::run(ctx),
        Campaign::Reads => reads::run(ctx),
        Campaign::PowerCut => power_cut::run(ctx),
        Campaign::Durability => durability::run(ctx),
        Campaign::Cluster => cluster::run(ctx),
    }
}

/// A runtime for the campaigns' own HTTP clients.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("cannot start a tokio runtime")
}

/// A temporary directory for one campaign's data files.
fn temp_dir(campaign: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("reliability-{campaign}-"))
        .tempdir()
        .expect("cannot create a temporary directory")
}

/// Audits repeated over a growing set of acknowledgements report each lost
/// or duplicated task once, however many checks see it.
#[derive(Debug, Default)]
struct Findings {
    lost: BTreeSet<String>,
    duplicated: BTreeSet<String>,
}

impl Findings {
    fn add(&mut self, row: &mut Row, context: &str, audit: Audit) {
        for lost in audit.lost {
            if self.lost.insert(lost.clone()) {
                row.lost += 1;
                row.fail(format!("{context}: LOST {lost}"));
            }
        }
        for dup in audit.duplicated {
            if self.duplicated.insert(dup.clone()) {
                row.duplicated += 1;
                row.fail(format!("{context}: DUPLICATED {dup}"));
            }
        }
    }
}

/// Reads the data file over and over while `running` holds. The contract
/// says it is a valid array at any moment: every read under a shared
/// `flock` (the lock the server's commits take exclusively) is a check that
/// can fail. Reads without the lock, as `cat` makes them, are counted too:
/// one that straddles an append sees the old closing `]` and then new bytes.
fn watch_file(path: PathBuf, running: Arc<AtomicBool>) -> std::thread::JoinHandle<FileWatch> {
    std::thread::spawn(move || {
        let mut watch = FileWatch::default();
        while running.load(Ordering::SeqCst) {
            watch.reads += 1;
            if let Err(e) = read_locked(&path).and_then(|b| crate::datafile::parse_tasks(&b)) {
                watch.invalid += 1;
                if watch.examples.len() < 3 {
                    watch.examples.push(e);
                }
            }
            watch.unlocked += 1;
            if crate::datafile::read_tasks(&path).is_err() {
                watch.unlocked_torn += 1;
            }
            // Pacing, so the reader does not take a core from the server.
            std::thread::sleep(Duration::from_millis(10));
        }
        watch
    })
}

/// The file's bytes, read under a shared `flock`.
fn read_locked(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    use std::os::fd::AsRawFd as _;
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    // SAFETY: flock(2) on a descriptor we own; released when it closes.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH) } != 0 {
        return Err(format!("flock: {}", std::io::Error::last_os_error()));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// What [`watch_file`] saw.
#[derive(Debug, Default)]
struct FileWatch {
    /// Reads under the shared lock...
    reads: u64,
    /// ...that did not find a valid array.
    invalid: u64,
    examples: Vec<String>,
    /// Reads without the lock...
    unlocked: u64,
    /// ...that did not find a valid array.
    unlocked_torn: u64,
}

impl FileWatch {
    fn record(self, row: &mut Row) {
        row.files_checked += self.reads;
        row.files_valid += self.reads - self.invalid;
        for e in self.examples {
            row.fail(format!(
                "read under flock while tasks were being written: {e}"
            ));
        }
        row.note(format!(
            "data file read under a shared flock {} times during the writes: {} invalid; \
             {} reads without the lock (as cat makes them): {} saw a torn view",
            self.reads, self.invalid, self.unlocked, self.unlocked_torn
        ));
    }
}
