//! An in-memory [`Store`] for tests, here and in other crates: the trait's semantics
//! exactly (one atomic append, the [`StoreError::Conflict`] check, "durable" once a
//! call returns `Ok`), plus fault hooks that make the next commit fail in the two ways
//! a real disk can, or take longer.
//!
//! "Durable" means: the data outlives every handle the sequencer holds. A test keeps
//! an `Arc<MemoryStore>` and reopens the log on it to play a restart.
//!
//! A commit is an [`Store::append`] or a [`Store::put_checkpoint`]. The faults:
//! - [`MemoryStore::fail_next_commit`]: the next commit returns an error and applies
//!   nothing (the disk refused the write);
//! - [`MemoryStore::fail_after_persist`]: the next commit is applied, then returns an
//!   error (the data reached the disk but the final fsync reported a failure), the case
//!   that the trait doc tells callers to handle by re-reading [`Store::state`];
//! - [`MemoryStore::set_commit_delay`]: every commit sleeps first (a slow disk).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use super::{Batch, Store, StoreError, StoreKind, TileId, TreeState};
use candor_core::hash::Hash;

/// A fault to inject into the next commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Refuse the commit; nothing is applied.
    FailBeforeCommit,
    /// Apply the commit, then report an error.
    FailAfterPersist,
}

#[derive(Default)]
struct Data {
    state: Option<TreeState>,
    tiles: BTreeMap<TileId, Vec<u8>>,
    bundles: BTreeMap<u64, Vec<u8>>,
    leaf_index: HashMap<Hash, u64>,
    entry_index: HashMap<Hash, u64>,
    meta: BTreeMap<String, Vec<u8>>,
    checkpoint: Option<Vec<u8>>,
    /// Every checkpoint note ever stored, in order: tests check that no two of them
    /// disagree.
    checkpoints: Vec<Vec<u8>>,
    commits: u64,
}

#[derive(Default)]
struct Faults {
    next: Option<Fault>,
    delay: Duration,
    injected: u64,
}

/// The in-memory store. See the module doc.
#[derive(Default)]
pub struct MemoryStore {
    data: Mutex<Data>,
    faults: Mutex<Faults>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Makes the next commit fail without applying anything.
    pub fn fail_next_commit(&self) {
        self.inject(Fault::FailBeforeCommit);
    }

    /// Makes the next commit apply everything and then return an error.
    pub fn fail_after_persist(&self) {
        self.inject(Fault::FailAfterPersist);
    }

    /// Arms `fault` for the next commit (replacing one not yet used).
    pub fn inject(&self, fault: Fault) {
        self.faults().next = Some(fault);
    }

    /// Clears a fault not yet used.
    pub fn clear_fault(&self) {
        self.faults().next = None;
    }

    /// Whether a fault is armed and not yet used.
    pub fn fault_pending(&self) -> bool {
        self.faults().next.is_some()
    }

    /// How many injected faults fired.
    pub fn faults_injected(&self) -> u64 {
        self.faults().injected
    }

    /// Makes every commit sleep `delay` before it starts (zero: no delay).
    pub fn set_commit_delay(&self, delay: Duration) {
        self.faults().delay = delay;
    }

    /// Successful (applied) commits so far, those failed after persisting included.
    pub fn commits(&self) -> u64 {
        self.data().commits
    }

    /// Every checkpoint note stored so far (by `append` or `put_checkpoint`), oldest
    /// first.
    pub fn checkpoint_history(&self) -> Vec<Vec<u8>> {
        self.data().checkpoints.clone()
    }

    /// Replaces a stored bundle, bypassing every check: for tests of tools that must
    /// detect a log serving data other than what it committed to.
    pub fn tamper_bundle(&self, index: u64, contents: Vec<u8>) {
        self.data().bundles.insert(index, contents);
    }

    /// Replaces the stored checkpoint, bypassing every check (see `tamper_bundle`).
    pub fn tamper_checkpoint(&self, note: Vec<u8>) {
        self.data().checkpoint = Some(note);
    }

    fn data(&self) -> std::sync::MutexGuard<'_, Data> {
        // A poisoned lock only means a test thread panicked mid-call; every update
        // below is applied after all fallible steps, so the data is consistent.
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sleeps the commit delay (a slow disk).
    fn delay(&self) {
        let delay = self.faults().delay;
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
    }

