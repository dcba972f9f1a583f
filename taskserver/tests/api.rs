//! Handler tests through `tower::ServiceExt::oneshot`: every row of the
//! contract's error table, each checking that the rejected request left the
//! data file byte-for-byte as it was; and the success paths.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use taskserver::Store;
use tower::ServiceExt;

mod common;

struct App {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    router: Router,
}

/// An app over a data file that already holds one task.
async fn app() -> App {
    let (dir, path) = common::data_dir();
    let store = Store::open(&path).unwrap();
    let router = taskserver::app(store);
    let app = App {
        _dir: dir,
        path,
        router,
    };
    let (status, _) = app.call(post_json(r#"{"titulo":"primera"}"#)).await;
    assert_eq!(status, StatusCode::CREATED);
    app
}

impl App {
    async fn call(&self, req: Request<Body>) -> (StatusCode, Value) {
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, body)
    }

    /// Sends `req`, expects `status` with a JSON error message, and checks
    /// the data file did not change.
    async fn rejects(&self, req: Request<Body>, status: StatusCode) -> String {
        let before = std::fs::read(&self.path).unwrap();
        let (got, body) = self.call(req).await;
        assert_eq!(got, status, "body: {body}");
        let message = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no JSON error message: {body}"))
            .to_owned();
        assert!(message.len() > 20, "message too terse to act on: {message}");
        assert_eq!(
            std::fs::read(&self.path).unwrap(),
            before,
            "a rejected request changed the data file"
        );
        message
    }
}

fn post_json(body: &str) -> Request<Body> {
    Request::post("/tareas")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn body_that_is_not_json_is_400() {
    let app = app().await;
    for body in ["", "{", "titulo=x", "{\"titulo\": \"a\",}", "\u{0}", "[1,2"] {
        app.rejects(post_json(body), StatusCode::BAD_REQUEST).await;
    }
    let invalid_utf8 = Request::post("/tareas")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(vec![b'{', b'"', 0xff, 0xfe, b'"', b'}']))
        .unwrap();
    app.rejects(invalid_utf8, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn wrong_or_missing_content_type_is_415() {
    let app = app().await;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut req = Request::post("/tareas");
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let req = req.body(Body::from(r#"{"titulo":"a"}"#)).unwrap();
        let msg = app.rejects(req, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
        assert!(msg.contains("application/json"), "{msg}");
    }
    // Parameters are fine.
    let req = Request::post("/tareas")
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Body::from(r#"{"titulo":"con charset"}"#))
        .unwrap();
    assert_eq!(app.call(req).await.0, StatusCode::CREATED);
}

#[tokio::test]
async fn json_that_is_not_a_valid_task_is_422() {
    let app = app().await;
    let long = |n| "x".repeat(n);
    let cases = [
        json!({}),
        json!({"titulo": ""}),
        json!({"titulo": "   "}),
        json!({"titulo": null}),
        json!({"titulo": 5}),
        json!({"titulo": "a", "completada": "si"}),
        json!({"titulo": "a", "descripcion": 3}),
        json!({"titulo": "a", "id": 9}),
        json!({"titulo": "a", "desconocido": true}),
        json!({"titulo": long(201)}),
        json!({"titulo": "a", "descripcion": long(2001)}),
        json!({"titulo": "a", "cliente": long(101)}),
        json!(["titulo"]),
        json!("titulo"),
        json!(42),
        json!(null),
    ];
    for case in cases {
        app.rejects(
            post_json(&case.to_string()),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    // Duplicate keys are not valid tasks either.
    app.rejects(
        post_json(r#"{"titulo":"a","titulo":"b"}"#),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    // The limits themselves are allowed.
    let at_limits = json!({"titulo": long(200), "descripcion": long(2000), "cliente": long(100)});
    assert_eq!(
        app.call(post_json(&at_limits.to_string())).await.0,
        StatusCode::CREATED
    );
}

/// Found by the reliability campaign (proptest over request bodies): the
/// status depended on which error serde met first, not on whether the body
/// is JSON.
#[tokio::test]
async fn whether_the_body_is_json_alone_decides_400_or_422() {
    let app = app().await;
    let not_json: [&[u8]; 4] = [
        // A wrong type, then a syntax error further on.
        br#"{"titulo":1,"titulo":"a" oops}"#,
        // An unknown key, then a NUL where a colon belongs.
        b"{\"id\"\0:\"x\"}",
        // Invalid UTF-8 inside the string of something that is not a task.
        b"[\"\xff\"]",
        br#"{"titulo":"a"} {"titulo":"b"}"#,
    ];
    for body in not_json {
        let req = Request::post("/tareas")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap();
        app.rejects(req, StatusCode::BAD_REQUEST).await;
    }
    let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
    let json_but_no_task = [
        // A number beyond f64 is still JSON, and completada must be a boolean.
        r#"{"titulo":"a","completada":1e999}"#.to_owned(),
        // Deeper than serde's recursion limit is still JSON.
        deep.clone(),
        format!(r#"{{"titulo":{deep}}}"#),
        r#"{"titulo":"\ud800"}"#.to_owned(),
    ];
    for body in json_but_no_task {
        app.rejects(post_json(&body), StatusCode::UNPROCESSABLE_ENTITY)
            .await;
    }
}

#[tokio::test]
async fn reused_idempotency_key_with_another_body_is_422() {
    let app = app().await;
    let with_key = |body: &str| {
        Request::post("/tareas")
            .header(header::CONTENT_TYPE, "application/json")
            .header("idempotency-key", "clave-1")
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    let (status, first) = app.call(with_key(r#"{"titulo":"uno"}"#)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, again) = app.call(with_key(r#"{ "titulo" : "uno" }"#)).await;
    assert_eq!(status, StatusCode::OK, "a retry returns the first task");
    assert_eq!(again, first);
    let msg = app
        .rejects(
            with_key(r#"{"titulo":"otro"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert!(msg.contains("Idempotency-Key"), "{msg}");
    assert_eq!(common::read_tasks(&app.path).len(), 2);
}

#[tokio::test]
async fn body_over_64_kib_is_413() {
    let app = app().await;
    let big = json!({"titulo": "a", "descripcion": "x".repeat(70 * 1024)}).to_string();
    app.rejects(post_json(&big), StatusCode::PAYLOAD_TOO_LARGE)
        .await;
    // Also without a Content-Length (a streamed body).
    let chunks = vec![Ok::<_, std::io::Error>(big.into_bytes())];
    let streamed = Request::post("/tareas")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap();
    app.rejects(streamed, StatusCode::PAYLOAD_TOO_LARGE).await;
}

#[tokio::test]
async fn unknown_task_or_route_is_404() {
    let app = app().await;
    for uri in [
        "/tareas/999",
        "/tareas/abc",
        "/tareas/-1",
        "/nada",
        "/tareas/1/x",
    ] {
        app.rejects(get(uri), StatusCode::NOT_FOUND).await;
    }
}

#[tokio::test]
async fn wrong_method_is_405() {
    let app = app().await;
    for (method, uri) in [
        ("DELETE", "/tareas"),
        ("PUT", "/tareas/1"),
        ("POST", "/health"),
    ] {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        app.rejects(req, StatusCode::METHOD_NOT_ALLOWED).await;
    }
}

#[tokio::test]
async fn unusable_data_file_is_503_and_nothing_is_acknowledged() {
    let app = app().await;
    // A person breaks the file while the server runs (a task with a string
    // id): no crash produces this, so the server must neither write nor
    // guess; it answers 503.
    let broken =
        b"[\n{\"id\":1,\"titulo\":\"primera\"},\n{\"id\":\"oops\",\"titulo\":\"x\"}\n]\n".to_vec();
    std::fs::write(&app.path, &broken).unwrap();
    let msg = app
        .rejects(
            post_json(r#"{"titulo":"nueva"}"#),
            StatusCode::SERVICE_UNAVAILABLE,
        )
        .await;
    assert!(msg.contains("line 3"), "the message names the place: {msg}");
    app.rejects(get("/tareas"), StatusCode::SERVICE_UNAVAILABLE)
        .await;
    assert_eq!(std::fs::read(&app.path).unwrap(), broken);
    // Once a person fixes it, the server goes on from the file's largest id.
    std::fs::write(&app.path, b"[{\"id\":41,\"titulo\":\"arreglada\"}]").unwrap();
    let (status, task) = app.call(post_json(r#"{"titulo":"nueva"}"#)).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(task["id"], 42);
}

#[tokio::test]
async fn success_paths_follow_the_contract() {
    let app = app().await;
    let res = app
        .router
        .clone()
        .oneshot(post_json(
            r#"{"titulo":"  Tarea 2 de client1 ","descripcion":"d","completada":true,"cliente":"client1"}"#,
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.headers()[header::LOCATION], "/tareas/2");
    let task: Value =
        serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(task["id"], 2);
    assert_eq!(task["titulo"], "Tarea 2 de client1");
    assert_eq!(task["descripcion"], "d");
    assert_eq!(task["completada"], true);
    assert_eq!(task["cliente"], "client1");
    let created = task["creada_en"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(created).is_ok(), "{created}");
    assert!(created.ends_with('Z'));

    for i in 3..=10 {
        let (status, _) = app
            .call(post_json(&json!({"titulo": format!("t{i}")}).to_string()))
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, all) = app.call(get("/tareas")).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<u64> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, (1..=10).collect::<Vec<_>>());
    let (_, page) = app.call(get("/tareas?despues_de=4&limite=3")).await;
    let ids: Vec<u64> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![5, 6, 7]);
    let (_, one) = app.call(get("/tareas/2")).await;
    assert_eq!(one, task);
    let (status, health) = app.call(get("/health")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health, json!({"status": "ok", "tareas": 10}));
    // What the file holds is what GET returns.
    let file: Vec<Value> = common::read_tasks(&app.path);
    assert_eq!(Value::Array(file), all);
}

#[tokio::test]
async fn metrics_count_requests_and_commits() {
    let app = app().await;
    app.call(get("/tareas/77")).await;
    let res = app.router.clone().oneshot(get("/metrics")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text =
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    for needle in [
        r#"taskserver_http_requests_total{method="POST",route="/tareas",status="201"} 1"#,
        r#"taskserver_http_requests_total{method="GET",route="/tareas/{id}",status="404"} 1"#,
        "taskserver_tasks 1",
        "taskserver_commit_batch_size_count 1",
        "taskserver_fsync_seconds_count 1",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
}
