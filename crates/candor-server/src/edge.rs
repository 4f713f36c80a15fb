//! The right edge of the tree, kept by the sequencer: the contents of the rightmost
//! (partial) hash tile at every tile level and of the rightmost entry bundle.
//!
//! Everything to the left is immutable (C2SP tlog-tiles: full tiles never change), so
//! appending leaves only ever rewrites these tiles plus the tiles that become full.
//! The tree root follows from the edge alone: the tree of size n is the sequence of
//! perfect subtrees given by the binary decomposition of n (RFC 9162 §2.1.1), and
//! those are exactly the power-of-two runs inside each level's partial tile.

use std::collections::BTreeMap;

use candor_core::hash::{Hash, empty_root, leaf_hash, node_hash};
use candor_core::merkle::root_from_leaf_hashes;
use candor_core::tiles::{self, TILE_HEIGHT, TILE_WIDTH};
use candor_store::{Store, TileId, TreeState};

/// Why the stored state cannot be trusted (the log then refuses to start).
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("reading the store: {0}")]
    Store(String),
    #[error(
        "stored tile {level}/{index} is {got} bytes but a tree of size {size} needs {want}: the store is torn"
    )]
    TileLength {
        level: u8,
        index: u64,
        size: u64,
        got: usize,
        want: usize,
    },
    #[error("tile {level}/{index} is missing from the store for tree size {size}")]
    MissingTile { level: u8, index: u64, size: u64 },
    #[error("entry bundle {index} is missing from the store for tree size {size}")]
    MissingBundle { index: u64, size: u64 },
    #[error(
        "entry bundle {index} holds {got} entries but a tree of size {size} needs {want}: the store is torn"
    )]
    BundleLength {
        index: u64,
        size: u64,
        got: usize,
        want: usize,
    },
    #[error(
        "entry {index} in its bundle does not hash to the leaf hash in tile 0: the store is torn"
    )]
    BundleMismatch { index: u64 },
    #[error(
        "full tile {level}/{index} does not hash to its parent hash in tile level {}: the store is torn",
        level + 1
    )]
    TileMismatch { level: u8, index: u64 },
    #[error("corrupt data in the store: {0}")]
    Corrupt(String),
    #[error("an entry of {0} bytes cannot be stored in an entry bundle (limit 65535)")]
    EntryTooLarge(usize),
    #[error("{leaves} leaves were appended with {hashes} leaf hashes")]
    HashCount { leaves: usize, hashes: usize },
}

/// New tile and bundle contents produced by one append.
#[derive(Debug, Default, Clone)]
pub struct Written {
    /// Latest contents of every hash tile created or changed.
    pub tiles: BTreeMap<(u8, u64), Vec<u8>>,
    /// Latest contents of every bundle created or changed.
    pub bundles: BTreeMap<u64, Vec<u8>>,
}

/// The right edge of a tree of `size` leaves.
#[derive(Debug, Clone)]
pub struct Edge {
    size: u64,
    /// `levels[l]` = the hashes of the rightmost partial tile at tile level l
    /// (each the root of a perfect subtree of 256^l leaves), fewer than 256.
    levels: Vec<Vec<Hash>>,
    /// Entries of the rightmost partial bundle, fewer than 256.
    bundle: Vec<Vec<u8>>,
}

const W: usize = TILE_WIDTH as usize;

fn tile_bytes(hashes: &[Hash]) -> Vec<u8> {
    hashes.iter().flat_map(|h| h.0).collect()
}

