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
//! A submission (one JSON entry, or one NDJSON request) is all-or-nothing: if any of its
//! entries is refused, none of them is logged. A checkpoint leaves the sequencer (to
//! readers, receipts or witnesses) only once it and its tree are durable, and never for
//! a size below one already published, so two published checkpoints can never be
//! inconsistent (C2SP tlog-checkpoint). A note signed for a batch whose commit fails is
//! dropped unseen: the store then holds neither the batch nor that note.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot, watch};

use super::edge::{Edge, EdgeError};
use super::error::ApiError;
use super::metrics::Metrics;
use super::reader::{self, StoreTiles};
use super::registry::{Change, KeyStatus, Registry};
use super::witnessing::Witnessing;
use crate::checkpoint::{self, Checkpoint};
use crate::clock::SharedClock;
use crate::entry::{Leaf, SignedEntry};
use crate::hash::{Hash, empty_root, leaf_hash};
use crate::note::{SignerKey, VerifierKey};
use crate::store::{Batch, Store, TreeState};
use crate::tiles::{Tile, TileReader};
use crate::tlog_proof::TlogProof;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The inclusion of the registration of the key that signed an entry, in the same
/// checkpoint as the entry's receipt (spec/receipts.md §1, `company_key`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CompanyKeyProof {
    pub index: u64,
    /// base64 of the registration entry's leaf bytes.
    pub leaf: String,
    /// base64 hashes of its RFC 9162 inclusion proof.
    pub proof: Vec<String>,
}

/// A receipt as the log returns it (spec/receipts.md §1). Members are declared in
/// their RFC 8785 order, so the canonical writer of NDJSON answers need not move them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Receipt {
    /// Shared by every receipt of a batch signed with the same key: it is the same
    /// proof, and copying its strings per receipt was a measurable cost.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub company_key: Option<Arc<CompanyKeyProof>>,
    pub index: u64,
    /// base64 of the leaf bytes.
    pub leaf: String,
    /// hex of the RFC 6962 leaf hash.
    pub leaf_hash: String,
    pub log: String,
    /// `c2sp.org/tlog-proof@v1` text.
    pub tlog_proof: String,
}

/// One entry, checked before it enters the pool.
#[derive(Debug, Clone)]
pub struct Validated {
    pub signed: SignedEntry,
    pub entry_hash: Hash,
    /// `candor-entry/v1\n ‖ JCS(entry)`: what the signature covers.
    pub message: Vec<u8>,
    pub signature: Signature,
    pub key: VerifyingKey,
    /// For `company_key` entries made by the log: the registry change they carry.
    pub change: Option<Change>,
    /// 1-based NDJSON line, for error messages.
    pub line: Option<usize>,
    /// The signature was verified already (with its request's other entries, by the
    /// HTTP handler: [`verify_submission`]); the sequencer verifies only the others.
    pub verified: bool,
}

/// Fewer entries than this in one request are left for the sequencer to verify,
/// where they join every other request's entries in one batch equation: alone, a
/// batch of a few signatures costs nearly as much per signature as single checks.
pub const VERIFY_IN_HANDLER_MIN: usize = 32;

/// Verifies the signatures of one request's entries not yet verified, with one batch
/// equation on the calling thread, and marks them verified, if there are at least
/// `min` of them (else leaves them to the sequencer). Large requests are verified by
/// their HTTP handler ([`VERIFY_IN_HANDLER_MIN`]), in parallel with other requests and
/// with the sequencer's store commit, instead of on the sequencer's serial path. On
/// failure, the first bad signature and its line.
pub fn verify_submission(items: &mut [Validated], min: usize) -> Result<(), ApiError> {
    let batch_ok = {
        let (messages, sigs, keys) = unverified(items.iter());
        if messages.is_empty() || messages.len() < min {
            return Ok(());
        }
        crate::ed25519_strict::verify_batch(&messages, &sigs, &keys).is_ok()
    };
    if !batch_ok && let Some((i, why)) = first_bad_signature(items) {
        return Err(with_line(ApiError::BadSignature(why), &items[i]));
    }
    for it in items.iter_mut() {
        it.verified = true;
    }
    Ok(())
}

/// The messages, signatures and keys of the entries not yet verified, as batch
/// verification takes them.
fn unverified<'a>(
    items: impl Iterator<Item = &'a Validated>,
) -> (Vec<&'a [u8]>, Vec<Signature>, Vec<VerifyingKey>) {
    let mut messages = Vec::new();
    let mut sigs = Vec::new();
    let mut keys = Vec::new();
    for it in items.filter(|it| !it.verified) {
        messages.push(it.message.as_slice());
        sigs.push(it.signature);
        keys.push(it.key);
    }
    (messages, sigs, keys)
}

