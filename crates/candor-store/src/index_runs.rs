//! The redb backend's hash indexes as sorted runs: a log-structured merge tree.
//!
//! A hash index has random keys. Merged into one B-tree, every bulk merge rewrites
//! most of the tree's pages, so its cost grows with the log (BENCHMARKS.md,
//! "Ingest"). Here each flush of gathered rows is written as a new
//! immutable *run*, sorted by hash, with sequential keys, and [`FAN_IN`] runs of one
//! level are merged, by one sequential pass, into one run of the next level, up to
//! [`TOP_LEVEL`], whose runs gather unmerged. Every row is rewritten once per level
//! (log base [`FAN_IN`] of the log's size over the flush size), and a look-up probes
//! one chunk of each live run (of the entry-hash index, only of the runs whose
//! [`RunFilter`] may hold the hash).
//!
//! A run is stored as chunks of at most [`CHUNK_RECORDS`] records in [`RUN_CHUNKS`],
//! keyed (index, run, first hash of the chunk), so that the chunk that may hold a hash
//! is the last one whose key is not above it; a chunk fills one 4 KiB page. A record
//! is the hash and the leaf index (little-endian). [`RUNS`] lists the live runs:
//! (index, run) -> (level, records). Of two records for one hash the one with the
//! larger leaf index wins: it was logged later ([`super::Batch`] checks that a
//! batch's rows are in order and within the batch), as it would have in a B-tree.
//!
//! A merge is spread over many appends, so that none stalls: [`step`], called in
//! every append's write transaction, starts a merge when a level holds [`FAN_IN`]
//! runs that no merge is reading, and moves each merge in progress on by a bounded
//! number of records, writing its output run's chunks in hash order. [`MERGES`]
//! records where each merge stands (its inputs, its output's number, the last hash
//! written); its inputs stay live, and are what look-ups read, until the step that
//! writes their last record lists the output and unlists them in one commit. Their
//! chunks are then deleted a bounded number per append ([`DEAD_RUNS`]). All of it is
//! in the append's write transaction, so it is as durable and as atomic as the
//! entries it indexes, and a restart resumes each merge where its last commit left it.

use super::StoreError;
use super::redb_errors::map_err;
use candor_core::hash::Hash;
use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};
use std::collections::HashMap;
use std::ops::Bound;

/// (index, run, first hash of the chunk) -> records, sorted by hash.
pub(super) const RUN_CHUNKS: TableDefinition<(u8, u32, [u8; 32]), &[u8]> =
    TableDefinition::new("index_run_chunks");
/// (index, run) -> (level, records): the live runs.
pub(super) const RUNS: TableDefinition<(u8, u32), (u8, u64)> = TableDefinition::new("index_runs");
/// (index, level of its inputs) -> a merge in progress, as [`Merge::encode`] writes it.
pub(super) const MERGES: TableDefinition<(u8, u8), &[u8]> = TableDefinition::new("index_merges");
/// (index, run) -> records: runs merged away whose chunks are still to be deleted.
pub(super) const DEAD_RUNS: TableDefinition<(u8, u32), u64> =
    TableDefinition::new("index_dead_runs");

/// The leaf-hash index's tag in the tables.
pub(super) const LEAF: u8 = b'L';
/// The entry-hash index's tag in the tables.
pub(super) const ENTRY: u8 = b'E';

/// Bytes of one record: the hash, then the leaf index (little-endian).
const RECORD_BYTES: usize = 32 + 8;
/// Records per chunk: 4,000 bytes, which with its 39-byte key fits one 4 KiB page.
const CHUNK_RECORDS: usize = 100;
/// Runs of one level merged into one run of the next: each row is rewritten once
/// per level, and a level holds at most `FAN_IN - 1` runs between merges (and up
/// to `2 * FAN_IN - 1` while one merges).
pub(super) const FAN_IN: usize = 4;
/// Runs of this level are never merged. They hold up to 4^5 flushes (about 6.7·10^7
/// rows). Merges do not stall appends, so this only bounds what one merge holds while
/// it runs: its inputs' filters and its output's, both in memory (~170 MB for a merge
/// into this level, ~670 MB one level up), and its inputs' chunks on disk. Past
/// 6.7·10^7 entries the top level gathers a run per 6.7·10^7 entries, each tested in
/// memory by its filter.
pub(super) const TOP_LEVEL: u8 = 5;

