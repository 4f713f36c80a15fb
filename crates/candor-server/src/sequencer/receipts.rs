//! Receipts (spec/receipts.md §1): building them against a published checkpoint, with
//! a per-batch cache of tiles, stored hashes and `company_key` proofs, and answering a
//! sequenced batch's submitters off the sequencer's serial path ([`ReplyJob`]).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use base64::Engine as _;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::reader::{self, StoreTiles};
use crate::registry::{KeyStatus, Registry};
use crate::state::{CompanyKeyProof, Published, Receipt, Reply, Submission};
use candor_core::entry::Leaf;
use candor_core::hash::{Hash, leaf_hash};
use candor_core::tiles::{Tile, TileReader};
use candor_core::tlog_proof::TlogProof;
use candor_store::Store;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

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
    pub(super) subs: Vec<Submission>,
    /// Per submission: the indices of its entries, or why it was refused.
    pub(super) placed: Vec<Result<Vec<u64>, ApiError>>,
    pub(super) base: u64,
    pub(super) new_leaves: Vec<Vec<u8>>,
    pub(super) new_hashes: Vec<Hash>,
    pub(super) tiles: BTreeMap<(u8, u64), Vec<u8>>,
    pub(super) published: Arc<Published>,
    pub(super) registry: Arc<Registry>,
    pub(super) store: Arc<dyn Store>,
    pub(super) metrics: Arc<Metrics>,
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
    let built = candor_core::par::map_ranges(wanted.len(), MIN_RECEIPTS_PER_THREAD, |run| {
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

/// A [`candor_core::merkle::HashReader`] over tiles, memoizing every hash it computes in a
/// [`ReceiptCache`] (recomputing a hash from a tile row costs up to 255 SHA-256s).
struct MemoHashes<'a> {
    inner: candor_core::tiles::TileHashReader<CachedTiles<'a>>,
    memo: &'a RefCell<HashMap<u64, Hash>>,
}

impl candor_core::merkle::HashReader for MemoHashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, candor_core::merkle::TreeError> {
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
                return Err(candor_core::merkle::TreeError::ReaderCount {
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
                    .ok_or(candor_core::merkle::TreeError::HashNotStored { index: *i })
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
    fn read_tiles(&self, wanted: &[Tile]) -> Result<Vec<Vec<u8>>, candor_core::merkle::TreeError> {
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
                    candor_core::merkle::TreeError::Reader(format!(
                        "tile {} was not read",
                        t.path()
                    ))
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
        inner: candor_core::tiles::TileHashReader::new(
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
    let proof = candor_core::merkle::inclusion_proof(index, size, &hashes())
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
            let proof = candor_core::merkle::inclusion_proof(reg_index, size, &hashes())
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

/// Answers a batch that was not (fully) logged: `503` with `why` for every submission
/// that was placed, its own client error for every submission that was refused.
pub(super) fn answer_unavailable(
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

pub(super) fn answer(metrics: &Metrics, s: Submission, reply: Reply) {
    metrics.observe_latency(s.accepted.elapsed());
    // The submitter may have gone (time-out, disconnect); its entries, if logged, stay
    // logged and a resubmission returns the same index.
    let _ = s.reply.send(reply);
    drop(s.permit);
}
