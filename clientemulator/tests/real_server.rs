//! The emulator in-process against the real taskserver, also in-process, on
//! 127.0.0.1:0 over a data file in a temporary directory.

mod common;

use clientemulator::Exit;
use common::{emulate, RealServer};
use serde_json::Value;

fn titles_of<'a>(tasks: &'a [Value], client: &str) -> Vec<&'a str> {
    tasks
        .iter()
        .filter(|t| t["cliente"] == client)
        .map(|t| t["titulo"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_tasks_at_once_are_all_verified() {
    let server = RealServer::start().await;
    let report = emulate(&server.url, &["-n", "100"]).await;
    assert!(report.success, "{report}");
    assert_eq!(report.exit_status(), Exit::Verified);
    assert_eq!(report.concurrency, 100, "-c defaults to --tasks");
    assert_eq!(
        (report.sent, report.acknowledged, report.verified),
        (100, 100, Some(100))
    );
    assert_eq!((report.lost, report.duplicated), (Some(0), Some(0)));
    assert_eq!(report.status_counts.get("201"), Some(&100));
    assert_eq!(
        report.verdict,
        "tester: 100/100 stored, 0 lost, 0 duplicated"
    );

    let tasks = server.stop().await;
    let mut titles = titles_of(&tasks, "tester");
    titles.sort_unstable();
    let mut expected: Vec<String> = (1..=100).map(|k| format!("Tarea {k} de tester")).collect();
    expected.sort_unstable();
    assert_eq!(
        titles, expected,
        "the data file holds each task exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_clients_and_earlier_runs_do_not_disturb_the_verdict() {
    let server = RealServer::start().await;
    let earlier = emulate(&server.url, &["-n", "30", "--client-id", "client1"]).await;
    assert!(earlier.success, "{earlier}");
    // As in the compose file: two clients at the same moment. A small page
    // size makes the read-back walk many pages.
    let (one, two) = tokio::join!(
        emulate(
            &server.url,
            &["-n", "100", "--client-id", "client1", "--page-size", "7"]
        ),
        emulate(
            &server.url,
            &["-n", "100", "--client-id", "client2", "--page-size", "7"]
        ),
    );
    for report in [&one, &two] {
        assert!(report.success, "{report}");
        assert_eq!(report.verified, Some(100));
        assert_eq!(report.found, Some(100), "only this run's tasks are counted");
        assert!(
            report.tasks_read.unwrap() >= 130,
            "it read past other tasks"
        );
    }
    assert_ne!(earlier.run_id, one.run_id);
    let tasks = server.stop().await;
    assert_eq!(tasks.len(), 230);
    assert_eq!(titles_of(&tasks, "client1").len(), 130);
    assert_eq!(titles_of(&tasks, "client2").len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_and_rate_limited_runs_verify_what_they_sent() {
    let server = RealServer::start().await;
    let timed = emulate(&server.url, &["-z", "300ms", "-c", "4"]).await;
    assert!(timed.success, "{timed}");
    assert!(timed.sent > 0);
    assert_eq!(timed.verified, Some(timed.sent));

    let rated = emulate(
        &server.url,
        &["-n", "30", "-c", "3", "-q", "100", "--client-id", "rated"],
    )
    .await;
    assert!(rated.success, "{rated}");
    assert_eq!(rated.verified, Some(30));
    assert!(
        rated.elapsed_seconds >= 0.29,
        "30 tasks at 100/s take 0.29 s: {}",
        rated.elapsed_seconds
    );

    let tasks = server.stop().await;
    assert_eq!(tasks.len() as u64, timed.sent + 30);
}