/// The first of `items` not yet verified whose signature fails single (strict)
/// verification, and why. Single verification is the rule (spec/entries.md §7); a
/// batch equation only says whether to look.
fn first_bad_signature(items: &[Validated]) -> Option<(usize, String)> {
    items
        .iter()
        .enumerate()
        .filter(|(_, it)| !it.verified)
        .find_map(|(i, it)| {
            crate::ed25519_strict::verify(&it.key, &it.message, &it.signature)
                .err()
                .map(|e| (i, bad_signature(it, &e)))
        })
}

fn bad_signature(it: &Validated, e: &ed25519_dalek::SignatureError) -> String {
    format!(
        "the signature by key {} does not verify over the entry: {e}",
        it.signed.key_id
    )
}

/// What a submitter waits for.
pub type Reply = Result<Vec<Receipt>, ApiError>;

/// One request's entries, sequenced all-or-nothing.
pub struct Submission {
    pub items: Vec<Validated>,
    pub reply: oneshot::Sender<Reply>,
    pub accepted: Instant,
    /// Pool permits, one per entry; released when the submission is answered.
    pub permit: OwnedSemaphorePermit,
}

/// The latest signed checkpoint, as served.
#[derive(Debug, Clone)]
pub struct Published {
    /// The whole signed note.
    pub note: Arc<Vec<u8>>,
    pub checkpoint: Checkpoint,
}

/// State the sequencer publishes for the HTTP handlers.
pub struct Shared {
    pub published: RwLock<Arc<Published>>,
    pub registry: RwLock<Arc<Registry>>,
    pub metrics: Arc<Metrics>,
    /// Set when the log publishes only witnessed checkpoints (`--witness`).
    pub witnessing: Option<Arc<Witnessing>>,
    /// The clock `logged_at` and company_key times are read from.
    pub clock: SharedClock,
}

impl Shared {
    /// The latest published checkpoint.
    pub fn published(&self) -> Arc<Published> {
        // A poisoned lock still holds a fully written Arc (writes are one assignment).
        self.published
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The registry as of the latest sequenced batch.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// State for a log whose latest checkpoint is `published`: the sequencer's, and
    /// the one read-only front ends and standbys follow the store with (a standby's
    /// sequencer adopts it on promotion, [`Core::open_shared`]).
    pub fn new(
        published: Published,
        registry: Registry,
        metrics: Arc<Metrics>,
        witnessing: Option<Arc<Witnessing>>,
        clock: SharedClock,
    ) -> Arc<Shared> {
        let shared = Arc::new(Shared {
            published: RwLock::new(Arc::new(published.clone())),
            registry: RwLock::new(Arc::new(registry)),
            metrics,
            witnessing,
            clock,
        });
        shared.publish(published);
        shared
    }

    pub(crate) fn publish(&self, p: Published) {
        let mut cur = self.published.write().unwrap_or_else(|p| p.into_inner());
        // Never go back to a smaller tree (the sequencer's recovery and the
        // witnessing task may publish concurrently).
        if p.checkpoint.size < cur.checkpoint.size {
            return;
        }
        self.metrics
            .tree_size
            .store(p.checkpoint.size, Ordering::Relaxed);
        *cur = Arc::new(p);
    }

    /// Publishes a cosigned checkpoint that is already durable in the store.
    pub(super) fn publish_witnessed(&self, p: Published) {
        self.publish(p);
    }

    pub(crate) fn publish_registry(&self, r: Registry) {
        *self.registry.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(r);
    }
}

/// Why the log refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("reading the store: {0}")]
    Store(String),
    #[error("the stored tree is inconsistent: {0}")]
    Edge(#[from] EdgeError),
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
    #[error("signing or storing the checkpoint: {0}")]
    Sign(String),
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

fn sign(key: &SignerKey, origin: &str, size: u64, root: Hash) -> Result<Published, String> {
    let cp = Checkpoint {
        origin: origin.to_string(),
        size,
        root,
        extensions: Vec::new(),
    };
    let note = checkpoint::sign_checkpoint(&cp, key).map_err(|e| e.to_string())?;
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
            w.offer(sign(key, origin, edge.size(), edge.root()).map_err(StartError::Sign)?);
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
        let state = store
            .state()
            .map_err(|e| StartError::Store(e.to_string()))?
            .unwrap_or(TreeState {
                size: 0,
                root: empty_root(),
            });
        let edge = Edge::load(store, &state)?;
        let registry = Registry::load(store)?;
        let vkey: VerifierKey = key.verifier();
        let stored = store
            .checkpoint()
            .map_err(|e| StartError::Store(e.to_string()))?;
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
                reader::tree_hash(tiles, cp.size).map_err(|e| StartError::Store(e.to_string()))?
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
            let published = sign(key, origin, 0, empty_root()).map_err(StartError::Sign)?;
            return Ok((edge, registry, published));
        }
        // No checkpoint yet, or the last batch became durable but the process stopped
        // before its checkpoint was stored: sign the durable state now.
        let published = sign(key, origin, state.size, state.root).map_err(StartError::Sign)?;
        store
            .put_checkpoint(&published.note)
            .map_err(|e| StartError::Sign(e.to_string()))?;
        Ok((edge, registry, published))
    }