/// Dead chunks deleted per append, for every `CHUNK_RECORDS` records of merge budget:
/// twice the rate at which merges make them, so deletion keeps up.
const DELETES_PER_CHUNK_OF_BUDGET: usize = 2;

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
    let chunk = value.value();
    check_chunk(chunk)?;
    Ok(match first_at_or_after(chunk, hash.as_bytes()) {
        Some(at) if chunk[at..at + 32] == hash.as_bytes()[..] => {
            Some(record_index(&chunk[at..at + RECORD_BYTES]))
        }
        _ => None,
    })
}

/// The byte offset of the first record of `chunk` whose hash is not below `hash`, by
/// binary search; `None` if every record's is.
fn first_at_or_after(chunk: &[u8], hash: &[u8; 32]) -> Option<usize> {
    let records = chunk.len() / RECORD_BYTES;
    let (mut lo, mut hi) = (0, records);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if chunk[mid * RECORD_BYTES..mid * RECORD_BYTES + 32] < hash[..] {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    (lo < records).then_some(lo * RECORD_BYTES)
}

fn record_index(record: &[u8]) -> u64 {
    let mut le = [0u8; 8];
    le.copy_from_slice(&record[32..RECORD_BYTES]);
    u64::from_le_bytes(le)
}

fn check_chunk(chunk: &[u8]) -> Result<(), StoreError> {
    if chunk.is_empty() || !chunk.len().is_multiple_of(RECORD_BYTES) {
        return Err(StoreError::Corrupt(format!(
            "an index run chunk is {} bytes, not a positive multiple of {RECORD_BYTES}",
            chunk.len()
        )));
    }
    Ok(())
}

/// Writes `rows` (in the order they were logged) as a new run of level 0 of index
/// `tag`, keeping the last row of each hash. Part of the caller's write transaction;
/// returns the change, with the run's [`RunFilter`] if `filter`, to apply once it
/// commits. Merging is [`step`]'s.
pub(super) fn add_run(
    txn: &WriteTransaction,
    tag: u8,
    rows: &[(Hash, u64)],
    filter: bool,
) -> Result<Option<RunChange>, StoreError> {
    if rows.is_empty() {
        return Ok(None);
    }
    // A stable sort keeps a hash's rows in logged order; the last of each is kept.
    let mut sorted: Vec<&(Hash, u64)> = rows.iter().collect();
    sorted.sort_by_key(|(hash, _)| *hash);
    let id = next_id(txn, tag, &merges(txn, tag)?)?;
    let mut chunks = txn.open_table(RUN_CHUNKS).map_err(map_err)?;
    let mut runs = txn.open_table(RUNS).map_err(map_err)?;
    let mut new_filter = filter.then(|| RunFilter::with_capacity(rows.len() as u64));
    let mut out = RunWriter::new(tag, id, 0, new_filter.as_mut());
    for (i, (hash, index)) in sorted.iter().enumerate() {
        if sorted.get(i + 1).is_some_and(|(next, _)| next == hash) {
            continue;
        }
        out.push(&mut chunks, hash.as_bytes(), *index)?;
    }
    let records = out.finish(&mut chunks)?;
    runs.insert((tag, id), (0, records)).map_err(map_err)?;
    Ok(Some(RunChange::Added(id, new_filter)))
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
    let id = next_id(txn, tag, &merges(txn, tag)?)?;
    let mut chunks = txn.open_table(RUN_CHUNKS).map_err(map_err)?;
    let mut runs = txn.open_table(RUNS).map_err(map_err)?;
    if !live_runs(&runs, tag)?.is_empty() {
        return Ok(false);
    }
    let mut out = RunWriter::new(tag, id, 0, None);
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
    let records = out.finish(&mut chunks)?;
    if records > 0 {
        runs.insert((tag, id), (level, records)).map_err(map_err)?;
    }
    Ok(true)
}

/// A run number of index `tag` that no live run, dead run or output of `merges` (the
/// index's merges in progress) has: one above them all.
fn next_id(txn: &WriteTransaction, tag: u8, merges: &[Merge]) -> Result<u32, StoreError> {
    let runs = txn.open_table(RUNS).map_err(map_err)?;
    let dead = txn.open_table(DEAD_RUNS).map_err(map_err)?;
    let highest = edge_id(&runs, tag, Edge::Highest)?
        .max(edge_id(&dead, tag, Edge::Highest)?)
        .max(merges.iter().map(|m| m.output).max());
    match highest {
        None => Ok(0),
        Some(id) => id
            .checked_add(1)
            .ok_or_else(|| StoreError::Backend("index run numbers are exhausted".into())),
    }
}

/// Which end of a table's run numbers [`edge_id`] reads.
#[derive(Clone, Copy)]
enum Edge {
    Lowest,
    Highest,
}

/// The lowest or highest run number of index `tag` in a table keyed (index, run).
fn edge_id<V: redb::Value + 'static>(
    table: &impl ReadableTable<(u8, u32), V>,
    tag: u8,
    edge: Edge,
) -> Result<Option<u32>, StoreError> {
    let mut range = table.range((tag, 0)..=(tag, u32::MAX)).map_err(map_err)?;
    let row = match edge {
        Edge::Lowest => range.next(),
        Edge::Highest => range.next_back(),
    };
    row.map(|row| row.map(|(key, _)| key.value().1).map_err(map_err))
        .transpose()
}

