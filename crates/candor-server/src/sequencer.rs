//! The sequencer: the single writer of the log.
//!
//! Submissions wait in a pool (an unbounded channel whose depth is bounded by a
//! semaphore of entry permits, so a full pool answers 429 instead of growing). One task
//! takes them in batches, by size (`--batch-size`) and by time (`--batch-delay-ms`), and
//! for each batch, in this order:
//!
//! 1. verifies every company signature not yet verified (requests of
//!    [`VERIFY_IN_HANDLER_MIN`] entries or more were, by their handler) with one Ed25519
//!    batch verification, falling back to single verification to find the culprits
//!    when the batch fails;
//! 2. re-checks each key against the registry (a revocation may have landed since the
//!    submission was accepted) and each registry change against the registry;
//! 3. deduplicates by entry hash, within the batch and against the store;
//! 4. assigns indices, builds the leaves (setting `logged_at`), the new tiles and bundles;
//! 5. signs the checkpoint of the new tree and appends everything, registry records and
//!    that checkpoint included, in ONE atomic, fsync'd store batch (with witnesses the
//!    checkpoint is signed only after this commit and stored once cosigned:
//!    witnessing.rs);
//! 6. only then publishes the checkpoint, and hands the batch to a [`ReplyJob`] that
//!    builds the receipts and answers every waiting submitter while the next batch is
//!    sequenced.
//!
//! Submodules by job: `checks` (signatures and keys, steps 1-2), `append` (steps 3-5:
//! the core append step over a [`Store`]), `receipts` (step 6 and receipts read
//! later) and `run` (the task that forms batches). [`Core`] ties them together.
//!
//! A submission (one JSON entry, or one NDJSON request) is all-or-nothing: if any of its
//! entries is refused, none of them is logged. A checkpoint leaves the sequencer (to
//! readers, receipts or witnesses) only once it and its tree are durable, and never for
//! a size below one already published, so two published checkpoints can never be
//! inconsistent (C2SP tlog-checkpoint). A note signed for a batch whose commit fails is
//! dropped unseen: the store then holds neither the batch nor that note.

mod append;
mod checks;
mod receipts;
mod run;
#[cfg(test)]
pub(crate) mod tests;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::edge::{Edge, EdgeError};
use super::error::ApiError;
use super::metrics::Metrics;
use super::reader::{self, StoreTiles};
use super::registry::Registry;
use super::state::{Published, Shared, Submission, Validated, Witnessing};
use candor_core::checkpoint::{self, Checkpoint, CheckpointError};
use candor_core::clock::SharedClock;
use candor_core::hash::{Hash, empty_root};
use candor_core::merkle::TreeError;
use candor_core::note::{SignerKey, VerifierKey};
use candor_store::{Store, StoreError, TreeState};

pub use checks::{VERIFY_IN_HANDLER_MIN, check_key, verify_submission};
pub use receipts::{KnownLeaf, ReceiptCache, ReplyJob, build_receipt, build_receipt_cached};
pub use run::{BatchConfig, run};

/// Why the log refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("reading the store: {0}")]
    Store(#[from] StoreError),
    #[error("the stored tree is inconsistent: {0}")]
    Edge(#[from] EdgeError),
    #[error("hashing the stored tree at size {size}: {source}")]
    StoredTree { size: u64, source: TreeError },
    #[error(transparent)]
    Registry(#[from] super::registry::LoadError),
    #[error(
        "the stored checkpoint does not verify with this log's key {vkey} (was the log started with another --key?): {detail}"
    )]
    CheckpointKey { vkey: String, detail: String },
    #[error(
        "the stored checkpoint is for size {checkpoint} but the durable tree has only {durable} entries: the store lost acknowledged entries; refusing to start rather than fork the log"
    )]
    CheckpointAhead { checkpoint: u64, durable: u64 },
    #[error(
        "the stored checkpoint for size {size} has root {checkpoint} but the stored tree hashes to {stored} at that size: refusing to start rather than sign an inconsistent checkpoint"
    )]
    CheckpointRoot {
        size: u64,
        checkpoint: String,
        stored: String,
    },
    #[error("signing the checkpoint: {0}")]
    Sign(#[from] CheckpointError),
    #[error("storing the checkpoint: {0}")]
    StoreCheckpoint(StoreError),
}

