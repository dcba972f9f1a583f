//! Cluster mode, through the real binary: three (and four) processes on
//! loopback, each with its own directory. Every test checks that nothing
//! acknowledged is lost or stored twice, and that the nodes' files are
//! byte-identical once the cluster is quiet.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use testkit::cluster::{LocalCluster, SECRET};

const PATIENCE: Duration = Duration::from_secs(30);

fn start(n: u64) -> LocalCluster {
    LocalCluster::start(common::binary(), n).unwrap_or_else(|r| panic!("a node did not start: {r}"))
}

/// POSTs a task with a key to node `via`: the status and body.
async fn post(cluster: &LocalCluster, via: u64, titulo: &str, key: &str) -> (u16, Value) {
    testkit::http::post(&common::client(), &cluster.url(via), titulo, Some(key))
        .await
        .unwrap_or_else(|e| panic!("POST to node {via}: {e}"))
}

/// POSTs a new task and checks it was acknowledged: 201, or 200 when a
/// change of leader made the node retry it and the retry found it stored
/// (what its key is for); its id.
async fn store(cluster: &LocalCluster, via: u64, titulo: &str, key: &str) -> u64 {
    let (status, body) = post(cluster, via, titulo, key).await;
    assert!(
        status == 201 || status == 200,
        "{titulo} via node {via}: {status} {body}"
    );
    assert_eq!(body["titulo"], titulo);
    body["id"].as_u64().unwrap()
}

/// Every node's file, once quiet: all equal, a valid array; its tasks.
fn identical_files(cluster: &LocalCluster) -> Vec<Value> {
    let Some(files) = cluster.wait_until_quiet(PATIENCE) else {
        let statuses: Vec<_> = cluster
            .running()
            .iter()
            .map(|&id| cluster.status(id))
            .collect();
        let logs: Vec<String> = cluster
            .running()
            .iter()
            .map(|&id| {
                format!(
                    "--- node {id}\n{}",
                    cluster.node(id).map(|n| n.log()).unwrap_or_default()
                )
            })
            .collect();
        panic!(
            "the nodes did not apply everything committed: {statuses:?}\n{}",
            logs.join("\n")
        );
    };
    let mut bytes = files.values();
    let first = bytes.next().expect("a node").clone();
    for (id, other) in &files {
        assert!(
            *other == first,
            "node {id}'s file differs:\n{}\n---\n{}",
            String::from_utf8_lossy(other),
            String::from_utf8_lossy(&first)
        );
    }
    testkit::datafile::parse_tasks(&first).unwrap_or_else(|e| panic!("{e}"))
}

