//! redb backend: one database file, one write transaction per batch, committed with
//! `Durability::Immediate` (fsync before `commit()` returns).
//!
//! # Layout (version 2)
//!
//! Tiles and entry bundles are stored in parts of at most [`PART_BYTES`] bytes, one
//! row per part. redb gives a value that does not fit a 4 KiB page its own run of
//! pages rounded up to a power of two, so a 270 KB bundle stored whole took 512 KB
//! and a full 8 KiB tile took 16 KiB (BENCHMARKS.md, "Disk"). A part fits one page
//! exactly, and a batch that extends a partial bundle rewrites only the parts whose
//! bytes changed, not the whole bundle. Tile parts are keyed (level, part, index) so
//! the short last parts of full tiles sit next to each other and share pages.
//! Hash indexes use fixed-width 32-byte keys (no per-row length fields).
//!
//! A bundle that holds its 256 entries never changes again, and is stored
//! zstd-compressed (in parts too) in the same transaction that completes it, which
//! also deletes its uncompressed parts. A log's entries compress well, because a
//! company's entries share most of their fields (BENCHMARKS.md, "Disk"); the partial
//! bundle at the right edge stays uncompressed, so a batch that extends it rewrites
//! only its changed last part. A file whose full bundles are uncompressed (written
//! before this) reads as before.
//!
//! A file written with the first layout (whole tiles and bundles, variable-width
//! index keys) is converted in place, in one transaction, when it is opened.
//!
//! # Index rows, gathered and flushed as sorted runs
//!
//! The two hash indexes have random keys, so the rows of one batch land on nearly as
//! many B-tree pages, and redb writes a new copy of every page a commit changes: with
//! a row per entry inserted at every commit, the indexes were a third of the server's
//! CPU at 10^5 entries (BENCHMARKS.md). A batch's index rows are instead written as one
//! row of `unindexed_rows`, keyed by the batch's first leaf index (sequential keys, so
//! the appends share the last page), in the same transaction as its entries, and kept
//! in memory for look-ups; once [`DEFAULT_INDEX_FLUSH_ROWS`] have gathered, the commit that passes
//! that number writes them as one sorted run per index ([`index_runs`]: sequential
//! writes, merged level by level) and empties the table. A crash loses nothing: the
//! rows are durable with their entries, and are read back into memory when the file
//! is opened. A file written before runs kept its rows in one B-tree per index
//! (`leaf_hash_index`, `entry_hash_index`); opening it makes each B-tree the index's
//! oldest run ([`runs_from_b_trees`]). (A binary
//! from before these tables would not read them, so it would miss their look-ups:
//! de-duplication and look-up by leaf hash, not entries.)

use super::index_runs::{self, ENTRY, LEAF, RunChange, RunFilter};
use super::redb_errors::map_err;
use super::{Batch, DirLock, Store, StoreError, StoreKind, TileId, TreeState};
use candor_core::hash::Hash;
use candor_core::tiles::{StoredHashCache, TILE_WIDTH};
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, Table, TableDefinition,
    TableError, TableHandle, WriteTransaction,
};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

/// Single row "tree": the encoded [`TreeState`].
const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");
/// (level, part, index) -> part of a hash tile's bytes.
const TILE_PARTS: TableDefinition<(u8, u32, u64), &[u8]> = TableDefinition::new("tile_parts");
/// (bundle index, part) -> part of an entry bundle's bytes.
const BUNDLE_PARTS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("bundle_parts");
/// (bundle index, part) -> part of a full entry bundle, zstd-compressed.
const FULL_BUNDLE_ZSTD_PARTS: TableDefinition<(u64, u32), &[u8]> =
    TableDefinition::new("full_bundle_zstd_parts");
/// Leaf hash -> leaf index, in files written before index runs (read only since).
const LEAF_INDEX: TableDefinition<[u8; 32], u64> = TableDefinition::new("leaf_hash_index");
/// Entry hash -> leaf index, in files written before index runs (read only since).
const ENTRY_INDEX: TableDefinition<[u8; 32], u64> = TableDefinition::new("entry_hash_index");
/// First leaf index of a batch -> its index rows not flushed to runs yet: rows of
/// [`UNINDEXED_ROW_BYTES`] bytes, back to back.
const UNINDEXED: TableDefinition<u64, &[u8]> = TableDefinition::new("unindexed_rows");
/// Metadata key -> value.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Single row "latest": the latest checkpoint note.
const CHECKPOINT: TableDefinition<&str, &[u8]> = TableDefinition::new("checkpoint");

/// Bytes per stored part of a tile or bundle: with its key and redb's per-page header
/// a part fills one 4 KiB page (measured: 4,076 still fits, 4,084 does not), and 4,064
/// is a whole number of hashes (127).
const PART_BYTES: usize = 4064;

/// zstd level for full bundles: level 1 compresses the load generator's bundles as
/// well as level 9 (8.3x) at several hundred MB/s, on the commit path.
const BUNDLE_ZSTD_LEVEL: i32 = 1;

/// The most bytes a full bundle can hold: 256 entries of at most 65,535 bytes, each
/// with its 2-byte length (C2SP tlog-tiles); a longer decompression is corruption.
const MAX_BUNDLE_BYTES: usize = TILE_WIDTH as usize * (2 + u16::MAX as usize);

/// The first layout's tables, read only to convert an old file ([`migrate_v1`]).
mod v1 {
    use redb::TableDefinition;
    pub(super) const TILES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tiles");
    pub(super) const BUNDLES: TableDefinition<u64, &[u8]> = TableDefinition::new("bundles");
    pub(super) const LEAF_INDEX: TableDefinition<&[u8], u64> = TableDefinition::new("leaf_index");
    pub(super) const ENTRY_INDEX: TableDefinition<&[u8], u64> = TableDefinition::new("entry_index");
}

/// Index rows gathered before they are flushed as runs by default: about 12 MB of
/// memory, and a flush every 65,536 entries (two rows each).
pub const DEFAULT_INDEX_FLUSH_ROWS: usize = 1 << 17;

/// Tuning of the redb backend. The defaults are what a log runs with; the crash suite
/// makes index flushes and merges frequent with them (`candor serve --redb-index-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedbOptions {
    /// Index rows gathered before they are flushed as one sorted run.
    pub index_flush_rows: usize,
    /// Records each merge in progress moves on per append, in place of
    /// [`index_runs::Budget::for_rows`]; `None` in service.
    pub index_merge_step: Option<u64>,
}

impl Default for RedbOptions {
    fn default() -> Self {
        RedbOptions {
            index_flush_rows: DEFAULT_INDEX_FLUSH_ROWS,
            index_merge_step: None,
        }
    }
}

