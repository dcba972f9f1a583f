//! A bug in the commit path (a panic) must not leave a server that looks
//! healthy and refuses every write: `/health` says it failed, `run` ends with
//! an error (so the process exits non-zero and Docker restarts it), and
//! nothing acknowledged before is lost.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::doubles::HookedFs;
use taskserver::RunError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_commit_path_fails_health_ends_run_and_loses_nothing() {
    let (_dir, path) = common::data_dir();
    let fs = HookedFs::default();
    let store = common::open_store(fs.clone(), &path).await;
    let listener = taskserver::listen::bind("127.0.0.1:0", 64).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(taskserver::run(listener, store, std::future::pending()));
    let http = common::client();

    let (status, first) = common::post(&http, &base, "before the bug", Some("k1"))
        .await
        .unwrap();
    assert_eq!(status, 201);

    fs.hooks.panic_on_write.store(true, Ordering::SeqCst);
    let (status, body) = common::post(&http, &base, "meets the bug", Some("k2"))
        .await
        .unwrap();
    assert_eq!(status, 503, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("internal error") && error.contains("injected by the test"),
        "the answer says what happened: {error}"
    );

    // The server stops by itself, with an error for the process's exit status.
    let ended = tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("run ends once the store failed")
        .unwrap();
    match ended {
        Err(RunError::StoreFailed(reason)) => assert!(reason.contains("injected"), "{reason}"),
        other => panic!("run must fail with the store's reason, got {other:?}"),
    }

    // Everything acknowledged is in the file, once; the failed task is not.
    let tasks = common::read_tasks(&path);
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["id"], first["id"]);
    assert_eq!(tasks[0]["titulo"], "before the bug");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_503_with_the_reason_while_a_failed_server_drains() {
    let (_dir, path) = common::data_dir();
    let fs = HookedFs::default();
    let store = common::open_store(fs.clone(), &path).await;
    fs.hooks.panic_on_write.store(true, Ordering::SeqCst);
    let app = taskserver::app(store.clone());
    let post = axum::http::Request::post("/tareas")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(r#"{"titulo":"x"}"#))
        .unwrap();
    let answer = tower::ServiceExt::oneshot(app.clone(), post).await.unwrap();
    assert_eq!(answer.status(), 503);
    assert!(store.failure().is_some());

    let health = axum::http::Request::get("/health")
        .body(axum::body::Body::empty())
        .unwrap();
    let answer = tower::ServiceExt::oneshot(app.clone(), health)
        .await
        .unwrap();
    assert_eq!(answer.status(), 503);
    let body = http_body_util::BodyExt::collect(answer.into_body())
        .await
        .unwrap()
        .to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["status"], "failed");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("exits so that it can be restarted"));

    // Later writes are refused with the same reason, not "shutting down".
    let post = axum::http::Request::post("/tareas")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(r#"{"titulo":"y"}"#))
        .unwrap();
    let answer = tower::ServiceExt::oneshot(app, post).await.unwrap();
    assert_eq!(answer.status(), 503);
    let body = http_body_util::BodyExt::collect(answer.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("internal error"));
    assert!(common::read_tasks(&path).is_empty());
}
