//! The core append step: given the store, the tree's right edge, the registry and a
//! batch of checked submissions, it deduplicates, builds the leaves, the new tiles and
//! bundles and the index rows, and commits all of it with ONE [`Store::append`].
//!
//! A submission is all-or-nothing: its entries are placed in a [`PendingBatch`] of
//! their own, which joins the batch's only if every entry passed.

use std::collections::{BTreeMap, HashMap};

use super::SequencerError;
use super::checks::{check_key, with_line};
use crate::edge::{Edge, EdgeError};
use crate::error::ApiError;
use crate::registry::Registry;
use crate::state::{Published, Validated};
use candor_core::entry::Leaf;
use candor_core::hash::{Hash, leaf_hash};
use candor_store::{Batch, Store, StoreError, TreeState};

/// A leaf the batch adds.
#[derive(Debug, Clone)]
pub(super) struct NewLeaf {
    pub bytes: Vec<u8>,
    pub leaf_hash: Hash,
    /// The dedup key.
    pub entry_hash: Hash,
}

/// Entries placed but not yet stored: a whole batch's, or one submission's on trial.
/// Its leaves get consecutive indices from `base`.
#[derive(Debug, Clone)]
pub(super) struct PendingBatch {
    base: u64,
    leaves: Vec<NewLeaf>,
    /// Entry hash -> index, for the leaves above (dedup within the batch).
    dedup: HashMap<Hash, u64>,
    /// Metadata rows (registry records) to store with the leaves.
    meta: Vec<(String, Vec<u8>)>,
    /// The registry after this batch's changes, if it made any.
    registry: Option<Registry>,
    /// Entries answered with the index of an identical, earlier entry.
    duplicates: u64,
}

impl PendingBatch {
    pub(super) fn new(base: u64) -> PendingBatch {
        PendingBatch {
            base,
            leaves: Vec::new(),
            dedup: HashMap::new(),
            meta: Vec::new(),
            registry: None,
            duplicates: 0,
        }
    }

    /// The index the next new leaf gets.
    fn next_index(&self) -> u64 {
        self.base + self.leaves.len() as u64
    }

    /// The index of a new leaf of this batch holding the entry `entry_hash`.
    fn find(&self, entry_hash: &Hash) -> Option<u64> {
        self.dedup.get(entry_hash).copied()
    }

    fn push(&mut self, leaf: NewLeaf) -> u64 {
        let index = self.next_index();
        self.dedup.insert(leaf.entry_hash, index);
        self.leaves.push(leaf);
        index
    }

    /// Takes in a submission's entries, placed from this batch's next index on.
    fn absorb(&mut self, other: PendingBatch) {
        debug_assert_eq!(other.base, self.next_index());
        self.leaves.extend(other.leaves);
        self.dedup.extend(other.dedup);
        self.meta.extend(other.meta);
        if other.registry.is_some() {
            self.registry = other.registry;
        }
        self.duplicates += other.duplicates;
    }

    pub(super) fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }
}

/// Where one entry goes.
enum Placement {
    /// An identical entry is (or is about to be) logged at this index.
    Existing(u64),
    New(NewLeaf),
}

/// The outcome of one append step.
pub(super) struct Appended {
    /// The index of the batch's first new leaf (the tree size before it).
    pub base: u64,
    /// Per submission: the indices of its entries, or why it was refused.
    pub placed: Vec<Result<Vec<u64>, ApiError>>,
    /// Entries answered with an earlier entry's index.
    pub duplicates: u64,
    /// What was committed; `Ok(None)` when the batch added no leaf (so nothing was
    /// written).
    pub committed: Result<Option<Committed>, SequencerError>,
}

/// A batch made durable by one [`Store::append`].
pub(super) struct Committed {
    /// The tree's right edge after the batch.
    pub edge: Edge,
    /// The registry after the batch, if it changed.
    pub registry: Option<Registry>,
    /// The new leaves, at indices `base..`, and their hashes.
    pub leaves: Vec<Vec<u8>>,
    pub hashes: Vec<Hash>,
    /// Every hash tile the batch changed (receipts read the new ones from here).
    pub tiles: BTreeMap<(u8, u64), Vec<u8>>,
    /// The checkpoint committed with the batch, if one was signed for it.
    pub checkpoint: Option<Published>,
}

/// What the append step reads.
pub(super) struct AppendStep<'a> {
    pub store: &'a dyn Store,
    pub edge: &'a Edge,
    pub registry: &'a Registry,
    /// The `logged_at` of every new leaf.
    pub logged_at: &'a str,
}

