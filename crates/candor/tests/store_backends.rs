//! One behavioural suite run against both store backends (redb and sled).
//!
//! The killed-writer tests re-run this test binary as a child process: when the
//! environment variable `CANDOR_STORE_CHILD=<kind>:<dir>` is set, the test selected with
//! `--exact` acts as a writer that appends batches forever and prints `ACK <size>` after
//! every acknowledged append; the parent SIGKILLs it and checks what survived.

use candor_core::hash::{Hash, leaf_hash, sha256};
mod common;

use candor_store::{
    Batch, KIND_FILE, REDB_FILE, SLED_DIR, Store, StoreError, StoreKind, TileId, TreeState,
    dir_size, open_postgres, open_store,
};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "CANDOR_STORE_CHILD";

fn state(size: u64, tag: u8) -> TreeState {
    TreeState {
        size,
        root: sha256(&[tag; 3]),
    }
}

fn h(n: u64) -> Hash {
    sha256(&n.to_be_bytes())
}

/// A checkpoint-shaped note for a tree of `size` (the PostgreSQL backend reads the size
/// from its second line, C2SP tlog-checkpoint).
fn note(size: u64) -> Vec<u8> {
    format!(
        "example.com/log\n{size}\n{}\n\n\u{2014} example.com/log AAAA\n",
        sha256(&size.to_be_bytes()).to_base64()
    )
    .into_bytes()
}

/// Where one suite test keeps its store: a temporary data directory for the embedded
/// backends, a fresh database on the test server for PostgreSQL.
struct Place {
    kind: StoreKind,
    dir: tempfile::TempDir,
    url: Option<String>,
}

impl Place {
    fn new(kind: StoreKind) -> Place {
        let url = (kind == StoreKind::Postgres).then(|| {
            let admin = common::pg::admin_url().expect("the caller checked admin_url");
            common::pg::fresh_database(&admin)
        });
        Place {
            kind,
            dir: tempfile::tempdir().unwrap(),
            url,
        }
    }

    fn try_open(&self) -> Result<Arc<dyn Store>, StoreError> {
        match &self.url {
            Some(url) => open_postgres(url),
            None => reopen(self.kind, self.dir.path()),
        }
    }

    fn open(&self) -> Arc<dyn Store> {
        self.try_open().unwrap()
    }

