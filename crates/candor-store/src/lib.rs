//! Storage for the log: one small [`Store`] trait, two embedded backends (redb and sled)
//! and a PostgreSQL backend ([`postgres`], opened by URL with [`open_postgres`]).
//!
//! The sequencer hands the store one [`Batch`] per sequencing round: the new tree state,
//! every hash tile and entry bundle that changed (full latest contents), the new index
//! rows, a few metadata rows and (without witnesses) the signed checkpoint of the new
//! state, so one durable commit covers entries and checkpoint. [`Store::append`] applies the batch atomically, checks
//! inside the same transaction that the stored size still equals [`Batch::old_size`]
//! (so two writers can never both extend the same tree), and makes the batch durable
//! before it returns.
//!
//! # Data directory layout
//!
//! ```text
//! DIR/store.lock   empty file; an exclusive OS lock on it is held while the store is open
//! DIR/store.kind   "redb\n" or "sled\n": which backend owns this directory
//! DIR/redb.db      redb backend: one database file
//! DIR/sled/        sled backend: sled's own directory
//! ```
//!
//! [`open_store`] creates `DIR` if missing and then:
//! - takes an exclusive, non-blocking lock on `DIR/store.lock` (`flock` on Unix via
//!   [`std::fs::File::try_lock`]). A second open of the same directory, from this process
//!   or another, fails with [`StoreError::InUse`]. Both engines also lock their own files;
//!   their lock errors map to the same variant.
//! - refuses ([`StoreError::WrongBackend`]) a directory whose `store.kind` names the other
//!   backend, or that holds the other backend's data (`redb.db` or `sled/`).
//! - refuses ([`StoreError::Corrupt`]) a directory whose `store.kind` names the requested
//!   backend while that backend's data is missing: silently starting a new, empty log over
//!   a lost one would break the append-only promise.
//! - opens the engine, then writes `store.kind` if it is absent (written to a temporary
//!   file, fsynced, renamed, directory fsynced). The marker is written *after* the engine
//!   created its data, so a crash in between leaves data without a marker, which the next
//!   open accepts and completes.
//!
//! # Durability: what holds once `append` (or `put_checkpoint`) returns `Ok`
//!
//! A transparency log must never lose an acknowledged entry, so both backends return only
//! after the batch is on stable storage (as far as `fsync` guarantees it):
//!
//! - **redb**: the whole batch is one write transaction, committed with
//!   `Durability::Immediate` (set explicitly; it is also redb's default). redb's commit
//!   writes the new commit slot, flips the active slot and calls `fsync` before `commit()`
//!   returns. After a crash redb recovers the newest commit slot with a valid checksum, so
//!   every batch whose `append` returned `Ok` is present and no batch is half applied.
//! - **sled**: the batch is one sled transaction over all six trees it touches (state,
//!   tiles, bundles, leaf index, entry index, meta); the stored size is read and checked
//!   inside the transaction. sled by itself only flushes its log every 500 ms, so `append`
//!   then calls `Db::flush()`, which writes all of sled's buffered log and `fsync`s it,
//!   before returning. sled recovers a transaction all or nothing from its log.
//!
//! If `append` returns an error the batch may or may not have become durable (for
//! example the commit reached the disk but the final `fsync` reported an error). Callers
//! must re-read [`Store::state`] before retrying; a retry with the stale `old_size` is
//! refused with [`StoreError::Conflict`] rather than applied twice.
//!
//! A SIGKILLed writer (tests/store_backends.rs) loses nothing acknowledged with either
//! backend; that test cannot simulate power loss, for which both rely on `fsync`.
//!
//! # Damaged files
//!
//! - **redb** is opened with `set_check_integrity_on_open(true)`: every page checksum is
//!   verified at open, and a damaged file is refused with [`StoreError::Corrupt`] (a plain
//!   open may panic on such a file). Measured cost here: small next to redb's own open.
//! - **sled 0.34** treats a damaged log record as the end of its log: it opens without
//!   error and silently presents an *older* (consistent) state. The store cannot detect
//!   this by itself, since the stored state rolled back too. Prefer redb where a rollback
//!   would matter, or compare against an independently kept checkpoint.
//!
//! Reads of absent keys return `Ok(None)`. No operation panics on bad data: undecodable
//! stored values are reported as [`StoreError::Corrupt`].

