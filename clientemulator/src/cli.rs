//! Command line: the flags of the contract, and their check into a [`Config`].
//!
//! Parsing (clap) and validation are separate steps so that tests can build a
//! `Config` from the same words a user types, and so that every mistake a user
//! can make is reported in one place with the exit status for bad usage.

use std::io::IsTerminal;
use std::time::Duration;

use clap::Parser;
use reqwest::Url;

/// Send tasks to a taskserver concurrently, then read them back and prove that
/// each acknowledged task was stored exactly once.
///
/// Exit status: 0 every task acknowledged and verified; 1 any task failed, was
/// lost or duplicated (or its outcome is unknown); 2 bad usage or the server
/// never became reachable.
#[derive(Debug, Parser)]
#[command(name = "clientemulator", version)]
pub struct Args {
    /// Base URL of the server; tasks go to URL/tareas. Several URLs,
    /// comma-separated (the nodes of a cluster), spread the tasks over them:
    /// a refused connection, a 5xx or no answer moves the retry to the next
    /// one, and the read-back checks every one.
    #[arg(long, env = "SERVER_URL", default_value = "http://127.0.0.1:9000")]
    pub url: String,

    /// Number of tasks to send (ignored with --duration).
    #[arg(short = 'n', long = "tasks", env = "TASKS", default_value_t = 100)]
    pub tasks: u64,

    /// Requests in flight at once [default: same as --tasks, all at once].
    #[arg(short = 'c', long, env = "CONCURRENCY")]
    pub concurrency: Option<u64>,

    /// Name written in each task's `cliente` field [default: the host name].
    #[arg(long, env = "CLIENT_ID")]
    pub client_id: Option<String>,

    /// How long to wait for GET /health to answer before the first task
    /// (seconds, or with a unit: 500ms, 2m); 0 skips the check.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_duration)]
    pub wait: Duration,

    /// Retries of a timed-out, refused or 5xx request, with the same Idempotency-Key.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub retries: u32,

    /// Time limit of one request (seconds, or with a unit: 300ms).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Send for this long instead of a number of tasks (seconds, or 10s, 2m, 1h).
    #[arg(short = 'z', long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Open model: start requests at this fixed rate (per second) whatever the
    /// server does; latency then counts from each request's scheduled start.
    #[arg(short = 'q', long, value_name = "PER_SECOND")]
    pub rate: Option<f64>,

    /// Send only; skip reading the tasks back.
    #[arg(long)]
    pub no_verify: bool,

    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,

    /// Also write the report as one self-contained HTML page to FILE:
    /// latency histogram and percentiles, throughput and latency over the
    /// run, statuses and errors, and the verification. Opens offline.
    #[arg(long, value_name = "FILE", env = "HTML_REPORT")]
    pub html: Option<std::path::PathBuf>,

    /// Tasks per page when reading them back (GET /tareas?despues_de=N&limite=M).
    #[arg(long, value_name = "M", default_value_t = 1000)]
    pub page_size: u64,
}

/// How much to send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Exactly this many tasks.
    Count(u64),
    /// As many tasks as fit in this time; requests in flight at the end finish.
    Duration(Duration),
}

/// One server of `--url`: its base URL and what is derived from it once.
#[derive(Debug, Clone)]
pub struct Server {
    /// The base URL, kept for the report and for messages.
    pub base_url: Url,
    /// Where tasks are posted and read back.
    pub tasks_url: Url,
    /// What `--wait` polls.
    pub health_url: Url,
}

impl Server {
    fn new(raw: &str) -> Result<Server, UsageError> {
        let base_url = parse_base_url(raw)?;
        let join = |path| {
            base_url
                .join(path)
                .expect("a relative path joins any http URL")
        };
        Ok(Server {
            tasks_url: join("tareas"),
            health_url: join("health"),
            base_url,
        })
    }
}

/// A checked run configuration: everything [`crate::run`] needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The servers tasks go to: one, or the nodes of a cluster.
    pub servers: Vec<Server>,
    /// A count or a time: decides when the workers stop taking new tasks.
    pub mode: Mode,
    /// Number of workers, and so the most requests in flight and the pool size.
    pub concurrency: usize,
    /// Open-model rate in requests per second; `None` is a closed model where a
    /// worker starts its next task as soon as the previous one ends.
    pub rate: Option<f64>,
    /// Written into every task so that verification can find this client's tasks.
    pub client_id: String,
    /// Unique per run so that earlier runs in the same data file, and other
    /// clients, are told apart from this one.
    pub run_id: String,
    /// How long to poll `GET /health` before giving up; zero skips the check.
    pub wait: Duration,
    /// Extra attempts after the first one for a task whose attempt may be retried.
    pub retries: u32,
    /// Time limit of one POST attempt.
    pub timeout: Duration,
    /// Whether to read the tasks back after sending.
    pub verify: bool,
    /// Tasks per page in the read-back.
    pub page_size: u64,
    /// Draw a progress bar on stderr; only when stderr is a terminal, so that
    /// logs and pipes never receive escape codes.
    pub progress: bool,
}

