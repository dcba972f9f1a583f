//! Bad input: generated requests, and slow clients.
//!
//! - **In-process** (the bulk: 100,000+ cases in the full run): proptest
//!   generates requests ([`gen`]) and sends each to `taskserver::app` with
//!   `tower::ServiceExt::oneshot`, over a real data file.
//! - **Over TCP**, fewer cases, to the real binary: the same requests
//!   written by hand onto a socket (with `Content-Length` or chunked).
//! - **Slow clients** ([`slow`]): connections that trickle their headers or
//!   their body, or say nothing, while other clients are served.
//!
//! Every answer is judged by the [`model`]: the status must be one the
//! contract allows for that request (so never a 5xx, never a panic); an
//! error has a JSON `{"error": ...}` body; a rejected request leaves the
//! data file byte-for-byte as it was; a 201 appends exactly the task the
//! contract says was sent; a 200 (a recognised retry) changes nothing.
//! A failing case is shrunk by proptest to a minimal request and printed
//! with the seed that replays it.

pub mod gen;
pub mod model;
pub mod slow;
pub mod tcp;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use axum::body::Body;
use axum::http::{header, HeaderValue, Request};
use http_body_util::BodyExt as _;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use serde_json::Value;
use tower::ServiceExt as _;

use self::gen::Case;
use self::model::{Task, Verdict};
use crate::{Ctx, Row};

/// A data file grown past this is replaced by a fresh one, so that reading
/// it around every case stays cheap.
const ROTATE_AT: u64 = 64 * 1024;

pub fn run(ctx: &Ctx) -> Row {
    let mut row = Row::new("bad-input");
    let seed = ctx.seed_for("bad-input");
    in_process(&mut row, seed, ctx.size(3_000, 100_000));
    tcp::run(ctx, &mut row, seed, ctx.size(200, 3_000));
    slow::run(ctx, &mut row, ctx.size(20, 100));
    row
}

/// A proptest runner whose every choice comes from `seed`.
pub fn runner(seed: u64, cases: u32) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2_000,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, crate::seeded(seed))
}

/// Records what a proptest run found.
fn record(row: &mut Row, part: &str, seed: u64, result: Result<(), TestError<Case>>) {
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, case)) => row.fail(format!(
            "{part}: {reason}; minimal failing request (seed {seed}): {}",
            describe(&case)
        )),
        Err(TestError::Abort(reason)) => row.fail(format!("{part}: proptest aborted: {reason}")),
    }
}

/// A request, short enough to read.
pub fn describe(case: &Case) -> String {
    let show = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        if text.chars().count() > 300 {
            let head: String = text.chars().take(300).collect();
            format!("{head:?}... ({} bytes)", bytes.len())
        } else {
            format!("{text:?}")
        }
    };
    format!(
        "Content-Type {}, Idempotency-Key {}, Content-Length {}, body {}",
        case.content_type.as_deref().map_or("absent".into(), show),
        case.key.as_deref().map_or("absent".into(), show),
        if case.declare_length {
            "sent"
        } else {
            "absent"
        },
        show(&case.body)
    )
}

/// What the checks of one case share: the data file and the keys stored.
pub struct Target {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
    /// The task stored under each Idempotency-Key so far.
    pub keys: HashMap<String, Task>,
}

impl Target {
    /// The data file as it is before `case` is sent, and what the model
    /// allows the server to answer to it.
    pub fn before(&self, case: &Case) -> Result<(Vec<u8>, model::Verdict), String> {
        let bytes = std::fs::read(&self.path).map_err(|e| e.to_string())?;
        let verdict = model::judge(
            &model::Request {
                content_type: case.content_type.as_deref(),
                idempotency_key: case.key.as_deref(),
                body: &case.body,
            },
            &self.keys,
        );
        Ok((bytes, verdict))
    }

    pub fn new(name: &str) -> Target {
        let dir = super::temp_dir(name);
        let path = dir.path().join("tasks.json");
        Target {
            _dir: dir,
            path,
            keys: HashMap::new(),
        }
    }
}

/// Tally of one part of the campaign.
#[derive(Debug, Default)]
pub struct Tally {
    pub cases: u64,
    pub acknowledged: u64,
    pub files_checked: u64,
    pub statuses: BTreeMap<u16, u64>,
}

impl Tally {
    fn into_row(self, row: &mut Row, part: &str) {
        row.cases += self.cases;
        row.acknowledged += self.acknowledged;
        row.files_checked += self.files_checked;
        // A case whose file check failed stops the run and is a failure.
        row.files_valid += self.files_checked;
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        row.note(format!(
            "{part}: {} cases; answers {}",
            self.cases,
            statuses.join(", ")
        ));
    }
}

/// One answer, and the data file around it.
pub struct Observed<'a> {
    pub status: u16,
    pub body: &'a [u8],
    /// The data file before the request...
    pub before: &'a [u8],
    /// ...and after its answer.
    pub after: &'a [u8],
}

