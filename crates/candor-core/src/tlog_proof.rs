//! C2SP tlog-proof v1 (c2sp.org/tlog-proof): an offline-verifiable proof that
//! an entry is in a log, made of an index, an RFC 6962 inclusion proof and a
//! signed (maybe cosigned) checkpoint.
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64>            (optional)
//! index <decimal>
//! <base64 hash>             (zero or more, leaf's sibling first)
//!
//! <checkpoint note, verbatim>
//! ```

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::checkpoint::{Checkpoint, CheckpointError, open_checkpoint, parse_decimal};
use crate::hash::Hash;
use crate::merkle::{ProofError, verify_inclusion};
use crate::note::{Note, VerifierKey};

/// The first line of every proof.
pub const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// A tree of at most 2^63 - 1 leaves has inclusion proofs of at most 63 hashes.
pub const MAX_PROOF_HASHES: usize = 63;

/// Errors from parsing or verifying a tlog-proof. (Only `Debug` is derived so
/// that any `merkle::ProofError` fits.)
#[derive(Debug, thiserror::Error)]
pub enum TlogProofError {
    #[error("tlog-proof ends early: {0}")]
    Truncated(&'static str),
    #[error("tlog-proof header line is not \"{HEADER}\"")]
    BadHeader,
    #[error("tlog-proof header lines are not UTF-8")]
    NotUtf8,
    #[error("tlog-proof extra line is not \"extra <base64>\" with canonical base64")]
    BadExtra,
    #[error("tlog-proof is missing its \"index <n>\" line")]
    MissingIndex,
    #[error("tlog-proof index {text:?} is invalid: {reason}")]
    BadIndex { text: String, reason: &'static str },
    #[error("tlog-proof inclusion proof line {line} is not the canonical base64 of a 32-byte hash")]
    BadHash { line: usize },
    #[error("tlog-proof inclusion proof has more than {MAX_PROOF_HASHES} hashes")]
    TooManyHashes,
    #[error("tlog-proof checkpoint is empty")]
    MissingCheckpoint,
    #[error("tlog-proof checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("tlog-proof inclusion proof does not verify: {0}")]
    Inclusion(#[from] ProofError),
}

/// A parsed tlog-proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlogProof {
    /// Opaque, unauthenticated extra data (the optional `extra` line).
    pub extra: Option<Vec<u8>>,
    /// The zero-based leaf index.
    pub index: u64,
    /// The inclusion proof, leaf's sibling first (RFC 6962 §2.1.1 PATH).
    pub proof: Vec<Hash>,
    /// The whole signed checkpoint note, verbatim.
    pub checkpoint: Vec<u8>,
}

/// Splits off the next `\n`-terminated line.
fn next_line<'a>(rest: &mut &'a [u8], what: &'static str) -> Result<&'a str, TlogProofError> {
    let i = rest
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(TlogProofError::Truncated(what))?;
    let line = std::str::from_utf8(&rest[..i]).map_err(|_| TlogProofError::NotUtf8)?;
    *rest = &rest[i + 1..];
    Ok(line)
}

impl TlogProof {
    /// Parses a proof strictly: exact header, optional `extra`, `index` with
    /// no leading zeros, canonical base64 hashes, an empty line, and a
    /// checkpoint that is a well-formed signed note with a checkpoint text
    /// (its signatures are checked by [`TlogProof::verify`]).
    pub fn parse(bytes: &[u8]) -> Result<TlogProof, TlogProofError> {
        let mut rest = bytes;
        if next_line(&mut rest, "no header line")? != HEADER {
            return Err(TlogProofError::BadHeader);
        }
        let mut line = next_line(&mut rest, "no index line")?;
        let mut extra = None;
        if line.starts_with("extra") {
            let b64 = line
                .strip_prefix("extra ")
                .ok_or(TlogProofError::BadExtra)?;
            extra = Some(B64.decode(b64).map_err(|_| TlogProofError::BadExtra)?);
            line = next_line(&mut rest, "no index line")?;
        }
        let text = line
            .strip_prefix("index ")
            .ok_or(TlogProofError::MissingIndex)?;
        let index = parse_decimal(text).map_err(|reason| TlogProofError::BadIndex {
            text: text.to_string(),
            reason,
        })?;
        let mut proof = Vec::new();
        loop {
            let line = next_line(&mut rest, "no empty line before the checkpoint")?;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_HASHES {
                return Err(TlogProofError::TooManyHashes);
            }
            let h = Hash::from_base64(line).ok_or(TlogProofError::BadHash {
                line: proof.len() + 1,
            })?;
            proof.push(h);
        }
        if rest.is_empty() {
            return Err(TlogProofError::MissingCheckpoint);
        }
        let note = Note::parse(rest).map_err(CheckpointError::from)?;
        Checkpoint::parse(&note.text)?;
        Ok(TlogProof {
            extra,
            index,
            proof,
            checkpoint: rest.to_vec(),
        })
    }

    /// Encodes the proof.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = format!("{HEADER}\n");
        if let Some(extra) = &self.extra {
            s.push_str(&format!("extra {}\n", B64.encode(extra)));
        }
        s.push_str(&format!("index {}\n", self.index));
        for h in &self.proof {
            s.push_str(&h.to_base64());
            s.push('\n');
        }
        s.push('\n');
        let mut out = s.into_bytes();
        out.extend_from_slice(&self.checkpoint);
        out
    }

    /// Opens the checkpoint with the log key (see
    /// [`crate::checkpoint::open_checkpoint`]) and verifies that `leaf_hash`
    /// is at `index` in that tree (RFC 9162 §2.1.3.2). Returns the checkpoint
    /// and its note, whose other signature lines (cosignatures) the caller may
    /// check against its witness policy.
    pub fn open(
        &self,
        leaf_hash: &Hash,
        log_key: &VerifierKey,
    ) -> Result<(Checkpoint, Note), TlogProofError> {
        let (cp, note) = open_checkpoint(&self.checkpoint, log_key)?;
        verify_inclusion(self.index, cp.size, leaf_hash, &self.proof, &cp.root)?;
        Ok((cp, note))
    }

    /// Like [`TlogProof::open`], returning only the checkpoint.
    pub fn verify(
        &self,
        leaf_hash: &Hash,
        log_key: &VerifierKey,
    ) -> Result<Checkpoint, TlogProofError> {
        self.open(leaf_hash, log_key).map(|(cp, _)| cp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::sign_checkpoint;
    use crate::hash::{empty_root, leaf_hash, node_hash};
    use crate::note::SignerKey;

    // RFC 6962 §2.1 MTH and PATH, recursively, as an independent oracle.
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

    fn split(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    fn path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
        if leaves.len() <= 1 {
            return vec![];
        }
        let k = split(leaves.len());
        if m < k {
            let mut p = path(m, &leaves[..k]);
            p.push(mth(&leaves[k..]));
            p
        } else {
            let mut p = path(m - k, &leaves[k..]);
            p.push(mth(&leaves[..k]));
            p
        }
    }

    fn key() -> SignerKey {
        SignerKey::from_seed("example.com/log", [5; 32]).unwrap()
    }

    fn proof_for(n: usize, m: usize, extra: Option<Vec<u8>>) -> (TlogProof, Hash) {
        let leaves: Vec<Hash> = (0..n)
            .map(|i| leaf_hash(format!("e{i}").as_bytes()))
            .collect();
        let cp = Checkpoint {
            origin: "example.com/log".into(),
            size: n as u64,
            root: mth(&leaves),
            extensions: vec![],
        };
        let proof = TlogProof {
            extra,
            index: m as u64,
            proof: path(m, &leaves),
            checkpoint: sign_checkpoint(&cp, &key()).unwrap(),
        };
        (proof, leaves[m])
    }

    #[test]
    fn round_trip_and_verify() {
        let vk = key().verifier();
        for n in 1..=9 {
            for m in 0..n {
                let extra = (m % 2 == 0).then(|| vec![m as u8; m]);
                let (p, leaf) = proof_for(n, m, extra);
                let bytes = p.to_bytes();
                assert_eq!(TlogProof::parse(&bytes).unwrap(), p);
                let cp = p.verify(&leaf, &vk).unwrap();
                assert_eq!(cp.size, n as u64);
                // Wrong leaf, wrong index, tampered hash.
                assert!(matches!(
                    p.verify(&leaf_hash(b"other"), &vk),
                    Err(TlogProofError::Inclusion(_))
                ));
                let wrong_index = TlogProof {
                    index: (m as u64 + 1) % n as u64,
                    ..p.clone()
                };
                if n > 1 {
                    assert!(wrong_index.verify(&leaf, &vk).is_err());
                }
                if let Some(h) = p.proof.first() {
                    let mut t = p.clone();
                    t.proof[0] = node_hash(h, h);
                    assert!(t.verify(&leaf, &vk).is_err());
                }
            }
        }
    }

    #[test]
    fn exact_encoding() {
        let (p, _) = proof_for(2, 1, Some(b"hi".to_vec()));
        let text = String::from_utf8(p.to_bytes()).unwrap();
        let expected_head = format!(
            "c2sp.org/tlog-proof@v1\nextra aGk=\nindex 1\n{}\n\nexample.com/log\n2\n",
            p.proof[0].to_base64()
        );
        assert!(text.starts_with(&expected_head), "{text}");
    }

    #[test]
    fn wrong_log_key_rejected() {
        let (p, leaf) = proof_for(3, 2, None);
        let other = SignerKey::from_seed("example.com/log", [6; 32]).unwrap();
        assert!(matches!(
            p.verify(&leaf, &other.verifier()),
            Err(TlogProofError::Checkpoint(_))
        ));
    }

    #[test]
    fn parse_rejects() {
        let (p, _) = proof_for(4, 1, None);
        let good = String::from_utf8(p.to_bytes()).unwrap();
        let h = p.proof[0].to_base64();
        let cp = String::from_utf8(p.checkpoint.clone()).unwrap();
        let bad = vec![
            String::new(),
            good.replacen("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2", 1),
            good.replacen("index 1", "index 01", 1),
            good.replacen("index 1", "index -1", 1),
            good.replacen("index 1", "index", 1),
            good.replacen("index 1", "Index 1", 1),
            good.replacen("index 1\n", "extra !!\nindex 1\n", 1),
            good.replacen("index 1\n", "extra\nindex 1\n", 1),
            good.replacen("index 1\n", "index 1\nextra AA==\n", 1),
            good.replacen(&h, &h[..40], 1),
            good.replacen(&h, &format!("{h} "), 1),
            format!("c2sp.org/tlog-proof@v1\nindex 1\n{h}\n"),
            format!("c2sp.org/tlog-proof@v1\nindex 1\n{h}\n\n"),
            format!("c2sp.org/tlog-proof@v1\nindex 1\n\nnot a note\n"),
            format!(
                "c2sp.org/tlog-proof@v1\nindex 1\n\n{}",
                cp.replacen("\n4\n", "\n04\n", 1)
            ),
            format!(
                "c2sp.org/tlog-proof@v1\nindex 1\n{}\n{cp}",
                vec![h.as_str(); 64].join("\n")
            ),
        ];
        for b in bad {
            assert!(TlogProof::parse(b.as_bytes()).is_err(), "{b:?}");
        }
        // 63 hashes is the maximum and still parses.
        let ok = format!(
            "c2sp.org/tlog-proof@v1\nindex 1\n{}\n\n{cp}",
            vec![h.as_str(); 63].join("\n")
        );
        assert_eq!(TlogProof::parse(ok.as_bytes()).unwrap().proof.len(), 63);
    }
}