/// Titles of `tasks`, each once (duplicates fail the test).
fn titles(tasks: &[Value]) -> BTreeMap<String, u64> {
    let mut titles = BTreeMap::new();
    for t in tasks {
        let titulo = t["titulo"].as_str().unwrap().to_owned();
        assert!(
            titles
                .insert(titulo.clone(), t["id"].as_u64().unwrap())
                .is_none(),
            "{titulo} stored twice"
        );
    }
    titles
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_through_any_node_are_on_every_node_in_the_same_bytes() {
    let cluster = start(3);
    let leader = cluster.wait_for_leader(PATIENCE).expect("a leader");
    let status = cluster.status(leader).unwrap();
    assert_eq!(status["role"], "leader");
    assert_eq!(status["voters"], json!([1, 2, 3]));

    let mut acked = BTreeMap::new();
    let sends = (0..30).map(|i| {
        let via = 1 + i % 3;
        let cluster = &cluster;
        async move {
            (
                i,
                store(cluster, via, &format!("t{i}"), &format!("k{i}")).await,
            )
        }
    });
    for (i, id) in futures::future::join_all(sends).await {
        acked.insert(format!("t{i}"), id);
    }
    // A read on any node, right after, sees every acknowledged task.
    for id in 1..=3 {
        let ids = common::list_ids(&common::client(), &cluster.url(id)).await;
        assert_eq!(ids.len(), 30, "node {id}");
    }
    let tasks = identical_files(&cluster);
    assert_eq!(
        titles(&tasks),
        acked,
        "every acknowledged task, once, under its id"
    );
    assert_eq!(tasks.last().unwrap()["id"], 30);
    // /metrics shows Raft as it is at the scrape, on every node.
    for id in 1..=3 {
        let text = common::client()
            .get(format!("{}/metrics", cluster.url(id)))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let value = |name: &str| -> i64 {
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("taskserver_{name} ")))
                .unwrap_or_else(|| panic!("node {id}: no {name} in\n{text}"));
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        let applied = cluster.status(id).unwrap()["applied"].as_i64().unwrap();
        assert!(
            applied >= 3,
            "node {id}: the first entries and those of the 30 tasks"
        );
        assert_eq!(value("raft_applied_index"), applied, "node {id}");
        assert_eq!(value("raft_committed_index"), applied, "node {id}");
        assert_eq!(value("raft_last_log_index"), applied, "node {id}");
        assert_eq!(
            value("raft_is_leader"),
            i64::from(id == leader),
            "node {id}"
        );
        assert!(value("raft_term") >= 1, "node {id}");
        assert!(value("raft_leader_changes_total") >= 1, "node {id}");
        assert_eq!(value("raft_max_follower_lag"), 0, "node {id}");
    }
    // The operation log on every node, readable while the node runs.
    let log = std::process::Command::new(common::binary())
        .args(["raft-log", "--raft-dir"])
        .arg(cluster.raft_dir(2))
        .output()
        .unwrap();
    let lines: Vec<Value> = String::from_utf8_lossy(&log.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let tasks: usize = lines
        .iter()
        .filter(|l| l["kind"] == "tasks")
        .map(|l| l["entry"].as_array().expect("an entry's tasks").len())
        .sum();
    assert_eq!(tasks, 30);
    // Sent all at once, the writes went in fewer entries than tasks: the
    // leader proposes those waiting together.
    let entries = lines.iter().filter(|l| l["kind"] == "tasks").count();
    assert!(
        entries < 30,
        "{entries} entries for the 30 tasks sent at once"
    );
    assert_eq!(lines[0]["kind"], "membership");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_leader_is_replaced_a_retry_finds_its_task_and_the_node_catches_up() {
    let mut cluster = start(3);
    let leader = cluster.wait_for_leader(PATIENCE).expect("a leader");
    let other = (1..=3).find(|&id| id != leader).unwrap();
    let first = store(&cluster, leader, "before the kill", "retry-me").await;

    cluster.kill9(leader);
    // A client's retry on another node, with the same key: the first task.
    let (status, again) = post(&cluster, other, "before the kill", "retry-me").await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], first);
    let new_leader = cluster.wait_for_leader(PATIENCE).expect("a new leader");
    assert_ne!(new_leader, leader);
    store(&cluster, other, "after the kill", "new").await;

    cluster.restart(leader).unwrap();
    let tasks = identical_files(&cluster);
    assert_eq!(titles(&tasks).len(), 2, "two tasks, none twice");
    assert_eq!(cluster.status(leader).unwrap()["role"], "follower");
}

/// The longest a write may wait on a node cut off from the others: well
/// past the moment it counts itself cut off (twice the longest election
/// timeout, 800 ms), well short of a write's whole 10 s wait.
const CUT_OFF_ANSWER: Duration = Duration::from_secs(5);

/// Posts to node `alone`, whose peers are all paused, until it answers
/// `503` saying it is cut off; every answer must come within
/// [`CUT_OFF_ANSWER`], and none may be an acknowledgement.
async fn answers_503_at_once(cluster: &LocalCluster, alone: u64, what: &str) {
    let started = std::time::Instant::now();
    for n in 0.. {
        let asked = std::time::Instant::now();
        let key = format!("{}-{n}", what.replace(' ', "-"));
        let (status, body) = post(cluster, alone, &format!("{what} {n}"), &key).await;
        let took = asked.elapsed();
        assert!(
            took < CUT_OFF_ANSWER,
            "{what}: node {alone} held a write for {took:?}: {status} {body}"
        );
        assert_eq!(
            status, 503,
            "{what}: node {alone} answered {status}: {body}"
        );
        if body["error"]
            .as_str()
            .is_some_and(|e| e.contains("cut off"))
        {
            return;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{what}: node {alone} never said it is cut off: {body}"
        );
    }
}