/// Checks one answer against the verdict and the data file before and
/// after; registers a stored task's key.
pub fn check_answer(
    verdict: &Verdict,
    key: Option<&[u8]>,
    seen: &Observed<'_>,
    target: &mut Target,
    tally: &mut Tally,
) -> Result<(), String> {
    let Observed {
        status,
        body,
        before,
        after,
    } = *seen;
    tally.cases += 1;
    tally.files_checked += 1;
    *tally.statuses.entry(status).or_default() += 1;
    let text = || String::from_utf8_lossy(body).into_owned();
    if !verdict.allowed.contains(&status) {
        return Err(format!(
            "answered {status} {}, the contract allows {:?}",
            text(),
            verdict.allowed
        ));
    }
    let json: Value = serde_json::from_slice(body)
        .map_err(|e| format!("{status} with a body that is not JSON ({e}): {}", text()))?;
    if status >= 400 {
        if json["error"].as_str().is_none_or(|m| m.len() <= 10) {
            return Err(format!("{status} without a JSON error message: {}", text()));
        }
        if after != before {
            return Err(format!("answered {status} but the data file changed"));
        }
        return Ok(());
    }
    let task = verdict
        .task
        .as_ref()
        .ok_or("a 2xx for a request that holds no task")?;
    let shown_as_sent = json["titulo"] == task.titulo
        && json["descripcion"] == serde_json::to_value(&task.descripcion).unwrap_or_default()
        && json["completada"] == task.completada
        && json["cliente"] == serde_json::to_value(&task.cliente).unwrap_or_default();
    if !shown_as_sent {
        return Err(format!(
            "answered {status} with {json}, not the task sent ({task:?})"
        ));
    }
    if status == 200 {
        return if after == before {
            Ok(())
        } else {
            Err("a retry answered 200 changed the data file".into())
        };
    }
    // 201: exactly this task appended, nothing else touched.
    let tasks = crate::datafile::parse_tasks(after).map_err(|e| format!("after a 201: {e}"))?;
    let last = tasks.last().ok_or("after a 201 the file is empty")?;
    let mut expected = json.clone();
    let key = key.and_then(model::key_of);
    if let (Some(k), Some(map)) = (&key, expected.as_object_mut()) {
        map.insert("idempotency_key".into(), Value::String(k.clone()));
    }
    if *last != expected {
        return Err(format!(
            "a 201 answered {json} but the file's last entry is {last}"
        ));
    }
    let kept = before.len().saturating_sub(3);
    if after.len() < kept || after[..kept] != before[..kept] {
        return Err("a 201 changed bytes before the end of the array".into());
    }
    if let Some(k) = key {
        target.keys.insert(k, task.clone());
    }
    tally.acknowledged += 1;
    Ok(())
}

/// The in-process half: `cases` generated requests through `oneshot`.
fn in_process(row: &mut Row, seed: u64, cases: u32) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let fresh = || -> Result<(Target, axum::Router), String> {
        let target = Target::new("bad-input");
        let store = taskserver::Store::open(&target.path).map_err(|e| e.to_string())?;
        Ok((target, taskserver::app(store)))
    };
    let (target, app) = match fresh() {
        Ok(t) => t,
        Err(e) => {
            row.fail(format!("cannot open a store: {e}"));
            return;
        }
    };
    let state = RefCell::new((target, app, Tally::default()));
    let mut runner = runner(seed, cases);
    let result = runner.run(&gen::case(), |case| {
        let mut state = state.borrow_mut();
        let size = std::fs::metadata(&state.0.path).map_or(0, |m| m.len());
        if size > ROTATE_AT {
            let (target, app) = fresh().map_err(TestCaseError::fail)?;
            state.0 = target;
            state.1 = app;
        }
        let (target, app, tally) = &mut *state;
        one_in_process(&rt, app, target, tally, &case).map_err(TestCaseError::fail)
    });
    record(row, "in-process", seed, result);
    let (_, _, tally) = state.into_inner();
    tally.into_row(row, "in-process (taskserver::app with oneshot)");
}

fn one_in_process(
    rt: &tokio::runtime::Runtime,
    app: &axum::Router,
    target: &mut Target,
    tally: &mut Tally,
    case: &Case,
) -> Result<(), String> {
    let (before, verdict) = target.before(case)?;
    let mut req = Request::post("/tareas");
    if let Some(ct) = &case.content_type {
        req = req.header(
            header::CONTENT_TYPE,
            HeaderValue::from_bytes(ct).map_err(|e| e.to_string())?,
        );
    }
    if let Some(key) = &case.key {
        req = req.header(
            "idempotency-key",
            HeaderValue::from_bytes(key).map_err(|e| e.to_string())?,
        );
    }
    if case.declare_length {
        req = req.header(header::CONTENT_LENGTH, case.body.len());
    }
    let req = req
        .body(Body::from(case.body.clone()))
        .map_err(|e| e.to_string())?;
    let (status, body) = rt.block_on(async {
        let res = app
            .clone()
            .oneshot(req)
            .await
            .unwrap_or_else(|never| match never {});
        let status = res.status().as_u16();
        let body = res.into_body().collect().await.map(|b| b.to_bytes());
        (status, body)
    });
    let body = body.map_err(|e| format!("answered {status} but its body failed: {e}"))?;
    let after = std::fs::read(&target.path).map_err(|e| e.to_string())?;
    let seen = Observed {
        status,
        body: &body,
        before: &before,
        after: &after,
    };
    check_answer(&verdict, case.key.as_deref(), &seen, target, tally)
}
