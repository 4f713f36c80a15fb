//! The redb backend's hash indexes as sorted runs: a log-structured merge tree.
//!
//! A hash index has random keys. Merged into one B-tree, every bulk merge rewrote
//! most of the tree's pages, so its cost grew with the log and ingest fell from
//! ~38k entries/s over the first million entries to ~17k/s over the tenth
//! (BENCHMARKS.md, session 8). Here each flush of gathered rows is written as a new
//! immutable *run*, sorted by hash, with sequential keys, and [`FAN_IN`] runs of one
//! level are merged, by one sequential pass, into one run of the next level, up to
//! [`TOP_LEVEL`], whose runs gather unmerged so that no merge stalls an append for long.
//! Every row is rewritten once per level (log base [`FAN_IN`] of the log's size over
//! the flush size), and a look-up probes one chunk of each live run, newest first (of
//! the entry-hash index, only of the runs whose [`RunFilter`] may hold the hash).
//!
//! A run is stored as chunks of at most [`CHUNK_RECORDS`] records in [`RUN_CHUNKS`],
//! keyed (index, run, first hash of the chunk), so that the chunk that may hold a hash
//! is the last one whose key is not above it; a chunk fills one 4 KiB page. A record
//! is the hash and the leaf index (little-endian). [`RUNS`] lists the live runs:
//! (index, run) -> (level, records). Run numbers grow with age (a merge's output is
//! numbered above every run, and it only ever merges the newest runs), so of two
//! records for one hash the one in the higher-numbered run is the later and wins, as
//! it would have in a B-tree. Flushes and merges happen inside the append's write
//! transaction, so they are as durable and as atomic as the entries they index.

use super::StoreError;
use super::redb_store::map_err;
use crate::hash::Hash;
use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};
use std::ops::Bound;

/// (index, run, first hash of the chunk) -> records, sorted by hash.
pub(super) const RUN_CHUNKS: TableDefinition<(u8, u32, [u8; 32]), &[u8]> =
    TableDefinition::new("index_run_chunks");
/// (index, run) -> (level, records): the live runs.
pub(super) const RUNS: TableDefinition<(u8, u32), (u8, u64)> = TableDefinition::new("index_runs");

/// The leaf-hash index's tag in both tables.
pub(super) const LEAF: u8 = b'L';
/// The entry-hash index's tag in both tables.
pub(super) const ENTRY: u8 = b'E';

/// Bytes of one record: the hash, then the leaf index (little-endian).
const RECORD_BYTES: usize = 32 + 8;
/// Records per chunk: 4,000 bytes, which with its 39-byte key fits one 4 KiB page.
const CHUNK_RECORDS: usize = 100;
/// Runs of one level merged into one run of the next: each row is rewritten once
/// per level, and a level holds at most `FAN_IN - 1` runs between merges.
pub(super) const FAN_IN: usize = 4;
/// Runs of this level are never merged: they hold up to 4^4 flushes (about 1.7·10^7
/// rows), whose merge stalls its append for a few seconds, and a merge one level up
/// would stall it for a quarter of a minute. Past ~10^8 entries the top level then
/// gathers a run per 1.7·10^7 entries, each tested in memory by its filter.
pub(super) const TOP_LEVEL: u8 = 4;

/// One live run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Run {
    pub(super) id: u32,
    pub(super) level: u8,
    pub(super) records: u64,
}

/// The live runs of index `tag`, newest first.
pub(super) fn live_runs(
    runs: &impl ReadableTable<(u8, u32), (u8, u64)>,
    tag: u8,
) -> Result<Vec<Run>, StoreError> {
    let mut out = Vec::new();
    for row in runs.range((tag, 0)..=(tag, u32::MAX)).map_err(map_err)? {
        let (key, value) = row.map_err(map_err)?;
        let (level, records) = value.value();
        out.push(Run {
            id: key.value().1,
            level,
            records,
        });
    }
    out.reverse();
    Ok(out)
}