mod index_runs;
pub mod memory;
pub mod object_tiles;
pub mod postgres;
mod redb_errors;
mod redb_store;
pub use redb_store::{DEFAULT_INDEX_FLUSH_ROWS, RedbOptions};
mod sled_store;

use candor_core::hash::Hash;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

/// Name of the lock file inside the data directory.
pub const LOCK_FILE: &str = "store.lock";
/// Name of the marker file recording which backend owns the data directory.
pub const KIND_FILE: &str = "store.kind";
/// The redb database file inside the data directory.
pub const REDB_FILE: &str = "redb.db";
/// The sled directory inside the data directory.
pub const SLED_DIR: &str = "sled";

/// Size and root hash of the log's Merkle tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeState {
    /// Number of leaves.
    pub size: u64,
    /// RFC 9162 §2.1.1 Merkle tree hash of those leaves.
    pub root: Hash,
}

impl TreeState {
    /// Stored form: 8-byte big-endian size followed by the 32-byte root.
    pub(crate) fn encode(&self) -> [u8; 40] {
        let mut out = [0u8; 40];
        out[..8].copy_from_slice(&self.size.to_be_bytes());
        out[8..].copy_from_slice(self.root.as_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<TreeState, StoreError> {
        if bytes.len() != 40 {
            return Err(StoreError::Corrupt(format!(
                "stored tree state is {} bytes long, expected 40",
                bytes.len()
            )));
        }
        let size = decode_u64(&bytes[..8], "tree size")?;
        let root = Hash::from_slice(&bytes[8..])
            .ok_or_else(|| StoreError::Corrupt("stored tree root is not 32 bytes".into()))?;
        Ok(TreeState { size, root })
    }
}

/// Identifies a hash tile (C2SP tlog-tiles): its level and index. The width is not part
/// of the key: a partial tile is overwritten by its longer versions as the tree grows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    /// Tile level (0 = tiles of leaf hashes).
    pub level: u8,
    /// Tile index within its level.
    pub index: u64,
}

impl TileId {
    /// Stored key: level byte then big-endian index, so keys sort by (level, index).
    pub fn to_key(self) -> [u8; 9] {
        let mut key = [0u8; 9];
        key[0] = self.level;
        key[1..].copy_from_slice(&self.index.to_be_bytes());
        key
    }

    /// Inverse of [`TileId::to_key`].
    pub fn from_key(key: &[u8]) -> Result<TileId, StoreError> {
        if key.len() != 9 {
            return Err(StoreError::Corrupt(format!(
                "tile key is {} bytes long, expected 9",
                key.len()
            )));
        }
        Ok(TileId {
            level: key[0],
            index: decode_u64(&key[1..], "tile index")?,
        })
    }
}

/// One sequenced batch, applied atomically and durably by [`Store::append`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Must equal the stored tree size (0 for an empty store), else [`StoreError::Conflict`].
    pub old_size: u64,
    /// The tree state after this batch; `new_state.size >= old_size`.
    pub new_state: TreeState,
    /// Hash tiles with their full latest contents (partial or full).
    pub tiles: Vec<(TileId, Vec<u8>)>,
    /// Entry bundle index -> full latest contents.
    pub bundles: Vec<(u64, Vec<u8>)>,
    /// Leaf hash -> leaf index, in leaf order, each index a leaf of this batch
    /// (`old_size..new_state.size`); of two rows for one hash the later wins.
    pub leaf_index: Vec<(Hash, u64)>,
    /// Entry hash (the dedup key) -> leaf index, as `leaf_index`.
    pub entry_index: Vec<(Hash, u64)>,
    /// Small key/values written in the same transaction (company registry, ...).
    pub meta: Vec<(String, Vec<u8>)>,
    /// The signed checkpoint of `new_state`, stored in the same transaction as the
    /// latest checkpoint (as [`Store::put_checkpoint`] would), so the batch and its
    /// checkpoint become durable together, with one commit.
    pub checkpoint: Option<Vec<u8>>,
}

impl Batch {
    /// A batch moving the tree from `old_size` to `new_state` with no rows yet.
    pub fn new(old_size: u64, new_state: TreeState) -> Batch {
        Batch {
            old_size,
            new_state,
            tiles: Vec::new(),
            bundles: Vec::new(),
            leaf_index: Vec::new(),
            entry_index: Vec::new(),
            meta: Vec::new(),
            checkpoint: None,
        }
    }

