//! RFC 8785 JSON Canonicalization Scheme (JCS), restricted to Candor's number profile.
//!
//! Canonical form (RFC 8785 §3.2): no whitespace; object members sorted by the UTF-16
//! code units of their names (§3.2.3); strings escaped exactly as ECMAScript's
//! `JSON.stringify` does (§3.2.2.2); literals `null`, `true`, `false` as is.
//!
//! Numbers: RFC 8785 §3.2.2.3 serializes every number as an IEEE 754 double using the
//! ECMAScript algorithm. Candor documents only ever contain integers, so this module
//! accepts exactly the integers that a double represents without loss,
//! −(2^53−1) ..= 2^53−1 (I-JSON, RFC 7493 §2.2), writes them in plain decimal (which
//! is what the ECMAScript algorithm yields for them), and rejects every other number.
//! Rejecting instead of rounding means two parties can never disagree about the bytes.

use serde::Serialize;
use serde_json::Value;
use std::cmp::Ordering;

/// Largest integer magnitude a Candor document may contain: 2^53 − 1 (RFC 7493 §2.2).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a value has no Candor canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JcsError {
    /// A number with a fraction or exponent: Candor numbers are integers only.
    #[error("number {value} at {path} is not an integer (Candor JSON numbers are integers only)")]
    NotInteger { path: String, value: String },
    /// An integer that an IEEE 754 double cannot represent exactly.
    #[error("integer {value} at {path} is outside ±(2^53−1)")]
    OutOfRange { path: String, value: String },
    /// The value could not be turned into JSON at all.
    #[error("cannot serialize to JSON: {0}")]
    Serialize(String),
}

/// Returns the RFC 8785 canonical bytes of `value`.
///
/// Fails on any non-integer number and on integers outside ±(2^53−1).
pub fn canonicalize(value: &Value) -> Result<Vec<u8>, JcsError> {
    let mut out = Vec::new();
    let mut path = String::from("$");
    write_value(value, &mut out, &mut path, true)?;
    Ok(out)
}

/// Serializes `v` with serde and canonicalizes the result.
pub fn to_canonical<T: Serialize>(v: &T) -> Result<Vec<u8>, JcsError> {
    let value = serde_json::to_value(v).map_err(|e| JcsError::Serialize(e.to_string()))?;
    canonicalize(&value)
}

/// True iff `bytes` are exactly the canonical form of the JSON they encode.
pub fn is_canonical(bytes: &[u8]) -> bool {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => canonicalize(&v).is_ok_and(|c| c == bytes),
        Err(_) => false,
    }
}

/// Canonical bytes that never fail: out-of-range integers are written in plain
/// decimal instead of being rejected. Used only to hash values whose strict
/// canonicalization failed, so that an infallible hash API stays total; such bytes
/// can never be accepted by [`canonicalize`]-checking parsers.
pub(crate) fn canonicalize_lenient(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let mut path = String::new();
    // With `strict == false` only a non-integer number can fail, and Candor's typed
    // values contain none; should one appear anyway, serde's own text is used.
    if write_value(value, &mut out, &mut path, false).is_err() {
        out = value.to_string().into_bytes();
    }
    out
}

