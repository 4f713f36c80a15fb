//! PostgreSQL backend: the same [`Store`] contract on a (replicated, managed) PostgreSQL
//! server, for logs that outgrow one machine (spec/deployment.md).
//!
//! # Threads
//! The `postgres` crate is a blocking wrapper that drives its own small tokio runtime,
//! which must never run on a tokio worker thread. The store therefore owns a few plain
//! OS threads, each with its own connection; every trait call is sent to one of them as a
//! job and the caller waits for the answer. Callers on any thread (a tokio worker,
//! `spawn_blocking`, a test thread) are safe. A broken connection is dropped and
//! re-opened by its thread on the next job.
//!
//! # Schema (created on first use, inside a transaction under an advisory lock so
//! two processes starting at once do not race on `CREATE TABLE`)
//! - `candor_state(id = 1, size, root)`: one row, created empty (`root` NULL) so that
//!   `append` can always lock it with `SELECT … FOR UPDATE`.
//! - `candor_tiles(level, idx, data)`, `candor_bundles(idx, data)`: latest contents.
//! - `candor_leaf_index(hash, idx)`, `candor_entry_index(hash, idx)`.
//! - `candor_meta(key bytea, value)`: keys as bytes so `ORDER BY` is byte order whatever
//!   the database collation.
//! - `candor_checkpoint(id = 1, size, note)`.
//!
//! # Atomicity and durability
//! `append` is one transaction: it locks the state row (`FOR UPDATE`), compares the
//! stored size with `old_size` (the compare-and-swap that refuses a second writer with
//! [`StoreError::Conflict`]), writes every row, and commits. Every connection sets
//! `synchronous_commit = on`, so `COMMIT` returns only once the commit record is flushed
//! to the server's WAL (and to synchronous standbys if the server is configured so).
//!
//! `put_checkpoint` never replaces a checkpoint with one of a smaller tree size (the
//! size is read from the note's second line, tlog-checkpoint): a deposed sequencer that
//! still finishes a round cannot roll the published checkpoint back.
//!
//! # Exactly one sequencer
//! [`SequencerLock`] holds a session-level advisory lock on its own connection for as
//! long as the process sequences; PostgreSQL releases it when that session ends (also
//! when the process is SIGKILLed and the server notices the closed socket).

use super::{Batch, Store, StoreError, StoreKind, TileId, TreeState};
use candor_core::hash::Hash;
use postgres::{Client, GenericClient, NoTls};
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// Connections (and threads) per store.
const POOL_SIZE: usize = 4;
/// Advisory lock key serializing schema creation.
const SCHEMA_LOCK_KEY: i64 = 0x63_616e_646f_7201;
/// Advisory lock key held by the active sequencer (advisory locks are per database, and
/// one database holds one log).
const SEQUENCER_LOCK_KEY: i64 = 0x63_616e_646f_7202;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS candor_state (
    id integer PRIMARY KEY CHECK (id = 1),
    size bigint NOT NULL CHECK (size >= 0),
    root bytea
);
INSERT INTO candor_state (id, size, root) VALUES (1, 0, NULL) ON CONFLICT (id) DO NOTHING;
CREATE TABLE IF NOT EXISTS candor_tiles (
    level smallint NOT NULL,
    idx bigint NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (level, idx)
);
CREATE TABLE IF NOT EXISTS candor_bundles (idx bigint PRIMARY KEY, data bytea NOT NULL);
CREATE TABLE IF NOT EXISTS candor_leaf_index (hash bytea PRIMARY KEY, idx bigint NOT NULL);
CREATE TABLE IF NOT EXISTS candor_entry_index (hash bytea PRIMARY KEY, idx bigint NOT NULL);
CREATE TABLE IF NOT EXISTS candor_meta (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE IF NOT EXISTS candor_checkpoint (
    id integer PRIMARY KEY CHECK (id = 1),
    size bigint NOT NULL,
    note bytea NOT NULL
);
";

/// Maps a driver error, naming what was being done.
fn pg_err(context: &str, e: &postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => StoreError::Backend(format!(
            "postgres: {context}: {} ({})",
            db.message(),
            db.code().code()
        )),
        None => StoreError::Backend(format!("postgres: {context}: {e}")),
    }
}

/// The connection URL with any password replaced, for messages and banners.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn to_i64(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| {
        StoreError::InvalidBatch(format!("{what} {v} does not fit PostgreSQL's bigint"))
    })
}

fn to_u64(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("stored {what} {v} is negative")))
}

