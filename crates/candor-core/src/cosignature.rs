//! C2SP tlog-cosignature v1, Ed25519 flavour (c2sp.org/tlog-cosignature).
//!
//! A cosignature is a note signature line on a checkpoint whose key ID uses
//! type byte `0x04` and whose signature bytes are a `timestamped_signature`:
//! `u64 BE timestamp || Ed25519(msg)[64]`, where
//! `msg = "cosignature/v1\ntime <timestamp>\n" || checkpoint note text`.
//!
//! A witness has one Ed25519 key. Its private key is written as an ordinary
//! signed-note skey (type 0x01 key ID); its public key is published as a vkey
//! with type 0x04 ([`witness_verifier_key`]).

use ed25519_dalek::{Signature, Signer, VerifyingKey};

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::note::{
    KeyType, Note, NoteError, NoteSignature, NoteVerifier, SignerKey, VerifierKey, key_id,
};

/// The header line giving domain separation ("Ed25519 signed message").
pub const HEADER: &str = "cosignature/v1\n";

/// Timestamps must not exceed 2^63 - 1 ("Format").
pub const MAX_TIMESTAMP: u64 = i64::MAX as u64;

/// Length of a `timestamped_signature` for Ed25519: 8 + 64 bytes.
pub const SIGNATURE_LEN: usize = 72;

/// Errors from making or checking cosignatures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CosignatureError {
    #[error("refusing to cosign: {0}")]
    NotCheckpoint(#[from] CheckpointError),
    #[error("cosignature timestamp {0} exceeds 2^63-1")]
    TimestampOutOfRange(u64),
    #[error("key {key} is not a cosignature (type 0x04) key")]
    NotCosignatureKey { key: String },
    #[error("signature line is by {got}, not by witness {want}")]
    WrongSigner { got: String, want: String },
    #[error(
        "cosignature is {len} bytes, expected 72 (8-byte timestamp and 64-byte Ed25519 signature)"
    )]
    BadLength { len: usize },
    #[error("invalid cosignature: the Ed25519 signature does not verify")]
    InvalidSignature,
    #[error(transparent)]
    Note(#[from] NoteError),
}

/// The signed message: `cosignature/v1\ntime <ts>\n` followed by the whole
/// checkpoint note text (with its final newline, without signatures).
pub fn signed_message(checkpoint_text: &[u8], timestamp: u64) -> Vec<u8> {
    let mut msg = format!("{HEADER}time {timestamp}\n").into_bytes();
    msg.extend_from_slice(checkpoint_text);
    msg
}

/// Checks a `timestamped_signature` over `text` with `key` and returns its
/// timestamp. Does not look at names or key IDs; [`crate::note::open`] uses it
/// for type-0x04 verifier keys (through [`NoteVerifier`]).
pub(crate) fn verify_timestamped(
    text: &[u8],
    sig: &[u8],
    key: &VerifyingKey,
) -> Result<u64, CosignatureError> {
    if sig.len() != SIGNATURE_LEN {
        return Err(CosignatureError::BadLength { len: sig.len() });
    }
    // Lengths below are exact: sig is 72 bytes.
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&sig[..8]);
    let ts = u64::from_be_bytes(ts);
    if ts > MAX_TIMESTAMP {
        return Err(CosignatureError::TimestampOutOfRange(ts));
    }
    let mut ed = [0u8; 64];
    ed.copy_from_slice(&sig[8..]);
    // Candor's one Ed25519 rule (spec/notes.md §4.3).
    crate::ed25519_strict::verify(key, &signed_message(text, ts), &Signature::from_bytes(&ed))
        .map_err(|_| CosignatureError::InvalidSignature)?;
    Ok(ts)
}

impl NoteVerifier for VerifierKey {
    fn verify(&self, text: &[u8], sig: &[u8]) -> bool {
        match self.key_type() {
            KeyType::Ed25519 => self.verify_ed25519(text, sig),
            KeyType::Cosignature => verify_timestamped(text, sig, self.verifying_key()).is_ok(),
        }
    }
}

/// The type-0x04 verifier key for a cosigner's Ed25519 public key.
pub fn cosigner_verifier_key(name: &str, key: &VerifyingKey) -> Result<VerifierKey, NoteError> {
    VerifierKey::new(name, KeyType::Cosignature, *key)
}

