//! Split-view evidence (spec/monitor.md §8): two checkpoints signed by one log key
//! for one origin that cannot both describe one append-only tree, packaged so that
//! anyone holding the log's verifier key can re-check it offline.
//!
//! * Equal sizes: the two roots differ. Nothing else is needed.
//! * Sizes m < n: the evidence carries a consistency path computed from the larger
//!   tree as RFC 9162 §2.1.4.2 uses it, always including its first node (the
//!   prefix's largest complete subtree, which RFC 9162 leaves out when m is a power
//!   of two because an honest verifier already has it). Running the §2.1.4.2
//!   computation over that path yields two roots (fr, sr). If sr equals the larger
//!   checkpoint's root, the path's hashes are (barring a SHA-256 collision) the
//!   larger tree's own subtree hashes, so fr is the root of its first m leaves. If
//!   fr differs from the smaller checkpoint's root, the log signed an m-leaf tree
//!   that is not a prefix of an n-leaf tree it also signed.

use candor_core::checkpoint::{Checkpoint, open_checkpoint};
use candor_core::hash::{Hash, empty_root, node_hash};
use candor_core::merkle::{HashReader, TreeError, consistency_proof, tree_hash};
use candor_core::note::VerifierKey;
use serde::{Deserialize, Serialize};

/// The evidence format's type tag.
pub const EVIDENCE_TYPE: &str = "candor-split-view/v1";

/// Portable evidence of a split view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    #[serde(rename = "type")]
    pub kind: String,
    pub origin: String,
    /// The log's verifier key the checkpoints are signed with.
    pub log_key: String,
    /// Both signed checkpoints, whole note text, the smaller (or equal) size first.
    pub checkpoints: [String; 2],
    /// Their sizes (a convenience; the notes are authoritative).
    pub sizes: [u64; 2],
    /// Their roots, base64 (a convenience; the notes are authoritative).
    pub roots: [String; 2],
    /// For different sizes: the consistency path from the larger tree, first node
    /// included, base64; empty for equal sizes.
    pub proof: Vec<String>,
}

/// Why evidence does not prove a split view (or could not be read).
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("the evidence is not valid JSON of type {EVIDENCE_TYPE}: {0}")]
    Format(String),
    #[error("checkpoint {which} is not validly signed by {key}: {message}")]
    Signature {
        which: usize,
        key: String,
        message: String,
    },
    #[error("the two checkpoints are for different origins ({0} and {1})")]
    Origins(String, String),
    #[error("the two checkpoints are consistent: {0}")]
    Consistent(String),
    #[error(
        "the consistency path does not lead to the larger checkpoint's root, so it proves nothing"
    )]
    PathNotBound,
    #[error("the consistency path has the wrong shape for sizes {0} and {1}")]
    PathShape(u64, u64),
    #[error("cannot compute the evidence: {0}")]
    Tree(String),
}