/// Opens a connection with the session settings every connection needs.
fn connect(config: &postgres::Config) -> Result<Client, StoreError> {
    let mut client = config
        .connect(NoTls)
        .map_err(|e| pg_err("connecting", &e))?;
    // Durability: COMMIT waits for the WAL flush, whatever the server default says.
    client
        .batch_execute("SET synchronous_commit = on")
        .map_err(|e| pg_err("setting synchronous_commit", &e))?;
    Ok(client)
}

type Job = Box<dyn FnOnce(&mut Option<Client>, &postgres::Config) + Send>;

/// The PostgreSQL-backed [`Store`].
pub struct PostgresStore {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    workers: Vec<thread::JoinHandle<()>>,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/database`), creates
    /// the schema if missing, and starts the connection threads.
    pub fn open(url: &str) -> Result<PostgresStore, StoreError> {
        let config = postgres::Config::from_str(url).map_err(|e| {
            StoreError::Backend(format!(
                "postgres: {} is not a connection URL: {e}",
                redact_url(url)
            ))
        })?;
        // Connect and create the schema on this thread first, so a bad URL or an
        // unreachable server fails `open` instead of the first read. This runs before
        // the worker threads exist, on a thread of our own (see the module doc).
        let setup_config = config.clone();
        let first = thread::spawn(move || -> Result<Client, StoreError> {
            let mut client = connect(&setup_config)?;
            let mut txn = client
                .transaction()
                .map_err(|e| pg_err("starting the schema transaction", &e))?;
            txn.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK_KEY])
                .map_err(|e| pg_err("locking the schema", &e))?;
            txn.batch_execute(SCHEMA)
                .map_err(|e| pg_err("creating the schema", &e))?;
            txn.commit()
                .map_err(|e| pg_err("committing the schema", &e))?;
            Ok(client)
        })
        .join()
        .map_err(|_| StoreError::Backend("postgres: the setup thread panicked".into()))??;

        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut first = Some(first);
        let mut workers = Vec::with_capacity(POOL_SIZE);
        for i in 0..POOL_SIZE {
            let rx = rx.clone();
            let config = config.clone();
            let mut conn = if i == 0 { first.take() } else { None };
            let handle = thread::Builder::new()
                .name(format!("candor-pg-{i}"))
                .spawn(move || {
                    loop {
                        // A poisoned receiver lock only means another worker panicked
                        // while waiting; the receiver itself is intact.
                        let job = match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
                            Ok(job) => job,
                            Err(_) => break, // the store was dropped
                        };
                        job(&mut conn, &config);
                    }
                })
                .map_err(|e| StoreError::from_io("starting a postgres thread", &e))?;
            workers.push(handle);
        }
        Ok(PostgresStore {
            jobs: Mutex::new(Some(tx)),
            workers,
        })
    }

    /// Runs `f` on a connection thread and waits for its result. A connection that
    /// failed is dropped so the next job reconnects.
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |conn, config| {
            let result = (|| {
                if conn.as_ref().is_none_or(|c| c.is_closed()) {
                    *conn = Some(connect(config)?);
                }
                match conn.as_mut() {
                    Some(client) => f(client),
                    None => Err(StoreError::Backend("postgres: no connection".into())),
                }
            })();
            if conn.as_ref().is_some_and(|c| c.is_closed()) {
                *conn = None;
            }
            let _ = reply_tx.send(result);
        });
        let sent = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|tx| tx.send(job).is_ok())
            .unwrap_or(false);
        if !sent {
            return Err(StoreError::Backend(
                "postgres: the store's connection threads have stopped".into(),
            ));
        }
        reply_rx.recv().map_err(|_| {
            StoreError::Backend("postgres: a connection thread stopped mid-request".into())
        })?
    }

    fn get_bytes(&self, sql: &'static str, key: Vec<u8>) -> Result<Option<Vec<u8>>, StoreError> {
        self.run(move |c| {
            let row = c.query_opt(sql, &[&key]).map_err(|e| pg_err(sql, &e))?;
            Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
        })
    }

    fn get_index(&self, sql: &'static str, hash: &Hash) -> Result<Option<u64>, StoreError> {
        let key = hash.as_bytes().to_vec();
        self.run(move |c| {
            let row = c.query_opt(sql, &[&key]).map_err(|e| pg_err(sql, &e))?;
            row.map(|r| to_u64(r.get::<_, i64>(0), "leaf index"))
                .transpose()
        })
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Closing the channel ends every worker after its current job.
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Last value per key, as sequential upserts would leave it (one multi-row
/// `INSERT … ON CONFLICT` may not touch a row twice).
fn last_per_key<K: Ord + Clone, V: Clone>(rows: &[(K, V)]) -> BTreeMap<K, V> {
    rows.iter().cloned().collect()
}

fn apply(c: &mut Client, batch: &Batch) -> Result<(), StoreError> {
    let mut txn = c
        .transaction()
        .map_err(|e| pg_err("starting the append transaction", &e))?;
    // Row lock on the tree state: concurrent appends queue here, and each one sees the
    // size committed by the one before it (READ COMMITTED re-reads a locked row).
    let row = txn
        .query_one("SELECT size FROM candor_state WHERE id = 1 FOR UPDATE", &[])
        .map_err(|e| pg_err("locking the tree state", &e))?;
    let found = to_u64(row.get(0), "tree size")?;
    if found != batch.old_size {
        // Dropping the transaction rolls it back: nothing of the batch is written.
        return Err(StoreError::Conflict {
            expected: batch.old_size,
            found,
        });
    }
    let size = to_i64(batch.new_state.size, "tree size")?;
    let root = batch.new_state.root.as_bytes().to_vec();
    txn.execute(
        "UPDATE candor_state SET size = $1, root = $2 WHERE id = 1",
        &[&size, &root],
    )
    .map_err(|e| pg_err("updating the tree state", &e))?;

    let tiles = last_per_key(&batch.tiles);
    if !tiles.is_empty() {
        let levels: Vec<i16> = tiles.keys().map(|t| i16::from(t.level)).collect();
        let idx = tiles
            .keys()
            .map(|t| to_i64(t.index, "tile index"))
            .collect::<Result<Vec<_>, _>>()?;
        let data: Vec<Vec<u8>> = tiles.into_values().collect();
        txn.execute(
            "INSERT INTO candor_tiles (level, idx, data) \
             SELECT * FROM UNNEST($1::smallint[], $2::bigint[], $3::bytea[]) \
             ON CONFLICT (level, idx) DO UPDATE SET data = EXCLUDED.data",
            &[&levels, &idx, &data],
        )
        .map_err(|e| pg_err("writing tiles", &e))?;
    }
    let bundles = last_per_key(&batch.bundles);
    if !bundles.is_empty() {
        let idx = bundles
            .keys()
            .map(|i| to_i64(*i, "bundle index"))
            .collect::<Result<Vec<_>, _>>()?;
        let data: Vec<Vec<u8>> = bundles.into_values().collect();
        txn.execute(
            "INSERT INTO candor_bundles (idx, data) \
             SELECT * FROM UNNEST($1::bigint[], $2::bytea[]) \
             ON CONFLICT (idx) DO UPDATE SET data = EXCLUDED.data",
            &[&idx, &data],
        )
        .map_err(|e| pg_err("writing entry bundles", &e))?;
    }
    for (table, rows) in [
        ("candor_leaf_index", &batch.leaf_index),
        ("candor_entry_index", &batch.entry_index),
    ] {
        let rows = last_per_key(rows);
        if rows.is_empty() {
            continue;
        }
        let hashes: Vec<Vec<u8>> = rows.keys().map(|h| h.as_bytes().to_vec()).collect();
        let idx = rows
            .into_values()
            .map(|i| to_i64(i, "leaf index"))
            .collect::<Result<Vec<_>, _>>()?;
        let sql = format!(
            "INSERT INTO {table} (hash, idx) SELECT * FROM UNNEST($1::bytea[], $2::bigint[]) \
             ON CONFLICT (hash) DO UPDATE SET idx = EXCLUDED.idx"
        );
        txn.execute(sql.as_str(), &[&hashes, &idx])
            .map_err(|e| pg_err(&format!("writing {table}"), &e))?;
    }
    let meta = last_per_key(&batch.meta);
    if !meta.is_empty() {
        let keys: Vec<Vec<u8>> = meta.keys().map(|k| k.as_bytes().to_vec()).collect();
        let values: Vec<Vec<u8>> = meta.into_values().collect();
        txn.execute(
            "INSERT INTO candor_meta (key, value) \
             SELECT * FROM UNNEST($1::bytea[], $2::bytea[]) \
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            &[&keys, &values],
        )
        .map_err(|e| pg_err("writing metadata", &e))?;
    }
    if let Some(note) = &batch.checkpoint {
        upsert_checkpoint(&mut txn, note)?;
    }
    // synchronous_commit = on: returns once the commit is flushed to the WAL.
    txn.commit().map_err(|e| pg_err("committing the batch", &e))
}

/// Stores `note` as the latest checkpoint unless the stored one is for a larger tree
/// ([`StoreError::StaleCheckpoint`]): a deposed sequencer cannot roll it back.
fn upsert_checkpoint(c: &mut impl GenericClient, note: &[u8]) -> Result<(), StoreError> {
    let size = to_i64(note_size(note), "checkpoint size")?;
    let n = c
        .execute(
            "INSERT INTO candor_checkpoint (id, size, note) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO UPDATE SET size = EXCLUDED.size, note = EXCLUDED.note \
             WHERE candor_checkpoint.size <= EXCLUDED.size",
            &[&size, &note],
        )
        .map_err(|e| pg_err("storing the checkpoint", &e))?;
    if n == 0 {
        let stored: i64 = c
            .query_one("SELECT size FROM candor_checkpoint WHERE id = 1", &[])
            .map_err(|e| pg_err("reading the checkpoint size", &e))?
            .get(0);
        return Err(StoreError::StaleCheckpoint {
            size: to_u64(size, "checkpoint size")?,
            stored: to_u64(stored, "checkpoint size")?,
        });
    }
    Ok(())
}

/// The tree size a checkpoint note commits to (its second line, C2SP
/// tlog-checkpoint), or 0 for bytes that are not a checkpoint.
fn note_size(note: &[u8]) -> u64 {
    note.split(|&b| b == b'\n')
        .nth(1)
        .and_then(|l| std::str::from_utf8(l).ok())
        .and_then(|l| l.parse::<u64>().ok())
        .unwrap_or(0)
}

/// The smallest byte string greater than every string starting with `prefix`, if any.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl Store for PostgresStore {
    fn append(&self, batch: &Batch) -> Result<(), StoreError> {
        batch.validate()?;
        let batch = batch.clone();
        self.run(move |c| apply(c, &batch))
    }

    fn state(&self) -> Result<Option<TreeState>, StoreError> {
        self.run(|c| {
            let row = c
                .query_opt("SELECT size, root FROM candor_state WHERE id = 1", &[])
                .map_err(|e| pg_err("reading the tree state", &e))?;
            let Some(row) = row else {
                return Err(StoreError::Corrupt(
                    "the candor_state row is missing".into(),
                ));
            };
            let root: Option<Vec<u8>> = row.get(1);
            match root {
                None => Ok(None),
                Some(root) => Ok(Some(TreeState {
                    size: to_u64(row.get(0), "tree size")?,
                    root: Hash::from_slice(&root).ok_or_else(|| {
                        StoreError::Corrupt("stored tree root is not 32 bytes".into())
                    })?,
                })),
            }
        })
    }

    fn read_tile(&self, id: TileId) -> Result<Option<Vec<u8>>, StoreError> {
        let level = i16::from(id.level);
        let idx = match i64::try_from(id.index) {
            Ok(i) => i,
            Err(_) => return Ok(None),
        };
        self.run(move |c| {
            let row = c
                .query_opt(
                    "SELECT data FROM candor_tiles WHERE level = $1 AND idx = $2",
                    &[&level, &idx],
                )
                .map_err(|e| pg_err("reading a tile", &e))?;
            Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
        })
    }

    fn read_bundle(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let idx = match i64::try_from(index) {
            Ok(i) => i,
            Err(_) => return Ok(None),
        };
        self.run(move |c| {
            let row = c
                .query_opt("SELECT data FROM candor_bundles WHERE idx = $1", &[&idx])
                .map_err(|e| pg_err("reading an entry bundle", &e))?;
            Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
        })
    }

    fn lookup_leaf(&self, leaf_hash: &Hash) -> Result<Option<u64>, StoreError> {
        self.get_index(
            "SELECT idx FROM candor_leaf_index WHERE hash = $1",
            leaf_hash,
        )
    }

    fn lookup_entry(&self, entry_hash: &Hash) -> Result<Option<u64>, StoreError> {
        self.get_index(
            "SELECT idx FROM candor_entry_index WHERE hash = $1",
            entry_hash,
        )
    }

    fn lookup_entries(&self, entry_hashes: &[Hash]) -> Result<Vec<Option<u64>>, StoreError> {
        if entry_hashes.is_empty() {
            return Ok(Vec::new());
        }
        // One round trip for the whole batch instead of one per entry.
        let keys: Vec<Vec<u8>> = entry_hashes.iter().map(|h| h.as_bytes().to_vec()).collect();
        let found: HashMap<Vec<u8>, u64> = self.run(move |c| {
            let sql = "SELECT hash, idx FROM candor_entry_index WHERE hash = ANY($1)";
            c.query(sql, &[&keys])
                .map_err(|e| pg_err(sql, &e))?
                .into_iter()
                .map(|r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0),
                        to_u64(r.get::<_, i64>(1), "leaf index")?,
                    ))
                })
                .collect()
        })?;
        Ok(entry_hashes
            .iter()
            .map(|h| found.get(h.as_bytes().as_slice()).copied())
            .collect())
    }

    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_bytes(
            "SELECT value FROM candor_meta WHERE key = $1",
            key.as_bytes().to_vec(),
        )
    }

    fn scan_meta(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let start = prefix.as_bytes().to_vec();
        let end = prefix_end(&start);
        let rows = self.run(move |c| {
            let rows = match &end {
                Some(end) => c.query(
                    "SELECT key, value FROM candor_meta WHERE key >= $1 AND key < $2 ORDER BY key",
                    &[&start, end],
                ),
                None => c.query(
                    "SELECT key, value FROM candor_meta WHERE key >= $1 ORDER BY key",
                    &[&start],
                ),
            }
            .map_err(|e| pg_err("scanning metadata", &e))?;
            Ok(rows
                .into_iter()
                .map(|r| (r.get::<_, Vec<u8>>(0), r.get::<_, Vec<u8>>(1)))
                .collect::<Vec<_>>())
        })?;
        rows.into_iter()
            .map(|(k, v)| Ok((super::decode_meta_key(&k)?, v)))
            .collect()
    }

    fn put_checkpoint(&self, note: &[u8]) -> Result<(), StoreError> {
        let note = note.to_vec();
        self.run(move |c| upsert_checkpoint(c, &note))
    }

    fn checkpoint(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.run(|c| {
            let row = c
                .query_opt("SELECT note FROM candor_checkpoint WHERE id = 1", &[])
                .map_err(|e| pg_err("reading the checkpoint", &e))?;
            Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
        })
    }

    fn kind(&self) -> StoreKind {
        StoreKind::Postgres
    }
}

/// The session-level advisory lock that makes one `candor serve` the log's only
/// sequencer. It lives on a connection of its own, watched by a thread that checks the
/// session every second; if the session is lost, so is the lock, and [`Self::lost`]
/// turns true. Dropping the value closes the session, which releases the lock.
pub struct SequencerLock {
    stop: Arc<AtomicBool>,
    lost: tokio::sync::watch::Receiver<bool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl SequencerLock {
    /// Tries once to take the lock: `Ok(None)` if another session holds it.
    pub fn try_acquire(url: &str) -> Result<Option<SequencerLock>, StoreError> {
        let config = postgres::Config::from_str(url).map_err(|e| {
            StoreError::Backend(format!(
                "postgres: {} is not a connection URL: {e}",
                redact_url(url)
            ))
        })?;
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<bool, StoreError>>(1);
        let (lost_tx, lost_rx) = tokio::sync::watch::channel(false);
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let handle = thread::Builder::new()
            .name("candor-pg-lock".into())
            .spawn(move || {
                let mut client = match connect(&config) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let got = client
                    .query_one("SELECT pg_try_advisory_lock($1)", &[&SEQUENCER_LOCK_KEY])
                    .map(|r| r.get::<_, bool>(0))
                    .map_err(|e| pg_err("taking the sequencer lock", &e));
                let held = matches!(got, Ok(true));
                let _ = ready_tx.send(got);
                if !held {
                    return;
                }
                // Watch the session: a failed round trip means the server may already
                // have released the lock, so this process must stop sequencing.
                while !thread_stop.load(Ordering::Relaxed) {
                    for _ in 0..10 {
                        if thread_stop.load(Ordering::Relaxed) {
                            return;
                        }
                        thread::sleep(Duration::from_millis(100));
                    }
                    if client.is_valid(Duration::from_secs(2)).is_err() {
                        let _ = lost_tx.send(true);
                        return;
                    }
                }
            })
            .map_err(|e| StoreError::from_io("starting the lock thread", &e))?;
        let got = ready_rx.recv().map_err(|_| {
            StoreError::Backend("postgres: the lock thread stopped unexpectedly".into())
        })?;
        match got {
            Ok(true) => Ok(Some(SequencerLock {
                stop,
                lost: lost_rx,
                thread: Some(handle),
            })),
            Ok(false) => {
                let _ = handle.join();
                Ok(None)
            }
            Err(e) => {
                let _ = handle.join();
                Err(e)
            }
        }
    }

    /// Turns true once the lock's session is found broken.
    pub fn lost(&self) -> tokio::sync::watch::Receiver<bool> {
        self.lost.clone()
    }
}

impl Drop for SequencerLock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("postgres:///db"), "postgres:///db");
    }

    #[test]
    fn prefix_bounds() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn checkpoint_sizes() {
        assert_eq!(note_size(b"example.com/log\n42\nAAAA\n\n- sig\n"), 42);
        assert_eq!(note_size(b"not a checkpoint\n"), 0);
    }
}