    /// Re-reads the durable state after a failed write, and re-signs if needed.
    /// On failure returns why, so that refused submitters learn the cause (e.g. a full
    /// disk) and not only that something failed.
    fn recover(&mut self) -> Result<(), String> {
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
                Err(e.to_string())
            }
        }
    }

    /// Makes sure the published checkpoint covers the whole durable tree.
    fn catch_up(&mut self) -> Result<(), String> {
        if !self.healthy {
            self.recover()
                .map_err(|e| format!("the store could not be re-read after a failed write: {e}"))?;
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
            .map_err(|e| format!("storing the checkpoint: {e}"))?;
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
            for s in subs {
                answer(&metrics, s, Err(ApiError::Unavailable(e.clone())));
            }
            return None;
        }
        let bad = verify_signatures(&subs);
        let stored = self.lookup_stored(&subs);
        let logged_at = self.shared.clock.now_rfc3339();
        let mut registry = self.registry.clone();
        let mut registry_changed = false;
        let base = self.edge.size();
        let mut new_leaves: Vec<Vec<u8>> = Vec::new();
        let mut dedup: HashMap<Hash, u64> = HashMap::new();
        let mut leaf_index = Vec::new();
        let mut entry_index = Vec::new();
        let mut meta = Vec::new();
        // Per submission: the indices of its entries, or why it was refused.
        let mut placed: Vec<Result<Vec<u64>, ApiError>> = Vec::with_capacity(subs.len());
        let mut duplicates = 0u64;

        for (si, sub) in subs.iter().enumerate() {
            if let Some(&(ii, ref why)) = bad.get(&si) {
                let e = ApiError::BadSignature(why.clone());
                placed.push(Err(with_line(e, &sub.items[ii])));
                continue;
            }
            // Tentative state for this submission; merged only if all of it passes.
            let mut t_leaves: Vec<Vec<u8>> = Vec::new();
            let mut t_dedup: HashMap<Hash, u64> = HashMap::new();
            let mut t_leaf_index = Vec::new();
            let mut t_entry_index = Vec::new();
            let mut t_meta = Vec::new();
            let mut t_registry: Option<Registry> = None;
            let mut t_dups = 0u64;
            let mut indices = Vec::with_capacity(sub.items.len());
            let mut failure = None;
            for item in &sub.items {
                let next = base + new_leaves.len() as u64 + t_leaves.len() as u64;
                match self.place(item, &registry, &stored, &dedup, &t_dedup, &logged_at) {
                    Ok(Placement::Existing(i)) => {
                        t_dups += 1;
                        indices.push(i);
                    }
                    Ok(Placement::New { leaf, leaf_hash }) => {
                        if let Some(change) = &item.change {
                            let reg = t_registry.get_or_insert_with(|| registry.clone());
                            match reg.apply(change, next) {
                                Ok(kv) => t_meta.push(kv),
                                Err(e) => {
                                    failure =
                                        Some(with_line(ApiError::Conflict(e.to_string()), item));
                                    break;
                                }
                            }
                        }
                        t_dedup.insert(item.entry_hash, next);
                        t_leaf_index.push((leaf_hash, next));
                        t_entry_index.push((item.entry_hash, next));
                        t_leaves.push(leaf);
                        indices.push(next);
                    }
                    Err(e) => {
                        failure = Some(with_line(e, item));
                        break;
                    }
                }
            }
            match failure {
                Some(e) => placed.push(Err(e)),
                None => {
                    new_leaves.extend(t_leaves);
                    dedup.extend(t_dedup);
                    leaf_index.extend(t_leaf_index);
                    entry_index.extend(t_entry_index);
                    meta.extend(t_meta);
                    if let Some(r) = t_registry {
                        registry = r;
                        registry_changed = true;
                    }
                    duplicates += t_dups;
                    placed.push(Ok(indices));
                }
            }
        }

        // The new leaves' hashes, computed once by `place`: leaf_index holds them in the
        // order of new_leaves (both are pushed together, per new leaf).
        let new_hashes: Vec<Hash> = leaf_index.iter().map(|&(h, _)| h).collect();
        let mut written = super::edge::Written::default();
        if !new_leaves.is_empty() {
            let mut edge = self.edge.clone();
            let appended = edge.append_hashed(&new_leaves, &new_hashes);
            let outcome = appended.map_err(|e| e.to_string()).and_then(|mut w| {
                let new_state = TreeState {
                    size: edge.size(),
                    root: edge.root(),
                };
                // Without witnesses the checkpoint of the new size is signed now and
                // committed with the batch: one fsync'd commit makes both durable. It
                // leaves this function only once that commit succeeded (spec/api.md §1).
                let signed = match self.shared.witnessing {
                    Some(_) => None,
                    None => Some(sign(
                        &self.key,
                        &self.origin,
                        new_state.size,
                        new_state.root,
                    )?),
                };
                let batch = Batch {
                    old_size: base,
                    new_state,
                    tiles: Edge::tile_list(&w),
                    // Moved, not copied: once the batch is durable the store serves
                    // these bundles, so the receipts below read leaves from it.
                    bundles: std::mem::take(&mut w.bundles).into_iter().collect(),
                    leaf_index,
                    entry_index,
                    meta,
                    checkpoint: signed.as_ref().map(|p| p.note.to_vec()),
                };
                self.store
                    .append(&batch)
                    .map(|()| (w, signed))
                    .map_err(|e| format!("appending batch of {} entries: {e}", new_leaves.len()))
            });
            match outcome {
                Ok((w, signed)) => {
                    written = w;
                    self.edge = edge;
                    if registry_changed {
                        self.registry = registry.clone();
                        self.shared.publish_registry(registry);
                    }
                    // Published after the registry, as before the checkpoint moved into
                    // the batch: a reader never sees a checkpoint ahead of the keys.
                    if let Some(p) = signed {
                        metrics.checkpoints_total.fetch_add(1, Ordering::Relaxed);
                        self.shared.publish(p);
                    }
                    metrics
                        .entries_total
                        .fetch_add(new_leaves.len() as u64, Ordering::Relaxed);
                    metrics.batch_size.observe(new_leaves.len() as f64);
                }
                Err(e) => {
                    tracing::error!("{e}");
                    metrics.store_errors_total.fetch_add(1, Ordering::Relaxed);
                    // Nothing of this batch was published; re-read what is durable.
                    // A failure here is logged and retried before the next batch.
                    let _ = self.recover();
                    let why = format!("the log could not store this batch; retry: {e}");
                    answer_unavailable(&metrics, subs, placed, &why);
                    return None;
                }
            }
            // With witnesses: durable, so now sign the new size and offer it to them.
            if let Err(e) = self.catch_up() {
                tracing::error!("{e}");
                metrics.store_errors_total.fetch_add(1, Ordering::Relaxed);
                let why = format!(
                    "the entries are stored but their checkpoint could not be; resubmit to get a receipt: {e}"
                );
                answer_unavailable(&metrics, subs, placed, &why);
                return None;
            }
        }
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
            tiles: written.tiles,
            published,
            registry: self.shared.registry(),
            store: self.store.clone(),
            metrics,
        })
    }

    /// The stored index of every entry hash of the batch that the log holds already,
    /// looked up in one snapshot of the store (the sequencer is its only writer).
    /// `company_key` entries made by the log are never de-duplicated, so skipped.
    fn lookup_stored(&self, subs: &[Submission]) -> Result<HashMap<Hash, u64>, String> {
        let hashes: Vec<Hash> = subs
            .iter()
            .flat_map(|s| &s.items)
            .filter(|it| it.change.is_none())
            .map(|it| it.entry_hash)
            .collect();
        let found = self
            .store
            .lookup_entries(&hashes)
            .map_err(|e| e.to_string())?;
        Ok(hashes
            .into_iter()
            .zip(found)
            .filter_map(|(h, i)| Some((h, i?)))
            .collect())
    }

    /// Decides where one entry goes: an existing index (duplicate) or a new leaf.
    fn place(
        &self,
        item: &Validated,
        registry: &Registry,
        stored: &Result<HashMap<Hash, u64>, String>,
        batch_dedup: &HashMap<Hash, u64>,
        sub_dedup: &HashMap<Hash, u64>,
        logged_at: &str,
    ) -> Result<Placement, ApiError> {
        if item.change.is_none() {
            check_key(registry, &item.signed)?;
        } else if let Some(change) = &item.change {
            registry
                .check(change)
                .map_err(|e| ApiError::Conflict(e.to_string()))?;
        }
        if let Some(&i) = sub_dedup
            .get(&item.entry_hash)
            .or_else(|| batch_dedup.get(&item.entry_hash))
        {
            return Ok(Placement::Existing(i));
        }
        if item.change.is_none() {
            match stored {
                Ok(found) => {
                    if let Some(&i) = found.get(&item.entry_hash) {
                        return Ok(Placement::Existing(i));
                    }
                }
                Err(e) => {
                    return Err(ApiError::Unavailable(format!(
                        "looking up the entry hash: {e}"
                    )));
                }
            }
        }
        // The entry was validated and canonicalised at submission; its canonical bytes
        // are the tail of the signed message, so the leaf is assembled around them.
        let bytes = Leaf::bytes_from_message(
            &item.message,
            &item.signed.key_id,
            &item.signed.signature,
            logged_at,
        )
        .map_err(|e| ApiError::InvalidEntry(format!("building the leaf: {e}")))?;
        if bytes.len() > u16::MAX as usize {
            return Err(ApiError::TooLarge(format!(
                "the leaf would be {} bytes; an entry bundle holds at most 65535 (C2SP tlog-tiles)",
                bytes.len()
            )));
        }
        let h = leaf_hash(&bytes);
        Ok(Placement::New {
            leaf: bytes,
            leaf_hash: h,
        })
    }
}

