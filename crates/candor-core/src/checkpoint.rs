//! C2SP tlog-checkpoint (c2sp.org/tlog-checkpoint): the signed tree head.
//!
//! Note text: origin line, decimal tree size, base64 root hash, then optional
//! non-empty extension lines, each ending in `\n`. Candor requires the log's
//! key name to equal the origin (the spec's SHOULD, made a MUST here; see
//! spec/notes.md §3).

use crate::hash::Hash;
use crate::note::{self, KeyType, Note, NoteError, SignerKey, VerifierKey};

/// The largest tree size accepted, 2^63 - 1 (as Go's `tlog.ParseTree`, which
/// reads the size as a signed 64-bit integer).
pub const MAX_TREE_SIZE: u64 = i64::MAX as u64;

/// Errors from parsing, opening or signing checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint text does not end in a newline")]
    MissingFinalNewline,
    #[error("checkpoint text contains a control character other than newline")]
    ControlCharacter,
    #[error("checkpoint has {count} lines, needs at least 3 (origin, size, root hash)")]
    TooFewLines { count: usize },
    #[error("checkpoint line {line} is empty")]
    EmptyLine { line: usize },
    #[error("checkpoint tree size {text:?} is invalid: {reason}")]
    BadSize { text: String, reason: &'static str },
    #[error("checkpoint root hash {text:?} is not the canonical base64 of 32 bytes")]
    BadRoot { text: String },
    #[error("checkpoint field contains a newline: {field}")]
    NewlineInField { field: &'static str },
    #[error("checkpoint origin {origin:?} does not equal the log key name {key_name:?}")]
    OriginMismatch { origin: String, key_name: String },
    #[error("log key {key} is not an Ed25519 (type 0x01) key")]
    NotLogKey { key: String },
    #[error(transparent)]
    Note(#[from] NoteError),
}

/// A checkpoint body (the note text of a signed checkpoint).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log identity (first line).
    pub origin: String,
    /// The number of leaves.
    pub size: u64,
    /// The RFC 6962 root hash at `size`.
    pub root: Hash,
    /// Opaque extension lines, without their newlines; each non-empty.
    pub extensions: Vec<String>,
}

/// Parses a tree size: ASCII decimal, no sign, no leading zeros unless the
/// size is `0` (c2sp.org/tlog-checkpoint "Note text", item 2).
pub(crate) fn parse_decimal(text: &str) -> Result<u64, &'static str> {
    if text.is_empty() {
        return Err("empty");
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not an ASCII decimal number");
    }
    if text.len() > 1 && text.starts_with('0') {
        return Err("leading zero");
    }
    match text.parse::<u64>() {
        Ok(n) if n <= MAX_TREE_SIZE => Ok(n),
        _ => Err("larger than 2^63-1"),
    }
}

