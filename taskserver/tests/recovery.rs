//! Crashes, torn and broken files, and write failures, through the real binary.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::{client, command, data_dir, list_ids, post, read_tasks, start, Server};

mod common;

/// `kill -9` while clients write, then restart: every acknowledged task is
/// in the file exactly once, and the file is a valid array.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_load_loses_no_acknowledged_task() {
    const CYCLES: usize = 3;
    let (_dir, path) = data_dir();
    let acked = Arc::new(Mutex::new(BTreeMap::<u64, String>::new()));
    for cycle in 0..CYCLES {
        let server = start(&path);
        let url = server.url();
        let count = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..16)
            .map(|w| {
                let (url, acked, count) = (url.clone(), acked.clone(), count.clone());
                tokio::spawn(async move {
                    let http = client();
                    for i in 0.. {
                        let titulo = format!("c{cycle} w{w} n{i}");
                        match post(&http, &url, &titulo, None).await {
                            Ok((201, task)) => {
                                acked
                                    .lock()
                                    .unwrap()
                                    .insert(task["id"].as_u64().unwrap(), titulo);
                                count.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok((status, body)) => panic!("unexpected {status}: {body}"),
                            Err(_) => return, // the server is gone
                        }
                    }
                })
            })
            .collect();
        // Kill at a moment chosen by the load itself: after some hundreds of
        // acknowledgements, with 16 requests in flight.
        let target = 200 + 97 * cycle;
        let watcher = {
            let count = count.clone();
            tokio::task::spawn_blocking(move || {
                while count.load(Ordering::SeqCst) < target {
                    std::thread::yield_now();
                }
                server.kill9();
            })
        };
        watcher.await.unwrap();
        for w in workers {
            w.await.unwrap();
        }
        // Restart: the server must accept whatever the crash left.
        let server = start(&path);
        let stored = read_tasks(&path);
        let by_id: BTreeMap<u64, String> = stored
            .iter()
            .map(|t| {
                (
                    t["id"].as_u64().unwrap(),
                    t["titulo"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        for (id, titulo) in acked.lock().unwrap().iter() {
            assert_eq!(
                by_id.get(id),
                Some(titulo),
                "acknowledged task {id} lost after kill -9"
            );
        }
        let titles: std::collections::BTreeSet<_> = by_id.values().collect();
        assert_eq!(titles.len(), by_id.len(), "a task was stored twice");
        assert_eq!(list_ids(&client(), &server.url()).await.len(), stored.len());
        println!(
            "cycle {cycle}: {} acknowledged so far, {} in the file",
            acked.lock().unwrap().len(),
            stored.len()
        );
    }
}

const T1: &str = r#"{"id":1,"titulo":"uno","descripcion":null,"completada":false,"cliente":null,"creada_en":"2026-11-23T10:00:00.000Z"}"#;
const T2: &str = r#"{"id":2,"titulo":"dos","descripcion":null,"completada":false,"cliente":null,"creada_en":"2026-11-23T10:00:00.000Z"}"#;
/// Committed later than T1 and T2.
const T3: &str = r#"{"id":3,"titulo":"tres","descripcion":null,"completada":false,"cliente":null,"creada_en":"2026-11-23T10:00:01.000Z"}"#;

#[tokio::test]
async fn a_torn_tail_is_repaired_logged_and_kept_aside() {
    let (dir, path) = data_dir();
    let torn = format!("[\n{T1},\n{T2},\n{{\"id\":3,\"titulo\":\"tr");
    std::fs::write(&path, &torn).unwrap();
    let server = start(&path);
    assert_eq!(list_ids(&client(), &server.url()).await, vec![1, 2]);
    let stored = read_tasks(&path);
    assert_eq!(stored.len(), 2);
    let log = server.log();
    assert!(log.contains("repaired an incomplete last entry"), "{log}");
    let side: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".torn-"))
        .collect();
    assert_eq!(side.len(), 1, "one side file");
    assert_eq!(
        std::fs::read(&side[0]).unwrap(),
        b",\n{\"id\":3,\"titulo\":\"tr"
    );
    // And the repaired file takes new tasks.
    let (status, task) = post(&client(), &server.url(), "tres", None).await.unwrap();
    assert_eq!((status, task["id"].as_u64()), (201, Some(3)));
    assert_eq!(read_tasks(&path).len(), 3);
}

#[tokio::test]
async fn a_cut_with_zeros_after_it_is_repaired_too() {
    let (_dir, path) = data_dir();
    let mut bytes = format!("[\n{T1},\n{{\"id\":2,\"ti").into_bytes();
    bytes.extend_from_slice(&[0; 4096]);
    std::fs::write(&path, &bytes).unwrap();
    let server = start(&path);
    assert_eq!(list_ids(&client(), &server.url()).await, vec![1]);
    assert_eq!(read_tasks(&path).len(), 1);
}

/// Found by the reliability campaign: a crash can leave a `]` at the end of
/// the file that does not close the array. Each of these must be repaired.
#[tokio::test]
async fn a_closing_bracket_a_crash_can_leave_is_repaired_not_refused() {
    let t3 = r#"{"id":3,"titulo":"[x] y","descripcion":null,"completada":false,"cliente":null,"creada_en":"2026-11-23T10:00:00.000Z"}"#;
    let two = format!("[\n{T1},\n{T2}\n]\n");
    let three = format!("[\n{T1},\n{T2},\n{t3}\n]\n");
    let cut_in_title = &three[..three.find("[x]").unwrap() + 3];
    let cases: Vec<(Vec<u8>, Vec<u64>)> = vec![
        // The cut falls just after a `]` inside the new task's title.
        (cut_in_title.into(), vec![1, 2]),
        ([cut_in_title.as_bytes(), &[0; 512]].concat(), vec![1, 2]),
        // Only the append's first byte (its comma) reached the file.
        (format!("[\n{T1},\n{T2},]\n").into(), vec![1, 2]),
        // All of the append arrived, then zeros where the file grew.
        ([three.as_bytes(), &[0; 100]].concat(), vec![1, 2, 3]),
        (
            [&three.as_bytes()[..three.len() - 1], &[0]].concat(),
            vec![1, 2, 3],
        ),
        ([two.as_bytes(), &[0; 4096]].concat(), vec![1, 2]),
    ];
    for (bytes, ids) in cases {
        let (_dir, path) = data_dir();
        std::fs::write(&path, &bytes).unwrap();
        let server = Server::spawn(command(&path)).unwrap_or_else(|r| {
            panic!(
                "refused {:?}: {}",
                String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(40)..]),
                r.log
            )
        });
        assert_eq!(list_ids(&client(), &server.url()).await, ids);
        let stored: Vec<u64> = read_tasks(&path)
            .iter()
            .map(|t| t["id"].as_u64().unwrap())
            .collect();
        assert_eq!(stored, ids);
        assert!(server.log().contains("repaired"), "{}", server.log());
    }
}