/// The leaf index recorded for `hash` in run `run` of index `tag`, if any.
pub(super) fn probe(
    chunks: &impl ReadableTable<(u8, u32, [u8; 32]), &'static [u8]>,
    tag: u8,
    run: u32,
    hash: &Hash,
) -> Result<Option<u64>, StoreError> {
    let found = chunks
        .range((tag, run, [0u8; 32])..=(tag, run, *hash.as_bytes()))
        .map_err(map_err)?
        .next_back();
    let Some(row) = found else {
        return Ok(None);
    };
    let (_, value) = row.map_err(map_err)?;
    find_in_chunk(value.value(), hash)
}

/// Binary search of one chunk's records.
fn find_in_chunk(chunk: &[u8], hash: &Hash) -> Result<Option<u64>, StoreError> {
    if chunk.is_empty() || !chunk.len().is_multiple_of(RECORD_BYTES) {
        return Err(corrupt_chunk(chunk.len()));
    }
    let records = chunk.len() / RECORD_BYTES;
    let (mut lo, mut hi) = (0, records);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let record = &chunk[mid * RECORD_BYTES..(mid + 1) * RECORD_BYTES];
        match record[..32].cmp(hash.as_bytes().as_slice()) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return Ok(Some(record_index(record))),
        }
    }
    Ok(None)
}

fn record_index(record: &[u8]) -> u64 {
    let mut le = [0u8; 8];
    le.copy_from_slice(&record[32..RECORD_BYTES]);
    u64::from_le_bytes(le)
}

fn corrupt_chunk(len: usize) -> StoreError {
    StoreError::Corrupt(format!(
        "an index run chunk is {len} bytes, not a positive multiple of {RECORD_BYTES}"
    ))
}

/// Writes `rows` (in the order they were logged, so that of two rows for one hash
/// the later wins) as a new run of index `tag`, then merges every level that holds
/// [`FAN_IN`] runs. Part of the caller's write transaction; returns what changed,
/// with a [`RunFilter`] for each new run if `filters`, to apply once it commits.
pub(super) fn add_run(
    txn: &WriteTransaction,
    tag: u8,
    rows: &[(Hash, u64)],
    filters: bool,
) -> Result<Vec<RunChange>, StoreError> {
    add_run_below(txn, tag, rows, filters, TOP_LEVEL)
}

/// [`add_run`] with runs of level `top` never merged.
fn add_run_below(
    txn: &WriteTransaction,
    tag: u8,
    rows: &[(Hash, u64)],
    filters: bool,
    top: u8,
) -> Result<Vec<RunChange>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    // A stable sort keeps a hash's rows in logged order; the last of each is kept.
    let mut sorted: Vec<&(Hash, u64)> = rows.iter().collect();
    sorted.sort_by_key(|(hash, _)| *hash);
    let mut chunks = txn.open_table(RUN_CHUNKS).map_err(map_err)?;
    let mut runs = txn.open_table(RUNS).map_err(map_err)?;
    let live = live_runs(&runs, tag)?;
    let id = next_id(&live)?;
    let mut out = RunWriter::new(tag, id, filters.then_some(rows.len() as u64));
    for (i, (hash, index)) in sorted.iter().enumerate() {
        if sorted.get(i + 1).is_some_and(|(next, _)| next == hash) {
            continue;
        }
        out.push(&mut chunks, hash.as_bytes(), *index)?;
    }
    let (records, filter) = out.finish(&mut chunks)?;
    runs.insert((tag, id), (0, records)).map_err(map_err)?;
    let mut changes = vec![RunChange::Added(id, filter)];
    merge_full_levels(&mut chunks, &mut runs, tag, filters, top, &mut changes)?;
    Ok(changes)
}