    /// The child-writer spec `<kind>:<dir or URL>`.
    fn spec(&self) -> String {
        match &self.url {
            Some(url) => format!("postgres:{url}"),
            None => format!("{}:{}", self.kind, self.dir.path().display()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Shared suite.

fn empty_store_reads_none(kind: StoreKind) {
    let place = Place::new(kind);
    let store = place.open();
    assert_eq!(store.kind(), kind);
    assert_eq!(store.state().unwrap(), None);
    assert_eq!(
        store.read_tile(TileId { level: 0, index: 0 }).unwrap(),
        None
    );
    assert_eq!(store.read_bundle(0).unwrap(), None);
    assert_eq!(store.lookup_leaf(&h(0)).unwrap(), None);
    assert_eq!(store.lookup_entry(&h(0)).unwrap(), None);
    assert_eq!(store.get_meta("x").unwrap(), None);
    assert!(store.scan_meta("").unwrap().is_empty());
    assert_eq!(store.checkpoint().unwrap(), None);
    // The marker names the backend (embedded backends only: PostgreSQL has no directory).
    if kind != StoreKind::Postgres {
        let marker = std::fs::read_to_string(place.dir.path().join(KIND_FILE)).unwrap();
        assert_eq!(marker.trim(), kind.to_string());
    }
    // Opening again (a second process's schema check) changes nothing.
    if kind == StoreKind::Postgres {
        let again = place.open();
        assert_eq!(again.state().unwrap(), None);
    }
}

fn appends_and_reads_back(kind: StoreKind) {
    let place = Place::new(kind);
    let store = place.open();

    let mut b1 = Batch::new(0, state(3, 1));
    b1.tiles.push((TileId { level: 0, index: 0 }, vec![1; 96]));
    b1.tiles.push((TileId { level: 1, index: 7 }, vec![9; 32]));
    b1.bundles.push((0, b"bundle zero".to_vec()));
    b1.leaf_index = (0..3).map(|i| (leaf_hash(&[i as u8]), i)).collect();
    b1.entry_index = (0..3).map(|i| (h(100 + i), i)).collect();
    // Inserted out of order, with keys around the prefix boundary.
    for key in [
        "company/zeta",
        "company",
        "company/alpha",
        "companz",
        "compan",
        "company/m",
    ] {
        b1.meta.push((key.to_string(), key.as_bytes().to_vec()));
    }
    store.append(&b1).unwrap();
    assert_eq!(store.state().unwrap(), Some(state(3, 1)));

    let mut b2 = Batch::new(3, state(300, 2));
    b2.tiles
        .push((TileId { level: 0, index: 1 }, vec![2; 32 * 44]));
    b2.bundles.push((1, b"bundle one".to_vec()));
    // Bundle 0 is full at size 300 (redb then stores it compressed).
    let full_zero = b"bundle zero, now holding 256 entries ".repeat(50);
    b2.bundles.push((0, full_zero.clone()));
    b2.leaf_index.push((leaf_hash(b"x"), 299));
    b2.entry_index.push((h(399), 299));
    b2.meta.push(("company/beta".into(), b"B".to_vec()));
    b2.checkpoint = Some(note(300));
    store.append(&b2).unwrap();
    assert_eq!(store.state().unwrap(), Some(state(300, 2)));
    // The checkpoint in a batch is stored with it, as the latest checkpoint.
    assert_eq!(store.checkpoint().unwrap(), Some(note(300)));

    assert_eq!(
        store.read_tile(TileId { level: 0, index: 0 }).unwrap(),
        Some(vec![1; 96])
    );
    assert_eq!(
        store.read_tile(TileId { level: 1, index: 7 }).unwrap(),
        Some(vec![9; 32])
    );
    assert_eq!(
        store.read_tile(TileId { level: 0, index: 1 }).unwrap(),
        Some(vec![2; 32 * 44])
    );
    // Same index, other level: distinct keys.
    assert_eq!(
        store.read_tile(TileId { level: 1, index: 0 }).unwrap(),
        None
    );
    assert_eq!(
        store.read_tile(TileId { level: 0, index: 7 }).unwrap(),
        None
    );
    assert_eq!(store.read_bundle(0).unwrap(), Some(full_zero));
    assert_eq!(store.read_bundle(1).unwrap(), Some(b"bundle one".to_vec()));
    assert_eq!(store.read_bundle(2).unwrap(), None);
    for i in 0..3u64 {
        assert_eq!(store.lookup_leaf(&leaf_hash(&[i as u8])).unwrap(), Some(i));
        assert_eq!(store.lookup_entry(&h(100 + i)).unwrap(), Some(i));
    }
    assert_eq!(store.lookup_leaf(&leaf_hash(b"x")).unwrap(), Some(299));
    assert_eq!(store.lookup_entry(&h(399)).unwrap(), Some(299));
    assert_eq!(store.lookup_entry(&leaf_hash(b"x")).unwrap(), None);
    // Many at once: answers in the order asked, misses included.
    assert_eq!(
        store
            .lookup_entries(&[h(399), leaf_hash(b"x"), h(100), h(102), h(100)])
            .unwrap(),
        vec![Some(299), None, Some(0), Some(2), Some(0)]
    );
    assert_eq!(
        store.lookup_entries(&[]).unwrap(),
        Vec::<Option<u64>>::new()
    );
    assert_eq!(
        store.get_meta("companz").unwrap(),
        Some(b"companz".to_vec())
    );
    assert_eq!(store.get_meta("company/").unwrap(), None);

    let keys = |prefix: &str| -> Vec<String> {
        let rows = store.scan_meta(prefix).unwrap();
        for (k, v) in &rows {
            if k != "company/beta" {
                assert_eq!(v, k.as_bytes());
            }
        }
        rows.into_iter().map(|(k, _)| k).collect()
    };
    assert_eq!(
        keys("company/"),
        ["company/alpha", "company/beta", "company/m", "company/zeta"]
    );
    assert_eq!(
        keys("company"),
        [
            "company",
            "company/alpha",
            "company/beta",
            "company/m",
            "company/zeta"
        ]
    );
    assert_eq!(keys("compan").len(), 7);
    assert_eq!(keys("").len(), 7);
    assert!(keys("d").is_empty());
    assert!(keys("company/zz").is_empty());
}

fn checkpoint_put_get(kind: StoreKind) {
    let place = Place::new(kind);
    {
        let store = place.open();
        store.put_checkpoint(b"first checkpoint\n").unwrap();
        assert_eq!(
            store.checkpoint().unwrap(),
            Some(b"first checkpoint\n".to_vec())
        );
        store.put_checkpoint(b"second, cosigned\n").unwrap();
        assert_eq!(
            store.checkpoint().unwrap(),
            Some(b"second, cosigned\n".to_vec())
        );
        // A checkpoint is independent of the tree state.
        assert_eq!(store.state().unwrap(), None);
    }
    let store = place.open();
    assert_eq!(
        store.checkpoint().unwrap(),
        Some(b"second, cosigned\n".to_vec())
    );
}

fn conflict_leaves_store_unchanged(kind: StoreKind) {
    let place = Place::new(kind);
    let store = place.open();

    // An empty store has size 0.
    let err = store.append(&Batch::new(1, state(2, 1))).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                expected: 1,
                found: 0
            }
        ),
        "{err:?}"
    );
    assert_eq!(store.state().unwrap(), None);

    let mut ok = Batch::new(0, state(5, 1));
    ok.tiles.push((TileId { level: 0, index: 0 }, vec![1; 160]));
    ok.checkpoint = Some(note(5));
    store.append(&ok).unwrap();

    let mut stale = Batch::new(3, state(9, 2));
    stale
        .tiles
        .push((TileId { level: 0, index: 0 }, vec![7; 288]));
    stale
        .tiles
        .push((TileId { level: 0, index: 1 }, vec![7; 32]));
    stale.bundles.push((0, b"stale".to_vec()));
    stale.leaf_index.push((h(1), 8));
    stale.entry_index.push((h(2), 8));
    stale.meta.push(("stale".into(), b"yes".to_vec()));
    stale.checkpoint = Some(note(9));
    let err = store.append(&stale).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                expected: 3,
                found: 5
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("size 3"), "{err}");

