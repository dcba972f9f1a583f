//! The listening socket: its backlog, and the open-files limit, as the
//! kernel sees them for the real binary.

mod common;

use std::process::Command;

use common::{command, data_dir, start, Server};

/// The backlog of the socket listening on `port`, as `ss -ltn` shows it (the
/// Send-Q column of a listening socket).
fn listen_backlog(port: u16) -> u32 {
    let output = Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .expect("`ss` (iproute2) is needed to read the listen backlog");
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .next()
        .unwrap_or_else(|| panic!("ss shows no socket listening on {port}"));
    line.split_whitespace()
        .nth(2)
        .and_then(|q| q.parse().ok())
        .unwrap_or_else(|| panic!("unexpected ss line {line:?}"))
}

fn somaxconn() -> u32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn the_default_backlog_takes_a_burst_of_thousands() {
    let (_dir, data) = data_dir();
    let server = start(&data);
    let expected = taskserver::listen::DEFAULT_BACKLOG.min(somaxconn());
    assert!(expected >= 1000, "this machine caps backlogs at {expected}");
    assert_eq!(listen_backlog(server.addr.port()), expected);
}

#[test]
fn backlog_is_a_flag_and_a_cap_by_the_kernel_is_logged() {
    let (_dir, data) = data_dir();
    let mut cmd = command(&data);
    cmd.args(["--backlog", "37"]);
    let server = Server::spawn(cmd).unwrap();
    assert_eq!(listen_backlog(server.addr.port()), 37);
    assert!(!server.log().contains("caps the listen backlog"));

    let cap = somaxconn();
    let mut cmd = command(&data);
    cmd.env("TASKSERVER_BACKLOG", (cap + 1).to_string());
    let server = Server::spawn(cmd).unwrap();
    assert_eq!(listen_backlog(server.addr.port()), cap);
    let log = server.log();
    assert!(
        log.contains(&format!("caps the listen backlog at {cap}"))
            && log.contains("net.core.somaxconn"),
        "{log}"
    );
}

/// The soft and hard limits of open files of a running process.
fn open_files_limits(pid: i32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

#[test]
fn the_soft_open_files_limit_is_raised_to_the_hard_one_and_a_low_one_is_logged() {
    let (_dir, data) = data_dir();
    let mut cmd = Command::new("prlimit");
    cmd.arg("--nofile=256:2048")
        .arg(env!("CARGO_BIN_EXE_taskserver"))
        .args(["--bind", "127.0.0.1:0", "--data"])
        .arg(&data)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // prlimit execs the server: the pid is the server's.
    let server = Server::spawn(cmd).unwrap();
    assert_eq!(open_files_limits(server.pid()), (2048, 2048));
    let log = server.log();
    assert!(
        log.contains("the open-files limit is 2048") && log.contains("ulimit"),
        "a limit below the backlog is said: {log}"
    );
}
