//! Front ends that do not sequence: `candor serve --read-only`, and a standby waiting
//! for the sequencer lock (PostgreSQL store). Both serve the read API from the shared
//! store and follow the sequencer by re-reading the stored checkpoint periodically.
//!
//! A followed checkpoint is published only if it verifies with the log's key and is not
//! smaller than the one already served, so a front end never goes back in time; the
//! sequencer stores a checkpoint only after the state it commits to is durable, so every
//! tile and bundle it needs is readable when it is seen (spec/api.md §1).

use std::sync::Arc;

use candor_core::checkpoint;
use candor_core::clock::SharedClock;
use candor_core::note::VerifierKey;
use candor_store::Store;

use super::metrics::Metrics;
use super::registry::Registry;
use super::state::{Published, Shared, Witnessing};

/// Why the stored checkpoint could not be followed.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("reading the store: {0}")]
    Store(String),
    #[error("the stored checkpoint does not verify with the log key {vkey}: {detail}")]
    Key { vkey: String, detail: String },
    #[error(transparent)]
    Registry(#[from] super::registry::LoadError),
}

/// The stored checkpoint, verified, with the registry; `None` before the sequencer
/// stored its first checkpoint.
pub fn load(
    store: &dyn Store,
    vkey: &VerifierKey,
) -> Result<Option<(Published, Registry)>, FollowError> {
    let Some(note) = store
        .checkpoint()
        .map_err(|e| FollowError::Store(e.to_string()))?
    else {
        return Ok(None);
    };
    let (cp, _) = checkpoint::open_checkpoint(&note, vkey).map_err(|e| FollowError::Key {
        vkey: vkey.to_string(),
        detail: e.to_string(),
    })?;
    let registry = Registry::load(store)?;
    Ok(Some((
        Published {
            note: Arc::new(note),
            checkpoint: cp,
        },
        registry,
    )))
}

/// The state a front end that does not sequence serves, starting from the stored
/// checkpoint `published`. A standby of a log with witnesses gets the witnessing state
/// already (its handlers then serve `/checkpoint` only while the followed checkpoint
/// carries the quorum, as a sequencer's do), so that on promotion the new sequencer
/// continues from the last witnessed checkpoint (spec/deployment.md §3).
pub fn shared(
    published: Published,
    registry: Registry,
    metrics: Arc<Metrics>,
    witnessing: Option<Arc<Witnessing>>,
    clock: SharedClock,
) -> Arc<Shared> {
    if let Some(w) = &witnessing {
        w.follow(&published);
    }
    Shared::new(published, registry, metrics, witnessing, clock)
}

/// Re-reads the stored checkpoint and publishes it into `shared` if it is new and not
/// smaller than the served one. Returns whether anything changed.
pub fn refresh(
    store: &dyn Store,
    vkey: &VerifierKey,
    shared: &Shared,
) -> Result<bool, FollowError> {
    let current = shared.published();
    let Some(note) = store
        .checkpoint()
        .map_err(|e| FollowError::Store(e.to_string()))?
    else {
        return Ok(false);
    };
    if note == *current.note {
        return Ok(false);
    }
    let (cp, _) = checkpoint::open_checkpoint(&note, vkey).map_err(|e| FollowError::Key {
        vkey: vkey.to_string(),
        detail: e.to_string(),
    })?;
    if cp.size < current.checkpoint.size {
        return Ok(false);
    }
    if cp.size > current.checkpoint.size {
        // The registry lives in the same store batches as the entries it came with.
        shared.publish_registry(Registry::load(store)?);
    }
    shared.publish(Published {
        note: Arc::new(note),
        checkpoint: cp,
    });
    if let Some(w) = &shared.witnessing {
        w.follow(&shared.published());
    }
    Ok(true)
}
