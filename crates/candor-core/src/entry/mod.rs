//! Candor entry schema v1 (spec/entries.md): the entry kinds, their canonical bytes
//! (RFC 8785), company signatures, the submission ([`SignedEntry`]) and the leaf
//! stored in the log ([`Leaf`]).
//!
//! Entries are parsed by hand from a JSON tree ([`json::Json`]) so that every error names the
//! exact field path; `Serialize` is derived and, for every valid entry, produces
//! exactly the JSON it was parsed from (checked on every parse).

mod fields;
pub mod json;
mod kinds;
pub mod samples;

pub use fields::{MAX_DNS_NAME, MAX_OPT_OUT, Vocab, check_dns_name};
pub use kinds::*;

use crate::hash::{Hash, leaf_hash, sha256};
use crate::jcs::{self, JcsError};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use fields::{Obj, invalid, join};
use json::Json;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// Domain-separation tag prefixed to an entry's canonical bytes before signing.
pub const ENTRY_SIGNATURE_TAG: &[u8] = b"candor-entry/v1\n";

/// Largest canonical entry (RFC 8785 bytes of the entry object alone).
pub const MAX_ENTRY_BYTES: usize = 16 * 1024;

/// Largest submission body accepted by [`SignedEntry::parse_json`] (it may contain
/// whitespace, so it is allowed more than the canonical entry).
pub const MAX_SUBMISSION_BYTES: usize = 64 * 1024;

/// Largest leaf: entry bundles (C2SP tlog-tiles) prefix each entry with a uint16 length.
pub const MAX_LEAF_BYTES: usize = 65_535;

/// Why an entry, submission or leaf was rejected. Every message names the field path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error(
        "kind: unknown entry kind {0:?}; allowed: targeting_decision, data_purchase, company_key"
    )]
    UnknownKind(String),
    #[error("{0}: missing field")]
    MissingField(String),
    #[error("{0}: unknown field")]
    UnknownField(String),
    #[error("{field}: expected {expected}, found {found}")]
    WrongType {
        field: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("{field}: {value:?} is not allowed; allowed: {}", allowed.join(", "))]
    BadEnum {
        field: String,
        value: String,
        allowed: &'static [&'static str],
    },
    #[error(
        "{field}: {value:?} is not an RFC 3339 UTC time with whole seconds and a Z suffix, years 2000..=9999 (e.g. 2026-11-29T05:31:40Z)"
    )]
    BadTime { field: String, value: String },
    #[error("{field}: {size} bytes, over the limit of {max}")]
    TooLarge {
        field: String,
        size: usize,
        max: usize,
    },
    #[error("leaf: bytes are not the RFC 8785 canonical form of their JSON")]
    NotCanonical,
    #[error("signature: does not verify over the entry with the given key")]
    BadSignature,
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("body: not UTF-8 (invalid byte at offset {0})")]
    NotUtf8(usize),
    #[error("body: invalid JSON: {0}")]
    Json(String),
    #[error("canonical JSON: {0}")]
    Jcs(#[from] JcsError),
}

/// One Candor log entry (spec/entries.md §2). JSON: an object tagged by `"kind"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    TargetingDecision(TargetingDecision),
    DataPurchase(DataPurchase),
    CompanyKey(CompanyKey),
}

impl Entry {
    /// Parses and validates an entry from JSON, with precise, path-naming errors.
    pub fn parse_value(v: &Value) -> Result<Entry, EntryError> {
        Entry::parse_at(&Json::from_value(v), "")
    }

    /// Parses an entry from a JSON document of at most [`MAX_SUBMISSION_BYTES`].
    pub fn parse_json(bytes: &[u8]) -> Result<Entry, EntryError> {
        Entry::parse_at(&json_body(bytes, MAX_SUBMISSION_BYTES, "entry")?, "")
    }

    /// `path` is where the entry sits (`""` at top level, `"entry"` inside a
    /// submission or leaf) so nested errors read e.g. `entry.criteria[2].effect`.
    fn parse_at(v: &Json, path: &str) -> Result<Entry, EntryError> {
        Entry::parse_into(v, path, &mut Vec::new())
    }