/// The type-0x04 verifier key of a witness's signer key.
pub fn witness_verifier_key(witness: &SignerKey) -> VerifierKey {
    witness.verifier_of_type(KeyType::Cosignature)
}

/// Generates a witness key pair: the private key (skey form) and its
/// type-0x04 verifier key.
pub fn generate_witness(name: &str) -> Result<(SignerKey, VerifierKey), NoteError> {
    let skey = SignerKey::generate(name)?;
    let vkey = witness_verifier_key(&skey);
    Ok((skey, vkey))
}

/// Cosigns a checkpoint text at `timestamp` (POSIX seconds). The text must
/// parse as a checkpoint.
pub fn cosign(
    checkpoint_text: &str,
    timestamp: u64,
    witness: &SignerKey,
) -> Result<NoteSignature, CosignatureError> {
    Checkpoint::parse(checkpoint_text)?;
    if timestamp > MAX_TIMESTAMP {
        return Err(CosignatureError::TimestampOutOfRange(timestamp));
    }
    let msg = signed_message(checkpoint_text.as_bytes(), timestamp);
    let ed = witness.signing_key().sign(&msg).to_bytes();
    let mut signature = Vec::with_capacity(SIGNATURE_LEN);
    signature.extend_from_slice(&timestamp.to_be_bytes());
    signature.extend_from_slice(&ed);
    let vk = witness.signing_key().verifying_key();
    Ok(NoteSignature {
        name: witness.name().to_string(),
        key_id: key_id(witness.name(), KeyType::Cosignature.byte(), vk.as_bytes()),
        signature,
    })
}

/// Verifies a cosignature line on a checkpoint text and returns its
/// timestamp. The line's name and key ID must be the witness key's.
pub fn verify_cosignature(
    checkpoint_text: &str,
    sig: &NoteSignature,
    witness: &VerifierKey,
) -> Result<u64, CosignatureError> {
    if witness.key_type() != KeyType::Cosignature {
        return Err(CosignatureError::NotCosignatureKey {
            key: witness.signer_id(),
        });
    }
    if !witness.matches(sig) {
        return Err(CosignatureError::WrongSigner {
            got: sig.signer_id(),
            want: witness.signer_id(),
        });
    }
    verify_timestamped(
        checkpoint_text.as_bytes(),
        &sig.signature,
        witness.verifying_key(),
    )
}

