//! `elect NAME ID`: campaign, say `leader ID` / `follower ID`, resign on
//! SIGTERM.

use super::{connect, deadline, Stop, CLOSE_PATIENCE};
use crate::cli::Cli;
use crate::election::{Event, LeaderElection};
use crate::error::Result;
use crate::name::Name;

pub async fn run(cli: &Cli, name: &Name, id: &str) -> Result<u8> {
    let mut stop = Stop::new();
    let mut first_session = true;
    loop {
        // The first session must come within --timeout (else exit 3); after
        // that a lost session is replaced for as long as we run.
        let session = match stop.unless(connect(cli, deadline(cli))).await {
            Err(_signal) => return Ok(0),
            Ok(Ok(session)) => session,
            Ok(Err(e)) if first_session => return Err(e),
            Ok(Err(e)) => {
                tracing::warn!("{e}; trying again");
                continue;
            }
        };
        first_session = false;
        let election = LeaderElection::new(&session, name);
        let mut campaign = match stop.unless(election.campaign(id)).await {
            Err(_signal) => {
                session.close(CLOSE_PATIENCE).await;
                return Ok(0);
            }
            Ok(campaign) => campaign?,
        };
        tracing::info!(
            "campaigning for {name} as {id}: {}",
            campaign.node_path().unwrap_or("?")
        );
        loop {
            match stop.unless(campaign.next()).await {
                Err(_signal) => {
                    // Say it first, then step down: whoever leads next is
                    // told only after our node is gone.
                    if campaign.is_leader() {
                        println!("follower {id}");
                    }
                    let patience = session.timeout();
                    if tokio::time::timeout(patience, campaign.resign())
                        .await
                        .is_err()
                    {
                        tracing::warn!("could not resign within {patience:?}; ZooKeeper drops our node when the session expires");
                    }
                    return Ok(0);
                }
                Ok(Ok(Event::Elected)) => println!("leader {id}"),
                Ok(Ok(Event::Defeated(loss))) => {
                    println!("follower {id}");
                    tracing::warn!("no longer leading {name}: {loss}");
                }
                Ok(Err(e)) if e.is_session_gone() => {
                    tracing::warn!("{e}; campaigning again on a new session");
                    break;
                }
                Ok(Err(e)) => return Err(e),
            }
        }
    }
}