fn write_value(
    v: &Value,
    out: &mut Vec<u8>,
    path: &mut String,
    strict: bool,
) -> Result<(), JcsError> {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out, path, strict)?,
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                write_value(item, out, path, strict)?;
                path.truncate(len);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // RFC 8785 §3.2.3: sort by UTF-16 code units, not by UTF-8 bytes or scalars.
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| cmp_utf16(a.0, b.0));
            out.push(b'{');
            for (i, (k, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out);
                out.push(b':');
                let len = path.len();
                path.push('.');
                path.push_str(k);
                write_value(item, out, path, strict)?;
                path.truncate(len);
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_number(
    n: &serde_json::Number,
    out: &mut Vec<u8>,
    path: &str,
    strict: bool,
) -> Result<(), JcsError> {
    let text = if let Some(u) = n.as_u64() {
        if strict && u > MAX_SAFE_INTEGER {
            return Err(JcsError::OutOfRange {
                path: path.to_string(),
                value: u.to_string(),
            });
        }
        u.to_string()
    } else if let Some(i) = n.as_i64() {
        if strict && i.unsigned_abs() > MAX_SAFE_INTEGER {
            return Err(JcsError::OutOfRange {
                path: path.to_string(),
                value: i.to_string(),
            });
        }
        i.to_string()
    } else {
        // serde_json keeps every number with a '.' or exponent as f64, even `1.0`.
        return Err(JcsError::NotInteger {
            path: path.to_string(),
            value: n.to_string(),
        });
    };
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

/// Orders strings by their UTF-16 code units (RFC 8785 §3.2.3).
pub fn cmp_utf16(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// ECMAScript `JSON.stringify` string escaping (RFC 8785 §3.2.2.2): `"` and `\` get a
/// backslash; U+0008, U+0009, U+000A, U+000C, U+000D use the two-character escapes;
/// the other controls below U+0020 use `\u00xx` with lower-case hex; everything else,
/// including U+007F and U+2028, is written as its UTF-8 bytes.
fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\r' => out.extend_from_slice(b"\\r"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(text: &str) -> String {
        let v: Value = serde_json::from_str(text).unwrap();
        String::from_utf8(canonicalize(&v).unwrap()).unwrap()
    }

    #[test]
    fn rfc8785_string_escaping_example() {
        // RFC 8785 §3.2.2 example, "string" and "literals" members (its numbers are
        // floats, which Candor rejects; see below).
        let input = r#"{
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        assert_eq!(
            canon(input),
            r#"{"literals":[null,true,false],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    #[test]
    fn rfc8785_numbers_example_is_rejected() {
        let input =
            r#"{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001]}"#;
        let v: Value = serde_json::from_str(input).unwrap();
        let err = canonicalize(&v).unwrap_err();
        assert!(
            matches!(err, JcsError::NotInteger { ref path, .. } if path == "$.numbers[0]"),
            "{err}"
        );
    }

    #[test]
    fn rfc8785_sorting_example() {
        // RFC 8785 §3.2.3: the emoji (U+D83D U+DE00 in UTF-16) sorts before U+FB33,
        // although its UTF-8 bytes and its scalar value sort after.
        let input = r#"{
          "\u20ac": "Euro Sign",
          "\r": "Carriage Return",
          "\ufb33": "Hebrew Letter Dalet With Dagesh",
          "1": "One",
          "\ud83d\ude00": "Emoji: Grinning Face",
          "\u0080": "Control",
          "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        assert_eq!(
            canon(input),
            "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
             \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\
             \"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
        );
    }

    #[test]
    fn nested_objects_are_sorted_and_whitespace_removed() {
        assert_eq!(
            canon(r#" { "b" : [ 1 , { "z" : 0 , "a" : -5 } ] , "a" : "x" } "#),
            r#"{"a":"x","b":[1,{"a":-5,"z":0}]}"#
        );
    }

    #[test]
    fn controls_and_non_ascii_escaping() {
        let v = json!("\u{0}\u{1f}\u{7f}\u{2028}\u{8}\u{c}\t");
        assert_eq!(
            String::from_utf8(canonicalize(&v).unwrap()).unwrap(),
            "\"\\u0000\\u001f\u{7f}\u{2028}\\b\\f\\t\""
        );
    }

    #[test]
    fn integer_range_is_enforced() {
        assert_eq!(
            canonicalize(&json!(MAX_SAFE_INTEGER)).unwrap(),
            b"9007199254740991"
        );
        assert_eq!(
            canonicalize(&json!(-(MAX_SAFE_INTEGER as i64))).unwrap(),
            b"-9007199254740991"
        );
        assert!(matches!(
            canonicalize(&json!(MAX_SAFE_INTEGER + 1)),
            Err(JcsError::OutOfRange { .. })
        ));
        assert!(matches!(
            canonicalize(&json!({"a": [-(1i64 << 53)]})),
            Err(JcsError::OutOfRange { path, .. }) if path == "$.a[0]"
        ));
        assert!(matches!(
            canonicalize(&json!(1.0)),
            Err(JcsError::NotInteger { .. })
        ));
        assert_eq!(canonicalize(&json!(0)).unwrap(), b"0");
        assert_eq!(canonicalize(&json!(-0)).unwrap(), b"0");
    }

    #[test]
    fn is_canonical_detects_every_deviation() {
        assert!(is_canonical(br#"{"a":1,"b":[true,null]}"#));
        assert!(!is_canonical(br#"{"b":1,"a":2}"#)); // order
        assert!(!is_canonical(br#"{"a": 1}"#)); // whitespace
        assert!(!is_canonical(br#"{"a":"\u0041"}"#)); // needless escape
        assert!(!is_canonical(br#"{"a":1,"a":1}"#)); // duplicate member
        assert!(!is_canonical(br#"{"a":1.0}"#)); // float
        assert!(!is_canonical(b"{\"a\":1}\n")); // trailing newline
    }

    #[test]
    fn lenient_writes_out_of_range_integers() {
        let v = json!({"n": u64::MAX});
        assert!(canonicalize(&v).is_err());
        assert_eq!(canonicalize_lenient(&v), b"{\"n\":18446744073709551615}");
    }
}