enum Placement {
    Existing(u64),
    New { leaf: Vec<u8>, leaf_hash: Hash },
}

fn with_line(e: ApiError, item: &Validated) -> ApiError {
    match item.line {
        Some(l) => e.at_line(l),
        None => e,
    }
}

/// The registry check every company entry must pass (at submission and again when
/// sequenced): its company is registered and its key is registered and not revoked.
pub fn check_key(registry: &Registry, signed: &SignedEntry) -> Result<(), ApiError> {
    let company = signed.entry.company();
    match registry.status(company, &signed.key_id) {
        KeyStatus::Active(_) => Ok(()),
        KeyStatus::UnknownCompany => Err(ApiError::Forbidden {
            code: "unknown_company",
            detail: format!("company {company:?} is not registered on this log"),
        }),
        KeyStatus::UnknownKey => Err(ApiError::Forbidden {
            code: "unknown_key",
            detail: format!(
                "key {} is not registered for company {company:?}",
                signed.key_id
            ),
        }),
        KeyStatus::Revoked(i) => Err(ApiError::Forbidden {
            code: "key_revoked",
            detail: format!(
                "key {} of company {company:?} was revoked at index {i}",
                signed.key_id
            ),
        }),
    }
}

/// Answers a batch that was not (fully) logged: `503` with `why` for every submission
/// that was placed, its own client error for every submission that was refused.
fn answer_unavailable(
    metrics: &Metrics,
    subs: Vec<Submission>,
    placed: Vec<Result<Vec<u64>, ApiError>>,
    why: &str,
) {
    for (s, p) in subs.into_iter().zip(placed) {
        let reply = p.and_then(|_| Err(ApiError::Unavailable(why.to_string())));
        answer(metrics, s, reply);
    }
}