    /// [`Entry::parse_at`], appending the entry's canonical bytes to `out`: they are
    /// computed once, here, and the signed message and entry hash reuse them.
    fn parse_into(v: &Json, path: &str, out: &mut Vec<u8>) -> Result<Entry, EntryError> {
        let entry = Entry::parse_typed(v, path)?;
        // The canonical bytes are those of the parsed entry, which is what the company
        // signed and what the leaf holds: the parse keeps every member (unknown ones
        // are refused, `null` never stands for an absent one, numbers are integers),
        // so they are also the RFC 8785 form of the JSON it came from.
        let from = out.len();
        jcs::to_canonical_into(&entry, out)?;
        check_entry_size(out.len() - from)?;
        debug_assert_eq!(
            jcs::canonicalize(&v.to_value()).ok().as_deref(),
            Some(&out[from..]),
            "the typed parse lost or changed a member"
        );
        Ok(entry)
    }

    /// [`Entry::parse_into`] for an entry whose canonical bytes are known
    /// (`canonical`, from text confirmed by [`jcs::quick_canonical`]): they are
    /// appended to `out` instead of writing the parsed entry out again.
    fn parse_canonical(
        v: &Json,
        path: &str,
        canonical: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Entry, EntryError> {
        let entry = Entry::parse_typed(v, path)?;
        check_entry_size(canonical.len())?;
        debug_assert_eq!(
            jcs::to_canonical(&entry).ok().as_deref(),
            Some(canonical),
            "the canonical bytes are not the parsed entry's canonical form"
        );
        out.extend_from_slice(canonical);
        Ok(entry)
    }

    /// Every rule of spec/entries.md but the size of the canonical form.
    fn parse_typed(v: &Json, path: &str) -> Result<Entry, EntryError> {
        let kind_path = join(path, "kind");
        if !v.is_object() {
            return Err(EntryError::WrongType {
                field: if path.is_empty() {
                    "entry".into()
                } else {
                    path.into()
                },
                expected: "an object",
                found: v.type_name(),
            });
        }
        let kind = match v.get("kind") {
            None => return Err(EntryError::MissingField(kind_path)),
            Some(Json::Str(s)) => s.as_ref(),
            Some(other) => {
                return Err(EntryError::WrongType {
                    field: kind_path,
                    expected: "a string",
                    found: other.type_name(),
                });
            }
        };
        let entry =
            match kind {
                "targeting_decision" => Entry::TargetingDecision(TargetingDecision::parse(
                    &Obj::new(v, path, kinds::TD_FIELDS)?,
                )?),
                "data_purchase" => {
                    Entry::DataPurchase(DataPurchase::parse(&Obj::new(v, path, kinds::DP_FIELDS)?)?)
                }
                "company_key" => {
                    Entry::CompanyKey(CompanyKey::parse(&Obj::new(v, path, kinds::CK_FIELDS)?)?)
                }
                other => return Err(EntryError::UnknownKind(other.to_string())),
            };
        Ok(entry)
    }

    /// Checks every rule of spec/entries.md (the same checks as parsing).
    pub fn validate(&self) -> Result<(), EntryError> {
        let v = serde_json::to_value(self).map_err(|e| EntryError::Json(e.to_string()))?;
        Entry::parse_value(&v).map(|_| ())
    }

    /// The company the entry is about (for `company_key`, the company whose key it is).
    pub fn company(&self) -> &str {
        match self {
            Entry::TargetingDecision(e) => &e.company,
            Entry::DataPurchase(e) => &e.company,
            Entry::CompanyKey(e) => &e.company,
        }
    }

    /// The `kind` tag.
    pub fn kind(&self) -> &'static str {
        match self {
            Entry::TargetingDecision(_) => "targeting_decision",
            Entry::DataPurchase(_) => "data_purchase",
            Entry::CompanyKey(_) => "company_key",
        }
    }

    /// The entry's own time: `decided_at`, `purchased_at` or `at`.
    pub fn time(&self) -> &str {
        match self {
            Entry::TargetingDecision(e) => &e.decided_at,
            Entry::DataPurchase(e) => &e.purchased_at,
            Entry::CompanyKey(e) => &e.at,
        }
    }