/// RFC 9162 §2.1.4.2 steps 4–8 over a path that starts with the first node
/// (step 3 already applied): returns (fr, sr), or `None` if the path's length
/// does not fit sizes `m < n`.
pub fn roots_from_path(m: u64, n: u64, path: &[Hash]) -> Option<(Hash, Hash)> {
    if m == 0 || m >= n || path.is_empty() {
        return None;
    }
    let (mut f, mut s) = (m - 1, n - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s == 0 {
            return None;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    (s == 0).then_some((fr, sr))
}

/// The path [`roots_from_path`] expects, computed from the tree of `n` leaves
/// that `reader` serves: RFC 9162's consistency proof with the first node prepended
/// when `m` is a power of two.
pub fn evidence_path(m: u64, n: u64, reader: &dyn HashReader) -> Result<Vec<Hash>, TreeError> {
    let mut proof = consistency_proof(m, n, reader)?;
    if m.is_power_of_two() {
        proof.insert(0, tree_hash(m, reader)?);
    }
    Ok(proof)
}

impl Evidence {
    /// Builds evidence from two signed notes and (for different sizes) the larger
    /// tree's hashes. The order of `a` and `b` does not matter.
    pub fn new(
        log_key: &VerifierKey,
        a: (&Checkpoint, &str),
        b: (&Checkpoint, &str),
        larger_tree: Option<&dyn HashReader>,
    ) -> Result<Evidence, EvidenceError> {
        let (small, large) = if a.0.size <= b.0.size { (a, b) } else { (b, a) };
        let proof = if small.0.size == large.0.size || small.0.size == 0 {
            Vec::new()
        } else {
            let reader = larger_tree
                .ok_or_else(|| EvidenceError::Tree("the larger tree's hashes are needed".into()))?;
            evidence_path(small.0.size, large.0.size, reader)
                .map_err(|e| EvidenceError::Tree(e.to_string()))?
                .iter()
                .map(Hash::to_base64)
                .collect()
        };
        Ok(Evidence {
            kind: EVIDENCE_TYPE.to_owned(),
            origin: small.0.origin.clone(),
            log_key: log_key.to_string(),
            checkpoints: [small.1.to_owned(), large.1.to_owned()],
            sizes: [small.0.size, large.0.size],
            roots: [small.0.root.to_base64(), large.0.root.to_base64()],
            proof,
        })
    }

    /// Reads evidence from JSON: the evidence object itself, or a finding (one
    /// JSON line as the monitor prints it) that carries it in `evidence`.
    pub fn from_json(bytes: &[u8]) -> Result<Evidence, EvidenceError> {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| EvidenceError::Format(e.to_string()))?;
        let v = match v.get("evidence") {
            Some(e) if v.get("kind").is_some() => e.clone(),
            _ => v,
        };
        let e: Evidence =
            serde_json::from_value(v).map_err(|e| EvidenceError::Format(e.to_string()))?;
        if e.kind != EVIDENCE_TYPE {
            return Err(EvidenceError::Format(format!("type is {:?}", e.kind)));
        }
        Ok(e)
    }

    /// Re-checks the evidence under `key` (the auditor's pinned log key; the
    /// evidence's own `log_key` is only a hint). Ok means: both checkpoints are
    /// signed by `key` and they are inconsistent. Returns a plain sentence.
    pub fn check(&self, key: &VerifierKey) -> Result<String, EvidenceError> {
        let mut cps = Vec::new();
        for (i, note) in self.checkpoints.iter().enumerate() {
            let (cp, _) =
                open_checkpoint(note.as_bytes(), key).map_err(|e| EvidenceError::Signature {
                    which: i + 1,
                    key: key.to_string(),
                    message: e.to_string(),
                })?;
            cps.push(cp);
        }
        let (a, b) = if cps[0].size <= cps[1].size {
            (&cps[0], &cps[1])
        } else {
            (&cps[1], &cps[0])
        };
        if a.origin != b.origin {
            return Err(EvidenceError::Origins(a.origin.clone(), b.origin.clone()));
        }
        if a.size == b.size {
            if a.root == b.root {
                return Err(EvidenceError::Consistent(format!(
                    "both have size {} and root {}",
                    a.size,
                    a.root.to_base64()
                )));
            }
            return Ok(format!(
                "The log {} signed two different trees of size {}: roots {} and {}.",
                a.origin,
                a.size,
                a.root.to_base64(),
                b.root.to_base64()
            ));
        }
        if a.size == 0 {
            if a.root == empty_root() {
                return Err(EvidenceError::Consistent(
                    "the empty tree is a prefix of every tree".into(),
                ));
            }
            return Ok(format!(
                "The log {} signed a tree of size 0 whose root is not the empty tree's.",
                a.origin
            ));
        }
        let path: Vec<Hash> = self
            .proof
            .iter()
            .map(|s| {
                Hash::from_base64(s).ok_or_else(|| {
                    EvidenceError::Format(format!("proof hash {s:?} is not base64 of 32 bytes"))
                })
            })
            .collect::<Result<_, _>>()?;
        let (fr, sr) = roots_from_path(a.size, b.size, &path)
            .ok_or(EvidenceError::PathShape(a.size, b.size))?;
        if sr != b.root {
            return Err(EvidenceError::PathNotBound);
        }
        if fr == a.root {
            return Err(EvidenceError::Consistent(format!(
                "the first {} leaves of the size-{} tree have root {}",
                a.size,
                b.size,
                fr.to_base64()
            )));
        }
        Ok(format!(
            "The log {} signed a tree of size {} (root {}) that is not a prefix of the tree of size {} (root {}) it also signed: that tree's first {} leaves have root {}.",
            a.origin,
            a.size,
            a.root.to_base64(),
            b.size,
            b.root.to_base64(),
            a.size,
            fr.to_base64()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_core::hash::leaf_hash;
    use candor_core::merkle::MemoryTree;

    fn tree(n: u64, salt: u8) -> MemoryTree {
        let mut t = MemoryTree::new();
        for i in 0..n {
            t.append(leaf_hash(&[salt, i as u8, (i >> 8) as u8]));
        }
        t
    }

    #[test]
    fn path_roots_match_the_trees() {
        for n in 2..40u64 {
            let t = tree(n, 0);
            for m in 1..n {
                let path = evidence_path(m, n, &t).unwrap();
                let (fr, sr) = roots_from_path(m, n, &path).unwrap();
                assert_eq!(sr, t.root(), "m={m} n={n}");
                assert_eq!(fr, t.root_at(m).unwrap(), "m={m} n={n}");
                // A wrong length never verifies.
                let mut longer = path.clone();
                longer.push(fr);
                assert!(roots_from_path(m, n, &longer).is_none_or(|(_, s)| s != t.root()));
            }
        }
    }
}