fn answer(metrics: &Metrics, s: Submission, reply: Reply) {
    metrics.observe_latency(s.accepted.elapsed());
    // The submitter may have gone (time-out, disconnect); its entries, if logged, stay
    // logged and a resubmission returns the same index.
    let _ = s.reply.send(reply);
    drop(s.permit);
}

/// Batch-verifies every signature; on failure finds the bad ones one by one.
/// Returns, per failing submission, its first bad item and why.
fn verify_signatures(subs: &[Submission]) -> HashMap<usize, (usize, String)> {
    let (messages, sigs, keys) = unverified(subs.iter().flat_map(|s| &s.items));
    if messages.is_empty() || crate::entry::verify_batch_parallel(&messages, &sigs, &keys).is_ok() {
        return HashMap::new();
    }
    subs.iter()
        .enumerate()
        .filter_map(|(si, s)| first_bad_signature(&s.items).map(|bad| (si, bad)))
        .collect()
}

/// A fresh receipt for leaf `index` (bytes `leaf`) against `published`, with the
/// inclusion of the signing key's registration when the entry is a company's.
pub fn build_receipt(
    store: &dyn Store,
    tile_overlay: Option<&BTreeMap<(u8, u64), Vec<u8>>>,
    published: &Published,
    registry: &Registry,
    index: u64,
    leaf: Vec<u8>,
) -> Result<Receipt, ApiError> {
    let cache = ReceiptCache::default();
    build_receipt_cached(
        store,
        tile_overlay,
        published,
        registry,
        index,
        &leaf,
        None,
        &cache,
    )
}

/// Fewer receipts than this per thread are built on the sequencer's own thread: a
/// receipt costs microseconds, a thread tens of them.
const MIN_RECEIPTS_PER_THREAD: usize = 64;

/// What the caller knows of a leaf already (the sequencer does, from the submission
/// and from placing it), so that building its receipt need neither parse nor hash
/// the leaf again.
#[derive(Debug, Clone, Copy)]
pub struct KnownLeaf<'a> {
    /// Who signed it.
    pub company: &'a str,
    pub key_id: &'a str,
    /// A `company_key` entry (signed by the log; its receipt has no `company_key`).
    pub company_key: bool,
    /// Its RFC 6962 leaf hash.
    pub leaf_hash: Hash,
}