    /// RFC 8785 canonical bytes of the entry's JSON; at most [`MAX_ENTRY_BYTES`].
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, EntryError> {
        let bytes = jcs::to_canonical(self)?;
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(EntryError::TooLarge {
                field: "entry".into(),
                size: bytes.len(),
                max: MAX_ENTRY_BYTES,
            });
        }
        Ok(bytes)
    }

    /// `ENTRY_SIGNATURE_TAG || canonical bytes`: what the company signs.
    pub fn signed_message(&self) -> Result<Vec<u8>, EntryError> {
        let mut msg = ENTRY_SIGNATURE_TAG.to_vec();
        msg.extend_from_slice(&self.canonical_bytes()?);
        Ok(msg)
    }

    /// SHA-256 of the signed message: the log's de-duplication key.
    pub fn entry_hash(&self) -> Result<Hash, EntryError> {
        Ok(sha256(&self.signed_message()?))
    }
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Json::deserialize(d)?;
        Entry::parse_at(&v, "").map_err(serde::de::Error::custom)
    }
}

/// A signed submission: `{"entry": {...}, "key_id": "<8 hex>", "signature": "<base64>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignedEntry {
    pub entry: Entry,
    /// Signed-note key ID (8 lower-case hex) of the signer's verifier key.
    pub key_id: String,
    /// Standard base64 of the 64-byte Ed25519 signature over the signed message.
    pub signature: String,
}

impl SignedEntry {
    /// Validates `entry` and signs its signed message with `key`.
    pub fn sign(
        entry: Entry,
        key: &SigningKey,
        key_id: [u8; 4],
    ) -> Result<SignedEntry, EntryError> {
        entry.validate()?;
        let sig = key.sign(&entry.signed_message()?);
        Ok(SignedEntry {
            entry,
            key_id: hex::encode(key_id),
            signature: STANDARD.encode(sig.to_bytes()),
        })
    }

    /// The submission's RFC 8785 form, the body line Candor's clients send: the log
    /// takes a canonical submission's entry bytes as they are (spec/api.md §4).
    pub fn submission_bytes(&self) -> Result<Vec<u8>, EntryError> {
        Ok(jcs::to_canonical(self)?)
    }

    /// Verifies the signature with `key` by Candor's Ed25519 rule
    /// ([`crate::ed25519_strict::verify`], spec/entries.md §7.1). Matching `key_id`
    /// to a registered key is the caller's job.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), EntryError> {
        verify_signed_message(key, &self.signature, &self.entry.signed_message()?)
    }

    /// The key ID as bytes.
    pub fn key_id_bytes(&self) -> Result<[u8; 4], EntryError> {
        decode_key_id("key_id", &self.key_id)
    }

    /// Parses a submission body: at most [`MAX_SUBMISSION_BYTES`], UTF-8, JSON, then
    /// every rule of spec/entries.md with path-naming errors. Does not verify the
    /// signature (the caller knows the keys).
    pub fn parse_json(bytes: &[u8]) -> Result<SignedEntry, EntryError> {
        let v = json_body(bytes, MAX_SUBMISSION_BYTES, "submission")?;
        SignedEntry::parse_value_into(&v, &mut Vec::new())
    }

    /// [`SignedEntry::parse_json`] that also returns the signed message
    /// (`ENTRY_SIGNATURE_TAG || canonical entry bytes`), canonicalising the entry only
    /// once: what the log needs to verify the signature, hash the entry
    /// ([`entry_hash_of_message`]) and build the leaf ([`Leaf::bytes_from_message`]).
    pub fn parse_json_with_message(bytes: &[u8]) -> Result<(SignedEntry, Vec<u8>), EntryError> {
        let (v, text) = json_body_text(bytes, MAX_SUBMISSION_BYTES, "submission")?;
        let mut message = Vec::with_capacity(bytes.len() + ENTRY_SIGNATURE_TAG.len());
        message.extend_from_slice(ENTRY_SIGNATURE_TAG);
        // A submission in canonical form (as Candor's clients send them) holds its
        // entry's canonical bytes: confirmed in one pass, they are taken as they are
        // instead of writing the parsed entry out again.
        let signed = match jcs::quick_canonical(text, "entry") {
            Some(entry) => SignedEntry::parse_members(&v, |e| {
                Entry::parse_canonical(e, "entry", &bytes[entry], &mut message)
            })?,
            None => SignedEntry::parse_value_into(&v, &mut message)?,
        };
        Ok((signed, message))
    }

    /// Parses a submission from JSON.
    pub fn parse_value(v: &Value) -> Result<SignedEntry, EntryError> {
        SignedEntry::parse_value_into(&Json::from_value(v), &mut Vec::new())
    }

    fn parse_value_into(v: &Json, canonical: &mut Vec<u8>) -> Result<SignedEntry, EntryError> {
        SignedEntry::parse_members(v, |e| Entry::parse_into(e, "entry", canonical))
    }

    /// A submission's members, in the order their faults are reported, the entry read
    /// by `entry`.
    fn parse_members(
        v: &Json,
        entry: impl FnOnce(&Json) -> Result<Entry, EntryError>,
    ) -> Result<SignedEntry, EntryError> {
        let o = Obj::new(v, "", &["entry", "key_id", "signature"])?;
        let entry = entry(o.req("entry")?.v)?;
        let key_id = o.req("key_id")?.str()?.to_string();
        decode_key_id("key_id", &key_id)?;
        let signature = o.req("signature")?.str()?.to_string();
        decode_signature("signature", &signature)?;
        Ok(SignedEntry {
            entry,
            key_id,
            signature,
        })
    }
}

