//! The monitor's persistent state in DIR (spec/monitor.md §4):
//!
//! * `state.json`: the last verified checkpoint with the O(log n) tree state, and
//!   the progress of the audit under way. Replaced atomically (temporary file,
//!   fsync, rename, fsync of DIR), so a monitor killed at any moment finds either
//!   the old or the new state, never a torn one.
//! * `index.redb`: per-index tables (data purchases, entry summaries for the report)
//!   and the findings. Every write is keyed by entry index or finding key, so
//!   replaying a chunk after a crash rewrites the same rows.
//! * `lock`: held (advisory file lock) while a monitor runs on DIR.

use super::findings::Finding;
use super::policy::VolumeTracker;
use candor_core::hash::Hash;
use candor_core::merkle::Frontier;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One key the log registered for a company.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Signed-note key ID, 8 hex digits (the leaf's `key_id`).
    pub key_id: String,
    /// The signed-note verifier key as registered.
    pub verifier_key: String,
    /// Index of the registering `company_key` entry.
    pub registered_at: u64,
    /// Index of the revoking `company_key` entry, if any.
    pub revoked_at: Option<u64>,
}

/// Every company's key history, as the log's `company_key` entries wrote it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompanyKeys {
    pub companies: BTreeMap<String, Vec<KeyRecord>>,
}

impl CompanyKeys {
    pub(crate) fn active(&self, company: &str) -> usize {
        self.companies
            .get(company)
            .map_or(0, |ks| ks.iter().filter(|k| k.revoked_at.is_none()).count())
    }
}

/// Version of the `state.json` layout.
pub const STATE_VERSION: u32 = 1;

const PURCHASES: TableDefinition<u64, &[u8]> = TableDefinition::new("purchases");
const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
const FINDINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("findings");

/// Errors of the state directory.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state directory {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("state directory {0} is in use by another monitor (its lock file is held)")]
    Locked(String),
    #[error("state file {path} is corrupt: {message}")]
    Corrupt { path: String, message: String },
    #[error(
        "state directory {dir} belongs to log {have}, not {want}; use another --state directory"
    )]
    OtherLog {
        dir: String,
        have: String,
        want: String,
    },
    #[error("index database {path}: {message}")]
    Index { path: String, message: String },
}

/// A list of hashes stored as one base64 string (32 bytes each), to keep state small.
mod hash_list {
    use base64::Engine;
    use candor_core::hash::Hash;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[Vec<Hash>], s: S) -> Result<S::Ok, S::Error> {
        let enc: Vec<String> = v
            .iter()
            .map(|level| {
                let bytes: Vec<u8> = level.iter().flat_map(|h| h.0).collect();
                base64::engine::general_purpose::STANDARD.encode(bytes)
            })
            .collect();
        serde::Serialize::serialize(&enc, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<Hash>>, D::Error> {
        let enc: Vec<String> = Vec::deserialize(d)?;
        enc.iter()
            .map(|s| {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(serde::de::Error::custom)?;
                if bytes.len() % 32 != 0 {
                    return Err(serde::de::Error::custom(
                        "hash list length is not a multiple of 32",
                    ));
                }
                Ok(bytes.chunks(32).filter_map(Hash::from_slice).collect())
            })
            .collect()
    }
}

/// The state of the tree at one size, as far as the monitor has proven it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditPoint {
    /// Number of leaves covered.
    pub size: u64,
    /// The O(log n) right edge of the tree of `size` leaves.
    pub frontier: Frontier,
    /// `pending[L]`: the hashes of the rightmost, incomplete tile at level L
    /// (level 0: leaf hashes), i.e. the last-seen contents of every partial tile.
    /// Compared with the tiles when they are fetched again, wider or full.
    #[serde(with = "hash_list")]
    pub pending: Vec<Vec<Hash>>,
    /// Company keys as registered on the log by `company_key` entries so far.
    pub companies: CompanyKeys,
    /// Per-company daily counts for the volume policy.
    pub volume: VolumeTracker,
}

impl AuditPoint {
    /// The empty tree.
    pub fn empty() -> Self {
        AuditPoint {
            size: 0,
            frontier: Frontier::default(),
            pending: Vec::new(),
            companies: CompanyKeys::default(),
            volume: VolumeTracker::default(),
        }
    }
}

/// A leaf that did not hash to the level-0 tile; resolved when the audit reaches
/// the signed root (which of the two is wrong is decided then).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspect {
    pub index: u64,
    pub bundle: String,
    pub tile: String,
}

/// An audit under way: from `MonitorState::verified` to the checkpoint `target`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Progress {
    /// The signed checkpoint being audited (whole note text, already signature-checked).
    pub target: String,
    /// How far the audit got.
    pub point: AuditPoint,
    pub suspects: Vec<Suspect>,
}

