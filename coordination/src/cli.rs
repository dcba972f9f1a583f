//! The command line, shaped like `etcdctl lock` and `etcdctl elect`.

use std::ffi::OsString;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "coordination",
    version,
    about = "A ZooKeeper mutex, leader election and sequential ids",
    after_help = "Exit status: 0 success (lock: CMD's own status); 2 bad usage or an invalid NAME; \
3 no ZooKeeper quorum within --timeout (leader: nobody leads); 4 the lock was lost while CMD ran; \
5 lock: the lock stayed busy for all of --timeout; 1 anything else."
)]
pub struct Cli {
    /// The ZooKeeper servers, comma-separated.
    #[arg(
        long,
        env = "ZOOKEEPER",
        default_value = "127.0.0.1:2181",
        global = true,
        value_name = "HOST:PORT,..."
    )]
    pub zookeeper: String,

    /// How long to wait for a quorum, and `lock` for the lock, in seconds.
    #[arg(long, default_value = "30", global = true, value_name = "SECS", value_parser = seconds)]
    pub timeout: Duration,

    /// The session timeout to ask the ensemble for, in seconds: how long
    /// after a crash ZooKeeper gives away a lock or leadership (the servers
    /// clamp it to 2..20 ticks of theirs).
    #[arg(long, env = "ZOOKEEPER_SESSION_TIMEOUT", default_value = "10", global = true, value_name = "SECS", value_parser = seconds)]
    pub session_timeout: Duration,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Wait for the mutex NAME, run CMD holding it (FENCING_TOKEN in its
    /// environment), release it; exit with CMD's status.
    Lock {
        name: String,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<OsString>,
    },
    /// Campaign for NAME as ID; print `leader ID` when elected and
    /// `follower ID` when no longer leading. SIGTERM resigns and exits 0.
    Elect { name: String, id: String },
    /// Print the ID of NAME's current leader; exit 3 when nobody leads.
    Leader { name: String },
    /// Print the next id of the sequence NAME (unique, increasing, with gaps).
    Id { name: String },
    /// The demo's counter NAME: print it, or add 1 to it N times under the
    /// mutex NAME as worker ID.
    Counter {
        name: String,
        /// Add 1 this many times.
        #[arg(long, value_name = "N", requires = "worker")]
        add: Option<u64>,
        /// Whose additions these are (counted apart in the counter).
        #[arg(long, value_name = "ID")]
        worker: Option<String>,
    },
}

fn seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !secs.is_finite() || secs <= 0.0 || secs > 86_400.0 * 365.0 {
        return Err(format!(
            "{s} s is out of range: give a positive number of seconds"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contracts_forms_parse() {
        let cli = Cli::try_parse_from([
            "coordination",
            "--zookeeper",
            "a:1,b:2",
            "lock",
            "jobs",
            "--timeout",
            "5",
            "--",
            "sh",
            "-c",
            "echo hi",
        ])
        .unwrap();
        assert_eq!(cli.zookeeper, "a:1,b:2");
        assert_eq!(cli.timeout, Duration::from_secs(5));
        match cli.command {
            Command::Lock { name, command } => {
                assert_eq!(name, "jobs");
                assert_eq!(command, ["sh", "-c", "echo hi"]);
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["coordination", "elect", "e", "node-1"]).unwrap();
        assert!(matches!(cli.command, Command::Elect { .. }));
        assert_eq!(cli.timeout, Duration::from_secs(30));
        let cli = Cli::try_parse_from(["coordination", "leader", "e"]).unwrap();
        assert!(matches!(cli.command, Command::Leader { .. }));
    }

    #[test]
    fn bad_usage_is_refused() {
        for args in [
            &["coordination", "lock", "jobs"][..],
            &[
                "coordination",
                "lock",
                "jobs",
                "--timeout",
                "0",
                "--",
                "true",
            ],
            &[
                "coordination",
                "lock",
                "jobs",
                "--timeout",
                "soon",
                "--",
                "true",
            ],
            &["coordination", "elect", "e"],
            &["coordination", "counter", "c", "--add", "3"],
            &["coordination"],
        ] {
            let err = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }
}
