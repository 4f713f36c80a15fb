//! C2SP tlog-witness: the `add-checkpoint` request and response bodies, and the
//! witness's decision on a request. Pure: no I/O, no async.
//!
//! Follows c2sp.org/tlog-witness §"add-checkpoint" byte for byte. The HTTP
//! server (`server.rs`) and the log-side client (`client.rs`) both use this
//! module, so the two ends cannot drift apart.

use crate::checkpoint::Checkpoint;
use crate::hash::Hash;
use crate::merkle;
use crate::note::{self, Note, NoteError, NoteSignature, VerifierKey};

/// The path of the submission endpoint, relative to the submission prefix.
pub const ADD_CHECKPOINT_PATH: &str = "/add-checkpoint";

/// tlog-witness: "The client MUST NOT send more than 63 consistency proof lines."
pub const MAX_PROOF_LINES: usize = 63;

/// Content type of a 409 response body (the witness's latest size).
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// Upper bound on a request body: 63 proof lines of 45 bytes, the old-size
/// line and a checkpoint with generously many signatures. Larger bodies are
/// refused before parsing.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// A parsed `add-checkpoint` request body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddCheckpointRequest {
    /// The size of the previous checkpoint the client believes the witness holds.
    pub old_size: u64,
    /// RFC 6962 §2.1.2 consistency proof from `old_size` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The whole signed checkpoint note (text, blank line, signature lines).
    pub checkpoint: Vec<u8>,
}

/// Why a request body or response body could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("request body is larger than {MAX_REQUEST_BYTES} bytes")]
    TooLarge,
    #[error("the first line must be \"old <size>\" followed by a newline")]
    MissingOldLine,
    #[error("invalid old size {0:?}: must be a decimal number without leading zeros")]
    BadOldSize(String),
    #[error("consistency proof line {line} is not a base64-encoded 32-byte hash")]
    BadProofLine { line: usize },
    #[error("more than {MAX_PROOF_LINES} consistency proof lines")]
    TooManyProofLines,
    #[error("no empty line between the consistency proof and the checkpoint")]
    MissingBlankLine,
    #[error("the checkpoint after the empty line is missing")]
    MissingCheckpoint,
    #[error("invalid size body {0:?}: must be a decimal size followed by a newline")]
    BadSizeBody(String),
}

/// Parses a decimal tree size as the C2SP specs write it: ASCII digits, no sign,
/// no leading zeros (except `0` itself), fits in a u64.
pub fn parse_size(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if !canonical {
        return None;
    }
    s.parse().ok()
}

impl AddCheckpointRequest {
    /// Parses a request body (tlog-witness §"add-checkpoint"): `old <size>\n`, up
    /// to 63 base64 hash lines, `\n`, then the checkpoint note, kept verbatim.
    pub fn parse(body: &[u8]) -> Result<AddCheckpointRequest, ProtocolError> {
        if body.len() > MAX_REQUEST_BYTES {
            return Err(ProtocolError::TooLarge);
        }
        let (first, mut rest) = split_line(body).ok_or(ProtocolError::MissingOldLine)?;
        let first = std::str::from_utf8(first).map_err(|_| ProtocolError::MissingOldLine)?;
        let size = first
            .strip_prefix("old ")
            .ok_or(ProtocolError::MissingOldLine)?;
        let old_size = parse_size(size).ok_or_else(|| ProtocolError::BadOldSize(size.into()))?;

        let mut proof = Vec::new();
        loop {
            let (line, after) = split_line(rest).ok_or(ProtocolError::MissingBlankLine)?;
            rest = after;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LINES {
                return Err(ProtocolError::TooManyProofLines);
            }
            let hash = std::str::from_utf8(line)
                .ok()
                .and_then(Hash::from_base64)
                .ok_or(ProtocolError::BadProofLine {
                    line: proof.len() + 1,
                })?;
            proof.push(hash);
        }
        if rest.is_empty() {
            return Err(ProtocolError::MissingCheckpoint);
        }
        Ok(AddCheckpointRequest {
            old_size,
            proof,
            checkpoint: rest.to_vec(),
        })
    }

    /// Serializes the request body exactly as `parse` reads it.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("old {}\n", self.old_size).into_bytes();
        for h in &self.proof {
            out.extend_from_slice(h.to_base64().as_bytes());
            out.push(b'\n');
        }
        out.push(b'\n');
        out.extend_from_slice(&self.checkpoint);
        out
    }
}

/// Splits off one `\n`-terminated line (without the newline); `None` when no
/// newline is left, since every line of the request MUST end in one.
fn split_line(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = b.iter().position(|&c| c == b'\n')?;
    Some((&b[..i], &b[i + 1..]))
}