/// A mistake in the command line. Every one ends with exit status 2.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("--url {url:?} is not a valid URL ({reason}); use something like http://server:9000")]
    BadUrl { url: String, reason: String },
    #[error("--url {0:?} uses {1}://, but only http:// is supported; use http://HOST:PORT")]
    UnsupportedScheme(String, String),
    #[error("--tasks must be at least 1")]
    NoTasks,
    #[error("--concurrency must be at least 1")]
    NoConcurrency,
    #[error("--duration must be longer than zero")]
    NoDuration,
    #[error("--timeout must be longer than zero")]
    NoTimeout,
    #[error("--rate must be a number of requests per second above zero, not {0}")]
    BadRate(f64),
    #[error("--page-size must be at least 1")]
    NoPageSize,
    #[error("--client-id must not be empty; set --client-id or CLIENT_ID")]
    EmptyClientId,
    #[error("--client-id is {0} characters long; the server accepts at most 100 in `cliente`")]
    LongClientId(usize),
}

/// Longest `cliente` the server accepts (contract: at most 100 characters).
const MAX_CLIENT_ID_CHARS: usize = 100;

impl Args {
    /// Checks the arguments and derives what the run needs.
    pub fn into_config(self) -> Result<Config, UsageError> {
        let servers = self
            .url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(Server::new)
            .collect::<Result<Vec<_>, _>>()?;
        if servers.is_empty() {
            return Err(UsageError::BadUrl {
                url: self.url.clone(),
                reason: "no URL in it".into(),
            });
        }

        let mode = match self.duration {
            Some(d) if d.is_zero() => return Err(UsageError::NoDuration),
            Some(d) => Mode::Duration(d),
            None if self.tasks == 0 => return Err(UsageError::NoTasks),
            None => Mode::Count(self.tasks),
        };
        let mut concurrency = self.concurrency.unwrap_or(self.tasks);
        if concurrency == 0 {
            return Err(UsageError::NoConcurrency);
        }
        if let Mode::Count(n) = mode {
            // More workers than tasks would only open connections that never send.
            concurrency = concurrency.min(n);
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(UsageError::BadRate(rate));
            }
        }
        if self.timeout.is_zero() {
            return Err(UsageError::NoTimeout);
        }
        if self.page_size == 0 {
            return Err(UsageError::NoPageSize);
        }
        let client_id = match self.client_id {
            Some(id) => id,
            None => host_name(),
        };
        let client_id = client_id.trim().to_owned();
        if client_id.is_empty() {
            return Err(UsageError::EmptyClientId);
        }
        let chars = client_id.chars().count();
        if chars > MAX_CLIENT_ID_CHARS {
            return Err(UsageError::LongClientId(chars));
        }

        Ok(Config {
            servers,
            mode,
            concurrency: usize::try_from(concurrency).unwrap_or(usize::MAX),
            rate: self.rate,
            client_id,
            run_id: new_run_id(),
            wait: self.wait,
            retries: self.retries,
            timeout: self.timeout,
            verify: !self.no_verify,
            page_size: self.page_size,
            progress: std::io::stderr().is_terminal(),
        })
    }
}

/// Accepts `http://host:port`, with or without a trailing slash, and also the
/// full `.../tareas` address that the course material uses.
fn parse_base_url(raw: &str) -> Result<Url, UsageError> {
    let mut url = Url::parse(raw.trim()).map_err(|e| UsageError::BadUrl {
        url: raw.to_owned(),
        reason: e.to_string(),
    })?;
    if url.scheme() != "http" {
        return Err(UsageError::UnsupportedScheme(
            raw.to_owned(),
            url.scheme().to_owned(),
        ));
    }
    if url.host_str().is_none() {
        return Err(UsageError::BadUrl {
            url: raw.to_owned(),
            reason: "it has no host".to_owned(),
        });
    }
    let mut path = url.path().trim_end_matches('/').to_owned();
    if let Some(parent) = path.strip_suffix("/tareas") {
        path = parent.to_owned();
    }
    // A trailing slash makes `join` append to the path instead of replacing
    // its last segment, so a server mounted under a prefix keeps the prefix.
    path.push('/');
    url.set_path(&path);
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// The default client id: the host name, which docker-compose makes the
/// container's name or id, so that two client containers differ by default.
fn host_name() -> String {
    hostname::get()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| !name.trim().is_empty())
        .unwrap_or_else(|| "client".to_owned())
}

