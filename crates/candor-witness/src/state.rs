//! The witness's persistent state: for each log origin, the latest checkpoint
//! it cosigned (tlog-witness: "the witness is only required to keep track of
//! the latest checkpoint it observed and verified").
//!
//! Layout of the data directory:
//!
//! ```text
//! DIR/witness.lock                  held exclusively while a witness runs
//! DIR/origins/<hex sha256(origin)>  the latest cosigned checkpoint note
//! DIR/evidence/<hex sha256(origin)>/<secs>.<nanos>.req
//!                                   refused requests that show misbehaviour
//! ```
//!
//! tlog-witness requires that checking the old size and persisting the new
//! checkpoint happen atomically, and that the checkpoint is persisted before
//! the cosignature is returned. [`WitnessState::check_and_update`] holds a
//! per-origin mutex across the check, the signing and a durable write (temp
//! file, fsync, rename, fsync of the directory), so a witness killed at any
//! moment has on disk either the old record or the new one, and never returned
//! a cosignature for a checkpoint that is not on disk.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use candor_core::checkpoint::Checkpoint;
use candor_core::hash::sha256;
use candor_core::note::Note;
use candor_core::witness_protocol::Latest;

/// One origin's record: the latest cosigned checkpoint and its note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Size and root of the latest cosigned checkpoint.
    pub latest: Latest,
    /// The checkpoint note as served on the monitoring path: the text, the
    /// log signature(s) the witness verified and the witness's cosignature.
    pub note: Vec<u8>,
}

impl Record {
    /// Builds a record from a cosigned checkpoint note, checking that it parses
    /// and belongs to `origin`.
    pub fn from_note(origin: &str, note: Vec<u8>) -> Result<Record, StateError> {
        let bad = |reason: String| StateError::Corrupt {
            origin: origin.to_string(),
            reason,
        };
        let parsed = Note::parse(&note).map_err(|e| bad(e.to_string()))?;
        let cp = Checkpoint::parse(&parsed.text).map_err(|e| bad(e.to_string()))?;
        if cp.origin != origin {
            return Err(bad(format!("stored checkpoint has origin {:?}", cp.origin)));
        }
        Ok(Record {
            latest: Latest {
                size: cp.size,
                root: cp.root,
            },
            note,
        })
    }
}

/// Errors of the state directory.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("data directory {0} is in use by another witness process")]
    Locked(PathBuf),
    #[error("stored state for origin {origin:?} is corrupt: {reason}")]
    Corrupt { origin: String, reason: String },
    #[error("a thread panicked while holding the state of origin {0:?}")]
    Poisoned(String),
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StateError {
    let path = path.to_path_buf();
    move |source| StateError::Io {
        action,
        path,
        source,
    }
}

/// At most this many evidence files are kept per origin, so a misbehaving
/// log cannot fill the witness's disk.
pub const MAX_EVIDENCE_PER_ORIGIN: usize = 100;

/// Per-origin slot. The outer `None` means "not known, read from disk": the
/// slot starts that way and returns to it when a write fails, because after a
/// failed rename or directory fsync the disk may hold either record.
/// The inner `None` means the origin was never cosigned.
type Slot = Arc<Mutex<Option<Option<Record>>>>;

/// The witness's state directory, opened exclusively by one process.
#[derive(Debug)]
pub struct WitnessState {
    origins_dir: PathBuf,
    evidence_dir: PathBuf,
    // Held for the lifetime of the state: a second witness on the same
    // directory would break the atomicity the per-origin mutexes give.
    _lock: File,
    slots: Mutex<HashMap<String, Slot>>,
}

/// The file name of an origin: the hex SHA-256 of the origin, which is also
/// the monitoring path segment, so that any origin string is a safe file name.
pub fn origin_id(origin: &str) -> String {
    sha256(origin.as_bytes()).to_hex()
}

impl WitnessState {
    /// Opens (creating if needed) the data directory and takes its lock.
    pub fn open(dir: &Path) -> Result<WitnessState, StateError> {
        let origins_dir = dir.join("origins");
        fs::create_dir_all(&origins_dir).map_err(io_err("create", &origins_dir))?;
        sync_dir(dir)?;
        let lock_path = dir.join("witness.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err("open", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(StateError::Locked(dir.into())),
            Err(fs::TryLockError::Error(e)) => return Err(io_err("lock", &lock_path)(e)),
        }
        Ok(WitnessState {
            origins_dir,
            evidence_dir: dir.join("evidence"),
            _lock: lock,
            slots: Mutex::new(HashMap::new()),
        })
    }

