//! C2SP signed-note (c2sp.org/signed-note): notes, verifier keys, signer keys.
//!
//! A note is a UTF-8 text ending in `\n`, a blank line, and one or more
//! signature lines `— <name> base64(keyID[4] || sig)\n`. Parsing and opening
//! follow the C2SP text and match Go's `golang.org/x/mod/sumdb/note` where the
//! spec leaves room (signature limit, de-duplication, base64 leniency); see
//! spec/notes.md §2 for every rule and the few deliberate differences.
//!
//! Two key types are supported: Ed25519 (type `0x01`, signatures over the note
//! text) and timestamped Ed25519 witness cosignatures (type `0x04`,
//! c2sp.org/tlog-cosignature, see [`crate::cosignature`]).

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::hash::sha256;

/// Go's limit on signature lines, counted before de-duplication. The spec
/// requires accepting at least 16.
pub const MAX_SIGNATURES: usize = 100;

/// The signature-line prefix: EM DASH (U+2014) and a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// Length of an Ed25519 signature.
const ED25519_SIG_LEN: usize = 64;

/// Standard base64 with required padding that, like Go's
/// `base64.StdEncoding`, tolerates non-zero trailing bits. Used for signature
/// lines and keys so that any line Go accepts is accepted here too.
const B64_GO: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// Canonical standard base64, used for everything Candor writes.
const B64: GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Errors from parsing, opening or signing notes and from parsing keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("malformed note: not valid UTF-8 (at byte {offset})")]
    NotUtf8 { offset: usize },
    #[error(
        "malformed note: control character 0x{byte:02x} at byte {offset} (only newline is allowed)"
    )]
    ControlCharacter { offset: usize, byte: u8 },
    #[error("malformed note: no blank line separating the text from the signatures")]
    MissingSignatureBlock,
    #[error("malformed note: the signature block after the blank line is empty")]
    EmptySignatureBlock,
    #[error("malformed note: the last signature line does not end in a newline")]
    MissingFinalNewline,
    #[error("malformed note: signature line {line}: {reason}")]
    BadSignatureLine { line: usize, reason: &'static str },
    #[error("malformed note: more than {MAX_SIGNATURES} signature lines ({count})")]
    TooManySignatures { count: usize },
    #[error("invalid signature from known key {signer}")]
    InvalidSignature { signer: String },
    #[error("note has no signature from a known key (signed by: {signers})")]
    NoVerifiedSignature { signers: String },
    #[error("verifier key {signer} is listed more than once")]
    DuplicateVerifier { signer: String },
    #[error(
        "invalid key name {name:?}: names must be non-empty and contain no spaces, '+' or control characters"
    )]
    InvalidName { name: String },
    #[error("invalid note text: {reason}")]
    InvalidText { reason: &'static str },
    #[error("invalid verifier key: {reason}")]
    InvalidVerifierKey { reason: String },
    #[error("invalid signer key: {reason}")]
    InvalidSignerKey { reason: String },
    #[error("cannot generate a key: the system random source failed: {0}")]
    Random(String),
}

/// A signature type byte from c2sp.org/signed-note "Signature types".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// `0x01`: Ed25519 over the note text.
    Ed25519,
    /// `0x04`: timestamped Ed25519 witness cosignature (c2sp.org/tlog-cosignature).
    Cosignature,
}

impl KeyType {
    /// The type identifier byte.
    pub fn byte(self) -> u8 {
        match self {
            KeyType::Ed25519 => 0x01,
            KeyType::Cosignature => 0x04,
        }
    }

    /// The key type for an identifier byte, if supported.
    pub fn from_byte(b: u8) -> Option<KeyType> {
        match b {
            0x01 => Some(KeyType::Ed25519),
            0x04 => Some(KeyType::Cosignature),
            _ => None,
        }
    }
}

