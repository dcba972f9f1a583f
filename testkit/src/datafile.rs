//! What the contract says the data file (and `GET /tareas`) must be, as
//! checks: a JSON array of task objects with a string `titulo` and unsigned,
//! strictly increasing ids.

use std::path::Path;

use serde_json::Value;

/// Parses `bytes` as the contract's array of tasks.
pub fn parse_tasks(bytes: &[u8]) -> Result<Vec<Value>, String> {
    let tasks: Vec<Value> = serde_json::from_slice(bytes).map_err(|e| {
        format!(
            "not a JSON array ({e}); it ends with {:?}",
            String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(80)..])
        )
    })?;
    let mut last = 0;
    for (i, task) in tasks.iter().enumerate() {
        let id = task
            .get("id")
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("entry {i} has no unsigned integer id: {task}"))?;
        if !task.get("titulo").is_some_and(Value::is_string) {
            return Err(format!("entry {i} has no string titulo: {task}"));
        }
        if i > 0 && id <= last {
            return Err(format!(
                "ids not strictly increasing: {id} after {last} (entry {i})"
            ));
        }
        last = id;
    }
    Ok(tasks)
}

/// Reads and checks the data file.
pub fn read_tasks(path: &Path) -> Result<Vec<Value>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_tasks(&bytes).map_err(|e| format!("data file {}: {e}", path.display()))
}

/// The ids of a list of tasks (already checked by [`parse_tasks`]).
pub fn ids(tasks: &[Value]) -> Vec<u64> {
    tasks.iter().filter_map(|t| t["id"].as_u64()).collect()
}