/// Writes `rows`, given in strictly increasing hash order, as the first run of index
/// `tag`, at `level`: how the B-tree index of a file written before runs becomes its
/// oldest run. Writes nothing and returns `false` if the index has runs already.
pub(super) fn import_sorted(
    txn: &WriteTransaction,
    tag: u8,
    rows: impl IntoIterator<Item = Result<([u8; 32], u64), StoreError>>,
    level: u8,
) -> Result<bool, StoreError> {
    let mut chunks = txn.open_table(RUN_CHUNKS).map_err(map_err)?;
    let mut runs = txn.open_table(RUNS).map_err(map_err)?;
    if !live_runs(&runs, tag)?.is_empty() {
        return Ok(false);
    }
    let mut out = RunWriter::new(tag, 0, None);
    let mut last: Option<[u8; 32]> = None;
    for row in rows {
        let (hash, index) = row?;
        if last.is_some_and(|l| l >= hash) {
            return Err(StoreError::Corrupt(
                "an index B-tree's keys are out of order".into(),
            ));
        }
        last = Some(hash);
        out.push(&mut chunks, &hash, index)?;
    }
    let (records, _) = out.finish(&mut chunks)?;
    if records > 0 {
        runs.insert((tag, 0), (level, records)).map_err(map_err)?;
    }
    Ok(true)
}

/// A number above every live run's.
fn next_id(live: &[Run]) -> Result<u32, StoreError> {
    match live.first() {
        None => Ok(0),
        Some(newest) => newest
            .id
            .checked_add(1)
            .ok_or_else(|| StoreError::Backend("index run numbers are exhausted".into())),
    }
}

/// Merges the runs of the lowest level that holds [`FAN_IN`] of them, and again for
/// the level above, until no level below `top` is full. Levels only fill from below, so the runs
/// of a full level are the newest, and the merged run, numbered above them, keeps
/// numbers in age order; a level whose runs are not the newest (a file written with
/// other constants) is left alone rather than reordered.
fn merge_full_levels(
    chunks: &mut Table<(u8, u32, [u8; 32]), &'static [u8]>,
    runs: &mut Table<(u8, u32), (u8, u64)>,
    tag: u8,
    filters: bool,
    top: u8,
    changes: &mut Vec<RunChange>,
) -> Result<(), StoreError> {
    loop {
        let live = live_runs(runs, tag)?;
        let Some(newest) = live.first() else {
            return Ok(());
        };
        let level = newest.level;
        let inputs: Vec<Run> = live
            .iter()
            .take_while(|r| r.level == level)
            .copied()
            .collect();
        if inputs.len() < FAN_IN || level >= top {
            return Ok(());
        }
        let id = next_id(&live)?;
        let started = std::time::Instant::now();
        let (records, filter) = merge_runs(chunks, tag, &inputs, id, filters)?;
        for run in &inputs {
            chunks
                .retain_in(
                    (tag, run.id, [0u8; 32])..=(tag, run.id, [0xff; 32]),
                    |_, _| false,
                )
                .map_err(map_err)?;
            runs.remove((tag, run.id)).map_err(map_err)?;
            changes.push(RunChange::Removed(run.id));
        }
        let level = level
            .checked_add(1)
            .ok_or_else(|| StoreError::Corrupt("an index run's level is 255".into()))?;
        runs.insert((tag, id), (level, records)).map_err(map_err)?;
        changes.push(RunChange::Added(id, filter));
        // Merges stall the append that carries them, in proportion to their size.
        tracing::info!(
            index = if tag == LEAF {
                "leaf_hash"
            } else {
                "entry_hash"
            },
            level,
            records,
            seconds = started.elapsed().as_secs_f64(),
            "merged {FAN_IN} index runs into one"
        );
    }
}