/// A merge in progress: [`FAN_IN`] runs of `level` being written as run `output` of
/// the next level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Merge {
    pub(super) level: u8,
    pub(super) output: u32,
    /// Records written to the output so far.
    pub(super) written: u64,
    /// The last hash written (meaningless while `written` is 0): every input record
    /// up to it is in the output.
    last: [u8; 32],
    pub(super) inputs: Vec<u32>,
}

impl Merge {
    /// output (u32 LE), written (u64 LE), last hash, then each input (u32 LE).
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 8 + 32 + 4 * self.inputs.len());
        out.extend_from_slice(&self.output.to_le_bytes());
        out.extend_from_slice(&self.written.to_le_bytes());
        out.extend_from_slice(&self.last);
        for input in &self.inputs {
            out.extend_from_slice(&input.to_le_bytes());
        }
        out
    }

    fn decode(level: u8, bytes: &[u8]) -> Result<Merge, StoreError> {
        let corrupt =
            || StoreError::Corrupt(format!("an index merge record of {} bytes", bytes.len()));
        if bytes.len() < 44 || !(bytes.len() - 44).is_multiple_of(4) {
            return Err(corrupt());
        }
        let u32_at = |at: usize| -> u32 {
            let mut le = [0u8; 4];
            le.copy_from_slice(&bytes[at..at + 4]);
            u32::from_le_bytes(le)
        };
        let mut written = [0u8; 8];
        written.copy_from_slice(&bytes[4..12]);
        let mut last = [0u8; 32];
        last.copy_from_slice(&bytes[12..44]);
        Ok(Merge {
            level,
            output: u32_at(0),
            written: u64::from_le_bytes(written),
            last,
            inputs: (44..bytes.len()).step_by(4).map(u32_at).collect(),
        })
    }
}

/// The merges in progress of index `tag`, lowest level first.
pub(super) fn merges(txn: &WriteTransaction, tag: u8) -> Result<Vec<Merge>, StoreError> {
    let table = txn.open_table(MERGES).map_err(map_err)?;
    read_merges(&table, tag)
}

/// [`merges`] from any view of the table (a reader's on open).
pub(super) fn read_merges(
    table: &impl ReadableTable<(u8, u8), &'static [u8]>,
    tag: u8,
) -> Result<Vec<Merge>, StoreError> {
    let mut out = Vec::new();
    for row in table.range((tag, 0)..=(tag, u8::MAX)).map_err(map_err)? {
        let (key, value) = row.map_err(map_err)?;
        out.push(Merge::decode(key.value().1, value.value())?);
    }
    Ok(out)
}

/// Merge work in one append: records per merge in progress, and dead chunks deleted.
#[derive(Clone, Copy, Debug)]
pub(super) struct Budget {
    pub(super) records: u64,
}

impl Budget {
    /// The least records a merge moves on per append, whatever the batch: 4,096 take
    /// about a millisecond.
    pub(super) const MIN_RECORDS: u64 = 4096;

    /// For an append adding `rows` rows to an index. A merge of level L writes
    /// FAN_IN^(L+1) flushes' worth of records and must end before FAN_IN more runs
    /// of level L gather, which takes as many rows: one record per row keeps up, and
    /// two leave a margin.
    pub(super) fn for_rows(rows: usize) -> Budget {
        Budget {
            records: (rows as u64).saturating_mul(2).max(Budget::MIN_RECORDS),
        }
    }

    fn dead_chunks(self) -> usize {
        let chunks = usize::try_from(self.records / CHUNK_RECORDS as u64).unwrap_or(usize::MAX);
        chunks.saturating_mul(DELETES_PER_CHUNK_OF_BUDGET).max(1)
    }
}