    fn slot(&self, origin: &str) -> Result<Slot, StateError> {
        let mut slots = self
            .slots
            .lock()
            .map_err(|_| StateError::Poisoned(origin.to_string()))?;
        if let Some(s) = slots.get(origin) {
            return Ok(s.clone());
        }
        let slot = Arc::new(Mutex::new(None));
        slots.insert(origin.to_string(), slot.clone());
        Ok(slot)
    }

    fn path(&self, origin: &str) -> PathBuf {
        self.origins_dir.join(origin_id(origin))
    }

    fn read(&self, origin: &str) -> Result<Option<Record>, StateError> {
        let path = self.path(origin);
        match fs::read(&path) {
            Ok(bytes) => Record::from_note(origin, bytes).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }

    /// The latest cosigned record of `origin`, if any.
    pub fn latest(&self, origin: &str) -> Result<Option<Record>, StateError> {
        let slot = self.slot(origin)?;
        let mut guard = lock_slot(&slot, origin)?;
        Ok(self.loaded(origin, &mut guard)?.clone())
    }

    /// The latest cosigned note of the origin whose [`origin_id`] is `id`,
    /// read from disk (the monitoring path only knows the hash).
    pub fn latest_by_id(&self, id: &str) -> Result<Option<Vec<u8>>, StateError> {
        let valid = id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !valid {
            return Ok(None);
        }
        let path = self.origins_dir.join(id);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }

    /// Atomically checks and updates `origin`'s record. `decide` sees the current
    /// record and either refuses (`Err(E)`, nothing changes) or returns the new
    /// record plus a value; the new record is durably on disk before this returns
    /// `Ok(Ok(value))`. Calls for one origin are serialized.
    pub fn check_and_update<T, E>(
        &self,
        origin: &str,
        decide: impl FnOnce(Option<&Record>) -> Result<(Record, T), E>,
    ) -> Result<Result<T, E>, StateError> {
        let slot = self.slot(origin)?;
        let mut guard = lock_slot(&slot, origin)?;
        let current = self.loaded(origin, &mut guard)?;
        let (record, value) = match decide(current.as_ref()) {
            Ok(x) => x,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = self.write(origin, &record.note) {
            // The disk may now hold the old or the new record: forget the
            // cached one so the next request re-reads what is really there.
            *guard = None;
            return Err(e);
        }
        *guard = Some(Some(record));
        Ok(Ok(value))
    }

    /// The slot's record, reading it from disk if it is not cached.
    fn loaded<'g>(
        &self,
        origin: &str,
        guard: &'g mut MutexGuard<'_, Option<Option<Record>>>,
    ) -> Result<&'g Option<Record>, StateError> {
        if guard.is_none() {
            **guard = Some(self.read(origin)?);
        }
        // Just filled above when it was empty.
        Ok(guard.get_or_insert(None))
    }

    /// Keeps a refused request that shows the log misbehaving (a validly
    /// signed checkpoint inconsistent with one the witness cosigned), for
    /// auditors. Best effort: returns the file written, or `None` when the
    /// per-origin cap is reached.
    pub fn save_evidence(&self, origin: &str, body: &[u8]) -> Result<Option<PathBuf>, StateError> {
        let dir = self.evidence_dir.join(origin_id(origin));
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let count = fs::read_dir(&dir).map_err(io_err("list", &dir))?.count();
        if count >= MAX_EVIDENCE_PER_ORIGIN {
            return Ok(None);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let path = dir.join(format!("{}.{:09}.req", now.as_secs(), now.subsec_nanos()));
        let mut f = File::create(&path).map_err(io_err("create", &path))?;
        f.write_all(body).map_err(io_err("write", &path))?;
        f.sync_all().map_err(io_err("fsync", &path))?;
        Ok(Some(path))
    }

    /// Durable replace: write a temp file, fsync it, rename it over the
    /// record, fsync the directory so the rename itself survives a crash.
    fn write(&self, origin: &str, bytes: &[u8]) -> Result<(), StateError> {
        let path = self.path(origin);
        let tmp = self.origins_dir.join(format!(".{}.tmp", origin_id(origin)));
        let mut f = File::create(&tmp).map_err(io_err("create", &tmp))?;
        f.write_all(bytes).map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("fsync", &tmp))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io_err("rename into place", &path))?;
        sync_dir(&self.origins_dir)
    }
}

fn lock_slot<'a>(
    slot: &'a Slot,
    origin: &str,
) -> Result<MutexGuard<'a, Option<Option<Record>>>, StateError> {
    slot.lock()
        .map_err(|_| StateError::Poisoned(origin.to_string()))
}

fn sync_dir(dir: &Path) -> Result<(), StateError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}
