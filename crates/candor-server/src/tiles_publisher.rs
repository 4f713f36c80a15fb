//! The publisher task of `candor serve --tiles URL`: follows the published checkpoint
//! and mirrors each new tree to object storage through
//! [`candor_store::object_tiles`], off the sequencer's path: a slow or failing object
//! store delays the published objects (retried with back-off), never a receipt.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::state::{Phase, Shared};
use candor_core::checkpoint;
use candor_core::note::VerifierKey;
use candor_store::Store;
use candor_store::object_tiles::{PublishError, Target, publish_round};

/// How often the publisher looks for a new checkpoint.
const POLL: Duration = Duration::from_millis(100);

/// The publisher task: follows the published checkpoint and mirrors it to `target`
/// until the server finishes. Starts from the size of a checkpoint already in the
/// object store if it verifies with the log key (its tiles are in place: the
/// checkpoint object is always written last).
pub async fn run(
    target: Target,
    store: Arc<dyn Store>,
    shared: Arc<Shared>,
    vkey: VerifierKey,
    mut phase: watch::Receiver<Phase>,
) {
    let mut done = match target.checkpoint().await {
        Ok(Some(note)) => match checkpoint::open_checkpoint(&note, &vkey) {
            Ok((cp, _)) if cp.size <= shared.published().checkpoint.size => Some((cp.size, note)),
            Ok((cp, _)) => {
                tracing::error!(
                    "{}: its checkpoint (size {}) is ahead of the log; not publishing",
                    target.url,
                    cp.size
                );
                return;
            }
            Err(e) => {
                tracing::warn!(
                    "{}: ignoring a checkpoint that does not verify: {e}",
                    target.url
                );
                None
            }
        },
        Ok(None) => None,
        Err(e) => {
            tracing::warn!("{}: reading its checkpoint: {e}", target.url);
            None
        }
    };
    let mut backoff = POLL;
    loop {
        let p = shared.published();
        let up_to_date = done
            .as_ref()
            .is_some_and(|(_, note)| note.as_slice() == p.note.as_slice());
        if !up_to_date {
            let old = done.as_ref().map_or(0, |(s, _)| *s).min(p.checkpoint.size);
            let note = p.note.as_ref().clone();
            match publish_round(&target, store.clone(), old, p.checkpoint.size, note.clone()).await
            {
                Ok(()) => {
                    done = Some((p.checkpoint.size, note));
                    backoff = POLL;
                }
                Err(e @ PublishError::Mismatch { .. }) => {
                    tracing::error!("publishing to {}: {e}", target.url);
                    return;
                }
                Err(e) => {
                    tracing::warn!("publishing to {} (will retry): {e}", target.url);
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        if *phase.borrow() == Phase::Finished {
            return;
        }
        let finished = tokio::select! {
            () = tokio::time::sleep(backoff) => false,
            r = phase.wait_for(|p| *p == Phase::Finished) => r.is_ok(),
        };
        if finished {
            // One last round so the final checkpoint is published.
            let p = shared.published();
            let old = done.as_ref().map_or(0, |(s, _)| *s).min(p.checkpoint.size);
            let note = p.note.as_ref().clone();
            if let Err(e) =
                publish_round(&target, store.clone(), old, p.checkpoint.size, note).await
            {
                tracing::warn!("publishing to {} at shutdown: {e}", target.url);
            }
            return;
        }
    }
}
