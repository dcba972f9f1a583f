//! The test harness: a real three-server ZooKeeper ensemble (Debian's
//! `zookeeper` package on the machine's JRE), each server with its own
//! folder and free loopback ports, stopped when the test ends; and the
//! `coordination` binary as a process.
//!
//! Nothing here sleeps to wait for something: every wait polls a condition
//! until a deadline and fails, saying what it waited for, when it passes.

#![allow(dead_code)] // each test binary uses its own part of the harness

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
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

/// A network namespace of this test's own, joined to the host by a veth
/// pair: a host on the other side of a network link that the test can cut
/// (iptables inside the namespace), without touching the host's own rules.
pub struct NetNs {
    pub name: String,
    /// The host's end of the link: where servers for the namespace listen.
    pub host_address: String,
    host_link: String,
}

impl NetNs {
    /// Needs root (CI runs as root); fails loudly otherwise.
    pub fn create() -> NetNs {
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "the partition test makes a network namespace and iptables rules, which needs root: run it as root (CI does)"
        );
        let n = std::process::id() % 200 + 20;
        let name = format!("zkt-{}", std::process::id());
        let host_link = format!("zkt{n}h");
        let ns_link = format!("zkt{n}n");
        let host_address = format!("10.231.{n}.1");
        // A stale namespace of an earlier run with the same pid.
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &host_link])
            .stderr(Stdio::null())
            .status();
        for args in [
            vec!["netns", "add", &name],
            vec![
                "link", "add", &host_link, "type", "veth", "peer", "name", &ns_link,
            ],
            vec!["link", "set", &ns_link, "netns", &name],
            vec![
                "addr",
                "add",
                &format!("{host_address}/30"),
                "dev",
                &host_link,
            ],
            vec!["link", "set", &host_link, "up"],
            vec![
                "netns",
                "exec",
                &name,
                "ip",
                "addr",
                "add",
                &format!("10.231.{n}.2/30"),
                "dev",
                &ns_link,
            ],
            vec!["netns", "exec", &name, "ip", "link", "set", &ns_link, "up"],
            vec!["netns", "exec", &name, "ip", "link", "set", "lo", "up"],
        ] {
            run("ip", &args);
        }
        NetNs {
            name,
            host_address,
            host_link,
        }
    }

    /// `command` run inside the namespace (`ip netns exec` execs it, so the
    /// pid is the command's own).
    pub fn wrap(&self, command: &Command) -> Command {
        let mut wrapped = Command::new("ip");
        wrapped
            .args(["netns", "exec", &self.name])
            .arg(command.get_program())
            .args(command.get_args());
        for (key, value) in command.get_envs() {
            match value {
                Some(value) => wrapped.env(key, value),
                None => wrapped.env_remove(key),
            };
        }
        wrapped
    }

    /// Drops every packet between the namespace and the host, both ways:
    /// connections hang as they do when a network cable is cut.
    pub fn cut(&self) {
        for chain in [["-A", "OUTPUT", "-d"], ["-A", "INPUT", "-s"]] {
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &self.name,
                    "iptables",
                    chain[0],
                    chain[1],
                    chain[2],
                    &self.host_address,
                    "-j",
                    "DROP",
                ],
            );
        }
    }

    pub fn heal(&self) {
        run("ip", &["netns", "exec", &self.name, "iptables", "-F"]);
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .stderr(Stdio::null())
            .status();
    }
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .expect("run ip/iptables");
    assert!(status.success(), "{program} {} failed", args.join(" "));
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