    assert_eq!(store.state().unwrap(), Some(state(5, 1)));
    assert_eq!(
        store.read_tile(TileId { level: 0, index: 0 }).unwrap(),
        Some(vec![1; 160])
    );
    assert_eq!(
        store.read_tile(TileId { level: 0, index: 1 }).unwrap(),
        None
    );
    assert_eq!(store.read_bundle(0).unwrap(), None);
    assert_eq!(store.lookup_leaf(&h(1)).unwrap(), None);
    assert_eq!(store.lookup_entry(&h(2)).unwrap(), None);
    assert_eq!(store.get_meta("stale").unwrap(), None);
    // The refused batch's checkpoint was not stored either.
    assert_eq!(store.checkpoint().unwrap(), Some(note(5)));

    // The right old size still works afterwards.
    store.append(&Batch::new(5, state(6, 3))).unwrap();
    assert_eq!(store.state().unwrap(), Some(state(6, 3)));
}

fn shrinking_or_misordered_batch_is_rejected(kind: StoreKind) {
    let place = Place::new(kind);
    let store = place.open();
    store.append(&Batch::new(0, state(4, 1))).unwrap();
    let mut bad = Batch::new(4, state(3, 2));
    bad.meta.push(("x".into(), vec![1]));
    let err = store.append(&bad).unwrap_err();
    assert!(matches!(err, StoreError::InvalidBatch(_)), "{err:?}");
    assert_eq!(store.state().unwrap(), Some(state(4, 1)));
    assert_eq!(store.get_meta("x").unwrap(), None);
    // A batch that keeps the size (metadata only) is allowed.
    let mut same = Batch::new(4, state(4, 1));
    same.meta.push(("x".into(), vec![2]));
    store.append(&same).unwrap();
    assert_eq!(store.get_meta("x").unwrap(), Some(vec![2]));
    // Index rows name the batch's own leaves, in leaf order: before it, past it, or
    // going back, a row is refused, in either index.
    for rows in [vec![(h(7), 3)], vec![(h(7), 6)], vec![(h(7), 5), (h(8), 4)]] {
        for entry in [false, true] {
            let mut bad = Batch::new(4, state(6, 2));
            if entry {
                bad.entry_index = rows.clone();
            } else {
                bad.leaf_index = rows.clone();
            }
            let err = store.append(&bad).unwrap_err();
            assert!(
                matches!(err, StoreError::InvalidBatch(_)),
                "{rows:?}: {err:?}"
            );
            assert!(err.to_string().contains("leaf order"), "{err}");
        }
    }
    assert_eq!(store.state().unwrap(), Some(state(4, 1)));
    assert_eq!(store.lookup_leaf(&h(7)).unwrap(), None);
    let mut good = Batch::new(4, state(6, 2));
    good.leaf_index = vec![(h(7), 4), (h(7), 5)];
    store.append(&good).unwrap();
    assert_eq!(store.lookup_leaf(&h(7)).unwrap(), Some(5));
}

