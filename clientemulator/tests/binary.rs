//! The `clientemulator` binary as scripts and docker-compose use it: env
//! vars, exit statuses, the human summary and the `--json` report, parsed
//! into a struct written from the contract (not the crate's own type, so a
//! renamed field breaks this test).

mod common;

use std::collections::BTreeMap;
use std::process::Output;

use common::{FakeServer, Fault, RealServer};
use serde::Deserialize;

/// The `--json` fields the contract promises.
#[derive(Debug, Deserialize)]
struct ContractReport {
    client_id: String,
    run_id: String,
    sent: u64,
    acknowledged: u64,
    failed: u64,
    verified: u64,
    lost: u64,
    duplicated: u64,
    elapsed_seconds: f64,
    throughput_per_second: f64,
    latency_ms: Latency,
    status_counts: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
}

#[derive(Debug, Deserialize)]
struct Latency {
    mean: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

/// The variables the binary reads its settings from: removed from every run
/// here, so that the test's own environment never changes what it checks.
const SETTINGS_FROM_ENV: [&str; 5] = [
    "SERVER_URL",
    "TASKS",
    "CONCURRENCY",
    "CLIENT_ID",
    "HTML_REPORT",
];

async fn clientemulator(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_clientemulator"));
    command.args(args);
    for var in SETTINGS_FROM_ENV {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    command.output().await.expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_report_from_env_configuration_is_consistent() {
    let server = RealServer::start().await;
    let output = clientemulator(
        &["--json"],
        &[
            ("SERVER_URL", &server.url),
            ("TASKS", "60"),
            ("CONCURRENCY", "12"),
            ("CLIENT_ID", "client7"),
        ],
    )
    .await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = stdout(&output);
    assert_eq!(
        text.lines().count(),
        1,
        "one JSON object on one line: {text}"
    );
    let report: ContractReport = serde_json::from_str(&text).unwrap();

    assert_eq!(report.client_id, "client7");
    assert_eq!(
        (report.sent, report.acknowledged, report.failed),
        (60, 60, 0)
    );
    assert_eq!(
        (report.verified, report.lost, report.duplicated),
        (60, 0, 0)
    );
    assert_eq!(report.status_counts.values().sum::<u64>(), 60);
    assert_eq!(report.status_counts.get("201"), Some(&60));
    assert!(report.errors.is_empty());
    let expected = report.acknowledged as f64 / report.elapsed_seconds;
    assert!((report.throughput_per_second - expected).abs() <= expected * 1e-9);
    let l = &report.latency_ms;
    assert!(
        0.0 < l.p50 && l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max,
        "{l:?}"
    );
    assert!(0.0 < l.mean && l.mean <= l.max);
    assert!(
        l.max <= report.elapsed_seconds * 1000.0 + 1.0,
        "no task took longer than the run"
    );

    let tasks = server.stop().await;
    let mine = tasks
        .iter()
        .filter(|t| {
            t["descripcion"]
                .as_str()
                .is_some_and(|d| d.contains(&report.run_id))
        })
        .count();
    assert_eq!(
        mine, 60,
        "the run id in the report is the one in the data file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_report_of_a_losing_server_exits_1() {
    let fake = FakeServer::start(Fault::Forget { every: 4 }).await;
    let output = clientemulator(
        &["--url", &fake.url, "-n", "40", "--client-id", "c", "--json"],
        &[],
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    let report: ContractReport = serde_json::from_str(&stdout(&output)).unwrap();
    let forgotten = fake.log().forgotten;
    assert!(forgotten > 0);
    assert_eq!(report.lost, forgotten);
    assert_eq!(report.verified, 40 - forgotten);
    assert_eq!(report.acknowledged, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn human_summary_ends_with_the_verdict_and_has_no_escape_codes() {
    let server = RealServer::start().await;
    let output = clientemulator(
        &["--url", &server.url, "-n", "25", "--client-id", "client1"],
        &[],
    )
    .await;
    assert_eq!(output.status.code(), Some(0));
    let text = stdout(&output);
    assert_eq!(
        text.lines().last(),
        Some("client1: 25/25 stored, 0 lost, 0 duplicated"),
        "{text}"
    );
    assert!(
        text.contains("Latency (ms)") && text.contains("Status codes  201: 25"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "stdout stays plain text");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_usage_and_an_absent_server_exit_2() {
    for args in [
        &["-c", "0"][..],
        &["--url", "https://example.test"],
        &["--tasks", "many"],
    ] {
        let output = clientemulator(args, &[]).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let output = clientemulator(&["--url", &url, "--wait", "0.3"], &[]).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&url) && stderr.contains("--url"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_verify_succeeds_on_acknowledgements_alone() {
    let fake = FakeServer::start(Fault::Forget { every: 1 }).await;
    let output = clientemulator(
        &[
            "--url",
            &fake.url,
            "-n",
            "10",
            "--no-verify",
            "--json",
            "--client-id",
            "c",
        ],
        &[],
    )
    .await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "--no-verify: 0 means all acknowledged"
    );
    let report: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(report["acknowledged"], 10);
    assert!(report["lost"].is_null(), "not checked is not zero lost");
    assert_eq!(report["verification"], "skipped");
}

/// Runs the binary under `prlimit`, with `soft` and `hard` limits of open files.
async fn clientemulator_with_open_files(soft: u64, hard: u64, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new("prlimit");
    command
        .arg(format!("--nofile={soft}:{hard}"))
        .arg(env!("CARGO_BIN_EXE_clientemulator"))
        .args(args);
    for var in SETTINGS_FROM_ENV {
        command.env_remove(var);
    }
    command
        .output()
        .await
        .expect("prlimit (util-linux) runs the binary")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soft_open_files_limit_is_raised_to_the_hard_one() {
    let server = RealServer::start().await;
    // 300 connections do not fit a soft limit of 256, but fit its hard limit.
    let args = [
        "--url",
        &server.url,
        "-n",
        "300",
        "-c",
        "300",
        "--client-id",
        "c",
    ];
    let output = clientemulator_with_open_files(256, 4096, &args).await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout(&output).contains("c: 300/300 stored"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_beyond_the_hard_open_files_limit_is_refused_with_exit_2() {
    let server = RealServer::start().await;
    let args = ["--url", &server.url, "-n", "500", "--client-id", "c"];
    let output = clientemulator_with_open_files(128, 128, &args).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("-c 500 needs 500 connections")
            && stderr.contains("only 128 files")
            && stderr.contains("ulimit -n"),
        "{stderr}"
    );
    assert!(
        server.stop().await.is_empty(),
        "nothing is sent before the refusal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_report_embeds_the_json_report_and_an_unwritable_path_exits_1() {
    let server = RealServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    let output = clientemulator(
        &[
            "--url",
            &server.url,
            "-n",
            "50",
            "-c",
            "5",
            "--client-id",
            "c",
            "--json",
            "--html",
            page.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let json = stdout(&output);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!doctype html>"));
    assert!(
        html.contains(&json.trim().replace('<', "\\u003c")),
        "the page carries the very report printed on stdout"
    );

    let nowhere = dir.path().join("no such directory").join("report.html");
    let output = clientemulator(
        &[
            "--url",
            &server.url,
            "-n",
            "5",
            "--client-id",
            "c",
            "--html",
            nowhere.to_str().unwrap(),
        ],
        &[("HTML_REPORT", "ignored: the flag wins")],
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        stdout(&output).ends_with("c: 5/5 stored, 0 lost, 0 duplicated\n"),
        "the report on stdout is still whole"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("writing the HTML report to") && stderr.contains("no such directory"),
        "{stderr}"
    );
}
