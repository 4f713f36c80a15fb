//! redb backend: one database file, one write transaction per batch, committed with
//! `Durability::Immediate` (fsync before `commit()` returns).

use super::{Batch, DirLock, Store, StoreError, StoreKind, TileId, TreeState};
use crate::hash::Hash;
use crate::tiles::StoredHashCache;
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    TableError,
};
use std::path::Path;
use std::sync::Arc;

/// Single row "tree": the encoded [`TreeState`].
const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");
/// 9-byte [`TileId::to_key`] -> tile bytes.
const TILES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tiles");
/// Bundle index -> bundle bytes.
const BUNDLES: TableDefinition<u64, &[u8]> = TableDefinition::new("bundles");
/// 32-byte leaf hash -> leaf index.
const LEAF_INDEX: TableDefinition<&[u8], u64> = TableDefinition::new("leaf_index");
/// 32-byte entry hash -> leaf index.
const ENTRY_INDEX: TableDefinition<&[u8], u64> = TableDefinition::new("entry_index");
/// Metadata key -> value.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Single row "latest": the latest checkpoint note.
const CHECKPOINT: TableDefinition<&str, &[u8]> = TableDefinition::new("checkpoint");

const STATE_KEY: &str = "tree";
const CHECKPOINT_KEY: &str = "latest";

/// The redb-backed [`Store`].
pub(crate) struct RedbStore {
    // Field order matters: the database is closed before the directory lock is released.
    db: Database,
    hashes: Arc<StoredHashCache>,
    _lock: DirLock,
}

/// Maps any redb error to a [`StoreError`].
fn map_err(err: impl Into<redb::Error>) -> StoreError {
    let err: redb::Error = err.into();
    match err {
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => {
            StoreError::InUse(format!("redb database ({err})"))
        }
        redb::Error::Corrupted(msg) => StoreError::Corrupt(msg),
        redb::Error::Io(e) => StoreError::from_io("redb", &e),
        redb::Error::PreviousIo => StoreError::Io(
            "an earlier write failed (disk full or I/O error) and redb refuses every further \
             write until the store is reopened: free space or fix the disk, then restart \
             the log (nothing acknowledged was lost)"
                .into(),
        ),
        other => StoreError::Backend(format!("redb: {other}")),
    }
}

/// redb's page cache. Its default (1 GiB) made the server's memory grow with the log
/// up to that size (BENCHMARKS.md, 10^6 entries: 1.4 GB); the hot pages are the
/// partial tiles and bundles at the right edge and the upper tile levels, which fit
/// in far less.
const REDB_CACHE_BYTES: usize = 128 * 1024 * 1024;

impl RedbStore {
    /// Opens or creates the database file and makes sure every table exists.
    pub(crate) fn open(path: &Path, lock: DirLock) -> Result<RedbStore, StoreError> {
        // Verify every page checksum on open: a file damaged outside redb is then refused
        // with an error instead of being trusted (a plain open may panic on it). This reads
        // the whole file once per start, which a log server can afford.
        let db = Database::builder()
            .set_check_integrity_on_open(true)
            .set_cache_size(REDB_CACHE_BYTES)
            .create(path)
            .map_err(map_err)?;
        // Creating the tables up front lets readers open them without special cases.
        let txn = db.begin_write().map_err(map_err)?;
        {
            txn.open_table(STATE).map_err(map_err)?;
            txn.open_table(TILES).map_err(map_err)?;
            txn.open_table(BUNDLES).map_err(map_err)?;
            txn.open_table(LEAF_INDEX).map_err(map_err)?;
            txn.open_table(ENTRY_INDEX).map_err(map_err)?;
            txn.open_table(META).map_err(map_err)?;
            txn.open_table(CHECKPOINT).map_err(map_err)?;
        }
        txn.commit().map_err(map_err)?;
        Ok(RedbStore {
            db,
            hashes: Arc::default(),
            _lock: lock,
        })
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

    fn get_index(
        &self,
        table: TableDefinition<&'static [u8], u64>,
        hash: &Hash,
    ) -> Result<Option<u64>, StoreError> {
        let txn = self.read_txn()?;
        let table = match txn.open_table(table) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(map_err(e)),
        };
        Ok(table
            .get(hash.as_bytes().as_slice())
            .map_err(map_err)?
            .map(|v| v.value()))
    }
}

impl Store for RedbStore {
    fn append(&self, batch: &Batch) -> Result<(), StoreError> {
        batch.validate()?;
        // redb allows one write transaction at a time, so the size check below and the
        // writes are serialized against every other append.
        let mut txn = self.db.begin_write().map_err(map_err)?;
        txn.set_durability(Durability::Immediate).map_err(map_err)?;
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

            let mut tiles = txn.open_table(TILES).map_err(map_err)?;
            for (id, data) in &batch.tiles {
                tiles
                    .insert(id.to_key().as_slice(), data.as_slice())
                    .map_err(map_err)?;
            }
            let mut bundles = txn.open_table(BUNDLES).map_err(map_err)?;
            for (index, data) in &batch.bundles {
                bundles.insert(*index, data.as_slice()).map_err(map_err)?;
            }
            let mut leaves = txn.open_table(LEAF_INDEX).map_err(map_err)?;
            for (hash, index) in &batch.leaf_index {
                leaves
                    .insert(hash.as_bytes().as_slice(), *index)
                    .map_err(map_err)?;
            }
            let mut entries = txn.open_table(ENTRY_INDEX).map_err(map_err)?;
            for (hash, index) in &batch.entry_index {
                entries
                    .insert(hash.as_bytes().as_slice(), *index)
                    .map_err(map_err)?;
            }
            let mut meta = txn.open_table(META).map_err(map_err)?;
            for (key, value) in &batch.meta {
                meta.insert(key.as_str(), value.as_slice())
                    .map_err(map_err)?;
            }
        }
        // With Durability::Immediate, commit() fsyncs before returning.
        txn.commit().map_err(map_err)
    }

    fn state(&self) -> Result<Option<TreeState>, StoreError> {
        self.get_bytes(STATE, STATE_KEY)?
            .map(|bytes| TreeState::decode(&bytes))
            .transpose()
    }

    fn read_tile(&self, id: TileId) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_bytes(TILES, id.to_key().as_slice())
    }

    fn read_bundle(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_bytes(BUNDLES, index)
    }

    fn lookup_leaf(&self, leaf_hash: &Hash) -> Result<Option<u64>, StoreError> {
        self.get_index(LEAF_INDEX, leaf_hash)
    }

    fn lookup_entry(&self, entry_hash: &Hash) -> Result<Option<u64>, StoreError> {
        self.get_index(ENTRY_INDEX, entry_hash)
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