    /// Takes the armed fault, if any.
    fn take_fault(&self) -> Option<Fault> {
        let mut f = self.faults();
        let fault = f.next.take();
        if fault.is_some() {
            f.injected += 1;
        }
        fault
    }
}

fn injected(what: &str, fault: Fault) -> StoreError {
    match fault {
        Fault::FailBeforeCommit => StoreError::Io(format!("injected fault: {what} not committed")),
        Fault::FailAfterPersist => StoreError::Io(format!(
            "injected fault: {what} committed, but the final sync reported an error"
        )),
    }
}

impl Store for MemoryStore {
    fn append(&self, batch: &Batch) -> Result<(), StoreError> {
        batch.validate()?;
        self.delay();
        let mut d = self.data();
        let found = d.state.map_or(0, |s| s.size);
        if found != batch.old_size {
            return Err(StoreError::Conflict {
                expected: batch.old_size,
                found,
            });
        }
        let fault = self.take_fault();
        if fault == Some(Fault::FailBeforeCommit) {
            return Err(injected("batch", Fault::FailBeforeCommit));
        }
        d.state = Some(batch.new_state);
        for (id, data) in &batch.tiles {
            d.tiles.insert(*id, data.clone());
        }
        for (index, data) in &batch.bundles {
            d.bundles.insert(*index, data.clone());
        }
        // Rows are in leaf order, so inserting in order lets the later row win.
        for (hash, index) in &batch.leaf_index {
            d.leaf_index.insert(*hash, *index);
        }
        for (hash, index) in &batch.entry_index {
            d.entry_index.insert(*hash, *index);
        }
        for (key, value) in &batch.meta {
            d.meta.insert(key.clone(), value.clone());
        }
        if let Some(note) = &batch.checkpoint {
            d.checkpoint = Some(note.clone());
            d.checkpoints.push(note.clone());
        }
        d.commits += 1;
        match fault {
            Some(f) => Err(injected("batch", f)),
            None => Ok(()),
        }
    }

    fn state(&self) -> Result<Option<TreeState>, StoreError> {
        Ok(self.data().state)
    }

