//! One module per campaign; each turns a [`Ctx`] into a [`Row`].

pub mod bad_input;
pub mod broken;
pub mod crash;
pub mod processes;
pub mod reads;
pub mod torn;
pub mod write_failures;

use std::collections::BTreeSet;

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
