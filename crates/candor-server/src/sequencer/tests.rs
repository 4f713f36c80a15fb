//! The sequencer's append step and its failure handling, in process, on the
//! in-memory store with injected faults.

use std::collections::BTreeMap;

use super::*;
use crate::testing::*;
use candor_core::hash::leaf_hash;
use candor_store::Batch;

/// The root of the stored leaves `0..size`, computed from the bundles with
/// `candor_core::merkle` rather than from the store's tiles.
fn independent_root(store: &dyn Store, size: u64) -> Hash {
    let hashes: Vec<Hash> = (0..size)
        .map(|i| leaf_hash(&reader::read_leaf(store, i).expect("stored leaf")))
        .collect();
    candor_core::merkle::root_from_leaf_hashes(&hashes)
}

/// Every checkpoint the store ever held, and `extra`, opened with the log key: no
/// two of them have different roots for one size, and each one's root is the
/// stored tree's at its size (so none covers an entry that is not stored).
fn assert_no_fork(log: &Log, extra: &[Arc<Published>]) {
    let vkey = log.key.verifier();
    let mut roots: BTreeMap<u64, Hash> = BTreeMap::new();
    let notes = log
        .store
        .checkpoint_history()
        .into_iter()
        .chain(extra.iter().map(|p| p.note.to_vec()));
    for note in notes {
        let (cp, _) = checkpoint::open_checkpoint(&note, &vkey).expect("a valid checkpoint");
        if let Some(prev) = roots.insert(cp.size, cp.root) {
            assert_eq!(prev, cp.root, "two roots signed for size {}", cp.size);
        }
        assert!(
            cp.size <= log.stored_size(),
            "checkpoint ahead of the store"
        );
        assert_eq!(cp.root, independent_root(&*log.store, cp.size));
    }
}

fn unavailable_detail(r: &Result<Vec<u64>, ApiError>) -> String {
    match r {
        Err(ApiError::Unavailable(why)) => why.clone(),
        other => panic!("expected 503 unavailable, got {other:?}"),
    }
}

#[test]
fn a_batch_gets_consecutive_indexes_and_the_merkle_root() {
    let mut log = Log::new();
    let (a, b, c, d) = (log.entry(1), log.entry(2), log.entry(3), log.entry(4));
    let got = log.submit(vec![vec![a, b], vec![c], vec![d]]);
    assert_eq!(got, vec![Ok(vec![1, 2]), Ok(vec![3]), Ok(vec![4])]);
    let state = log.store.state().unwrap().unwrap();
    assert_eq!(state.size, 5);
    assert_eq!(state.root, independent_root(&*log.store, 5));
    let p = log.published();
    assert_eq!((p.checkpoint.size, p.checkpoint.root), (5, state.root));
    // The batch's checkpoint was committed with it, in the same append.
    assert_eq!(
        log.store.checkpoint().unwrap().as_deref(),
        Some(&p.note[..])
    );
    for i in 1..5 {
        let leaf = reader::read_leaf(&*log.store, i).unwrap();
        assert_eq!(log.store.lookup_leaf(&leaf_hash(&leaf)).unwrap(), Some(i));
    }
    assert_no_fork(&log, &[p]);
}

#[test]
fn identical_entries_get_one_index_within_and_across_batches() {
    let mut log = Log::new();
    let got = log.submit(vec![
        vec![log.entry(1), log.entry(1)],
        vec![log.entry(2)],
        vec![log.entry(1)],
    ]);
    assert_eq!(got, vec![Ok(vec![1, 1]), Ok(vec![2]), Ok(vec![1])]);
    assert_eq!(log.stored_size(), 3);
    let again = log.submit(vec![vec![log.entry(2), log.entry(3)]]);
    assert_eq!(again, vec![Ok(vec![2, 3])]);
    assert_eq!(log.stored_size(), 4);
    assert_no_fork(&log, &[log.published()]);
}

#[test]
fn a_refused_entry_refuses_its_whole_submission_only() {
    let mut log = Log::new();
    let mut forged = log.entry(2);
    forged.signature = log.entry(3).signature;
    let got = log.submit(vec![vec![log.entry(1), forged], vec![log.entry(4)]]);
    assert!(matches!(got[0], Err(ApiError::BadSignature(_))), "{got:?}");
    assert_eq!(got[1], Ok(vec![1]));
    assert_eq!(log.stored_size(), 2);
}

