//! `--unsafe-no-locking`: the race the course warns about, on purpose. The
//! tests show that it does lose acknowledged tasks (the demonstration
//! works), that it says so loudly, and that it cannot be combined with
//! cluster mode. The safe store's tests are the other files.

mod common;

use std::collections::BTreeSet;

use serde_json::Value;

/// One burst of `n` concurrent POSTs; the titles answered 201.
async fn burst(base: &str, round: usize, n: usize) -> BTreeSet<String> {
    let http = common::client();
    let sends = (0..n).map(|i| {
        let (http, base) = (http.clone(), base.to_owned());
        tokio::spawn(async move {
            let titulo = format!("race {round}-{i}");
            let answer = testkit::http::post(&http, &base, &titulo, None).await;
            matches!(answer, Ok((201, _))).then_some(titulo)
        })
    });
    let mut acked = BTreeSet::new();
    for send in sends.collect::<Vec<_>>() {
        if let Some(titulo) = send.await.unwrap() {
            acked.insert(titulo);
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_posts_lose_acknowledged_tasks_and_the_server_says_it_is_unsafe() {
    let (_dir, data) = common::data_dir();
    let mut cmd = common::command(&data);
    cmd.arg("--unsafe-no-locking");
    let server = common::Server::spawn(cmd).unwrap_or_else(|r| panic!("did not start: {r}"));
    assert!(
        server.log().contains("UNSAFE MODE (--unsafe-no-locking)"),
        "{}",
        server.log()
    );
    let health: Value = reqwest::get(format!("{}/health", server.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["mode"], "unsafe-no-locking", "{health}");
    // A race is a matter of timing: a few bursts, until one loses a task
    // (the first one does, on any machine we tried).
    let mut acked = BTreeSet::new();
    let mut lost = Vec::new();
    for round in 0..5 {
        acked.extend(burst(&server.url(), round, 100).await);
        let stored: BTreeSet<String> = common::read_tasks(&data)
            .iter()
            .map(|t| t["titulo"].as_str().unwrap().to_owned())
            .collect();
        lost = acked.difference(&stored).cloned().collect();
        if !lost.is_empty() {
            break;
        }
    }
    assert!(
        !lost.is_empty(),
        "{} tasks acknowledged, none lost: the unsafe mode did not race",
        acked.len()
    );
    println!(
        "--unsafe-no-locking: {} acknowledged, {} of them lost",
        acked.len(),
        lost.len()
    );
}

#[test]
fn it_refuses_cluster_mode() {
    let (_dir, data) = common::data_dir();
    let mut cmd = common::command(&data);
    cmd.args([
        "--unsafe-no-locking",
        "--node-id",
        "1",
        "--peers",
        "1=127.0.0.1:1",
    ]);
    let refused = common::Server::spawn(cmd)
        .err()
        .expect("it must refuse to start");
    assert!(refused.status.is_some_and(|s| !s.success()));
    assert!(
        refused.log.contains("--unsafe-no-locking") && refused.log.contains("--node-id"),
        "{}",
        refused.log
    );
}