impl Edge {
    /// The empty tree.
    pub fn empty() -> Edge {
        Edge {
            size: 0,
            levels: Vec::new(),
            bundle: Vec::new(),
        }
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Loads the edge of the stored tree of `state.size` leaves and checks it: tile and
    /// bundle lengths, bundle entries against level-0 hashes, the last full tile of each
    /// level against its parent hash, and the recomputed root against `state.root`.
    pub fn load(store: &dyn Store, state: &TreeState) -> Result<Edge, EdgeError> {
        let size = state.size;
        let mut levels = Vec::new();
        let mut level: u32 = 0;
        loop {
            let count = size >> (TILE_HEIGHT * level);
            if count == 0 {
                break;
            }
            let width = (count % TILE_WIDTH) as usize;
            let index = count / TILE_WIDTH;
            let mut hashes = Vec::new();
            if width > 0 {
                hashes = read_tile(store, level as u8, index, width, size)?;
            }
            levels.push(hashes);
            level += 1;
        }
        // Cross-check the last full tile of each level against its parent hash, which
        // is either in the parent level's partial tile or in a full parent tile.
        for l in 0..levels.len().saturating_sub(1) {
            let count = size >> (TILE_HEIGHT * l as u32);
            let full = count / TILE_WIDTH;
            if full == 0 {
                continue;
            }
            let last_full = full - 1;
            let hashes = read_tile(store, l as u8, last_full, W, size)?;
            let parent_count = full; // hashes at level l+1
            let parent_width = (parent_count % TILE_WIDTH) as usize;
            let parent_pos = (last_full % TILE_WIDTH) as usize;
            let parent = if parent_width > 0 {
                levels[l + 1].get(parent_pos).copied()
            } else {
                let p = read_tile(store, l as u8 + 1, last_full / TILE_WIDTH, W, size)?;
                p.get(parent_pos).copied()
            };
            if parent != Some(root_from_leaf_hashes(&hashes)) {
                return Err(EdgeError::TileMismatch {
                    level: l as u8,
                    index: last_full,
                });
            }
        }
        let bundle_width = (size % TILE_WIDTH) as usize;
        let mut bundle = Vec::new();
        if bundle_width > 0 {
            let index = size / TILE_WIDTH;
            let bytes = store
                .read_bundle(index)
                .map_err(|e| EdgeError::Store(e.to_string()))?
                .ok_or(EdgeError::MissingBundle { index, size })?;
            let entries =
                tiles::decode_bundle(&bytes).map_err(|e| EdgeError::Corrupt(e.to_string()))?;
            if entries.len() != bundle_width {
                return Err(EdgeError::BundleLength {
                    index,
                    size,
                    got: entries.len(),
                    want: bundle_width,
                });
            }
            for (i, e) in entries.iter().enumerate() {
                if levels.first().and_then(|l| l.get(i)) != Some(&leaf_hash(e)) {
                    return Err(EdgeError::BundleMismatch {
                        index: index * TILE_WIDTH + i as u64,
                    });
                }
            }
            bundle = entries;
        }
        let edge = Edge {
            size,
            levels,
            bundle,
        };
        let root = edge.root();
        if root != state.root {
            return Err(EdgeError::Corrupt(format!(
                "the stored tiles hash to root {} but the stored tree state of size {size} says {}",
                root.to_base64(),
                state.root.to_base64()
            )));
        }
        Ok(edge)
    }

    /// MTH of the whole tree (RFC 9162 §2.1.1), from the edge alone.
    pub fn root(&self) -> Hash {
        // Perfect subtree roots, largest (leftmost) first.
        let mut perfect = Vec::new();
        for hashes in self.levels.iter().rev() {
            let mut start = 0;
            let mut rem = hashes.len();
            while rem > 0 {
                let k = 1usize << (usize::BITS - 1 - rem.leading_zeros());
                perfect.push(root_from_leaf_hashes(&hashes[start..start + k]));
                start += k;
                rem -= k;
            }
        }
        let Some(mut acc) = perfect.pop() else {
            return empty_root();
        };
        while let Some(left) = perfect.pop() {
            acc = node_hash(&left, &acc);
        }
        acc
    }

    /// Appends `leaves` (leaf bytes), returning the tiles and bundles that changed.
    pub fn append(&mut self, leaves: &[Vec<u8>]) -> Result<Written, EdgeError> {
        let hashes: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l)).collect();
        self.append_hashed(leaves, &hashes)
    }

    /// [`Edge::append`] given each leaf's RFC 6962 leaf hash, for a caller that has
    /// computed them already (the sequencer, for its hash index and receipts).
    pub fn append_hashed(
        &mut self,
        leaves: &[Vec<u8>],
        hashes: &[Hash],
    ) -> Result<Written, EdgeError> {
        let mut out = Written::default();
        if leaves.len() != hashes.len() {
            return Err(EdgeError::HashCount {
                leaves: leaves.len(),
                hashes: hashes.len(),
            });
        }
        if leaves.is_empty() {
            return Ok(out);
        }
        let mut touched = vec![false; self.levels.len()];
        for (leaf, &leaf_hash) in leaves.iter().zip(hashes) {
            if leaf.len() > u16::MAX as usize {
                return Err(EdgeError::EntryTooLarge(leaf.len()));
            }
            self.size += 1;
            // Bundle.
            self.bundle.push(leaf.clone());
            if self.bundle.len() == W {
                let refs: Vec<&[u8]> = self.bundle.iter().map(Vec::as_slice).collect();
                let bytes =
                    tiles::encode_bundle(&refs).map_err(|e| EdgeError::Corrupt(e.to_string()))?;
                out.bundles.insert((self.size - 1) / TILE_WIDTH, bytes);
                self.bundle.clear();
            }
            // Hash tiles: push the leaf hash, carry full tiles upward.
            let mut h = leaf_hash;
            let mut l = 0usize;
            loop {
                if self.levels.len() <= l {
                    self.levels.push(Vec::new());
                    touched.push(false);
                }
                self.levels[l].push(h);
                touched[l] = true;
                if self.levels[l].len() < W {
                    break;
                }
                let count = self.size >> (TILE_HEIGHT * l as u32);
                out.tiles.insert(
                    (l as u8, (count - 1) / TILE_WIDTH),
                    tile_bytes(&self.levels[l]),
                );
                h = root_from_leaf_hashes(&self.levels[l]);
                self.levels[l].clear();
                l += 1;
            }
        }
        for (l, hashes) in self.levels.iter().enumerate() {
            if touched[l] && !hashes.is_empty() {
                let count = self.size >> (TILE_HEIGHT * l as u32);
                out.tiles
                    .insert((l as u8, count / TILE_WIDTH), tile_bytes(hashes));
            }
        }
        if !self.bundle.is_empty() {
            let refs: Vec<&[u8]> = self.bundle.iter().map(Vec::as_slice).collect();
            let bytes =
                tiles::encode_bundle(&refs).map_err(|e| EdgeError::Corrupt(e.to_string()))?;
            out.bundles.insert(self.size / TILE_WIDTH, bytes);
        }
        Ok(out)
    }

    /// The store's form of `written` tiles.
    pub fn tile_list(written: &Written) -> Vec<(TileId, Vec<u8>)> {
        written
            .tiles
            .iter()
            .map(|(&(level, index), bytes)| (TileId { level, index }, bytes.clone()))
            .collect()
    }
}

