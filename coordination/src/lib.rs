//! ZooKeeper's lock and leader-election recipes, and sequential ids, built
//! from ZooKeeper's own primitives (ephemeral and sequential znodes, one-shot
//! watches) on the `zookeeper-client` crate; and `coordination`, a command
//! line on them shaped like `etcdctl lock` / `etcdctl elect`.
//!
//! ```no_run
//! # async fn demo() -> coordination::Result<()> {
//! use std::time::Duration;
//! use coordination::{Mutex, Name, Session};
//! let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
//! let session = Session::connect("127.0.0.1:2181,127.0.0.1:2182", Duration::from_secs(10), deadline).await?;
//! let guard = Mutex::new(&session, &Name::new("jobs")?).acquire(Some(Duration::from_secs(5))).await?;
//! println!("holding it with fencing token {}", guard.fencing_token());
//! guard.release().await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`session`]: connecting within a deadline (and saying which servers
//!   answered what when no quorum does); **when a session stops being
//!   trustworthy** ([`Session::lost`]), the one place the lock and the
//!   election learn that they lost what they held.
//! - [`queue`]: the steps the two recipes share: a line of ephemeral
//!   sequential nodes, each waiter watching only the node ahead of it.
//! - [`mutex`]: the lock recipe ([`Mutex`], [`MutexGuard`]): acquire with a
//!   timeout, release, the fencing token, the loss of the lock.
//! - [`election`]: the leader-election recipe ([`LeaderElection`],
//!   [`Campaign`]): campaign, who leads, elected/defeated events, resign.
//! - [`sequence`]: sequential ids from sequential znodes ([`SequentialIds`]).
//! - [`counter`]: the demo's shared counter, added to under the mutex.
//! - [`name`]: valid names and where each kind's znodes live.
//! - [`cli`], [`commands`]: the `coordination` program; `main.rs` is thin.
//! - [`error`]: one error type whose messages say what to do.
//!
//! # Guarantees
//!
//! - **Mutual exclusion**: at any moment at most one session's node is the
//!   lowest in a lock's folder, in the order the ensemble applies writes.
//! - **No herd**: every waiter watches only its predecessor, so a release
//!   wakes exactly one waiter ([`MutexGuard::wakeups`] counts them).
//! - **A holder learns it lost the lock** ([`MutexGuard::lost`]) when its
//!   session expired, or when no server answered for 0.4 session timeouts
//!   after the connection broke; the second comes before the ensemble can expire the session and
//!   give the lock away, unless this process was paused (then it learns when
//!   it runs again).
//! - **Fencing**: the token is the zxid of the holder's node, larger for
//!   every later acquisition of the lock (and every later write anywhere in
//!   the ensemble), so a resource can refuse a paused, stale holder.
//! - **One leader**: the same line; a leader says it is no longer leading
//!   under the same conditions as a lock holder.
//! - **Reads are synced**: `leader` and the counter's value are read after a
//!   `sync`, so they include every change that completed before the call.
//!
//! # zookeeper-client's own lock
//!
//! `zookeeper-client` has a Curator-compatible lock (`Client::lock` with
//! `LockPrefix::new_curator`). It follows the same recipe (ephemeral
//! sequential node, watch on the predecessor through `getData`, a guid in the
//! name to recover from a lost connection during the create), and this
//! crate's nodes are named like Curator's so that both queue in one line.
//! The product code does not use it, because the recipe is what the course
//! asks to build, and because we need what it does not expose: the created
//! node's zxid (the fencing token), the number of wake-ups (to show there is
//! no herd), an awaited release, an acquire timeout that takes our node out
//! of the line before it returns, and a signal when a held lock is lost. The
//! tests use it (`tests/mutex.rs`, `the_crates_own_lock_and_ours_exclude_each_other`)
//! to check that the two exclude each other.
//!
//! The reference text for users (the CLI, the znode layout, the compose
//! demo) is `docs/coordination.md`.

pub mod cli;
pub mod commands;
pub mod counter;
pub mod election;
pub mod error;
pub mod mutex;
pub mod name;
pub mod queue;
pub mod sequence;
pub mod session;

pub use election::{Campaign, Event, Leader, LeaderElection};
pub use error::{Error, Loss, Result};
pub use mutex::{Mutex, MutexGuard};
pub use name::Name;
pub use sequence::SequentialIds;
pub use session::Session;
