//! The Tessera POSIX test log in shared/conformance/tessera-log: real
//! tlog-checkpoint notes, plus the split-view tree notes of the signed-note vectors.

use candor_core::checkpoint::{Checkpoint, CheckpointError, open_checkpoint};
use candor_core::hash::{Hash, empty_root, leaf_hash, node_hash};
use candor_core::note::{self, Note, VerifierKey};
use candor_core::tlog_proof::TlogProof;

const LOG_DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/conformance/tessera-log"
);
const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/conformance/signed-note/vectors.json"
);
const LOG_VKEY: &str =
    "example.com/log/testdata+33d7b496+AeHTu4Q3hEIMHNqc6fASMsq3rKNx280NI+oO5xCFkkSx";
const ORIGIN: &str = "example.com/log/testdata";
const ENTRIES: [&str; 15] = [
    "one", "two", "three", "four", "five", "six", "seven", "eit", "nain", "ten", "ileven", "twelf",
    "threeten", "fourten", "fivten",
];

fn log_key() -> VerifierKey {
    LOG_VKEY.parse().expect("README vkey parses")
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{LOG_DIR}/{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

// RFC 6962 §2.1 MTH and PATH, recursively, as an independent oracle.
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

fn path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    if leaves.len() <= 1 {
        return vec![];
    }
    let k = split(leaves.len());
    let (mut p, other) = if m < k {
        (path(m, &leaves[..k]), mth(&leaves[k..]))
    } else {
        (path(m - k, &leaves[k..]), mth(&leaves[..k]))
    };
    p.push(other);
    p
}

fn leaves() -> Vec<Hash> {
    ENTRIES.iter().map(|e| leaf_hash(e.as_bytes())).collect()
}

#[test]
fn every_checkpoint_verifies_with_the_log_key() {
    let key = log_key();
    assert_eq!(hex::encode(key.key_id()), "33d7b496");
    let leaves = leaves();
    let mut files: Vec<String> = std::fs::read_dir(LOG_DIR)
        .expect("list tessera-log")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.starts_with("checkpoint"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 17, "checkpoint and checkpoint.0 ..= .15");
    for name in &files {
        let (cp, note) =
            open_checkpoint(&read(name), &key).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(cp.origin, ORIGIN);
        assert!(cp.extensions.is_empty());
        assert_eq!(note.signatures.len(), 1);
        let expected_size = match name.strip_prefix("checkpoint.") {
            Some(n) => n.parse::<u64>().expect("numeric suffix"),
            None => 15,
        };
        assert_eq!(cp.size, expected_size, "{name}");
        assert_eq!(cp.root, mth(&leaves[..expected_size as usize]), "{name}");
        assert_eq!(
            cp.to_text(),
            note.text,
            "{name}: text re-encodes byte-exactly"
        );
    }
    assert_eq!(read("checkpoint"), read("checkpoint.15"));
    let (latest, _) = open_checkpoint(&read("checkpoint"), &key).unwrap();
    assert_eq!(
        latest.root.to_hex(),
        "aca6c38a90af86e5f5199ee0e4105ef2c03a05b27b8daff59e4e36eefdfcddcb"
    );
    assert_eq!(
        open_checkpoint(&read("checkpoint.0"), &key).unwrap().0.root,
        empty_root()
    );
}

#[test]
fn changed_size_or_root_fails() {
    let key = log_key();
    let good = String::from_utf8(read("checkpoint")).unwrap();
    let bigger = good.replacen("\n15\n", "\n16\n", 1);
    assert_ne!(bigger, good);
    assert!(matches!(
        open_checkpoint(bigger.as_bytes(), &key),
        Err(CheckpointError::Note(
            note::NoteError::InvalidSignature { .. }
        ))
    ));
    let root = mth(&leaves()[..14]).to_base64();
    let other_root = good.replacen("rKbDipCvhuX1GZ7g5BBe8sA6BbJ7ja/1nk427v383cs=", &root, 1);
    assert_ne!(other_root, good);
    assert!(open_checkpoint(other_root.as_bytes(), &key).is_err());
    // Another key with the same name is unknown: no verified signature.
    let stranger = candor_core::note::SignerKey::from_seed(ORIGIN, [1; 32]).unwrap();
    assert!(matches!(
        open_checkpoint(good.as_bytes(), &stranger.verifier()),
        Err(CheckpointError::Note(
            note::NoteError::NoVerifiedSignature { .. }
        ))
    ));
}

#[test]
fn tlog_proofs_against_the_real_checkpoint() {
    let key = log_key();
    let leaves = leaves();
    for size in 1..=15usize {
        let cp_bytes = read(&format!("checkpoint.{size}"));
        for index in 0..size {
            let proof = TlogProof {
                extra: None,
                index: index as u64,
                proof: path(index, &leaves[..size]),
                checkpoint: cp_bytes.clone(),
            };
            let parsed = TlogProof::parse(&proof.to_bytes()).unwrap();
            let cp = parsed.verify(&leaves[index], &key).unwrap();
            assert_eq!(cp.size, size as u64);
            let other = (index + 1) % size;
            if other != index {
                assert!(parsed.verify(&leaves[other], &key).is_err());
            }
        }
    }
}

#[test]
fn split_view_tree_notes_both_verify() {
    let d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(VECTORS).unwrap()).unwrap();
    let mut trees = Vec::new();
    for id in ["sumdb-test-tree-5", "sumdb-test-tree-6"] {
        let v = d["valid"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["id"] == id)
            .unwrap_or_else(|| panic!("vector {id} missing"));
        let key: VerifierKey = v["verifiers"][0].as_str().unwrap().parse().unwrap();
        let msg = v["note"].as_str().unwrap().as_bytes();
        let opened = note::open(msg, std::slice::from_ref(&key)).unwrap();
        let cp = Checkpoint::parse(&opened.note.text).unwrap();
        assert_eq!(cp.origin, "go.sum database tree");
        // The go.sum tree origin is not the key name, which Candor requires
        // of its own logs' checkpoints.
        assert!(matches!(
            open_checkpoint(msg, &key),
            Err(CheckpointError::OriginMismatch { .. })
        ));
        assert_eq!(Note::parse(msg).unwrap().signatures.len(), 1);
        trees.push(cp);
    }
    // Both validly signed, same origin, sizes 5 and 6: a split view
    // (inconsistent roots); detecting it needs a consistency proof.
    assert_eq!((trees[0].size, trees[1].size), (5, 6));
    assert_eq!(trees[0].origin, trees[1].origin);
    assert_ne!(trees[0].root, trees[1].root);
}