/// A node that hears from no other (here: they are paused), leader or
/// follower, answers writes `503` at once, saying why, so that a client
/// goes to another node, instead of holding each one for the whole 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_cut_off_from_the_others_answers_503_at_once() {
    let cluster = start(3);
    let leader = cluster.wait_for_leader(PATIENCE).expect("a leader");
    let followers: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    store(&cluster, followers[0], "before", "before").await;

    for &f in &followers {
        cluster.pause(f, true);
    }
    answers_503_at_once(&cluster, leader, "leader alone").await;
    for &f in &followers {
        cluster.pause(f, false);
    }
    let leader = cluster.wait_for_leader(PATIENCE).expect("a leader again");
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let third = (1..=3).find(|&id| id != leader && id != follower).unwrap();
    store(&cluster, follower, "between", "between").await;

    cluster.pause(leader, true);
    cluster.pause(third, true);
    answers_503_at_once(&cluster, follower, "follower alone").await;
    cluster.pause(leader, false);
    cluster.pause(third, false);
    cluster
        .wait_for_leader(PATIENCE)
        .expect("a leader at the end");
    store(&cluster, follower, "after", "after").await;

    // A write answered 503 by the lone leader may still be committed
    // later (its entry was in that leader's log): that is why the answer
    // says to retry with the key. Whatever is there is there once.
    let titles = titles(&identical_files(&cluster));
    for t in ["before", "between", "after"] {
        assert!(titles.contains_key(t), "{t} is lost: {titles:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_node_catches_up_and_no_second_cluster_is_made() {
    let mut cluster = start(3);
    cluster.wait_for_leader(PATIENCE).expect("a leader");
    for i in 0..10 {
        store(&cluster, 1 + i % 3, &format!("t{i}"), &format!("k{i}")).await;
    }
    let cluster_id = |cluster: &LocalCluster, id: u64| -> Value {
        let text = std::fs::read_to_string(cluster.raft_dir(id).join("node.json")).unwrap();
        serde_json::from_str::<Value>(&text).unwrap()["cluster_id"].clone()
    };
    let before = cluster_id(&cluster, 1);
    assert!(before.is_string());
    // Wipe a follower, and then the node that created the cluster.
    for victim in [3, 1] {
        cluster.kill9(victim);
        cluster.wipe(victim);
        cluster.restart(victim).unwrap();
        store(
            &cluster,
            2,
            &format!("after wiping {victim}"),
            &format!("w{victim}"),
        )
        .await;
        let tasks = identical_files(&cluster);
        assert_eq!(titles(&tasks).len(), 10 + if victim == 3 { 1 } else { 2 });
        assert_eq!(
            cluster_id(&cluster, victim),
            before,
            "it rejoined the same cluster"
        );
        let status = cluster.status(victim).unwrap();
        assert_eq!(status["voters"], json!([1, 2, 3]));
    }
}

/// A wiped node that has not caught up yet when the leader dies still votes
/// for the follower that holds everything committed: the cluster goes on
/// (the reliability campaign found it stuck). The leader is stopped while
/// the wiped node starts, so that it cannot catch up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_node_still_behind_votes_for_a_follower_that_has_everything() {
    let mut cluster = start(3);
    let leader = cluster.wait_for_leader(PATIENCE).expect("a leader");
    let mut others = (1..=3).filter(|&id| id != leader);
    let (wiped, survivor) = (others.next().unwrap(), others.next().unwrap());
    for i in 0..10 {
        store(&cluster, survivor, &format!("t{i}"), &format!("k{i}")).await;
    }
    cluster.wait_until_quiet(PATIENCE).expect("quiet");
    cluster.kill9(wiped);
    cluster.wipe(wiped);
    cluster.pause(leader, true);
    cluster.restart(wiped).unwrap();
    assert_eq!(
        cluster.status(wiped).unwrap()["last_log_index"],
        Value::Null,
        "the wiped node has not caught up: nobody sent it the log"
    );
    cluster.kill9(leader);
    assert_eq!(
        cluster.wait_for_leader(PATIENCE),
        Some(survivor),
        "the follower with every task leads, with the wiped node's vote"
    );
    store(&cluster, wiped, "after the leader's death", "after").await;
    let tasks = identical_files(&cluster);
    assert_eq!(titles(&tasks).len(), 11, "every task, once");
}