/// Writes the union of `inputs` (newest first) as run `id`, one sequential pass over
/// each; of records for one hash the newest run's is kept. Returns its record count,
/// and its filter if `filter`.
fn merge_runs(
    chunks: &mut Table<(u8, u32, [u8; 32]), &'static [u8]>,
    tag: u8,
    inputs: &[Run],
    id: u32,
    filter: bool,
) -> Result<(u64, Option<RunFilter>), StoreError> {
    let mut readers = inputs
        .iter()
        .map(|run| RunReader::open(chunks, tag, run.id))
        .collect::<Result<Vec<_>, _>>()?;
    let capacity: u64 = inputs.iter().map(|r| r.records).sum();
    let mut out = RunWriter::new(tag, id, filter.then_some(capacity));
    loop {
        // The smallest head; on a tie the first reader, the newest run, wins.
        let mut best: Option<(usize, [u8; 32])> = None;
        for (i, reader) in readers.iter().enumerate() {
            if let Some(head) = reader.head()
                && best.is_none_or(|(_, b)| head[..32] < b[..])
            {
                let mut key = [0u8; 32];
                key.copy_from_slice(&head[..32]);
                best = Some((i, key));
            }
        }
        let Some((winner, key)) = best else {
            break;
        };
        let index = readers[winner].head().map(record_index).unwrap_or_default();
        out.push(chunks, &key, index)?;
        for reader in &mut readers {
            if reader.head().is_some_and(|h| h[..32] == key[..]) {
                reader.advance(chunks)?;
            }
        }
    }
    out.finish(chunks)
}

/// Reads one run's records in order, a chunk at a time.
struct RunReader {
    tag: u8,
    run: u32,
    /// The current chunk's key and records.
    key: [u8; 32],
    chunk: Vec<u8>,
    at: usize,
}

impl RunReader {
    fn open(
        chunks: &impl ReadableTable<(u8, u32, [u8; 32]), &'static [u8]>,
        tag: u8,
        run: u32,
    ) -> Result<RunReader, StoreError> {
        let mut reader = RunReader {
            tag,
            run,
            key: [0; 32],
            chunk: Vec::new(),
            at: 0,
        };
        reader.load(chunks, Bound::Included((tag, run, [0u8; 32])))?;
        Ok(reader)
    }

    /// Loads the first chunk of the run at or after `from`, or ends the run.
    fn load(
        &mut self,
        chunks: &impl ReadableTable<(u8, u32, [u8; 32]), &'static [u8]>,
        from: Bound<(u8, u32, [u8; 32])>,
    ) -> Result<(), StoreError> {
        self.chunk.clear();
        self.at = 0;
        let row = chunks
            .range::<(u8, u32, [u8; 32])>((from, Bound::Included((self.tag, self.run, [0xff; 32]))))
            .map_err(map_err)?
            .next();
        if let Some(row) = row {
            let (key, value) = row.map_err(map_err)?;
            let value = value.value();
            if value.is_empty() || !value.len().is_multiple_of(RECORD_BYTES) {
                return Err(corrupt_chunk(value.len()));
            }
            self.key = key.value().2;
            self.chunk.extend_from_slice(value);
        }
        Ok(())
    }

    fn head(&self) -> Option<&[u8]> {
        self.chunk.get(self.at..self.at + RECORD_BYTES)
    }

    fn advance(
        &mut self,
        chunks: &impl ReadableTable<(u8, u32, [u8; 32]), &'static [u8]>,
    ) -> Result<(), StoreError> {
        self.at += RECORD_BYTES;
        if self.at >= self.chunk.len() {
            self.load(chunks, Bound::Excluded((self.tag, self.run, self.key)))?;
        }
        Ok(())
    }
}

/// Writes one run's records, given in hash order, as chunks.
struct RunWriter {
    tag: u8,
    run: u32,
    chunk: Vec<u8>,
    records: u64,
    filter: Option<RunFilter>,
}

impl RunWriter {
    /// `filter`: build a [`RunFilter`] sized for this many records.
    fn new(tag: u8, run: u32, filter: Option<u64>) -> RunWriter {
        RunWriter {
            tag,
            run,
            chunk: Vec::with_capacity(CHUNK_RECORDS * RECORD_BYTES),
            records: 0,
            filter: filter.map(RunFilter::with_capacity),
        }
    }