impl AppendStep<'_> {
    /// Places every submission of `subs` not in `refused` (index -> why) and commits
    /// the new leaves with one [`Store::append`]. `sign` is called with the new tree
    /// state; a checkpoint it returns is committed in the same append.
    pub(super) fn run(
        &self,
        subs: &[&[Validated]],
        mut refused: HashMap<usize, ApiError>,
        sign: impl FnOnce(TreeState) -> Result<Option<Published>, SequencerError>,
    ) -> Appended {
        let stored = self.lookup_stored(subs);
        let base = self.edge.size();
        let mut batch = PendingBatch::new(base);
        let mut placed = Vec::with_capacity(subs.len());
        for (si, items) in subs.iter().enumerate() {
            if let Some(e) = refused.remove(&si) {
                placed.push(Err(e));
                continue;
            }
            match self.place_submission(items, &batch, &stored) {
                Ok((trial, indices)) => {
                    batch.absorb(trial);
                    placed.push(Ok(indices));
                }
                Err(e) => placed.push(Err(e)),
            }
        }
        let duplicates = batch.duplicates;
        let committed = if batch.is_empty() {
            Ok(None)
        } else {
            self.commit(batch, sign).map(Some)
        };
        Appended {
            base,
            placed,
            duplicates,
            committed,
        }
    }

    /// Places one submission's entries after those of `batch`: all of them, or the
    /// error of the first that cannot be logged.
    fn place_submission(
        &self,
        items: &[Validated],
        batch: &PendingBatch,
        stored: &Result<HashMap<Hash, u64>, StoreError>,
    ) -> Result<(PendingBatch, Vec<u64>), ApiError> {
        let mut trial = PendingBatch::new(batch.next_index());
        let mut indices = Vec::with_capacity(items.len());
        for item in items {
            let registry = trial
                .registry
                .as_ref()
                .or(batch.registry.as_ref())
                .unwrap_or(self.registry);
            let placement = self
                .place(item, registry, stored, batch, &trial)
                .map_err(|e| with_line(e, item))?;
            match placement {
                Placement::Existing(i) => {
                    trial.duplicates += 1;
                    indices.push(i);
                }
                Placement::New(leaf) => {
                    if let Some(change) = &item.change {
                        let mut next = registry.clone();
                        let kv = next
                            .apply(change, trial.next_index())
                            .map_err(|e| with_line(ApiError::Conflict(e.to_string()), item))?;
                        trial.meta.push(kv);
                        trial.registry = Some(next);
                    }
                    indices.push(trial.push(leaf));
                }
            }
        }
        Ok((trial, indices))
    }

    /// The stored index of every entry hash of the batch that the log holds already,
    /// looked up in one snapshot of the store (the sequencer is its only writer).
    /// `company_key` entries made by the log are never de-duplicated, so skipped.
    fn lookup_stored(&self, subs: &[&[Validated]]) -> Result<HashMap<Hash, u64>, StoreError> {
        let hashes: Vec<Hash> = subs
            .iter()
            .flat_map(|s| s.iter())
            .filter(|it| it.change.is_none())
            .map(|it| it.entry_hash)
            .collect();
        let found = self.store.lookup_entries(&hashes)?;
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
        stored: &Result<HashMap<Hash, u64>, StoreError>,
        batch: &PendingBatch,
        trial: &PendingBatch,
    ) -> Result<Placement, ApiError> {
        match &item.change {
            None => check_key(registry, &item.signed)?,
            Some(change) => registry
                .check(change)
                .map_err(|e| ApiError::Conflict(e.to_string()))?,
        }
        if let Some(i) = trial
            .find(&item.entry_hash)
            .or_else(|| batch.find(&item.entry_hash))
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
            self.logged_at,
        )
        .map_err(|e| ApiError::InvalidEntry(format!("building the leaf: {e}")))?;
        if bytes.len() > u16::MAX as usize {
            return Err(ApiError::TooLarge(format!(
                "the leaf would be {} bytes; an entry bundle holds at most 65535 (C2SP tlog-tiles)",
                bytes.len()
            )));
        }
        let leaf_hash = leaf_hash(&bytes);
        Ok(Placement::New(NewLeaf {
            bytes,
            leaf_hash,
            entry_hash: item.entry_hash,
        }))
    }

    /// Builds the tiles, bundles and index rows of `batch` and commits them, with the
    /// checkpoint `sign` returns, in one [`Store::append`].
    fn commit(
        &self,
        batch: PendingBatch,
        sign: impl FnOnce(TreeState) -> Result<Option<Published>, SequencerError>,
    ) -> Result<Committed, SequencerError> {
        let PendingBatch {
            base,
            leaves,
            meta,
            registry,
            ..
        } = batch;
        let mut bytes = Vec::with_capacity(leaves.len());
        let mut hashes = Vec::with_capacity(leaves.len());
        let mut leaf_index = Vec::with_capacity(leaves.len());
        let mut entry_index = Vec::with_capacity(leaves.len());
        for (i, leaf) in (base..).zip(leaves) {
            leaf_index.push((leaf.leaf_hash, i));
            entry_index.push((leaf.entry_hash, i));
            hashes.push(leaf.leaf_hash);
            bytes.push(leaf.bytes);
        }
        let mut edge = self.edge.clone();
        let mut written = edge
            .append_hashed(&bytes, &hashes)
            .map_err(|e: EdgeError| SequencerError::Edge(e))?;
        let new_state = TreeState {
            size: edge.size(),
            root: edge.root(),
        };
        let checkpoint = sign(new_state)?;
        let store_batch = Batch {
            old_size: base,
            new_state,
            tiles: Edge::tile_list(&written),
            // Moved, not copied: once the batch is durable the store serves these
            // bundles, so the receipts read leaves from it.
            bundles: std::mem::take(&mut written.bundles).into_iter().collect(),
            leaf_index,
            entry_index,
            meta,
            checkpoint: checkpoint.as_ref().map(|p| p.note.to_vec()),
        };
        self.store
            .append(&store_batch)
            .map_err(|source| SequencerError::Append {
                entries: bytes.len(),
                source,
            })?;
        Ok(Committed {
            edge,
            registry,
            leaves: bytes,
            hashes,
            tiles: written.tiles,
            checkpoint,
        })
    }
}