/// The answers to one sequenced batch, built off the sequencer's serial path. It
/// holds everything it reads: the batch's new leaves and tiles, and the checkpoint
/// and registry as of the batch (later batches only extend the stored tiles, which
/// the proofs read a prefix of).
#[must_use = "dropping a ReplyJob leaves its submitters without an answer"]
pub struct ReplyJob {
    subs: Vec<Submission>,
    /// Per submission: the indices of its entries, or why it was refused.
    placed: Vec<Result<Vec<u64>, ApiError>>,
    base: u64,
    new_leaves: Vec<Vec<u8>>,
    new_hashes: Vec<Hash>,
    tiles: BTreeMap<(u8, u64), Vec<u8>>,
    published: Arc<Published>,
    registry: Arc<Registry>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl ReplyJob {
    /// Builds every receipt and answers every submission of the batch.
    pub fn run(self) {
        let ReplyJob {
            subs,
            placed,
            base,
            new_leaves,
            new_hashes,
            tiles,
            published,
            registry,
            store,
            metrics,
        } = self;
        // What the sequencer knows of each new leaf (index base + k), from its
        // submission and its placement: building its receipt need not parse or hash it.
        let mut known: Vec<Option<KnownLeaf<'_>>> = vec![None; new_leaves.len()];
        for (s, p) in subs.iter().zip(&placed) {
            if let Ok(indices) = p {
                for (item, &i) in s.items.iter().zip(indices) {
                    let Some(k) = i.checked_sub(base).map(|k| k as usize) else {
                        continue;
                    };
                    if let (Some(slot @ None), Some(&leaf_hash)) =
                        (known.get_mut(k), new_hashes.get(k))
                    {
                        *slot = Some(KnownLeaf {
                            company: item.signed.entry.company(),
                            key_id: &item.signed.key_id,
                            company_key: item.change.is_some()
                                || item.signed.entry.kind() == "company_key",
                            leaf_hash,
                        });
                    }
                }
            }
        }
        let new = NewLeaves {
            base,
            leaves: &new_leaves,
            known: &known,
        };
        let replies = replies(&*store, &registry, placed, &new, &tiles, &published);
        drop(known);
        for (s, reply) in subs.into_iter().zip(replies) {
            answer(&metrics, s, reply);
        }
    }
}

/// The replies to a batch's submissions: each placed submission's receipts, in
/// order, or why it was refused. The receipts are independent, so they are built
/// on all cores, in contiguous runs so that each run's memo (one per run, all
/// against the same checkpoint) serves neighbouring entries, whose proofs share
/// most hashes.
fn replies(
    store: &dyn Store,
    registry: &Registry,
    placed: Vec<Result<Vec<u64>, ApiError>>,
    new: &NewLeaves<'_>,
    tiles: &BTreeMap<(u8, u64), Vec<u8>>,
    published: &Published,
) -> Vec<Reply> {
    let wanted: Vec<u64> = placed
        .iter()
        .filter_map(|p| p.as_ref().ok())
        .flatten()
        .copied()
        .collect();
    let built = crate::par::map_ranges(wanted.len(), MIN_RECEIPTS_PER_THREAD, |run| {
        let cache = ReceiptCache::default();
        wanted[run]
            .iter()
            .map(|&i| {
                let stored;
                let (leaf, known): (&[u8], _) = match new.get(i) {
                    Some(l) => l,
                    None => {
                        stored = reader::read_leaf(store, i)
                            .map_err(|e| ApiError::Internal(e.to_string()))?;
                        (&stored, None)
                    }
                };
                build_receipt_cached(
                    store,
                    Some(tiles),
                    published,
                    registry,
                    i,
                    leaf,
                    known,
                    &cache,
                )
            })
            .collect::<Vec<_>>()
    });
    let mut built = built.into_iter().flatten();
    placed
        .into_iter()
        .map(|p| {
            p.and_then(|indices| {
                // Take exactly this submission's receipts, even past an error.
                let mine: Vec<Result<Receipt, ApiError>> =
                    built.by_ref().take(indices.len()).collect();
                if mine.len() != indices.len() {
                    return Err(ApiError::Internal("a receipt was not built".into()));
                }
                mine.into_iter().collect()
            })
        })
        .collect()
}

/// A batch's new leaves, at indices `base..`, with what is known of each.
struct NewLeaves<'a> {
    base: u64,
    leaves: &'a [Vec<u8>],
    known: &'a [Option<KnownLeaf<'a>>],
}

impl<'a> NewLeaves<'a> {
    /// Leaf `index`'s bytes and what is known of it, if the batch added it.
    fn get(&self, index: u64) -> Option<(&'a [u8], Option<KnownLeaf<'a>>)> {
        let k = usize::try_from(index.checked_sub(self.base)?).ok()?;
        Some((self.leaves.get(k)?, self.known.get(k).copied().flatten()))
    }
}

