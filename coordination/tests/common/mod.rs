//! The test harness: a real three-server ZooKeeper ensemble (Debian's
//! `zookeeper` package on the machine's JRE), each server with its own
//! folder and free loopback ports, stopped when the test ends; and the
//! `coordination` binary as a process.
//!
//! Nothing here sleeps to wait for something: every wait polls a condition
//! until a deadline and fails, saying what it waited for, when it passes.

#![allow(dead_code)] // each test binary uses its own part of the harness

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";
/// Logging for the servers (to their `server.log`); in the same Debian
/// package as the logging API ZooKeeper depends on.
const SLF4J_SIMPLE_JAR: &str = "/usr/share/java/slf4j-simple.jar";

/// The servers' tick. Sessions may last 2 to 20 ticks: 1 to 10 s.
pub const TICK: Duration = Duration::from_millis(500);

/// The session timeout the tests ask for: short, so that expiry is quick,
/// and 4 ticks, so that a busy machine does not expire healthy sessions.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(2);

/// Fails loudly when ZooKeeper is not installed: these tests must not pass
/// by testing nothing.
pub fn require_zookeeper() {
    assert!(
        Path::new(ZOOKEEPER_JAR).exists(),
        "ZooKeeper is not installed ({ZOOKEEPER_JAR} is missing). Run scripts/install-zookeeper.sh \
         (as root), or scripts/test-coordination.sh, which installs it and runs these tests"
    );
    assert!(
        Command::new("java")
            .arg("-version")
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
        "no `java` on PATH: run scripts/install-zookeeper.sh (it installs a headless JRE)"
    );
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `condition` every 20 ms until it holds; panics after `timeout`,
/// naming `what` it waited for. Returns how long it took.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < timeout,
            "waited {timeout:?} for {what}, in vain"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

/// The async form of [`wait_until`].
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut condition: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        assert!(
            started.elapsed() < timeout,
            "waited {timeout:?} for {what}, in vain"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// What the tests print of what they checked (shown with --nocapture).
pub fn checked(what: impl std::fmt::Display) {
    println!("  checked: {what}");
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// One ZooKeeper server of an [`Ensemble`].
pub struct Server {
    pub id: usize,
    pub client_port: u16,
    dir: PathBuf,
    process: Option<Child>,
}

/// Three ZooKeeper servers forming one ensemble.
pub struct Ensemble {
    pub servers: Vec<Server>,
    /// Where clients reach the servers (127.0.0.1 unless a test needs
    /// another address).
    pub address: String,
    _root: tempfile::TempDir,
}

impl Ensemble {
    /// Three servers on 127.0.0.1, serving when this returns.
    pub fn start() -> Ensemble {
        Ensemble::start_on("127.0.0.1")
    }

    /// Three servers whose client ports listen on `address`; they talk to
    /// each other over 127.0.0.1.
    pub fn start_on(address: &str) -> Ensemble {
        require_zookeeper();
        let root = tempfile::Builder::new()
            .prefix("zk-ensemble.")
            .tempdir()
            .unwrap();
        let ports: Vec<(u16, u16, u16)> = (0..3)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let peers: String = ports
            .iter()
            .enumerate()
            .map(|(i, (_, quorum, election))| {
                format!("server.{}=127.0.0.1:{quorum}:{election}\n", i + 1)
            })
            .collect();
        let mut servers = Vec::new();
        for (i, (client_port, _, _)) in ports.iter().enumerate() {
            let id = i + 1;
            let dir = root.path().join(format!("zk{id}"));
            std::fs::create_dir_all(dir.join("data")).unwrap();
            std::fs::write(dir.join("data/myid"), format!("{id}\n")).unwrap();
            let config = format!(
                "tickTime={tick}\ninitLimit=20\nsyncLimit=10\ndataDir={data}\n\
                 clientPort={client_port}\nclientPortAddress={address}\nmaxClientCnxns=0\n\
                 admin.enableServer=false\n4lw.commands.whitelist=*\nstandaloneEnabled=false\n{peers}",
                tick = TICK.as_millis(),
                data = dir.join("data").display(),
            );
            std::fs::write(dir.join("zoo.cfg"), config).unwrap();
            servers.push(Server {
                id,
                client_port: *client_port,
                dir,
                process: None,
            });
        }
        let mut ensemble = Ensemble {
            servers,
            address: address.to_owned(),
            _root: root,
        };
        for i in 0..3 {
            ensemble.start_server(i);
        }
        ensemble.wait_serving(&[0, 1, 2]);
        ensemble
    }

    /// `HOST:PORT,HOST:PORT,HOST:PORT`, for `--zookeeper`.
    pub fn connect_string(&self) -> String {
        self.servers
            .iter()
            .map(|s| format!("{}:{}", self.address, s.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts server `i` (0-based) with the data it had.
    pub fn start_server(&mut self, i: usize) {
        let server = &mut self.servers[i];
        assert!(
            server.process.is_none(),
            "server {} is already running",
            server.id
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(server.dir.join("server.log"))
            .unwrap();
        let mut command = Command::new("java");
        command
            .args([
                "-Xms16m",
                "-Xmx160m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
            ])
            .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=info")
            .arg("-cp")
            .arg(format!("{ZOOKEEPER_JAR}:{SLF4J_SIMPLE_JAR}"))
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(server.dir.join("zoo.cfg"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // If the test process dies without running Drop (killed, say), the
        // kernel kills the servers too. (The signal is sent when the thread
        // that started them ends; every test starts its own ensemble.)
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        server.process = Some(command.spawn().expect("start java"));
    }

    /// Kills server `i` with SIGKILL, as a crash would, and reaps it.
    pub fn kill_server(&mut self, i: usize) {
        let mut child = self.servers[i].process.take().expect("server is running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Waits until every server in `which` answers `srvr` as a leader or
    /// follower (so a quorum stands behind it).
    pub fn wait_serving(&self, which: &[usize]) {
        for &i in which {
            let server = &self.servers[i];
            let what = format!(
                "ZooKeeper server {} to serve (its log: {})",
                server.id,
                server.dir.join("server.log").display()
            );
            wait_until(&what, Duration::from_secs(90), || self.mode(i).is_some());
        }
    }

    /// `leader` or `follower`, or `None` while server `i` does not serve.
    pub fn mode(&self, i: usize) -> Option<String> {
        let answer = self.four_letter(i, "srvr")?;
        answer
            .lines()
            .find_map(|l| l.strip_prefix("Mode: "))
            .map(str::to_owned)
    }

    /// Server `i`'s `mntr` numbers.
    pub fn mntr(&self, i: usize) -> HashMap<String, f64> {
        let answer = self.four_letter(i, "mntr").unwrap_or_default();
        answer
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once('\t')?;
                Some((k.to_owned(), v.trim().parse().ok()?))
            })
            .collect()
    }

    /// The sum over the running servers of one `mntr` number.
    pub fn mntr_sum(&self, key: &str) -> f64 {
        (0..self.servers.len())
            .filter(|&i| self.servers[i].process.is_some())
            .map(|i| self.mntr(i).get(key).copied().unwrap_or(0.0))
            .sum()
    }

    fn four_letter(&self, i: usize, word: &str) -> Option<String> {
        let address = format!("{}:{}", self.address, self.servers[i].client_port);
        let mut stream =
            TcpStream::connect_timeout(&address.parse().ok()?, Duration::from_secs(1)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        stream.write_all(word.as_bytes()).ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        Some(answer)
    }
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        for server in &mut self.servers {
            if let Some(mut child) = server.process.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// A new session on `servers`, with the tests' session timeout.
pub async fn session(servers: &str) -> coordination::Session {
    session_with(servers, SESSION_TIMEOUT).await
}

pub async fn session_with(servers: &str, session_timeout: Duration) -> coordination::Session {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    coordination::Session::connect(servers, session_timeout, deadline)
        .await
        .expect("a session with the test ensemble")
}

mod netns;
mod process;
#[allow(unused_imports)] // only election.rs cuts a contender off
pub use netns::NetNs;
pub use process::*;
