//! The `reliability writer` client process against an in-process server:
//! every line it prints is a task the server stored under that id, and it
//! goes on after the address it writes to changes.

use std::time::Duration;

use reliability::harness::Tools;
use reliability::writer::{publish_addr, Writers};
use testkit::wait_until;

#[test]
fn a_writer_reports_exactly_what_the_server_stored() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tasks.json");
    let addr_file = dir.path().join("addr");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let start = |data: std::path::PathBuf| {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr, server) = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let store = tokio::task::spawn_blocking(move || taskserver::Store::open(data))
                .await
                .unwrap()
                .unwrap();
            let server = tokio::spawn(taskserver::run(listener, store, async {
                let _ = stopped.await;
            }));
            (addr, server)
        });
        (addr, stop, server)
    };
    let exe = std::path::PathBuf::from(env!("CARGO_BIN_EXE_reliability"));
    let tools = Tools::next_to(&exe, None, None);

    let (addr, stop, server) = start(data.clone());
    publish_addr(&addr_file, addr).unwrap();
    let writers = Writers::spawn(&tools, &addr_file, "w", 2, 4).unwrap();
    assert!(wait_until(Duration::from_secs(30), || writers.ack_count() >= 50));
    // A new server on the same file, at a new address: the writers follow.
    let _ = stop.send(());
    runtime.block_on(server).unwrap().unwrap();
    let (addr, stop, server) = start(data.clone());
    publish_addr(&addr_file, addr).unwrap();
    let before = writers.ack_count();
    assert!(wait_until(Duration::from_secs(30), || writers.ack_count()
        >= before + 50));
    let (acks, errors) = writers.stop();
    let _ = stop.send(());
    runtime.block_on(server).unwrap().unwrap();

    assert!(errors.is_empty(), "{errors:?}");
    let tasks = reliability::datafile::read_tasks(&data).unwrap();
    let acked = acks.iter().map(|a| (a.titulo.clone(), a.id)).collect();
    let audit = reliability::datafile::audit(&tasks, &acked);
    assert_eq!(audit, Default::default());
    assert!(acks.iter().all(|a| a.status == 201 || a.status == 200));
    assert_eq!(acked.len(), acks.len(), "a task acknowledged twice");
}