/// What the receipts of one batch share: they are all against the same published
/// checkpoint, so a tile read from the store and a company's `company_key` proof
/// (the registration leaf, a whole bundle decoded to get it, and its inclusion proof)
/// are the same for every entry of the batch. Valid for one `published` only.
#[derive(Default)]
pub struct ReceiptCache {
    tiles: RefCell<HashMap<(u8, u64), Vec<u8>>>,
    /// Stored hashes by stored-hash index (Go tlog's numbering). A stored hash is the
    /// root of a complete subtree, so it never changes once the tree has it; receipts
    /// of neighbouring entries share most of their proof hashes.
    hashes: RefCell<HashMap<u64, Hash>>,
    company_keys: RefCell<HashMap<u64, Arc<CompanyKeyProof>>>,
}

/// A [`crate::merkle::HashReader`] over tiles, memoizing every hash it computes in a
/// [`ReceiptCache`] (recomputing a hash from a tile row costs up to 255 SHA-256s).
struct MemoHashes<'a> {
    inner: crate::tiles::TileHashReader<CachedTiles<'a>>,
    memo: &'a RefCell<HashMap<u64, Hash>>,
}

impl crate::merkle::HashReader for MemoHashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, crate::merkle::TreeError> {
        let missing: Vec<u64> = {
            let m = self.memo.borrow();
            indexes
                .iter()
                .copied()
                .filter(|i| !m.contains_key(i))
                .collect()
        };
        if !missing.is_empty() {
            let got = self.inner.read_hashes(&missing)?;
            if got.len() != missing.len() {
                return Err(crate::merkle::TreeError::ReaderCount {
                    want: missing.len(),
                    got: got.len(),
                });
            }
            self.memo.borrow_mut().extend(missing.into_iter().zip(got));
        }
        let m = self.memo.borrow();
        indexes
            .iter()
            .map(|i| {
                m.get(i)
                    .copied()
                    .ok_or(crate::merkle::TreeError::HashNotStored { index: *i })
            })
            .collect()
    }
}

/// [`StoreTiles`] with reads from the store memoized in a [`ReceiptCache`].
struct CachedTiles<'a> {
    inner: StoreTiles<'a>,
    cache: &'a ReceiptCache,
}

impl TileReader for CachedTiles<'_> {
    fn read_tiles(&self, wanted: &[Tile]) -> Result<Vec<Vec<u8>>, crate::merkle::TreeError> {
        let mut memo = self.cache.tiles.borrow_mut();
        let mut out = Vec::with_capacity(wanted.len());
        for t in wanted {
            let need = t.width as usize * 32;
            let key = (t.level, t.index);
            // Tiles only grow (C2SP tlog-tiles), so any memoized version at least
            // `need` bytes long holds the wanted prefix.
            if let Some(b) = memo.get(&key).filter(|b| b.len() >= need) {
                out.push(b[..need].to_vec());
                continue;
            }
            let got = self
                .inner
                .read_tiles(std::slice::from_ref(t))?
                .pop()
                .ok_or_else(|| {
                    crate::merkle::TreeError::Reader(format!("tile {} was not read", t.path()))
                })?;
            memo.insert(key, got.clone());
            out.push(got);
        }
        Ok(out)
    }
}