/// One append's share of index `tag`'s merging, in its write transaction: starts a
/// merge for each level below [`TOP_LEVEL`] that holds [`FAN_IN`] runs no merge
/// reads, moves every merge in progress on by `budget`, lists the output of each that
/// ends and unlists its inputs, and deletes some chunks of dead runs. `filters`, for
/// an index with filters, holds the filter of each merge's output as it is written;
/// the changes returned are to apply once the transaction commits.
pub(super) fn step(
    txn: &WriteTransaction,
    tag: u8,
    budget: Budget,
    filters: Option<&mut HashMap<u32, RunFilter>>,
) -> Result<Vec<RunChange>, StoreError> {
    step_below(txn, tag, budget, filters, TOP_LEVEL)
}

/// [`step`] with runs of level `top` never merged.
fn step_below(
    txn: &WriteTransaction,
    tag: u8,
    budget: Budget,
    mut filters: Option<&mut HashMap<u32, RunFilter>>,
    top: u8,
) -> Result<Vec<RunChange>, StoreError> {
    let mut changes = Vec::new();
    let mut in_progress = merges(txn, tag)?;
    start_merges(txn, tag, top, &mut in_progress, filters.as_deref_mut())?;
    let mut chunks = txn.open_table(RUN_CHUNKS).map_err(map_err)?;
    let mut runs = txn.open_table(RUNS).map_err(map_err)?;
    let mut table = txn.open_table(MERGES).map_err(map_err)?;
    let mut dead = txn.open_table(DEAD_RUNS).map_err(map_err)?;
    // Each merge is written back where it stands, or removed once it ends.
    for mut merge in in_progress {
        let filter = filters
            .as_deref_mut()
            .and_then(|f| f.get_mut(&merge.output));
        let started = std::time::Instant::now();
        let done = advance(&mut chunks, tag, &mut merge, budget.records, filter)?;
        if !done {
            table
                .insert((tag, merge.level), merge.encode().as_slice())
                .map_err(map_err)?;
            continue;
        }
        let level = merge
            .level
            .checked_add(1)
            .ok_or_else(|| StoreError::Corrupt("an index run's level is 255".into()))?;
        runs.insert((tag, merge.output), (level, merge.written))
            .map_err(map_err)?;
        for &input in &merge.inputs {
            let (_, records) = runs
                .remove((tag, input))
                .map_err(map_err)?
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("index merge input run {input} is not live"))
                })?
                .value();
            dead.insert((tag, input), records).map_err(map_err)?;
        }
        table.remove((tag, merge.level)).map_err(map_err)?;
        tracing::info!(
            index = if tag == LEAF {
                "leaf_hash"
            } else {
                "entry_hash"
            },
            level,
            records = merge.written,
            last_step_seconds = started.elapsed().as_secs_f64(),
            "merged {} index runs into one",
            merge.inputs.len()
        );
        changes.push(RunChange::Merged {
            output: merge.output,
            inputs: merge.inputs,
        });
    }
    delete_dead_chunks(&mut chunks, &mut dead, tag, budget.dead_chunks())?;
    Ok(changes)
}

/// Adds to `in_progress` a merge of the [`FAN_IN`] oldest runs of each level below
/// `top` that holds that many runs and has no merge in progress. Its output is
/// numbered above every run, so numbers stay unique; which record wins does not
/// depend on them.
fn start_merges(
    txn: &WriteTransaction,
    tag: u8,
    top: u8,
    in_progress: &mut Vec<Merge>,
    mut filters: Option<&mut HashMap<u32, RunFilter>>,
) -> Result<(), StoreError> {
    let busy: Vec<u8> = in_progress.iter().map(|m| m.level).collect();
    let mut live = {
        let runs = txn.open_table(RUNS).map_err(map_err)?;
        live_runs(&runs, tag)?
    };
    live.reverse();
    for level in 0..top {
        if busy.contains(&level) {
            continue;
        }
        let inputs: Vec<Run> = live
            .iter()
            .filter(|r| r.level == level)
            .take(FAN_IN)
            .copied()
            .collect();
        if inputs.len() < FAN_IN {
            continue;
        }
        let merge = Merge {
            level,
            output: next_id(txn, tag, in_progress)?,
            written: 0,
            last: [0; 32],
            inputs: inputs.iter().map(|r| r.id).collect(),
        };
        if let Some(filters) = filters.as_deref_mut() {
            let records: u64 = inputs.iter().map(|r| r.records).sum();
            filters.insert(merge.output, RunFilter::with_capacity(records));
        }
        in_progress.push(merge);
    }
    Ok(())
}