fn concurrent_appends_one_winner(kind: StoreKind) {
    let place = Place::new(kind);
    let store = place.open();
    store.append(&Batch::new(0, state(1, 0))).unwrap();
    let writers = 4;
    let barrier = Arc::new(Barrier::new(writers));
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let store = Arc::clone(&store);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let mut b = Batch::new(1, state(2, w as u8 + 1));
                b.meta.push(("winner".into(), vec![w as u8]));
                barrier.wait();
                store.append(&b)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|t| t.join().unwrap()).collect();
    let winners: Vec<usize> = (0..writers).filter(|&w| results[w].is_ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for r in &results {
        if let Err(e) = r {
            assert!(
                matches!(
                    e,
                    StoreError::Conflict {
                        expected: 1,
                        found: 2
                    }
                ),
                "{e:?}"
            );
        }
    }
    let w = winners[0];
    assert_eq!(store.state().unwrap(), Some(state(2, w as u8 + 1)));
    assert_eq!(store.get_meta("winner").unwrap(), Some(vec![w as u8]));
}

fn reopen_keeps_everything(kind: StoreKind) {
    let place = Place::new(kind);
    {
        let store = place.open();
        let mut size = 0;
        for round in 0..20u64 {
            let new = size + round + 1;
            let mut b = Batch::new(size, state(new, round as u8));
            b.tiles.push((
                TileId {
                    level: 0,
                    index: round,
                },
                vec![round as u8; 64],
            ));
            b.bundles.push((round, vec![round as u8; 10]));
            b.leaf_index.push((h(round), new - 1));
            b.entry_index.push((h(1000 + round), new - 1));
            b.meta
                .push((format!("m/{round:03}"), round.to_be_bytes().to_vec()));
            store.append(&b).unwrap();
            size = new;
        }
        store.put_checkpoint(b"cp").unwrap();
    }
    let store = place.open();
    assert_eq!(store.state().unwrap(), Some(state(210, 19)));
    let mut size = 0;
    for round in 0..20u64 {
        size += round + 1;
        assert_eq!(
            store
                .read_tile(TileId {
                    level: 0,
                    index: round
                })
                .unwrap(),
            Some(vec![round as u8; 64])
        );
        assert_eq!(
            store.read_bundle(round).unwrap(),
            Some(vec![round as u8; 10])
        );
        assert_eq!(store.lookup_leaf(&h(round)).unwrap(), Some(size - 1));
        assert_eq!(
            store.lookup_entry(&h(1000 + round)).unwrap(),
            Some(size - 1)
        );
    }
    let meta = store.scan_meta("m/").unwrap();
    assert_eq!(meta.len(), 20);
    for (round, (key, value)) in meta.iter().enumerate() {
        assert_eq!(key, &format!("m/{round:03}"));
        assert_eq!(value, &(round as u64).to_be_bytes().to_vec());
    }
    assert_eq!(store.checkpoint().unwrap(), Some(b"cp".to_vec()));
    if kind != StoreKind::Postgres {
        assert!(dir_size(place.dir.path()).unwrap() > 0);
    }
}

fn tile_overwritten_by_longer_version(kind: StoreKind) {
    let place = Place::new(kind);
    let id = TileId {
        level: 0,
        index: 42,
    };
    {
        let store = place.open();
        let mut b = Batch::new(0, state(1, 1));
        b.tiles.push((id, vec![1; 32]));
        b.bundles.push((42, vec![1; 5]));
        store.append(&b).unwrap();
        let mut b = Batch::new(1, state(3, 2));
        b.tiles.push((id, [vec![1; 32], vec![2; 64]].concat()));
        b.bundles.push((42, vec![1; 12]));
        store.append(&b).unwrap();
        assert_eq!(
            store.read_tile(id).unwrap(),
            Some([vec![1; 32], vec![2; 64]].concat())
        );
    }
    let store = place.open();
    assert_eq!(
        store.read_tile(id).unwrap(),
        Some([vec![1; 32], vec![2; 64]].concat())
    );
    assert_eq!(store.read_bundle(42).unwrap(), Some(vec![1; 12]));
}

fn other_backend_refused(kind: StoreKind) {
    let other = match kind {
        StoreKind::Redb => StoreKind::Sled,
        StoreKind::Sled => StoreKind::Redb,
        StoreKind::Postgres | StoreKind::Memory => unreachable!("embedded stores only"),
    };
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open_store(kind, dir.path()).unwrap();
        store.append(&Batch::new(0, state(1, 1))).unwrap();
    }
    let err = reopen(other, dir.path()).err().expect("must refuse");
    assert!(matches!(err, StoreError::WrongBackend(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&kind.to_string()) && msg.contains(&other.to_string()),
        "{msg}"
    );
    // The refused open created nothing of the other backend.
    let other_path = match other {
        StoreKind::Redb => dir.path().join(REDB_FILE),
        StoreKind::Sled => dir.path().join(SLED_DIR),
        StoreKind::Postgres | StoreKind::Memory => {
            unreachable!("data-directory tests are for embedded stores")
        }
    };
    assert!(!other_path.exists());

    // Without the marker the other backend's data alone still makes it refuse.
    std::fs::remove_file(dir.path().join(KIND_FILE)).unwrap();
    let err = reopen(other, dir.path()).err().expect("must refuse");
    assert!(matches!(err, StoreError::WrongBackend(_)), "{err:?}");
    // ...and the right backend reopens and restores the marker.
    let store = reopen(kind, dir.path()).unwrap();
    assert_eq!(store.state().unwrap(), Some(state(1, 1)));
    drop(store);
    let marker = std::fs::read_to_string(dir.path().join(KIND_FILE)).unwrap();
    assert_eq!(marker.trim(), kind.to_string());
}

