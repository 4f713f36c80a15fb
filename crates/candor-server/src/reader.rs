//! Reading the stored tree: a `tiles::TileReader` over the store (optionally overlaid
//! with tiles the sequencer just wrote), and helpers for leaves and proofs.
//!
//! The store keeps each tile's latest contents; a tile of an older tree size is a prefix
//! of it (C2SP tlog-tiles: tiles only grow until full), so reads take the prefix.

use std::collections::BTreeMap;

use candor_core::hash::Hash;
use candor_core::merkle::{self, TreeError};
use candor_core::tiles::{self, Tile, TileHashReader, TileReader};
use candor_store::{Store, TileId};

/// A tile reader over the store, with an optional in-memory overlay of fresher tiles.
pub struct StoreTiles<'a> {
    pub store: &'a dyn Store,
    pub overlay: Option<&'a BTreeMap<(u8, u64), Vec<u8>>>,
}

fn reader_error(msg: String) -> TreeError {
    TreeError::Reader(msg)
}

impl TileReader for StoreTiles<'_> {
    fn read_tiles(&self, wanted: &[Tile]) -> Result<Vec<Vec<u8>>, TreeError> {
        let mut out = Vec::with_capacity(wanted.len());
        for t in wanted {
            let need = t.width as usize * 32;
            if let Some(b) = self
                .overlay
                .and_then(|o| o.get(&(t.level, t.index)))
                .filter(|b| b.len() >= need)
            {
                out.push(b[..need].to_vec());
                continue;
            }
            let bytes = self
                .store
                .read_tile(TileId {
                    level: t.level,
                    index: t.index,
                })
                .map_err(|e| reader_error(format!("reading tile {}: {e}", t.path())))?
                .ok_or_else(|| reader_error(format!("tile {} is not stored", t.path())))?;
            if bytes.len() < need {
                return Err(reader_error(format!(
                    "stored tile {} has {} bytes, fewer than the {need} requested",
                    t.path(),
                    bytes.len()
                )));
            }
            out.push(bytes[..need].to_vec());
        }
        Ok(out)
    }
}

/// A stored-hash reader for the tree of `size` leaves.
pub fn hash_reader<'a>(tiles: StoreTiles<'a>, size: u64) -> TileHashReader<StoreTiles<'a>> {
    let cache = tiles.store.hash_cache();
    TileHashReader::new(size, tiles).with_cache(cache)
}

/// Inclusion proof of leaf `index` in the tree of `size` (RFC 9162 §2.1.3.1).
pub fn inclusion_proof(
    tiles: StoreTiles<'_>,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, TreeError> {
    let r = hash_reader(tiles, size);
    merkle::inclusion_proof(index, size, &r)
}

/// Consistency proof from `old` to `new` (RFC 9162 §2.1.4.1).
pub fn consistency_proof(
    tiles: StoreTiles<'_>,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, TreeError> {
    let r = hash_reader(tiles, new);
    merkle::consistency_proof(old, new, &r)
}

/// MTH of the first `size` leaves of the stored tree.
pub fn tree_hash(tiles: StoreTiles<'_>, size: u64) -> Result<Hash, TreeError> {
    let r = hash_reader(tiles, size);
    merkle::tree_hash(size, &r)
}

/// Why a leaf could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LeafError {
    #[error("reading entry bundle {index}: {detail}")]
    Store { index: u64, detail: String },
    #[error("entry bundle {0} is not stored")]
    Missing(u64),
    #[error("entry bundle {index} is corrupt: {detail}")]
    Corrupt { index: u64, detail: String },
    #[error("entry bundle {bundle} holds no entry {index}")]
    Short { bundle: u64, index: u64 },
}

/// The leaf bytes at `index`, from the stored bundles (or `overlay`, fresher).
pub fn read_leaf(store: &dyn Store, index: u64) -> Result<Vec<u8>, LeafError> {
    let bundle = index / tiles::TILE_WIDTH;
    let bytes = store
        .read_bundle(bundle)
        .map_err(|e| LeafError::Store {
            index: bundle,
            detail: e.to_string(),
        })?
        .ok_or(LeafError::Missing(bundle))?;
    let entries = tiles::bundle_ranges(&bytes).map_err(|e| LeafError::Corrupt {
        index: bundle,
        detail: e.to_string(),
    })?;
    let pos = (index % tiles::TILE_WIDTH) as usize;
    match entries.get(pos) {
        Some(r) => Ok(bytes[r.clone()].to_vec()),
        None => Err(LeafError::Short { bundle, index }),
    }
}