/// Key ID = SHA-256(name || 0x0A || type || pubkey)[:4] (c2sp.org/signed-note
/// "Signatures"; c2sp.org/tlog-cosignature "Format" for type 0x04).
pub fn key_id(name: &str, key_type: u8, pubkey: &[u8; 32]) -> [u8; 4] {
    let mut buf = Vec::with_capacity(name.len() + 2 + pubkey.len());
    buf.extend_from_slice(name.as_bytes());
    buf.push(b'\n');
    buf.push(key_type);
    buf.extend_from_slice(pubkey);
    let h = sha256(&buf);
    [h.0[0], h.0[1], h.0[2], h.0[3]]
}

/// Whether `name` is a valid key name: non-empty, no Unicode white space, no
/// `+` (c2sp.org/signed-note "Format"), and, Candor's addition, no control
/// characters (Unicode Cc) so that names stay printable.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(NoteError::InvalidName {
            name: name.to_string(),
        })
    }
}

/// Parses the `name+hexid+base64` tail shared by vkeys and skeys.
fn split_key(s: &str) -> Result<(&str, [u8; 4], Vec<u8>), String> {
    let mut parts = s.splitn(3, '+');
    let name = parts.next().unwrap_or_default();
    let (Some(hex_id), Some(b64)) = (parts.next(), parts.next()) else {
        return Err("expected name+hexid+base64".into());
    };
    if !is_valid_name(name) {
        return Err(format!("invalid key name {name:?}"));
    }
    if hex_id.len() != 8 {
        return Err(format!("key ID {hex_id:?} is not 8 hex digits"));
    }
    let id = hex::decode(hex_id).map_err(|_| format!("key ID {hex_id:?} is not hex"))?;
    let id: [u8; 4] = id
        .try_into()
        .map_err(|_| format!("key ID {hex_id:?} is not 4 bytes"))?;
    let key = B64_GO
        .decode(b64)
        .map_err(|e| format!("key data is not base64: {e}"))?;
    if key.is_empty() {
        return Err("key data is empty".into());
    }
    Ok((name, id, key))
}

/// Checks a signature line's bytes over a note's text by the algorithm its key type
/// names (c2sp.org/signed-note, "Signatures"). [`VerifierKey`] implements it in the
/// `cosignature` module, beside the timestamped format of type 0x04, so that this
/// module depends on no signature format but plain Ed25519.
pub trait NoteVerifier {
    /// Whether `sig` (the bytes after the key ID) is a valid signature over `text`.
    fn verify(&self, text: &[u8], sig: &[u8]) -> bool;
}

/// A verifier key (vkey): `name+hexid+base64(type || pubkey)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    key_id: [u8; 4],
    key_type: KeyType,
    key: VerifyingKey,
}

impl VerifierKey {
    /// Builds a verifier key that Candor admits (a log's, a witness's, or a company
    /// key to register), computing its key ID. Rejects invalid names and keys that
    /// are not canonical, of small order, or not torsion-free
    /// ([`crate::ed25519_strict::check_admissible_key`]).
    pub fn new(name: &str, key_type: KeyType, key: VerifyingKey) -> Result<Self, NoteError> {
        check_name(name)?;
        crate::ed25519_strict::check_admissible_key(&key).map_err(|e| {
            NoteError::InvalidVerifierKey {
                reason: e.to_string(),
            }
        })?;
        Ok(Self::unchecked(name, key_type, key))
    }

    fn unchecked(name: &str, key_type: KeyType, key: VerifyingKey) -> VerifierKey {
        VerifierKey {
            name: name.to_string(),
            key_id: key_id(name, key_type.byte(), key.as_bytes()),
            key_type,
            key,
        }
    }