/// Indexes of the entries `taskserver raft-log` prints for node `id`.
fn raft_log_indexes(cluster: &LocalCluster, id: u64) -> Vec<u64> {
    let out = std::process::Command::new(common::binary())
        .arg("raft-log")
        .arg("--raft-dir")
        .arg(cluster.raft_dir(id))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["index"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

/// With a snapshot every 100 entries, the log is dropped up to each
/// snapshot; a node stopped meanwhile, and then a wiped one, can only catch
/// up from the snapshot the leader sends, and they do, with every task once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_log_is_compacted_and_nodes_far_behind_catch_up_from_a_snapshot() {
    let mut cluster = LocalCluster::start_with(
        common::binary(),
        3,
        &[("TASKSERVER_RAFT_SNAPSHOT_EVERY", "100")],
    )
    .unwrap_or_else(|r| panic!("a node did not start: {r}"));
    let leader = cluster.wait_for_leader(PATIENCE).expect("a leader");
    let behind = (1..=3).find(|&id| id != leader).unwrap();
    store(&cluster, leader, "before", "before").await;
    cluster.wait_until_quiet(PATIENCE).expect("quiet");
    cluster.kill9(behind);
    let writes = 350;
    for i in 0..writes {
        store(&cluster, leader, &format!("t{i}"), &format!("k{i}")).await;
    }
    let status = cluster.status(leader).unwrap();
    let snapshot = status["snapshot"]
        .as_u64()
        .expect("the leader made a snapshot");
    assert!(snapshot >= 200, "{status}");
    // The leader drops its log once no replication is using it (the one to
    // the stopped node restarts after each failure).
    let deadline = std::time::Instant::now() + PATIENCE;
    let kept = loop {
        let kept = raft_log_indexes(&cluster, leader);
        if kept.first().is_some_and(|&first| first > 200) || std::time::Instant::now() > deadline {
            break kept;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        kept.first().is_some_and(|&first| first > 200) && kept.len() < 200,
        "the leader's log was not dropped up to its snapshot: {} entries from {:?}",
        kept.len(),
        kept.first()
    );
    // The stopped node's next entry is gone from every log: only a snapshot
    // brings it up to date.
    cluster.restart(behind).unwrap();
    let tasks = identical_files(&cluster);
    assert_eq!(titles(&tasks).len(), writes as usize + 1);
    let caught_up = cluster.status(behind).unwrap();
    assert!(caught_up["snapshot"].as_u64().is_some(), "{caught_up}");
    // The same for a node whose data is gone.
    let wiped = (1..=3).find(|&id| id != leader && id != behind).unwrap();
    cluster.kill9(wiped);
    cluster.wipe(wiped);
    cluster.restart(wiped).unwrap();
    store(&cluster, leader, "after the wipe", "after").await;
    let tasks = identical_files(&cluster);
    assert_eq!(
        titles(&tasks).len(),
        writes as usize + 2,
        "every task, once"
    );
    assert!(cluster.status(wiped).unwrap()["snapshot"]
        .as_u64()
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_is_added_promoted_and_another_removed_under_writes() {
    let mut cluster = start(3);
    cluster.wait_for_leader(PATIENCE).expect("a leader");
    for i in 0..5 {
        store(&cluster, 1, &format!("t{i}"), &format!("k{i}")).await;
    }
    cluster.add_node(4).unwrap();
    let addr = cluster.addr(4);
    let (status, body) = cluster.admin(
        2,
        "POST",
        "/cluster/learners",
        Some(json!({"id": 4, "addr": addr})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cluster"]["learners"], json!([4]));
    let (status, body) = cluster.admin(3, "POST", "/cluster/voters", Some(json!({"id": 4})));
    assert_eq!(status, 200, "{body}");
    store(&cluster, 4, "written through the new voter", "n4").await;
    let (status, body) = cluster.admin(4, "DELETE", "/cluster/members/3", None);
    assert_eq!(status, 200, "{body}");
    cluster.kill9(3);
    let leader = cluster.wait_for_leader(PATIENCE).expect("a leader");
    let voters = cluster.status(leader).unwrap()["voters"].clone();
    assert_eq!(voters, json!([1, 2, 4]));
    store(&cluster, 1, "after the removal", "r").await;
    let tasks = identical_files(&cluster);
    assert_eq!(titles(&tasks).len(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_members_speak_raft_and_a_stranger_changes_nothing() {
    let cluster = start(3);
    let leader = cluster.wait_for_leader(PATIENCE).expect("a leader");
    let term = cluster.status(1).unwrap()["term"].clone();
    let http = common::client();
    // A vote request for a huge term, as a disruptive stranger would send.
    let vote = json!({"vote": {"leader_id": {"term": 9999, "node_id": 7}, "committed": false},
                      "last_log_id": null, "leadership_transfer": false});
    let cases = [
        (None, "1", 401),
        (Some("a-wrong-secret-of-some-length"), "1", 401),
        (Some(SECRET), "2", 421),
    ];
    for (secret, to, expected) in cases {
        let mut req = http
            .post(format!("{}/raft/vote", cluster.url(1)))
            .json(&vote)
            .header("x-raft-to", to);
        if let Some(secret) = secret {
            req = req.bearer_auth(secret);
        }
        let status = req.send().await.unwrap().status().as_u16();
        assert_eq!(status, expected, "secret {secret:?}, to {to}");
    }
    let (status, _) = {
        let res = http
            .post(format!("{}/cluster/leader", cluster.url(1)))
            .json(&json!({"id": 2}))
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), ())
    };
    assert_eq!(status, 401, "membership calls need the secret");
    assert_eq!(cluster.status(1).unwrap()["term"], term, "nothing changed");
    assert_eq!(cluster.wait_for_leader(PATIENCE), Some(leader));
}

#[test]
fn bad_configuration_fails_at_start_up_saying_what_to_change() {
    let (dir, data) = common::data_dir();
    let run_with = |args: &[&str], secret: Option<&str>, env: &[(&str, &str)]| {
        let mut cmd = testkit::process::bare_command(common::binary());
        cmd.envs(env.iter().copied());
        cmd.args(["--bind", "127.0.0.1:0", "--data"])
            .arg(&data)
            .args(args);
        cmd.env_remove("TASKSERVER_CLUSTER_SECRET");
        if let Some(secret) = secret {
            cmd.env("TASKSERVER_CLUSTER_SECRET", secret);
        }
        let refused = testkit::process::Server::spawn(cmd)
            .err()
            .expect("it must refuse to start");
        assert!(refused.status.is_some_and(|s| !s.success()));
        refused.log
    };
    let run = |args: &[&str], secret: Option<&str>| run_with(args, secret, &[]);
    let cases = [
        (
            vec!["--node-id", "1", "--peers", "1=a:1,1=b:2"],
            Some(SECRET),
            "names node 1 twice",
        ),
        (
            vec!["--node-id", "4", "--peers", "1=a:1,2=b:2"],
            Some(SECRET),
            "is not in --peers",
        ),
        (
            vec!["--node-id", "1", "--peers", "1=a:1"],
            None,
            "TASKSERVER_CLUSTER_SECRET is not set",
        ),
        (
            vec!["--node-id", "1"],
            Some(SECRET),
            "--peers (TASKSERVER_PEERS) is missing",
        ),
    ];
    for (args, secret, says) in cases {
        let log = run(&args, secret);
        assert!(log.contains(says), "{args:?}: {log}");
    }
    let log = run_with(
        &["--node-id", "1", "--peers", "1=127.0.0.1:1"],
        Some(SECRET),
        &[("TASKSERVER_RAFT_SNAPSHOT_EVERY", "often")],
    );
    assert!(
        log.contains("TASKSERVER_RAFT_SNAPSHOT_EVERY=often is not usable"),
        "{log}"
    );
    // Another node's Raft directory.
    let raft = dir.path().join("raft");
    std::fs::create_dir_all(&raft).unwrap();
    std::fs::write(raft.join("node.json"), r#"{"node_id":2,"cluster_id":"x"}"#).unwrap();
    let log = run(
        &["--node-id", "3", "--peers", "3=127.0.0.1:1"],
        Some(SECRET),
    );
    assert!(log.contains("belongs to node 2, not to node 3"), "{log}");
}

/// A node whose disk fills (a file-size limit: its writes fail with EFBIG)
/// cannot apply what its log committed: Raft stops, and the process exits
/// `1` rather than answering `503` forever, so that Docker's restart policy
/// starts it again. Started again with room, it has every task it
/// acknowledged, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_whose_writes_fail_exits_and_loses_nothing() {
    let (dir, data) = common::data_dir();
    let port = testkit::cluster::free_port();
    let node = |limit: Option<u64>| {
        let mut cmd = testkit::process::bare_command(common::binary());
        cmd.args(["--bind", &format!("127.0.0.1:{port}"), "--node-id", "1"])
            .args(["--peers", &format!("1=127.0.0.1:{port}")])
            .arg("--data")
            .arg(&data)
            .arg("--raft-dir")
            .arg(dir.path().join("raft"))
            .env("TASKSERVER_CLUSTER_SECRET", SECRET);
        if let Some(bytes) = limit {
            testkit::process::limit_file_size(&mut cmd, bytes);
        }
        common::Server::spawn(cmd).unwrap_or_else(|r| panic!("the node did not start: {r}"))
    };
    let mut server = node(Some(64 * 1024));
    let url = server.url();
    let http = common::client();
    let mut acknowledged = Vec::new();
    for i in 0..2000 {
        let titulo = format!("task {i}");
        match testkit::http::post(&http, &url, &titulo, Some(&format!("k{i}"))).await {
            Ok((201 | 200, body)) => acknowledged.push(body["id"].as_u64().unwrap()),
            Ok((503, body)) => {
                println!("refused after {i} tasks: {body}");
                break;
            }
            Ok((status, body)) => panic!("task {i}: {status} {body}"),
            Err(e) => {
                println!("no answer after {i} tasks: {e}");
                break;
            }
        }
    }
    assert!(
        acknowledged.len() > 10 && acknowledged.len() < 2000,
        "the limit stops the writes after some tasks ({} acknowledged)",
        acknowledged.len()
    );
    assert!(
        testkit::wait_until(PATIENCE, || !server.is_running()),
        "the node kept running with Raft stopped; its log:\n{}",
        server.log()
    );
    let log = server.log();
    let status = server.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("Raft stopped on this node"), "{log}");

    let again = node(None);
    let ids = testkit::http::list_ids(&http, &again.url()).await.unwrap();
    for id in &acknowledged {
        assert_eq!(
            ids.iter().filter(|i| *i == id).count(),
            1,
            "acknowledged task {id} is there once"
        );
    }
    println!(
        "{} acknowledged before the disk filled; {} stored after the restart",
        acknowledged.len(),
        ids.len()
    );
}