/// Writes up to `budget` more records of `merge`'s output, in hash order, from its
/// inputs past its last hash; of records for one hash the one with the larger leaf
/// index is kept. Returns whether the inputs are exhausted.
fn advance(
    chunks: &mut Table<(u8, u32, [u8; 32]), &'static [u8]>,
    tag: u8,
    merge: &mut Merge,
    budget: u64,
    filter: Option<&mut RunFilter>,
) -> Result<bool, StoreError> {
    let after = (merge.written > 0).then_some(merge.last);
    let mut readers = merge
        .inputs
        .iter()
        .map(|&run| RunReader::open_after(chunks, tag, run, after.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = RunWriter::new(tag, merge.output, merge.written, filter);
    while out.records < merge.written + budget {
        // The smallest head; of equal ones, the larger leaf index.
        let mut best: Option<([u8; 32], u64)> = None;
        for reader in &readers {
            if let Some(head) = reader.head() {
                let index = record_index(head);
                let better = match &best {
                    None => true,
                    Some((hash, i)) => match head[..32].cmp(&hash[..]) {
                        std::cmp::Ordering::Less => true,
                        std::cmp::Ordering::Equal => index > *i,
                        std::cmp::Ordering::Greater => false,
                    },
                };
                if better {
                    let mut key = [0u8; 32];
                    key.copy_from_slice(&head[..32]);
                    best = Some((key, index));
                }
            }
        }
        let Some((key, index)) = best else {
            break;
        };
        out.push(chunks, &key, index)?;
        merge.last = key;
        for reader in &mut readers {
            if reader.head().is_some_and(|h| h[..32] == key[..]) {
                reader.advance(chunks)?;
            }
        }
    }
    merge.written = out.finish(chunks)?;
    Ok(readers.iter().all(|r| r.head().is_none()))
}

/// Deletes up to `limit` chunks of index `tag`'s dead runs, oldest run first, and
/// forgets each run once none of its chunks is left.
fn delete_dead_chunks(
    chunks: &mut Table<(u8, u32, [u8; 32]), &'static [u8]>,
    dead: &mut Table<(u8, u32), u64>,
    tag: u8,
    limit: usize,
) -> Result<(), StoreError> {
    let mut left = limit;
    while left > 0 {
        let Some(run) = edge_id(dead, tag, Edge::Lowest)? else {
            return Ok(());
        };
        let keys: Vec<[u8; 32]> = chunks
            .range((tag, run, [0u8; 32])..=(tag, run, [0xff; 32]))
            .map_err(map_err)?
            .take(left)
            .map(|row| row.map(|(key, _)| key.value().2).map_err(map_err))
            .collect::<Result<_, _>>()?;
        for key in &keys {
            chunks.remove((tag, run, *key)).map_err(map_err)?;
        }
        if keys.len() < left {
            dead.remove((tag, run)).map_err(map_err)?;
        }
        left -= keys.len();
    }
    Ok(())
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
        RunReader::open_after(chunks, tag, run, None)
    }

    /// A reader of run `run` positioned at its first record whose hash is above
    /// `after` (at its first record if `None`).
    fn open_after(
        chunks: &impl ReadableTable<(u8, u32, [u8; 32]), &'static [u8]>,
        tag: u8,
        run: u32,
        after: Option<&[u8; 32]>,
    ) -> Result<RunReader, StoreError> {
        let mut reader = RunReader {
            tag,
            run,
            key: [0; 32],
            chunk: Vec::new(),
            at: 0,
        };
        let Some(after) = after else {
            reader.load(chunks, Bound::Included((tag, run, [0u8; 32])))?;
            return Ok(reader);
        };
        // The chunk that may hold `after`: the last whose first hash is not above it.
        let holder = chunks
            .range((tag, run, [0u8; 32])..=(tag, run, *after))
            .map_err(map_err)?
            .next_back()
            .map(|row| row.map(|(key, _)| key.value().2).map_err(map_err))
            .transpose()?;
        match holder {
            None => reader.load(chunks, Bound::Included((tag, run, [0u8; 32])))?,
            Some(key) => {
                reader.load(chunks, Bound::Included((tag, run, key)))?;
                reader.at = match first_at_or_after(&reader.chunk, after) {
                    Some(at) if reader.chunk[at..at + 32] == after[..] => at + RECORD_BYTES,
                    Some(at) => at,
                    None => reader.chunk.len(),
                };
                if reader.at >= reader.chunk.len() {
                    reader.load(chunks, Bound::Excluded((tag, run, key)))?;
                }
            }
        }
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
            check_chunk(value)?;
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

/// Writes one run's records, given in hash order, as chunks; a merge's output is
/// written by several writers in turn, each starting a new chunk.
struct RunWriter<'f> {
    tag: u8,
    run: u32,
    chunk: Vec<u8>,
    /// Records of the run written so far, by this writer and before it.
    records: u64,
    filter: Option<&'f mut RunFilter>,
}

impl<'f> RunWriter<'f> {
    /// A writer of run `run`, which holds `records` records already, adding each
    /// record it writes to `filter`.
    fn new(tag: u8, run: u32, records: u64, filter: Option<&'f mut RunFilter>) -> RunWriter<'f> {
        RunWriter {
            tag,
            run,
            chunk: Vec::with_capacity(CHUNK_RECORDS * RECORD_BYTES),
            records,
            filter,
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
        if let Some(filter) = self.filter.as_deref_mut() {
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

    /// Writes the last, partial chunk; returns the run's records so far.
    fn finish(
        mut self,
        chunks: &mut Table<(u8, u32, [u8; 32]), &'static [u8]>,
    ) -> Result<u64, StoreError> {
        self.write(chunks)?;
        Ok(self.records)
    }
}

/// Bits of [`RunFilter`] per record: with [`FILTER_PROBES`] bits set per record in one
/// 512-bit block, about 1 % of look-ups of an absent hash still read the run.
const FILTER_BITS_PER_RECORD: usize = 10;
/// Bits set per record, all in one block (one cache line).
const FILTER_PROBES: usize = 8;

/// A blocked Bloom filter over one run's hashes, kept in memory for the entry-hash
/// index: nearly every submission is new, and without it each one read a chunk of
/// every live run (BENCHMARKS.md, "Ingest"). The
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
        RunFilter::of_chunks(chunks, tag, run.id, run.records, run.records)
    }

    /// The filter of `merge`'s output so far, sized as [`start_merges`] sized it, for
    /// its inputs' records; the inputs are found in `live`, the index's live runs (on
    /// open, to resume the merge).
    pub(super) fn of_merge(
        chunks: &impl ReadableTable<(u8, u32, [u8; 32]), &'static [u8]>,
        tag: u8,
        merge: &Merge,
        live: &[Run],
    ) -> Result<RunFilter, StoreError> {
        let records = merge
            .inputs
            .iter()
            .map(|id| live.iter().find(|r| r.id == *id).map(|r| r.records))
            .sum::<Option<u64>>()
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "an index merge into run {} reads a run that is not live",
                    merge.output
                ))
            })?;
        RunFilter::of_chunks(chunks, tag, merge.output, records, merge.written)
    }

    /// A filter sized for `capacity` records of the chunks of run `id`, which must
    /// hold `records`.
    fn of_chunks(
        chunks: &impl ReadableTable<(u8, u32, [u8; 32]), &'static [u8]>,
        tag: u8,
        id: u32,
        capacity: u64,
        records: u64,
    ) -> Result<RunFilter, StoreError> {
        let mut filter = RunFilter::with_capacity(capacity);
        let mut reader = RunReader::open(chunks, tag, id)?;
        let mut found = 0u64;
        while let Some(head) = reader.head() {
            let mut hash = [0u8; 32];
            hash.copy_from_slice(&head[..32]);
            filter.insert(&hash);
            found += 1;
            reader.advance(chunks)?;
        }
        if found != records {
            return Err(StoreError::Corrupt(format!(
                "index run {id} is recorded with {records} records but holds {found}"
            )));
        }
        Ok(filter)
    }
}

