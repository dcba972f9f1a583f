//! Where the binaries under test are: found at run time, next to this
//! program, rather than by `env!` as the integration tests find theirs. The
//! processes, the HTTP client and the waits are `testkit`'s.

use std::path::{Path, PathBuf};

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
