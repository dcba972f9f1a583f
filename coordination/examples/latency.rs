//! Lock latencies through the library, for bench/coordination/run:
//!
//!   cargo run --release -p coordination --example latency -- SERVERS TRIALS
//!
//! Prints one JSON object: `uncontended_us` (acquire + release on a live
//! session, no other contender) and `handoff_us` (from the holder starting
//! its release to the one waiter, on another session, holding the lock),
//! each a list of TRIALS microsecond figures.

use std::time::{Duration, Instant};

use coordination::{Mutex, Name, Session};

#[tokio::main]
async fn main() -> coordination::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (servers, trials): (&str, usize) = match &args[..] {
        [_, servers, trials] => (servers, trials.parse().expect("TRIALS is a number")),
        _ => panic!("usage: latency SERVERS TRIALS"),
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let timeout = Duration::from_secs(10);
    let (a, b) = (
        Session::connect(servers, timeout, deadline).await?,
        Session::connect(servers, timeout, deadline).await?,
    );
    let name = Name::new("bench-latency")?;
    let (mutex_a, mutex_b) = (Mutex::new(&a, &name), Mutex::new(&b, &name));

    let mut uncontended = Vec::new();
    for _ in 0..trials {
        let started = Instant::now();
        mutex_a.acquire(None).await?.release().await?;
        uncontended.push(started.elapsed().as_micros());
    }

    let mut handoff = Vec::new();
    for _ in 0..trials {
        let held = mutex_a.acquire(None).await?;
        let waiter = mutex_b.clone();
        let waiting = tokio::spawn(async move {
            let guard = waiter.acquire(None).await?;
            let at = Instant::now();
            guard.release().await?;
            Ok::<_, coordination::Error>(at)
        });
        // Release only once the waiter is in line behind us.
        while a
            .client()
            .list_children(mutex_a.path())
            .await
            .map(|c| c.len())
            .unwrap_or(0)
            < 2
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let released = Instant::now();
        held.release().await?;
        let acquired = waiting.await.expect("the waiter task")?;
        handoff.push((acquired - released).as_micros());
    }
    println!(
        "{}",
        serde_json::json!({ "uncontended_us": uncontended, "handoff_us": handoff })
    );
    Ok(())
}
