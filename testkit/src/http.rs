//! An HTTP client for loopback load, and the requests tests make.

use std::time::Duration;

use serde_json::Value;

/// An HTTP client for loopback load: never through a proxy, a time limit on
/// every request so a hung server is a failure rather than a hang.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(20))
        .tcp_nodelay(true)
        .build()
        .expect("an HTTP client with these settings always builds")
}

/// `POST /tareas` of a JSON task; the status and the JSON body.
pub async fn post_task(
    http: &reqwest::Client,
    base: &str,
    task: &Value,
    key: Option<&str>,
) -> Result<(u16, Value), String> {
    let mut req = http
        .post(format!("{base}/tareas"))
        .header("content-type", "application/json")
        .body(task.to_string());
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    let res = req.send().await.map_err(|e| describe(&e))?;
    let status = res.status().as_u16();
    let bytes = res.bytes().await.map_err(|e| describe(&e))?;
    let body = serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "{status} with a body that is not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    })?;
    Ok((status, body))
}

/// `GET /tareas`: the tasks, checked to be a JSON array of objects with
/// strictly increasing ids. The error says what was wrong.
pub async fn get_tasks(http: &reqwest::Client, base: &str) -> Result<Vec<Value>, String> {
    let res = http
        .get(format!("{base}/tareas"))
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let status = res.status().as_u16();
    let bytes = res.bytes().await.map_err(|e| describe(&e))?;
    if status != 200 {
        return Err(format!(
            "GET /tareas answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        ));
    }
    crate::datafile::parse_tasks(&bytes).map_err(|e| format!("GET /tareas: {e}"))
}

/// A reqwest error with its causes, on one line.
pub fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `POST /tareas` of a task with only a `titulo`.
pub async fn post(
    http: &reqwest::Client,
    base: &str,
    titulo: &str,
    key: Option<&str>,
) -> Result<(u16, Value), String> {
    post_task(http, base, &serde_json::json!({ "titulo": titulo }), key).await
}

/// The ids `GET /tareas` answers, checked as [`get_tasks`] checks them.
pub async fn list_ids(http: &reqwest::Client, base: &str) -> Result<Vec<u64>, String> {
    Ok(crate::datafile::ids(&get_tasks(http, base).await?))
}