/// The body of a 409 response: the latest cosigned size in decimal and a newline.
pub fn format_size_body(size: u64) -> String {
    format!("{size}\n")
}

/// Parses the body of a 409 response (`text/x.tlog.size`).
pub fn parse_size_body(body: &[u8]) -> Result<u64, ProtocolError> {
    let bad = || ProtocolError::BadSizeBody(String::from_utf8_lossy(body).into_owned());
    let text = std::str::from_utf8(body).map_err(|_| bad())?;
    let digits = text.strip_suffix('\n').ok_or_else(bad)?;
    parse_size(digits).ok_or_else(bad)
}

/// The body of a 200 response: one note signature line per cosignature, each
/// starting with U+2014 and ending in a newline.
pub fn format_cosignatures(sigs: &[NoteSignature]) -> String {
    sigs.iter().map(NoteSignature::to_line).collect()
}

/// What the witness has recorded for one origin: the latest checkpoint it cosigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Latest {
    pub size: u64,
    pub root: Hash,
}

/// Why the witness refuses a request, each with the status tlog-witness assigns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// 400: the body or the checkpoint in it cannot be parsed.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// 404: no trusted log key has this origin.
    #[error("unknown log origin {0:?}")]
    UnknownOrigin(String),
    /// 403: no signature verifies against a trusted key for the origin.
    #[error("no trusted log signature on the checkpoint: {0}")]
    Untrusted(String),
    /// 400: the old size is larger than the checkpoint's size.
    #[error("old size {old} is larger than the checkpoint size {new}")]
    OldAfterNew { old: u64, new: u64 },
    /// 409: the old size is not the witness's latest size. The body carries `latest`.
    #[error("{reason} (latest cosigned size is {latest})")]
    Conflict { latest: u64, reason: String },
    /// 409: same size as the latest cosigned checkpoint but a different root:
    /// two validly signed, inconsistent checkpoints, i.e. evidence of a fork.
    #[error(
        "checkpoint root {got} differs from the cosigned root {cosigned} at the same size {size}"
    )]
    RootMismatch {
        size: u64,
        got: String,
        cosigned: String,
    },
    /// 422: the consistency proof does not verify (or is not empty when the old size is zero).
    #[error("consistency proof rejected: {0}")]
    BadProof(String),
}

impl Rejection {
    /// For a 409, the size to put in the `text/x.tlog.size` body.
    pub fn conflict_size(&self) -> Option<u64> {
        match self {
            Rejection::Conflict { latest, .. } => Some(*latest),
            Rejection::RootMismatch { size, .. } => Some(*size),
            _ => None,
        }
    }

    /// Whether the request, whose log signature verified, shows the log
    /// misbehaving (tlog-witness: the witness "MAY log the request even if the
    /// consistency proof doesn't verify ... as it might be proof of log
    /// misbehavior"): a failed proof or a different root at the same size.
    pub fn is_evidence(&self) -> bool {
        matches!(
            self,
            Rejection::BadProof(_) | Rejection::RootMismatch { .. }
        )
    }

    /// The HTTP status code tlog-witness prescribes for this rejection.
    pub fn status(&self) -> u16 {
        match self {
            Rejection::Malformed(_) | Rejection::OldAfterNew { .. } => 400,
            Rejection::Untrusted(_) => 403,
            Rejection::UnknownOrigin(_) => 404,
            Rejection::Conflict { .. } | Rejection::RootMismatch { .. } => 409,
            Rejection::BadProof(_) => 422,
        }
    }
}

/// The checks of tlog-witness §"add-checkpoint" that come after the log
/// signature was verified, in the spec's order: 400 if old > new; 409 if old is
/// not the latest cosigned size (zero when none); 422 if the proof is not empty
/// for old = 0 or does not verify (RFC 9162 §2.1.4.2); 409 if the sizes are
/// equal but the roots differ. `Ok` means the witness may cosign `cp`.
pub fn check_consistency(
    old_size: u64,
    proof: &[Hash],
    cp: &Checkpoint,
    latest: Option<Latest>,
) -> Result<(), Rejection> {
    if old_size > cp.size {
        return Err(Rejection::OldAfterNew {
            old: old_size,
            new: cp.size,
        });
    }
    let latest_size = latest.map_or(0, |l| l.size);
    if old_size != latest_size {
        return Err(Rejection::Conflict {
            latest: latest_size,
            reason: format!("old size {old_size} does not match the witness's latest size"),
        });
    }
    if old_size == 0 && !proof.is_empty() {
        return Err(Rejection::BadProof(format!(
            "the proof must be empty when the old size is zero, got {} lines",
            proof.len()
        )));
    }
    let Some(latest) = latest else {
        // Nothing recorded yet (old = 0, proof empty): any checkpoint is consistent.
        return Ok(());
    };
    if old_size == cp.size {
        // Equal sizes: a consistency proof between equal sizes is empty
        // (RFC 9162 §2.1.4.2), and the roots must be identical, else 409.
        if !proof.is_empty() {
            return Err(Rejection::BadProof(format!(
                "the proof must be empty when the old size equals the checkpoint size, got {} lines",
                proof.len()
            )));
        }
        if latest.root != cp.root {
            return Err(Rejection::RootMismatch {
                size: latest.size,
                got: cp.root.to_base64(),
                cosigned: latest.root.to_base64(),
            });
        }
        return Ok(());
    }
    if old_size == 0 {
        // Every tree is consistent with the empty tree.
        return Ok(());
    }
    merkle::verify_consistency(old_size, cp.size, &latest.root, &cp.root, proof)
        .map_err(|e| Rejection::BadProof(e.to_string()))
}