/// Opens a data directory that this test closed a moment ago. Another test in
/// this binary forks writer children; between fork and exec a child briefly
/// shares the (close-on-exec) lock file's open description, so the flock of a
/// just-dropped store can outlive the drop by a few milliseconds.
fn reopen(kind: StoreKind, dir: &Path) -> Result<Arc<dyn Store>, StoreError> {
    for _ in 0..100 {
        match open_store(kind, dir) {
            Err(StoreError::InUse(_)) => std::thread::sleep(std::time::Duration::from_millis(20)),
            other => return other,
        }
    }
    open_store(kind, dir)
}

fn lost_data_refused(kind: StoreKind) {
    let dir = tempfile::tempdir().unwrap();
    drop(open_store(kind, dir.path()).unwrap());
    let data = match kind {
        StoreKind::Redb => dir.path().join(REDB_FILE),
        StoreKind::Sled => dir.path().join(SLED_DIR),
        StoreKind::Postgres | StoreKind::Memory => {
            unreachable!("data-directory tests are for embedded stores")
        }
    };
    if data.is_dir() {
        std::fs::remove_dir_all(&data).unwrap();
    } else {
        std::fs::remove_file(&data).unwrap();
    }
    let err = reopen(kind, dir.path()).err().expect("must refuse");
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert!(
        !data.exists(),
        "a refused open must not create an empty store"
    );
}

fn second_open_fails_cleanly(kind: StoreKind) {
    let dir = tempfile::tempdir().unwrap();
    let first = open_store(kind, dir.path()).unwrap();
    first.append(&Batch::new(0, state(1, 1))).unwrap();
    for _ in 0..2 {
        let err = open_store(kind, dir.path())
            .err()
            .expect("second open must fail");
        assert!(matches!(err, StoreError::InUse(_)), "{err:?}");
        assert!(
            err.to_string().contains("in use by another process"),
            "{err}"
        );
    }
    // The failed opens did not disturb the first handle.
    first.append(&Batch::new(1, state(2, 2))).unwrap();
    drop(first);
    let again = reopen(kind, dir.path()).unwrap();
    assert_eq!(again.state().unwrap(), Some(state(2, 2)));
}

fn creates_missing_directories(kind: StoreKind) {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a").join("b");
    let store = open_store(kind, &nested).unwrap();
    store.append(&Batch::new(0, state(1, 1))).unwrap();
    assert!(nested.join(KIND_FILE).exists());
}

// ---------------------------------------------------------------------------------------
// Killed writer.
//
// The child appends batches of 1..=37 leaves. Everything a batch writes is a function of
// the sizes, so after a kill the parent can recompute what must be stored for the size it
// finds: level-0 tile i holds hashes of leaves i*256 .. min(size, (i+1)*256), bundle i
// holds the 8-byte numbers of the same leaves, leaf n is indexed under h(n) and its entry
// under sha256("e" || n), and the root is derived from the size.

const WIDTH: u64 = 256;

fn fake_root(size: u64) -> Hash {
    sha256(&[b"root".as_slice(), &size.to_be_bytes()].concat())
}

fn entry_key(n: u64) -> Hash {
    sha256(&[b"e".as_slice(), &n.to_be_bytes()].concat())
}

fn expected_tile(index: u64, size: u64) -> Vec<u8> {
    let end = size.min((index + 1) * WIDTH);
    (index * WIDTH..end).flat_map(|n| h(n).0).collect()
}

fn expected_bundle(index: u64, size: u64) -> Vec<u8> {
    let end = size.min((index + 1) * WIDTH);
    (index * WIDTH..end).flat_map(|n| n.to_be_bytes()).collect()
}

fn child_batch(old: u64) -> Batch {
    // Batch length varies deterministically so batches cross tile boundaries at
    // different offsets.
    let new = old + 1 + (old * 7 + 3) % 37;
    let mut b = Batch::new(
        old,
        TreeState {
            size: new,
            root: fake_root(new),
        },
    );
    let first_tile = old / WIDTH;
    let last_tile = (new - 1) / WIDTH;
    for i in first_tile..=last_tile {
        b.tiles
            .push((TileId { level: 0, index: i }, expected_tile(i, new)));
        b.bundles.push((i, expected_bundle(i, new)));
    }
    for n in old..new {
        b.leaf_index.push((h(n), n));
        b.entry_index.push((entry_key(n), n));
    }
    b.meta.push(("size".into(), new.to_be_bytes().to_vec()));
    b
}

