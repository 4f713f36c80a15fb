//! sled 0.34 backend: one tree per table, one multi-tree transaction per batch, then
//! `Db::flush()` (write out and fsync sled's log) before `append` returns.
//!
//! A failed transaction or flush may leave part of the batch applied in sled's memory
//! (seen on a full disk: a tree size from the failed batch beside a tile from the one
//! before). So after the first failed write the store refuses writes and tree-state
//! reads until it is reopened, which recovers sled's durable log prefix, like redb.

use super::{
    Batch, DirLock, Store, StoreError, StoreKind, TileId, TreeState, decode_meta_key, decode_u64,
};
use candor_core::hash::Hash;
use candor_core::tiles::StoredHashCache;
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use sled::{Db, Tree};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

const STATE_KEY: &[u8] = b"tree";
const CHECKPOINT_KEY: &[u8] = b"latest";

/// The sled-backed [`Store`].
pub(crate) struct SledStore {
    // Field order matters: the trees and the database are closed before the directory
    // lock is released.
    state: Tree,
    tiles: Tree,
    bundles: Tree,
    leaf_index: Tree,
    entry_index: Tree,
    meta: Tree,
    checkpoint: Tree,
    db: Db,
    /// Serializes appends, so that the size check and the write cannot interleave with
    /// another append even if sled's optimistic transactions would allow it.
    append_lock: Mutex<()>,
    /// Set by the first failed write; see the module doc.
    failed: AtomicBool,
    hashes: Arc<StoredHashCache>,
    _lock: DirLock,
}

/// Maps a sled error to a [`StoreError`].
fn map_err(err: sled::Error) -> StoreError {
    match err {
        // sled reports a held lock as an Io error of kind Other whose text says so.
        sled::Error::Io(e) if e.to_string().contains("could not acquire lock") => {
            StoreError::InUse(format!("sled database ({e})"))
        }
        sled::Error::Io(e) => StoreError::from_io("sled", &e),
        sled::Error::Corruption { at, .. } => {
            StoreError::Corrupt(format!("sled detected corruption at {at:?}"))
        }
        other => StoreError::Backend(format!("sled: {other}")),
    }
}

impl SledStore {
    /// Opens or creates the sled directory and its trees.
    pub(crate) fn open(path: &Path, lock: DirLock) -> Result<SledStore, StoreError> {
        let db = sled::Config::new().path(path).open().map_err(map_err)?;
        let tree = |name: &str| db.open_tree(name).map_err(map_err);
        Ok(SledStore {
            state: tree("state")?,
            tiles: tree("tiles")?,
            bundles: tree("bundles")?,
            leaf_index: tree("leaf_index")?,
            entry_index: tree("entry_index")?,
            meta: tree("meta")?,
            checkpoint: tree("checkpoint")?,
            db,
            append_lock: Mutex::new(()),
            failed: AtomicBool::new(false),
            hashes: Arc::default(),
            _lock: lock,
        })
    }

    fn get_index(tree: &Tree, hash: &Hash) -> Result<Option<u64>, StoreError> {
        tree.get(hash.as_bytes())
            .map_err(map_err)?
            .map(|v| decode_u64(&v, "leaf index"))
            .transpose()
    }

    /// Writes sled's buffered log to disk and fsyncs it.
    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(|e| self.fail(e))
    }

    /// Records a failed write (see the module doc) and maps its error.
    fn fail(&self, err: sled::Error) -> StoreError {
        self.failed.store(true, Ordering::SeqCst);
        map_err(err)
    }

    /// Refuses once a write has failed.
    fn check_not_failed(&self) -> Result<(), StoreError> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(StoreError::Io(
                "an earlier write failed (disk full or I/O error) and sled may hold part of \
                 it in memory, so the store refuses every further write until it is \
                 reopened: free space or fix the disk, then restart the log (nothing \
                 acknowledged was lost)"
                    .into(),
            ));
        }
        Ok(())
    }
}