    /// Parses a company key the log has already recorded (a `company_key` entry) by
    /// the rules keys were parsed by before admission (spec/entries.md §7.2): the key
    /// decodes and is not of small order. A recorded key that is not canonical or not
    /// torsion-free so still parses, and its signatures get the rule's verdict (a
    /// non-canonical key's are all invalid) instead of a parse error.
    pub fn parse_recorded(s: &str) -> Result<Self, NoteError> {
        let (name, key_type, vk) = parse_vkey_parts(s)?;
        check_name(name)?;
        if vk.is_weak() {
            return Err(NoteError::InvalidVerifierKey {
                reason: crate::ed25519_strict::KeyError::SmallOrder.to_string(),
            });
        }
        Ok(Self::unchecked(name, key_type, vk))
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key ID.
    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// The signature type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The Ed25519 public key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// `name+hexid`, the identifier used in messages and in the CLI output.
    pub fn signer_id(&self) -> String {
        format!("{}+{}", self.name, hex::encode(self.key_id))
    }

    /// Whether this key is the one named by a signature line (name and ID).
    pub fn matches(&self, sig: &NoteSignature) -> bool {
        self.name == sig.name && self.key_id == sig.key_id
    }

    /// Ed25519 by Candor's one rule ([`crate::ed25519_strict::verify`],
    /// spec/notes.md §2.6).
    pub(crate) fn verify_ed25519(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(bytes) = <[u8; ED25519_SIG_LEN]>::try_from(sig) else {
            return false;
        };
        crate::ed25519_strict::verify(&self.key, msg, &Signature::from_bytes(&bytes)).is_ok()
    }
}

impl FromStr for VerifierKey {
    type Err = NoteError;

    /// A vkey Candor admits: see [`VerifierKey::new`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, key_type, vk) = parse_vkey_parts(s)?;
        VerifierKey::new(name, key_type, vk)
    }
}

/// A vkey's name, type and key, with its key ID checked; the key is only known to
/// decode.
fn parse_vkey_parts(s: &str) -> Result<(&str, KeyType, VerifyingKey), NoteError> {
    let bad = |reason: String| NoteError::InvalidVerifierKey { reason };
    let (name, id, key) = split_key(s).map_err(bad)?;
    let key_type = KeyType::from_byte(key[0])
        .ok_or_else(|| bad(format!("unknown key type 0x{:02x}", key[0])))?;
    let pubkey: [u8; 32] = key[1..].try_into().map_err(|_| {
        bad(format!(
            "Ed25519 public key is {} bytes, expected 32",
            key.len() - 1
        ))
    })?;
    let computed = key_id(name, key_type.byte(), &pubkey);
    if computed != id {
        return Err(bad(format!(
            "key ID {} does not match the key (computed {})",
            hex::encode(id),
            hex::encode(computed)
        )));
    }
    let vk = VerifyingKey::from_bytes(&pubkey)
        .map_err(|_| bad("not a valid Ed25519 public key".into()))?;
    Ok((name, key_type, vk))
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut data = Vec::with_capacity(33);
        data.push(self.key_type.byte());
        data.extend_from_slice(self.key.as_bytes());
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_id),
            B64.encode(data)
        )
    }
}

/// An Ed25519 signer key (skey): `PRIVATE+KEY+name+hexid+base64(0x01 || seed)`.
///
/// The key ID is the type-0x01 ID. A witness uses the same key for
/// cosignatures, with the type-0x04 ID (see [`crate::cosignature`]).
#[derive(Clone)]
pub struct SignerKey {
    name: String,
    key_id: [u8; 4],
    key: SigningKey,
}