/// Child mode: append forever, acknowledging each durable append on stdout.
fn run_child(spec: &str) -> ! {
    let (kind, dir) = spec
        .split_once(':')
        .expect("CANDOR_STORE_CHILD=<kind>:<dir>");
    let store = if kind == "postgres" {
        open_postgres(dir).unwrap()
    } else {
        open_store(kind.parse().unwrap(), Path::new(dir)).unwrap()
    };
    let mut out = std::io::stdout().lock();
    // The harness has already printed "test NAME ... " without a newline.
    writeln!(out, "\nOPEN").unwrap();
    out.flush().unwrap();
    let mut size = store.state().unwrap().map_or(0, |s| s.size);
    loop {
        let batch = child_batch(size);
        store.append(&batch).unwrap();
        size = batch.new_state.size;
        // Written straight to the process's stdout (not the test harness's capture) and
        // flushed, so the parent sees every acknowledgement before a kill.
        writeln!(out, "ACK {size}").unwrap();
        out.flush().unwrap();
    }
}

fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    getrandom::fill(&mut buf).unwrap();
    u64::from_le_bytes(buf)
}

fn verify_after_crash(store: &dyn Store, acked: u64) -> u64 {
    let st = store.state().unwrap().expect("state must exist after acks");
    let size = st.size;
    assert!(
        size >= acked,
        "lost acknowledged entries: stored {size} < acked {acked}"
    );
    assert_eq!(st.root, fake_root(size), "state torn");
    let tiles = size.div_ceil(WIDTH);
    for i in 0..tiles {
        let id = TileId { level: 0, index: i };
        assert_eq!(
            store.read_tile(id).unwrap(),
            Some(expected_tile(i, size)),
            "tile {i} at size {size}"
        );
        assert_eq!(
            store.read_bundle(i).unwrap(),
            Some(expected_bundle(i, size)),
            "bundle {i} at size {size}"
        );
    }
    // Nothing from a batch beyond `size` may be visible.
    assert_eq!(
        store
            .read_tile(TileId {
                level: 0,
                index: tiles
            })
            .unwrap(),
        None
    );
    assert_eq!(store.read_bundle(tiles).unwrap(), None);
    assert_eq!(store.lookup_leaf(&h(size)).unwrap(), None);
    assert_eq!(store.lookup_entry(&entry_key(size)).unwrap(), None);
    for n in 0..size {
        assert_eq!(store.lookup_leaf(&h(n)).unwrap(), Some(n), "leaf {n}");
        assert_eq!(
            store.lookup_entry(&entry_key(n)).unwrap(),
            Some(n),
            "entry {n}"
        );
    }
    assert_eq!(
        store.get_meta("size").unwrap(),
        Some(size.to_be_bytes().to_vec())
    );
    size
}

fn killed_writer(kind: StoreKind, test_name: &str) {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        run_child(&spec);
    }
    let place = Place::new(kind);
    let exe = std::env::current_exe().unwrap();
    let mut last_size = 0;
    for round in 0..4 {
        let mut child = Command::new(&exe)
            .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, place.spec())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });

        // Kill after a random number (at least one) of acknowledgements.
        let target = 1 + random_u64() % 150;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut acked = last_size;
        let mut acks = 0u64;
        let mut opened = false;
        while acks < target || !opened {
            let wait = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(wait)
                .unwrap_or_else(|e| panic!("child gave no progress in time: {e}"));
            if line == "OPEN" {
                opened = true;
                // While the child holds the directory, this process cannot open it
                // (a PostgreSQL database is shared by design: the row lock and the size
                // check in `append` keep writers apart instead).
                if kind != StoreKind::Postgres {
                    let err = place.try_open().err().expect("dir is in use");
                    assert!(matches!(err, StoreError::InUse(_)), "{err:?}");
                }
            } else if let Some(n) = line.strip_prefix("ACK ") {
                acked = n.parse().unwrap();
                acks += 1;
            }
        }
        // A random short delay lands the kill at varying points inside an append.
        thread::sleep(Duration::from_micros(random_u64() % 3000));
        child.kill().unwrap();
        child.wait().unwrap();
        // Acknowledgements still in the pipe were also given before the kill.
        reader.join().unwrap();
        for line in rx.try_iter() {
            if let Some(n) = line.strip_prefix("ACK ") {
                acked = acked.max(n.parse().unwrap());
            }
        }

        let store = place.open();
        let size = verify_after_crash(store.as_ref(), acked);
        assert!(size >= last_size, "round {round}: size went backwards");
        eprintln!("{kind} kill round {round}: acknowledged {acked}, recovered {size}");
        last_size = size;
    }
}