impl Checkpoint {
    /// Parses a checkpoint note text strictly (c2sp.org/tlog-checkpoint
    /// "Note text"): at least three lines, all non-empty, each ending in `\n`.
    ///
    /// The origin may be any non-empty line (the spec forbids clients to
    /// assume more). The root must be canonical base64 so that equal tree
    /// heads have equal texts.
    pub fn parse(text: &str) -> Result<Checkpoint, CheckpointError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::MissingFinalNewline)?;
        if body.bytes().any(|b| b < 0x20 && b != b'\n') {
            return Err(CheckpointError::ControlCharacter);
        }
        let lines: Vec<&str> = body.split('\n').collect();
        if lines.len() < 3 {
            return Err(CheckpointError::TooFewLines { count: lines.len() });
        }
        if let Some(i) = lines.iter().position(|l| l.is_empty()) {
            return Err(CheckpointError::EmptyLine { line: i + 1 });
        }
        let size = parse_decimal(lines[1]).map_err(|reason| CheckpointError::BadSize {
            text: lines[1].to_string(),
            reason,
        })?;
        let root = Hash::from_base64(lines[2]).ok_or_else(|| CheckpointError::BadRoot {
            text: lines[2].to_string(),
        })?;
        Ok(Checkpoint {
            origin: lines[0].to_string(),
            size,
            root,
            extensions: lines[3..].iter().map(|l| l.to_string()).collect(),
        })
    }

    /// The note text: `origin\nsize\nroot\n` then `ext\n` per extension.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            self.root.to_base64()
        );
        for ext in &self.extensions {
            s.push_str(ext);
            s.push('\n');
        }
        s
    }

    /// Checks that [`Checkpoint::to_text`] yields a text that parses back to
    /// this checkpoint (no newlines inside fields, no empty lines, size in range).
    pub fn validate(&self) -> Result<(), CheckpointError> {
        if self.origin.contains('\n') {
            return Err(CheckpointError::NewlineInField { field: "origin" });
        }
        if self.extensions.iter().any(|e| e.contains('\n')) {
            return Err(CheckpointError::NewlineInField { field: "extension" });
        }
        let back = Checkpoint::parse(&self.to_text())?;
        debug_assert_eq!(&back, self);
        Ok(())
    }
}

fn require_log_key(key: &VerifierKey) -> Result<(), CheckpointError> {
    if key.key_type() != KeyType::Ed25519 {
        return Err(CheckpointError::NotLogKey {
            key: key.signer_id(),
        });
    }
    Ok(())
}

/// Opens a signed checkpoint: the note must carry a valid signature by
/// `log_key` (other signature lines, e.g. cosignatures, are kept unchecked),
/// its text must be a checkpoint, and its origin must equal the key name.
///
/// Returns the checkpoint and the note (repeated lines removed, see
/// [`note::open`]) so that callers can go on to check cosignatures.
pub fn open_checkpoint(
    note: &[u8],
    log_key: &VerifierKey,
) -> Result<(Checkpoint, Note), CheckpointError> {
    require_log_key(log_key)?;
    let verified = note::open(note, std::slice::from_ref(log_key))?;
    let cp = Checkpoint::parse(&verified.note.text)?;
    if cp.origin != log_key.name() {
        return Err(CheckpointError::OriginMismatch {
            origin: cp.origin,
            key_name: log_key.name().to_string(),
        });
    }
    Ok((cp, verified.note))
}