impl RedbOptions {
    /// Refuses values that would stop the index from ever being flushed or merged.
    pub fn validate(&self) -> Result<(), StoreError> {
        if self.index_flush_rows == 0 || self.index_merge_step == Some(0) {
            return Err(StoreError::Backend(format!(
                "redb options {self:?}: the flush rows and the merge step must be positive"
            )));
        }
        Ok(())
    }
}

/// Bytes of one stored index row: which index (`L` or `E`), the hash, the leaf index
/// (little-endian).
const UNINDEXED_ROW_BYTES: usize = 1 + 32 + 8;

/// The index rows of `unindexed_rows`, for look-ups before they are flushed.
#[derive(Default)]
struct Unindexed {
    leaves: HashMap<Hash, u64>,
    entries: HashMap<Hash, u64>,
    rows: usize,
}

impl Unindexed {
    /// Adds rows in batch order, so that of two rows for one hash the later wins, as
    /// it does in the index.
    fn add(&mut self, leaves: &[(Hash, u64)], entries: &[(Hash, u64)]) {
        self.leaves.extend(leaves.iter().copied());
        self.entries.extend(entries.iter().copied());
        self.rows += leaves.len() + entries.len();
    }
}

fn encode_unindexed(leaves: &[(Hash, u64)], entries: &[(Hash, u64)], out: &mut Vec<u8>) {
    out.reserve((leaves.len() + entries.len()) * UNINDEXED_ROW_BYTES);
    for (tag, rows) in [(b'L', leaves), (b'E', entries)] {
        for (hash, index) in rows {
            out.push(tag);
            out.extend_from_slice(hash.as_bytes());
            out.extend_from_slice(&index.to_le_bytes());
        }
    }
}

/// The leaf and entry rows of one stored value of `unindexed_rows`.
type IndexRows = (Vec<(Hash, u64)>, Vec<(Hash, u64)>);

fn decode_unindexed(bytes: &[u8], rows: &mut IndexRows) -> Result<(), StoreError> {
    if !bytes.len().is_multiple_of(UNINDEXED_ROW_BYTES) {
        return Err(StoreError::Corrupt(format!(
            "an unindexed-rows value is {} bytes, not a multiple of {UNINDEXED_ROW_BYTES}",
            bytes.len()
        )));
    }
    for row in bytes.chunks_exact(UNINDEXED_ROW_BYTES) {
        let hash = Hash::from_slice(&row[1..33])
            .ok_or_else(|| StoreError::Corrupt("an unindexed row's hash".into()))?;
        let index = u64::from_le_bytes(
            row[33..]
                .try_into()
                .map_err(|_| StoreError::Corrupt("an unindexed row's index".into()))?,
        );
        match row[0] {
            b'L' => rows.0.push((hash, index)),
            b'E' => rows.1.push((hash, index)),
            t => {
                return Err(StoreError::Corrupt(format!(
                    "an unindexed row names index {t:#04x}"
                )));
            }
        }
    }
    Ok(())
}

const STATE_KEY: &str = "tree";
const CHECKPOINT_KEY: &str = "latest";

/// The redb-backed [`Store`].
pub(crate) struct RedbStore {
    // Field order matters: the database is closed before the directory lock is released.
    db: Database,
    hashes: Arc<StoredHashCache>,
    /// Index rows not flushed yet (see the module comment).
    unindexed: RwLock<Unindexed>,
    /// A filter for each live run of the entry-hash index, by run number: a look-up
    /// reads only the runs whose filter may hold its hash. A run without one here
    /// (its commit is newer than this map, for a moment) is read unfiltered.
    entry_filters: RwLock<HashMap<u32, RunFilter>>,
    /// Held through an append, from its transaction to its update of `unindexed`, so
    /// that memory follows the commits in their order. It guards the filters of the
    /// entry index's merge outputs being written, by run number, which only appends
    /// touch: each becomes a live run's filter when its merge ends.
    writer: Mutex<HashMap<u32, RunFilter>>,
    flush_rows: usize,
    /// Records each index merge moves on per append, when a test fixes it.
    merge_step: Option<u64>,
    _lock: DirLock,
}

/// redb's page cache. Its default (1 GiB) makes the server's memory grow with the log
/// up to that size (BENCHMARKS.md, "Memory"); the hot pages are the
/// partial tiles and bundles at the right edge and the upper tile levels, which fit
/// in far less.
const REDB_CACHE_BYTES: usize = 128 * 1024 * 1024;

impl RedbStore {
    /// Opens or creates the database file and makes sure every table exists.
    pub(crate) fn open(
        path: &Path,
        lock: DirLock,
        options: RedbOptions,
    ) -> Result<RedbStore, StoreError> {
        options.validate()?;
        // Verify every page checksum on open: a file damaged outside redb is then refused
        // with an error instead of being trusted (a plain open may panic on it). This reads
        // the whole file once per start, which a log server can afford.
        let mut db = Database::builder()
            .set_check_integrity_on_open(true)
            .set_cache_size(REDB_CACHE_BYTES)
            .create(path)
            .map_err(map_err)?;
        // Creating the tables up front lets readers open them without special cases.
        let txn = db.begin_write().map_err(map_err)?;
        let migrated = migrate_v1(&txn)?;
        {
            txn.open_table(STATE).map_err(map_err)?;
            txn.open_table(TILE_PARTS).map_err(map_err)?;
            txn.open_table(BUNDLE_PARTS).map_err(map_err)?;
            txn.open_table(FULL_BUNDLE_ZSTD_PARTS).map_err(map_err)?;
            txn.open_table(LEAF_INDEX).map_err(map_err)?;
            txn.open_table(ENTRY_INDEX).map_err(map_err)?;
            txn.open_table(UNINDEXED).map_err(map_err)?;
            txn.open_table(index_runs::RUN_CHUNKS).map_err(map_err)?;
            txn.open_table(index_runs::RUNS).map_err(map_err)?;
            txn.open_table(index_runs::MERGES).map_err(map_err)?;
            txn.open_table(index_runs::DEAD_RUNS).map_err(map_err)?;
            txn.open_table(META).map_err(map_err)?;
            txn.open_table(CHECKPOINT).map_err(map_err)?;
        }
        runs_from_b_trees(&txn)?;
        txn.commit().map_err(map_err)?;
        if migrated {
            // Give the old layout's pages back to the file system once.
            db.compact().map_err(map_err)?;
        }
        // The rows not flushed yet, and a filter for each run of the entry index and
        // for each of its merge outputs, from one snapshot.
        let mut rows = IndexRows::default();
        let mut entry_filters = HashMap::new();
        let mut merge_filters = HashMap::new();
        {
            let txn = db.begin_read().map_err(map_err)?;
            let table = txn.open_table(UNINDEXED).map_err(map_err)?;
            for row in table.iter().map_err(map_err)? {
                let (_, value) = row.map_err(map_err)?;
                decode_unindexed(value.value(), &mut rows)?;
            }
            let runs = txn.open_table(index_runs::RUNS).map_err(map_err)?;
            let chunks = txn.open_table(index_runs::RUN_CHUNKS).map_err(map_err)?;
            let live = index_runs::live_runs(&runs, ENTRY)?;
            for run in &live {
                entry_filters.insert(run.id, RunFilter::of_run(&chunks, ENTRY, run)?);
            }
            let merges = txn.open_table(index_runs::MERGES).map_err(map_err)?;
            for merge in index_runs::read_merges(&merges, ENTRY)? {
                let filter = RunFilter::of_merge(&chunks, ENTRY, &merge, &live)?;
                merge_filters.insert(merge.output, filter);
            }
        }
        let mut unindexed = Unindexed::default();
        unindexed.add(&rows.0, &rows.1);
        Ok(RedbStore {
            db,
            hashes: Arc::default(),
            unindexed: RwLock::new(unindexed),
            entry_filters: RwLock::new(entry_filters),
            writer: Mutex::new(merge_filters),
            flush_rows: options.index_flush_rows,
            merge_step: options.index_merge_step,
            _lock: lock,
        })
    }