impl<'de> Deserialize<'de> for SignedEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Json::deserialize(d)?;
        SignedEntry::parse_value_into(&v, &mut Vec::new()).map_err(serde::de::Error::custom)
    }
}

/// What the log stores and hashes (spec/entries.md §8): the RFC 8785 bytes of
/// `{"entry": E, "key_id": K, "logged_at": T, "signature": S}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Leaf {
    pub entry: Entry,
    pub key_id: String,
    pub signature: String,
    /// The log's RFC 3339 time of sequencing.
    pub logged_at: String,
}

impl Leaf {
    /// The leaf for a submission sequenced at `logged_at`.
    pub fn new(signed: SignedEntry, logged_at: String) -> Leaf {
        Leaf {
            entry: signed.entry,
            key_id: signed.key_id,
            signature: signed.signature,
            logged_at,
        }
    }

    /// Canonical leaf bytes. Validates every field first, so the bytes always parse
    /// back with [`Leaf::parse`], and enforces [`MAX_LEAF_BYTES`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, EntryError> {
        self.entry.validate()?;
        decode_key_id("key_id", &self.key_id)?;
        decode_signature("signature", &self.signature)?;
        if parse_time(&self.logged_at).is_none() {
            return Err(EntryError::BadTime {
                field: "logged_at".into(),
                value: self.logged_at.clone(),
            });
        }
        let bytes = jcs::to_canonical(self)?;
        if bytes.len() > MAX_LEAF_BYTES {
            return Err(EntryError::TooLarge {
                field: "leaf".into(),
                size: bytes.len(),
                max: MAX_LEAF_BYTES,
            });
        }
        Ok(bytes)
    }

    /// Canonical leaf bytes from a signed message (`ENTRY_SIGNATURE_TAG ||` the
    /// entry's canonical bytes, as [`SignedEntry::parse_json_with_message`] returns
    /// it) without re-serializing the entry: the leaf object's members sort as
    /// `entry`, `key_id`, `logged_at`, `signature` (RFC 8785 §3.2.3), and the three
    /// strings, once checked, hold nothing JCS escapes. Same bytes as
    /// [`Leaf::to_bytes`] for the same (valid) entry.
    pub fn bytes_from_message(
        message: &[u8],
        key_id: &str,
        signature: &str,
        logged_at: &str,
    ) -> Result<Vec<u8>, EntryError> {
        let canonical = message
            .strip_prefix(ENTRY_SIGNATURE_TAG)
            .ok_or_else(|| invalid("entry", "the signed message lacks its domain tag"))?;
        decode_key_id("key_id", key_id)?;
        decode_signature("signature", signature)?;
        if parse_time(logged_at).is_none() {
            return Err(EntryError::BadTime {
                field: "logged_at".into(),
                value: logged_at.to_string(),
            });
        }
        let mut out = Vec::with_capacity(canonical.len() + signature.len() + 80);
        out.extend_from_slice(b"{\"entry\":");
        out.extend_from_slice(canonical);
        out.extend_from_slice(b",\"key_id\":\"");
        out.extend_from_slice(key_id.as_bytes());
        out.extend_from_slice(b"\",\"logged_at\":\"");
        out.extend_from_slice(logged_at.as_bytes());
        out.extend_from_slice(b"\",\"signature\":\"");
        out.extend_from_slice(signature.as_bytes());
        out.extend_from_slice(b"\"}");
        if out.len() > MAX_LEAF_BYTES {
            return Err(EntryError::TooLarge {
                field: "leaf".into(),
                size: out.len(),
                max: MAX_LEAF_BYTES,
            });
        }
        Ok(out)
    }

    /// Parses leaf bytes; they MUST be exactly canonical (RFC 8785), so each leaf
    /// has one byte form and one leaf hash.
    pub fn parse(bytes: &[u8]) -> Result<Leaf, EntryError> {
        Leaf::parse_with_message(bytes).map(|(leaf, _)| leaf)
    }

    /// [`Leaf::parse`] that also returns the entry's signed message, canonicalising
    /// the entry once: what a verifier needs to check the signature.
    pub fn parse_with_message(bytes: &[u8]) -> Result<(Leaf, Vec<u8>), EntryError> {
        let (v, text) = json_body_text(bytes, MAX_LEAF_BYTES, "leaf")?;
        let (parsed, canonical) = Leaf::parse_json_checked(&v, text);
        let (leaf, message) = parsed?;
        if !canonical {
            return Err(EntryError::NotCanonical);
        }
        Ok((leaf, message))
    }

    /// Parses the JSON tree `v` of leaf `text` into the leaf and its signed message,
    /// and says whether `text` is the leaf's canonical (RFC 8785) form. A canonical
    /// leaf (every leaf of a well-behaved log) is confirmed in one pass
    /// ([`jcs::quick_canonical`]) and its `entry` member's bytes are the signed message
    /// ([`Leaf::parse_canonical_json`]). Any other leaf that parses is compared with
    /// its rebuilt bytes, one that does not is canonicalised, so the answer about
    /// canonical form stands even when the parse fails.
    pub fn parse_json_checked(v: &Json, text: &str) -> (Result<(Leaf, Vec<u8>), EntryError>, bool) {
        let bytes = text.as_bytes();
        if let Some(entry) = jcs::quick_canonical(text, "entry") {
            return (Leaf::parse_canonical_json(v, &bytes[entry]), true);
        }
        let parsed = Leaf::parse_json_with_message(v);
        let canonical = match &parsed {
            Ok((leaf, message)) => leaf.is_canonical_form_of(message, bytes),
            Err(_) => jcs::canonicalize(&v.to_value()).is_ok_and(|c| c == bytes),
        };
        (parsed, canonical)
    }

    /// Whether `bytes`, which parsed (by [`Leaf::parse_value_with_message`]) into this
    /// leaf and its signed `message`, are the leaf's canonical (RFC 8785) form. They
    /// are iff they equal the leaf rebuilt around the entry's canonical bytes: the
    /// object has exactly these four members, and the three strings were checked to
    /// hold nothing RFC 8785 escapes. This spares a second canonicalisation of the
    /// whole entry.
    pub fn is_canonical_form_of(&self, message: &[u8], bytes: &[u8]) -> bool {
        Leaf::bytes_from_message(message, &self.key_id, &self.signature, &self.logged_at)
            .is_ok_and(|rebuilt| rebuilt == bytes)
    }

    /// Parses a leaf from its JSON value, returning also the entry's signed message
    /// (`ENTRY_SIGNATURE_TAG ||` canonical entry bytes, computed once). Every rule of
    /// [`Leaf::parse`] except that the leaf bytes are canonical, which the caller, who
    /// holds the bytes, checks (as the monitor does before it parses).
    pub fn parse_value_with_message(v: &Value) -> Result<(Leaf, Vec<u8>), EntryError> {
        Leaf::parse_json_with_message(&Json::from_value(v))
    }

    /// [`Leaf::parse_value_with_message`] over a [`Json`] tree.
    pub fn parse_json_with_message(v: &Json) -> Result<(Leaf, Vec<u8>), EntryError> {
        Leaf::parse_members(v, |e| {
            let mut message = Vec::with_capacity(1024);
            message.extend_from_slice(ENTRY_SIGNATURE_TAG);
            let entry = Entry::parse_into(e, "entry", &mut message)?;
            Ok((entry, message))
        })
    }

    /// [`Leaf::parse_json_with_message`] for a leaf whose bytes are known to be
    /// canonical ([`jcs::quick_canonical`]), with `entry_bytes` the bytes of its
    /// `entry` member: those are then the entry's canonical form, so the signed
    /// message is made of them instead of writing the parsed entry out again.
    pub fn parse_canonical_json(
        v: &Json,
        entry_bytes: &[u8],
    ) -> Result<(Leaf, Vec<u8>), EntryError> {
        Leaf::parse_members(v, |e| {
            let mut message = Vec::with_capacity(ENTRY_SIGNATURE_TAG.len() + entry_bytes.len());
            message.extend_from_slice(ENTRY_SIGNATURE_TAG);
            let entry = Entry::parse_canonical(e, "entry", entry_bytes, &mut message)?;
            Ok((entry, message))
        })
    }

    /// A leaf's members, in the order their faults are reported, the entry read by
    /// `entry` (which returns it with its signed message).
    fn parse_members(
        v: &Json,
        entry: impl FnOnce(&Json) -> Result<(Entry, Vec<u8>), EntryError>,
    ) -> Result<(Leaf, Vec<u8>), EntryError> {
        let o = Obj::new(v, "", &["entry", "key_id", "logged_at", "signature"])?;
        let (entry, message) = entry(o.req("entry")?.v)?;
        let key_id = o.req("key_id")?.str()?.to_string();
        decode_key_id("key_id", &key_id)?;
        let signature = o.req("signature")?.str()?.to_string();
        decode_signature("signature", &signature)?;
        let logged_at = o.req("logged_at")?.time()?;
        Ok((
            Leaf {
                entry,
                key_id,
                signature,
                logged_at,
            },
            message,
        ))
    }

    /// The submission this leaf records.
    pub fn signed_entry(&self) -> SignedEntry {
        SignedEntry {
            entry: self.entry.clone(),
            key_id: self.key_id.clone(),
            signature: self.signature.clone(),
        }
    }

    /// RFC 9162 leaf hash, SHA-256(0x00 || canonical leaf bytes).
    ///
    /// Total: for a leaf that [`Leaf::to_bytes`] would reject (only possible for a
    /// hand-built invalid leaf) it hashes the same canonical writing without the
    /// range checks; no valid log contains such a leaf.
    pub fn leaf_hash(&self) -> Hash {
        // Serializing these types to a Value cannot fail: every map key is a string.
        let v = serde_json::to_value(self).expect("Leaf serializes to JSON");
        leaf_hash(&jcs::canonicalize_lenient(&v))
    }
}