/// 64 random bits in hex. The standard library's `RandomState` is seeded from
/// the operating system's random source, which is all a run id needs: two
/// clients started at the same instant must still differ.
fn new_run_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    format!("{:016x}", hasher.finish())
}

/// Parses `10`, `0.5` (seconds) or a number with a unit: `ms`, `s`, `m`, `h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| {
        format!("{text:?} is not a duration; write seconds (10, 0.5) or 300ms, 10s, 2m, 1h")
    })?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}; use ms, s, m or h"
            ))
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text:?} is too long a duration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Result<Config, UsageError> {
        let mut argv = vec!["clientemulator"];
        argv.extend_from_slice(args);
        if !args.contains(&"--client-id") {
            argv.extend_from_slice(&["--client-id", "c1"]);
        }
        Args::try_parse_from(argv)
            .expect("clap accepts these")
            .into_config()
    }

    #[test]
    fn durations_accept_plain_seconds_and_units() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 days").is_err());
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn url_accepts_base_trailing_slash_and_tareas_suffix() {
        for raw in [
            "http://server:9000",
            "http://server:9000/",
            "http://server:9000/tareas",
        ] {
            let url = parse_base_url(raw).unwrap();
            assert_eq!(url.as_str(), "http://server:9000/", "from {raw}");
        }
        let prefixed = parse_base_url("http://h/api/tareas/").unwrap();
        assert_eq!(
            prefixed.join("tareas").unwrap().as_str(),
            "http://h/api/tareas"
        );
    }

    #[test]
    fn several_urls_are_the_nodes_of_a_cluster() {
        let c = config(&[
            "--url",
            "http://n1:9000, http://n2:9000/tareas,http://n3:9000/",
        ])
        .unwrap();
        let urls: Vec<&str> = c.servers.iter().map(|s| s.tasks_url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "http://n1:9000/tareas",
                "http://n2:9000/tareas",
                "http://n3:9000/tareas"
            ]
        );
        assert!(matches!(
            config(&["--url", " , "]),
            Err(UsageError::BadUrl { .. })
        ));
        assert!(matches!(
            config(&["--url", "http://a:1,https://b:2"]),
            Err(UsageError::UnsupportedScheme(..))
        ));
    }

    #[test]
    fn url_rejects_other_schemes_and_garbage() {
        assert!(matches!(
            parse_base_url("https://server:9000"),
            Err(UsageError::UnsupportedScheme(..))
        ));
        assert!(parse_base_url("server:9000").is_err());
        assert!(matches!(
            parse_base_url("not a url"),
            Err(UsageError::BadUrl { .. })
        ));
    }

    #[test]
    fn concurrency_defaults_to_tasks_and_never_exceeds_them() {
        assert_eq!(config(&["-n", "40"]).unwrap().concurrency, 40);
        assert_eq!(config(&["-n", "40", "-c", "7"]).unwrap().concurrency, 7);
        assert_eq!(config(&["-n", "5", "-c", "70"]).unwrap().concurrency, 5);
        let timed = config(&["-z", "2s", "-c", "70"]).unwrap();
        assert_eq!(timed.mode, Mode::Duration(Duration::from_secs(2)));
        assert_eq!(timed.concurrency, 70);
    }

    #[test]
    fn bad_values_are_usage_errors() {
        assert!(matches!(config(&["-n", "0"]), Err(UsageError::NoTasks)));
        assert!(matches!(
            config(&["-c", "0"]),
            Err(UsageError::NoConcurrency)
        ));
        assert!(matches!(config(&["-q", "0"]), Err(UsageError::BadRate(_))));
        assert!(matches!(
            config(&["--timeout", "0"]),
            Err(UsageError::NoTimeout)
        ));
        assert!(matches!(config(&["-z", "0"]), Err(UsageError::NoDuration)));
        let long = "x".repeat(101);
        assert!(matches!(
            config(&["--client-id", &long]),
            Err(UsageError::LongClientId(101))
        ));
        assert!(matches!(
            config(&["--client-id", "  "]),
            Err(UsageError::EmptyClientId)
        ));
    }

    #[test]
    fn run_ids_differ_between_runs() {
        let a = config(&[]).unwrap().run_id;
        let b = config(&[]).unwrap().run_id;
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
    }
}
