//! The `coordination` binary as a process: its command line, its collected
//! stdout lines, signals, exit; and the terms of office its lines give.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{wait_until, SESSION_TIMEOUT};

/// The `coordination` binary, with `--zookeeper` set.
pub fn coordination(servers: &str) -> Command {
    coordination_with(servers, SESSION_TIMEOUT)
}

/// The same with another session timeout.
pub fn coordination_with(servers: &str, session_timeout: Duration) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_coordination"));
    command
        .env("ZOOKEEPER", servers)
        .env(
            "ZOOKEEPER_SESSION_TIMEOUT",
            session_timeout.as_secs_f64().to_string(),
        )
        .env("RUST_LOG", "warn,coordination=debug");
    command
}

/// The error line of a `coordination` run's stderr (the rest is its log).
pub fn error_line(stderr: &str) -> &str {
    stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("coordination:"))
        .unwrap_or("(no `coordination:` line)")
}

/// A running `coordination` process whose stdout lines are collected, each
/// with the moment it was read.
pub struct Process {
    pub child: Child,
    pub lines: Arc<Mutex<Vec<(Instant, String)>>>,
    pub stderr: Arc<Mutex<String>>,
}

impl Process {
    pub fn spawn(mut command: Command) -> Process {
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command.spawn().expect("start coordination");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push((Instant::now(), line));
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Process {
            child,
            lines,
            stderr,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|(_, l)| l.clone())
            .collect()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for a stdout line equal to `line` after the first `skip` lines;
    /// returns its index and when it was read.
    pub fn wait_line(&self, line: &str, skip: usize, timeout: Duration) -> (usize, Instant) {
        let mut found = None;
        wait_until(
            &format!("the line {line:?} from pid {}", self.pid()),
            timeout,
            || {
                found = self
                    .lines
                    .lock()
                    .unwrap()
                    .iter()
                    .enumerate()
                    .skip(skip)
                    .find(|(_, (_, l))| l == line)
                    .map(|(i, (at, _))| (i, *at));
                found.is_some()
            },
        );
        found.unwrap()
    }

    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own, not yet reaped, child.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0);
    }

    /// Waits for the process to exit; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let mut code = None;
        wait_until(&format!("pid {} to exit", self.pid()), timeout, || {
            code = self.child.try_wait().unwrap().map(|s| {
                use std::os::unix::process::ExitStatusExt;
                s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
            });
            code.is_some()
        });
        code.unwrap()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A leader's time in office, from a contender's `leader`/`follower` lines.
#[derive(Clone, Debug)]
pub struct Term {
    pub id: String,
    pub from: Instant,
    /// `None`: still leading when the test looked.
    pub until: Option<Instant>,
}

/// The terms in a contender's lines; `ended` closes an open one (the moment
/// the process was killed, say).
pub fn terms(id: &str, process: &Process, ended: Option<Instant>) -> Vec<Term> {
    let mut terms: Vec<Term> = Vec::new();
    for (at, line) in process.lines.lock().unwrap().iter() {
        if *line == format!("leader {id}") {
            terms.push(Term {
                id: id.to_owned(),
                from: *at,
                until: None,
            });
        } else if *line == format!("follower {id}") {
            let last = terms.last_mut().expect("follower before any leader line");
            assert!(
                last.until.is_none(),
                "two follower lines in a row from {id}"
            );
            last.until = Some(*at);
        } else {
            panic!("unexpected line from {id}: {line:?}");
        }
    }
    if let (Some(last), Some(ended)) = (terms.last_mut(), ended) {
        last.until.get_or_insert(ended);
    }
    terms
}

/// No two terms overlap.
pub fn assert_one_leader_at_a_time(mut all: Vec<Term>) {
    all.sort_by_key(|t| t.from);
    for pair in all.windows(2) {
        let until = pair[0]
            .until
            .unwrap_or_else(|| panic!("{} still leads while {} leads", pair[0].id, pair[1].id));
        assert!(
            until <= pair[1].from,
            "{} led until {:?} after {} was elected",
            pair[0].id,
            until - pair[1].from,
            pair[1].id
        );
    }
}

/// A `sh -c` script for `coordination lock`'s command: it writes its
/// FENCING_TOKEN to `token` (aside first, then renamed, so that it is read
/// whole), then runs until SIGTERM, which it notes in `term`.
pub fn token_then_wait(token: &Path, term: &Path) -> String {
    format!(
        "trap 'echo TERM > {term}; exit 143' TERM; {write}; while :; do sleep 0.05; done",
        term = term.display(),
        write = write_token(token)
    )
}

/// The shell words that write FENCING_TOKEN to `token`, whole.
pub fn write_token(token: &Path) -> String {
    format!(
        "echo $FENCING_TOKEN > {tok}.tmp && mv {tok}.tmp {tok}",
        tok = token.display()
    )
}

/// Waits until a holder's command has written its token to `token`; the token.
pub fn token_written(token: &Path) -> i64 {
    wait_until(
        "the holder to run its command",
        Duration::from_secs(30),
        || token.exists(),
    );
    std::fs::read_to_string(token)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}