/// Verifies `signature` (the entry's base64 text) over a signed message already
/// built (`ENTRY_SIGNATURE_TAG ||` canonical entry bytes), with the checks of
/// [`SignedEntry::verify`].
pub fn verify_signed_message(
    key: &VerifyingKey,
    signature: &str,
    message: &[u8],
) -> Result<(), EntryError> {
    let sig = Signature::from_bytes(&decode_signature("signature", signature)?);
    crate::ed25519_strict::verify(key, message, &sig).map_err(|_| EntryError::BadSignature)
}

/// The entry hash (SHA-256 of the signed message, [`Entry::entry_hash`]) of a signed
/// message already computed.
pub fn entry_hash_of_message(message: &[u8]) -> Hash {
    sha256(message)
}

/// Ed25519 batch verification ([`crate::ed25519_strict::verify_batch`]) of many entry
/// signatures, split over the machine's cores: each share is one batch equation on
/// its own thread. Succeeds iff every share does; as with one batch, a failure says
/// only that some signature is bad, and the caller finds it by single verification.
pub fn verify_batch_parallel(
    messages: &[&[u8]],
    signatures: &[Signature],
    keys: &[VerifyingKey],
) -> Result<(), crate::ed25519_strict::BatchError> {
    use crate::ed25519_strict::{BatchError, verify_batch};
    // Below this a second thread costs more than it saves.
    const MIN_SHARE: usize = 64;
    if messages.len() != signatures.len() || messages.len() != keys.len() {
        return Err(BatchError::Lengths);
    }
    // One batch equation per contiguous range, a few ranges per core (par::map_ranges).
    crate::par::map_ranges(messages.len(), MIN_SHARE, |r| {
        verify_batch(&messages[r.clone()], &signatures[r.clone()], &keys[r])
    })
    .into_iter()
    .collect()
}