impl Store for SledStore {
    fn append(&self, batch: &Batch) -> Result<(), StoreError> {
        batch.validate()?;
        self.check_not_failed()?;
        // A poisoned mutex only means another append panicked; the guarded data is ().
        let _guard = self
            .append_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let trees = (
            &self.state,
            &self.tiles,
            &self.bundles,
            &self.leaf_index,
            &self.entry_index,
            &self.meta,
            &self.checkpoint,
        );
        let result = trees.transaction(|(state, tiles, bundles, leaves, entries, meta, cp)| {
            let found = match state.get(STATE_KEY)? {
                Some(v) => {
                    TreeState::decode(&v)
                        .map_err(ConflictableTransactionError::Abort)?
                        .size
                }
                None => 0,
            };
            if found != batch.old_size {
                return Err(ConflictableTransactionError::Abort(StoreError::Conflict {
                    expected: batch.old_size,
                    found,
                }));
            }
            state.insert(STATE_KEY, batch.new_state.encode().as_slice())?;
            for (id, data) in &batch.tiles {
                tiles.insert(id.to_key().as_slice(), data.as_slice())?;
            }
            for (index, data) in &batch.bundles {
                bundles.insert(index.to_be_bytes().as_slice(), data.as_slice())?;
            }
            for (hash, index) in &batch.leaf_index {
                leaves.insert(hash.as_bytes().as_slice(), index.to_be_bytes().as_slice())?;
            }
            for (hash, index) in &batch.entry_index {
                entries.insert(hash.as_bytes().as_slice(), index.to_be_bytes().as_slice())?;
            }
            for (key, value) in &batch.meta {
                meta.insert(key.as_bytes(), value.as_slice())?;
            }
            if let Some(note) = &batch.checkpoint {
                cp.insert(CHECKPOINT_KEY, note.as_slice())?;
            }
            Ok(())
        });
        match result {
            Ok(()) => {}
            Err(TransactionError::Abort(e)) => return Err(e),
            Err(TransactionError::Storage(e)) => return Err(self.fail(e)),
        }
        // Without this, sled keeps the transaction in memory for up to 500 ms.
        self.flush()
    }

    fn state(&self) -> Result<Option<TreeState>, StoreError> {
        self.check_not_failed()?;
        self.state
            .get(STATE_KEY)
            .map_err(map_err)?
            .map(|v| TreeState::decode(&v))
            .transpose()
    }

    fn read_tile(&self, id: TileId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .tiles
            .get(id.to_key())
            .map_err(map_err)?
            .map(|v| v.to_vec()))
    }

    fn read_bundle(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .bundles
            .get(index.to_be_bytes())
            .map_err(map_err)?
            .map(|v| v.to_vec()))
    }

    fn lookup_leaf(&self, leaf_hash: &Hash) -> Result<Option<u64>, StoreError> {
        Self::get_index(&self.leaf_index, leaf_hash)
    }

    fn lookup_entry(&self, entry_hash: &Hash) -> Result<Option<u64>, StoreError> {
        Self::get_index(&self.entry_index, entry_hash)
    }

    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .meta
            .get(key.as_bytes())
            .map_err(map_err)?
            .map(|v| v.to_vec()))
    }

    fn scan_meta(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        // sled iterates keys in ascending byte order.
        self.meta
            .scan_prefix(prefix.as_bytes())
            .map(|row| {
                let (key, value) = row.map_err(map_err)?;
                Ok((decode_meta_key(&key)?, value.to_vec()))
            })
            .collect()
    }

    fn put_checkpoint(&self, note: &[u8]) -> Result<(), StoreError> {
        self.check_not_failed()?;
        self.checkpoint
            .insert(CHECKPOINT_KEY, note)
            .map_err(|e| self.fail(e))?;
        self.flush()
    }

    fn checkpoint(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .checkpoint
            .get(CHECKPOINT_KEY)
            .map_err(map_err)?
            .map(|v| v.to_vec()))
    }

    fn kind(&self) -> StoreKind {
        StoreKind::Sled
    }

    fn hash_cache(&self) -> Option<Arc<StoredHashCache>> {
        Some(self.hashes.clone())
    }
}