impl SignerKey {
    /// Generates a new key with a 32-byte seed from the system random source.
    pub fn generate(name: &str) -> Result<SignerKey, NoteError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| NoteError::Random(e.to_string()))?;
        SignerKey::from_seed(name, seed)
    }

    /// The key with the given Ed25519 seed (RFC 8032 private key).
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<SignerKey, NoteError> {
        check_name(name)?;
        let key = SigningKey::from_bytes(&seed);
        // RFC 8032 §5.1.5 makes [a]B, always admissible: this guards the log's, a
        // witness's and keygen's keys against any other derivation.
        crate::ed25519_strict::check_admissible_key(&key.verifying_key()).map_err(|e| {
            NoteError::InvalidSignerKey {
                reason: e.to_string(),
            }
        })?;
        let id = key_id(
            name,
            KeyType::Ed25519.byte(),
            key.verifying_key().as_bytes(),
        );
        Ok(SignerKey {
            name: name.to_string(),
            key_id: id,
            key,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The type-0x01 key ID.
    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// The matching type-0x01 verifier key.
    pub fn verifier(&self) -> VerifierKey {
        self.verifier_of_type(KeyType::Ed25519)
    }

    /// The verifier key of this key's public key under `key_type` (a witness
    /// publishes type 0x04, see [`crate::cosignature::witness_verifier_key`]).
    pub fn verifier_of_type(&self, key_type: KeyType) -> VerifierKey {
        // No checks needed: the name was validated on construction, and a key
        // derived from a seed (clamped scalar times the base point, of prime order)
        // is canonical, torsion-free and never of small order (a test checks it).
        let key = self.key.verifying_key();
        VerifierKey {
            name: self.name.clone(),
            key_id: key_id(&self.name, key_type.byte(), key.as_bytes()),
            key_type,
            key,
        }
    }

    /// The underlying Ed25519 key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// Signs `msg` (a note text) with Ed25519, producing the signature line.
    pub fn sign(&self, msg: &[u8]) -> NoteSignature {
        NoteSignature {
            name: self.name.clone(),
            key_id: self.key_id,
            signature: self.key.sign(msg).to_bytes().to_vec(),
        }
    }
}

impl fmt::Debug for SignerKey {
    // Never print the seed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignerKey")
            .field("name", &self.name)
            .field("key_id", &hex::encode(self.key_id))
            .finish_non_exhaustive()
    }
}

impl FromStr for SignerKey {
    type Err = NoteError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: String| NoteError::InvalidSignerKey { reason };
        let rest = s
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| bad("does not start with PRIVATE+KEY+".into()))?;
        let (name, id, key) = split_key(rest).map_err(bad)?;
        if key[0] != KeyType::Ed25519.byte() {
            return Err(bad(format!("unknown key type 0x{:02x}", key[0])));
        }
        let seed: [u8; 32] = key[1..].try_into().map_err(|_| {
            bad(format!(
                "Ed25519 seed is {} bytes, expected 32",
                key.len() - 1
            ))
        })?;
        let sk = SignerKey::from_seed(name, seed)?;
        if sk.key_id != id {
            return Err(bad(format!(
                "key ID {} does not match the key (computed {})",
                hex::encode(id),
                hex::encode(sk.key_id)
            )));
        }
        Ok(sk)
    }
}

impl fmt::Display for SignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut data = Vec::with_capacity(33);
        data.push(KeyType::Ed25519.byte());
        data.extend_from_slice(self.key.as_bytes());
        write!(
            f,
            "PRIVATE+KEY+{}+{}+{}",
            self.name,
            hex::encode(self.key_id),
            B64.encode(data)
        )
    }
}

/// One signature line: `— name base64(key_id || signature)\n`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NoteSignature {
    /// The key name.
    pub name: String,
    /// The key ID (first four bytes of the decoded base64).
    pub key_id: [u8; 4],
    /// The signature proper (the bytes after the key ID).
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// `name+hexid`, identifying the key that made the signature.
    pub fn signer_id(&self) -> String {
        format!("{}+{}", self.name, hex::encode(self.key_id))
    }

    /// The line as written in a note, including the final newline.
    pub fn to_line(&self) -> String {
        let mut data = Vec::with_capacity(4 + self.signature.len());
        data.extend_from_slice(&self.key_id);
        data.extend_from_slice(&self.signature);
        format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(data))
    }

    /// Parses one signature line without its newline. `line_no` is 1-based
    /// within the signature block, for error messages.
    fn parse_line(line: &str, line_no: usize) -> Result<NoteSignature, NoteError> {
        let bad = |reason| NoteError::BadSignatureLine {
            line: line_no,
            reason,
        };
        let rest = line
            .strip_prefix(SIG_PREFIX)
            .ok_or(bad("does not start with an em dash and a space"))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or(bad("no space between key name and signature"))?;
        if !is_valid_name(name) {
            return Err(bad("invalid key name"));
        }
        if b64.is_empty() {
            return Err(bad("empty signature"));
        }
        let data = B64_GO
            .decode(b64)
            .map_err(|_| bad("signature is not valid base64"))?;
        // A 4-byte key ID and at least one byte of signature (Go's rule).
        if data.len() < 5 {
            return Err(bad("signature shorter than 5 bytes"));
        }
        Ok(NoteSignature {
            name: name.to_string(),
            key_id: [data[0], data[1], data[2], data[3]],
            signature: data[4..].to_vec(),
        })
    }
}

