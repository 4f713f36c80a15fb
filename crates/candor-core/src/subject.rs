//! Subject commitments (spec/entries.md, "Subject commitments").
//!
//! A targeting decision names the person it concerns only through a salted hash
//! commitment: `SHA-256("candor-subject/v1\n" || salt[32] || UTF-8("email:..."))`.
//! The salt is fresh and random per contact and travels to the person inside the
//! receipt (the [`Opening`]), never to the log. Without the salt the commitment
//! cannot be tested against a list of known addresses, and two commitments to the
//! same person cannot be linked.

use crate::hash::{Hash, sha256};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use subtle::ConstantTimeEq;

/// Domain-separation tag of subject commitments (spec/overview.md, "Domain separation").
pub const SUBJECT_TAG: &[u8] = b"candor-subject/v1\n";

/// Length of a salt in bytes.
pub const SALT_SIZE: usize = 32;

/// Longest accepted e-mail address (RFC 5321 §4.5.3.1.3 path limit minus the brackets).
pub const MAX_EMAIL_BYTES: usize = 254;
/// Longest local part (RFC 5321 §4.5.3.1.1).
pub const MAX_EMAIL_LOCAL_BYTES: usize = 64;

/// Why a subject identifier, salt or opening was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error("invalid e-mail address {value:?}: {reason}")]
    BadEmail { value: String, reason: &'static str },
    #[error("invalid phone number {value:?}: {reason}")]
    BadPhone { value: String, reason: &'static str },
    #[error(
        "unknown subject identifier {0:?}: expected \"email:<address>\", \"phone:<E.164>\", an address or a +number"
    )]
    UnknownScheme(String),
    #[error("invalid salt: {0}")]
    BadSalt(String),
    #[error("random number generator failed: {0}")]
    Random(String),
}

/// A normalized subject identifier.
///
/// The normalized text (its `Display`, e.g. `email:alice@example.com` or
/// `phone:+31612345678`) is what the commitment hashes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubjectId {
    /// A trimmed, lower-cased e-mail address.
    Email(String),
    /// An E.164 number: `+` then 8 to 15 digits, the first non-zero.
    Phone(String),
}

impl SubjectId {
    /// Normalizes an e-mail address: trims surrounding whitespace and lower-cases it,
    /// then checks that it looks like `local@domain`.
    pub fn email(input: &str) -> Result<SubjectId, SubjectError> {
        let value = input.trim().to_lowercase();
        let bad = |reason| SubjectError::BadEmail {
            value: input.to_string(),
            reason,
        };
        if value.len() > MAX_EMAIL_BYTES {
            return Err(bad("longer than 254 bytes"));
        }
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("contains whitespace or a control character"));
        }
        let (local, domain) = value.split_once('@').ok_or_else(|| bad("no '@'"))?;
        if local.is_empty() {
            return Err(bad("empty local part"));
        }
        if local.len() > MAX_EMAIL_LOCAL_BYTES {
            return Err(bad("local part longer than 64 bytes"));
        }
        if domain.contains('@') {
            return Err(bad("more than one '@'"));
        }
        if !domain.contains('.') || domain.split('.').any(str::is_empty) {
            return Err(bad(
                "domain must be dot-separated non-empty labels, e.g. example.com",
            ));
        }
        Ok(SubjectId::Email(value))
    }

    /// Normalizes a phone number to E.164: trims, removes spaces, dots, dashes and
    /// parentheses, then requires `+` followed by 8..=15 digits, the first non-zero.
    pub fn phone(input: &str) -> Result<SubjectId, SubjectError> {
        let value: String = input
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '.' | '-' | '(' | ')'))
            .collect();
        let bad = |reason| SubjectError::BadPhone {
            value: input.to_string(),
            reason,
        };
        let digits = value
            .strip_prefix('+')
            .ok_or_else(|| bad("must start with '+' and the country code"))?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("only digits may follow '+'"));
        }
        if !(8..=15).contains(&digits.len()) {
            return Err(bad("E.164 numbers have 8 to 15 digits"));
        }
        if digits.starts_with('0') {
            return Err(bad("country codes do not start with 0"));
        }
        Ok(SubjectId::Phone(value))
    }

    /// Parses `email:<address>`, `phone:<number>`, or a bare address (contains `@`)
    /// or number (starts with `+`), normalizing it.
    pub fn parse(input: &str) -> Result<SubjectId, SubjectError> {
        let t = input.trim();
        if let Some(rest) = t.strip_prefix("email:") {
            SubjectId::email(rest)
        } else if let Some(rest) = t.strip_prefix("phone:") {
            SubjectId::phone(rest)
        } else if t.contains('@') {
            SubjectId::email(t)
        } else if t.starts_with('+') {
            SubjectId::phone(t)
        } else {
            Err(SubjectError::UnknownScheme(input.to_string()))
        }
    }

    /// Commits to this identifier with `salt` (same as [`commit`]).
    pub fn commit(&self, salt: &Salt) -> Hash {
        commit(self, salt)
    }
}

