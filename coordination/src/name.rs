//! Names of locks, elections, id sequences and counters, and where their
//! znodes live.
//!
//! Everything this crate writes is under one persistent root, one folder per
//! kind, one node per name:
//!
//! ```text
//! /coordination/locks/NAME/_c_<guid>-lock-0000000007       a holder or waiter (ephemeral, sequential)
//! /coordination/elections/NAME/_c_<guid>-latch-0000000003  a candidate; its data is the candidate's ID
//! /coordination/ids/NAME/_c_<guid>-id-0000000042           made and deleted by each `next()` (its sequence is the id)
//! /coordination/counters/NAME                              the demo counter (JSON)
//! ```
//!
//! The lock and election nodes are named the way Apache Curator names them
//! (`_c_<guid>-lock-`, `_c_<guid>-latch-`), so Curator's `InterProcessMutex`
//! and `LeaderLatch`, and zookeeper-client's `Client::lock` with
//! `LockPrefix::new_curator`, queue in the same line as ours.

use crate::error::Error;

/// The persistent root of every node this crate makes.
pub const ROOT: &str = "/coordination";

/// Longer names are refused: ZooKeeper would take them, but a path should stay
/// something a person can read in `zkCli.sh`.
const MAX_LEN: usize = 255;

/// What a name names; each kind has its own folder under [`ROOT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Lock,
    Election,
    Ids,
    Counter,
}

impl Kind {
    fn folder(self) -> &'static str {
        match self {
            Kind::Lock => "locks",
            Kind::Election => "elections",
            Kind::Ids => "ids",
            Kind::Counter => "counters",
        }
    }
}

/// A checked name: one znode path component, valid for ZooKeeper.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    /// Checks `name` against ZooKeeper's rules for a path component
    /// (`PathUtils.validatePath`): not empty, not `.` or `..`, no `/`, no NUL,
    /// no control characters and none of the code points ZooKeeper reserves.
    pub fn new(name: &str) -> Result<Name, Error> {
        let invalid = |reason| Error::InvalidName {
            name: name.to_owned(),
            reason,
        };
        if name.is_empty() {
            return Err(invalid("it is empty"));
        }
        if name == "." || name == ".." {
            return Err(invalid("'.' and '..' are relative path parts, not names"));
        }
        if name.len() > MAX_LEN {
            return Err(invalid("it is longer than 255 bytes"));
        }
        if name.contains('/') {
            return Err(invalid("'/' separates znodes, so one name cannot hold it"));
        }
        if name.chars().any(forbidden) {
            return Err(invalid(
                "it holds a control character or a code point ZooKeeper reserves",
            ));
        }
        Ok(Name(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The znode of this name for `kind`: `/coordination/<kind>/<name>`.
    pub fn path(&self, kind: Kind) -> String {
        format!("{ROOT}/{}/{}", kind.folder(), self.0)
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The characters ZooKeeper's `PathUtils.validatePath` refuses.
fn forbidden(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{f000}'..='\u{f8ff}' | '\u{fff0}'..='\u{ffff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_are_taken() {
        for name in [
            "counter",
            "jobs.nightly",
            "a-b_c",
            "Tarea 1",
            "ñandú",
            "x".repeat(255).as_str(),
        ] {
            assert_eq!(Name::new(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn names_zookeeper_refuses_are_refused_with_a_reason() {
        for (name, reason) in [
            ("", "empty"),
            (".", "relative"),
            ("..", "relative"),
            ("a/b", "'/'"),
            ("/abs", "'/'"),
            ("nul\0", "control"),
            ("tab\tname", "control"),
            ("\u{f001}", "reserves"),
            ("\u{fffe}", "reserves"),
        ] {
            let err = Name::new(name).unwrap_err();
            assert!(err.to_string().contains(reason), "{name:?}: {err}");
            assert!(matches!(err, Error::InvalidName { .. }));
        }
        assert!(Name::new(&"x".repeat(256)).is_err());
    }

    #[test]
    fn each_kind_has_its_folder() {
        let name = Name::new("n").unwrap();
        assert_eq!(name.path(Kind::Lock), "/coordination/locks/n");
        assert_eq!(name.path(Kind::Election), "/coordination/elections/n");
        assert_eq!(name.path(Kind::Ids), "/coordination/ids/n");
        assert_eq!(name.path(Kind::Counter), "/coordination/counters/n");
    }
}