#[test]
fn a_failed_commit_stores_nothing_and_the_next_batch_takes_the_same_indexes() {
    let mut log = Log::new();
    let before = log.published();
    let commits = log.store.commits();
    log.store.fail_next_commit();
    let got = log.submit(vec![vec![log.entry(1), log.entry(2)], vec![log.entry(3)]]);
    for r in &got {
        let why = unavailable_detail(r);
        assert!(why.contains("could not store this batch"), "{why}");
        assert!(why.contains("injected fault"), "{why}");
    }
    assert_eq!(log.stored_size(), 1);
    assert_eq!(log.store.commits(), commits);
    assert_eq!(
        log.store.lookup_entry(&log.entry(1).entry_hash).unwrap(),
        None
    );
    // Nothing of the failed batch was published.
    assert_eq!(log.published().note, before.note);

    // Other entries take the same indexes: the failed batch left no trace.
    let got = log.submit(vec![vec![log.entry(4), log.entry(5)], vec![log.entry(1)]]);
    assert_eq!(got, vec![Ok(vec![1, 2]), Ok(vec![3])]);
    assert_eq!(log.published().checkpoint.size, 4);
    assert_no_fork(&log, &[before, log.published()]);
}

#[test]
fn a_commit_failed_after_persisting_is_recovered_without_a_second_copy() {
    let mut log = Log::new();
    log.store.fail_after_persist();
    let got = log.submit(vec![vec![log.entry(1), log.entry(2)]]);
    let why = unavailable_detail(&got[0]);
    assert!(why.contains("retry"), "{why}");
    // Durable although the append reported an error.
    assert_eq!(log.stored_size(), 3);
    assert_eq!(
        log.store.lookup_entry(&log.entry(2).entry_hash).unwrap(),
        Some(2)
    );
    // The sequencer re-read the store: its checkpoint covers the durable entries.
    assert_eq!(log.published().checkpoint.size, 3);

    let got = log.submit(vec![vec![log.entry(1), log.entry(2)], vec![log.entry(3)]]);
    assert_eq!(got, vec![Ok(vec![1, 2]), Ok(vec![3])]);
    assert_eq!(log.stored_size(), 4);
    // A restart on the same store sees the same tree.
    let restarted = log.reopen();
    assert_eq!(restarted.shared().published().checkpoint.size, 4);
    assert_no_fork(&log, &[log.published(), restarted.shared().published()]);
}

#[test]
fn a_rival_writer_makes_a_stale_batch_conflict_and_is_caught_up_with() {
    let mut log = Log::new();
    let mut rival = log.reopen();
    assert_eq!(
        submit(&mut rival, vec![vec![log.entry(1)]]),
        vec![Ok(vec![1])]
    );

    // `log.core` still thinks the tree has one leaf.
    let got = log.submit(vec![vec![log.entry(2)]]);
    let why = unavailable_detail(&got[0]);
    assert!(why.contains("conflict"), "{why}");
    assert_eq!(log.stored_size(), 2);
    assert_eq!(
        log.store.lookup_entry(&log.entry(1).entry_hash).unwrap(),
        Some(1)
    );

    // Re-read after the conflict: the rival's entry is found, the new one goes after it.
    let got = log.submit(vec![vec![log.entry(1), log.entry(2)]]);
    assert_eq!(got, vec![Ok(vec![1, 2])]);
    assert_no_fork(&log, &[log.published(), rival.shared().published()]);
}

#[test]
fn a_batch_for_a_stale_size_is_refused_by_the_store() {
    let log = Log::new();
    let history = log.store.checkpoint_history();
    let mut stale = Batch::new(0, log.store.state().unwrap().unwrap());
    stale.checkpoint = Some(b"not a checkpoint".to_vec());
    let e = log.store.append(&stale).unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Conflict {
                expected: 0,
                found: 1
            }
        ),
        "{e:?}"
    );
    assert_eq!(log.store.checkpoint_history(), history);
}

#[test]
fn failures_in_turn_never_sign_two_roots_for_one_size() {
    let mut log = Log::new();
    let mut seen = vec![log.published()];
    for round in 0..6u64 {
        match round % 3 {
            0 => log.store.fail_next_commit(),
            1 => log.store.fail_after_persist(),
            _ => {}
        }
        // Each round offers different entries for the same next index.
        let _ = log.submit(vec![vec![log.entry(10 + round)]]);
        seen.push(log.published());
    }
    let restarted = log.reopen();
    seen.push(restarted.shared().published());
    assert_eq!(log.store.faults_injected(), 4);
    assert_no_fork(&log, &seen);
}