    fn memory(&self) -> std::sync::RwLockReadGuard<'_, Unindexed> {
        self.unindexed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn read_txn(&self) -> Result<ReadTransaction, StoreError> {
        self.db.begin_read().map_err(map_err)
    }

    /// Reads one value, copying it out; a missing table reads as a missing key.
    fn get_bytes<K: redb::Key + 'static>(
        &self,
        table: TableDefinition<K, &'static [u8]>,
        key: K::SelfType<'_>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.read_txn()?;
        let table = match txn.open_table(table) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(map_err(e)),
        };
        Ok(table.get(key).map_err(map_err)?.map(|v| v.value().to_vec()))
    }

    /// Looks `hashes` up in index `tag` on disk, where `out` holds no answer yet: in
    /// every live run, the largest leaf index found winning, then in the B-tree of
    /// files written before runs (`legacy`), which is older than any run. One read
    /// snapshot for all of them.
    fn lookup_on_disk(
        &self,
        tag: u8,
        legacy: TableDefinition<[u8; 32], u64>,
        hashes: &[Hash],
        out: &mut [Option<u64>],
    ) -> Result<(), StoreError> {
        let txn = self.read_txn()?;
        let runs = txn.open_table(index_runs::RUNS).map_err(map_err)?;
        let chunks = txn.open_table(index_runs::RUN_CHUNKS).map_err(map_err)?;
        // In key order, so that neighbouring look-ups share pages.
        let mut order: Vec<usize> = (0..hashes.len()).filter(|&i| out[i].is_none()).collect();
        order.sort_unstable_by_key(|&i| hashes[i]);
        // Only the entry index has filters.
        let filters = (tag == ENTRY).then(|| {
            self.entry_filters
                .read()
                .unwrap_or_else(PoisonError::into_inner)
        });
        for run in index_runs::live_runs(&runs, tag)? {
            let filter = filters.as_ref().and_then(|f| f.get(&run.id));
            for &i in &order {
                if filter.is_none_or(|f| f.may_contain(&hashes[i])) {
                    let found = index_runs::probe(&chunks, tag, run.id, &hashes[i])?;
                    out[i] = out[i].max(found);
                }
            }
        }
        drop(filters);
        order.retain(|&i| out[i].is_none());
        let legacy = txn.open_table(legacy).map_err(map_err)?;
        for i in order {
            out[i] = legacy
                .get(hashes[i].as_bytes())
                .map_err(map_err)?
                .map(|v| v.value());
        }
        Ok(())
    }

    /// Reads a tile or bundle stored in parts; a missing table reads as missing parts.
    fn get_parts<K>(
        &self,
        table: TableDefinition<K, &'static [u8]>,
        key: impl Fn(u32) -> K,
    ) -> Result<Option<Vec<u8>>, StoreError>
    where
        K: redb::Key + for<'a> redb::Value<SelfType<'a> = K> + 'static,
    {
        let txn = self.read_txn()?;
        let table = match txn.open_table(table) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(map_err(e)),
        };
        read_parts(&table, key)
    }
}

