//! The `coordination` program's outside, as `../shared/contract.md` gives
//! it: exit codes, messages, FENCING_TOKEN, passing on CMD's status.
//!
//! The bad-input tests need no ZooKeeper and run with every `cargo test`;
//! the rest need an ensemble and are run by scripts/test-coordination.sh.

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use common::*;

fn run(command: &mut std::process::Command) -> (Option<i32>, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().unwrap();
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// Three ports where nothing listens.
fn nowhere() -> (String, Vec<u16>) {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let servers = ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    (servers, ports)
}

#[test]
fn an_invalid_name_is_bad_usage_and_no_server_is_asked() {
    let (servers, _) = nowhere();
    for (args, why) in [
        (&["lock", "a/b", "--", "true"][..], "'/'"),
        (&["lock", "..", "--", "true"], "relative"),
        (&["elect", "", "me"], "empty"),
        (&["leader", "tab\there"], "control"),
        (&["id", "x/y"], "'/'"),
    ] {
        let started = Instant::now();
        let (code, _, stderr) = run(coordination(&servers).args(args));
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("not a valid znode name") && stderr.contains(why),
            "{stderr}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "answered without waiting for a server"
        );
        checked(format!("{args:?} -> exit 2: {}", error_line(&stderr)));
    }
}

#[test]
fn bad_usage_exits_2() {
    let (servers, _) = nowhere();
    for args in [
        &["lock", "jobs"][..],
        &["lock", "jobs", "true"],
        &["lock", "jobs", "--timeout", "-1", "--", "true"],
        &["elect", "office"],
        &["frobnicate"],
        &["--zookeeper", "nonsense", "leader", "office"],
        &["--zookeeper", "host:notaport", "leader", "office"],
    ] {
        let (code, _, stderr) = run(coordination(&servers).args(args));
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        checked(format!(
            "{args:?} -> exit 2: {}",
            stderr.lines().next().unwrap_or("")
        ));
    }
}

