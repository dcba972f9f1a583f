//! The real binaries as processes.
//!
//! This is the harness of `taskserver/tests/common` grown for the campaigns:
//! a `taskserver` on `127.0.0.1:0` over a data file, its port read from the
//! `addr=` field of its "listening" log line, its stderr drained for the whole
//! life of the process; plus what the campaigns need on top: binaries found at
//! run time rather than by `env!`, a file-size limit set before `exec` and
//! changed on the running process, and an HTTP client that never goes
//! through a proxy.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// How long a server may take to start listening before that is a failure.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the binaries under test are.
#[derive(Debug, Clone)]
pub struct Tools {
    /// The server under test.
    pub taskserver: PathBuf,
    /// The load generator, used as extra client processes.
    pub clientemulator: PathBuf,
    /// This program, re-run as `reliability writer` for client processes
    /// whose every acknowledgement the campaign sees.
    pub reliability: PathBuf,
}

impl Tools {
    /// The binaries next to `exe` (cargo puts every binary of a profile in
    /// one directory), unless given.
    pub fn next_to(
        exe: &Path,
        taskserver: Option<PathBuf>,
        clientemulator: Option<PathBuf>,
    ) -> Tools {
        let dir = exe.parent().unwrap_or(Path::new("."));
        Tools {
            taskserver: taskserver.unwrap_or_else(|| dir.join("taskserver")),
            clientemulator: clientemulator.unwrap_or_else(|| dir.join("clientemulator")),
            reliability: exe.to_owned(),
        }
    }

    /// Fails with a message saying how to build what is missing.
    pub fn check(&self) -> anyhow::Result<()> {
        for (what, path) in [
            ("taskserver", &self.taskserver),
            ("clientemulator", &self.clientemulator),
        ] {
            anyhow::ensure!(
                path.is_file(),
                "no {what} binary at {}: build it with `cargo build --release --workspace` \
                 (scripts/reliability does), or pass --{what} PATH",
                path.display()
            );
        }
        Ok(())
    }
}

/// A running `taskserver` process, killed when dropped.
pub struct Server {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Everything it wrote to stderr so far.
    log: Arc<Mutex<String>>,
}

/// How a server process ended before it listened.
#[derive(Debug)]
pub struct Refused {
    /// `None` when it was still running at the time limit (then killed).
    pub status: Option<ExitStatus>,
    /// Its stderr.
    pub log: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(status) => write!(f, "exited with {status}")?,
            None => write!(f, "did not listen within {START_TIMEOUT:?}")?,
        }
        write!(f, "; its log:\n{}", self.log.trim_end())
    }
}

/// `taskserver --bind 127.0.0.1:0 --data <data>` with logs on a pipe.
pub fn server_command(tools: &Tools, data: &Path) -> Command {
    let mut cmd = Command::new(&tools.taskserver);
    cmd.args(["--bind", "127.0.0.1:0", "--data"])
        .arg(data)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

impl Server {
    /// Starts a server on `data` and waits until it listens.
    pub fn start(tools: &Tools, data: &Path) -> Result<Server, Refused> {
        Server::spawn(server_command(tools, data))
    }

    /// Starts `cmd` and waits for the "listening" log line (with its port),
    /// or for the process to exit.
    pub fn spawn(mut cmd: Command) -> Result<Server, Refused> {
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                return Err(Refused {
                    status: None,
                    log: format!("cannot run {:?}: {e}", cmd.get_program()),
                })
            }
        };
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        // Drains stderr for the whole life of the process, so it never blocks.
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("addr="))
                    .and_then(|a| a.parse::<SocketAddr>().ok())
                {
                    let _ = tx.send(addr);
                }
                let mut log = sink.lock().unwrap_or_else(|p| p.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => Ok(Server { child, addr, log }),
            Err(timeout_or_exit) => {
                let status = match timeout_or_exit {
                    // stderr closed: the process is exiting; its status.
                    mpsc::RecvTimeoutError::Disconnected => child.wait().ok(),
                    mpsc::RecvTimeoutError::Timeout => {
                        let _ = child.kill();
                        let _ = child.wait();
                        None
                    }
                };
                // stderr is closed now: the reader finishes the last lines.
                let _ = reader.join();
                let log = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
                Err(Refused { status, log })
            }
        }
    }

    /// The base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// `kill -9`: no chance to finish anything.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(mut self) -> std::io::Result<ExitStatus> {
        // SAFETY: plain kill(2) on our own child, which has not been reaped.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        self.child.wait()
    }

    /// Its stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes `cmd`'s process start with a file-size limit of `bytes`, as a full
/// disk would stop its writes (the server ignores SIGXFSZ and gets EFBIG).
pub fn limit_file_size(cmd: &mut Command, bytes: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe; it runs in the child before exec.
    unsafe {
        cmd.pre_exec(move || {
            let rl = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: libc::RLIM_INFINITY,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &rl) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Lifts the file-size limit of a running process, as freeing space would.
pub fn lift_file_size_limit(pid: i32) -> std::io::Result<()> {
    let rl = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: prlimit on our own child with a valid struct and no old-value out.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &rl, std::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// An HTTP client for loopback load: never through a proxy, a time limit on
/// every request so a hung server is a failure rather than a hang.
pub fn http_client() -> reqwest::Client {
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

/// Polls `done` every few milliseconds until it holds or `limit` passes;
/// whether it held. The bounded wait the campaigns use instead of sleeps.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