impl Store for RedbStore {
    fn append(&self, batch: &Batch) -> Result<(), StoreError> {
        batch.validate()?;
        let mut merge_filters = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        // redb allows one write transaction at a time, so the size check below and the
        // writes are serialized against every other append.
        let mut txn = self.db.begin_write().map_err(map_err)?;
        txn.set_durability(Durability::Immediate).map_err(map_err)?;
        let mut entry_runs = Vec::new();
        let budget = |rows: usize| match self.merge_step {
            Some(records) => index_runs::Budget { records },
            None => index_runs::Budget::for_rows(rows),
        };
        let new_rows = batch.leaf_index.len() + batch.entry_index.len();
        let flush = {
            let memory = self
                .unindexed
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            memory.rows + new_rows >= self.flush_rows
        };
        {
            let mut state = txn.open_table(STATE).map_err(map_err)?;
            let found = match state.get(STATE_KEY).map_err(map_err)? {
                Some(v) => TreeState::decode(v.value())?.size,
                None => 0,
            };
            if found != batch.old_size {
                // Dropping `txn` uncommitted aborts it: nothing of the batch is written.
                return Err(StoreError::Conflict {
                    expected: batch.old_size,
                    found,
                });
            }
            state
                .insert(STATE_KEY, batch.new_state.encode().as_slice())
                .map_err(map_err)?;

            let mut tiles = txn.open_table(TILE_PARTS).map_err(map_err)?;
            for (id, data) in &batch.tiles {
                write_parts(&mut tiles, |p| (id.level, p, id.index), data)?;
            }
            let mut bundles = txn.open_table(BUNDLE_PARTS).map_err(map_err)?;
            let mut full = txn.open_table(FULL_BUNDLE_ZSTD_PARTS).map_err(map_err)?;
            for (index, data) in &batch.bundles {
                let entries_after = index.saturating_add(1).saturating_mul(TILE_WIDTH);
                if entries_after <= batch.new_state.size {
                    let z = zstd::bulk::compress(data, BUNDLE_ZSTD_LEVEL).map_err(|e| {
                        StoreError::Backend(format!("compressing entry bundle {index}: {e}"))
                    })?;
                    write_parts(&mut full, |p| (*index, p), &z)?;
                    remove_parts(&mut bundles, |p| (*index, p), 0)?;
                } else {
                    write_parts(&mut bundles, |p| (*index, p), data)?;
                }
            }
            let mut unindexed = txn.open_table(UNINDEXED).map_err(map_err)?;
            if flush {
                // Every row not flushed yet, in batch order, then this batch's.
                let mut rows = IndexRows::default();
                for row in unindexed.iter().map_err(map_err)? {
                    let (_, value) = row.map_err(map_err)?;
                    decode_unindexed(value.value(), &mut rows)?;
                }
                rows.0.extend_from_slice(&batch.leaf_index);
                rows.1.extend_from_slice(&batch.entry_index);
                index_runs::add_run(&txn, LEAF, &rows.0, false)?;
                entry_runs.extend(index_runs::add_run(&txn, ENTRY, &rows.1, true)?);
                unindexed.retain(|_, _| false).map_err(map_err)?;
            } else if new_rows > 0 {
                // A batch that adds rows adds leaves, so its first index is new; a row
                // already there (none is expected) is kept and extended.
                let mut value = unindexed
                    .get(batch.old_size)
                    .map_err(map_err)?
                    .map(|v| v.value().to_vec())
                    .unwrap_or_default();
                encode_unindexed(&batch.leaf_index, &batch.entry_index, &mut value);
                unindexed
                    .insert(batch.old_size, value.as_slice())
                    .map_err(map_err)?;
            }
            // Merging, a little in every append, so that none stalls.
            index_runs::step(&txn, LEAF, budget(batch.leaf_index.len()), None)?;
            entry_runs.extend(index_runs::step(
                &txn,
                ENTRY,
                budget(batch.entry_index.len()),
                Some(&mut merge_filters),
            )?);
            let mut meta = txn.open_table(META).map_err(map_err)?;
            for (key, value) in &batch.meta {
                meta.insert(key.as_str(), value.as_slice())
                    .map_err(map_err)?;
            }
            if let Some(note) = &batch.checkpoint {
                let mut table = txn.open_table(CHECKPOINT).map_err(map_err)?;
                table
                    .insert(CHECKPOINT_KEY, note.as_slice())
                    .map_err(map_err)?;
            }
        }
        // With Durability::Immediate, commit() fsyncs before returning.
        txn.commit().map_err(map_err)?;
        let mut memory = self
            .unindexed
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if flush {
            *memory = Unindexed::default();
        } else {
            memory.add(&batch.leaf_index, &batch.entry_index);
        }
        if !entry_runs.is_empty() {
            let mut filters = self
                .entry_filters
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            for change in entry_runs {
                match change {
                    RunChange::Added(id, Some(filter)) => {
                        filters.insert(id, filter);
                    }
                    RunChange::Added(_, None) => {}
                    RunChange::Merged { output, inputs } => {
                        if let Some(filter) = merge_filters.remove(&output) {
                            filters.insert(output, filter);
                        }
                        for id in inputs {
                            filters.remove(&id);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn state(&self) -> Result<Option<TreeState>, StoreError> {
        self.get_bytes(STATE, STATE_KEY)?
            .map(|bytes| TreeState::decode(&bytes))
            .transpose()
    }

    fn read_tile(&self, id: TileId) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_parts(TILE_PARTS, |p| (id.level, p, id.index))
    }

    fn read_bundle(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        // One read transaction for both tables: the commit that fills a bundle moves
        // it from one to the other, and two transactions could fall between.
        let txn = self.read_txn()?;
        let full = txn.open_table(FULL_BUNDLE_ZSTD_PARTS).map_err(map_err)?;
        if let Some(z) = read_parts(&full, |p| (index, p))? {
            return decompress_bundle(index, &z).map(Some);
        }
        let partial = txn.open_table(BUNDLE_PARTS).map_err(map_err)?;
        read_parts(&partial, |p| (index, p))
    }

    fn lookup_leaf(&self, leaf_hash: &Hash) -> Result<Option<u64>, StoreError> {
        // Rows not flushed yet are the newer ones, so they win.
        let mut out = [self.memory().leaves.get(leaf_hash).copied()];
        if out[0].is_none() {
            self.lookup_on_disk(LEAF, LEAF_INDEX, std::slice::from_ref(leaf_hash), &mut out)?;
        }
        Ok(out[0])
    }

    fn lookup_entry(&self, entry_hash: &Hash) -> Result<Option<u64>, StoreError> {
        Ok(self.lookup_entries(std::slice::from_ref(entry_hash))?[0])
    }

    fn lookup_entries(&self, entry_hashes: &[Hash]) -> Result<Vec<Option<u64>>, StoreError> {
        let mut out: Vec<Option<u64>> = {
            let memory = self.memory();
            entry_hashes
                .iter()
                .map(|h| memory.entries.get(h).copied())
                .collect()
        };
        if out.iter().any(Option::is_none) {
            self.lookup_on_disk(ENTRY, ENTRY_INDEX, entry_hashes, &mut out)?;
        }
        Ok(out)
    }

    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_bytes(META, key)
    }

    fn scan_meta(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.read_txn()?;
        let table = match txn.open_table(META) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(map_err(e)),
        };
        let mut out = Vec::new();
        // &str keys sort by their bytes, so the rows with this prefix are contiguous
        // starting at the prefix itself.
        for row in table.range(prefix..).map_err(map_err)? {
            let (key, value) = row.map_err(map_err)?;
            let key = key.value();
            if !key.starts_with(prefix) {
                break;
            }
            out.push((key.to_string(), value.value().to_vec()));
        }
        Ok(out)
    }

    fn put_checkpoint(&self, note: &[u8]) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(map_err)?;
        txn.set_durability(Durability::Immediate).map_err(map_err)?;
        {
            let mut table = txn.open_table(CHECKPOINT).map_err(map_err)?;
            table.insert(CHECKPOINT_KEY, note).map_err(map_err)?;
        }
        txn.commit().map_err(map_err)
    }

    fn checkpoint(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_bytes(CHECKPOINT, CHECKPOINT_KEY)
    }

    fn kind(&self) -> StoreKind {
        StoreKind::Redb
    }

    fn hash_cache(&self) -> Option<Arc<StoredHashCache>> {
        Some(self.hashes.clone())
    }
}

/// Stores `data` as parts `key(0)`, `key(1)`, ... of at most [`PART_BYTES`] each,
/// replacing the previous version. Parts whose bytes did not change are not rewritten:
/// a partial bundle or tile that grew changes only its last part and adds new ones.
/// Empty data is one empty part, so it reads back as present.
fn write_parts<K>(
    table: &mut Table<K, &'static [u8]>,
    key: impl Fn(u32) -> K,
    data: &[u8],
) -> Result<(), StoreError>
where
    K: redb::Key + for<'a> redb::Value<SelfType<'a> = K> + 'static,
{
    let chunks: Vec<&[u8]> = if data.is_empty() {
        vec![data]
    } else {
        data.chunks(PART_BYTES).collect()
    };
    let too_many = || {
        StoreError::InvalidBatch(format!(
            "a value of {} bytes needs more than 2^32 parts of {PART_BYTES} bytes",
            data.len()
        ))
    };
    for (part, chunk) in chunks.iter().enumerate() {
        let k = key(u32::try_from(part).map_err(|_| too_many())?);
        let same = table
            .get(&k)
            .map_err(map_err)?
            .is_some_and(|old| old.value() == *chunk);
        if !same {
            table.insert(&k, *chunk).map_err(map_err)?;
        }
    }
    // A shorter version leaves parts past its end (the log itself only grows values).
    remove_parts(
        table,
        key,
        u32::try_from(chunks.len()).map_err(|_| too_many())?,
    )
}

/// Removes parts `key(from)`, `key(from + 1)`, ... up to the first missing one.
fn remove_parts<K>(
    table: &mut Table<K, &'static [u8]>,
    key: impl Fn(u32) -> K,
    from: u32,
) -> Result<(), StoreError>
where
    K: redb::Key + for<'a> redb::Value<SelfType<'a> = K> + 'static,
{
    let mut part = from;
    while table.remove(key(part)).map_err(map_err)?.is_some() {
        part = part
            .checked_add(1)
            .ok_or_else(|| StoreError::Corrupt("a stored value has too many parts".into()))?;
    }
    Ok(())
}

/// Decompresses a full bundle, refusing anything longer than a bundle can be.
fn decompress_bundle(index: u64, z: &[u8]) -> Result<Vec<u8>, StoreError> {
    let corrupt = |why: String| StoreError::Corrupt(format!("entry bundle {index}: {why}"));
    // The frame header carries the size (bulk compression records it): allocate once.
    let size = zstd::zstd_safe::get_frame_content_size(z)
        .ok()
        .flatten()
        .ok_or_else(|| corrupt("the zstd frame does not state its size".into()))?;
    let size = usize::try_from(size)
        .ok()
        .filter(|&n| n <= MAX_BUNDLE_BYTES)
        .ok_or_else(|| corrupt(format!("the zstd frame claims {size} bytes")))?;
    let out = zstd::bulk::decompress(z, size).map_err(|e| corrupt(e.to_string()))?;
    if out.len() != size {
        return Err(corrupt(format!(
            "{} bytes decompressed, the frame claims {size}",
            out.len()
        )));
    }
    Ok(out)
}

/// Reads a value stored by [`write_parts`]: its parts concatenated, `None` if it has none.
fn read_parts<K, T>(table: &T, key: impl Fn(u32) -> K) -> Result<Option<Vec<u8>>, StoreError>
where
    K: redb::Key + for<'a> redb::Value<SelfType<'a> = K> + 'static,
    T: ReadableTable<K, &'static [u8]>,
{
    let Some(first) = table.get(key(0)).map_err(map_err)? else {
        return Ok(None);
    };
    let mut out = first.value().to_vec();
    drop(first);
    // Only the last part of a value may be shorter than PART_BYTES.
    let mut last = out.len();
    let mut part = 1u32;
    while last == PART_BYTES {
        let Some(v) = table.get(key(part)).map_err(map_err)? else {
            break;
        };
        let v = v.value();
        last = v.len();
        out.extend_from_slice(v);
        part = part
            .checked_add(1)
            .ok_or_else(|| StoreError::Corrupt("a stored value has too many parts".into()))?;
    }
    Ok(Some(out))
}

/// Converts a file written with the first layout (whole tiles and bundles, variable-
/// width index keys): copies every row into the current tables and deletes the old
/// ones, in the caller's transaction, so a crash leaves either layout complete.
/// Returns whether there was anything to convert.
fn migrate_v1(txn: &WriteTransaction) -> Result<bool, StoreError> {
    let names: Vec<String> = txn
        .list_tables()
        .map_err(map_err)?
        .map(|t| t.name().to_string())
        .collect();
    let has = |t: &str| names.iter().any(|n| n == t);
    if !has(v1::TILES.name()) && !has(v1::BUNDLES.name()) {
        return Ok(false);
    }
    let key32 = |k: &[u8]| {
        <[u8; 32]>::try_from(k).map_err(|_| {
            StoreError::Corrupt(format!("stored hash key is {} bytes, expected 32", k.len()))
        })
    };
    {
        let old = txn.open_table(v1::TILES).map_err(map_err)?;
        let mut new = txn.open_table(TILE_PARTS).map_err(map_err)?;
        for row in old.iter().map_err(map_err)? {
            let (k, v) = row.map_err(map_err)?;
            let id = TileId::from_key(k.value())?;
            write_parts(&mut new, |p| (id.level, p, id.index), v.value())?;
        }
        let old = txn.open_table(v1::BUNDLES).map_err(map_err)?;
        let mut new = txn.open_table(BUNDLE_PARTS).map_err(map_err)?;
        for row in old.iter().map_err(map_err)? {
            let (k, v) = row.map_err(map_err)?;
            let index = k.value();
            write_parts(&mut new, |p| (index, p), v.value())?;
        }
        for (old, new) in [(v1::LEAF_INDEX, LEAF_INDEX), (v1::ENTRY_INDEX, ENTRY_INDEX)] {
            let old = txn.open_table(old).map_err(map_err)?;
            let mut new = txn.open_table(new).map_err(map_err)?;
            for row in old.iter().map_err(map_err)? {
                let (k, v) = row.map_err(map_err)?;
                new.insert(key32(k.value())?, v.value()).map_err(map_err)?;
            }
        }
    }
    txn.delete_table(v1::TILES).map_err(map_err)?;
    txn.delete_table(v1::BUNDLES).map_err(map_err)?;
    txn.delete_table(v1::LEAF_INDEX).map_err(map_err)?;
    txn.delete_table(v1::ENTRY_INDEX).map_err(map_err)?;
    Ok(true)
}

/// Turns the B-tree indexes of a file written before runs into each index's oldest
/// run, in key order (one sequential pass), and empties them; part of the opening
/// transaction. Runs of the top level are never merged, so the old rows are not
/// rewritten again. (An index that has runs already keeps its B-tree, read after them.)
fn runs_from_b_trees(txn: &WriteTransaction) -> Result<(), StoreError> {
    use redb::ReadableTableMetadata;
    for (tag, table) in [(LEAF, LEAF_INDEX), (ENTRY, ENTRY_INDEX)] {
        let imported = {
            let legacy = txn.open_table(table).map_err(map_err)?;
            if legacy.is_empty().map_err(map_err)? {
                continue;
            }
            let rows = legacy.iter().map_err(map_err)?.map(|row| {
                let (k, v) = row.map_err(map_err)?;
                Ok((k.value(), v.value()))
            });
            index_runs::import_sorted(txn, tag, rows, index_runs::TOP_LEVEL)?
        };
        if imported {
            // Deleting the table frees its pages at once; an empty one is made again.
            txn.delete_table(table).map_err(map_err)?;
            txn.open_table(table).map_err(map_err)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_core::hash::sha256;

    fn bytes(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
    }

    #[test]
    fn parts_round_trip_grow_and_shrink() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(crate::REDB_FILE);
        let store = RedbStore::open(
            &path,
            DirLock::acquire(dir.path()).unwrap(),
            RedbOptions::default(),
        )
        .unwrap();
        // Sizes around the part boundary, growing as the log's values do, then shrinking
        // as only a direct user of the store could make them.
        let sizes = [
            0,
            1,
            PART_BYTES - 1,
            PART_BYTES,
            PART_BYTES + 1,
            3 * PART_BYTES + 5,
            7,
        ];
        for (round, &n) in sizes.iter().enumerate() {
            let value = bytes(n, round as u8);
            let mut batch = Batch::new(
                0,
                TreeState {
                    size: 0,
                    root: sha256(b""),
                },
            );
            batch.bundles.push((3, value.clone()));
            batch
                .tiles
                .push((TileId { level: 1, index: 2 }, value.clone()));
            store.append(&batch).unwrap();
            assert_eq!(
                store.read_bundle(3).unwrap(),
                Some(value.clone()),
                "bundle of {n} bytes"
            );
            let tile = store.read_tile(TileId { level: 1, index: 2 }).unwrap();
            assert_eq!(tile, Some(value), "tile of {n} bytes");
        }
        assert_eq!(store.read_bundle(2).unwrap(), None);
        assert_eq!(
            store.read_tile(TileId { level: 0, index: 2 }).unwrap(),
            None
        );
    }

    #[test]
    fn first_layout_is_converted_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(crate::REDB_FILE);
        let state = TreeState {
            size: 300,
            root: sha256(b"root"),
        };
        let tile_id = TileId { level: 0, index: 1 };
        let tile = bytes(8192, 1);
        let bundle = bytes(3 * PART_BYTES + 100, 2);
        let (leaf, entry) = (sha256(b"leaf"), sha256(b"entry"));
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(STATE).unwrap();
                t.insert(STATE_KEY, state.encode().as_slice()).unwrap();
                let mut t = txn.open_table(v1::TILES).unwrap();
                t.insert(tile_id.to_key().as_slice(), tile.as_slice())
                    .unwrap();
                let mut t = txn.open_table(v1::BUNDLES).unwrap();
                t.insert(1, bundle.as_slice()).unwrap();
                let mut t = txn.open_table(v1::LEAF_INDEX).unwrap();
                t.insert(leaf.as_bytes().as_slice(), 7).unwrap();
                let mut t = txn.open_table(v1::ENTRY_INDEX).unwrap();
                t.insert(entry.as_bytes().as_slice(), 9).unwrap();
            }
            txn.commit().unwrap();
        }
        for _ in 0..2 {
            // The second open finds the converted file and has nothing to do.
            let store = RedbStore::open(
                &path,
                DirLock::acquire(dir.path()).unwrap(),
                RedbOptions::default(),
            )
            .unwrap();
            assert_eq!(store.state().unwrap(), Some(state));
            assert_eq!(store.read_tile(tile_id).unwrap(), Some(tile.clone()));
            assert_eq!(store.read_bundle(1).unwrap(), Some(bundle.clone()));
            assert_eq!(store.lookup_leaf(&leaf).unwrap(), Some(7));
            assert_eq!(store.lookup_entry(&entry).unwrap(), Some(9));
            assert_eq!(store.lookup_entry(&leaf).unwrap(), None);
            let txn = store.db.begin_read().unwrap();
            let names: Vec<String> = txn
                .list_tables()
                .unwrap()
                .map(|t| t.name().to_string())
                .collect();
            for old in ["tiles", "bundles", "leaf_index", "entry_index"] {
                assert!(!names.iter().any(|n| n == old), "{old} still in {names:?}");
            }
        }
    }

