//! Reads are answered from memory and never wait for the disk: not for a
//! commit of this process, not for one of another process sharing the file.
//! They still see every task acknowledged before they began, and never a
//! task that is not yet durable.

mod common;

use std::time::Duration;

use common::doubles::HookedFs;
use taskserver::store::NewEntry;
use taskserver::task::ValidTask;

/// Longer than any read takes, far shorter than "waits forever".
const PATIENCE: Duration = Duration::from_secs(10);

fn entry(titulo: &str) -> NewEntry {
    NewEntry {
        task: ValidTask {
            titulo: titulo.into(),
            descripcion: None,
            completada: false,
            cliente: Some("reads".into()),
        },
        idempotency_key: None,
    }
}

/// Waits (off the runtime) until a commit is held in its `fdatasync`.
async fn sync_held(fs: &HookedFs) {
    let hooks = fs.hooks.clone();
    let held = tokio::task::spawn_blocking(move || hooks.sync_gate.wait_for_a_sync(PATIENCE))
        .await
        .unwrap();
    assert!(held, "the commit never reached its fdatasync");
}

/// `what` must finish well before the held sync is let go.
async fn promptly<T>(what: &str, read: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, read)
        .await
        .unwrap_or_else(|_| panic!("{what} waited for a sync in progress"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_does_not_wait_for_a_commit_in_progress_and_does_not_see_it() {
    let (_dir, path) = common::data_dir();
    let fs = HookedFs::default();
    let store = common::open_store(fs.clone(), &path).await;
    store.insert_one(entry("first")).await.unwrap().unwrap();

    let held = fs.hold_syncs();
    let writer = tokio::spawn({
        let store = store.clone();
        async move { store.insert_one(entry("second")).await }
    });
    sync_held(&fs).await;

    assert_eq!(promptly("GET /health", store.count()).await.unwrap(), 1);
    let page = promptly("GET /tareas", store.page(0, usize::MAX))
        .await
        .unwrap();
    assert_eq!(page.count, 1, "the task being synced is not shown yet");
    assert!(promptly("GET /tareas/1", store.get(1))
        .await
        .unwrap()
        .is_some());
    assert!(promptly("GET /tareas/2", store.get(2))
        .await
        .unwrap()
        .is_none());

    held.release();
    let second = writer.await.unwrap().unwrap().unwrap();
    assert_eq!(second.id, 2);
    assert_eq!(store.count().await.unwrap(), 2, "acknowledged, so visible");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_reads_what_was_acknowledged_without_waiting_for_a_commit_in_progress() {
    let (_dir, path) = common::data_dir();
    let writer_fs = HookedFs::default();
    let writer = common::open_store(writer_fs.clone(), &path).await;
    // A second store on the same file: its own open file, its own locks,
    // as a second process would have.
    let reader = common::open_store(HookedFs::default(), &path).await;

    // Acknowledged by the writer; the reader has not read since.
    for i in 1..=3 {
        writer
            .insert_one(entry(&format!("acknowledged {i}")))
            .await
            .unwrap()
            .unwrap();
    }
    let held = writer_fs.hold_syncs();
    let pending = tokio::spawn({
        let writer = writer.clone();
        async move { writer.insert_one(entry("being synced")).await }
    });
    sync_held(&writer_fs).await;

    assert_eq!(
        promptly("the other process's read", reader.count())
            .await
            .unwrap(),
        3,
        "every acknowledged task, and not the one being synced"
    );
    assert!(promptly("GET /tareas/3", reader.get(3))
        .await
        .unwrap()
        .is_some());
    assert!(promptly("GET /tareas/4", reader.get(4))
        .await
        .unwrap()
        .is_none());

    held.release();
    assert_eq!(pending.await.unwrap().unwrap().unwrap().id, 4);
    assert_eq!(reader.count().await.unwrap(), 4);
    // And the reader can write after it, from the right id.
    let next = reader
        .insert_one(entry("from the reader"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.id, 5);
    let tasks = common::read_tasks(&path);
    assert_eq!(tasks.len(), 5);
}
