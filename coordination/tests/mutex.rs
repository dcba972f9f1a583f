//! The lock recipe against a real three-server ensemble: mutual exclusion
//! under contention, no herd, timeouts, a holder that dies or is paused,
//! and the crate's own lock in the same line as ours.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use coordination::{Error, Loss, Mutex, Name};
use zookeeper_client as zk;

/// N contenders, each on its own session, each entering the critical section
/// K times. Inside, a read and a write of a counter znode that lose updates
/// if two ever overlap.
#[test]
#[ignore = "needs ZooKeeper: scripts/test-coordination.sh runs it"]
fn mutual_exclusion_under_contention() {
    const CONTENDERS: usize = 6;
    const ROUNDS: usize = 20;
    let ensemble = Ensemble::start();
    runtime().block_on(async {
        let servers = ensemble.connect_string();
        let name = Name::new("contended").unwrap();
        let counter = "/coordination/test-counter";
        let setup = session(&servers).await;
        setup.ensure_path("/coordination").await.unwrap();
        setup
            .client()
            .create(counter, b"0", &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()))
            .await
            .unwrap();

        let inside = Arc::new(AtomicUsize::new(0));
        let sections = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for c in 0..CONTENDERS {
            let (servers, name, inside, sections) = (servers.clone(), name.clone(), inside.clone(), sections.clone());
            tasks.push(tokio::spawn(async move {
                let session = session(&servers).await;
                let mutex = Mutex::new(&session, &name);
                for _ in 0..ROUNDS {
                    let guard = mutex.acquire(Some(Duration::from_secs(60))).await.unwrap();
                    let entered = Instant::now();
                    let others = inside.fetch_add(1, Ordering::SeqCst);
                    // Not atomic on purpose: only the lock keeps it right.
                    let (value, _) = session.client().get_data(counter).await.unwrap();
                    let n: u64 = String::from_utf8(value).unwrap().parse().unwrap();
                    tokio::task::yield_now().await;
                    session.client().set_data(counter, (n + 1).to_string().as_bytes(), None).await.unwrap();
                    inside.fetch_sub(1, Ordering::SeqCst);
                    let exited = Instant::now();
                    sections.lock().unwrap().push((entered, exited, c, guard.fencing_token(), others));
                    guard.release().await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }

        let mut sections = sections.lock().unwrap().clone();
        sections.sort_by_key(|s| s.0);
        assert_eq!(sections.len(), CONTENDERS * ROUNDS);
        assert!(sections.iter().all(|s| s.4 == 0), "a contender entered while another was inside");
        for pair in sections.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "critical sections overlap: {:?} and {:?}", pair[0], pair[1]);
            assert!(pair[0].3 < pair[1].3, "fencing tokens must grow: {} then {}", pair[0].3, pair[1].3);
        }
        checked(format!("{} critical sections of {CONTENDERS} sessions: none overlaps, fencing tokens grow in entry order", sections.len()));
        let (value, _) = setup.client().get_data(counter).await.unwrap();
        assert_eq!(String::from_utf8(value).unwrap(), (CONTENDERS * ROUNDS).to_string());
        checked(format!("the unprotected read-then-write counter ends at {} = {CONTENDERS} x {ROUNDS}", CONTENDERS * ROUNDS));
    });
}

/// A holder and five waiters queued behind it. Each release must wake the
/// next waiter and nobody else, as the waiters count it and as the
/// ensemble counts the watches it fired.
#[test]
#[ignore = "needs ZooKeeper: scripts/test-coordination.sh runs it"]
fn a_release_wakes_exactly_one_waiter() {
    const WAITERS: usize = 5;
    let ensemble = Ensemble::start();
    runtime().block_on(async {
        let servers = ensemble.connect_string();
        let name = Name::new("herd").unwrap();
        let holder = session(&servers).await;
        let first = Mutex::new(&holder, &name).acquire(None).await.unwrap();
        let watches_before = ensemble.mntr_sum("zk_watch_count");

        let mut waiters = Vec::new();
        for w in 0..WAITERS {
            let (servers, name) = (servers.clone(), name.clone());
            waiters.push(tokio::spawn(async move {
                let session = session(&servers).await;
                let guard = Mutex::new(&session, &name).acquire(None).await.unwrap();
                (w, guard)
            }));
            // Queue them in a known order: each waits until it is in line.
            eventually(&format!("waiter {w} in line, watching"), Duration::from_secs(20), || async {
                ensemble.mntr_sum("zk_watch_count") == watches_before + (w + 1) as f64
            })
            .await;
        }
        checked(format!("{WAITERS} waiters in line; the ensemble holds exactly {WAITERS} watches, one per waiter"));
        let deleted_before = ensemble.mntr_sum("zk_sum_node_deleted_watch_count");
        let children_before = ensemble.mntr_sum("zk_sum_node_children_watch_count");

        first.release().await.unwrap();
        for (w, waiter) in waiters.into_iter().enumerate() {
            let (who, guard) = waiter.await.unwrap();
            assert_eq!(who, w, "the lock must go in line order");
            assert_eq!(guard.wakeups(), 1, "waiter {w} must wake exactly once (its predecessor's release)");
            let fired = ensemble.mntr_sum("zk_sum_node_deleted_watch_count") - deleted_before;
            assert_eq!(fired, (w + 1) as f64, "after {} releases the ensemble fired {fired} deletion watches", w + 1);
            assert_eq!(
                ensemble.mntr_sum("zk_watch_count"),
                watches_before + (WAITERS - w - 1) as f64,
                "the waiters still in line keep their one watch each"
            );
            guard.release().await.unwrap();
                    }
        assert_eq!(ensemble.mntr_sum("zk_sum_node_children_watch_count"), children_before, "nobody watches the lock's children");
        checked(format!("each of {WAITERS} releases woke exactly the next waiter: 1 wake-up each, {WAITERS} deletion watches fired in all, no child watch"));
    });
}

#[test]
#[ignore = "needs ZooKeeper: scripts/test-coordination.sh runs it"]
fn a_timed_out_acquire_says_who_holds_it_and_leaves_the_line() {
    let ensemble = Ensemble::start();
    runtime().block_on(async {
        let servers = ensemble.connect_string();
        let name = Name::new("busy").unwrap();
        let holder = session(&servers).await;
        let guard = Mutex::new(&holder, &name).acquire(None).await.unwrap();
        let other = session(&servers).await;
        let mutex = Mutex::new(&other, &name);
        let started = Instant::now();
        let err = mutex
            .acquire(Some(Duration::from_millis(800)))
            .await
            .unwrap_err();
        let waited = started.elapsed();
        let message = err.to_string();
        assert!(matches!(err, Error::Busy { .. }), "{message}");
        assert!(
            message.contains(&guard.node_path()[mutex.path().len() + 1..]),
            "names the holder: {message}"
        );
        assert!(
            waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
        let children = other.client().list_children(mutex.path()).await.unwrap();
        assert_eq!(
            children.len(),
            1,
            "only the holder is left in line: {children:?}"
        );
        checked(format!(
            "a busy lock times out after {waited:?} with: {message}"
        ));
        checked("the timed-out waiter's node is gone before acquire returns");
        guard.release().await.unwrap();
        let again = mutex.acquire(Some(Duration::from_secs(5))).await.unwrap();
        assert_eq!(again.wakeups(), 0);
        again.release().await.unwrap();
    });
}

/// The holder is another process (`coordination lock`), killed with
/// SIGKILL. Its session expires, and only then does the waiter get the lock,
/// with a larger fencing token.
#[test]
#[ignore = "needs ZooKeeper: scripts/test-coordination.sh runs it"]
fn a_killed_holder_loses_the_lock_to_the_next_waiter() {
    let ensemble = Ensemble::start();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    let mut command = coordination(&ensemble.connect_string());
    command
        .args(["lock", "victim", "--", "sh", "-c"])
        .arg(format!(
            "echo $$ > {tok}.pid && {write} && exec sleep 600",
            tok = token_file.display(),
            write = write_token(&token_file)
        ));
    let mut holder = Process::spawn(command);
    let old_token = token_written(&token_file);

    runtime().block_on(async {
        let waiter = session(&ensemble.connect_string()).await;
        let name = Name::new("victim").unwrap();
        let acquire = tokio::spawn(async move {
            let guard = Mutex::new(&waiter, &name).acquire(None).await.unwrap();
            (Instant::now(), guard)
        });
        eventually("the waiter in line", Duration::from_secs(10), || async {
            ensemble.mntr_sum("zk_watch_count") >= 1.0
        })
        .await;
        // The command (sleep) is the holder's child; kill both at once, as a
        // crash of the machine's process tree would.
        let killed_at = Instant::now();
        unsafe { libc::kill(holder.pid(), libc::SIGKILL) };
        holder.wait_exit(Duration::from_secs(5));
        let (acquired_at, guard) = acquire.await.unwrap();
        let after = acquired_at - killed_at;
        // The ensemble may expire a session one timeout after it last heard
        // from it; the client pings after 0.15 timeouts of silence.
        assert!(after >= SESSION_TIMEOUT.mul_f64(0.8), "the lock changed hands {after:?} after the kill: before the session could expire");
        assert!(after < SESSION_TIMEOUT * 4, "{after:?}");
        assert!(guard.fencing_token() > old_token, "token {} after {old_token}", guard.fencing_token());
        checked(format!("the killed holder's lock went to the waiter {after:?} after SIGKILL (session timeout {SESSION_TIMEOUT:?}); fencing token {old_token} -> {}", guard.fencing_token()));
        guard.release().await.unwrap();
    });
    // Its command (`sleep`) outlived it: nobody was left to stop it.
    let sleep: i32 = std::fs::read_to_string(dir.path().join("token.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    unsafe { libc::kill(sleep, libc::SIGKILL) };
}

/// `coordination lock` is paused (SIGSTOP) past its session timeout while
/// its command runs. The waiter gets the lock meanwhile (the old command
/// still runs: what the fencing token is for); when the holder runs again,
/// it learns the lock is lost, stops its command with SIGTERM and exits 4.
#[test]
#[ignore = "needs ZooKeeper: scripts/test-coordination.sh runs it"]
fn a_paused_holder_learns_it_lost_the_lock_and_stops_its_command() {
    let ensemble = Ensemble::start();
    let dir = tempfile::tempdir().unwrap();
    let (token_file, term_file) = (dir.path().join("token"), dir.path().join("term"));
    let script = token_then_wait(&token_file, &term_file);
    let mut command = coordination(&ensemble.connect_string());
    command.args(["lock", "paused", "--", "sh", "-c", &script]);
    let mut holder = Process::spawn(command);
    let old_token = token_written(&token_file);

    runtime().block_on(async {
        let waiter = session(&ensemble.connect_string()).await;
        holder.signal(libc::SIGSTOP);
        let stopped_at = Instant::now();
        let guard = Mutex::new(&waiter, &Name::new("paused").unwrap())
            .acquire(Some(SESSION_TIMEOUT * 10))
            .await
            .unwrap();
        let after = stopped_at.elapsed();
        assert!(guard.fencing_token() > old_token);
        assert!(!term_file.exists(), "the old command runs on while its holder is paused");
        checked(format!("with the holder paused, the waiter got the lock after {after:?}, token {old_token} -> {}, while the old command still ran", guard.fencing_token()));

        holder.signal(libc::SIGCONT);
        let code = holder.wait_exit(SESSION_TIMEOUT * 5);
        assert_eq!(code, 4, "stderr: {}", holder.stderr());
        assert!(term_file.exists(), "the command got SIGTERM");
        let stderr = holder.stderr();
        assert!(stderr.contains("lost the lock paused") && stderr.contains("expired"), "{stderr}");
        checked(format!("resumed, the old holder stopped its command with SIGTERM and exited 4: {}", stderr.lines().last().unwrap_or("")));
        guard.release().await.unwrap();
    });
}

#[test]
#[ignore = "needs ZooKeeper: scripts/test-coordination.sh runs it"]
fn a_holder_whose_node_is_deleted_learns_it_lost_the_lock() {
    let ensemble = Ensemble::start();
    runtime().block_on(async {
        let servers = ensemble.connect_string();
        let holder = session(&servers).await;
        let guard = Mutex::new(&holder, &Name::new("deleted").unwrap())
            .acquire(None)
            .await
            .unwrap();
        let admin = session(&servers).await;
        let lost = guard.lost();
        tokio::pin!(lost);
        // Not lost while nothing happens: a round trip on the holder's own
        // session (events come before the answers that follow them) and
        // the loss future is still pending.
        tokio::select! {
            loss = &mut lost => panic!("lost for no reason: {loss:?}"),
            read = async {
                holder.sync("/").await.unwrap();
                holder.client().get_data(guard.node_path()).await
            } => { read.unwrap(); }
        }
        admin
            .client()
            .delete(guard.node_path(), None)
            .await
            .unwrap();
        assert_eq!(lost.await, Loss::NodeDeleted);
        checked("deleting the holder's node by hand is reported as Loss::NodeDeleted");
    });
}

/// zookeeper-client's own Curator-style lock (`Client::lock`) and our Mutex
/// on the same folder: each excludes the other.
#[test]
#[ignore = "needs ZooKeeper: scripts/test-coordination.sh runs it"]
fn the_crates_own_lock_and_ours_exclude_each_other() {
    let ensemble = Ensemble::start();
    runtime().block_on(async {
        let servers = ensemble.connect_string();
        let name = Name::new("shared-with-curator").unwrap();
        let ours = session(&servers).await;
        let mutex = Mutex::new(&ours, &name);
        let theirs = zk::Client::connect(&servers).await.unwrap();
        let options = zk::LockOptions::new(zk::Acls::anyone_all())
            .with_ancestor_options(zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()))
            .unwrap();

        // Theirs first: ours must wait.
        let prefix = zk::LockPrefix::new_curator(mutex.path(), "lock-").unwrap();
        let their_lock = theirs.lock(prefix, b"", options.clone()).await.unwrap();
        let err = mutex.acquire(Some(Duration::from_millis(500))).await.unwrap_err();
        assert!(matches!(err, Error::Busy { .. }), "{err}");
        drop(their_lock); // releases in the background
        let guard = mutex.acquire(Some(Duration::from_secs(10))).await.unwrap();
        checked("our Mutex waits while zookeeper-client's Client::lock holds the same lock, and gets it after");

        // Ours first: theirs must wait until we release.
        let (contender, dir) = (theirs.clone(), mutex.path().to_owned());
        let theirs_waiting = tokio::spawn(async move {
            let prefix = zk::LockPrefix::new_curator(&dir, "lock-").unwrap();
            let lock = contender.lock(prefix, b"", options).await.unwrap();
            let at = Instant::now();
            drop(lock);
            at
        });
        eventually("their lock in line behind ours", Duration::from_secs(10), || async {
            ours.client().list_children(mutex.path()).await.unwrap().len() == 2
        })
        .await;
        assert!(!theirs_waiting.is_finished(), "zookeeper-client's lock was granted while ours held it");
        let released_at = Instant::now();
        guard.release().await.unwrap();
        let their_turn = theirs_waiting.await.unwrap();
        assert!(their_turn >= released_at);
        checked("zookeeper-client's Client::lock waits while our Mutex holds the lock, and gets it after the release");
    });
}