/// Why the sequencer could not log a batch, or could not publish what it logged.
#[derive(Debug, thiserror::Error)]
pub enum SequencerError {
    #[error("signing the checkpoint: {0}")]
    Sign(#[from] CheckpointError),
    #[error("extending the tree: {0}")]
    Edge(#[from] EdgeError),
    #[error("appending a batch of {entries} entries: {source}")]
    Append { entries: usize, source: StoreError },
    #[error("storing the checkpoint: {0}")]
    StoreCheckpoint(StoreError),
    /// The store is not readable after a failed write: nothing is sequenced until it is.
    #[error("the store could not be re-read after a failed write: {0}")]
    Recover(Box<StartError>),
}

/// The sequencer's synchronous core; runs on a blocking thread.
pub struct Core {
    store: Arc<dyn Store>,
    key: SignerKey,
    origin: String,
    edge: Edge,
    registry: Registry,
    shared: Arc<Shared>,
    /// False after a failed write until the state is re-read successfully.
    healthy: bool,
}

fn sign(
    key: &SignerKey,
    origin: &str,
    size: u64,
    root: Hash,
) -> Result<Published, CheckpointError> {
    let cp = Checkpoint {
        origin: origin.to_string(),
        size,
        root,
        extensions: Vec::new(),
    };
    let note = checkpoint::sign_checkpoint(&cp, key)?;
    Ok(Published {
        note: Arc::new(note),
        checkpoint: cp,
    })
}

impl Core {
    /// Opens the log's durable state and checks it (see the module docs); signs and
    /// stores a checkpoint for the durable size if the stored one is older or missing.
    pub fn open(
        store: Arc<dyn Store>,
        key: SignerKey,
        origin: String,
        metrics: Arc<Metrics>,
        clock: SharedClock,
    ) -> Result<Core, StartError> {
        Self::open_witnessed(store, key, origin, metrics, None, clock)
    }

    /// Like [`Core::open`]; with `witnessing`, the stored (last witnessed) checkpoint
    /// is published as it is and the durable tree's checkpoint is signed and handed
    /// to the witnesses instead of being stored (`witnessing.rs`).
    pub fn open_witnessed(
        store: Arc<dyn Store>,
        key: SignerKey,
        origin: String,
        metrics: Arc<Metrics>,
        witnessing: Option<Arc<Witnessing>>,
        clock: SharedClock,
    ) -> Result<Core, StartError> {
        let (edge, registry, published) =
            Self::load_and_offer(&*store, &key, &origin, witnessing.as_ref())?;
        let shared = Shared::new(published, registry.clone(), metrics, witnessing, clock);
        Ok(Core {
            store,
            key,
            origin,
            edge,
            registry,
            shared,
            healthy: true,
        })
    }

    /// Like [`Core::open_witnessed`] with `shared.witnessing`, but publishing into
    /// `shared`, which the HTTP handlers of a standby already hold (promotion to
    /// sequencer). With witnesses it starts from the stored, last witnessed checkpoint
    /// and hands the durable tree's checkpoint to the cosigning task, never storing it.
    pub fn open_shared(
        store: Arc<dyn Store>,
        key: SignerKey,
        origin: String,
        shared: Arc<Shared>,
    ) -> Result<Core, StartError> {
        let (edge, registry, published) =
            Self::load_and_offer(&*store, &key, &origin, shared.witnessing.as_ref())?;
        shared.publish_registry(registry.clone());
        shared.publish(published);
        Ok(Core {
            store,
            key,
            origin,
            edge,
            registry,
            shared,
            healthy: true,
        })
    }

    /// Loads the durable state; with witnesses, starts cosigning from the stored (last
    /// witnessed) checkpoint and offers them the durable tree's checkpoint.
    fn load_and_offer(
        store: &dyn Store,
        key: &SignerKey,
        origin: &str,
        witnessing: Option<&Arc<Witnessing>>,
    ) -> Result<(Edge, Registry, Published), StartError> {
        let (edge, registry, published) = Self::load(store, key, origin, witnessing.is_some())?;
        if let Some(w) = witnessing {
            w.start_with(&published);
            w.offer(sign(key, origin, edge.size(), edge.root())?);
        }
        Ok((edge, registry, published))
    }

    /// State shared with the HTTP handlers.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    fn load(
        store: &dyn Store,
        key: &SignerKey,
        origin: &str,
        witnessed: bool,
    ) -> Result<(Edge, Registry, Published), StartError> {
        let state = store.state()?.unwrap_or(TreeState {
            size: 0,
            root: empty_root(),
        });
        let edge = Edge::load(store, &state)?;
        let registry = Registry::load(store)?;
        let vkey: VerifierKey = key.verifier();
        let stored = store.checkpoint()?;
        if let Some(note) = stored {
            let (cp, _) = checkpoint::open_checkpoint(&note, &vkey).map_err(|e| {
                StartError::CheckpointKey {
                    vkey: vkey.to_string(),
                    detail: e.to_string(),
                }
            })?;
            if cp.size > state.size {
                return Err(StartError::CheckpointAhead {
                    checkpoint: cp.size,
                    durable: state.size,
                });
            }
            let stored_root = if cp.size == state.size {
                state.root
            } else {
                let tiles = StoreTiles {
                    store,
                    overlay: None,
                };
                reader::tree_hash(tiles, cp.size).map_err(|source| StartError::StoredTree {
                    size: cp.size,
                    source,
                })?
            };
            if stored_root != cp.root {
                return Err(StartError::CheckpointRoot {
                    size: cp.size,
                    checkpoint: cp.root.to_base64(),
                    stored: stored_root.to_base64(),
                });
            }
            // With witnesses the stored checkpoint is the last witnessed one; it may
            // trail the durable tree, whose checkpoint the witnesses still have to cosign.
            if cp.size == state.size || witnessed {
                return Ok((
                    edge,
                    registry,
                    Published {
                        note: Arc::new(note),
                        checkpoint: cp,
                    },
                ));
            }
        }
        if witnessed {
            // Nothing witnessed yet: stand on the empty tree (a prefix of every tree),
            // which is not stored and not served as witnessed.
            let published = sign(key, origin, 0, empty_root())?;
            return Ok((edge, registry, published));
        }
        // No checkpoint yet, or the last batch became durable but the process stopped
        // before its checkpoint was stored: sign the durable state now.
        let published = sign(key, origin, state.size, state.root)?;
        store
            .put_checkpoint(&published.note)
            .map_err(StartError::StoreCheckpoint)?;
        Ok((edge, registry, published))
    }

    /// Re-reads the durable state after a failed write, and re-signs if needed.
    /// On failure returns why, so that refused submitters learn the cause (e.g. a full
    /// disk) and not only that something failed.
    fn recover(&mut self) -> Result<(), SequencerError> {
        let witnessed = self.shared.witnessing.is_some();
        match Self::load(&*self.store, &self.key, &self.origin, witnessed) {
            Ok((edge, registry, published)) => {
                self.edge = edge;
                self.registry = registry.clone();
                self.shared.publish_registry(registry);
                self.shared.publish(published);
                self.healthy = true;
                Ok(())
            }
            Err(e) => {
                tracing::error!("re-reading the store after a failed write: {e}");
                self.healthy = false;
                Err(SequencerError::Recover(Box::new(e)))
            }
        }
    }

    /// Makes sure the published checkpoint covers the whole durable tree.
    fn catch_up(&mut self) -> Result<(), SequencerError> {
        if !self.healthy {
            self.recover()?;
        }
        if let Some(w) = &self.shared.witnessing {
            // Witness mode: sign, and let the witnessing task store and publish.
            if w.sequenced_size() != Some(self.edge.size()) {
                let p = sign(&self.key, &self.origin, self.edge.size(), self.edge.root())?;
                self.shared
                    .metrics
                    .checkpoints_total
                    .fetch_add(1, Ordering::Relaxed);
                w.offer(p);
            }
            return Ok(());
        }
        let published = self.shared.published();
        if published.checkpoint.size == self.edge.size() {
            return Ok(());
        }
        let p = sign(&self.key, &self.origin, self.edge.size(), self.edge.root())?;
        self.store
            .put_checkpoint(&p.note)
            .map_err(SequencerError::StoreCheckpoint)?;
        self.shared
            .metrics
            .checkpoints_total
            .fetch_add(1, Ordering::Relaxed);
        self.shared.publish(p);
        Ok(())
    }

    /// Sequences one batch of submissions. A submission refused outright is answered
    /// here; the rest are answered by the returned job, which the caller runs off the
    /// sequencer's serial path ([`ReplyJob::run`]): the batch is durable and its
    /// checkpoint published by then, so the next batch need not wait for receipts.
    pub fn process(&mut self, subs: Vec<Submission>) -> Option<ReplyJob> {
        let metrics = self.shared.metrics.clone();
        if let Err(e) = self.catch_up() {
            metrics.store_errors_total.fetch_add(1, Ordering::Relaxed);
            let why = e.to_string();
            for s in subs {
                receipts::answer(&metrics, s, Err(ApiError::Unavailable(why.clone())));
            }
            return None;
        }
        let items: Vec<&[Validated]> = subs.iter().map(|s| s.items.as_slice()).collect();
        let refused = checks::verify_signatures(&items);
        let logged_at = self.shared.clock.now_rfc3339();
        let step = append::AppendStep {
            store: &*self.store,
            edge: &self.edge,
            registry: &self.registry,
            logged_at: &logged_at,
        };
        // Without witnesses the checkpoint of the new size is signed now and committed
        // with the batch: one fsync'd commit makes both durable. It leaves this
        // function only once that commit succeeded (spec/api.md §1).
        let (key, origin) = (&self.key, self.origin.as_str());
        let witnessed = self.shared.witnessing.is_some();
        let appended = step.run(&items, refused, |state| {
            if witnessed {
                return Ok(None);
            }
            Ok(Some(sign(key, origin, state.size, state.root)?))
        });
        drop(items);
        let append::Appended {
            base,
            placed,
            duplicates,
            committed,
        } = appended;
        let (new_leaves, new_hashes, tiles) = match committed {
            Ok(None) => (Vec::new(), Vec::new(), Default::default()),
            Ok(Some(c)) => {
                self.edge = c.edge;
                if let Some(registry) = c.registry {
                    self.registry = registry.clone();
                    self.shared.publish_registry(registry);
                }
                // Published after the registry: a reader never sees a checkpoint
                // ahead of the keys.
                if let Some(p) = c.checkpoint {
                    metrics.checkpoints_total.fetch_add(1, Ordering::Relaxed);
                    self.shared.publish(p);
                }
                metrics
                    .entries_total
                    .fetch_add(c.leaves.len() as u64, Ordering::Relaxed);
                metrics.batch_size.observe(c.leaves.len() as f64);
                // With witnesses: durable, so now sign the new size and offer it.
                if let Err(e) = self.catch_up() {
                    tracing::error!("{e}");
                    metrics.store_errors_total.fetch_add(1, Ordering::Relaxed);
                    let why = format!(
                        "the entries are stored but their checkpoint could not be; resubmit to get a receipt: {e}"
                    );
                    receipts::answer_unavailable(&metrics, subs, placed, &why);
                    return None;
                }
                (c.leaves, c.hashes, c.tiles)
            }
            Err(e) => {
                tracing::error!("{e}");
                metrics.store_errors_total.fetch_add(1, Ordering::Relaxed);
                // Nothing of this batch was published; re-read what is durable (the
                // batch may be, if the store failed after persisting it). A failure
                // here is logged and retried before the next batch.
                let _ = self.recover();
                let why = format!("the log could not store this batch; retry: {e}");
                receipts::answer_unavailable(&metrics, subs, placed, &why);
                return None;
            }
        };
        metrics
            .duplicates_total
            .fetch_add(duplicates, Ordering::Relaxed);

        // With witnesses, receipts are made against the checkpoint just signed; the
        // HTTP handler swaps it for a witnessed one (witnessing.rs).
        let published = match self
            .shared
            .witnessing
            .as_ref()
            .and_then(|w| w.latest_signed())
        {
            Some(signed) => signed,
            None => self.shared.published(),
        };
        Some(ReplyJob {
            subs,
            placed,
            base,
            new_leaves,
            new_hashes,
            tiles,
            published,
            registry: self.shared.registry(),
            store: self.store.clone(),
            metrics,
        })
    }
}