/// A parsed (not yet verified) note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The signed text, including its final newline, excluding the blank line.
    pub text: String,
    /// The signature lines in order.
    pub signatures: Vec<NoteSignature>,
}

/// Checks that `msg` is UTF-8 with no control characters but newline
/// (c2sp.org/signed-note "Format").
fn check_chars(msg: &[u8]) -> Result<&str, NoteError> {
    let s = std::str::from_utf8(msg).map_err(|e| NoteError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    if let Some(offset) = s.bytes().position(|b| b < 0x20 && b != b'\n') {
        return Err(NoteError::ControlCharacter {
            offset,
            byte: msg[offset],
        });
    }
    Ok(s)
}

impl Note {
    /// Parses the structure of a signed note without verifying anything.
    ///
    /// The text is separated from the signatures by the last blank line; every
    /// line after it must be a signature line; at most [`MAX_SIGNATURES`].
    pub fn parse(msg: &[u8]) -> Result<Note, NoteError> {
        let s = check_chars(msg)?;
        let split = s.rfind("\n\n").ok_or(NoteError::MissingSignatureBlock)?;
        let (text, sigs) = (&s[..split + 1], &s[split + 2..]);
        if sigs.is_empty() {
            return Err(NoteError::EmptySignatureBlock);
        }
        let Some(sigs) = sigs.strip_suffix('\n') else {
            return Err(NoteError::MissingFinalNewline);
        };
        let lines: Vec<&str> = sigs.split('\n').collect();
        if lines.len() > MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures { count: lines.len() });
        }
        let signatures = lines
            .iter()
            .enumerate()
            .map(|(i, line)| NoteSignature::parse_line(line, i + 1))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Note {
            text: text.to_string(),
            signatures,
        })
    }

    /// Serializes the note: text, blank line, signature lines.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.text.clone().into_bytes();
        out.push(b'\n');
        for sig in &self.signatures {
            out.extend_from_slice(sig.to_line().as_bytes());
        }
        out
    }
}

/// An opened note: its signatures split into verified and unverified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The note, with repeated signatures removed (see [`open`]).
    pub note: Note,
    /// Signatures by known keys, each verified; at least one.
    pub verified: Vec<NoteSignature>,
    /// Signatures by unknown keys; NOT checked.
    pub unverified: Vec<NoteSignature>,
}

/// Opens a note: parses it and verifies every signature whose (name, key ID)
/// matches one of `verifiers` (c2sp.org/signed-note "Signatures").
///
/// * A signature from a known key that fails to verify rejects the note.
/// * Signatures from unknown keys are not checked; they are reported in
///   `unverified`.
/// * At least one known key must have signed, else the note is rejected.
/// * Like Go: after the first line from a known key, further lines from the
///   same key are dropped unchecked; identical unknown lines are dropped.
/// * A verifier (name, key ID) listed twice is an error (Go's "ambiguous key").
pub fn open(msg: &[u8], verifiers: &[VerifierKey]) -> Result<Verified, NoteError> {
    let mut ids = HashSet::new();
    for v in verifiers {
        if !ids.insert((v.name(), v.key_id())) {
            return Err(NoteError::DuplicateVerifier {
                signer: v.signer_id(),
            });
        }
    }
    let parsed = Note::parse(msg)?;
    let mut seen_known = HashSet::new();
    let mut seen_unknown = HashSet::new();
    let mut kept = Vec::new();
    let mut verified = Vec::new();
    let mut unverified = Vec::new();
    for sig in &parsed.signatures {
        match verifiers.iter().find(|v| v.matches(sig)) {
            Some(v) => {
                if !seen_known.insert((sig.name.as_str(), sig.key_id)) {
                    continue;
                }
                if !v.verify(parsed.text.as_bytes(), &sig.signature) {
                    return Err(NoteError::InvalidSignature {
                        signer: sig.signer_id(),
                    });
                }
                verified.push(sig.clone());
            }
            None => {
                if !seen_unknown.insert(sig) {
                    continue;
                }
                unverified.push(sig.clone());
            }
        }
        kept.push(sig.clone());
    }
    if verified.is_empty() {
        let signers: Vec<String> = unverified.iter().map(NoteSignature::signer_id).collect();
        return Err(NoteError::NoVerifiedSignature {
            signers: signers.join(", "),
        });
    }
    Ok(Verified {
        note: Note {
            text: parsed.text,
            signatures: kept,
        },
        verified,
        unverified,
    })
}

