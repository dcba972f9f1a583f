//! `lock NAME -- CMD`: run CMD while holding the mutex NAME.

use std::ffi::OsString;
use std::process::ExitStatus;
use std::time::Duration;

use tokio::process::Child;
use tokio::time::Instant;

use super::{connect, deadline, no_quorum, Stop, CLOSE_PATIENCE};
use crate::cli::Cli;
use crate::error::{Error, Loss, Result};
use crate::mutex::{Mutex, MutexGuard};
use crate::name::Name;

/// How CMD's run ended.
enum Ended {
    Exited(ExitStatus),
    LockLost(Loss),
}

pub async fn run(cli: &Cli, name: &Name, command: &[OsString]) -> Result<u8> {
    let deadline = deadline(cli);
    let mut stop = Stop::new();
    let guard = match acquire(cli, name, deadline, &mut stop).await? {
        Ok(guard) => guard,
        // Stopped while waiting: our place in line went with the session.
        Err(signal) => return Ok(128 + signal as u8),
    };
    let session = guard.session().clone();
    let token = guard.fencing_token();
    tracing::debug!("holding {} with fencing token {token}", guard.node_path());

    let (program, args) = command.split_first().expect("clap requires CMD");
    let spawned = tokio::process::Command::new(program)
        .args(args)
        .env("FENCING_TOKEN", token.to_string())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(source) => {
            release(guard).await;
            session.close(CLOSE_PATIENCE).await;
            return Err(Error::Spawn {
                program: program.to_string_lossy().into_owned(),
                source,
            });
        }
    };

    match supervise(&mut child, &guard, &mut stop).await {
        Ended::Exited(status) => {
            release(guard).await;
            session.close(CLOSE_PATIENCE).await;
            Ok(status_code(status))
        }
        Ended::LockLost(loss) => {
            // Stop CMD before anybody else can hold the lock: SIGTERM, and
            // SIGKILL if it is still there a tenth of a session timeout later
            // (see session.rs for why that is still in time).
            terminate(&mut child, guard.session().timeout() / 10).await;
            drop(guard);
            session.close(CLOSE_PATIENCE).await;
            Err(Error::Lost {
                what: format!("lost the lock {name} while the command ran, so it was stopped"),
                loss,
            })
        }
    }
}

/// Waits for the lock until `deadline`, on a new session if one expires
/// while waiting; `Ok(Err(signal))` when stopped by SIGTERM or SIGINT first.
async fn acquire(
    cli: &Cli,
    name: &Name,
    deadline: Instant,
    stop: &mut Stop,
) -> Result<Result<MutexGuard, libc::c_int>> {
    loop {
        let session = match stop.unless(connect(cli, deadline)).await {
            Ok(session) => session?,
            Err(signal) => return Ok(Err(signal)),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let acquired = stop
            .unless(Mutex::new(&session, name).acquire(Some(left)))
            .await;
        let acquired = match acquired {
            Ok(acquired) => acquired,
            Err(signal) => {
                // The dropped acquire deletes our node in the background;
                // closing the session (after it) makes sure it is gone.
                session.close(CLOSE_PATIENCE).await;
                return Ok(Err(signal));
            }
        };
        match acquired {
            Ok(guard) => return Ok(Ok(guard)),
            // The wait ran out while no server answered: that is no quorum,
            // not a busy lock.
            Err(Error::Busy { .. }) if !connected(&session) => {
                return Err(no_quorum(cli, deadline).await)
            }
            Err(e) if e.is_session_gone() && Instant::now() < deadline => {
                tracing::warn!("{e}; waiting on a new session");
            }
            Err(e) => return Err(e),
        }
    }
}

fn connected(session: &crate::session::Session) -> bool {
    matches!(
        session.client().state(),
        zookeeper_client::SessionState::SyncConnected
            | zookeeper_client::SessionState::ConnectedReadOnly
    )
}

/// Waits for CMD to end or the lock to be lost; passes SIGTERM and SIGINT
/// on to CMD (the lock is released once CMD has ended).
async fn supervise(child: &mut Child, guard: &MutexGuard, stop: &mut Stop) -> Ended {
    let lost = guard.lost();
    tokio::pin!(lost);
    loop {
        tokio::select! {
            status = child.wait() => {
                return Ended::Exited(status.unwrap_or_else(|e| {
                    // Only an OS error gets here; say so and count it a failure.
                    tracing::error!("cannot wait for the command: {e}");
                    std::os::unix::process::ExitStatusExt::from_raw(1 << 8)
                }));
            }
            loss = &mut lost => return Ended::LockLost(loss),
            signal = stop.recv() => signal_child(child, signal),
        }
    }
}

/// SIGTERM now; SIGKILL if CMD is still running after `grace`.
async fn terminate(child: &mut Child, grace: Duration) {
    signal_child(child, libc::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        tracing::warn!("the command ignored SIGTERM for {grace:?}; killing it");
        let _ = child.kill().await;
    }
}

fn signal_child(child: &Child, signal: libc::c_int) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on our own child's pid, which is not reaped yet
        // (`id()` is `None` once it is).
        unsafe { libc::kill(pid as libc::pid_t, signal) };
    }
}

/// Releases, but gives up after a session timeout: if the ensemble is gone,
/// it deletes the node itself when the session expires.
async fn release(guard: MutexGuard) {
    let patience = guard.session().timeout();
    match tokio::time::timeout(patience, guard.release()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("could not release the lock: {e}"),
        Err(_) => tracing::warn!(
            "could not release the lock within {patience:?}; ZooKeeper removes it when the session expires"
        ),
    }
}

/// CMD's exit status as a shell reports it: its code, or 128 + the signal
/// that killed it.
fn status_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => 128u8.saturating_add(signal as u8),
        (None, None) => 1,
    }
}