/// Everything in `state.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MonitorState {
    pub version: u32,
    pub origin: String,
    /// The log's verifier key (signed-note vkey).
    pub log_key: String,
    /// The last verified checkpoint (whole signed note), `None` before the first.
    pub checkpoint: Option<String>,
    /// The tree of the last verified checkpoint.
    pub verified: AuditPoint,
    pub progress: Option<Progress>,
    /// Hex SHA-256 of checkpoint notes that failed the audit (not audited again).
    #[serde(default)]
    pub rejected: Vec<String>,
}

impl MonitorState {
    /// A fresh state for a log.
    pub fn new(origin: &str, log_key: &str) -> Self {
        MonitorState {
            version: STATE_VERSION,
            origin: origin.to_owned(),
            log_key: log_key.to_owned(),
            checkpoint: None,
            verified: AuditPoint::empty(),
            progress: None,
            rejected: Vec::new(),
        }
    }
}

/// One entry's facts for the report (Candor entries only).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EntrySummary {
    pub company: String,
    pub kind: String,
    pub logged_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_basis: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seller: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
}

/// One chunk's rows for `index.redb`, written in one transaction.
#[derive(Default)]
pub struct IndexBatch {
    /// index → (leaf hash, buying company)
    pub purchases: Vec<(u64, Hash, String)>,
    pub entries: Vec<(u64, EntrySummary)>,
    pub findings: Vec<Finding>,
}

/// The opened state directory.
pub struct StateDir {
    dir: PathBuf,
    db: redb::Database,
    _lock: File,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl StateDir {
    /// Opens (creating if needed) DIR and takes its lock.
    pub fn open(dir: &Path) -> Result<StateDir, StateError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StateError::Locked(dir.display().to_string()));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
        }
        let db = open_db(&dir.join("index.redb"))?;
        Ok(StateDir {
            dir: dir.to_owned(),
            db,
            _lock: lock,
        })
    }

    /// Opens DIR for reading only (the report), without the lock.
    pub fn open_read(dir: &Path) -> Result<(Option<MonitorState>, redb::Database), StateError> {
        let state = read_state(&dir.join("state.json"))?;
        let path = dir.join("index.redb");
        if !path.exists() {
            return Err(StateError::Io {
                path: path.display().to_string(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no monitor index here"),
            });
        }
        Ok((state, open_db(&path)?))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Loads `state.json`, or `None` if the monitor never ran here.
    pub fn load(&self) -> Result<Option<MonitorState>, StateError> {
        read_state(&self.dir.join("state.json"))
    }

    /// Loads the state for this log, or a fresh one; refuses a directory that
    /// belongs to another log.
    pub fn load_for(&self, origin: &str, log_key: &str) -> Result<MonitorState, StateError> {
        match self.load()? {
            None => Ok(MonitorState::new(origin, log_key)),
            Some(s) if s.log_key == log_key => Ok(s),
            Some(s) => Err(StateError::OtherLog {
                dir: self.dir.display().to_string(),
                have: s.log_key,
                want: log_key.to_owned(),
            }),
        }
    }

    /// Replaces `state.json` atomically and durably: write `state.json.tmp`, fsync
    /// it, rename it over `state.json`, fsync the directory (so the rename itself
    /// survives a power loss).
    pub fn save(&self, state: &MonitorState) -> Result<(), StateError> {
        let tmp = self.dir.join("state.json.tmp");
        let dst = self.dir.join("state.json");
        let bytes = serde_json::to_vec(state).map_err(|e| StateError::Corrupt {
            path: dst.display().to_string(),
            message: e.to_string(),
        })?;
        {
            let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
            f.write_all(&bytes).map_err(io_err(&tmp))?;
            f.sync_all().map_err(io_err(&tmp))?;
        }
        std::fs::rename(&tmp, &dst).map_err(io_err(&dst))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir))?;
        Ok(())
    }

    fn idx_err(&self, e: impl std::fmt::Display) -> StateError {
        StateError::Index {
            path: self.dir.join("index.redb").display().to_string(),
            message: e.to_string(),
        }
    }

    /// Writes one chunk's rows durably. Returns the findings that were not stored
    /// before (the ones to print and alert): a finding re-detected after a restart
    /// is stored once and reported once.
    pub fn write_index(&self, batch: &IndexBatch) -> Result<Vec<Finding>, StateError> {
        let tx = self.db.begin_write().map_err(|e| self.idx_err(e))?;
        let mut fresh = Vec::new();
        {
            let mut p = tx.open_table(PURCHASES).map_err(|e| self.idx_err(e))?;
            for (index, leaf, company) in &batch.purchases {
                let mut v = leaf.0.to_vec();
                v.extend_from_slice(company.as_bytes());
                p.insert(*index, v.as_slice())
                    .map_err(|e| self.idx_err(e))?;
            }
            let mut t = tx.open_table(ENTRIES).map_err(|e| self.idx_err(e))?;
            for (index, summary) in &batch.entries {
                let v = serde_json::to_vec(summary).map_err(|e| self.idx_err(e))?;
                t.insert(*index, v.as_slice())
                    .map_err(|e| self.idx_err(e))?;
            }
            let mut f = tx.open_table(FINDINGS).map_err(|e| self.idx_err(e))?;
            for finding in &batch.findings {
                let key = finding.key();
                if f.get(key.as_str()).map_err(|e| self.idx_err(e))?.is_some() {
                    continue;
                }
                let v = serde_json::to_vec(finding).map_err(|e| self.idx_err(e))?;
                f.insert(key.as_str(), v.as_slice())
                    .map_err(|e| self.idx_err(e))?;
                fresh.push(finding.clone());
            }
        }
        tx.commit().map_err(|e| self.idx_err(e))?;
        Ok(fresh)
    }

    /// Drops the per-index rows at `from` and above (an audit that failed is rolled
    /// back to the verified size; findings stay).
    pub fn truncate_index(&self, from: u64) -> Result<(), StateError> {
        let tx = self.db.begin_write().map_err(|e| self.idx_err(e))?;
        {
            let mut p = tx.open_table(PURCHASES).map_err(|e| self.idx_err(e))?;
            p.retain_in(from.., |_, _| false)
                .map_err(|e| self.idx_err(e))?;
            let mut t = tx.open_table(ENTRIES).map_err(|e| self.idx_err(e))?;
            t.retain_in(from.., |_, _| false)
                .map_err(|e| self.idx_err(e))?;
        }
        tx.commit().map_err(|e| self.idx_err(e))?;
        Ok(())
    }

    /// The data purchase logged at `index`: its leaf hash and buying company.
    pub fn purchase(&self, index: u64) -> Result<Option<(Hash, String)>, StateError> {
        let tx = self.db.begin_read().map_err(|e| self.idx_err(e))?;
        let t = match tx.open_table(PURCHASES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.idx_err(e)),
        };
        let Some(v) = t.get(index).map_err(|e| self.idx_err(e))? else {
            return Ok(None);
        };
        let v = v.value();
        let hash = Hash::from_slice(v.get(..32).unwrap_or_default())
            .ok_or_else(|| self.idx_err("short purchase row"))?;
        let company = String::from_utf8_lossy(v.get(32..).unwrap_or_default()).into_owned();
        Ok(Some((hash, company)))
    }
}

