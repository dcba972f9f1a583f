//! The signals that stop the server gracefully.

use std::future::Future;

use tokio::signal::unix::{signal as listen, Signal, SignalKind};

/// Completes on Ctrl-C or SIGTERM (what `docker stop` sends). The server then
/// stops accepting, finishes in-flight requests, commits what was accepted
/// and exits 0.
///
/// The handlers are installed by this call, not when the future is first
/// polled: call it before the server listens, so that a SIGTERM arriving
/// just after it says it listens still stops it gracefully rather than
/// killing it (the default action). Must be called inside the runtime.
pub fn signal() -> impl Future<Output = ()> {
    let install = |kind: SignalKind, name: &str| {
        listen(kind)
            .map_err(|e| tracing::error!(error = %e, "cannot listen for {name}"))
            .ok()
    };
    let ctrl_c = install(SignalKind::interrupt(), "Ctrl-C");
    let term = install(SignalKind::terminate(), "SIGTERM");
    async move {
        tokio::select! {
            () = received(ctrl_c) => tracing::info!("Ctrl-C received; shutting down"),
            () = received(term) => tracing::info!("SIGTERM received; shutting down"),
        }
    }
}

/// Completes when the signal arrives; never, if it could not be installed.
async fn received(signal: Option<Signal>) {
    match signal {
        Some(mut s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}