    /// Checks that do not need the stored state; run before any transaction starts.
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        if self.new_state.size < self.old_size {
            return Err(StoreError::InvalidBatch(format!(
                "new size {} is smaller than old size {}: the log is append-only",
                self.new_state.size, self.old_size
            )));
        }
        // A row names a leaf of this batch, in the order of the leaves: so the later
        // of two rows for one hash always has the larger leaf index, which is how
        // the redb backend's merged runs tell which wins.
        let leaves = self.old_size..self.new_state.size;
        for (name, rows) in [("leaf", &self.leaf_index), ("entry", &self.entry_index)] {
            let mut previous = self.old_size;
            for (hash, index) in rows.iter() {
                if !leaves.contains(index) || *index < previous {
                    return Err(StoreError::InvalidBatch(format!(
                        "{name} index row {hash} -> {index} is not in leaf order within \
                         the batch's leaves {}..{}",
                        leaves.start, leaves.end
                    )));
                }
                previous = *index;
            }
        }
        Ok(())
    }
}

/// Which engine holds the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreKind {
    /// redb: one file, copy-on-write B-trees, fsync on every commit.
    Redb,
    /// sled 0.34: log-structured; made durable by an explicit flush.
    Sled,
    /// PostgreSQL ([`postgres`]): opened by URL with [`open_postgres`], not from a
    /// data directory; never written to `store.kind` and not parsed by `from_str`.
    Postgres,
    /// [`memory::MemoryStore`], for tests: no data directory, not parsed by `from_str`.
    Memory,
}

impl StoreKind {
    /// The lower-case name used on the command line and in `store.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Redb => "redb",
            StoreKind::Sled => "sled",
            StoreKind::Postgres => "postgres",
            StoreKind::Memory => "memory",
        }
    }

    /// The other embedded backend (whose data in a directory means "not ours").
    fn other(self) -> StoreKind {
        match self {
            StoreKind::Redb => StoreKind::Sled,
            StoreKind::Sled | StoreKind::Postgres | StoreKind::Memory => StoreKind::Redb,
        }
    }

    /// Where this backend keeps its data inside `dir`.
    fn data_path(self, dir: &Path) -> PathBuf {
        match self {
            StoreKind::Redb => dir.join(REDB_FILE),
            StoreKind::Sled | StoreKind::Postgres | StoreKind::Memory => dir.join(SLED_DIR),
        }
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StoreKind {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<StoreKind, StoreError> {
        match s {
            "redb" => Ok(StoreKind::Redb),
            "sled" => Ok(StoreKind::Sled),
            other => Err(StoreError::UnknownKind(other.to_string())),
        }
    }
}

/// Everything a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The batch was built for another tree size (another writer got there first).
    #[error("conflict: batch extends a tree of size {expected} but the store holds size {found}")]
    Conflict {
        /// The batch's `old_size`.
        expected: u64,
        /// The size actually stored.
        found: u64,
    },
    /// A checkpoint for a smaller tree than the stored one (another sequencer got
    /// further; only the PostgreSQL backend, shared by several processes, checks this).
    #[error(
        "stale checkpoint: refusing to replace the stored checkpoint of size {stored} with one of size {size}"
    )]
    StaleCheckpoint {
        /// Size of the refused checkpoint.
        size: u64,
        /// Size of the stored one.
        stored: u64,
    },
    /// The batch contradicts itself (for example it shrinks the tree).
    #[error("invalid batch: {0}")]
    InvalidBatch(String),
    /// Stored data could not be decoded or the engine reported corruption.
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    /// The data directory belongs to the other backend.
    #[error("wrong backend: {0}")]
    WrongBackend(String),
    /// Another open store (in this or another process) holds the data directory.
    #[error("data directory {0} is in use by another process (or is already open in this one)")]
    InUse(String),
    /// A backend name other than "redb" or "sled".
    #[error("unknown store kind {0:?}: expected \"redb\" or \"sled\"")]
    UnknownKind(String),
    /// The file system is read-only.
    #[error("store is read-only: {0}")]
    ReadOnly(String),
    /// No space (or quota) left on the device.
    #[error("disk full: {0}")]
    DiskFull(String),
    /// Any other I/O failure.
    #[error("I/O error: {0}")]
    Io(String),
    /// Any other failure reported by the engine.
    #[error("storage engine error: {0}")]
    Backend(String),
}