#[test]
fn a_broken_file_is_refused_named_and_left_untouched() {
    let cases: Vec<(String, &str)> = vec![
        (r#"{"tareas": []}"#.into(), "line 1, column 1"),
        // A bad entry followed by tasks of two commits: a person's edit.
        (
            format!("[\n{T1},\n{{\"id\":2 \"titulo\":\"x\"}},\n{T2},\n{T3}\n]\n"),
            "line 3",
        ),
        (
            format!("[\n{T1},\n{}\n]\n", T2.replace("\"id\":2", "\"id\":\"2\"")),
            "line 3",
        ),
        (format!("[\n{T1},\n{T1}\n]\n"), "appears twice"),
        (format!("[\n{T1}\n]\n[\n{T2},\n{T3}\n]\n"), "line 4"),
    ];
    for (text, place) in cases {
        let (_dir, path) = data_dir();
        std::fs::write(&path, &text).unwrap();
        let refused = Server::spawn(command(&path))
            .err()
            .expect("the server must refuse");
        assert!(
            refused.status.is_some_and(|s| !s.success()),
            "it exits, with a failure"
        );
        assert!(
            refused.log.contains(place),
            "no {place:?} in: {}",
            refused.log
        );
        assert!(refused.log.contains("left untouched"), "{}", refused.log);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            text,
            "the broken file was changed"
        );
    }
}

#[tokio::test]
async fn missing_and_empty_files_start_as_an_empty_array() {
    for initial in [None, Some(""), Some("  \n")] {
        let (_dir, path) = data_dir();
        if let Some(text) = initial {
            std::fs::write(&path, text).unwrap();
        }
        let server = start(&path);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "[]\n");
        assert_eq!(list_ids(&client(), &server.url()).await, Vec::<u64>::new());
    }
}

/// A file-size limit (as a full disk would) makes writes fail: 503 with a
/// message, nothing acknowledged is lost, the file stays valid, reads go on,
/// and writes succeed again once the limit is lifted.
#[tokio::test]
async fn a_write_failure_is_503_and_the_server_recovers() {
    let (_dir, path) = data_dir();
    let limit: u64 = 4096;
    let mut cmd = command(&path);
    testkit::process::limit_file_size(&mut cmd, limit);
    let server = Server::spawn(cmd).expect("start under a file-size limit");
    let http = client();
    let url = server.url();
    let mut acked = Vec::new();
    let failure = loop {
        let (status, body) = post(&http, &url, &format!("tarea {}", acked.len()), None)
            .await
            .unwrap();
        match status {
            201 => acked.push(body["id"].as_u64().unwrap()),
            503 => break body,
            other => panic!("unexpected {other}: {body}"),
        }
        assert!(acked.len() < 100, "the limit never bit");
    };
    let message = failure["error"].as_str().unwrap();
    assert!(
        message.contains("disk space") || message.contains("size limit"),
        "{message}"
    );
    assert!(std::fs::metadata(&path).unwrap().len() <= limit);
    assert_eq!(
        testkit::datafile::ids(&read_tasks(&path)),
        acked,
        "the file holds exactly the acknowledged tasks"
    );
    assert_eq!(list_ids(&http, &url).await, acked, "reads still work");
    // Lift the limit on the running server, as freeing disk space would.
    testkit::process::lift_file_size_limit(server.pid()).expect("prlimit");
    let (status, task) = post(&http, &url, "after", None).await.unwrap();
    assert_eq!(status, 201, "{task}");
    assert_eq!(task["id"].as_u64().unwrap(), acked.last().unwrap() + 1);
    assert_eq!(read_tasks(&path).len(), acked.len() + 1);
    println!(
        "{} tasks fit under {limit} bytes; then 503: {message}",
        acked.len()
    );
}