    fn push(
        &mut self,
        chunks: &mut Table<(u8, u32, [u8; 32]), &'static [u8]>,
        hash: &[u8; 32],
        index: u64,
    ) -> Result<(), StoreError> {
        self.chunk.extend_from_slice(hash);
        self.chunk.extend_from_slice(&index.to_le_bytes());
        self.records += 1;
        if let Some(filter) = &mut self.filter {
            filter.insert(hash);
        }
        if self.chunk.len() == CHUNK_RECORDS * RECORD_BYTES {
            self.write(chunks)?;
        }
        Ok(())
    }

    fn write(
        &mut self,
        chunks: &mut Table<(u8, u32, [u8; 32]), &'static [u8]>,
    ) -> Result<(), StoreError> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let mut first = [0u8; 32];
        first.copy_from_slice(&self.chunk[..32]);
        chunks
            .insert((self.tag, self.run, first), self.chunk.as_slice())
            .map_err(map_err)?;
        self.chunk.clear();
        Ok(())
    }

    fn finish(
        mut self,
        chunks: &mut Table<(u8, u32, [u8; 32]), &'static [u8]>,
    ) -> Result<(u64, Option<RunFilter>), StoreError> {
        self.write(chunks)?;
        Ok((self.records, self.filter))
    }
}

/// Bits of [`RunFilter`] per record: with [`FILTER_PROBES`] bits set per record in one
/// 512-bit block, about 1 % of look-ups of an absent hash still read the run.
const FILTER_BITS_PER_RECORD: usize = 10;
/// Bits set per record, all in one block (one cache line).
const FILTER_PROBES: usize = 8;

/// A blocked Bloom filter over one run's hashes, kept in memory for the entry-hash
/// index: nearly every submission is new, and without it each one read a chunk of
/// every live run (45 % of the server's CPU at 10^7 entries, BENCHMARKS.md). The
/// hashes are SHA-256 outputs, so their bytes serve as the filter's hash functions.
#[derive(Debug)]
pub(super) struct RunFilter {
    blocks: Vec<[u64; 8]>,
}

impl RunFilter {
    pub(super) fn with_capacity(records: u64) -> RunFilter {
        let bits = usize::try_from(records)
            .unwrap_or(usize::MAX / FILTER_BITS_PER_RECORD)
            .saturating_mul(FILTER_BITS_PER_RECORD);
        RunFilter {
            blocks: vec![[0; 8]; bits.div_ceil(512).max(1)],
        }
    }

    /// The block (from the hash's first 8 bytes, scaled to the number of blocks) and
    /// the bits within it (9 bits each from the next 16 bytes).
    fn positions(&self, hash: &[u8; 32]) -> (usize, [u16; FILTER_PROBES]) {
        let mut head = [0u8; 8];
        head.copy_from_slice(&hash[..8]);
        let x = u64::from_le_bytes(head) as u128;
        let block = ((x * self.blocks.len() as u128) >> 64) as usize;
        let mut bits = [0u16; FILTER_PROBES];
        for (i, bit) in bits.iter_mut().enumerate() {
            *bit = u16::from_le_bytes([hash[8 + 2 * i], hash[9 + 2 * i]]) & 511;
        }
        (block, bits)
    }

    pub(super) fn insert(&mut self, hash: &[u8; 32]) {
        let (block, bits) = self.positions(hash);
        let words = &mut self.blocks[block];
        for bit in bits {
            words[usize::from(bit >> 6)] |= 1 << (bit & 63);
        }
    }

    /// False only if the run cannot hold `hash`.
    pub(super) fn may_contain(&self, hash: &Hash) -> bool {
        let (block, bits) = self.positions(hash.as_bytes());
        let words = &self.blocks[block];
        bits.iter()
            .all(|&bit| words[usize::from(bit >> 6)] & (1 << (bit & 63)) != 0)
    }