/// Checks that `text` can be the text of a note: non-empty, ends in a
/// newline, UTF-8 without control characters other than newline.
pub fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::InvalidText {
            reason: "text does not end in a newline",
        });
    }
    if text.bytes().any(|b| b < 0x20 && b != b'\n') {
        return Err(NoteError::InvalidText {
            reason: "text contains a control character other than newline",
        });
    }
    Ok(())
}

/// Signs `text` with every signer (Ed25519 over the text) and returns the
/// whole note. At least one signer is required.
pub fn sign(text: &str, signers: &[&SignerKey]) -> Result<Vec<u8>, NoteError> {
    check_text(text)?;
    if signers.is_empty() {
        return Err(NoteError::InvalidText {
            reason: "a note needs at least one signer",
        });
    }
    if signers.len() > MAX_SIGNATURES {
        return Err(NoteError::TooManySignatures {
            count: signers.len(),
        });
    }
    let note = Note {
        text: text.to_string(),
        signatures: signers.iter().map(|s| s.sign(text.as_bytes())).collect(),
    };
    Ok(note.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PETER_V: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const PETER_S: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                        then you don't know what your problem is.\n";

    fn peter() -> (SignerKey, VerifierKey) {
        (PETER_S.parse().unwrap(), PETER_V.parse().unwrap())
    }

    #[test]
    fn keys_round_trip() {
        let (s, v) = peter();
        assert_eq!(s.to_string(), PETER_S);
        assert_eq!(v.to_string(), PETER_V);
        assert_eq!(s.verifier(), v);
        assert_eq!(v.signer_id(), "PeterNeumann+c74f20a3");
        assert_eq!(v.key_type(), KeyType::Ed25519);
        let g = SignerKey::generate("example.com/x").unwrap();
        let g2: SignerKey = g.to_string().parse().unwrap();
        assert_eq!(g2.verifier(), g.verifier());
        let gv: VerifierKey = g.verifier().to_string().parse().unwrap();
        assert_eq!(gv, g.verifier());
        // PRIVATE+KEY+name+hexid+base64: the seed's base64 is the fifth field whole
        // (it may itself hold '+'; its tail after one could be a letter of the name).
        let text = g.to_string();
        let seed_b64 = text.splitn(5, '+').nth(4).unwrap();
        assert_eq!(seed_b64.len(), 44);
        assert!(!format!("{g:?}").contains(seed_b64));
    }

    #[test]
    fn cosignature_vkey_parses() {
        let (s, _) = peter();
        let v = VerifierKey::new("w.example", KeyType::Cosignature, s.verifier().key).unwrap();
        let text = v.to_string();
        let back: VerifierKey = text.parse().unwrap();
        assert_eq!(back.key_type(), KeyType::Cosignature);
        assert_eq!(
            back.key_id(),
            key_id("w.example", 0x04, s.verifier().key.as_bytes())
        );
    }

    /// Admitted keys (FromStr) are canonical, torsion-free and not of small order;
    /// keys read back from a log (parse_recorded) need only decode and not be of
    /// small order.
    #[test]
    fn admission_and_recorded_keys() {
        use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
        let vkey = |bytes: [u8; 32]| {
            let mut data = vec![0x01];
            data.extend_from_slice(&bytes);
            format!(
                "a.example+{}+{}",
                hex::encode(key_id("a.example", 0x01, &bytes)),
                B64.encode(data)
            )
        };
        let (s, _) = peter();
        let a = s.signing_key().to_scalar();
        let mixed = (ED25519_BASEPOINT_POINT * a + EIGHT_TORSION[1])
            .compress()
            .to_bytes();
        // y = p + c for the first c that decodes: a non-canonical spelling.
        let high = (0u8..19)
            .map(|c| {
                let mut b = [0xffu8; 32];
                b[0] = 0xed + c;
                b[31] = 0x7f;
                b
            })
            .find(|b| VerifyingKey::from_bytes(b).is_ok_and(|k| !k.is_weak()))
            .expect("some y < 19 decodes");
        for (bytes, why) in [(mixed, "not torsion-free"), (high, "not a canonical")] {
            let text = vkey(bytes);
            let err = text.parse::<VerifierKey>().unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
            let recorded = VerifierKey::parse_recorded(&text).expect("recorded key parses");
            assert_eq!(recorded.to_string(), text);
        }
        for t in EIGHT_TORSION {
            let text = vkey(t.compress().to_bytes());
            assert!(text.parse::<VerifierKey>().is_err());
            assert!(VerifierKey::parse_recorded(&text).is_err());
        }
        let good = s.verifier().to_string();
        assert_eq!(VerifierKey::parse_recorded(&good).unwrap(), s.verifier());
    }

    #[test]
    fn bad_keys_rejected() {
        for bad in [
            "",
            "PeterNeumann",
            "PeterNeumann+c74f20a3",
            "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20g3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a3+",
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW=",
        ] {
            assert!(bad.parse::<VerifierKey>().is_err(), "{bad:?}");
        }
        for bad in [
            "PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
            "PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
            "PRIVATE+KEY+PeterNeumann+c74f20a3+AoEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
            "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKD=",
        ] {
            assert!(bad.parse::<SignerKey>().is_err(), "{bad:?}");
        }
        assert!(SignerKey::generate("a+b").is_err());
        assert!(SignerKey::generate("").is_err());
    }

    #[test]
    fn note_round_trip_and_open() {
        let (s, v) = peter();
        let msg = sign(TEXT, &[&s]).unwrap();
        let note = Note::parse(&msg).unwrap();
        assert_eq!(note.text, TEXT);
        assert_eq!(note.to_bytes(), msg);
        let opened = open(&msg, std::slice::from_ref(&v)).unwrap();
        assert_eq!(opened.verified.len(), 1);
        assert!(opened.unverified.is_empty());
        // Text with inner blank lines: split at the last blank line.
        let text = "a\n\nb\n\n";
        let msg = sign(text, &[&s]).unwrap();
        assert_eq!(open(&msg, &[v]).unwrap().note.text, text);
    }

    #[test]
    fn sixteen_and_hundred_signatures_accepted() {
        let (s, v) = peter();
        let others: Vec<SignerKey> = (0..99)
            .map(|i| SignerKey::from_seed(&format!("k{i}"), [i as u8 + 1; 32]).unwrap())
            .collect();
        let mut refs: Vec<&SignerKey> = vec![&s];
        refs.extend(others.iter());
        let msg = sign(TEXT, &refs).unwrap();
        let opened = open(&msg, std::slice::from_ref(&v)).unwrap();
        assert_eq!(opened.unverified.len(), 99);
        let all: Vec<VerifierKey> = refs.iter().map(|k| k.verifier()).collect();
        assert_eq!(open(&msg, &all).unwrap().verified.len(), 100);
        // One more line is too many.
        let mut note = Note::parse(&msg).unwrap();
        note.signatures.push(note.signatures[0].clone());
        assert!(matches!(
            open(&note.to_bytes(), &[v]),
            Err(NoteError::TooManySignatures { count: 101 })
        ));
    }

    #[test]
    fn malformed_notes_rejected() {
        let (s, v) = peter();
        let good = String::from_utf8(sign(TEXT, &[&s]).unwrap()).unwrap();
        let line = good.split("\n\n").nth(1).unwrap().to_string();
        type Check = fn(&NoteError) -> bool;
        let cases: Vec<(String, Check)> = vec![
            (TEXT.to_string(), |e| {
                matches!(e, NoteError::MissingSignatureBlock)
            }),
            (format!("{TEXT}\n"), |e| {
                matches!(e, NoteError::EmptySignatureBlock)
            }),
            (good.trim_end().to_string(), |e| {
                matches!(e, NoteError::MissingFinalNewline)
            }),
            (good.replace("If", "I\tf"), |e| {
                matches!(e, NoteError::ControlCharacter { byte: 9, .. })
            }),
            (good.replace("\n", "\r\n"), |e| {
                matches!(e, NoteError::ControlCharacter { byte: 13, .. })
            }),
            (format!("{good}extra\n"), |e| {
                matches!(e, NoteError::BadSignatureLine { line: 2, .. })
            }),
            (format!("{good}\u{2014} a\n"), |e| {
                matches!(e, NoteError::BadSignatureLine { .. })
            }),
            (format!("{good}\u{2014} a \n"), |e| {
                matches!(e, NoteError::BadSignatureLine { .. })
            }),
            (format!("{good}\u{2014} a+b AAAAAAAA\n"), |e| {
                matches!(e, NoteError::BadSignatureLine { .. })
            }),
            (format!("{good}\u{2014} a AAAA\n"), |e| {
                matches!(e, NoteError::BadSignatureLine { .. })
            }),
            (format!("{good}\u{2014} a AAAAAAA!\n"), |e| {
                matches!(e, NoteError::BadSignatureLine { .. })
            }),
            (format!("{good}- {}", &line[4..]), |e| {
                matches!(e, NoteError::BadSignatureLine { .. })
            }),
        ];
        for (msg, want) in cases {
            let err = open(msg.as_bytes(), std::slice::from_ref(&v)).unwrap_err();
            assert!(want(&err), "{msg:?}: {err}");
        }
        let mut bytes = good.clone().into_bytes();
        bytes[3] = 0xff;
        assert!(matches!(
            open(&bytes, std::slice::from_ref(&v)),
            Err(NoteError::NotUtf8 { offset: 3 })
        ));
    }

    #[test]
    fn verification_failures() {
        let (s, v) = peter();
        let msg = sign(TEXT, &[&s]).unwrap();
        // Wrong text under a valid line.
        let mut note = Note::parse(&msg).unwrap();
        note.text = "other\n".into();
        assert!(matches!(
            open(&note.to_bytes(), std::slice::from_ref(&v)),
            Err(NoteError::InvalidSignature { .. })
        ));
        // Flipped signature bit.
        let mut note = Note::parse(&msg).unwrap();
        note.signatures[0].signature[10] ^= 1;
        assert!(matches!(
            open(&note.to_bytes(), std::slice::from_ref(&v)),
            Err(NoteError::InvalidSignature { .. })
        ));
        // Unknown signer only.
        let other = SignerKey::from_seed("other", [7; 32]).unwrap();
        assert!(matches!(
            open(&msg, &[other.verifier()]),
            Err(NoteError::NoVerifiedSignature { .. })
        ));
        assert!(matches!(
            open(&msg, &[]),
            Err(NoteError::NoVerifiedSignature { .. })
        ));
        // Duplicate verifier.
        assert!(matches!(
            open(&msg, &[v.clone(), v]),
            Err(NoteError::DuplicateVerifier { .. })
        ));
    }

    #[test]
    fn sign_rejects_bad_text() {
        let (s, _) = peter();
        assert!(sign("no newline", &[&s]).is_err());
        assert!(sign("tab\there\n", &[&s]).is_err());
        assert!(sign(TEXT, &[]).is_err());
    }
}
