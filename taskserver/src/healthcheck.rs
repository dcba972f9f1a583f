//! `taskserver healthcheck`: a minimal HTTP/1.1 `GET` with no client library,
//! so the image needs no curl.

use std::time::Duration;

use axum::http::Uri;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long the whole check may take.
const TIMEOUT: Duration = Duration::from_secs(3);

/// Why the check failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("`{0}` is not an http:// URL with a host, such as http://127.0.0.1:9000/health")]
    BadUrl(String),
    #[error("no answer from {0} within {TIMEOUT:?}")]
    Timeout(String),
    #[error("cannot reach {url}: {source}; is the server running and listening there?")]
    Unreachable { url: String, source: std::io::Error },
    #[error("{url} answered `{status}` instead of 200")]
    Unhealthy { url: String, status: String },
}

/// Succeeds when `url` answers `200`.
pub async fn check(url: &str) -> Result<(), HealthError> {
    tokio::time::timeout(TIMEOUT, get_status(url))
        .await
        .map_err(|_| HealthError::Timeout(url.to_owned()))?
}

async fn get_status(url: &str) -> Result<(), HealthError> {
    let uri: Uri = url.parse().map_err(|_| HealthError::BadUrl(url.into()))?;
    let (Some("http"), Some(host)) = (uri.scheme_str(), uri.host()) else {
        return Err(HealthError::BadUrl(url.into()));
    };
    let port = uri.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let unreachable = |source| HealthError::Unreachable {
        url: url.to_owned(),
        source,
    };
    let mut stream = TcpStream::connect((host, port))
        .await
        .map_err(unreachable)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(unreachable)?;
    let mut head = Vec::new();
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') {
        let n = stream.read(&mut buf).await.map_err(unreachable)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let status_line = String::from_utf8_lossy(&head);
    let status_line = status_line.lines().next().unwrap_or("").trim();
    if status_line.split(' ').nth(1) == Some("200") {
        Ok(())
    } else {
        Err(HealthError::Unhealthy {
            url: url.to_owned(),
            status: status_line.to_owned(),
        })
    }
}
