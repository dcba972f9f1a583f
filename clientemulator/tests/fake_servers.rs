//! The emulator against fake servers that break the contract on purpose.
//! Each must be caught, with counts equal to the fake's own record of what it
//! did, and a run must never claim a success that did not happen.

mod common;

use std::time::Duration;

use clientemulator::Exit;
use common::{emulate, FakeServer, Fault};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_server_passes() {
    let fake = FakeServer::start(Fault::None).await;
    let report = emulate(&fake.url, &["-n", "50"]).await;
    let log = fake.log();
    assert!(report.success, "{report}");
    assert_eq!(report.exit_status(), Exit::Verified);
    assert_eq!(
        (report.sent, report.acknowledged, report.failed),
        (50, 50, 0)
    );
    assert_eq!(report.verified, Some(50));
    assert_eq!(log.tasks.len(), 50);
    assert_eq!(log.posts, 50, "no retry was needed");
    assert_eq!(report.status_counts.get("201"), Some(&50));
    assert_eq!(report.verdict, "tester: 50/50 stored, 0 lost, 0 duplicated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledging_without_storing_is_caught() {
    let fake = FakeServer::start(Fault::Forget { every: 1 }).await;
    let report = emulate(&fake.url, &["-n", "40"]).await;
    let log = fake.log();
    assert_eq!(log.forgotten, 40);
    assert!(log.tasks.is_empty());
    assert_eq!(report.acknowledged, 40, "the server did say 201 to each");
    assert_eq!(report.lost, Some(40));
    assert_eq!(report.verified, Some(0));
    assert!(!report.success);
    assert_eq!(report.exit_status(), Exit::Failed);
    assert_eq!(report.verdict, "tester: 0/40 stored, 40 lost, 0 duplicated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgetting_some_tasks_is_counted_exactly() {
    let fake = FakeServer::start(Fault::Forget { every: 3 }).await;
    let report = emulate(&fake.url, &["-n", "40", "-c", "8"]).await;
    let log = fake.log();
    assert!(log.forgotten > 0);
    assert_eq!(report.lost, Some(log.forgotten));
    assert_eq!(report.verified, Some(log.tasks.len() as u64));
    assert_eq!(report.exit_status(), Exit::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storing_some_tasks_twice_is_caught() {
    let fake = FakeServer::start(Fault::StoreTwice { every: 7 }).await;
    let report = emulate(&fake.url, &["-n", "100"]).await;
    let log = fake.log();
    assert!(log.doubled > 0);
    assert_eq!(report.acknowledged, 100);
    assert_eq!(report.duplicated, Some(log.doubled));
    assert_eq!(report.verified, Some(100 - log.doubled));
    assert_eq!(report.lost, Some(0));
    assert_eq!(report.exit_status(), Exit::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_500s_are_retried_and_the_rest_counted_as_failed() {
    let fake = FakeServer::start(Fault::Random500 {
        per_mille: 500,
        after_storing: false,
    })
    .await;
    let report = emulate(&fake.url, &["-n", "100", "--retries", "1"]).await;
    let log = fake.log();
    let answered = |status: u16| log.answered.get(&status).copied();
    assert!(answered(500).is_some_and(|n| n > 0));
    assert_eq!(report.status_counts.get("500").copied(), answered(500));
    assert_eq!(report.status_counts.get("201").copied(), answered(201));
    assert_eq!(report.requests, log.posts);
    assert_eq!(report.retries, log.posts - 100);
    assert_eq!(report.failed, log.unacked_keys() as u64);
    assert!(
        report.failed > 0,
        "half the attempts fail, one retry: some tasks must fail"
    );
    assert_eq!(
        report.unknown, 0,
        "a 500 is an answer, not an unknown outcome"
    );
    assert_eq!(report.acknowledged, log.stored_keys() as u64);
    assert_eq!(report.verified, Some(report.acknowledged));
    assert_eq!(report.stored_unacknowledged, Some(0));
    assert_eq!(
        report.exit_status(),
        Exit::Failed,
        "failed tasks fail the run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_after_a_stored_500_do_not_duplicate() {
    let fake = FakeServer::start(Fault::Random500 {
        per_mille: 300,
        after_storing: true,
    })
    .await;
    let report = emulate(&fake.url, &["-n", "100", "--retries", "3"]).await;
    let log = fake.log();
    assert!(report.retries > 0);
    assert_eq!(
        log.tasks.len(),
        100,
        "every task is stored on its first attempt"
    );
    assert_eq!(
        report.duplicated,
        Some(0),
        "the same Idempotency-Key on every retry"
    );
    assert!(
        report.status_counts.contains_key("200"),
        "some retry got the stored task back"
    );
    assert_eq!(report.failed, log.unacked_keys() as u64);
    assert_eq!(
        report.stored_unacknowledged,
        Some(log.stored_unacked_keys() as u64)
    );
    assert_eq!(report.verified, Some(report.acknowledged));
    assert_eq!(report.success, log.unacked_keys() == 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_ignores_idempotency_keys_is_caught_duplicating() {
    let fake = FakeServer::start(Fault::Random500IgnoringKeys { per_mille: 300 }).await;
    let report = emulate(&fake.url, &["-n", "100", "--retries", "3"]).await;
    let log = fake.log();
    let doubled = log.copies().values().filter(|&&n| n > 1).count() as u64;
    assert!(doubled > 0);
    assert_eq!(report.duplicated, Some(doubled));
    assert!(!report.success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_slower_than_the_timeout_leaves_outcomes_unknown() {
    let fake = FakeServer::start(Fault::Slow {
        delay: Duration::from_secs(5),
    })
    .await;
    let report = emulate(
        &fake.url,
        &["-n", "10", "--timeout", "300ms", "--retries", "1"],
    )
    .await;
    assert_eq!(report.acknowledged, 0);
    assert_eq!((report.failed, report.unknown), (10, 10));
    assert_eq!(
        report.errors.get("timeout"),
        Some(&20),
        "two attempts per task"
    );
    assert_eq!((report.requests, report.retries), (20, 10));
    // The server stored each task (once: the retry reused its key) and only
    // its answer was late; the read-back says so.
    assert_eq!(fake.log().tasks.len(), 10);
    assert_eq!(report.stored_unacknowledged, Some(10));
    assert_eq!(report.duplicated, Some(0));
    assert_eq!(report.lost, Some(0));
    assert!(!report.success);
    assert_eq!(report.exit_status(), Exit::Failed);
    assert!(
        report.elapsed_seconds < 4.5,
        "the timeout cut the 5 s wait: {}",
        report.elapsed_seconds
    );
    assert!(
        report
            .verdict
            .contains("10 not acknowledged (10 with unknown outcome)"),
        "{}",
        report.verdict
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_closing_each_connection_costs_no_retry() {
    let fake = FakeServer::start(Fault::CloseConnections).await;
    let report = emulate(&fake.url, &["-n", "60", "-c", "3"]).await;
    assert!(report.success, "{report}");
    assert_eq!(report.verified, Some(60));
    assert_eq!(
        (report.retries, report.requests),
        (0, 60),
        "reconnecting is not a retry"
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(fake.log().posts, 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_not_an_acknowledgement() {
    let fake = FakeServer::start(Fault::Redirect).await;
    let report = emulate(&fake.url, &["-n", "10"]).await;
    assert_eq!(fake.log().posts, 10, "a 3xx is final: no retry, no follow");
    assert_eq!(report.status_counts.get("302"), Some(&10));
    assert_eq!(
        (report.acknowledged, report.failed, report.unknown),
        (0, 10, 0)
    );
    assert_eq!(report.exit_status(), Exit::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_health_and_says_how_long() {
    let fake = FakeServer::start(Fault::LateHealth { n: 3 }).await;
    let report = emulate(&fake.url, &["-n", "5"]).await;
    assert!(fake.log().health_polls >= 4);
    // Three refusals mean at least three pauses: 50 + 100 + 200 ms.
    assert!(report.waited_seconds >= 0.3, "{}", report.waited_seconds);
    assert!(report
        .to_string()
        .contains("The server answered GET /health after"));
    assert!(report.success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_is_an_error_naming_the_url() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let config = common::config(&url, &["--wait", "300ms"]);
    let error = clientemulator::run(config, std::future::pending())
        .await
        .expect_err("nothing listens there");
    let message = error.to_string();
    assert_eq!(error.exit_status(), Exit::NoRun);
    assert!(message.contains(&format!("{url}/health")), "{message}");
    assert!(message.contains("--url"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_model_counts_queueing_in_latency() {
    // One worker, a server taking at least 50 ms, and a schedule of one task
    // every 20 ms: task k starts ~30k ms late, and that delay must show.
    let fake = FakeServer::start(Fault::Slow {
        delay: Duration::from_millis(50),
    })
    .await;
    let report = emulate(&fake.url, &["-n", "10", "-c", "1", "-q", "50"]).await;
    assert!(report.success, "{report}");
    assert!(report.latency_ms.min >= 50.0, "{:?}", report.latency_ms);
    // A closed model would report ~50 ms; from the schedule the last task
    // waited ~270 ms before it could even start.
    assert!(report.latency_ms.max >= 250.0, "{:?}", report.latency_ms);
    assert!(
        report.elapsed_seconds >= 0.45,
        "ten 50 ms answers one after another"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_run_verifies_everything_it_sent() {
    let fake = FakeServer::start(Fault::None).await;
    let report = emulate(&fake.url, &["-z", "300ms", "-c", "4"]).await;
    assert!(report.sent > 0);
    assert_eq!(report.planned, None);
    assert_eq!(report.sent, fake.log().tasks.len() as u64);
    assert_eq!(report.verified, Some(report.sent));
    assert!(report.elapsed_seconds >= 0.3);
    assert!(report.success, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_early_reports_what_was_sent_and_fails() {
    let fake = FakeServer::start(Fault::None).await;
    let config = common::config(&fake.url, &["-n", "1000", "-c", "2"]);
    let report = clientemulator::run(config, std::future::ready(()))
        .await
        .unwrap();
    assert!(report.interrupted);
    assert!(report.sent < 1000);
    assert_eq!(
        report.sent,
        fake.log().tasks.len() as u64,
        "tasks in flight finished"
    );
    assert_eq!(report.verified, Some(report.sent));
    assert!(
        !report.success,
        "fewer tasks than asked for is not a success"
    );
    assert!(report.verdict.contains("interrupted"), "{}", report.verdict);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_wakes_workers_waiting_for_their_slot() {
    let fake = FakeServer::start(Fault::None).await;
    // At one task per second the last of five is due in 4 s.
    let config = common::config(&fake.url, &["-n", "5", "-q", "1"]);
    let started = std::time::Instant::now();
    let report = clientemulator::run(config, std::future::ready(()))
        .await
        .unwrap();
    assert!(report.interrupted);
    assert!(report.sent <= 1);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(!report.success);
}