    /// The filter of run `run` of index `tag`, read from its chunks (on open).
    pub(super) fn of_run(
        chunks: &impl ReadableTable<(u8, u32, [u8; 32]), &'static [u8]>,
        tag: u8,
        run: &Run,
    ) -> Result<RunFilter, StoreError> {
        let mut filter = RunFilter::with_capacity(run.records);
        let mut reader = RunReader::open(chunks, tag, run.id)?;
        let mut records = 0u64;
        while let Some(head) = reader.head() {
            let mut hash = [0u8; 32];
            hash.copy_from_slice(&head[..32]);
            filter.insert(&hash);
            records += 1;
            reader.advance(chunks)?;
        }
        if records != run.records {
            return Err(StoreError::Corrupt(format!(
                "index run {} is listed with {} records but holds {records}",
                run.id, run.records
            )));
        }
        Ok(filter)
    }
}

/// What an [`add_run`] did to the live runs, in order, for filters kept in memory.
#[derive(Debug)]
pub(super) enum RunChange {
    /// A run was written; its filter if the caller asked for filters.
    Added(u32, Option<RunFilter>),
    /// A run was merged away.
    Removed(u32),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::sha256;
    use redb::{Database, ReadableDatabase};
    use std::collections::HashMap;

    fn hash(k: u64, i: u64) -> Hash {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&k.to_le_bytes());
        b[8..].copy_from_slice(&i.to_le_bytes());
        sha256(&b)
    }

    /// The runs of `tag`, each checked: records sorted across its chunks, chunks full
    /// but the last, counts as listed.
    fn check_runs(db: &Database, tag: u8) -> Vec<Run> {
        let txn = db.begin_read().unwrap();
        let runs = txn.open_table(RUNS).unwrap();
        let chunks = txn.open_table(RUN_CHUNKS).unwrap();
        let live = live_runs(&runs, tag).unwrap();
        for run in &live {
            let mut last: Option<Vec<u8>> = None;
            let mut records = 0u64;
            let rows: Vec<_> = chunks
                .range((tag, run.id, [0u8; 32])..=(tag, run.id, [0xff; 32]))
                .unwrap()
                .map(|r| r.unwrap())
                .collect();
            for (n, (key, value)) in rows.iter().enumerate() {
                let value = value.value();
                assert_eq!(
                    key.value().2[..],
                    value[..32],
                    "a chunk's key is its first hash"
                );
                if n + 1 < rows.len() {
                    assert_eq!(value.len(), CHUNK_RECORDS * RECORD_BYTES);
                }
                for record in value.chunks_exact(RECORD_BYTES) {
                    if let Some(prev) = &last {
                        assert!(prev[..] < record[..32], "records strictly in hash order");
                    }
                    last = Some(record[..32].to_vec());
                    records += 1;
                }
            }
            assert_eq!(records, run.records);
        }
        live
    }

    fn lookup(db: &Database, tag: u8, hash: &Hash) -> Option<u64> {
        lookup_filtered(db, tag, hash, &HashMap::new())
    }

    /// A look-up that skips the runs whose filter (if it has one) rules `hash` out.
    fn lookup_filtered(
        db: &Database,
        tag: u8,
        hash: &Hash,
        filters: &HashMap<u32, RunFilter>,
    ) -> Option<u64> {
        let txn = db.begin_read().unwrap();
        let runs = txn.open_table(RUNS).unwrap();
        let chunks = txn.open_table(RUN_CHUNKS).unwrap();
        for run in live_runs(&runs, tag).unwrap() {
            if filters.get(&run.id).is_some_and(|f| !f.may_contain(hash)) {
                continue;
            }
            if let Some(i) = probe(&chunks, tag, run.id, hash).unwrap() {
                return Some(i);
            }
        }
        None
    }

    /// Flushes of 150 rows (two chunks each), every one also re-recording one shared
    /// hash: levels fill and merge like the digits of a base-FAN_IN counter, every
    /// hash keeps its latest index, and the other index is untouched.
    #[test]
    fn runs_merge_level_by_level_and_the_latest_record_wins() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("runs.redb")).unwrap();
        let shared = sha256(b"shared");
        let mut model: HashMap<Hash, u64> = HashMap::new();
        let mut filters: HashMap<u32, RunFilter> = HashMap::new();
        let flushes = (FAN_IN * FAN_IN + FAN_IN + 1) as u64;
        let mut next = 0u64;
        for k in 0..flushes {
            let mut rows: Vec<(Hash, u64)> = (0..150).map(|i| (hash(k, i), next + i)).collect();
            // Twice in one flush: the later row wins there too.
            rows.push((shared, next + 1000));
            rows.push((shared, next + 2000));
            next += 3000;
            for (h, i) in &rows {
                model.insert(*h, *i);
            }
            let txn = db.begin_write().unwrap();
            assert!(matches!(
                add_run(&txn, LEAF, &rows, false).unwrap()[..],
                [RunChange::Added(_, None), ..]
            ));
            // The entry-hash index gets the same rows, with filters.
            for change in add_run(&txn, ENTRY, &rows, true).unwrap() {
                match change {
                    RunChange::Added(id, filter) => {
                        filters.insert(id, filter.expect("a filter was asked for"));
                    }
                    RunChange::Removed(id) => {
                        filters.remove(&id).expect("a removed run had a filter");
                    }
                }
            }
            txn.commit().unwrap();

            let live = check_runs(&db, LEAF);
            let mut digits = Vec::new();
            let mut n = k as usize + 1;
            while n > 0 {
                digits.push(n % FAN_IN);
                n /= FAN_IN;
            }
            for (level, &digit) in digits.iter().enumerate() {
                let at_level = live.iter().filter(|r| r.level as usize == level).count();
                assert_eq!(at_level, digit, "flush {k}: runs at level {level}");
            }
            let ids: Vec<u32> = live.iter().map(|r| r.id).collect();
            assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
            let levels: Vec<u8> = live.iter().map(|r| r.level).collect();
            assert!(
                levels.windows(2).all(|w| w[0] <= w[1]),
                "older runs are higher: {levels:?}"
            );
            let total: u64 = live.iter().map(|r| r.records).sum();
            assert!(total >= model.len() as u64);
            let entry_runs = check_runs(&db, ENTRY);
            assert_eq!(entry_runs, live, "both indexes got the same rows");
            assert_eq!(filters.len(), live.len(), "one filter per live run");
            for (h, i) in &model {
                assert_eq!(lookup(&db, LEAF, h), Some(*i), "flush {k}");
                assert_eq!(lookup_filtered(&db, ENTRY, h, &filters), Some(*i));
            }
        }
        assert_eq!(
            lookup(&db, LEAF, &shared),
            Some((flushes - 1) * 3000 + 2000)
        );
        assert_eq!(lookup(&db, LEAF, &sha256(b"never logged")), None);
        assert_eq!(lookup(&db, LEAF, &Hash([0; 32])), None);
        assert_eq!(lookup(&db, LEAF, &Hash([0xff; 32])), None);
        // Filters rebuilt from the stored runs (as on open) agree with those built as
        // the runs were written.
        let txn = db.begin_read().unwrap();
        let chunks = txn.open_table(RUN_CHUNKS).unwrap();
        for run in check_runs(&db, ENTRY) {
            let rebuilt = RunFilter::of_run(&chunks, ENTRY, &run).unwrap();
            assert_eq!(rebuilt.blocks, filters[&run.id].blocks);
        }
        drop((chunks, txn));
        // Merged runs leave no chunks behind: every stored record is in a live run.
        let txn = db.begin_read().unwrap();
        let chunks = txn.open_table(RUN_CHUNKS).unwrap();
        let stored: usize = chunks
            .iter()
            .unwrap()
            .map(|r| r.unwrap().1.value().len() / RECORD_BYTES)
            .sum();
        let live: u64 = [LEAF, ENTRY]
            .iter()
            .flat_map(|&tag| check_runs(&db, tag))
            .map(|r| r.records)
            .sum();
        assert_eq!(stored as u64, live);
    }

    /// Runs of the top level gather instead of merging, and are still all read.
    #[test]
    fn top_level_runs_are_never_merged() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("runs.redb")).unwrap();
        let flushes = 5 * FAN_IN * FAN_IN + 2;
        for k in 0..flushes as u64 {
            let rows: Vec<(Hash, u64)> = (0..10).map(|i| (hash(k, i), k * 10 + i)).collect();
            let txn = db.begin_write().unwrap();
            add_run_below(&txn, LEAF, &rows, false, 2).unwrap();
            txn.commit().unwrap();
        }
        let levels: Vec<u8> = check_runs(&db, LEAF).iter().map(|r| r.level).collect();
        assert_eq!(
            levels,
            [0, 0, 2, 2, 2, 2, 2],
            "two flushes, then five level-2 runs"
        );
        for k in 0..flushes as u64 {
            for i in 0..10 {
                assert_eq!(lookup(&db, LEAF, &hash(k, i)), Some(k * 10 + i));
            }
        }
    }

    /// No false negatives; about 1 % false positives at the configured size.
    #[test]
    fn filters_hold_every_hash_and_rule_out_most_others() {
        let n = 20_000u64;
        let mut filter = RunFilter::with_capacity(n);
        for i in 0..n {
            filter.insert(hash(1, i).as_bytes());
        }
        assert!((0..n).all(|i| filter.may_contain(&hash(1, i))));
        let false_positives = (0..n).filter(|&i| filter.may_contain(&hash(2, i))).count();
        assert!(
            false_positives < n as usize / 40,
            "{false_positives} of {n} absent hashes pass"
        );
        // An empty run's filter still answers.
        assert!(!RunFilter::with_capacity(0).may_contain(&hash(3, 0)));
    }

    #[test]
    fn damaged_chunks_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("runs.redb")).unwrap();
        let h = sha256(b"x");
        let txn = db.begin_write().unwrap();
        {
            let mut chunks = txn.open_table(RUN_CHUNKS).unwrap();
            chunks
                .insert((LEAF, 0, [0u8; 32]), [1u8; 41].as_slice())
                .unwrap();
            let mut runs = txn.open_table(RUNS).unwrap();
            runs.insert((LEAF, 0), (0, 1)).unwrap();
        }
        txn.commit().unwrap();
        let txn = db.begin_read().unwrap();
        let chunks = txn.open_table(RUN_CHUNKS).unwrap();
        assert!(matches!(
            probe(&chunks, LEAF, 0, &h),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            RunReader::open(&chunks, LEAF, 0),
            Err(StoreError::Corrupt(_))
        ));
        // A run listed with more records than its chunks hold.
        drop((chunks, txn));
        let txn = db.begin_write().unwrap();
        {
            let mut chunks = txn.open_table(RUN_CHUNKS).unwrap();
            chunks
                .insert((ENTRY, 0, *h.as_bytes()), [7u8; 40].as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
        let txn = db.begin_read().unwrap();
        let chunks = txn.open_table(RUN_CHUNKS).unwrap();
        let listed = |records| Run {
            id: 0,
            level: 0,
            records,
        };
        assert!(RunFilter::of_run(&chunks, ENTRY, &listed(1)).is_ok());
        assert!(matches!(
            RunFilter::of_run(&chunks, ENTRY, &listed(2)),
            Err(StoreError::Corrupt(_))
        ));
    }
}
