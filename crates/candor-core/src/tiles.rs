//! C2SP tlog-tiles: hash tiles, entry bundles, their paths, and hash readers
//! that serve stored hashes out of tiles.
//!
//! A hash tile at level `L` with index `N` holds up to 256 consecutive stored
//! hashes at tree level `8·L`: MTH(D[(N·256 + i)·256^L : (N·256 + i + 1)·256^L])
//! for i in 0..width (C2SP tlog-tiles, "Merkle Tree"). The tree levels between
//! `8·L` and `8·L + 8` are not stored; they are recomputed from the tile's row,
//! as Go's `sumdb/tlog` does. See `spec/tiles.md`.

use crate::hash::{HASH_SIZE, Hash, node_hash};
use crate::merkle::{
    HashReader, TreeError, checked_stored_hash_index, split_stored_hash_index, stored_hash_count,
    tree_hash_indexes,
};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::ops::Range;

/// Tree levels covered by one tile (tlog-tiles fixes this at 8).
pub const TILE_HEIGHT: u32 = 8;
/// Hashes in a full tile, and entries in a full bundle.
pub const TILE_WIDTH: u64 = 256;
/// Highest tile level a path may name (tlog-tiles: "between 0 and 63").
pub const MAX_TILE_LEVEL: u8 = 63;
/// Largest entry an entry bundle can hold (uint16 length prefix).
pub const MAX_BUNDLE_ENTRY: usize = 65535;

/// Errors from tile and bundle paths and contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TileError {
    /// The path contains a byte outside ASCII.
    #[error("tile path is not ASCII")]
    NonAscii,
    /// The path starts with '/'; paths are relative to the log prefix.
    #[error("tile path must not start with '/'")]
    LeadingSlash,
    /// The path does not start with "tile/".
    #[error("not a tile path: must start with \"tile/\"")]
    NotTilePath,
    /// The level is not a decimal 0..=63 without leading zeros.
    #[error("bad tile level {0:?}: must be a decimal integer 0..=63 without leading zeros")]
    BadLevel(String),
    /// An index element is malformed.
    #[error("bad tile index element {element:?}: {reason}")]
    BadIndexElement {
        element: String,
        reason: &'static str,
    },
    /// The index is written with a superfluous leading "x000/" group.
    #[error("tile index has a leading zero group; the encoding is not canonical")]
    NonCanonicalIndex,
    /// The index does not fit in 64 bits.
    #[error("tile index overflows 64 bits")]
    IndexOverflow,
    /// The width after ".p/" is not a decimal 1..=255 without leading zeros.
    #[error(
        "bad partial tile width {0:?}: must be a decimal integer 1..=255 without leading zeros"
    )]
    BadWidth(String),
    /// A tile or bundle width outside 1..=256.
    #[error("width {0} is out of range 1..=256")]
    WidthOutOfRange(u64),
    /// A tile level outside 0..=63.
    #[error("tile level {0} is out of range 0..=63")]
    LevelOutOfRange(u64),
    /// Tile data has the wrong length for its width.
    #[error("tile data is {got} bytes, expected {want} ({width} hashes)")]
    BadTileDataLength { width: u16, want: usize, got: usize },
    /// A stored hash is not inside the given tile.
    #[error("stored hash {index} is not in tile {tile}")]
    HashNotInTile { index: u64, tile: String },
    /// A bundle entry is longer than a uint16 length prefix allows.
    #[error("bundle entry {index} is {len} bytes, more than {MAX_BUNDLE_ENTRY}")]
    EntryTooLarge { index: usize, len: usize },
    /// A bundle holds no entries or more than 256.
    #[error("bundle holds {0} entries, must hold 1..=256")]
    BadEntryCount(usize),
    /// A bundle ends inside a length prefix or an entry.
    #[error("bundle is truncated at byte {offset}")]
    TruncatedBundle { offset: usize },
    /// A bundle holds a different number of entries than its width.
    #[error("bundle holds {got} entries, expected {want}")]
    BundleWidthMismatch { want: u16, got: usize },
}

impl From<TileError> for TreeError {
    fn from(e: TileError) -> TreeError {
        TreeError::Tile(e.to_string())
    }
}

/// A hash tile: `width` hashes (1..=256; 256 is a full tile) at tile level `level`
/// (tree level 8·level), the `index`-th tile of its level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tile {
    pub level: u8,
    pub index: u64,
    pub width: u16,
}

/// An entry bundle: `width` entries (1..=256; 256 is full), the `index`-th bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bundle {
    pub index: u64,
    pub width: u16,
}

/// What a tlog-tiles path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TilePath {
    Hashes(Tile),
    Entries(Bundle),
}

fn check_width(width: u64) -> Result<u16, TileError> {
    if (1..=TILE_WIDTH).contains(&width) {
        // Cannot truncate: width <= 256.
        Ok(width as u16)
    } else {
        Err(TileError::WidthOutOfRange(width))
    }
}

/// Writes `n` as 3-digit groups, all but the last prefixed by 'x' (tlog-tiles `<N>`).
fn write_index(out: &mut String, n: u64) {
    let mut groups = Vec::new();
    let mut rest = n;
    loop {
        groups.push(rest % 1000);
        rest /= 1000;
        if rest == 0 {
            break;
        }
    }
    for (i, g) in groups.iter().rev().enumerate() {
        if i + 1 < groups.len() {
            let _ = write!(out, "x{g:03}/");
        } else {
            let _ = write!(out, "{g:03}");
        }
    }
}

fn write_width(out: &mut String, width: u16) {
    if u64::from(width) < TILE_WIDTH {
        let _ = write!(out, ".p/{width}");
    }
}

impl Tile {
    /// A validated tile: level 0..=63, width 1..=256.
    pub fn new(level: u8, index: u64, width: u16) -> Result<Tile, TileError> {
        if level > MAX_TILE_LEVEL {
            return Err(TileError::LevelOutOfRange(level.into()));
        }
        check_width(width.into())?;
        Ok(Tile {
            level,
            index,
            width,
        })
    }

    /// Whether the tile holds all 256 hashes.
    pub fn is_full(&self) -> bool {
        u64::from(self.width) == TILE_WIDTH
    }