/// redb's page cache for the index. Rows are keyed by leaf index and written in
/// order, so a small cache serves them; redb's default (1 GiB) made the monitor's
/// resident size grow to 1.2 GB over a 10^7-entry audit (BENCHMARKS.md, "10^7 entries").
const INDEX_CACHE_BYTES: usize = 64 * 1024 * 1024;

fn open_db(path: &Path) -> Result<redb::Database, StateError> {
    redb::Database::builder()
        .set_cache_size(INDEX_CACHE_BYTES)
        .create(path)
        .map_err(|e| StateError::Index {
            path: path.display().to_string(),
            message: e.to_string(),
        })
}

fn read_state(path: &Path) -> Result<Option<MonitorState>, StateError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    let state: MonitorState = serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    if state.version != STATE_VERSION {
        return Err(StateError::Corrupt {
            path: path.display().to_string(),
            message: format!("layout version {} is not {STATE_VERSION}", state.version),
        });
    }
    Ok(Some(state))
}

/// Reads every stored entry summary, in index order.
pub fn read_entries(db: &redb::Database) -> Result<Vec<(u64, EntrySummary)>, String> {
    let tx = db.begin_read().map_err(|e| e.to_string())?;
    let t = match tx.open_table(ENTRIES) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.to_string()),
    };
    let mut out = Vec::new();
    for row in t.iter().map_err(|e| e.to_string())? {
        let (k, v) = row.map_err(|e| e.to_string())?;
        let s: EntrySummary = serde_json::from_slice(v.value()).map_err(|e| e.to_string())?;
        out.push((k.value(), s));
    }
    Ok(out)
}

/// Reads every stored finding.
pub fn read_findings(db: &redb::Database) -> Result<Vec<Finding>, String> {
    let tx = db.begin_read().map_err(|e| e.to_string())?;
    let t = match tx.open_table(FINDINGS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.to_string()),
    };
    let mut out = Vec::new();
    for row in t.iter().map_err(|e| e.to_string())? {
        let (_, v) = row.map_err(|e| e.to_string())?;
        out.push(serde_json::from_slice(v.value()).map_err(|e| e.to_string())?);
    }
    out.sort_by(|a: &Finding, b: &Finding| a.detected_at.cmp(&b.detected_at));
    Ok(out)
}