#[test]
fn an_unreachable_ensemble_exits_3_naming_every_server() {
    let (servers, ports) = nowhere();
    for args in [
        &["lock", "jobs", "--timeout", "1", "--", "true"][..],
        &["elect", "office", "me", "--timeout", "1"],
        &["leader", "office", "--timeout", "1"],
        &["id", "tickets", "--timeout", "1"],
    ] {
        let started = Instant::now();
        let (code, stdout, stderr) = run(coordination(&servers).args(args));
        assert_eq!(code, Some(3), "{args:?}: {stderr}");
        assert!(stdout.is_empty());
        assert!(stderr.contains("no ZooKeeper quorum within"), "{stderr}");
        for port in &ports {
            assert!(
                stderr.contains(&format!("127.0.0.1:{port} (connection refused")),
                "{stderr}"
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{:?}",
            started.elapsed()
        );
        checked(format!(
            "{args:?} with nothing listening -> exit 3: {}",
            error_line(&stderr)
        ));
    }
}

#[test]
#[ignore = "needs ZooKeeper: scripts/test-coordination.sh runs it"]
fn lock_runs_the_command_with_a_growing_token_and_passes_its_status_on() {
    let ensemble = Ensemble::start();
    let servers = ensemble.connect_string();
    let token = |out: &str| -> i64 { out.trim().parse().unwrap() };

    let (code, first, _) =
        run(coordination(&servers).args(["lock", "t", "--", "sh", "-c", "echo $FENCING_TOKEN"]));
    assert_eq!(code, Some(0));
    let (code, second, _) = run(coordination(&servers).args([
        "lock",
        "t",
        "--",
        "sh",
        "-c",
        "echo $FENCING_TOKEN; exit 7",
    ]));
    assert_eq!(code, Some(7), "lock exits with CMD's status");
    assert!(token(&second) > token(&first));
    checked(format!(
        "FENCING_TOKEN {} then {}; CMD's exit 7 passed on",
        first.trim(),
        second.trim()
    ));

    let (code, _, _) =
        run(coordination(&servers).args(["lock", "t", "--", "sh", "-c", "kill -9 $$"]));
    assert_eq!(code, Some(137), "a CMD killed by signal 9 gives 128 + 9");
    let (code, _, stderr) =
        run(coordination(&servers).args(["lock", "t", "--", "/nonexistent/cmd"]));
    assert_eq!(code, Some(127), "{stderr}");
    assert!(
        stderr.contains("cannot run \"/nonexistent/cmd\""),
        "{stderr}"
    );
    checked(format!(
        "CMD killed by SIGKILL -> 137; a missing CMD -> 127: {}",
        error_line(&stderr)
    ));

    // Busy: another process holds it for the whole --timeout.
    let dir = tempfile::tempdir().unwrap();
    let running = dir.path().join("running");
    let mut command = coordination(&servers);
    command
        .args(["lock", "t", "--", "sh", "-c"])
        .arg(format!("touch {}; exec sleep 600", running.display()));
    let mut holder = Process::spawn(command);
    wait_until(
        "the holder's command to run",
        Duration::from_secs(30),
        || running.exists(),
    );
    let started = Instant::now();
    let (code, _, stderr) =
        run(coordination(&servers).args(["lock", "t", "--timeout", "1", "--", "true"]));
    assert_eq!(code, Some(5), "{stderr}");
    assert!(
        stderr.contains("gave up after") && stderr.contains("the holder's node is _c_"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(6));
    checked(format!(
        "held elsewhere, `lock --timeout 1` -> exit 5: {}",
        error_line(&stderr)
    ));

    // A waiter stopped with SIGTERM leaves the line at once (its session is
    // closed), not a session timeout later.
    let rt = runtime();
    let admin = rt.block_on(session(&servers));
    let in_line = || {
        rt.block_on(admin.client().list_children("/coordination/locks/t"))
            .unwrap()
            .len()
    };
    let mut waiter = Process::spawn({
        let mut command = coordination(&servers);
        command.args(["lock", "t", "--", "true"]);
        command
    });
    wait_until("the waiter in line", Duration::from_secs(10), || {
        in_line() == 2
    });
    waiter.signal(libc::SIGTERM);
    assert_eq!(
        waiter.wait_exit(Duration::from_secs(5)),
        143,
        "{}",
        waiter.stderr()
    );
    let gone = wait_until("the waiter's node to go", SESSION_TIMEOUT / 2, || {
        in_line() == 1
    });
    checked(format!("a waiting `lock` got SIGTERM: exit 143, its node gone {gone:?} later (not a session timeout)"));

    // SIGTERM to a holder goes on to its command (sleep dies of it: 143).
    holder.signal(libc::SIGTERM);
    assert_eq!(
        holder.wait_exit(Duration::from_secs(5)),
        143,
        "{}",
        holder.stderr()
    );
    wait_until("the holder's node to go", SESSION_TIMEOUT / 2, || {
        in_line() == 0
    });
    checked("SIGTERM to `lock` reached its command, which died of it: exit 143, lock released");

    let (code, _, stderr) = run(coordination(&servers).args(["leader", "nobody"]));
    assert_eq!(code, Some(3));
    assert!(stderr.contains("nobody leads nobody"), "{stderr}");
    checked(format!(
        "`leader` with no candidate -> exit 3: {}",
        error_line(&stderr)
    ));

    let ids: Vec<i64> = (0..3)
        .map(|_| {
            let (code, out, _) = run(coordination(&servers).args(["id", "tickets"]));
            assert_eq!(code, Some(0));
            token(&out)
        })
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    checked(format!("`id tickets` three times: {ids:?}, increasing"));
}

/// Four processes, each running `coordination lock` eight times around a
/// shell critical section that appends to a log and bumps a counter file.
#[test]
#[ignore = "needs ZooKeeper: scripts/test-coordination.sh runs it"]
fn lock_processes_exclude_each_other() {
    const PROCESSES: usize = 4;
    const RUNS: usize = 8;
    let ensemble = Ensemble::start();
    let servers = ensemble.connect_string();
    let dir = tempfile::tempdir().unwrap();
    let (log, counter) = (dir.path().join("log"), dir.path().join("counter"));
    std::fs::write(&counter, "0\n").unwrap();
    let section = format!(
        "echo \"enter $FENCING_TOKEN\" >> {log}; n=$(cat {counter}); echo $((n + 1)) > {counter}; echo \"exit $FENCING_TOKEN\" >> {log}",
        log = log.display(),
        counter = counter.display()
    );
    let workers: Vec<_> = (0..PROCESSES)
        .map(|_| {
            let (servers, section) = (servers.clone(), section.clone());
            std::thread::spawn(move || {
                for _ in 0..RUNS {
                    let (code, _, stderr) = run(
                        coordination(&servers).args(["lock", "cs", "--", "sh", "-c", &section])
                    );
                    assert_eq!(code, Some(0), "{stderr}");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let log = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2 * PROCESSES * RUNS);
    let mut last = i64::MIN;
    for pair in lines.chunks(2) {
        let enter: i64 = pair[0]
            .strip_prefix("enter ")
            .expect("an enter line")
            .parse()
            .unwrap();
        let exit: i64 = pair[1]
            .strip_prefix("exit ")
            .expect("an exit line right after it")
            .parse()
            .unwrap();
        assert_eq!(
            enter, exit,
            "the section of token {enter} was interleaved with {exit}'s"
        );
        assert!(enter > last, "tokens grow: {last} then {enter}");
        last = enter;
    }
    assert_eq!(
        std::fs::read_to_string(&counter).unwrap().trim(),
        (PROCESSES * RUNS).to_string()
    );
    checked(format!("{PROCESSES} processes x {RUNS} `coordination lock` runs: enter/exit never interleave, tokens grow, the counter file says {}", PROCESSES * RUNS));
}