    /// The path relative to the log prefix, e.g. `tile/0/x001/234/067` or
    /// `tile/0/x001/234/067.p/12`. Widths >= 256 are written as full tiles; a
    /// width of 0 is written as `.p/0`, which [`parse_path`] rejects.
    pub fn path(&self) -> String {
        let mut s = format!("tile/{}/", self.level);
        write_index(&mut s, self.index);
        write_width(&mut s, self.width);
        s
    }
}

impl Bundle {
    /// A validated bundle: width 1..=256.
    pub fn new(index: u64, width: u16) -> Result<Bundle, TileError> {
        check_width(width.into())?;
        Ok(Bundle { index, width })
    }

    /// Whether the bundle holds all 256 entries.
    pub fn is_full(&self) -> bool {
        u64::from(self.width) == TILE_WIDTH
    }

    /// The path relative to the log prefix, e.g. `tile/entries/x001/234/067.p/12`.
    pub fn path(&self) -> String {
        let mut s = String::from("tile/entries/");
        write_index(&mut s, self.index);
        write_width(&mut s, self.width);
        s
    }

    /// The leaf indexes this bundle holds.
    pub fn leaves(&self) -> Range<u64> {
        let start = self.index.saturating_mul(TILE_WIDTH);
        start..start.saturating_add(self.width.into())
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Parses a decimal with no leading zeros (except "0" itself), at most `max`.
fn parse_small(s: &str, max: u64) -> Option<u64> {
    if !all_digits(s) || s.len() > 3 || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse::<u64>().ok().filter(|v| *v <= max)
}

/// Parses tlog-tiles `<N>`: `x`-prefixed 3-digit groups, then a bare 3-digit group.
fn parse_index(s: &str) -> Result<u64, TileError> {
    let elements: Vec<&str> = s.split('/').collect();
    let last = elements.len() - 1; // split always yields at least one element
    let mut n: u64 = 0;
    for (i, el) in elements.iter().enumerate() {
        let digits = if i < last {
            el.strip_prefix('x')
                .ok_or_else(|| TileError::BadIndexElement {
                    element: el.to_string(),
                    reason: "all but the last element must start with 'x'",
                })?
        } else {
            el
        };
        if digits.len() != 3 || !all_digits(digits) {
            return Err(TileError::BadIndexElement {
                element: el.to_string(),
                reason: "expected exactly 3 decimal digits",
            });
        }
        if i == 0 && i < last && digits == "000" {
            return Err(TileError::NonCanonicalIndex);
        }
        // Cannot fail: three ASCII digits.
        let g: u64 = digits.parse().unwrap_or(0);
        n = n
            .checked_mul(1000)
            .and_then(|n| n.checked_add(g))
            .ok_or(TileError::IndexOverflow)?;
    }
    Ok(n)
}

/// Parses `<N>[.p/<W>]`.
fn parse_index_and_width(s: &str) -> Result<(u64, u16), TileError> {
    match s.split_once(".p/") {
        Some((idx, w)) => {
            let width = parse_small(w, TILE_WIDTH - 1)
                .filter(|w| *w >= 1)
                .ok_or_else(|| TileError::BadWidth(w.to_string()))?;
            // Cannot truncate: width <= 255.
            Ok((parse_index(idx)?, width as u16))
        }
        None => Ok((parse_index(s)?, TILE_WIDTH as u16)),
    }
}

/// Parses a tlog-tiles resource path relative to the log prefix (no leading '/'):
/// `tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]`. Only the canonical
/// encoding is accepted, so `parse_path(p)?.path() == p`.
pub fn parse_path(path: &str) -> Result<TilePath, TileError> {
    if !path.is_ascii() {
        return Err(TileError::NonAscii);
    }
    if path.starts_with('/') {
        return Err(TileError::LeadingSlash);
    }
    let rest = path.strip_prefix("tile/").ok_or(TileError::NotTilePath)?;
    let (first, rest) = rest
        .split_once('/')
        .ok_or_else(|| TileError::BadLevel(rest.to_string()))?;
    if first == "entries" {
        let (index, width) = parse_index_and_width(rest)?;
        return Ok(TilePath::Entries(Bundle { index, width }));
    }
    let level = parse_small(first, MAX_TILE_LEVEL.into())
        .ok_or_else(|| TileError::BadLevel(first.to_string()))?;
    let (index, width) = parse_index_and_width(rest)?;
    Ok(TilePath::Hashes(Tile {
        // Cannot truncate: level <= 63.
        level: level as u8,
        index,
        width,
    }))
}

/// Number of tile-level-`level` hashes in a tree of `size` leaves: size / 256^level.
fn level_count(size: u64, level: u32) -> u64 {
    size.checked_shr(TILE_HEIGHT * level).unwrap_or(0)
}

/// The tiles created or changed when a tree grows from `old` to `new` leaves: new
/// full tiles and the new partial tile at each level (Go tlog `NewTiles`).
/// Empty when `new <= old`.
pub fn new_tiles(old: u64, new: u64) -> Vec<Tile> {
    let mut tiles = Vec::new();
    if new <= old {
        return tiles;
    }
    let mut level = 0u32;
    while level_count(new, level) > 0 {
        let old_n = level_count(old, level);
        let new_n = level_count(new, level);
        if old_n != new_n {
            for index in (old_n / TILE_WIDTH)..(new_n / TILE_WIDTH) {
                tiles.push(Tile {
                    level: level as u8,
                    index,
                    width: TILE_WIDTH as u16,
                });
            }
            let w = new_n % TILE_WIDTH;
            if w > 0 {
                tiles.push(Tile {
                    // Cannot truncate: level <= 7 for 64-bit sizes; w < 256.
                    level: level as u8,
                    index: new_n / TILE_WIDTH,
                    width: w as u16,
                });
            }
        }
        level += 1;
    }
    tiles
}

/// Every hash tile (full and partial) of a tree of `size` leaves.
pub fn tiles_for_size(size: u64) -> Vec<Tile> {
    new_tiles(0, size)
}

/// The entry bundles created or changed when a tree grows from `old` to `new` leaves.
pub fn new_bundles(old: u64, new: u64) -> Vec<Bundle> {
    let mut out = Vec::new();
    if new <= old {
        return out;
    }
    for index in (old / TILE_WIDTH)..(new / TILE_WIDTH) {
        out.push(Bundle {
            index,
            width: TILE_WIDTH as u16,
        });
    }
    let w = new % TILE_WIDTH;
    if w > 0 {
        out.push(Bundle {
            index: new / TILE_WIDTH,
            // Cannot truncate: w < 256.
            width: w as u16,
        });
    }
    out
}

/// Every entry bundle (full and partial) of a tree of `size` leaves.
pub fn bundles_for_size(size: u64) -> Vec<Bundle> {
    new_bundles(0, size)
}

/// Where a stored hash lives: the narrowest tile that holds it, and the byte range
/// of that tile's row whose subtree hash it is (Go tlog `TileForIndex`).
pub fn tile_for_stored_hash(index: u64) -> (Tile, Range<usize>) {
    let (level, n) = split_stored_hash_index(index);
    let tile_level = level / TILE_HEIGHT;
    let sub = level % TILE_HEIGHT;
    // The hash covers row positions [start, end) of its tile's bottom row.
    let first = n << sub; // cannot overflow: n < 2^(64 - level)
    let start = (first % TILE_WIDTH) as usize;
    let end = start + (1usize << sub);
    let tile = Tile {
        // Cannot truncate: level < 64.
        level: tile_level as u8,
        index: first / TILE_WIDTH,
        width: end as u16,
    };
    (tile, start * HASH_SIZE..end * HASH_SIZE)
}

/// Like [`tile_for_stored_hash`], but returns the tile with the width it has in the
/// tree of `size` leaves (full, or that size's partial tile), or an error if the
/// hash is not part of that tree.
pub fn tile_for_stored_hash_in_tree(
    index: u64,
    size: u64,
) -> Result<(Tile, Range<usize>), TreeError> {
    if index >= stored_hash_count(size) {
        return Err(TreeError::HashNotStored { index });
    }
    let (mut tile, range) = tile_for_stored_hash(index);
    let count = level_count(size, tile.level.into());
    let width = if tile.index < count / TILE_WIDTH {
        TILE_WIDTH
    } else {
        count % TILE_WIDTH
    };
    if tile.index > count / TILE_WIDTH || width < u64::from(tile.width) {
        // Unreachable for index < stored_hash_count(size); kept as a defensive check.
        return Err(TreeError::HashNotStored { index });
    }
    // Cannot truncate: width <= 256.
    tile.width = width as u16;
    Ok((tile, range))
}

/// MTH of a power-of-two run of hashes given as concatenated bytes.
fn row_hash(data: &[u8]) -> Hash {
    if data.len() <= HASH_SIZE {
        return Hash::from_slice(data).unwrap_or_default(); // callers pass exactly 32 bytes
    }
    let half = data.len() / 2;
    node_hash(&row_hash(&data[..half]), &row_hash(&data[half..]))
}

fn check_tile_data(tile: &Tile, data: &[u8]) -> Result<(), TileError> {
    check_width(tile.width.into())?;
    let want = usize::from(tile.width) * HASH_SIZE;
    if data.len() != want {
        return Err(TileError::BadTileDataLength {
            width: tile.width,
            want,
            got: data.len(),
        });
    }
    Ok(())
}

/// The stored hash at `index`, computed from the data of `tile` (Go tlog `HashFromTile`).
pub fn hash_from_tile(tile: &Tile, data: &[u8], index: u64) -> Result<Hash, TileError> {
    check_tile_data(tile, data)?;
    let (need, range) = tile_for_stored_hash(index);
    if need.level != tile.level || need.index != tile.index || need.width > tile.width {
        return Err(TileError::HashNotInTile {
            index,
            tile: tile.path(),
        });
    }
    Ok(row_hash(&data[range]))
}

/// MTH of a full tile's 256 hashes: the hash its parent tile holds for it.
fn full_tile_hash(data: &[u8]) -> Hash {
    row_hash(data)
}

/// The contents of `tile` (width × 32 bytes), read from stored hashes
/// (Go tlog `ReadTileData`).
pub fn read_tile_data(tile: Tile, r: &dyn HashReader) -> Result<Vec<u8>, TreeError> {
    let width = u64::from(check_width(tile.width.into())?);
    let level = u32::from(tile.level) * TILE_HEIGHT;
    let start = tile
        .index
        .checked_mul(TILE_WIDTH)
        .ok_or(TreeError::IndexOverflow)?;
    let mut indexes = Vec::with_capacity(width as usize);
    for i in 0..width {
        let n = start.checked_add(i).ok_or(TreeError::IndexOverflow)?;
        indexes.push(checked_stored_hash_index(level, n).ok_or(TreeError::IndexOverflow)?);
    }
    let hashes = r.read_hashes(&indexes)?;
    if hashes.len() != indexes.len() {
        return Err(TreeError::ReaderCount {
            want: indexes.len(),
            got: hashes.len(),
        });
    }
    let mut out = Vec::with_capacity(hashes.len() * HASH_SIZE);
    for h in &hashes {
        out.extend_from_slice(h.as_bytes());
    }
    Ok(out)
}

/// Splits tile data into its hashes, checking the length matches `width` (1..=256).
pub fn parse_tile_data(bytes: &[u8], width: u16) -> Result<Vec<Hash>, TileError> {
    check_tile_data(
        &Tile {
            level: 0,
            index: 0,
            width,
        },
        bytes,
    )?;
    Ok(bytes
        .chunks_exact(HASH_SIZE)
        .filter_map(Hash::from_slice)
        .collect())
}

/// Source of tile contents (a store, a directory, an HTTP client...).
pub trait TileReader {
    /// Returns the data of each tile, in order. Each must be exactly
    /// `width × 32` bytes; a reader holding a wider version of a partial tile
    /// returns its first `width` hashes (tiles only ever grow by appending).
    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, TreeError>;
}

impl<T: TileReader + ?Sized> TileReader for &T {
    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, TreeError> {
        (**self).read_tiles(tiles)
    }
}

/// Tiles held in memory under their exact (level, index, width).
impl TileReader for HashMap<Tile, Vec<u8>> {
    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, TreeError> {
        tiles
            .iter()
            .map(|t| {
                self.get(t)
                    .cloned()
                    .ok_or_else(|| TreeError::Reader(format!("tile {} not found", t.path())))
            })
            .collect()
    }
}

/// A request plan: the distinct tiles to read, and for each requested stored hash
/// which tile (by position) and byte range it comes from.
struct Plan {
    tiles: Vec<Tile>,
    order: HashMap<Tile, usize>,
    slots: Vec<(usize, Range<usize>)>,
}

impl Plan {
    fn new() -> Plan {
        Plan {
            tiles: Vec::new(),
            order: HashMap::new(),
            slots: Vec::new(),
        }
    }

    /// Adds `tile` once; returns its position and whether it was new.
    fn add(&mut self, tile: Tile) -> (usize, bool) {
        if let Some(&i) = self.order.get(&tile) {
            return (i, false);
        }
        let i = self.tiles.len();
        self.tiles.push(tile);
        self.order.insert(tile, i);
        (i, true)
    }

    fn locate(&mut self, indexes: &[u64], size: u64) -> Result<(), TreeError> {
        for &x in indexes {
            let (tile, range) = tile_for_stored_hash_in_tree(x, size)?;
            let (pos, _) = self.add(tile);
            self.slots.push((pos, range));
        }
        Ok(())
    }

    /// Reads every planned tile in one call and checks the lengths.
    fn fetch(&self, reader: &dyn TileReader) -> Result<Vec<Vec<u8>>, TreeError> {
        if self.tiles.is_empty() {
            return Ok(Vec::new());
        }
        let data = reader.read_tiles(&self.tiles)?;
        if data.len() != self.tiles.len() {
            return Err(TreeError::Tile(format!(
                "tile reader returned {} tiles, expected {}",
                data.len(),
                self.tiles.len()
            )));
        }
        for (t, d) in self.tiles.iter().zip(&data) {
            check_tile_data(t, d)?;
        }
        Ok(data)
    }

    fn extract(&self, data: &[Vec<u8>]) -> Vec<Hash> {
        self.slots
            .iter()
            .map(|(pos, range)| row_hash(&data[*pos][range.clone()]))
            .collect()
    }
}

/// Smallest row run (in bytes: 16 hashes, subtree height 4 within its tile) whose
/// hash a [`StoredHashCache`] keeps. Lower hashes cost at most 15 SHA-256 to
/// recompute from the row; keeping them would cost memory per leaf.
const CACHE_MIN_RUN: usize = 16 * HASH_SIZE;

/// Default capacity of a [`StoredHashCache`], in hashes: 2^22 (about 200 MB when
/// full). A 10^7-leaf log has about 1.25 M cacheable hashes (31 per full tile), and
/// the two-generation eviction keeps a working set of up to half the capacity.
pub const DEFAULT_HASH_CACHE: usize = 1 << 22;

/// A bounded, shared cache of stored hashes recomputed from tile rows, by stored-hash
/// index (Go tlog's numbering). A stored hash is the root of a complete subtree, so
/// once a log holds it, it never changes and an entry never goes stale. Only hashes
/// of subtrees at height 4 or more within their tile are kept (see `CACHE_MIN_RUN`):
/// they are the expensive ones (up to 255 SHA-256 each).
///
/// Eviction is by two generations (an approximation of LRU): hashes are inserted
/// into the young generation; when it holds half the capacity it becomes the old
/// one and the previous old one is dropped; a hit in the old generation moves the
/// hash back to the young one. One cache must serve one log only.
#[derive(Debug)]
pub struct StoredHashCache {
    capacity: usize,
    generations: std::sync::Mutex<Generations>,
}

#[derive(Debug, Default)]
struct Generations {
    young: HashMap<u64, Hash>,
    old: HashMap<u64, Hash>,
}

impl Generations {
    fn insert(&mut self, index: u64, hash: Hash, half: usize) {
        self.young.insert(index, hash);
        if self.young.len() >= half {
            self.old = std::mem::take(&mut self.young);
        }
    }
}

impl StoredHashCache {
    /// A cache of at most `capacity` hashes (at least 2).
    pub fn new(capacity: usize) -> StoredHashCache {
        StoredHashCache {
            capacity: capacity.max(2),
            generations: std::sync::Mutex::new(Generations::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        // A poisoned lock still holds consistent maps (every update is one insert).
        self.generations.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached hash at stored-hash index `index`.
    pub fn get(&self, index: u64) -> Option<Hash> {
        let mut g = self.lock();
        if let Some(h) = g.young.get(&index) {
            return Some(*h);
        }
        let h = g.old.remove(&index)?;
        g.insert(index, h, self.capacity / 2);
        Some(h)
    }

    /// Remembers the stored hash at `index`.
    pub fn insert(&self, index: u64, hash: Hash) {
        self.lock().insert(index, hash, self.capacity / 2);
    }

    /// How many hashes it holds.
    pub fn len(&self) -> usize {
        let g = self.lock();
        g.young.len() + g.old.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for StoredHashCache {
    fn default() -> StoredHashCache {
        StoredHashCache::new(DEFAULT_HASH_CACHE)
    }
}

/// A [`HashReader`] for the tree of `size` leaves backed by tiles: each stored hash
/// is recomputed from the bottom row of the tile that holds it. Every tile needed by
/// one `read_hashes` call is read once, in a single `read_tiles` call. Tiles are
/// trusted as read; see [`VerifiedTileHashReader`] for untrusted sources. With a
/// [`StoredHashCache`] the expensive hashes are computed once per log, and a tile is
/// read only if some wanted hash is not cached.
#[derive(Clone, Debug)]
pub struct TileHashReader<R> {
    size: u64,
    reader: R,
    cache: Option<std::sync::Arc<StoredHashCache>>,
}

impl<R: TileReader> TileHashReader<R> {
    /// A reader for the tree of `size` leaves.
    pub fn new(size: u64, reader: R) -> TileHashReader<R> {
        TileHashReader {
            size,
            reader,
            cache: None,
        }
    }

    /// The same reader, keeping the hashes it computes in `cache` (which must belong
    /// to the log whose tiles `reader` reads: trusted tiles only).
    pub fn with_cache(mut self, cache: Option<std::sync::Arc<StoredHashCache>>) -> Self {
        self.cache = cache;
        self
    }

    /// The tree size this reader serves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The underlying tile reader.
    pub fn tile_reader(&self) -> &R {
        &self.reader
    }
}

impl<R: TileReader> HashReader for TileHashReader<R> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TreeError> {
        let Some(cache) = &self.cache else {
            let mut plan = Plan::new();
            plan.locate(indexes, self.size)?;
            let data = plan.fetch(&self.reader)?;
            return Ok(plan.extract(&data));
        };
        let mut out = vec![Hash::default(); indexes.len()];
        let mut plan = Plan::new();
        // (position in `out`, stored-hash index) of each hash the plan computes.
        let mut todo = Vec::new();
        for (k, &x) in indexes.iter().enumerate() {
            let (tile, range) = tile_for_stored_hash_in_tree(x, self.size)?;
            if range.len() >= CACHE_MIN_RUN
                && let Some(h) = cache.get(x)
            {
                out[k] = h;
                continue;
            }
            let (pos, _) = plan.add(tile);
            plan.slots.push((pos, range));
            todo.push((k, x));
        }
        let data = plan.fetch(&self.reader)?;
        for ((k, x), (pos, range)) in todo.into_iter().zip(&plan.slots) {
            let h = row_hash(&data[*pos][range.clone()]);
            if range.len() >= CACHE_MIN_RUN {
                cache.insert(x, h);
            }
            out[k] = h;
        }
        Ok(out)
    }
}

/// A [`HashReader`] for the tree of `size` leaves with a trusted `root`, backed by
/// untrusted tiles. Before any hash is returned, every tile read is authenticated:
/// the tree's partial tiles (which hold the subtrees the root is made of) must
/// reproduce `root`, and each full tile must hash to the entry its parent tile
/// holds for it, up to an authenticated partial tile (as Go tlog's
/// `TileHashReader` does). All tiles of one call are read in one `read_tiles` call.
#[derive(Clone, Debug)]
pub struct VerifiedTileHashReader<R> {
    size: u64,
    root: Hash,
    reader: R,
}

impl<R: TileReader> VerifiedTileHashReader<R> {
    /// A reader for the tree of `size` leaves whose root is known to be `root`
    /// (e.g. from a verified checkpoint).
    pub fn new(size: u64, root: Hash, reader: R) -> VerifiedTileHashReader<R> {
        VerifiedTileHashReader { size, root, reader }
    }

    /// The tree size this reader serves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The trusted root.
    pub fn root(&self) -> Hash {
        self.root
    }
}

/// The tile one level up and the row position holding a full tile's hash.
fn parent_of(tile: &Tile, size: u64) -> Result<(Tile, usize), TreeError> {
    let level = tile.level.checked_add(1).ok_or(TreeError::IndexOverflow)?;
    let count = level_count(size, level.into());
    let index = tile.index / TILE_WIDTH;
    let width = if index < count / TILE_WIDTH {
        TILE_WIDTH
    } else {
        count % TILE_WIDTH
    };
    let pos = (tile.index % TILE_WIDTH) as usize;
    if index > count / TILE_WIDTH || pos as u64 >= width {
        return Err(TreeError::Tile(format!(
            "internal error: full tile {} has no parent in a tree of size {size}",
            tile.path()
        )));
    }
    Ok((
        Tile {
            level,
            index,
            // Cannot truncate: width <= 256.
            width: width as u16,
        },
        pos,
    ))
}

impl<R: TileReader> HashReader for VerifiedTileHashReader<R> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TreeError> {
        let mut plan = Plan::new();
        // 1. The tiles holding the subtrees the root is made of (the partial tiles).
        let root_indexes = tree_hash_indexes(self.size)?;
        let mut root_slots = Vec::with_capacity(root_indexes.len());
        for &x in &root_indexes {
            let (tile, range) = tile_for_stored_hash_in_tree(x, self.size)?;
            let (pos, _) = plan.add(tile);
            root_slots.push((pos, range));
        }
        let edge = plan.tiles.len();
        // 2. The tiles holding the requested hashes.
        plan.locate(indexes, self.size)?;
        // 3. Ancestors of each full tile, up to one already planned.
        let mut i = edge;
        while i < plan.tiles.len() {
            let t = plan.tiles[i];
            if t.is_full() {
                let (parent, _) = parent_of(&t, self.size)?;
                plan.add(parent);
            }
            i += 1;
        }
        let data = plan.fetch(&self.reader)?;

        // Authenticate the partial tiles against the trusted root.
        let subtree: Vec<Hash> = root_slots
            .iter()
            .map(|(pos, range)| row_hash(&data[*pos][range.clone()]))
            .collect();
        let computed = fold_from_right(&subtree);
        if computed != self.root {
            return Err(TreeError::Tile(format!(
                "tiles for tree size {} give root {computed}, not the trusted root {}",
                self.size, self.root
            )));
        }
        // Authenticate each full tile against its parent's row.
        for (pos, t) in plan.tiles.iter().enumerate() {
            if !t.is_full() {
                continue;
            }
            let (parent, at) = parent_of(t, self.size)?;
            let ppos = *plan.order.get(&parent).ok_or_else(|| {
                TreeError::Tile(format!("internal error: parent of {} not read", t.path()))
            })?;
            let want = row_hash(&data[ppos][at * HASH_SIZE..(at + 1) * HASH_SIZE]);
            if full_tile_hash(&data[pos]) != want {
                return Err(TreeError::Tile(format!(
                    "tile {} does not match its parent tile {}",
                    t.path(),
                    parent.path()
                )));
            }
        }
        Ok(plan.extract(&data))
    }
}

fn fold_from_right(hashes: &[Hash]) -> Hash {
    let mut iter = hashes.iter().rev();
    match iter.next() {
        None => crate::hash::empty_root(),
        Some(last) => iter.fold(*last, |acc, left| node_hash(left, &acc)),
    }
}

/// Encodes an entry bundle: each entry as a big-endian uint16 length and its bytes
/// (tlog-tiles "Log entries"). A bundle holds 1..=256 entries of at most 65535 bytes.
pub fn encode_bundle(entries: &[&[u8]]) -> Result<Vec<u8>, TileError> {
    if entries.is_empty() || entries.len() as u64 > TILE_WIDTH {
        return Err(TileError::BadEntryCount(entries.len()));
    }
    let mut out = Vec::with_capacity(entries.iter().map(|e| e.len() + 2).sum());
    for (index, e) in entries.iter().enumerate() {
        let len = u16::try_from(e.len()).map_err(|_| TileError::EntryTooLarge {
            index,
            len: e.len(),
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// Decodes an entry bundle, rejecting truncation and empty or over-long bundles.
pub fn decode_bundle(bytes: &[u8]) -> Result<Vec<Vec<u8>>, TileError> {
    Ok(bundle_ranges(bytes)?
        .into_iter()
        .map(|r| bytes[r].to_vec())
        .collect())
}

/// Where each entry of an entry bundle lies in `bytes`, with the checks of
/// [`decode_bundle`]; for readers that need only some entries or keep the bundle.
pub fn bundle_ranges(bytes: &[u8]) -> Result<Vec<std::ops::Range<usize>>, TileError> {
    let mut out = Vec::with_capacity(TILE_WIDTH as usize);
    let mut at = 0usize;
    while at < bytes.len() {
        let prefix = bytes
            .get(at..at + 2)
            .ok_or(TileError::TruncatedBundle { offset: at })?;
        let len = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
        let entry = at + 2..at + 2 + len;
        if entry.end > bytes.len() {
            return Err(TileError::TruncatedBundle { offset: at });
        }
        out.push(entry);
        if out.len() as u64 > TILE_WIDTH {
            return Err(TileError::BadEntryCount(out.len()));
        }
        at += 2 + len;
    }
    if out.is_empty() {
        return Err(TileError::BadEntryCount(0));
    }
    Ok(out)
}

/// Decodes the bundle `bundle` and checks it holds exactly `bundle.width` entries.
pub fn parse_bundle(bytes: &[u8], bundle: Bundle) -> Result<Vec<Vec<u8>>, TileError> {
    let entries = decode_bundle(bytes)?;
    if entries.len() != usize::from(bundle.width) {
        return Err(TileError::BundleWidthMismatch {
            want: bundle.width,
            got: entries.len(),
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;
    use crate::merkle::{MemoryTree, inclusion_proof, tree_hash};
    use std::cell::Cell;

    fn t(level: u8, index: u64, width: u16) -> Tile {
        Tile {
            level,
            index,
            width,
        }
    }

    #[test]
    fn paths_follow_the_spec_examples() {
        assert_eq!(t(0, 1234067, 256).path(), "tile/0/x001/x234/067");
        assert_eq!(t(0, 1234067, 12).path(), "tile/0/x001/x234/067.p/12");
        assert_eq!(t(2, 0, 1).path(), "tile/2/000.p/1");
        assert_eq!(t(63, 999, 256).path(), "tile/63/999");
        assert_eq!(t(1, 1000, 256).path(), "tile/1/x001/000");
        assert_eq!(
            t(0, u64::MAX, 256).path(),
            "tile/0/x018/x446/x744/x073/x709/x551/615"
        );
        assert_eq!(Bundle { index: 5, width: 7 }.path(), "tile/entries/005.p/7");
        assert_eq!(
            Bundle {
                index: 1234067,
                width: 256
            }
            .path(),
            "tile/entries/x001/x234/067"
        );
    }

    #[test]
    fn parse_accepts_canonical_paths() {
        for p in [
            "tile/0/000",
            "tile/0/000.p/1",
            "tile/0/x001/x234/067.p/255",
            "tile/63/x018/x446/x744/x073/x709/x551/615",
            "tile/entries/000.p/15",
            "tile/entries/x999/999",
        ] {
            let parsed = parse_path(p).unwrap();
            let back = match parsed {
                TilePath::Hashes(t) => t.path(),
                TilePath::Entries(b) => b.path(),
            };
            assert_eq!(back, p);
        }
    }

    #[test]
    fn parse_rejects_malformed_paths() {
        type Check = fn(&TileError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("/tile/0/000", |e| *e == TileError::LeadingSlash),
            ("tile/0/00é", |e| *e == TileError::NonAscii),
            ("tiles/0/000", |e| *e == TileError::NotTilePath),
            ("tile/64/000", |e| matches!(e, TileError::BadLevel(_))),
            ("tile/00/000", |e| matches!(e, TileError::BadLevel(_))),
            ("tile/01/000", |e| matches!(e, TileError::BadLevel(_))),
            ("tile/-1/000", |e| matches!(e, TileError::BadLevel(_))),
            ("tile/0", |e| matches!(e, TileError::BadLevel(_))),
            ("tile/0/00", |e| {
                matches!(e, TileError::BadIndexElement { .. })
            }),
            ("tile/0/0000", |e| {
                matches!(e, TileError::BadIndexElement { .. })
            }),
            ("tile/0/001/234", |e| {
                matches!(e, TileError::BadIndexElement { .. })
            }),
            ("tile/0/x001", |e| {
                matches!(e, TileError::BadIndexElement { .. })
            }),
            ("tile/0/x001/", |e| {
                matches!(e, TileError::BadIndexElement { .. })
            }),
            ("tile/0/000/", |e| {
                matches!(e, TileError::BadIndexElement { .. })
            }),
            ("tile/0/0a0", |e| {
                matches!(e, TileError::BadIndexElement { .. })
            }),
            ("tile/0/+12", |e| {
                matches!(e, TileError::BadIndexElement { .. })
            }),
            ("tile/0/x000/001", |e| *e == TileError::NonCanonicalIndex),
            ("tile/0/000.p/0", |e| matches!(e, TileError::BadWidth(_))),
            ("tile/0/000.p/256", |e| matches!(e, TileError::BadWidth(_))),
            ("tile/0/000.p/012", |e| matches!(e, TileError::BadWidth(_))),
            ("tile/0/000.p/", |e| matches!(e, TileError::BadWidth(_))),
            ("tile/0/000.p/5/", |e| matches!(e, TileError::BadWidth(_))),
            ("tile/0/000.p/5x", |e| matches!(e, TileError::BadWidth(_))),
            ("tile/0/000.p", |e| {
                matches!(e, TileError::BadIndexElement { .. })
            }),
            ("tile/0/000.q/5", |e| {
                matches!(e, TileError::BadIndexElement { .. })
            }),
            ("tile/entries/000.p/0", |e| {
                matches!(e, TileError::BadWidth(_))
            }),
            ("tile/entries/", |e| {
                matches!(e, TileError::BadIndexElement { .. })
            }),
            ("tile/0/x018/x446/x744/x073/x709/x551/616", |e| {
                *e == TileError::IndexOverflow
            }),
            ("tile/0/x999/x999/x999/x999/x999/x999/x999/999", |e| {
                *e == TileError::IndexOverflow
            }),
        ];
        for (p, ok) in cases {
            match parse_path(p) {
                Err(e) => assert!(ok(&e), "{p}: unexpected error {e:?}"),
                Ok(v) => panic!("{p}: accepted as {v:?}"),
            }
        }
    }

    #[test]
    fn tiles_for_size_matches_spec_example() {
        let tiles = tiles_for_size(70_000);
        let full0 = tiles.iter().filter(|t| t.level == 0 && t.is_full()).count();
        assert_eq!(full0, 273);
        let partial: Vec<_> = tiles.iter().filter(|t| !t.is_full()).copied().collect();
        assert_eq!(partial, vec![t(0, 273, 112), t(1, 1, 17), t(2, 0, 1)]);
        let full1: Vec<_> = tiles
            .iter()
            .filter(|t| t.level == 1 && t.is_full())
            .copied()
            .collect();
        assert_eq!(full1, vec![t(1, 0, 256)]);
        assert_eq!(tiles.len(), 273 + 1 + 1 + 1 + 1);
        // "a tree of size 256 will be represented by a full level 0 tile and a
        // partial level 1 tile of width 1."
        assert_eq!(tiles_for_size(256), vec![t(0, 0, 256), t(1, 0, 1)]);
        assert!(tiles_for_size(0).is_empty());
    }

    #[test]
    fn new_tiles_lists_only_changes() {
        assert_eq!(new_tiles(5, 5), vec![]);
        assert_eq!(new_tiles(6, 5), vec![]);
        assert_eq!(new_tiles(5, 6), vec![t(0, 0, 6)]);
        assert_eq!(new_tiles(255, 256), vec![t(0, 0, 256), t(1, 0, 1)]);
        assert_eq!(new_tiles(256, 257), vec![t(0, 1, 1)]);
        assert_eq!(
            new_tiles(300, 1000),
            vec![t(0, 1, 256), t(0, 2, 256), t(0, 3, 232), t(1, 0, 3)]
        );
    }

    #[test]
    fn bundles_for_size_counts() {
        assert!(bundles_for_size(0).is_empty());
        assert_eq!(bundles_for_size(1), vec![Bundle { index: 0, width: 1 }]);
        assert_eq!(
            bundles_for_size(513),
            vec![
                Bundle {
                    index: 0,
                    width: 256
                },
                Bundle {
                    index: 1,
                    width: 256
                },
                Bundle { index: 2, width: 1 }
            ]
        );
        assert_eq!(new_bundles(513, 514), vec![Bundle { index: 2, width: 2 }]);
        assert_eq!(Bundle { index: 2, width: 3 }.leaves(), 512..515);
    }

    #[test]
    fn tile_for_stored_hash_matches_layout() {
        // Leaf 0: tile 0/0, width 1, first hash.
        assert_eq!(tile_for_stored_hash(0), (t(0, 0, 1), 0..32));
        // Node over leaves 0..2 (index 2): tile 0/0 width 2, bytes 0..64.
        assert_eq!(tile_for_stored_hash(2), (t(0, 0, 2), 0..64));
        // Level-8 node 0 lives in tile 1/0 at position 0.
        let idx = crate::merkle::stored_hash_index(8, 0);
        assert_eq!(tile_for_stored_hash(idx), (t(1, 0, 1), 0..32));
        let idx = crate::merkle::stored_hash_index(3, 33);
        assert_eq!(tile_for_stored_hash(idx), (t(0, 1, 16), 8 * 32..16 * 32));
    }

    struct CountingReader<'a> {
        tiles: &'a HashMap<Tile, Vec<u8>>,
        calls: Cell<usize>,
        seen: std::cell::RefCell<Vec<Vec<Tile>>>,
    }
    impl TileReader for CountingReader<'_> {
        fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, TreeError> {
            self.calls.set(self.calls.get() + 1);
            self.seen.borrow_mut().push(tiles.to_vec());
            self.tiles.read_tiles(tiles)
        }
    }

    fn build(size: u64) -> (MemoryTree, HashMap<Tile, Vec<u8>>) {
        let mut tree = MemoryTree::new();
        for i in 0..size {
            tree.append(leaf_hash(&i.to_be_bytes()));
        }
        let mut tiles = HashMap::new();
        for tile in tiles_for_size(size) {
            tiles.insert(tile, read_tile_data(tile, &tree).unwrap());
        }
        (tree, tiles)
    }

    #[test]
    fn tile_readers_reproduce_tree_and_read_each_tile_once() {
        let (tree, tiles) = build(600);
        let reader = CountingReader {
            tiles: &tiles,
            calls: Cell::new(0),
            seen: Default::default(),
        };
        let thr = TileHashReader::new(600, &reader);
        assert_eq!(tree_hash(600, &thr).unwrap(), tree.root());
        let p = inclusion_proof(3, 600, &thr).unwrap();
        assert_eq!(p, tree.inclusion_proof(3, 600).unwrap());
        assert_eq!(reader.calls.get(), 2);
        // Each call asked for each tile once: the root needs 0/2.p/88 and 1/0.p/2
        // once each even though it uses several hashes from 0/2.p/88.
        let seen = reader.seen.borrow();
        assert_eq!(seen[0], vec![t(1, 0, 2), t(0, 2, 88)]);
        for call in seen.iter() {
            let mut dedup = call.clone();
            dedup.sort();
            dedup.dedup();
            assert_eq!(dedup.len(), call.len());
        }

        let v = VerifiedTileHashReader::new(600, tree.root(), &tiles);
        assert_eq!(tree_hash(600, &v).unwrap(), tree.root());
        for i in [0, 255, 256, 511, 512, 599] {
            assert_eq!(
                inclusion_proof(i, 600, &v).unwrap(),
                tree.inclusion_proof(i, 600).unwrap()
            );
        }
        // Hashes beyond the tree are refused.
        assert!(thr.read_hashes(&[stored_hash_count(600)]).is_err());
    }

    #[test]
    fn cached_reader_matches_and_skips_tiles() {
        for size in [1u64, 255, 256, 257, 4096, 65_536 + 300] {
            let (tree, tiles) = build(size);
            let cache = std::sync::Arc::new(StoredHashCache::new(64));
            let plain = TileHashReader::new(size, &tiles);
            let cached = TileHashReader::new(size, &tiles).with_cache(Some(cache.clone()));
            let all: Vec<u64> = (0..stored_hash_count(size)).collect();
            for chunk in all.chunks(97) {
                let want = plain.read_hashes(chunk).unwrap();
                assert_eq!(cached.read_hashes(chunk).unwrap(), want);
                // Again, now (partly) from the cache.
                assert_eq!(cached.read_hashes(chunk).unwrap(), want);
            }
            assert!(cache.len() <= 64);
            for k in [0, size / 2, size - 1] {
                assert_eq!(
                    inclusion_proof(k, size, &cached).unwrap(),
                    tree.inclusion_proof(k, size).unwrap()
                );
            }
        }
        // A hash at height >= 4 within its tile, cached, is served without a read.
        let (_, tiles) = build(4096);
        let cache = std::sync::Arc::new(StoredHashCache::default());
        let counting = CountingReader {
            tiles: &tiles,
            calls: Cell::new(0),
            seen: Default::default(),
        };
        let r = TileHashReader::new(4096, &counting).with_cache(Some(cache));
        let x = crate::merkle::stored_hash_index(4, 3);
        let h = r.read_hashes(&[x]).unwrap();
        let before = counting.calls.get();
        assert_eq!(before, 1);
        assert_eq!(r.read_hashes(&[x]).unwrap(), h);
        assert_eq!(counting.calls.get(), before);
    }

    #[test]
    fn stored_hash_cache_is_bounded_and_keeps_hot_entries() {
        let c = StoredHashCache::new(10);
        for i in 0..100u64 {
            c.insert(i, Hash::default());
            // Index 0 is used all the time: it survives every turnover.
            assert!(c.get(0).is_some(), "{i}");
            assert!(c.len() <= 10);
        }
        assert!(c.get(1).is_none());
        assert!(c.get(99).is_some());
    }

    #[test]
    fn verified_reader_rejects_tampered_tiles() {
        let (tree, tiles) = build(600);
        let wrong_root = VerifiedTileHashReader::new(600, leaf_hash(b"x"), &tiles);
        assert!(tree_hash(600, &wrong_root).is_err());
        for victim in tiles_for_size(600) {
            let mut bad = tiles.clone();
            if let Some(d) = bad.get_mut(&victim) {
                d[5] ^= 1;
            }
            let v = VerifiedTileHashReader::new(600, tree.root(), &bad);
            // Reading leaf 0 needs tile 0/0 and, through it, 1/0.p/2.
            let leaf0 = crate::merkle::stored_hash_index(0, 0);
            let leaf599 = crate::merkle::stored_hash_index(0, 599);
            let r = v.read_hashes(&[leaf0, leaf599]);
            if victim == t(0, 1, 256) {
                // Not needed for these hashes; untouched tiles are not read.
                assert!(r.is_ok());
            } else {
                assert!(r.is_err(), "tampered {victim:?} accepted");
            }
        }
        // Wrong length is rejected before hashing.
        let mut short = tiles.clone();
        short.insert(t(0, 2, 88), vec![0; 31]);
        let v = VerifiedTileHashReader::new(600, tree.root(), &short);
        assert!(tree_hash(600, &v).is_err());
    }

    #[test]
    fn hash_from_tile_checks_membership() {
        let (tree, tiles) = build(10);
        let tile = t(0, 0, 10);
        let data = &tiles[&tile];
        let idx = crate::merkle::stored_hash_index(3, 0);
        assert_eq!(
            hash_from_tile(&tile, data, idx).unwrap(),
            tree.root_at(8).unwrap()
        );
        let outside = crate::merkle::stored_hash_index(1, 5);
        assert!(matches!(
            hash_from_tile(&tile, data, outside),
            Err(TileError::HashNotInTile { .. })
        ));
        assert!(matches!(
            hash_from_tile(&tile, &data[1..], idx),
            Err(TileError::BadTileDataLength { .. })
        ));
    }

    #[test]
    fn tile_data_and_bundles() {
        let data = vec![7u8; 64];
        assert_eq!(parse_tile_data(&data, 2).unwrap().len(), 2);
        assert!(parse_tile_data(&data, 3).is_err());
        assert!(parse_tile_data(&[], 0).is_err());
        assert!(parse_tile_data(&vec![0; 257 * 32], 257).is_err());

        let b = encode_bundle(&[b"one", b"", b"three"]).unwrap();
        assert_eq!(b, b"\x00\x03one\x00\x00\x00\x05three");
        assert_eq!(
            decode_bundle(&b).unwrap(),
            vec![b"one".to_vec(), vec![], b"three".to_vec()]
        );
        for cut in 1..b.len() {
            if cut == 5 || cut == 7 {
                continue; // entry boundaries: a shorter, valid bundle
            }
            assert!(
                matches!(
                    decode_bundle(&b[..cut]),
                    Err(TileError::TruncatedBundle { .. })
                ),
                "cut {cut}"
            );
        }
        assert_eq!(decode_bundle(&[]), Err(TileError::BadEntryCount(0)));
        let big = vec![0u8; 65536];
        assert_eq!(
            encode_bundle(&[b"a", &big]),
            Err(TileError::EntryTooLarge {
                index: 1,
                len: 65536
            })
        );
        assert!(encode_bundle(&[&big[..65535]]).is_ok());
        assert_eq!(encode_bundle(&[]), Err(TileError::BadEntryCount(0)));
        let many: Vec<&[u8]> = vec![b"x"; 257];
        assert_eq!(encode_bundle(&many), Err(TileError::BadEntryCount(257)));
        let too_many = vec![0u8; 2 * 257];
        assert_eq!(decode_bundle(&too_many), Err(TileError::BadEntryCount(257)));
        assert_eq!(
            parse_bundle(&b, Bundle { index: 0, width: 2 }),
            Err(TileError::BundleWidthMismatch { want: 2, got: 3 })
        );
        assert!(parse_bundle(&b, Bundle { index: 0, width: 3 }).is_ok());
    }

    #[test]
    fn read_tile_data_rejects_bad_tiles() {
        let tree = MemoryTree::new();
        assert!(read_tile_data(t(0, 0, 0), &tree).is_err());
        assert!(read_tile_data(t(0, 0, 1), &tree).is_err());
        assert_eq!(
            read_tile_data(t(63, 1, 256), &tree),
            Err(TreeError::IndexOverflow)
        );
        assert!(Tile::new(64, 0, 1).is_err());
        assert!(Tile::new(0, 0, 257).is_err());
        assert!(Bundle::new(0, 0).is_err());
        assert!(Tile::new(63, 0, 256).is_ok());
    }
}