impl StoreError {
    /// Classifies an I/O error; `context` says what was being done.
    pub(crate) fn from_io(context: &str, err: &io::Error) -> StoreError {
        let msg = format!("{context}: {err}");
        match err.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => StoreError::DiskFull(msg),
            io::ErrorKind::ReadOnlyFilesystem => StoreError::ReadOnly(msg),
            _ => StoreError::Io(msg),
        }
    }
}

/// The storage interface the log, the server and the tools share.
pub trait Store: Send + Sync + 'static {
    /// Applies `batch` atomically; returns only once it is durable (see the module doc).
    /// Fails with [`StoreError::Conflict`] if the stored size is not `batch.old_size`,
    /// leaving the store unchanged.
    fn append(&self, batch: &Batch) -> Result<(), StoreError>;
    /// The current tree state, `None` for a store no batch was ever appended to.
    fn state(&self) -> Result<Option<TreeState>, StoreError>;
    /// Latest contents of a hash tile.
    fn read_tile(&self, id: TileId) -> Result<Option<Vec<u8>>, StoreError>;
    /// Latest contents of an entry bundle.
    fn read_bundle(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError>;
    /// Index of the leaf with this leaf hash.
    fn lookup_leaf(&self, leaf_hash: &Hash) -> Result<Option<u64>, StoreError>;
    /// Index of the leaf holding the entry with this entry hash (dedup).
    fn lookup_entry(&self, entry_hash: &Hash) -> Result<Option<u64>, StoreError>;
    /// [`Store::lookup_entry`] of many hashes, in their order; a backend may answer
    /// them from one snapshot and in key order (the sequencer looks up a whole batch).
    fn lookup_entries(&self, entry_hashes: &[Hash]) -> Result<Vec<Option<u64>>, StoreError> {
        entry_hashes.iter().map(|h| self.lookup_entry(h)).collect()
    }
    /// One metadata value.
    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// All metadata rows whose key starts with `prefix`, in ascending byte order of key.
    fn scan_meta(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Replaces the latest signed (maybe cosigned) checkpoint; durable when it returns.
    fn put_checkpoint(&self, note: &[u8]) -> Result<(), StoreError>;
    /// The latest checkpoint stored with [`Store::put_checkpoint`].
    fn checkpoint(&self) -> Result<Option<Vec<u8>>, StoreError>;
    /// Which backend this is.
    fn kind(&self) -> StoreKind;
    /// This store's cache of stored hashes recomputed from its tiles (proofs and
    /// receipts read through it), if it keeps one. Valid for the life of the store:
    /// stored hashes never change.
    fn hash_cache(&self) -> Option<Arc<candor_core::tiles::StoredHashCache>> {
        None
    }
}

/// Exclusive hold on a data directory; released when dropped (the OS releases the lock
/// when the file is closed, also when the process dies).
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    fn acquire(dir: &Path) -> Result<DirLock, StoreError> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::from_io(&format!("opening {}", path.display()), &e))?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(StoreError::InUse(dir.display().to_string())),
            Err(fs::TryLockError::Error(e)) => Err(StoreError::from_io(
                &format!("locking {}", path.display()),
                &e,
            )),
        }
    }
}

/// Options of the stores opened from a data directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreOptions {
    pub redb: RedbOptions,
}

/// Opens (creating if needed) the store of `kind` in data directory `dir`, with the
/// default options. See the module doc for the directory layout, locking and refusal
/// rules.
pub fn open_store(kind: StoreKind, dir: &Path) -> Result<Arc<dyn Store>, StoreError> {
    open_store_with(kind, dir, StoreOptions::default())
}

