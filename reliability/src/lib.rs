//! `reliability`: does the taskserver ever lose a task? Campaigns that try
//! every way a task can be lost, against the real `taskserver` binary, and
//! a table of what they found.
//!
//! The promise under test, from the contract: every acknowledged task (201,
//! or 200 for a recognised retry) is in `tasks.json` (on every node, in
//! cluster mode), exactly once; the file
//! is always a JSON array of tasks with unique, increasing ids; and every
//! rejected request leaves the file untouched.
//!
//! # Campaigns
//!
//! Each is a module of [`campaigns`] with a `run(&Ctx) -> Row`:
//!
//! - [`campaigns::crash`]: `kill -9` at a random moment while three client
//!   processes write; restart; audit.
//! - [`campaigns::torn`]: every cut of an appended batch, with and without
//!   garbage after it: the server starts and keeps every earlier task.
//! - [`campaigns::broken`]: files no crash produces: refused, named, untouched.
//! - [`campaigns::write_failures`]: a full tmpfs, a file-size limit, a file
//!   made immutable while serving: 503, reads go on, writes come back.
//! - [`campaigns::processes`]: four servers on one file under load.
//! - [`campaigns::bad_input`]: generated bad requests (proptest, in-process
//!   and over TCP) and slow clients.
//! - [`campaigns::reads`]: `GET /tareas` during heavy writes.
//! - [`campaigns::power_cut`]: simulated power cuts at every disk operation.
//! - [`campaigns::durability`]: the real server under strace: every answer
//!   after its task's `fdatasync`.
//! - [`campaigns::cluster`]: three nodes in cluster mode under kills,
//!   pauses, partitions, wipes and membership changes.
//!
//! # Layout
//!
//! - [`cli`]: the flags; [`report`]: rows and the table.
//! - [`harness`]: the binaries as processes, the HTTP client.
//! - [`datafile`]: the contract's checks of the data file, and the audit of
//!   acknowledged tasks against it.
//! - [`writer`]: the client processes that report each acknowledgement.
//!
//! # Randomness
//!
//! One seed, printed first, decides every random choice: each campaign
//! draws from its own generator seeded by the seed and its name, so
//! `--seed S --only NAME` replays one campaign.

// The campaigns' docs are for the reader of the code, and link the private
// items each one relies on (`cargo doc --document-private-items`).
#![allow(rustdoc::private_intra_doc_links)]

pub mod campaigns;
pub mod cli;
pub mod datafile;
pub mod harness;
pub mod report;
pub mod writer;

use std::time::Instant;

use proptest::test_runner::{RngAlgorithm, TestRng};

pub use cli::{Args, Campaign};
pub use harness::Tools;
pub use report::{Row, Table};

/// What every campaign gets.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The binaries under test.
    pub tools: Tools,
    /// `--full`: the real numbers rather than the smoke run.
    pub full: bool,
    /// The run's seed.
    pub seed: u64,
}

impl Ctx {
    /// `smoke` in the bounded run, `full` with `--full`.
    pub fn size<T>(&self, smoke: T, full: T) -> T {
        if self.full {
            full
        } else {
            smoke
        }
    }

    /// The campaign's own seed: the run's seed mixed with its name.
    pub fn seed_for(&self, campaign: &str) -> u64 {
        // FNV-1a: stable across Rust versions, unlike `DefaultHasher`.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in campaign.bytes() {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        self.seed ^ hash
    }

    /// The campaign's seeded random generator.
    pub fn rng(&self, campaign: &str) -> TestRng {
        seeded(self.seed_for(campaign))
    }
}

/// A generator whose every draw follows from `seed`.
pub fn seeded(seed: u64) -> TestRng {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
}

/// Runs the chosen campaigns in order; one row each.
pub fn run(ctx: &Ctx, only: &[Campaign]) -> Table {
    let mut table = Table::default();
    for campaign in Campaign::ALL {
        if !only.is_empty() && !only.contains(&campaign) {
            continue;
        }
        eprintln!(
            "==> {} (seed {})",
            campaign.name(),
            ctx.seed_for(campaign.name())
        );
        let started = Instant::now();
        let mut row = campaigns::run(campaign, ctx);
        row.elapsed = started.elapsed();
        eprintln!(
            "    {}: {} cases, {} acknowledged, {} lost, {} duplicated, {} failures in {:.1} s",
            row.campaign,
            row.cases,
            row.acknowledged,
            row.lost,
            row.duplicated,
            row.failure_count,
            row.elapsed.as_secs_f64()
        );
        table.rows.push(row);
    }
    table
}