/// A checkpoint whose log signature verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    /// The parsed checkpoint.
    pub checkpoint: Checkpoint,
    /// The exact note text (what cosignatures sign).
    pub text: String,
    /// The signatures that verified against a trusted log key.
    pub log_signatures: Vec<NoteSignature>,
}

/// Verifies the log signature on a submitted checkpoint note, in the order
/// tlog-witness prescribes: the origin must belong to a trusted log key (404),
/// and at least one signature must verify against such a key (403); signatures
/// from unknown keys are ignored (C2SP signed-note §"Signatures").
pub fn verify_log_signature(
    note_bytes: &[u8],
    logs: &[VerifierKey],
) -> Result<VerifiedCheckpoint, Rejection> {
    let parsed = Note::parse(note_bytes).map_err(|e| Rejection::Malformed(e.to_string()))?;
    let checkpoint =
        Checkpoint::parse(&parsed.text).map_err(|e| Rejection::Malformed(e.to_string()))?;
    // tlog-checkpoint: the log's key name is its origin.
    let keys: Vec<VerifierKey> = logs
        .iter()
        .filter(|k| k.name() == checkpoint.origin)
        .cloned()
        .collect();
    if keys.is_empty() {
        return Err(Rejection::UnknownOrigin(checkpoint.origin));
    }
    match note::open(note_bytes, &keys) {
        Ok(v) => Ok(VerifiedCheckpoint {
            checkpoint,
            text: v.note.text,
            log_signatures: v.verified,
        }),
        Err(e @ (NoteError::InvalidSignature { .. } | NoteError::NoVerifiedSignature { .. })) => {
            Err(Rejection::Untrusted(e.to_string()))
        }
        Err(e) => Err(Rejection::Malformed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::sha256;

    /// The example request body of c2sp.org/tlog-witness §"add-checkpoint".
    const SPEC_EXAMPLE: &str = "old 20852014
PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=
jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=
5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=
/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=

example.com/behind-the-sofa
20852163
CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=

\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=
\u{2014} example.com/behind-the-sofa opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks+49/V6267UEjw6QUXTS5Rovnzv++qbSzm9Q=
";

    #[test]
    fn parses_and_reserializes_the_spec_example() {
        let req = AddCheckpointRequest::parse(SPEC_EXAMPLE.as_bytes()).expect("parses");
        assert_eq!(req.old_size, 20852014);
        assert_eq!(req.proof.len(), 4);
        assert_eq!(
            req.proof[0].to_base64(),
            "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw="
        );
        assert!(
            req.checkpoint
                .starts_with(b"example.com/behind-the-sofa\n20852163\n")
        );
        assert_eq!(req.to_bytes(), SPEC_EXAMPLE.as_bytes());
        let note = Note::parse(&req.checkpoint).expect("checkpoint note");
        assert_eq!(note.signatures.len(), 2);
    }

    #[test]
    fn empty_proof_round_trips() {
        let req = AddCheckpointRequest {
            old_size: 0,
            proof: vec![],
            checkpoint: b"o\n1\nx\n\n\xe2\x80\x94 o AAAA\n".to_vec(),
        };
        let bytes = req.to_bytes();
        assert!(bytes.starts_with(b"old 0\n\no\n"));
        assert_eq!(AddCheckpointRequest::parse(&bytes), Ok(req));
    }

    #[test]
    fn rejects_malformed_bodies() {
        let h = sha256(b"x").to_base64();
        let cases: Vec<(Vec<u8>, ProtocolError)> = vec![
            (b"".to_vec(), ProtocolError::MissingOldLine),
            (b"old 5".to_vec(), ProtocolError::MissingOldLine),
            (b"new 5\n\ncp\n".to_vec(), ProtocolError::MissingOldLine),
            (
                b"old  5\n\ncp\n".to_vec(),
                ProtocolError::BadOldSize(" 5".into()),
            ),
            (
                b"old 05\n\ncp\n".to_vec(),
                ProtocolError::BadOldSize("05".into()),
            ),
            (
                b"old +5\n\ncp\n".to_vec(),
                ProtocolError::BadOldSize("+5".into()),
            ),
            (
                b"old 5 \n\ncp\n".to_vec(),
                ProtocolError::BadOldSize("5 ".into()),
            ),
            (
                b"old 99999999999999999999\n\ncp\n".to_vec(),
                ProtocolError::BadOldSize("99999999999999999999".into()),
            ),
            (b"old 5\n".to_vec(), ProtocolError::MissingBlankLine),
            (
                format!("old 5\n{h}\n").into_bytes(),
                ProtocolError::MissingBlankLine,
            ),
            (b"old 5\n\n".to_vec(), ProtocolError::MissingCheckpoint),
            (
                b"old 5\nAAAA\n\ncp\n".to_vec(),
                ProtocolError::BadProofLine { line: 1 },
            ),
            (
                format!("old 5\n{h}\n{h} \n\ncp\n").into_bytes(),
                ProtocolError::BadProofLine { line: 2 },
            ),
            (
                format!("old 5\n{}\ncp\n", format!("{h}\n").repeat(64)).into_bytes(),
                ProtocolError::TooManyProofLines,
            ),
            (vec![b'a'; MAX_REQUEST_BYTES + 1], ProtocolError::TooLarge),
        ];
        for (body, want) in cases {
            assert_eq!(
                AddCheckpointRequest::parse(&body),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(&body)
            );
        }
        // Exactly 63 lines are allowed.
        let ok = format!("old 5\n{}\ncp\n", format!("{h}\n").repeat(63));
        assert_eq!(
            AddCheckpointRequest::parse(ok.as_bytes())
                .expect("63 lines")
                .proof
                .len(),
            63
        );
    }

    #[test]
    fn size_bodies() {
        assert_eq!(format_size_body(0), "0\n");
        assert_eq!(format_size_body(20852163), "20852163\n");
        assert_eq!(parse_size_body(b"20852163\n"), Ok(20852163));
        for bad in [&b"12"[..], b"012\n", b"\n", b"12\n\n", b"-1\n", b"1 2\n"] {
            assert!(parse_size_body(bad).is_err(), "{bad:?}");
        }
    }

    fn cp(size: u64, root: Hash) -> Checkpoint {
        Checkpoint {
            origin: "example.com/log".into(),
            size,
            root,
            extensions: vec![],
        }
    }

    #[test]
    fn consistency_checks_follow_the_spec_order() {
        let r5 = sha256(b"root 5");
        let r8 = sha256(b"root 8");
        let latest = Some(Latest { size: 5, root: r5 });
        let junk = vec![sha256(b"junk")];

        // 400 before anything else.
        assert_eq!(
            check_consistency(9, &[], &cp(8, r8), latest).map_err(|e| e.status()),
            Err(400)
        );
        // 409: old does not match the latest size, or there is no record and old > 0.
        let e = check_consistency(3, &junk, &cp(8, r8), latest).expect_err("409");
        assert_eq!(e.status(), 409);
        assert!(matches!(e, Rejection::Conflict { latest: 5, .. }));
        let e = check_consistency(5, &[], &cp(8, r8), None).expect_err("409");
        assert!(matches!(e, Rejection::Conflict { latest: 0, .. }));
        // 422: a non-empty proof with old = 0.
        assert_eq!(
            check_consistency(0, &junk, &cp(8, r8), None).map_err(|e| e.status()),
            Err(422)
        );
        // 200: nothing recorded, old 0, empty proof.
        assert_eq!(check_consistency(0, &[], &cp(8, r8), None), Ok(()));
        // Equal sizes: same root is fine, a different root is 409, a proof is 422.
        assert_eq!(check_consistency(5, &[], &cp(5, r5), latest), Ok(()));
        let e = check_consistency(5, &[], &cp(5, r8), latest).expect_err("409");
        assert_eq!(
            (e.status(), e.conflict_size(), e.is_evidence()),
            (409, Some(5), true)
        );
        assert_eq!(
            check_consistency(5, &junk, &cp(5, r5), latest).map_err(|e| e.status()),
            Err(422)
        );
        // A wrong proof between different sizes: 422.
        assert_eq!(
            check_consistency(5, &junk, &cp(8, r8), latest).map_err(|e| e.status()),
            Err(422)
        );
        // The empty tree recorded at size 0: anything is consistent with it.
        let empty = Some(Latest {
            size: 0,
            root: crate::hash::empty_root(),
        });
        assert_eq!(check_consistency(0, &[], &cp(8, r8), empty), Ok(()));
        assert_eq!(
            check_consistency(0, &[], &cp(0, r8), empty).map_err(|e| e.status()),
            Err(409)
        );
    }
}