/// [`open_store`] with `options`.
pub fn open_store_with(
    kind: StoreKind,
    dir: &Path,
    options: StoreOptions,
) -> Result<Arc<dyn Store>, StoreError> {
    match kind {
        StoreKind::Postgres => {
            return Err(StoreError::WrongBackend(
                "a PostgreSQL store is opened by URL (open_postgres), not from a data directory"
                    .into(),
            ));
        }
        StoreKind::Memory => {
            return Err(StoreError::WrongBackend(
                "an in-memory store has no data directory (memory::MemoryStore::new)".into(),
            ));
        }
        StoreKind::Redb | StoreKind::Sled => {}
    }
    fs::create_dir_all(dir)
        .map_err(|e| StoreError::from_io(&format!("creating {}", dir.display()), &e))?;
    let lock = DirLock::acquire(dir)?;

    let marker = read_kind_marker(dir)?;
    let other = kind.other();
    if marker == Some(other) {
        return Err(StoreError::WrongBackend(format!(
            "{} holds a {other} store ({KIND_FILE} says {other}), but {kind} was requested",
            dir.display()
        )));
    }
    let other_data = other.data_path(dir);
    if other_data.exists() {
        return Err(StoreError::WrongBackend(format!(
            "{} holds a {other} store ({} exists), but {kind} was requested",
            dir.display(),
            other_data.display()
        )));
    }
    let own_data = kind.data_path(dir);
    if marker == Some(kind) && !own_data.exists() {
        return Err(StoreError::Corrupt(format!(
            "{KIND_FILE} in {} says {kind} but {} is missing; refusing to start an empty \
             log in place of a lost one",
            dir.display(),
            own_data.display()
        )));
    }

    let store: Arc<dyn Store> = match kind {
        StoreKind::Redb => Arc::new(redb_store::RedbStore::open(&own_data, lock, options.redb)?),
        StoreKind::Sled => Arc::new(sled_store::SledStore::open(&own_data, lock)?),
        StoreKind::Postgres | StoreKind::Memory => {
            return Err(StoreError::WrongBackend(format!(
                "a {kind} store has no data directory"
            )));
        }
    };
    if marker.is_none() {
        write_kind_marker(dir, kind)?;
    }
    Ok(store)
}

/// Opens (creating the schema if needed) the PostgreSQL store at `url`
/// (`postgres://user[:password]@host[:port]/database`). See [`postgres`].
pub fn open_postgres(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(postgres::PostgresStore::open(url)?))
}

fn read_kind_marker(dir: &Path) -> Result<Option<StoreKind>, StoreError> {
    let path = dir.join(KIND_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map(Some).map_err(|_| {
            StoreError::Corrupt(format!(
                "{} contains {:?}, expected \"redb\" or \"sled\"",
                path.display(),
                text.trim()
            ))
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::from_io(
            &format!("reading {}", path.display()),
            &e,
        )),
    }
}

/// Writes `store.kind` crash-safely: temp file, fsync, rename, fsync of the directory.
fn write_kind_marker(dir: &Path, kind: StoreKind) -> Result<(), StoreError> {
    let path = dir.join(KIND_FILE);
    let tmp = dir.join(format!("{KIND_FILE}.tmp"));
    let io_err = |what: &str, e: io::Error| StoreError::from_io(what, &e);
    let mut file =
        File::create(&tmp).map_err(|e| io_err(&format!("creating {}", tmp.display()), e))?;
    file.write_all(format!("{kind}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io_err(&format!("writing {}", tmp.display()), e))?;
    fs::rename(&tmp, &path).map_err(|e| io_err(&format!("renaming to {}", path.display()), e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(&format!("syncing directory {}", dir.display()), e))
}

/// Total size in bytes of the regular files under `path` (recursively), for benchmarks
/// and operator reports. Symbolic links are not followed.
pub fn dir_size(path: &Path) -> io::Result<u64> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return Ok(if meta.is_file() { meta.len() } else { 0 });
    }
    let mut total = 0u64;
    for entry in fs::read_dir(path)? {
        total = total.saturating_add(dir_size(&entry?.path())?);
    }
    Ok(total)
}

/// Decodes an 8-byte big-endian integer from stored data.
pub(crate) fn decode_u64(bytes: &[u8], what: &str) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| {
            StoreError::Corrupt(format!(
                "stored {what} is {} bytes long, expected 8",
                bytes.len()
            ))
        })
}

/// Decodes a stored metadata key (UTF-8 bytes).
pub(crate) fn decode_meta_key(bytes: &[u8]) -> Result<String, StoreError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| StoreError::Corrupt("stored metadata key is not UTF-8".into()))
}