/// Size limit on an entry's canonical form (spec/entries.md §6).
fn check_entry_size(size: usize) -> Result<(), EntryError> {
    if size > MAX_ENTRY_BYTES {
        return Err(EntryError::TooLarge {
            field: "entry".into(),
            size,
            max: MAX_ENTRY_BYTES,
        });
    }
    Ok(())
}

/// Size limit, UTF-8 and JSON syntax of a body (duplicate member names included,
/// [`json`]).
fn json_body<'a>(bytes: &'a [u8], max: usize, what: &str) -> Result<Json<'a>, EntryError> {
    json_body_text(bytes, max, what).map(|(v, _)| v)
}

/// [`json_body`] with the body's text.
fn json_body_text<'a>(
    bytes: &'a [u8],
    max: usize,
    what: &str,
) -> Result<(Json<'a>, &'a str), EntryError> {
    if bytes.len() > max {
        return Err(EntryError::TooLarge {
            field: what.into(),
            size: bytes.len(),
            max,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| EntryError::NotUtf8(e.valid_up_to()))?;
    let v = Json::parse(text).map_err(|e| EntryError::Json(e.to_string()))?;
    Ok((v, text))
}

fn decode_key_id(field: &str, s: &str) -> Result<[u8; 4], EntryError> {
    let mut out = [0u8; 4];
    if s.len() != 8 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(invalid(
            field,
            format!("{s:?} is not 8 lower-case hex digits"),
        ));
    }
    hex::decode_to_slice(s, &mut out).map_err(|e| invalid(field, e.to_string()))?;
    Ok(out)
}

fn decode_signature(field: &str, s: &str) -> Result<[u8; 64], EntryError> {
    let bytes = STANDARD
        .decode(s)
        .map_err(|e| invalid(field, format!("not base64: {e}")))?;
    let sig = <[u8; 64]>::try_from(bytes.as_slice()).map_err(|_| {
        invalid(
            field,
            format!("{} bytes, an Ed25519 signature has 64", bytes.len()),
        )
    })?;
    // One text form per signature: padded, canonical base64.
    if STANDARD.encode(sig) != s {
        return Err(invalid(field, "not canonical padded base64"));
    }
    Ok(sig)
}

/// Parses a Candor time: exactly `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339 `date-time` in UTC,
/// whole seconds, upper-case `T` and `Z`), a real calendar date, years 2000..=9999.
/// Leap seconds (`:60`) are rejected.
pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    let b = s.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let d = &b[r];
        d.iter()
            .all(u8::is_ascii_digit)
            .then(|| d.iter().fold(0u32, |a, c| a * 10 + u32::from(c - b'0')))
    };
    let year = num(0..4)?;
    if !(2000..=9999).contains(&year) {
        return None;
    }
    let month = Month::try_from(u8::try_from(num(5..7)?).ok()?).ok()?;
    let date = Date::from_calendar_date(
        i32::try_from(year).ok()?,
        month,
        u8::try_from(num(8..10)?).ok()?,
    )
    .ok()?;
    let t = Time::from_hms(
        u8::try_from(num(11..13)?).ok()?,
        u8::try_from(num(14..16)?).ok()?,
        u8::try_from(num(17..19)?).ok()?,
    )
    .ok()?;
    Some(PrimitiveDateTime::new(date, t).assume_utc())
}