impl fmt::Display for SubjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubjectId::Email(e) => write!(f, "email:{e}"),
            SubjectId::Phone(p) => write!(f, "phone:{p}"),
        }
    }
}

impl FromStr for SubjectId {
    type Err = SubjectError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SubjectId::parse(s)
    }
}

impl Serialize for SubjectId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SubjectId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SubjectId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A 32-byte commitment salt; text form base64url without padding (43 characters).
#[derive(Clone, PartialEq, Eq)]
pub struct Salt(pub [u8; SALT_SIZE]);

impl Salt {
    /// A fresh random salt from the operating system's CSPRNG.
    pub fn generate() -> Result<Salt, SubjectError> {
        let mut b = [0u8; SALT_SIZE];
        getrandom::fill(&mut b).map_err(|e| SubjectError::Random(e.to_string()))?;
        Ok(Salt(b))
    }

    /// The base64url (no padding) text form.
    pub fn to_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Parses the base64url (no padding) text form; exactly 32 bytes.
    pub fn from_base64url(s: &str) -> Result<Salt, SubjectError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|e| SubjectError::BadSalt(format!("not unpadded base64url: {e}")))?;
        let arr = <[u8; SALT_SIZE]>::try_from(bytes.as_slice())
            .map_err(|_| SubjectError::BadSalt(format!("{} bytes, want 32", bytes.len())))?;
        Ok(Salt(arr))
    }
}

// The salt is the secret that keeps a commitment unlinkable: keep it out of logs.
impl fmt::Debug for Salt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Salt(..)")
    }
}

impl fmt::Display for Salt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64url())
    }
}

impl FromStr for Salt {
    type Err = SubjectError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Salt::from_base64url(s)
    }
}

impl Serialize for Salt {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64url())
    }
}

impl<'de> Deserialize<'de> for Salt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Salt::from_base64url(&s).map_err(serde::de::Error::custom)
    }
}

/// `SHA-256(SUBJECT_TAG || salt || UTF-8(id.to_string()))`.
pub fn commit(id: &SubjectId, salt: &Salt) -> Hash {
    let text = id.to_string();
    let mut msg = Vec::with_capacity(SUBJECT_TAG.len() + SALT_SIZE + text.len());
    msg.extend_from_slice(SUBJECT_TAG);
    msg.extend_from_slice(&salt.0);
    msg.extend_from_slice(text.as_bytes());
    sha256(&msg)
}

/// What opens a commitment: the identifier and the salt. It is given to the person
/// (in the receipt) and never to the log. JSON: `{"id": "email:...", "salt": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Opening {
    pub id: SubjectId,
    pub salt: Salt,
}

impl Opening {
    /// An opening for `id` with a fresh random salt.
    pub fn generate(id: SubjectId) -> Result<Opening, SubjectError> {
        Ok(Opening {
            id,
            salt: Salt::generate()?,
        })
    }

    /// The commitment this opening opens.
    pub fn commitment(&self) -> Hash {
        commit(&self.id, &self.salt)
    }
}