fn read_tile(
    store: &dyn Store,
    level: u8,
    index: u64,
    width: usize,
    size: u64,
) -> Result<Vec<Hash>, EdgeError> {
    let bytes = store
        .read_tile(TileId { level, index })
        .map_err(|e| EdgeError::Store(e.to_string()))?
        .ok_or(EdgeError::MissingTile { level, index, size })?;
    if bytes.len() != width * 32 {
        return Err(EdgeError::TileLength {
            level,
            index,
            size,
            got: bytes.len(),
            want: width * 32,
        });
    }
    Ok(bytes
        .chunks_exact(32)
        .filter_map(Hash::from_slice)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_core::merkle::MemoryTree;

    #[test]
    fn leaves_and_hashes_must_pair_up() {
        let mut edge = Edge::empty();
        let leaves = vec![b"a".to_vec(), b"b".to_vec()];
        let one_hash = [leaf_hash(b"a")];
        assert!(matches!(
            edge.append_hashed(&leaves, &one_hash),
            Err(EdgeError::HashCount {
                leaves: 2,
                hashes: 1
            })
        ));
        assert_eq!(edge.size(), 0, "a refused append leaves the edge as it was");
        let hashes = [leaf_hash(b"a"), leaf_hash(b"b")];
        assert!(edge.append_hashed(&leaves, &hashes).is_ok());
        let mut plain = Edge::empty();
        assert!(plain.append(&leaves).is_ok());
        assert_eq!(edge.root(), plain.root());
    }

    #[test]
    fn root_and_tiles_match_memory_tree_across_tile_boundaries() {
        let mut edge = Edge::empty();
        let mut mem = MemoryTree::new();
        assert_eq!(edge.root(), mem.root());
        let mut all_tiles: BTreeMap<(u8, u64), Vec<u8>> = BTreeMap::new();
        let mut n = 0u64;
        // Uneven batch sizes crossing 256 and 65536 boundaries.
        for batch in [1usize, 2, 253, 1, 300, 4000, 60_000, 1_500] {
            let leaves: Vec<Vec<u8>> = (0..batch)
                .map(|i| format!("leaf {}", n + i as u64).into_bytes())
                .collect();
            for l in &leaves {
                mem.append(leaf_hash(l));
            }
            n += batch as u64;
            let w = edge.append(&leaves).unwrap();
            all_tiles.extend(w.tiles);
            assert_eq!(edge.size(), n);
            assert_eq!(edge.root(), mem.root(), "size {n}");
        }
        // Every tile the tree has equals what tiles::read_tile_data computes.
        for tile in tiles::tiles_for_size(n) {
            let want = tiles::read_tile_data(tile, &mem).unwrap();
            let got = &all_tiles[&(tile.level, tile.index)];
            assert_eq!(&got[..want.len()], &want[..], "tile {}", tile.path());
            assert_eq!(got.len(), want.len(), "tile {}", tile.path());
        }
    }
}