/// Signs a checkpoint with the log key, whose name must equal the origin.
pub fn sign_checkpoint(cp: &Checkpoint, key: &SignerKey) -> Result<Vec<u8>, CheckpointError> {
    cp.validate()?;
    if cp.origin != key.name() {
        return Err(CheckpointError::OriginMismatch {
            origin: cp.origin.clone(),
            key_name: key.name().to_string(),
        });
    }
    Ok(note::sign(&cp.to_text(), &[key])?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;

    fn key() -> SignerKey {
        SignerKey::from_seed("example.com/log", [3; 32]).unwrap()
    }

    fn cp(size: u64) -> Checkpoint {
        Checkpoint {
            origin: "example.com/log".into(),
            size,
            root: leaf_hash(b"x"),
            extensions: vec![],
        }
    }

    #[test]
    fn round_trip() {
        for c in [
            cp(0),
            cp(1),
            cp(MAX_TREE_SIZE),
            Checkpoint {
                extensions: vec!["ext one".into(), "— two".into()],
                ..cp(12)
            },
        ] {
            let text = c.to_text();
            assert_eq!(Checkpoint::parse(&text).unwrap(), c);
            let signed = sign_checkpoint(&c, &key()).unwrap();
            let (back, note) = open_checkpoint(&signed, &key().verifier()).unwrap();
            assert_eq!(back, c);
            assert_eq!(note.text, text);
        }
        assert_eq!(
            cp(0).to_text(),
            format!("example.com/log\n0\n{}\n", leaf_hash(b"x").to_base64())
        );
    }

    #[test]
    fn parse_rejects() {
        let root = leaf_hash(b"x").to_base64();
        let cases = [
            format!("o\n1\n{root}"),
            "o\n1\n".to_string(),
            format!("\n1\n{root}\n"),
            format!("o\n\n{root}\n"),
            format!("o\n01\n{root}\n"),
            format!("o\n+1\n{root}\n"),
            format!("o\n-1\n{root}\n"),
            format!("o\n 1\n{root}\n"),
            format!("o\n1a\n{root}\n"),
            format!("o\n9223372036854775808\n{root}\n"),
            format!("o\n18446744073709551616\n{root}\n"),
            "o\n1\nAAAA\n".to_string(),
            format!("o\n1\n{}\n", &root[..43]),
            format!("o\n1\n{}\n", root.replace('=', "")),
            format!("o\n1\n{root}\n\n"),
            format!("o\n1\n{root}\next\n\n"),
            format!("o\n1\n{root}\n\next\n"),
            format!("o\t\n1\n{root}\n"),
            format!("o\r\n1\n{root}\n"),
        ];
        for c in cases {
            assert!(Checkpoint::parse(&c).is_err(), "{c:?}");
        }
        // Non-canonical base64 (a trailing bit set) is rejected: the last
        // character before '=' carries 4 data bits and 2 zero bits.
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut noncanon = root.clone().into_bytes();
        let i = noncanon.len() - 2;
        let v = ALPHABET.iter().position(|&c| c == noncanon[i]).unwrap();
        noncanon[i] = ALPHABET[v ^ 1];
        let noncanon = String::from_utf8(noncanon).unwrap();
        assert!(matches!(
            Checkpoint::parse(&format!("o\n1\n{noncanon}\n")),
            Err(CheckpointError::BadRoot { .. })
        ));
    }

    #[test]
    fn open_and_sign_reject() {
        let k = key();
        // Origin differs from key name.
        let other = Checkpoint {
            origin: "example.com/other".into(),
            ..cp(1)
        };
        assert!(matches!(
            sign_checkpoint(&other, &k),
            Err(CheckpointError::OriginMismatch { .. })
        ));
        let signed = note::sign(&other.to_text(), &[&k]).unwrap();
        assert!(matches!(
            open_checkpoint(&signed, &k.verifier()),
            Err(CheckpointError::OriginMismatch { .. })
        ));
        // Invalid fields.
        let bad = Checkpoint {
            extensions: vec![String::new()],
            ..cp(1)
        };
        assert!(sign_checkpoint(&bad, &k).is_err());
        let bad = Checkpoint {
            origin: "example.com/log\n5".into(),
            ..cp(1)
        };
        assert!(sign_checkpoint(&bad, &k).is_err());
        // Signed non-checkpoint text.
        let signed = note::sign("example.com/log\nhello\n", &[&k]).unwrap();
        assert!(matches!(
            open_checkpoint(&signed, &k.verifier()),
            Err(CheckpointError::TooFewLines { .. })
        ));
        // Wrong key.
        let signed = sign_checkpoint(&cp(5), &k).unwrap();
        let wrong = SignerKey::from_seed("example.com/log", [4; 32]).unwrap();
        assert!(matches!(
            open_checkpoint(&signed, &wrong.verifier()),
            Err(CheckpointError::Note(NoteError::NoVerifiedSignature { .. }))
        ));
        // Tampered size.
        let tampered = String::from_utf8(signed)
            .unwrap()
            .replacen("\n5\n", "\n6\n", 1);
        assert!(matches!(
            open_checkpoint(tampered.as_bytes(), &k.verifier()),
            Err(CheckpointError::Note(NoteError::InvalidSignature { .. }))
        ));
        // A cosignature key is not a log key.
        let wk = crate::cosignature::witness_verifier_key(&k);
        assert!(matches!(
            open_checkpoint(tampered.as_bytes(), &wk),
            Err(CheckpointError::NotLogKey { .. })
        ));
    }
}