/// True iff `opening` opens `commitment`. The comparison is constant-time so a
/// verifier that checks many candidate openings leaks nothing through timing.
pub fn verify_opening(commitment: &Hash, opening: &Opening) -> bool {
    opening.commitment().0.ct_eq(&commitment.0).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_normalization() {
        let a = SubjectId::email("  Alice@Example.COM \n").unwrap();
        assert_eq!(a.to_string(), "email:alice@example.com");
        assert_eq!(SubjectId::parse("email:ALICE@example.com").unwrap(), a);
        assert_eq!(SubjectId::parse("alice@EXAMPLE.com").unwrap(), a);
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "alice@example",
            "a b@example.com",
            "alice@@example.com",
            "alice@example..com",
            "alice@.example.com",
        ] {
            assert!(
                matches!(SubjectId::email(bad), Err(SubjectError::BadEmail { .. })),
                "{bad:?}"
            );
        }
        let long = format!("{}@example.com", "a".repeat(65));
        assert!(SubjectId::email(&long).is_err());
    }

    #[test]
    fn phone_normalization() {
        let p = SubjectId::phone(" +31 (6) 12-34.56 78 ").unwrap();
        assert_eq!(p.to_string(), "phone:+31612345678");
        assert_eq!(SubjectId::parse("phone:+31-6-12345678").unwrap(), p);
        assert_eq!(SubjectId::parse("+31 6 12345678").unwrap(), p);
        for bad in [
            "0612345678",
            "+0612345678",
            "+3161234567890123",
            "+1234567",
            "+31 6 1234 567a",
            "++31612345678",
        ] {
            assert!(
                matches!(SubjectId::phone(bad), Err(SubjectError::BadPhone { .. })),
                "{bad:?}"
            );
        }
        assert!(SubjectId::phone("+12345678").is_ok()); // 8 digits
        assert!(SubjectId::phone("+123456789012345").is_ok()); // 15 digits
        assert!(matches!(
            SubjectId::parse("0612345678"),
            Err(SubjectError::UnknownScheme(_))
        ));
    }

    #[test]
    fn commitment_definition() {
        let id = SubjectId::email("alice@example.com").unwrap();
        let salt = Salt([7u8; 32]);
        let mut msg = b"candor-subject/v1\n".to_vec();
        msg.extend_from_slice(&[7u8; 32]);
        msg.extend_from_slice(b"email:alice@example.com");
        assert_eq!(commit(&id, &salt), sha256(&msg));
    }

    #[test]
    fn salt_text_form() {
        let s = Salt([0xfb; 32]);
        let t = s.to_string();
        assert_eq!(t.len(), 43);
        assert!(!t.contains('+') && !t.contains('/') && !t.contains('='));
        assert_eq!(t.parse::<Salt>().unwrap(), s);
        assert!(Salt::from_base64url(&format!("{t}=")).is_err());
        assert!(Salt::from_base64url(&t[..42]).is_err());
        assert!(Salt::from_base64url(&URL_SAFE_NO_PAD.encode([1u8; 31])).is_err());
        assert_eq!(format!("{s:?}"), "Salt(..)");
    }

    #[test]
    fn opening_json_and_verification() {
        let o = Opening {
            id: SubjectId::email("bob@example.org").unwrap(),
            salt: Salt([1; 32]),
        };
        let j = serde_json::to_string(&o).unwrap();
        assert_eq!(
            j,
            format!(
                "{{\"id\":\"email:bob@example.org\",\"salt\":\"{}\"}}",
                Salt([1; 32])
            )
        );
        let back: Opening = serde_json::from_str(&j).unwrap();
        assert_eq!(back, o);
        assert!(verify_opening(&o.commitment(), &back));
        let mut wrong = o.clone();
        wrong.salt.0[31] ^= 1;
        assert!(!verify_opening(&o.commitment(), &wrong));
        assert!(
            serde_json::from_str::<Opening>(r#"{"id":"email:bob@example.org","salt":"AA","x":1}"#)
                .is_err()
        );
    }
}
