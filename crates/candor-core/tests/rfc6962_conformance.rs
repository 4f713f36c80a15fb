//! RFC 6962 / RFC 9162 proof vectors from transparency-dev/merkle (see
//! shared/conformance/rfc6962/README.md). Every inclusion and consistency file is
//! checked: the case passes when (verification returned an error) == wantErr.
//! The subtree* folders are not checked: Candor does not implement subtree proofs.

use base64::Engine;
use candor_core::hash::{Hash, leaf_hash};
use candor_core::merkle::{
    MemoryTree, root_from_leaf_hashes, tree_hash, verify_consistency_bytes, verify_inclusion_bytes,
};
use serde_json::Value;
use std::path::{Path, PathBuf};

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/conformance/rfc6962"
);

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            json_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// All files under a folder, each one a case (the README says every file is a .json probe).
fn cases(folder: &str) -> Vec<(PathBuf, Value)> {
    let mut files = Vec::new();
    json_files(&Path::new(DIR).join(folder), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            assert_eq!(
                p.extension().and_then(|e| e.to_str()),
                Some("json"),
                "{p:?}"
            );
            let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            (p, v)
        })
        .collect()
}

/// Base64 field; `None` when it is not valid base64 (then verification must fail).
fn b64(v: &Value) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().expect("hash fields are strings"))
        .ok()
}

/// The proof array (`null` means empty).
fn proof(v: &Value) -> Option<Vec<Vec<u8>>> {
    match v {
        Value::Null => Some(Vec::new()),
        Value::Array(items) => items.iter().map(b64).collect(),
        other => panic!("proof is neither null nor an array: {other}"),
    }
}

fn num(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} is not a u64"))
}

fn count_files(folder: &str) -> usize {
    let mut files = Vec::new();
    json_files(&Path::new(DIR).join(folder), &mut files);
    files.len()
}

#[test]
fn inclusion_vectors() {
    let cases = cases("inclusion");
    let (mut seen, mut valid) = (0, 0);
    for (path, v) in &cases {
        let want_err = v["wantErr"].as_bool().unwrap();
        let decoded = (|| Some((b64(&v["leafHash"])?, b64(&v["root"])?, proof(&v["proof"])?)))();
        let got_err = match decoded {
            None => true, // undecodable input is a rejection
            Some((leaf, root, proof)) => {
                let proof: Vec<&[u8]> = proof.iter().map(Vec::as_slice).collect();
                verify_inclusion_bytes(num(v, "leafIdx"), num(v, "treeSize"), &leaf, &proof, &root)
                    .is_err()
            }
        };
        assert_eq!(got_err, want_err, "{}: {}", path.display(), v["desc"]);
        seen += 1;
        valid += usize::from(!want_err);
    }
    assert!(seen > 0);
    assert_eq!(seen, count_files("inclusion"));
    assert_eq!(seen, 98, "README lists 98 inclusion files");
    assert_eq!(valid, 6, "README lists 6 valid inclusion files");
}

#[test]
fn consistency_vectors() {
    let cases = cases("consistency");
    let (mut seen, mut valid) = (0, 0);
    for (path, v) in &cases {
        let want_err = v["wantErr"].as_bool().unwrap();
        let decoded = (|| Some((b64(&v["root1"])?, b64(&v["root2"])?, proof(&v["proof"])?)))();
        let got_err = match decoded {
            None => true,
            Some((root1, root2, proof)) => {
                let proof: Vec<&[u8]> = proof.iter().map(Vec::as_slice).collect();
                verify_consistency_bytes(num(v, "size1"), num(v, "size2"), &root1, &root2, &proof)
                    .is_err()
            }
        };
        assert_eq!(got_err, want_err, "{}: {}", path.display(), v["desc"]);
        seen += 1;
        valid += usize::from(!want_err);
    }
    assert!(seen > 0);
    assert_eq!(seen, count_files("consistency"));
    assert_eq!(seen, 98, "README lists 98 consistency files");
    assert_eq!(valid, 6, "README lists 6 valid consistency files");
}

#[test]
fn reference_tree_roots() {
    let v: Value =
        serde_json::from_slice(&std::fs::read(Path::new(DIR).join("reference-tree.json")).unwrap())
            .unwrap();
    let leaves: Vec<Hash> = v["leaves_hex"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| leaf_hash(&hex::decode(l.as_str().unwrap()).unwrap()))
        .collect();
    assert_eq!(leaves.len(), 8);
    let roots = v["roots_hex"].as_object().unwrap();
    assert_eq!(roots.len(), 9);
    let tree = MemoryTree::from_leaf_hashes(&leaves);
    for (n, root) in roots {
        let n: usize = n.parse().unwrap();
        let want = Hash::from_hex(root.as_str().unwrap()).unwrap();
        assert_eq!(tree_hash(n as u64, &tree).unwrap(), want, "size {n}");
        assert_eq!(tree.root_at(n as u64).unwrap(), want, "size {n}");
        assert_eq!(root_from_leaf_hashes(&leaves[..n]), want, "size {n}");
        let partial = MemoryTree::from_leaf_hashes(&leaves[..n]);
        assert_eq!(partial.root(), want, "size {n}");
    }
}