    /// The store in `dir`, flushing its index rows every `rows` rows.
    fn open_flushing_every(dir: &std::path::Path, rows: usize) -> RedbStore {
        let path = dir.join(crate::REDB_FILE);
        let mut store = RedbStore::open(
            &path,
            DirLock::acquire(dir).unwrap(),
            RedbOptions::default(),
        )
        .unwrap();
        store.flush_rows = rows;
        store
    }

    /// Merges a few records per append, the store reopened every so often while
    /// they are in progress: every row is found at its latest index after each
    /// append, every live run of the entry index and every merge output being written
    /// has its filter (rebuilt on open), and the merges end.
    #[test]
    fn merges_resume_after_a_reopen_and_keep_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            let mut store = open_flushing_every(dir.path(), 20);
            store.merge_step = Some(3);
            store
        };
        let leaf = |i: u64| sha256(&[b'l', (i % 251) as u8, (i / 251) as u8]);
        let entry = |i: u64| sha256(&[b'e', (i % 251) as u8, (i / 251) as u8]);
        let mut store = open();
        let mut caught = 0;
        for size in 0..600u64 {
            let mut batch = Batch::new(
                size,
                TreeState {
                    size: size + 1,
                    root: sha256(&size.to_be_bytes()),
                },
            );
            batch.leaf_index.push((leaf(size), size));
            batch.entry_index.push((entry(size), size));
            store.append(&batch).unwrap();
            if size % 37 == 36 {
                drop(store);
                store = open();
            }
            let txn = store.db.begin_read().unwrap();
            let runs = txn.open_table(index_runs::RUNS).unwrap();
            let live: Vec<u32> = index_runs::live_runs(&runs, ENTRY)
                .unwrap()
                .iter()
                .map(|r| r.id)
                .collect();
            let merges = txn.open_table(index_runs::MERGES).unwrap();
            let mut outputs: Vec<u32> = index_runs::read_merges(&merges, ENTRY)
                .unwrap()
                .iter()
                .map(|m| m.output)
                .collect();
            outputs.sort_unstable();
            caught += usize::from(!outputs.is_empty());
            let mut filtered: Vec<u32> = store
                .entry_filters
                .read()
                .unwrap()
                .keys()
                .copied()
                .collect();
            filtered.sort_unstable();
            let mut want = live.clone();
            want.sort_unstable();
            assert_eq!(filtered, want, "after {size}");
            let mut building: Vec<u32> = store.writer.lock().unwrap().keys().copied().collect();
            building.sort_unstable();
            assert_eq!(building, outputs, "after {size}");
            if size % 10 == 0 {
                for i in 0..=size {
                    assert_eq!(
                        store.lookup_leaf(&leaf(i)).unwrap(),
                        Some(i),
                        "{i} after {size}"
                    );
                }
                let asked: Vec<Hash> = (0..=size + 1).map(entry).collect();
                let mut want: Vec<Option<u64>> = (0..=size).map(Some).collect();
                want.push(None);
                assert_eq!(store.lookup_entries(&asked).unwrap(), want);
            }
        }
        assert!(caught > 100, "merges were in progress at {caught} appends");
        // Appends that add no rows still move merges on, and end them all.
        let idle = |store: &RedbStore| {
            use redb::ReadableTableMetadata;
            let txn = store.db.begin_read().unwrap();
            let merges = txn.open_table(index_runs::MERGES).unwrap();
            let dead = txn.open_table(index_runs::DEAD_RUNS).unwrap();
            merges.is_empty().unwrap() && dead.is_empty().unwrap()
        };
        let state = TreeState {
            size: 600,
            root: sha256(b"no rows"),
        };
        let mut appends = 0;
        while !idle(&store) && appends < 2000 {
            store.append(&Batch::new(600, state)).unwrap();
            appends += 1;
        }
        assert!(
            idle(&store),
            "merges still in progress after {appends} appends"
        );
        assert!(store.writer.lock().unwrap().is_empty());
        for i in 0..600 {
            assert_eq!(store.lookup_leaf(&leaf(i)).unwrap(), Some(i));
        }
    }

    /// Index rows are found in memory, in runs once flushed, and after a reopen; a
    /// later row for a hash wins; a refused append leaves no trace.
    #[test]
    fn index_rows_are_found_before_and_after_their_flush_and_a_reopen() {
        use redb::ReadableTableMetadata;
        let dir = tempfile::tempdir().unwrap();
        let open = || open_flushing_every(dir.path(), 10);
        let state = |size: u64| TreeState {
            size,
            root: sha256(&size.to_be_bytes()),
        };
        let leaf = |i: u64| sha256(&[b'l', i as u8]);
        let entry = |i: u64| sha256(&[b'e', i as u8]);
        // Records in the index's runs.
        let count = |store: &RedbStore, tag: u8| -> u64 {
            let txn = store.db.begin_read().unwrap();
            let runs = txn.open_table(index_runs::RUNS).unwrap();
            index_runs::live_runs(&runs, tag)
                .unwrap()
                .iter()
                .map(|r| r.records)
                .sum()
        };
        let unindexed = |store: &RedbStore| -> u64 {
            store
                .db
                .begin_read()
                .unwrap()
                .open_table(UNINDEXED)
                .unwrap()
                .len()
                .unwrap()
        };
        let check = |store: &RedbStore, size: u64| {
            for i in 0..size {
                assert_eq!(store.lookup_leaf(&leaf(i)).unwrap(), Some(i), "leaf {i}");
                assert_eq!(store.lookup_entry(&entry(i)).unwrap(), Some(i), "entry {i}");
            }
            let asked: Vec<Hash> = (0..=size).rev().map(entry).collect();
            let mut want: Vec<Option<u64>> = (0..size).rev().map(Some).collect();
            want.insert(0, None);
            assert_eq!(store.lookup_entries(&asked).unwrap(), want);
            assert_eq!(store.lookup_leaf(&leaf(size)).unwrap(), None);
        };
        let append = |store: &RedbStore, from: u64, to: u64| {
            let mut batch = Batch::new(from, state(to));
            for i in from..to {
                batch.leaf_index.push((leaf(i), i));
                batch.entry_index.push((entry(i), i));
            }
            store.append(&batch).unwrap();
        };
        {
            let store = open();
            // 2 + 2 rows: below the flush size, only in `unindexed_rows`.
            append(&store, 0, 2);
            append(&store, 2, 4);
            assert_eq!((count(&store, LEAF), unindexed(&store)), (0, 2));
            check(&store, 4);
            // 8 + 4 ≥ 10: this commit flushes all six entries' rows.
            append(&store, 4, 6);
            assert_eq!(count(&store, LEAF), 6);
            assert_eq!(count(&store, ENTRY), 6);
            assert_eq!(unindexed(&store), 0);
            check(&store, 6);
            append(&store, 6, 9);
            check(&store, 9);
        }
        // Rows not flushed are read back on open.
        let store = open();
        // Every live run of the entry index has its filter again, rebuilt on open.
        let live = {
            let txn = store.db.begin_read().unwrap();
            let runs = txn.open_table(index_runs::RUNS).unwrap();
            index_runs::live_runs(&runs, ENTRY).unwrap().len()
        };
        assert_eq!(live, 1);
        assert_eq!(store.entry_filters.read().unwrap().len(), live);
        assert_eq!((count(&store, LEAF), unindexed(&store)), (6, 1));
        check(&store, 9);
        // A later row for a hash wins over an earlier one, flushed or not.
        let mut batch = Batch::new(9, state(10));
        batch.leaf_index.push((leaf(0), 9));
        store.append(&batch).unwrap();
        assert_eq!(store.lookup_leaf(&leaf(0)).unwrap(), Some(9));
        append(&store, 10, 12);
        assert_eq!(unindexed(&store), 0, "flushed");
        assert_eq!(store.lookup_leaf(&leaf(0)).unwrap(), Some(9));
        // A refused append changes nothing, in the file or in memory.
        let mut stale = Batch::new(3, state(20));
        stale.leaf_index.push((leaf(50), 19));
        assert!(store.append(&stale).is_err());
        assert_eq!(store.lookup_leaf(&leaf(50)).unwrap(), None);
        drop(store);
        let store = open();
        assert_eq!(store.lookup_leaf(&leaf(0)).unwrap(), Some(9));
        assert_eq!(store.lookup_entry(&entry(11)).unwrap(), Some(11));
    }

    /// A file from before runs keeps its rows in one B-tree per index: opening it makes
    /// them each index's oldest run, and rows flushed since, in newer runs, win.
    #[test]
    fn b_tree_indexes_of_older_files_become_their_oldest_runs() {
        use redb::ReadableTableMetadata;
        let dir = tempfile::tempdir().unwrap();
        let open = || open_flushing_every(dir.path(), 4);
        let (old, both, new) = (sha256(b"old"), sha256(b"both"), sha256(b"new"));
        // 250 more rows, so that the run spans chunks.
        let many: Vec<Hash> = (0..250u32).map(|i| sha256(&i.to_be_bytes())).collect();
        {
            let store = open();
            let txn = store.db.begin_write().unwrap();
            {
                let mut leaves = txn.open_table(LEAF_INDEX).unwrap();
                leaves.insert(old.as_bytes(), 1).unwrap();
                leaves.insert(both.as_bytes(), 2).unwrap();
                let mut entries = txn.open_table(ENTRY_INDEX).unwrap();
                entries.insert(old.as_bytes(), 1).unwrap();
                for (i, h) in many.iter().enumerate() {
                    entries.insert(h.as_bytes(), 10 + i as u64).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let store = open();
        {
            let txn = store.db.begin_read().unwrap();
            assert!(txn.open_table(LEAF_INDEX).unwrap().is_empty().unwrap());
            assert!(txn.open_table(ENTRY_INDEX).unwrap().is_empty().unwrap());
            let runs = txn.open_table(index_runs::RUNS).unwrap();
            let top = index_runs::TOP_LEVEL;
            let shape = |tag| -> Vec<(u8, u64)> {
                index_runs::live_runs(&runs, tag)
                    .unwrap()
                    .iter()
                    .map(|r| (r.level, r.records))
                    .collect()
            };
            assert_eq!(shape(LEAF), [(top, 2)]);
            assert_eq!(shape(ENTRY), [(top, 251)]);
        }
        assert_eq!(store.entry_filters.read().unwrap().len(), 1);
        assert_eq!(store.lookup_leaf(&old).unwrap(), Some(1));
        assert_eq!(store.lookup_leaf(&both).unwrap(), Some(2));
        for (i, h) in many.iter().enumerate() {
            assert_eq!(store.lookup_entry(h).unwrap(), Some(10 + i as u64));
        }
        let mut batch = Batch::new(
            0,
            TreeState {
                size: 9,
                root: sha256(b"root"),
            },
        );
        batch.leaf_index = vec![(both, 7), (new, 8)];
        batch.entry_index = vec![(both, 7), (new, 8)];
        store.append(&batch).unwrap();
        assert_eq!(store.memory().rows, 0, "flushed to runs");
        assert_eq!(store.lookup_leaf(&old).unwrap(), Some(1));
        assert_eq!(store.lookup_leaf(&both).unwrap(), Some(7));
        assert_eq!(store.lookup_leaf(&new).unwrap(), Some(8));
        assert_eq!(
            store
                .lookup_entries(&[new, old, both, many[7], sha256(b"none")])
                .unwrap(),
            vec![Some(8), Some(1), Some(7), Some(17), None]
        );
    }

    #[test]
    fn damaged_unindexed_rows_are_corrupt() {
        let mut rows = IndexRows::default();
        assert!(matches!(
            decode_unindexed(&[b'L'; 40], &mut rows),
            Err(StoreError::Corrupt(_))
        ));
        let mut row = vec![b'X'];
        row.extend_from_slice(&[0; 40]);
        assert!(matches!(
            decode_unindexed(&row, &mut rows),
            Err(StoreError::Corrupt(_))
        ));
        let mut good = Vec::new();
        encode_unindexed(&[(sha256(b"a"), 7)], &[(sha256(b"b"), 8)], &mut good);
        decode_unindexed(&good, &mut rows).unwrap();
        assert_eq!(rows, (vec![(sha256(b"a"), 7)], vec![(sha256(b"b"), 8)]));
    }

    /// A bundle is stored uncompressed while partial and compressed, with its
    /// uncompressed parts deleted, by the batch that fills it; both read back exactly.
    #[test]
    fn full_bundles_are_stored_compressed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(crate::REDB_FILE);
        let store = RedbStore::open(
            &path,
            DirLock::acquire(dir.path()).unwrap(),
            RedbOptions::default(),
        )
        .unwrap();
        let entry = |i: usize| -> Vec<u8> {
            let leaf = format!(
                "{{\"entry\":{{\"n\":{i}}},\"pad\":\"{}\"}}",
                "x".repeat(900)
            );
            [
                (leaf.len() as u16).to_be_bytes().as_slice(),
                leaf.as_bytes(),
            ]
            .concat()
        };
        let bundle = |n: usize| -> Vec<u8> { (0..n).flat_map(entry).collect() };
        let state = |size: u64| TreeState {
            size,
            root: sha256(&size.to_be_bytes()),
        };
        let rows = |table: TableDefinition<(u64, u32), &'static [u8]>, index: u64| -> usize {
            let txn = store.db.begin_read().unwrap();
            let t = txn.open_table(table).unwrap();
            t.range((index, 0)..=(index, u32::MAX)).unwrap().count()
        };
        let mut batch = Batch::new(0, state(100));
        batch.bundles.push((0, bundle(100)));
        store.append(&batch).unwrap();
        assert_eq!(store.read_bundle(0).unwrap(), Some(bundle(100)));
        assert!(rows(BUNDLE_PARTS, 0) > 0);
        assert_eq!(rows(FULL_BUNDLE_ZSTD_PARTS, 0), 0);

        let mut batch = Batch::new(100, state(300));
        batch.bundles.push((0, bundle(256)));
        batch.bundles.push((1, bundle(44)));
        store.append(&batch).unwrap();
        assert_eq!(store.read_bundle(0).unwrap(), Some(bundle(256)));
        assert_eq!(store.read_bundle(1).unwrap(), Some(bundle(44)));
        assert_eq!(rows(BUNDLE_PARTS, 0), 0, "uncompressed parts deleted");
        let z = rows(FULL_BUNDLE_ZSTD_PARTS, 0);
        assert!(
            z > 0 && z * 4 < rows(BUNDLE_PARTS, 1) * 256 / 44,
            "{z} parts"
        );
        assert_eq!(rows(FULL_BUNDLE_ZSTD_PARTS, 1), 0);
        drop(store);
        let store = RedbStore::open(
            &path,
            DirLock::acquire(dir.path()).unwrap(),
            RedbOptions::default(),
        )
        .unwrap();
        assert_eq!(store.read_bundle(0).unwrap(), Some(bundle(256)));
    }

    /// A damaged or oversized compressed bundle is an error, never a panic or a
    /// huge allocation.
    #[test]
    fn bad_compressed_bundles_are_corrupt() {
        assert!(matches!(
            decompress_bundle(4, b"not zstd"),
            Err(StoreError::Corrupt(_))
        ));
        let big = vec![0u8; MAX_BUNDLE_BYTES + 1];
        let z = zstd::bulk::compress(&big, 1).unwrap();
        let err = decompress_bundle(4, &z).unwrap_err();
        assert!(err.to_string().contains("claims"), "{err}");
        let ok = vec![7u8; 1000];
        let mut z = zstd::bulk::compress(&ok, 1).unwrap();
        let last = z.len() - 1;
        z[last] ^= 0xff;
        assert!(decompress_bundle(4, &z).is_err());
        assert_eq!(
            decompress_bundle(4, &zstd::bulk::compress(&ok, 1).unwrap()).unwrap(),
            ok
        );
    }
}
