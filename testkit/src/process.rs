//! The real `taskserver` binary as a process: on `127.0.0.1:0` over a data
//! file, its port read from the `addr=` field of its "listening" log line,
//! its stderr drained for the whole life of the process; and the file-size
//! limits that make its writes fail as a full disk would.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// How long a server may take to start listening before that is a failure.
const START_TIMEOUT: Duration = Duration::from_secs(60);

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

/// `BINARY --bind 127.0.0.1:0 --data DATA` with logs on a pipe: the
/// taskserver at `binary`, ready for [`Server::spawn`].
pub fn command(binary: &Path, data: &Path) -> Command {
    let mut cmd = bare_command(binary);
    cmd.args(["--bind", "127.0.0.1:0", "--data"]).arg(data);
    cmd
}

/// `BINARY` with logs on a pipe and nothing else: the caller adds the flags.
pub fn bare_command(binary: &Path) -> Command {
    let mut cmd = Command::new(binary);
    logs_piped(&mut cmd);
    cmd
}

/// What [`bare_command`] sets on a command: info logs on a pipe, no stdin.
pub fn logs_piped(cmd: &mut Command) {
    cmd.env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
}

impl Server {
    /// Starts the server at `binary` on `data` and waits until it listens.
    pub fn start(binary: &Path, data: &Path) -> Result<Server, Refused> {
        Server::spawn(command(binary, data))
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

    /// Waits for the process to exit by itself.
    pub fn wait(mut self) -> std::io::Result<ExitStatus> {
        self.child.wait()
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
