//! Power cuts, simulated: the store on a disk in memory that keeps, of what
//! was not synced, only what a real disk may keep (`taskserver`'s
//! `store::file::sim`), driven through generated scenarios of concurrent
//! batches, retries and cuts at any disk operation (`store::power_cut`).
//! After every cut a new store opens what is left, and the checks of
//! `store::power_cut::run` hold: every acknowledged task there exactly once
//! under its id, a valid array with increasing ids, repairs that keep the
//! dropped bytes in a side file.
//!
//! The same scenarios run in `cargo test` (with shrinking); here more of
//! them, from the campaign's seed, with the counts for RELIABILITY.md.

use std::sync::{Arc, Mutex};

use proptest::test_runner::TestCaseError;
use taskserver::store::power_cut::{self, Tally};

use super::bad_input::runner;
use crate::{Ctx, Row};

pub fn run(ctx: &Ctx) -> Row {
    let mut row = Row::new("power-cut");
    let cases = ctx.size(150, 2_000);
    let seed = ctx.seed_for("power-cut");
    let total = Arc::new(Mutex::new(Tally::default()));
    let mut runner = runner(seed, cases);
    let result = runner.run(&power_cut::scenario(16), |scenario| {
        let tally = power_cut::run(&scenario).map_err(TestCaseError::fail)?;
        let mut total = total.lock().unwrap_or_else(|p| p.into_inner());
        total.cuts += tally.cuts;
        total.repairs += tally.repairs;
        total.acknowledged += tally.acknowledged;
        total.replays += tally.replays;
        Ok(())
    });
    let total = *total.lock().unwrap_or_else(|p| p.into_inner());
    match result {
        Ok(()) => {}
        Err(proptest::test_runner::TestError::Fail(reason, scenario)) => {
            if reason.message().contains("LOST") {
                row.lost += 1;
            }
            row.fail(format!(
                "{reason}; minimal failing scenario (seed {seed}): {scenario:?}"
            ));
        }
        Err(proptest::test_runner::TestError::Abort(reason)) => {
            row.fail(format!("proptest aborted: {reason}"));
        }
    }
    row.cases = u64::from(cases);
    row.acknowledged = total.acknowledged;
    // Every recovery checks the file.
    row.files_checked = total.cuts;
    row.files_valid = if row.failure_count == 0 {
        total.cuts
    } else {
        0
    };
    row.note(format!(
        "{cases} scenarios: {} power cuts, each followed by a recovery and the checks; {} of them \
         repaired a torn file; {} acknowledged tasks and {} replays checked after every later cut",
        total.cuts, total.repairs, total.acknowledged, total.replays
    ));
    row
}