/// What an [`add_run`] or a [`step`] did to the live runs, for filters kept in memory.
#[derive(Debug)]
pub(super) enum RunChange {
    /// A run was written; its filter if the caller asked for filters.
    Added(u32, Option<RunFilter>),
    /// A merge ended: `output` is live (its filter was built as it was written) and
    /// `inputs` are not.
    Merged { output: u32, inputs: Vec<u32> },
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_core::hash::sha256;
    use redb::{Database, ReadableDatabase};

    fn hash(k: u64, i: u64) -> Hash {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&k.to_le_bytes());
        b[8..].copy_from_slice(&i.to_le_bytes());
        sha256(&b)
    }

    /// The live runs of `tag`, each checked: records strictly in hash order across its
    /// chunks, each chunk keyed by its first hash and at most `CHUNK_RECORDS` long,
    /// counts as listed.
    fn check_runs(db: &Database, tag: u8) -> Vec<Run> {
        let txn = db.begin_read().unwrap();
        let runs = txn.open_table(RUNS).unwrap();
        let chunks = txn.open_table(RUN_CHUNKS).unwrap();
        let live = live_runs(&runs, tag).unwrap();
        for run in &live {
            let mut last: Option<Vec<u8>> = None;
            let mut records = 0u64;
            for row in chunks
                .range((tag, run.id, [0u8; 32])..=(tag, run.id, [0xff; 32]))
                .unwrap()
            {
                let (key, value) = row.unwrap();
                let value = value.value();
                assert_eq!(
                    key.value().2[..],
                    value[..32],
                    "a chunk's key is its first hash"
                );
                assert!(value.len() <= CHUNK_RECORDS * RECORD_BYTES);
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

    /// A look-up as the store makes it: every live run whose filter (if it has one)
    /// may hold `hash`, the largest leaf index winning.
    fn lookup_filtered(
        db: &Database,
        tag: u8,
        hash: &Hash,
        filters: &HashMap<u32, RunFilter>,
    ) -> Option<u64> {
        let txn = db.begin_read().unwrap();
        let runs = txn.open_table(RUNS).unwrap();
        let chunks = txn.open_table(RUN_CHUNKS).unwrap();
        let mut found = None;
        for run in live_runs(&runs, tag).unwrap() {
            if filters.get(&run.id).is_some_and(|f| !f.may_contain(hash)) {
                continue;
            }
            found = found.max(probe(&chunks, tag, run.id, hash).unwrap());
        }
        found
    }

    fn lookup(db: &Database, tag: u8, hash: &Hash) -> Option<u64> {
        lookup_filtered(db, tag, hash, &HashMap::new())
    }

    /// Both indexes as the redb store keeps them, with the entry index's filters.
    #[derive(Default)]
    struct Indexes {
        filters: HashMap<u32, RunFilter>,
        merge_filters: HashMap<u32, RunFilter>,
    }

    impl Indexes {
        /// One append's work: `rows` flushed as new runs (if any), then a step of
        /// `budget` records, committed.
        fn append(&mut self, db: &Database, rows: &[(Hash, u64)], budget: u64, top: u8) {
            let txn = db.begin_write().unwrap();
            let mut changes = Vec::new();
            add_run(&txn, LEAF, rows, false).unwrap();
            changes.extend(add_run(&txn, ENTRY, rows, true).unwrap());
            let budget = Budget { records: budget };
            step_below(&txn, LEAF, budget, None, top).unwrap();
            changes.extend(
                step_below(&txn, ENTRY, budget, Some(&mut self.merge_filters), top).unwrap(),
            );
            txn.commit().unwrap();
            for change in changes {
                match change {
                    RunChange::Added(id, filter) => {
                        self.filters
                            .insert(id, filter.expect("a filter was asked for"));
                    }
                    RunChange::Merged { output, inputs } => {
                        let filter = self.merge_filters.remove(&output).expect("built");
                        self.filters.insert(output, filter);
                        for id in inputs {
                            self.filters.remove(&id).expect("an input run had a filter");
                        }
                    }
                }
            }
        }

        /// Steps with nothing to flush until no merge is in progress or can start
        /// and every dead chunk is gone.
        fn settle(&mut self, db: &Database, top: u8) {
            for _ in 0..1000 {
                self.append(db, &[], 1 << 20, top);
                let txn = db.begin_read().unwrap();
                let merges = txn.open_table(MERGES).unwrap();
                let dead = txn.open_table(DEAD_RUNS).unwrap();
                let runs = txn.open_table(RUNS).unwrap();
                let live = live_runs(&runs, LEAF).unwrap();
                let full = (0..top).any(|l| live.iter().filter(|r| r.level == l).count() >= FAN_IN);
                if merges.is_empty().unwrap() && dead.is_empty().unwrap() && !full {
                    return;
                }
            }
            panic!("merges did not end");
        }
    }

    use redb::ReadableTableMetadata;

    /// Flushes of 150 rows (two chunks each), every one also re-recording one shared
    /// hash, each followed by steps until no merge is left: levels fill and merge like
    /// the digits of a base-FAN_IN counter, every hash keeps its latest index, and
    /// merged runs leave no chunk behind.
    #[test]
    fn runs_merge_level_by_level_and_the_latest_record_wins() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("runs.redb")).unwrap();
        let shared = sha256(b"shared");
        let mut model: HashMap<Hash, u64> = HashMap::new();
        let mut indexes = Indexes::default();
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
            indexes.append(&db, &rows, 0, TOP_LEVEL);
            indexes.settle(&db, TOP_LEVEL);

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
            assert_eq!(
                check_runs(&db, ENTRY),
                live,
                "both indexes got the same rows"
            );
            assert_eq!(indexes.filters.len(), live.len(), "one filter per live run");
            for (h, i) in &model {
                assert_eq!(lookup(&db, LEAF, h), Some(*i), "flush {k}");
                assert_eq!(lookup_filtered(&db, ENTRY, h, &indexes.filters), Some(*i));
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
            assert_eq!(rebuilt.blocks, indexes.filters[&run.id].blocks);
        }
        // Merged runs leave no chunks behind: every stored record is in a live run.
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

    /// Merges moved on a few records per append, with flushes landing mid-merge and
    /// hashes logged again later: after every commit each hash is found at its
    /// latest index, by the filtered and the unfiltered look-up; the filters of
    /// merges in progress, rebuilt from their chunks as on open, equal those built
    /// as they were written; and once the appends stop, a few more steps end every
    /// merge.
    #[test]
    fn merges_spread_over_appends_keep_every_look_up_right() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("runs.redb")).unwrap();
        let mut model: HashMap<Hash, u64> = HashMap::new();
        let mut indexes = Indexes::default();
        let mut pending: Vec<(Hash, u64)> = Vec::new();
        let mut in_progress_seen = 0;
        for index in 0..3000u64 {
            // Every seventh row logs an earlier row's hash again.
            let h = if index % 7 == 6 {
                hash(0, index / 2)
            } else {
                hash(0, index)
            };
            model.insert(h, index);
            pending.push((h, index));
            // Rows of 30 flushed every 30 appends of one row; a merge moves 9
            // records per append, so a merge of four 30-record runs spans ~13.
            let flush = pending.len() == 30;
            let rows = if flush {
                std::mem::take(&mut pending)
            } else {
                Vec::new()
            };
            indexes.append(&db, &rows, 9, 2);
            if index % 97 != 0 {
                continue;
            }
            for (h, &i) in &model {
                if pending.iter().any(|(p, _)| p == h) {
                    continue; // not flushed yet: the store answers it from memory
                }
                assert_eq!(lookup(&db, LEAF, h), Some(i), "after {index}");
                assert_eq!(lookup_filtered(&db, ENTRY, h, &indexes.filters), Some(i));
            }
            check_runs(&db, LEAF);
            let txn = db.begin_read().unwrap();
            let table = txn.open_table(MERGES).unwrap();
            let chunks = txn.open_table(RUN_CHUNKS).unwrap();
            let runs = txn.open_table(RUNS).unwrap();
            let live = live_runs(&runs, ENTRY).unwrap();
            for merge in read_merges(&table, ENTRY).unwrap() {
                in_progress_seen += 1;
                let rebuilt = RunFilter::of_merge(&chunks, ENTRY, &merge, &live).unwrap();
                assert_eq!(rebuilt.blocks, indexes.merge_filters[&merge.output].blocks);
            }
        }
        assert!(in_progress_seen > 5, "merges were caught in progress");
        indexes.settle(&db, 2);
        let live = check_runs(&db, LEAF);
        assert!(live.len() < 2 * FAN_IN + 3, "merged: {live:?}");
        assert_eq!(live.iter().filter(|r| r.level == 0).count(), 0);
        for (h, &i) in &model {
            if !pending.iter().any(|(p, _)| p == h) {
                assert_eq!(lookup(&db, LEAF, h), Some(i));
            }
        }
    }

    /// Runs of the top level gather instead of merging, and are still all read.
    #[test]
    fn top_level_runs_are_never_merged() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("runs.redb")).unwrap();
        let mut indexes = Indexes::default();
        let flushes = 5 * FAN_IN * FAN_IN + 2;
        for k in 0..flushes as u64 {
            let rows: Vec<(Hash, u64)> = (0..10).map(|i| (hash(k, i), k * 10 + i)).collect();
            indexes.append(&db, &rows, 0, 2);
            indexes.settle(&db, 2);
        }
        let mut levels: Vec<u8> = check_runs(&db, LEAF).iter().map(|r| r.level).collect();
        levels.sort();
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

    #[test]
    fn merge_records_round_trip_and_damaged_ones_are_corrupt() {
        let merge = Merge {
            level: 3,
            output: 77,
            written: 12_345,
            last: [9; 32],
            inputs: vec![1, 2, 40, 41],
        };
        let bytes = merge.encode();
        assert_eq!(Merge::decode(3, &bytes).unwrap(), merge);
        for bad in [&bytes[..43], &bytes[..bytes.len() - 1]] {
            assert!(matches!(Merge::decode(3, bad), Err(StoreError::Corrupt(_))));
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