// ---------------------------------------------------------------------------------------

macro_rules! backend_suite {
    ($module:ident, $kind:expr) => {
        mod $module {
            use super::*;

            #[test]
            fn empty_store() {
                empty_store_reads_none($kind);
            }
            #[test]
            fn append_and_read_back() {
                appends_and_reads_back($kind);
            }
            #[test]
            fn checkpoint() {
                checkpoint_put_get($kind);
            }
            #[test]
            fn conflict() {
                conflict_leaves_store_unchanged($kind);
            }
            #[test]
            fn shrinking_batch() {
                shrinking_or_misordered_batch_is_rejected($kind);
            }
            #[test]
            fn concurrent_appends() {
                concurrent_appends_one_winner($kind);
            }
            #[test]
            fn reopen() {
                reopen_keeps_everything($kind);
            }
            #[test]
            fn longer_tile() {
                tile_overwritten_by_longer_version($kind);
            }
            #[test]
            fn wrong_backend() {
                other_backend_refused($kind);
            }
            #[test]
            fn lost_data() {
                lost_data_refused($kind);
            }
            #[test]
            fn second_open() {
                second_open_fails_cleanly($kind);
            }
            #[test]
            fn creates_dirs() {
                creates_missing_directories($kind);
            }
            #[test]
            fn killed_writer() {
                super::killed_writer($kind, concat!(stringify!($module), "::killed_writer"));
            }
        }
    };
}

backend_suite!(redb, StoreKind::Redb);
backend_suite!(sled, StoreKind::Sled);

/// The same suite against PostgreSQL (every test but the data-directory ones, which do
/// not apply to a server). Each test runs on a fresh database.
mod postgres {
    use super::*;

    /// Runs `f` if the test server is configured (see tests/common/pg.rs).
    fn with_pg(f: impl FnOnce(StoreKind)) {
        if common::pg::admin_url().is_some() {
            f(StoreKind::Postgres);
        }
    }

    #[test]
    fn empty_store() {
        with_pg(empty_store_reads_none);
    }
    #[test]
    fn append_and_read_back() {
        with_pg(appends_and_reads_back);
    }
    #[test]
    fn checkpoint() {
        with_pg(checkpoint_put_get);
    }
    #[test]
    fn conflict() {
        with_pg(conflict_leaves_store_unchanged);
    }
    #[test]
    fn shrinking_batch() {
        with_pg(shrinking_or_misordered_batch_is_rejected);
    }
    #[test]
    fn concurrent_appends() {
        with_pg(concurrent_appends_one_winner);
    }
    #[test]
    fn reopen() {
        with_pg(reopen_keeps_everything);
    }
    #[test]
    fn longer_tile() {
        with_pg(tile_overwritten_by_longer_version);
    }
    #[test]
    fn killed_writer() {
        // The child (this test re-run) finds the URL in its spec, not the environment.
        if std::env::var(CHILD_ENV).is_ok() {
            super::killed_writer(StoreKind::Postgres, "postgres::killed_writer");
        }
        with_pg(|kind| super::killed_writer(kind, "postgres::killed_writer"));
    }

    /// A checkpoint is never replaced by one of a smaller tree (a deposed sequencer
    /// cannot roll the published checkpoint back); same size (cosigned) is replaced.
    #[test]
    fn checkpoint_never_goes_back() {
        with_pg(|kind| {
            let place = Place::new(kind);
            let store = place.open();
            store.put_checkpoint(b"log\n10\nAAAA\n\n- a\n").unwrap();
            store
                .put_checkpoint(b"log\n10\nAAAA\n\n- a\n- w\n")
                .unwrap();
            let err = store.put_checkpoint(b"log\n9\nBBBB\n\n- a\n").unwrap_err();
            assert!(
                matches!(
                    err,
                    StoreError::StaleCheckpoint {
                        size: 9,
                        stored: 10
                    }
                ),
                "{err:?}"
            );
            assert_eq!(
                store.checkpoint().unwrap(),
                Some(b"log\n10\nAAAA\n\n- a\n- w\n".to_vec())
            );
            store.put_checkpoint(b"log\n11\nCCCC\n\n- a\n").unwrap();
        });
    }

