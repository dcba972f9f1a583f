//! The leader-election recipe against a real ensemble, through the
//! `coordination elect` and `leader` commands: a leader killed, paused past
//! its session timeout, partitioned from the ensemble, or resigning is
//! replaced, and there is never more than one leader at a time.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use coordination::{LeaderElection, Name};

const ELECTION: &str = "office";

fn contender(servers: &str, id: &str) -> Process {
    let mut command = coordination(servers);
    command.args(["elect", ELECTION, id]);
    Process::spawn(command)
}

/// `coordination leader`'s answer.
fn leader_says(servers: &str) -> String {
    let out = coordination(servers)
        .args(["leader", ELECTION])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "leader: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A session for looking at the election's folder.
struct Admin {
    runtime: tokio::runtime::Runtime,
    session: coordination::Session,
}

impl Admin {
    fn new(servers: &str) -> Admin {
        let runtime = runtime();
        let session = runtime.block_on(session(servers));
        Admin { runtime, session }
    }

    /// How many candidates are in line, as the ensemble sees it.
    fn in_line(&self) -> usize {
        let dir = Name::new(ELECTION)
            .unwrap()
            .path(coordination::name::Kind::Election);
        self.runtime
            .block_on(self.session.client().list_children(&dir))
            .map(|c| c.len())
            .unwrap_or(0)
    }
}

/// Who the ensemble named as leader, and from when.
type Sightings = Arc<Mutex<Vec<(Instant, Option<String>)>>>;

/// Asks the ensemble who leads (after a sync) every 25 ms, on a session of
/// its own, and keeps every change it saw.
struct Observer {
    seen: Sightings,
    task: tokio::task::JoinHandle<()>,
}

impl Observer {
    fn start(runtime: &tokio::runtime::Runtime, servers: &str) -> Observer {
        let seen: Sightings = Default::default();
        let (servers, sink) = (servers.to_owned(), seen.clone());
        let task = runtime.spawn(async move {
            let session = session(&servers).await;
            let election = LeaderElection::new(&session, &Name::new(ELECTION).unwrap());
            loop {
                if let Ok(leader) = election.leader().await {
                    let id = leader.map(|l| l.id);
                    let mut seen = sink.lock().unwrap();
                    if seen.last().map(|(_, last)| last) != Some(&id) {
                        seen.push((Instant::now(), id));
                    }
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        });
        Observer { seen, task }
    }

    /// Waits until the observer has seen `id` lead (it looks every 25 ms).
    fn saw(&self, id: &str) {
        wait_until(
            &format!("the observer to see {id} lead"),
            Duration::from_secs(10),
            || self.leaders().last().map(String::as_str) == Some(id),
        );
    }

    /// The leaders the ensemble named, in order, gaps left out.
    fn leaders(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, id)| id.clone())
            .collect()
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Three candidates; c1 is elected first, c2 and c3 queue in that order.
fn three_candidates(servers: &str, admin: &Admin) -> [Process; 3] {
    let c1 = contender(servers, "c1");
    c1.wait_line("leader c1", 0, Duration::from_secs(30));
    let c2 = contender(servers, "c2");
    wait_until("c2 in line", Duration::from_secs(30), || {
        admin.in_line() == 2
    });
    let c3 = contender(servers, "c3");
    wait_until("c3 in line", Duration::from_secs(30), || {
        admin.in_line() == 3
    });
    assert_eq!(leader_says(servers), "c1");
    [c1, c2, c3]
}

#[test]
#[ignore = "needs ZooKeeper: scripts/test-coordination.sh runs it"]
fn a_killed_leader_is_replaced_and_a_resigning_one_at_once() {
    let ensemble = Ensemble::start();
    let servers = ensemble.connect_string();
    let admin = Admin::new(&servers);
    let observer = Observer::start(&admin.runtime, &servers);
    let [mut c1, mut c2, c3] = three_candidates(&servers, &admin);
    checked("three candidates, one leader: c1, and `coordination leader` says so");

    let killed = Instant::now();
    c1.signal(libc::SIGKILL);
    c1.wait_exit(Duration::from_secs(5));
    let (_, elected) = c2.wait_line("leader c2", 0, SESSION_TIMEOUT * 5);
    let failover = elected - killed;
    assert!(
        failover >= SESSION_TIMEOUT.mul_f64(0.8),
        "c2 was elected {failover:?} after the kill, before c1's session could expire"
    );
    assert_eq!(leader_says(&servers), "c2");
    checked(format!("c1 killed with SIGKILL: c2 (next in line) took over {failover:?} later (session timeout {SESSION_TIMEOUT:?})"));

    let resigned = Instant::now();
    c2.signal(libc::SIGTERM);
    assert_eq!(
        c2.wait_exit(Duration::from_secs(10)),
        0,
        "SIGTERM resigns and exits 0"
    );
    let (_, elected) = c3.wait_line("leader c3", 0, SESSION_TIMEOUT * 5);
    assert!(
        elected - resigned < SESSION_TIMEOUT,
        "a resignation hands over without waiting for a session to expire"
    );
    assert_eq!(c2.lines(), ["leader c2", "follower c2"]);
    checked(format!(
        "c2 got SIGTERM: it printed `follower c2`, exited 0, and c3 led {:?} later",
        elected - resigned
    ));

    let terms = [
        terms("c1", &c1, Some(killed)),
        terms("c2", &c2, None),
        terms("c3", &c3, None),
    ]
    .concat();
    assert_one_leader_at_a_time(terms);
    observer.saw("c3");
    assert_eq!(observer.leaders(), ["c1", "c2", "c3"]);
    checked("no two leaders at once, by the candidates' own lines and by the ensemble (c1, c2, c3 in turn)");
}

#[test]
#[ignore = "needs ZooKeeper: scripts/test-coordination.sh runs it"]
fn a_paused_leader_is_replaced_and_steps_down_when_it_runs_again() {
    let ensemble = Ensemble::start();
    let servers = ensemble.connect_string();
    let admin = Admin::new(&servers);
    let observer = Observer::start(&admin.runtime, &servers);
    let [c1, c2, c3] = three_candidates(&servers, &admin);

    let paused = Instant::now();
    c1.signal(libc::SIGSTOP);
    let (_, elected) = c2.wait_line("leader c2", 0, SESSION_TIMEOUT * 5);
    assert!(elected - paused >= SESSION_TIMEOUT.mul_f64(0.8));
    checked(format!(
        "c1 paused (SIGSTOP): c2 took over {:?} later",
        elected - paused
    ));

    let resumed = Instant::now();
    c1.signal(libc::SIGCONT);
    let (_, stepped_down) = c1.wait_line("follower c1", 0, SESSION_TIMEOUT * 3);
    let late = stepped_down - resumed;
    assert!(
        late < SESSION_TIMEOUT,
        "the resumed leader took {late:?} to step down"
    );
    checked(format!("c1 resumed: it said `follower c1` {late:?} after it ran again (no fencing can close this window; the lock's token is for it)"));
    // It campaigns again, behind c3: it must not lead again while c2 does.
    wait_until("c1 back in line", Duration::from_secs(20), || {
        admin.in_line() == 3
    });
    assert_eq!(leader_says(&servers), "c2");
    assert_eq!(c1.lines(), ["leader c1", "follower c1"]);
    assert!(c3.lines().is_empty());

    // Seen by the ensemble: c1, then c2, never c1 again.
    observer.saw("c2");
    assert_eq!(observer.leaders(), ["c1", "c2"]);
    // Seen by the running candidates: c1 could not act while paused, so its
    // term is counted until the pause; it said it stepped down right after.
    assert_one_leader_at_a_time(
        [terms("c1", &c1, None), terms("c2", &c2, None)]
            .concat()
            .into_iter()
            .map(|mut t| {
                if t.id == "c1" {
                    t.until = Some(paused);
                }
                t
            })
            .collect(),
    );
    checked("the ensemble named c1 then c2, never c1 again; c1 did not claim to lead again");
}

/// c1 runs in a network namespace of its own; the link to the ensemble is
/// cut with iptables (packets dropped, both ways). c1 must say it is no
/// longer the leader *before* the ensemble expires its session and c2 is
/// elected, by the clock of this one machine.
#[test]
#[ignore = "needs ZooKeeper and root: scripts/test-coordination.sh runs it"]
fn a_partitioned_leader_steps_down_before_another_is_elected() {
    let netns = NetNs::create();
    let ensemble = Ensemble::start_on(&netns.host_address);
    let servers = ensemble.connect_string();
    let admin = Admin::new(&servers);
    let observer = Observer::start(&admin.runtime, &servers);

    let mut command = coordination(&servers);
    command.args(["elect", ELECTION, "c1"]);
    let c1 = Process::spawn(netns.wrap(&command));
    c1.wait_line("leader c1", 0, Duration::from_secs(30));
    let c2 = contender(&servers, "c2");
    wait_until("c2 in line", Duration::from_secs(30), || {
        admin.in_line() == 2
    });
    checked(format!(
        "c1 leads from namespace {}, c2 waits on the host",
        netns.name
    ));

    let cut = Instant::now();
    netns.cut();
    let (_, stepped_down) = c1.wait_line("follower c1", 0, SESSION_TIMEOUT * 3);
    let (_, elected) = c2.wait_line("leader c2", 0, SESSION_TIMEOUT * 5);
    assert!(
        stepped_down < elected,
        "c1 stepped down {:?} after the cut, c2 was elected {:?} after it: two leaders at once",
        stepped_down - cut,
        elected - cut
    );
    checked(format!(
        "cut off, c1 stepped down {:?} after the cut, before c2 was elected ({:?} after it): a margin of {:?}",
        stepped_down - cut,
        elected - cut,
        elected - stepped_down
    ));

    netns.heal();
    // Its session has expired: it campaigns again on a new one, behind c2.
    wait_until(
        "c1 back in line after the heal",
        SESSION_TIMEOUT * 10,
        || admin.in_line() == 2,
    );
    assert_eq!(leader_says(&servers), "c2");
    assert_eq!(c1.lines(), ["leader c1", "follower c1"]);
    assert_one_leader_at_a_time([terms("c1", &c1, None), terms("c2", &c2, None)].concat());
    observer.saw("c2");
    assert_eq!(observer.leaders(), ["c1", "c2"]);
    checked("healed, c1 queued again behind c2; one leader at a time throughout");
}