    fn read_tile(&self, id: TileId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.data().tiles.get(&id).cloned())
    }

    fn read_bundle(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.data().bundles.get(&index).cloned())
    }

    fn lookup_leaf(&self, leaf_hash: &Hash) -> Result<Option<u64>, StoreError> {
        Ok(self.data().leaf_index.get(leaf_hash).copied())
    }

    fn lookup_entry(&self, entry_hash: &Hash) -> Result<Option<u64>, StoreError> {
        Ok(self.data().entry_index.get(entry_hash).copied())
    }

    fn lookup_entries(&self, entry_hashes: &[Hash]) -> Result<Vec<Option<u64>>, StoreError> {
        let d = self.data();
        Ok(entry_hashes
            .iter()
            .map(|h| d.entry_index.get(h).copied())
            .collect())
    }

    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.data().meta.get(key).cloned())
    }

    fn scan_meta(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(self
            .data()
            .meta
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn put_checkpoint(&self, note: &[u8]) -> Result<(), StoreError> {
        self.delay();
        let fault = self.take_fault();
        if fault == Some(Fault::FailBeforeCommit) {
            return Err(injected("checkpoint", Fault::FailBeforeCommit));
        }
        let mut d = self.data();
        d.checkpoint = Some(note.to_vec());
        d.checkpoints.push(note.to_vec());
        d.commits += 1;
        match fault {
            Some(f) => Err(injected("checkpoint", f)),
            None => Ok(()),
        }
    }

    fn checkpoint(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.data().checkpoint.clone())
    }

    fn kind(&self) -> StoreKind {
        StoreKind::Memory
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(b: u8) -> Hash {
        Hash::from_slice(&[b; 32]).expect("32 bytes")
    }

    fn batch(old: u64, new: u64) -> Batch {
        let mut b = Batch::new(
            old,
            TreeState {
                size: new,
                root: h(new as u8),
            },
        );
        b.bundles.push((0, vec![new as u8]));
        b.entry_index = (old..new).map(|i| (h(100 + i as u8), i)).collect();
        b.leaf_index = (old..new).map(|i| (h(200 + i as u8), i)).collect();
        b.meta.push((format!("k/{new}"), vec![1]));
        b.checkpoint = Some(format!("cp {new}").into_bytes());
        b
    }

    #[test]
    fn append_reads_back_and_checks_the_old_size() {
        let s = MemoryStore::new();
        assert_eq!(s.state().unwrap(), None);
        s.append(&batch(0, 2)).unwrap();
        assert_eq!(s.state().unwrap().map(|t| t.size), Some(2));
        assert_eq!(s.lookup_entry(&h(101)).unwrap(), Some(1));
        assert_eq!(s.lookup_leaf(&h(200)).unwrap(), Some(0));
        assert_eq!(s.read_bundle(0).unwrap(), Some(vec![2]));
        assert_eq!(s.checkpoint().unwrap(), Some(b"cp 2".to_vec()));
        let stale = s.append(&batch(0, 3));
        assert!(
            matches!(
                stale,
                Err(StoreError::Conflict {
                    expected: 0,
                    found: 2
                })
            ),
            "{stale:?}"
        );
        assert_eq!(s.state().unwrap().map(|t| t.size), Some(2));
        assert_eq!(s.commits(), 1);
    }

    #[test]
    fn scan_meta_returns_only_the_prefix_in_key_order() {
        let s = MemoryStore::new();
        let mut b = Batch::new(
            0,
            TreeState {
                size: 0,
                root: h(0),
            },
        );
        b.meta = vec![
            ("b/2".into(), vec![2]),
            ("a/1".into(), vec![1]),
            ("b/1".into(), vec![3]),
            ("c".into(), vec![4]),
        ];
        s.append(&b).unwrap();
        let got = s.scan_meta("b/").unwrap();
        assert_eq!(
            got,
            vec![("b/1".to_string(), vec![3]), ("b/2".to_string(), vec![2])]
        );
    }

    #[test]
    fn fail_next_commit_applies_nothing_once() {
        let s = MemoryStore::new();
        s.fail_next_commit();
        assert!(s.append(&batch(0, 2)).is_err());
        assert_eq!(s.state().unwrap(), None);
        assert_eq!(s.lookup_entry(&h(100)).unwrap(), None);
        assert_eq!(s.checkpoint().unwrap(), None);
        assert!(!s.fault_pending());
        s.append(&batch(0, 2)).unwrap();
        assert_eq!(s.state().unwrap().map(|t| t.size), Some(2));
    }

    #[test]
    fn fail_after_persist_applies_and_reports_an_error() {
        let s = MemoryStore::new();
        s.fail_after_persist();
        assert!(s.append(&batch(0, 2)).is_err());
        assert_eq!(s.state().unwrap().map(|t| t.size), Some(2));
        assert_eq!(s.lookup_entry(&h(101)).unwrap(), Some(1));
        // A blind retry is refused rather than applied twice.
        assert!(matches!(
            s.append(&batch(0, 2)),
            Err(StoreError::Conflict { .. })
        ));
        s.fail_after_persist();
        assert!(s.put_checkpoint(b"cp x").is_err());
        assert_eq!(s.checkpoint().unwrap(), Some(b"cp x".to_vec()));
        assert_eq!(s.faults_injected(), 2);
    }

    #[test]
    fn a_conflict_does_not_use_up_the_fault() {
        let s = MemoryStore::new();
        s.append(&batch(0, 1)).unwrap();
        s.fail_next_commit();
        assert!(matches!(
            s.append(&batch(0, 2)),
            Err(StoreError::Conflict { .. })
        ));
        assert!(s.fault_pending());
    }

    #[test]
    fn invalid_batches_are_refused() {
        let s = MemoryStore::new();
        s.append(&batch(0, 2)).unwrap();
        let shrink = Batch::new(
            2,
            TreeState {
                size: 1,
                root: h(1),
            },
        );
        assert!(matches!(
            s.append(&shrink),
            Err(StoreError::InvalidBatch(_))
        ));
    }

    #[test]
    fn slow_commits_take_at_least_the_delay() {
        let s = MemoryStore::new();
        s.set_commit_delay(Duration::from_millis(30));
        let t = std::time::Instant::now();
        s.append(&batch(0, 1)).unwrap();
        assert!(t.elapsed() >= Duration::from_millis(30));
    }
}