    /// Exactly one session holds the sequencer lock; it is released when the holder
    /// goes away.
    #[test]
    fn sequencer_lock_is_exclusive() {
        with_pg(|kind| {
            let place = Place::new(kind);
            let url = place.url.clone().unwrap();
            drop(place.open());
            use candor_store::postgres::SequencerLock;
            let first = SequencerLock::try_acquire(&url)
                .unwrap()
                .expect("free lock");
            assert!(SequencerLock::try_acquire(&url).unwrap().is_none());
            assert!(!*first.lost().borrow());
            drop(first);
            let second = SequencerLock::try_acquire(&url).unwrap();
            assert!(second.is_some(), "the lock is released with its session");
        });
    }

    #[test]
    fn bad_url_is_an_error_not_a_panic() {
        let err = open_postgres("postgres://nobody@127.0.0.1:1/none")
            .err()
            .unwrap();
        assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
        assert!(err.to_string().contains("connecting"), "{err}");
    }
}

#[test]
fn store_kind_names() {
    for kind in [StoreKind::Redb, StoreKind::Sled] {
        assert_eq!(kind.to_string().parse::<StoreKind>().unwrap(), kind);
    }
    let err = "postgres".parse::<StoreKind>().unwrap_err();
    assert!(matches!(err, StoreError::UnknownKind(_)), "{err:?}");
    assert!(err.to_string().contains("postgres"));
}

#[test]
fn tile_keys_sort_by_level_then_index() {
    let ids = [
        TileId { level: 0, index: 0 },
        TileId {
            level: 0,
            index: 255,
        },
        TileId {
            level: 0,
            index: 256,
        },
        TileId {
            level: 0,
            index: u64::MAX,
        },
        TileId { level: 1, index: 0 },
    ];
    for pair in ids.windows(2) {
        assert!(pair[0].to_key() < pair[1].to_key());
    }
    for id in ids {
        assert_eq!(TileId::from_key(&id.to_key()).unwrap(), id);
    }
    assert!(matches!(
        TileId::from_key(&[0; 8]),
        Err(StoreError::Corrupt(_))
    ));
}

/// Damaged data is reported as an error, never a panic.
fn garbage_refused(kind: StoreKind) {
    let dir = tempfile::tempdir().unwrap();
    let mut size = 0;
    {
        let store = open_store(kind, dir.path()).unwrap();
        for i in 0..50 {
            let b = child_batch(size);
            size = b.new_state.size;
            store.append(&b).unwrap();
            assert_eq!(store.state().unwrap().map(|s| s.size), Some(size), "{i}");
        }
    }
    // Overwrite the middle of every data file with noise.
    let data = match kind {
        StoreKind::Redb => dir.path().join(REDB_FILE),
        StoreKind::Sled => dir.path().join(SLED_DIR),
        StoreKind::Postgres | StoreKind::Memory => {
            unreachable!("data-directory tests are for embedded stores")
        }
    };
    let files: Vec<_> = if data.is_dir() {
        walk(&data)
    } else {
        vec![data.clone()]
    };
    for f in files {
        // Only the data files; sled's tiny `conf` would fail its own way.
        if std::fs::metadata(&f).unwrap().len() < 4096 {
            continue;
        }
        let mut bytes = std::fs::read(&f).unwrap();
        let start = bytes.len() / 4;
        let end = bytes.len() * 3 / 4;
        for b in &mut bytes[start..end] {
            *b = random_u64() as u8;
        }
        std::fs::write(&f, bytes).unwrap();
    }
    let result = std::panic::catch_unwind(|| open_store(kind, dir.path()));
    match (kind, result) {
        (_, Err(_)) => panic!("{kind} panicked on damaged data"),
        (_, Ok(Err(e))) => eprintln!("{kind} refused damaged data: {e}"),
        // redb verifies every page checksum on open (set_check_integrity_on_open).
        (StoreKind::Redb, Ok(Ok(_))) => panic!("redb opened damaged data"),
        // sled 0.34 treats a damaged log record as the end of its log and silently
        // recovers an older state. Nothing in the store can tell (the state itself
        // rolled back); the best it promises is that this older state is a consistent
        // prefix, which is checked here. The report to the lead records this.
        (StoreKind::Postgres | StoreKind::Memory, Ok(Ok(_))) => {
            unreachable!("embedded stores only")
        }
        (StoreKind::Sled, Ok(Ok(store))) => {
            let recovered = match store.state() {
                Ok(Some(_)) => verify_after_crash(store.as_ref(), 0),
                Ok(None) => 0,
                Err(e) => {
                    eprintln!("sled refused damaged data on read: {e}");
                    return;
                }
            };
            eprintln!("sled silently rolled back from {size} to {recovered} after damage");
            assert!(recovered <= size);
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn garbage_redb() {
    garbage_refused(StoreKind::Redb);
}

#[test]
fn garbage_sled() {
    garbage_refused(StoreKind::Sled);
}