/// Adds a cosignature to a signed checkpoint note, replacing an earlier line
/// by the same witness key. Does not check the existing signatures: a witness
/// must verify the log's signature (and consistency) before calling this.
pub fn add_cosignature(
    note: &[u8],
    timestamp: u64,
    witness: &SignerKey,
) -> Result<Vec<u8>, CosignatureError> {
    let mut parsed = Note::parse(note)?;
    let sig = cosign(&parsed.text, timestamp, witness)?;
    parsed
        .signatures
        .retain(|s| !(s.name == sig.name && s.key_id == sig.key_id));
    parsed.signatures.push(sig);
    Ok(parsed.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{open_checkpoint, sign_checkpoint};
    use crate::hash::leaf_hash;
    use crate::note::open;

    fn checkpoint_text() -> String {
        Checkpoint {
            origin: "example.com/log".into(),
            size: 7,
            root: leaf_hash(b"r"),
            extensions: vec![],
        }
        .to_text()
    }

    fn witness() -> SignerKey {
        SignerKey::from_seed("witness.example/w1", [9; 32]).unwrap()
    }

    #[test]
    fn message_format() {
        assert_eq!(
            signed_message(b"o\n1\nAAAA\n", 1679315147),
            b"cosignature/v1\ntime 1679315147\no\n1\nAAAA\n".to_vec()
        );
        assert_eq!(
            signed_message(b"x\n", 0),
            b"cosignature/v1\ntime 0\nx\n".to_vec()
        );
    }

    #[test]
    fn sign_verify_round_trip() {
        let text = checkpoint_text();
        let w = witness();
        let wv = witness_verifier_key(&w);
        assert_eq!(wv.key_type(), KeyType::Cosignature);
        assert_ne!(wv.key_id(), w.key_id(), "0x04 ID differs from 0x01 ID");
        let parsed: VerifierKey = wv.to_string().parse().unwrap();
        assert_eq!(parsed, wv);
        for ts in [0, 1_700_000_000, MAX_TIMESTAMP] {
            let sig = cosign(&text, ts, &w).unwrap();
            assert_eq!(sig.signature.len(), SIGNATURE_LEN);
            assert_eq!(&sig.signature[..8], &ts.to_be_bytes());
            assert_eq!(verify_cosignature(&text, &sig, &wv), Ok(ts));
            // The line survives a trip through note text.
            let line = sig.to_line();
            let note = Note::parse(format!("{text}\n{line}").as_bytes()).unwrap();
            assert_eq!(note.signatures[0], sig);
        }
        let (s, v) = generate_witness("w2.example").unwrap();
        let sig = cosign(&text, 5, &s).unwrap();
        assert_eq!(verify_cosignature(&text, &sig, &v), Ok(5));
    }

    #[test]
    fn tamper_rejected() {
        let text = checkpoint_text();
        let w = witness();
        let wv = witness_verifier_key(&w);
        let sig = cosign(&text, 1000, &w).unwrap();
        // Changed timestamp.
        let mut t = sig.clone();
        t.signature[7] ^= 1;
        assert_eq!(
            verify_cosignature(&text, &t, &wv),
            Err(CosignatureError::InvalidSignature)
        );
        // Changed signature.
        let mut t = sig.clone();
        t.signature[40] ^= 1;
        assert!(verify_cosignature(&text, &t, &wv).is_err());
        // Changed checkpoint.
        let other = text.replace("\n7\n", "\n8\n");
        assert!(verify_cosignature(&other, &sig, &wv).is_err());
        // Truncated.
        let mut t = sig.clone();
        t.signature.pop();
        assert_eq!(
            verify_cosignature(&text, &t, &wv),
            Err(CosignatureError::BadLength { len: 71 })
        );
        // Timestamp with the top bit set.
        let mut t = sig.clone();
        t.signature[0] = 0x80;
        assert_eq!(
            verify_cosignature(&text, &t, &wv),
            Err(CosignatureError::TimestampOutOfRange(u64::from_be_bytes(
                t.signature[..8].try_into().unwrap()
            )))
        );
        // Wrong key type / wrong witness.
        assert!(matches!(
            verify_cosignature(&text, &sig, &w.verifier()),
            Err(CosignatureError::NotCosignatureKey { .. })
        ));
        let other =
            witness_verifier_key(&SignerKey::from_seed("witness.example/w1", [8; 32]).unwrap());
        assert!(matches!(
            verify_cosignature(&text, &sig, &other),
            Err(CosignatureError::WrongSigner { .. })
        ));
        // Refuse to cosign non-checkpoints or out-of-range timestamps.
        assert!(cosign("hello\n", 1, &w).is_err());
        assert!(cosign(&text, MAX_TIMESTAMP + 1, &w).is_err());
    }

    #[test]
    fn cosigned_checkpoint_opens_with_log_and_witness_keys() {
        let log = SignerKey::from_seed("example.com/log", [1; 32]).unwrap();
        let cp = Checkpoint::parse(&checkpoint_text()).unwrap();
        let signed = sign_checkpoint(&cp, &log).unwrap();
        let w = witness();
        let wv = witness_verifier_key(&w);
        let cosigned = add_cosignature(&signed, 42, &w).unwrap();
        // Re-cosigning replaces the old line.
        let cosigned = add_cosignature(&cosigned, 43, &w).unwrap();
        let (back, note) = open_checkpoint(&cosigned, &log.verifier()).unwrap();
        assert_eq!(back, cp);
        assert_eq!(note.signatures.len(), 2);
        assert_eq!(
            verify_cosignature(&note.text, &note.signatures[1], &wv),
            Ok(43)
        );
        let both = open(&cosigned, &[log.verifier(), wv.clone()]).unwrap();
        assert_eq!(both.verified.len(), 2);
        // The witness key alone also opens it (type 0x04 verification).
        assert_eq!(open(&cosigned, &[wv]).unwrap().verified.len(), 1);
        // A corrupted cosignature from a known witness rejects the note.
        let mut bad = Note::parse(&cosigned).unwrap();
        bad.signatures[1].signature[20] ^= 1;
        assert!(matches!(
            open(&bad.to_bytes(), &[log.verifier(), witness_verifier_key(&w)]),
            Err(NoteError::InvalidSignature { .. })
        ));
    }
}