/// Formats a time the way [`parse_time`] accepts it (UTC, whole seconds truncated).
pub fn format_time(t: OffsetDateTime) -> String {
    crate::clock::format_rfc3339(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert!(parse_time("2026-11-29T05:31:40Z").is_some());
        assert!(parse_time("2000-01-01T00:00:00Z").is_some());
        assert!(parse_time("2024-02-29T23:59:59Z").is_some());
        for bad in [
            "2026-11-29T05:31:40.5Z",
            "2026-11-29T05:31:40+00:00",
            "2026-11-29t05:31:40z",
            "1999-12-31T23:59:59Z",
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-29T24:00:00Z",
            "2026-11-29T23:59:60Z",
            "2026-11-29 05:31:40Z",
            "+2026-11-29T05:31:4Z",
        ] {
            assert!(parse_time(bad).is_none(), "{bad}");
        }
        let t = parse_time("2026-11-29T05:31:40Z").unwrap();
        assert_eq!(format_time(t), "2026-11-29T05:31:40Z");
        assert_eq!(
            format_time(t + time::Duration::milliseconds(999)),
            "2026-11-29T05:31:40Z"
        );
    }

    #[test]
    fn message_and_leaf_fast_paths_match_the_serde_paths() {
        let key = samples::signing_key("acme");
        let vk = key.verifying_key();
        let entries = [
            samples::targeting_decision("acme.example", crate::hash::sha256(b"s")),
            samples::data_purchase("acme.example"),
            samples::sensitive_data_purchase("acme.example"),
            samples::company_key("acme.example", &vk, KeyAction::Register),
            samples::load_targeting_decision("acme.example", 7),
        ];
        for entry in entries {
            let signed = SignedEntry::sign(entry, &key, [1, 2, 3, 4]).unwrap();
            let body = signed.submission_bytes().unwrap();
            // The quick path applies to what Candor's clients send.
            let text = std::str::from_utf8(&body).unwrap();
            assert!(jcs::quick_canonical(text, "entry").is_some(), "{text}");
            let (parsed, message) = SignedEntry::parse_json_with_message(&body).unwrap();
            assert_eq!(parsed, signed);
            assert_eq!(message, signed.entry.signed_message().unwrap());
            // The same submission spelled otherwise (spaces, members reversed) takes
            // the full path, to the same result.
            let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let pretty = serde_json::to_vec_pretty(&value).unwrap();
            let reversed = format!(
                "{{\"signature\":{},\"key_id\":{},\"entry\":{}}}",
                value["signature"], value["key_id"], value["entry"]
            );
            for other in [pretty, reversed.into_bytes()] {
                let text = std::str::from_utf8(&other).unwrap();
                assert!(jcs::quick_canonical(text, "entry").is_none());
                let (p, m) = SignedEntry::parse_json_with_message(&other).unwrap();
                assert_eq!((&p, &m), (&parsed, &message));
            }
            assert_eq!(
                entry_hash_of_message(&message),
                signed.entry.entry_hash().unwrap()
            );
            let t = "2026-11-29T05:31:40Z";
            let fast =
                Leaf::bytes_from_message(&message, &signed.key_id, &signed.signature, t).unwrap();
            let leaf = Leaf::new(signed.clone(), t.into());
            assert_eq!(fast, leaf.to_bytes().unwrap());
            assert_eq!(Leaf::parse(&fast).unwrap(), leaf);
            assert!(Leaf::bytes_from_message(&message, "ABCD0123", &signed.signature, t).is_err());
            assert!(Leaf::bytes_from_message(&message, &signed.key_id, "AA==", t).is_err());
            assert!(
                Leaf::bytes_from_message(&message, &signed.key_id, &signed.signature, "now")
                    .is_err()
            );
            assert!(
                Leaf::bytes_from_message(&message[1..], &signed.key_id, &signed.signature, t)
                    .is_err()
            );
        }
    }

    #[test]
    fn parallel_batch_verification_finds_a_bad_signature_in_any_share() {
        let key = samples::signing_key("acme");
        let msgs: Vec<Vec<u8>> = (0..300u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let mut sigs: Vec<Signature> = msgs.iter().map(|m| key.sign(m)).collect();
        let keys = vec![key.verifying_key(); msgs.len()];
        let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        assert!(verify_batch_parallel(&refs, &sigs, &keys).is_ok());
        for bad in [0, 150, 299] {
            let good = sigs[bad];
            sigs[bad] = key.sign(b"something else");
            assert!(verify_batch_parallel(&refs, &sigs, &keys).is_err(), "{bad}");
            sigs[bad] = good;
        }
        assert!(verify_batch_parallel(&refs[..10], &sigs[..10], &keys[..10]).is_ok());
        assert!(verify_batch_parallel(&refs, &sigs[..299], &keys).is_err());
    }

    #[test]
    fn signature_text_form_is_unique() {
        let s = STANDARD.encode([0u8; 64]);
        assert!(decode_signature("signature", &s).is_ok());
        assert!(decode_signature("signature", s.trim_end_matches('=')).is_err());
        assert!(decode_signature("signature", &STANDARD.encode([0u8; 63])).is_err());
        assert!(decode_key_id("key_id", "ABCDEF01").is_err());
        assert_eq!(
            decode_key_id("key_id", "abcdef01").unwrap(),
            [0xab, 0xcd, 0xef, 0x01]
        );
    }
}