/// [`build_receipt`] sharing `cache` with the other receipts for `published`.
#[allow(clippy::too_many_arguments)]
pub fn build_receipt_cached(
    store: &dyn Store,
    tile_overlay: Option<&BTreeMap<(u8, u64), Vec<u8>>>,
    published: &Published,
    registry: &Registry,
    index: u64,
    leaf: &[u8],
    known: Option<KnownLeaf<'_>>,
    cache: &ReceiptCache,
) -> Result<Receipt, ApiError> {
    let size = published.checkpoint.size;
    if index >= size {
        return Err(ApiError::Unavailable(format!(
            "entry {index} is not yet covered by a published checkpoint (size {size}); retry"
        )));
    }
    let hashes = || MemoHashes {
        inner: crate::tiles::TileHashReader::new(
            size,
            CachedTiles {
                inner: StoreTiles {
                    store,
                    overlay: tile_overlay,
                },
                cache,
            },
        )
        .with_cache(store.hash_cache()),
        memo: &cache.hashes,
    };
    let proof = crate::merkle::inclusion_proof(index, size, &hashes())
        .map_err(|e| ApiError::Internal(format!("inclusion proof of {index}: {e}")))?;
    let tlog_proof = TlogProof {
        extra: None,
        index,
        proof,
        checkpoint: published.note.as_ref().clone(),
    };
    let tlog_proof = String::from_utf8(tlog_proof.to_bytes())
        .map_err(|e| ApiError::Internal(format!("tlog-proof is not UTF-8: {e}")))?;
    let parsed;
    let leaf_facts = match known {
        Some(k) => k,
        None => {
            parsed = Leaf::parse(leaf).map_err(|e| {
                ApiError::Internal(format!("stored leaf {index} does not parse: {e}"))
            })?;
            KnownLeaf {
                company: parsed.entry.company(),
                key_id: &parsed.key_id,
                company_key: parsed.entry.kind() == "company_key",
                leaf_hash: leaf_hash(leaf),
            }
        }
    };
    let company_key = if leaf_facts.company_key {
        None
    } else {
        match registry.status(leaf_facts.company, leaf_facts.key_id) {
            KeyStatus::Active(rec) => Some(rec.registered_index),
            KeyStatus::Revoked(_) => registry
                .company(leaf_facts.company)
                .and_then(|keys| keys.into_iter().find(|k| k.key_id == leaf_facts.key_id))
                .map(|k| k.registered_index),
            _ => None,
        }
        .map(|reg_index| -> Result<Arc<CompanyKeyProof>, ApiError> {
            if let Some(p) = cache.company_keys.borrow().get(&reg_index) {
                return Ok(p.clone());
            }
            let reg_leaf = reader::read_leaf(store, reg_index)
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            let proof = crate::merkle::inclusion_proof(reg_index, size, &hashes())
                .map_err(|e| ApiError::Internal(format!("inclusion proof of {reg_index}: {e}")))?;
            let p = Arc::new(CompanyKeyProof {
                index: reg_index,
                leaf: B64.encode(reg_leaf),
                proof: proof.iter().map(Hash::to_base64).collect(),
            });
            cache.company_keys.borrow_mut().insert(reg_index, p.clone());
            Ok(p)
        })
        .transpose()?
    };
    Ok(Receipt {
        log: published.checkpoint.origin.clone(),
        index,
        leaf_hash: leaf_facts.leaf_hash.to_hex(),
        leaf: B64.encode(leaf),
        tlog_proof,
        company_key,
    })
}

/// Lifecycle of the sequencer task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Taking submissions.
    Running,
    /// Shutdown requested: finish the batch in hand, refuse the rest with 503.
    Draining,
    /// The HTTP server has stopped: refuse what is left and exit.
    Finished,
}

/// Batching knobs.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    pub max_entries: usize,
    pub delay: Duration,
}

fn refuse(metrics: &Metrics, s: Submission) {
    answer(
        metrics,
        s,
        Err(ApiError::Unavailable(
            "the log is shutting down; nothing of this submission was logged".into(),
        )),
    );
}

/// The sequencer task: collects batches from `rx` and processes them on a blocking
/// thread, one at a time, until `phase` becomes `Finished` or every sender is gone.
pub async fn run(
    core: Core,
    mut rx: mpsc::UnboundedReceiver<Submission>,
    mut phase: watch::Receiver<Phase>,
    cfg: BatchConfig,
) {
    let metrics = core.shared.metrics.clone();
    let mut core = Some(core);
    // Batches being answered while later ones are sequenced.
    let mut replying: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    loop {
        let first = tokio::select! {
            s = rx.recv() => match s {
                Some(s) => s,
                None => break,
            },
            _ = phase.wait_for(|p| *p == Phase::Finished) => break,
        };
        if *phase.borrow() != Phase::Running {
            refuse(&metrics, first);
            continue;
        }
        // The window counts from when the oldest submission was accepted, not from now:
        // submissions that queued while the previous batch was sequenced have waited
        // already, and waiting a full window more would add it to every latency.
        let deadline = tokio::time::Instant::from_std(first.accepted) + cfg.delay;
        let mut n = first.items.len();
        let mut subs = vec![first];
        while n < cfg.max_entries {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(s)) => {
                    n += s.items.len();
                    subs.push(s);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let Some(mut c) = core.take() else { break };
        match tokio::task::spawn_blocking(move || {
            let job = c.process(subs);
            (c, job)
        })
        .await
        {
            Ok((c, job)) => {
                core = Some(c);
                if let Some(job) = job {
                    replying.retain(|h| !h.is_finished());
                    replying.push(tokio::task::spawn_blocking(move || job.run()));
                }
            }
            Err(e) => {
                // A panic in the core is a bug; stop sequencing (everything
                // published is durable) and let the submitters time out with 503s.
                tracing::error!("sequencer stopped: {e}");
                break;
            }
        }
    }
    rx.close();
    while let Ok(s) = rx.try_recv() {
        refuse(&metrics, s);
    }
    // Every batch sequenced is answered before the sequencer reports it has stopped.
    for h in replying {
        if let Err(e) = h.await {
            tracing::error!("answering a sequenced batch failed: {e}");
        }
    }
}
