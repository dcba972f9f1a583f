//! Cluster mode: the data file replicated by Raft over three or more nodes.
pub mod log;
pub mod state_machine;
pub mod types;

#[cfg(test)]
mod tests;
