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
//!
//! A `serde_json::Value` is checked against that profile and then written by the
//! `serde_json_canonicalizer` crate ([`canonicalize`]). Typed values on the ingest
//! path are written by this module's own serializer ([`to_canonical`]), which costs
//! a fraction of the crate's (BENCHMARKS.md, "Canonical JSON"); the tests hold it to
//! the crate's bytes. [`quick_canonical`] confirms canonical text without a parse.

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

impl JcsError {
    /// The error as seen from the enclosing value: `segment` (`.name` or `[i]`) is
    /// prepended to its path. Paths are built on the way out of an error, so the
    /// writers keep no path while they succeed.
    fn within(self, segment: impl std::fmt::Display) -> JcsError {
        match self {
            JcsError::NotInteger { path, value } => JcsError::NotInteger {
                path: format!("{segment}{path}"),
                value,
            },
            JcsError::OutOfRange { path, value } => JcsError::OutOfRange {
                path: format!("{segment}{path}"),
                value,
            },
            other => other,
        }
    }
}

/// Returns the RFC 8785 canonical bytes of `value`.
///
/// Fails on any non-integer number and on integers outside ±(2^53−1).
pub fn canonicalize(value: &Value) -> Result<Vec<u8>, JcsError> {
    let mut out = Vec::new();
    canonicalize_into(value, &mut out)?;
    Ok(out)
}

/// True iff `bytes` are exactly the canonical form of the JSON they encode.
pub fn is_canonical(bytes: &[u8]) -> bool {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => canonicalize(&v).is_ok_and(|c| c == bytes),
        Err(_) => false,
    }
}

/// A quick check that `json`, already known to be valid JSON, is in canonical form,
/// for the common case: member names of printable ASCII without escapes, strings
/// whose only escapes are the two-character ones, integers of at most 15 digits
/// (below 2^53, so always in range). Returns the span of the value of the top-level
/// member `name` if the text is canonical and has that member, and `None` if it is
/// not canonical or the check cannot tell (any other escape or number, a non-ASCII
/// name): [`is_canonical`] then decides. One pass, no allocation; the monitor uses it
/// to take an entry's canonical bytes straight from its leaf.
pub fn quick_canonical(json: &str, name: &str) -> Option<std::ops::Range<usize>> {
    let mut q = Quick {
        b: json.as_bytes(),
        i: 0,
        want: name.as_bytes(),
        found: None,
    };
    q.value(0)?;
    (q.i == q.b.len()).then_some(())?;
    q.found
}

/// The scanner of [`quick_canonical`]: `i` is the next byte.
struct Quick<'a> {
    b: &'a [u8],
    i: usize,
    want: &'a [u8],
    found: Option<std::ops::Range<usize>>,
}

impl<'a> Quick<'a> {
    /// The deepest nesting checked; deeper text is left to the full check.
    const MAX_DEPTH: usize = 128;

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        if depth > Self::MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'"' => self.string(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.integer(),
            // Whitespace, or anything else: not canonical.
            _ => None,
        }
    }

    /// Members in strictly increasing order of their names (§3.2.3; for ASCII names
    /// the UTF-16 order is the byte order), so no name twice.
    fn object(&mut self, depth: usize) -> Option<()> {
        self.eat(b'{')?;
        if self.eat(b'}').is_some() {
            return Some(());
        }
        let mut previous: Option<&'a [u8]> = None;
        loop {
            let name = self.name()?;
            if previous.is_some_and(|p| p >= name) {
                return None;
            }
            previous = Some(name);
            self.eat(b':')?;
            let start = self.i;
            self.value(depth + 1)?;
            if depth == 0 && name == self.want {
                self.found = Some(start..self.i);
            }
            if !self.separator(b'}')? {
                return Some(());
            }
        }
    }

    /// After a member or an element: `,` (true: another follows) or `close`.
    fn separator(&mut self, close: u8) -> Option<bool> {
        let c = self.peek()?;
        self.i += 1;
        match c {
            b',' => Some(true),
            c if c == close => Some(false),
            _ => None,
        }
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        self.eat(b'[')?;
        if self.eat(b']').is_some() {
            return Some(());
        }
        loop {
            self.value(depth + 1)?;
            if !self.separator(b']')? {
                return Some(());
            }
        }
    }

    /// A member name of printable ASCII without escapes.
    fn name(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        loop {
            match self.peek()? {
                b'"' => break,
                0x20..=0x7e if self.b[self.i] != b'\\' => self.i += 1,
                _ => return None,
            }
        }
        let name = &self.b[start..self.i];
        self.i += 1;
        Some(name)
    }

    /// A string whose escapes are all among the two-character ones that
    /// `JSON.stringify` writes (§3.2.2.2): `\"`, `\\`, `\b`, `\t`, `\n`, `\f`, `\r`.
    /// A `\u` escape is canonical only for some control characters; left to the full
    /// check. Bytes below U+0020 never stand unescaped in valid JSON.
    fn string(&mut self) -> Option<()> {
        self.eat(b'"')?;
        loop {
            self.i += plain_prefix(&self.b[self.i..]);
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(());
                }
                b'\\' => match self.b.get(self.i + 1)? {
                    b'"' | b'\\' | b'b' | b't' | b'n' | b'f' | b'r' => self.i += 2,
                    _ => return None,
                },
                _ => return None,
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// An integer in plain decimal: no leading zero, no `-0`, no fraction or
    /// exponent, at most 15 digits (so below 2^53).
    fn integer(&mut self) -> Option<()> {
        let negative = self.eat(b'-').is_some();
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        let digits = &self.b[start..self.i];
        let canonical = match digits {
            [] => false,
            [b'0'] => !negative,
            [b'0', ..] => false,
            d => d.len() <= 15,
        };
        let ends = !matches!(self.peek(), Some(b'.' | b'e' | b'E'));
        (canonical && ends).then_some(())
    }
}

/// Canonical bytes that never fail: out-of-range integers are written in plain
/// decimal instead of being rejected. Used only to hash values whose strict
/// canonicalization failed, so that an infallible hash API stays total; such bytes
/// can never be accepted by [`canonicalize`]-checking parsers.
pub(crate) fn canonicalize_lenient(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ser = Direct {
        out: &mut out,
        members: Vec::new(),
        scratch: Vec::new(),
        strict: false,
    };
    // Leniently only a non-integer number can fail, and Candor's typed values contain
    // none; should one appear anyway, serde's own text is used.
    if value.serialize(&mut ser).is_err() {
        out = value.to_string().into_bytes();
    }
    out
}

/// Candor's profile of `v`: every number an integer within ±(2^53−1). An error's
/// path is relative to `v` (see [`JcsError::within`]); members are visited in
/// canonical order, so the error reported is the first one in the canonical bytes.
fn check_profile(v: &Value) -> Result<(), JcsError> {
    match v {
        Value::Null | Value::Bool(_) | Value::String(_) => Ok(()),
        Value::Number(n) => check_number(n),
        Value::Array(items) => items.iter().enumerate().try_for_each(|(i, item)| {
            check_profile(item).map_err(|e| e.within(format_args!("[{i}]")))
        }),
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| cmp_utf16(a.0, b.0));
            members.into_iter().try_for_each(|(k, item)| {
                check_profile(item).map_err(|e| e.within(format_args!(".{k}")))
            })
        }
    }
}

fn check_number(n: &serde_json::Number) -> Result<(), JcsError> {
    let magnitude = match (n.as_u64(), n.as_i64()) {
        (Some(u), _) => u,
        (None, Some(i)) => i.unsigned_abs(),
        // serde_json keeps every number with a '.' or exponent as f64, even `1.0`.
        (None, None) => {
            return Err(JcsError::NotInteger {
                path: String::new(),
                value: n.to_string(),
            });
        }
    };
    if magnitude > MAX_SAFE_INTEGER {
        return Err(JcsError::OutOfRange {
            path: String::new(),
            value: n.to_string(),
        });
    }
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
    let bytes = s.as_bytes();
    let mut at = 0;
    loop {
        // Copy the run up to the next byte to escape in one go.
        let run = plain_prefix(&bytes[at..]);
        out.extend_from_slice(&bytes[at..at + run]);
        at += run;
        let Some(&b) = bytes.get(at) else { break };
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 15)]);
            }
        }
        at += 1;
    }
    out.push(b'"');
}

/// Length of the longest prefix of `bytes` that needs no escape: no `"`, `\` or C0
/// control. Every byte of a multi-byte UTF-8 sequence is >= 0x80, so the scan is
/// bytewise. Eight bytes at a time: the `x - 0x01…01 & !x & 0x80…80` test flags a
/// zero byte, and its lowest flag is always exact (only flags above a real match
/// can be spurious), which is the only one used.
fn plain_prefix(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_bytes = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut chunks = bytes.chunks_exact(8);
    let mut done = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        // Bytes below 0x20, then bytes equal to `"` and to `\`.
        let flags = (x.wrapping_sub(0x20 * ONES) & !x & HIGH)
            | zero_bytes(x ^ (u64::from(b'"') * ONES))
            | zero_bytes(x ^ (u64::from(b'\\') * ONES));
        if flags != 0 {
            return done + (flags.trailing_zeros() / 8) as usize;
        }
        done += 8;
    }
    done + chunks
        .remainder()
        .iter()
        .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
        .unwrap_or(chunks.remainder().len())
}

// ---------------------------------------------------------------------------
// Direct serialization: RFC 8785 bytes from any `Serialize` type without building a
// `serde_json::Value` first. Objects (structs and maps) are written member by member
// into the output, then their members are reordered in place by name (§3.2.3); the
// bytes are exactly `canonicalize(&serde_json::to_value(v)?)` for every value whose
// map keys are distinct (serde's derived types and `BTreeMap`s always are).

/// Serializes `v` straight to its RFC 8785 canonical bytes (same result and errors as
/// [`canonicalize`] of `serde_json::to_value(v)`, without the intermediate value).
pub fn to_canonical<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, JcsError> {
    let mut out = Vec::with_capacity(1024);
    to_canonical_into(v, &mut out)?;
    Ok(out)
}

/// [`to_canonical`] appending to `out`.
pub fn to_canonical_into<T: Serialize + ?Sized>(v: &T, out: &mut Vec<u8>) -> Result<(), JcsError> {
    let mut ser = Direct {
        out,
        members: Vec::new(),
        scratch: Vec::new(),
        strict: true,
    };
    v.serialize(&mut ser).map_err(|e| e.within("$"))
}

/// [`canonicalize`] appending to `out` (on error `out` holds a partial write).
pub fn canonicalize_into(value: &Value, out: &mut Vec<u8>) -> Result<(), JcsError> {
    check_profile(value).map_err(|e| e.within("$"))?;
    // Within the profile the crate writes each integer in plain decimal, as its
    // double's ECMAScript form is.
    serde_json_canonicalizer::to_writer(value, out).map_err(|e| JcsError::Serialize(e.to_string()))
}

impl serde::ser::Error for JcsError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        JcsError::Serialize(msg.to_string())
    }
}

struct Direct<'o> {
    out: &'o mut Vec<u8>,
    /// The members written so far of every object still open, innermost last: one
    /// stack for all of them, so that writing an object allocates nothing.
    members: Vec<Member>,
    /// Where an object's members are copied while [`Object::close`] reorders them.
    scratch: Vec<u8>,
    /// False: integers outside ±(2^53−1) are written too ([`canonicalize_lenient`]).
    strict: bool,
}

/// One member of an open object: its name and where `"name":value` sits in the output.
struct Member {
    name: std::borrow::Cow<'static, str>,
    bytes: std::ops::Range<usize>,
}

impl Direct<'_> {
    fn write_u64(&mut self, u: u64) -> Result<(), JcsError> {
        if self.strict && u > MAX_SAFE_INTEGER {
            return Err(JcsError::OutOfRange {
                path: String::new(),
                value: u.to_string(),
            });
        }
        write_decimal(u, false, self.out);
        Ok(())
    }

    fn write_i64(&mut self, i: i64) -> Result<(), JcsError> {
        if self.strict && i.unsigned_abs() > MAX_SAFE_INTEGER {
            return Err(JcsError::OutOfRange {
                path: String::new(),
                value: i.to_string(),
            });
        }
        write_decimal(i.unsigned_abs(), i < 0, self.out);
        Ok(())
    }

    fn not_integer(&self, f: f64) -> JcsError {
        // serde_json's text of the number, as `canonicalize` reports it.
        let value =
            serde_json::Number::from_f64(f).map_or_else(|| f.to_string(), |n| n.to_string());
        JcsError::NotInteger {
            path: String::new(),
            value,
        }
    }

    /// `{"variant":` of an externally tagged enum variant (serde_json's encoding).
    fn open_variant(&mut self, variant: &str) {
        self.out.push(b'{');
        write_string(variant, self.out);
        self.out.push(b':');
    }
}

/// Plain decimal of an integer, as the ECMAScript algorithm writes it (§3.2.2.3).
fn write_decimal(mut u: u64, negative: bool, out: &mut Vec<u8>) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    if negative && buf[i..] != *b"0" {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[i..]);
}

/// An array being written.
struct Array<'s, 'o> {
    ser: &'s mut Direct<'o>,
    n: usize,
    /// Closes a `{"variant":[` wrapper too.
    wrapped: bool,
}

impl Array<'_, '_> {
    fn element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), JcsError> {
        if self.n > 0 {
            self.ser.out.push(b',');
        }
        let n = self.n;
        v.serialize(&mut *self.ser)
            .map_err(|e| e.within(format_args!("[{n}]")))?;
        self.n += 1;
        Ok(())
    }

    fn close(self) {
        self.ser.out.push(b']');
        if self.wrapped {
            self.ser.out.push(b'}');
        }
    }
}

/// An object being written: members are written in the order they come, each as
/// `"name":value`; `close` reorders them by name (§3.2.3) if they came in another
/// order.
struct Object<'s, 'o> {
    ser: &'s mut Direct<'o>,
    /// Where the first member starts (just after `{`).
    start: usize,
    /// This object's first entry in `ser.members`.
    first: usize,
    /// A map key waiting for its value.
    key: Option<String>,
    /// Closes a `{"variant":{` wrapper too.
    wrapped: bool,
}

impl Object<'_, '_> {
    fn member<T: Serialize + ?Sized>(
        &mut self,
        name: std::borrow::Cow<'static, str>,
        v: &T,
    ) -> Result<(), JcsError> {
        if self.ser.members.len() > self.first {
            self.ser.out.push(b',');
        }
        let from = self.ser.out.len();
        write_string(&name, self.ser.out);
        self.ser.out.push(b':');
        v.serialize(&mut *self.ser)
            .map_err(|e| e.within(format_args!(".{name}")))?;
        let bytes = from..self.ser.out.len();
        self.ser.members.push(Member { name, bytes });
        Ok(())
    }

    fn close(self) {
        let Direct {
            out,
            members,
            scratch,
            ..
        } = self.ser;
        let mine = &mut members[self.first..];
        let sorted = mine
            .windows(2)
            .all(|w| cmp_names(&w[0].name, &w[1].name) != Ordering::Greater);
        if !sorted {
            scratch.clear();
            scratch.extend_from_slice(&out[self.start..]);
            out.truncate(self.start);
            mine.sort_by(|a, b| cmp_names(&a.name, &b.name));
            for (i, m) in mine.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(
                    &scratch[m.bytes.start - self.start..m.bytes.end - self.start],
                );
            }
        }
        members.truncate(self.first);
        out.push(b'}');
        if self.wrapped {
            out.push(b'}');
        }
    }
}

/// [`cmp_utf16`] with a shortcut: for ASCII names UTF-16 order is byte order.
fn cmp_names(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        a.cmp(b)
    } else {
        cmp_utf16(a, b)
    }
}

impl<'s, 'o> serde::Serializer for &'s mut Direct<'o> {
    type Ok = ();
    type Error = JcsError;
    type SerializeSeq = Array<'s, 'o>;
    type SerializeTuple = Array<'s, 'o>;
    type SerializeTupleStruct = Array<'s, 'o>;
    type SerializeTupleVariant = Array<'s, 'o>;
    type SerializeMap = Object<'s, 'o>;
    type SerializeStruct = Object<'s, 'o>;
    type SerializeStructVariant = Object<'s, 'o>;

    fn serialize_bool(self, v: bool) -> Result<(), JcsError> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), JcsError> {
        self.write_i64(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<(), JcsError> {
        self.write_i64(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<(), JcsError> {
        self.write_i64(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<(), JcsError> {
        self.write_i64(v)
    }
    fn serialize_i128(self, v: i128) -> Result<(), JcsError> {
        match i64::try_from(v) {
            Ok(i) => self.write_i64(i),
            Err(_) => Err(JcsError::OutOfRange {
                path: String::new(),
                value: v.to_string(),
            }),
        }
    }
    fn serialize_u8(self, v: u8) -> Result<(), JcsError> {
        self.write_u64(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<(), JcsError> {
        self.write_u64(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<(), JcsError> {
        self.write_u64(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<(), JcsError> {
        self.write_u64(v)
    }
    fn serialize_u128(self, v: u128) -> Result<(), JcsError> {
        match u64::try_from(v) {
            Ok(u) => self.write_u64(u),
            Err(_) => Err(JcsError::OutOfRange {
                path: String::new(),
                value: v.to_string(),
            }),
        }
    }
    fn serialize_f32(self, v: f32) -> Result<(), JcsError> {
        self.serialize_f64(v.into())
    }
    fn serialize_f64(self, v: f64) -> Result<(), JcsError> {
        // serde_json turns non-finite floats into null and keeps the rest as floats,
        // which `canonicalize` rejects; the same here.
        if v.is_finite() {
            Err(self.not_integer(v))
        } else {
            self.out.extend_from_slice(b"null");
            Ok(())
        }
    }
    fn serialize_char(self, v: char) -> Result<(), JcsError> {
        let mut buf = [0u8; 4];
        write_string(v.encode_utf8(&mut buf), self.out);
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), JcsError> {
        write_string(v, self.out);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), JcsError> {
        // serde_json writes bytes as an array of numbers.
        self.out.push(b'[');
        for (i, b) in v.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            write_decimal((*b).into(), false, self.out);
        }
        self.out.push(b']');
        Ok(())
    }
    fn serialize_none(self) -> Result<(), JcsError> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), JcsError> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), JcsError> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), JcsError> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), JcsError> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), JcsError> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<(), JcsError> {
        self.open_variant(variant);
        v.serialize(&mut *self)?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Array<'s, 'o>, JcsError> {
        self.out.push(b'[');
        Ok(Array {
            ser: self,
            n: 0,
            wrapped: false,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Array<'s, 'o>, JcsError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        len: usize,
    ) -> Result<Array<'s, 'o>, JcsError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Array<'s, 'o>, JcsError> {
        self.open_variant(variant);
        self.out.push(b'[');
        Ok(Array {
            ser: self,
            n: 0,
            wrapped: true,
        })
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Object<'s, 'o>, JcsError> {
        self.out.push(b'{');
        let start = self.out.len();
        let first = self.members.len();
        Ok(Object {
            ser: self,
            start,
            first,
            key: None,
            wrapped: false,
        })
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Object<'s, 'o>, JcsError> {
        self.serialize_map(None)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Object<'s, 'o>, JcsError> {
        self.open_variant(variant);
        let mut o = self.serialize_map(None)?;
        o.wrapped = true;
        Ok(o)
    }
}

impl serde::ser::SerializeSeq for Array<'_, '_> {
    type Ok = ();
    type Error = JcsError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), JcsError> {
        self.element(v)
    }
    fn end(self) -> Result<(), JcsError> {
        self.close();
        Ok(())
    }
}

impl serde::ser::SerializeTuple for Array<'_, '_> {
    type Ok = ();
    type Error = JcsError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), JcsError> {
        self.element(v)
    }
    fn end(self) -> Result<(), JcsError> {
        self.close();
        Ok(())
    }
}

impl serde::ser::SerializeTupleStruct for Array<'_, '_> {
    type Ok = ();
    type Error = JcsError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), JcsError> {
        self.element(v)
    }
    fn end(self) -> Result<(), JcsError> {
        self.close();
        Ok(())
    }
}

impl serde::ser::SerializeTupleVariant for Array<'_, '_> {
    type Ok = ();
    type Error = JcsError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), JcsError> {
        self.element(v)
    }
    fn end(self) -> Result<(), JcsError> {
        self.close();
        Ok(())
    }
}

impl serde::ser::SerializeMap for Object<'_, '_> {
    type Ok = ();
    type Error = JcsError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), JcsError> {
        self.key = Some(key.serialize(MapKey)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), JcsError> {
        let key = self
            .key
            .take()
            .ok_or_else(|| JcsError::Serialize("map value without a key".into()))?;
        self.member(key.into(), v)
    }
    fn end(self) -> Result<(), JcsError> {
        self.close();
        Ok(())
    }
}

impl serde::ser::SerializeStruct for Object<'_, '_> {
    type Ok = ();
    type Error = JcsError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        v: &T,
    ) -> Result<(), JcsError> {
        self.member(name.into(), v)
    }
    fn end(self) -> Result<(), JcsError> {
        self.close();
        Ok(())
    }
}

impl serde::ser::SerializeStructVariant for Object<'_, '_> {
    type Ok = ();
    type Error = JcsError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        v: &T,
    ) -> Result<(), JcsError> {
        self.member(name.into(), v)
    }
    fn end(self) -> Result<(), JcsError> {
        self.close();
        Ok(())
    }
}

/// Map keys: JSON member names are strings; like serde_json, integers, booleans and
/// chars are written as their text, anything else is refused.
struct MapKey;

fn key_error() -> JcsError {
    JcsError::Serialize("a map key must be a string".into())
}

impl serde::Serializer for MapKey {
    type Ok = String;
    type Error = JcsError;
    type SerializeSeq = serde::ser::Impossible<String, JcsError>;
    type SerializeTuple = serde::ser::Impossible<String, JcsError>;
    type SerializeTupleStruct = serde::ser::Impossible<String, JcsError>;
    type SerializeTupleVariant = serde::ser::Impossible<String, JcsError>;
    type SerializeMap = serde::ser::Impossible<String, JcsError>;
    type SerializeStruct = serde::ser::Impossible<String, JcsError>;
    type SerializeStructVariant = serde::ser::Impossible<String, JcsError>;

    fn serialize_bool(self, v: bool) -> Result<String, JcsError> {
        Ok(v.to_string())
    }
    fn serialize_i8(self, v: i8) -> Result<String, JcsError> {
        Ok(v.to_string())
    }
    fn serialize_i16(self, v: i16) -> Result<String, JcsError> {
        Ok(v.to_string())
    }
    fn serialize_i32(self, v: i32) -> Result<String, JcsError> {
        Ok(v.to_string())
    }
    fn serialize_i64(self, v: i64) -> Result<String, JcsError> {
        Ok(v.to_string())
    }
    fn serialize_u8(self, v: u8) -> Result<String, JcsError> {
        Ok(v.to_string())
    }
    fn serialize_u16(self, v: u16) -> Result<String, JcsError> {
        Ok(v.to_string())
    }
    fn serialize_u32(self, v: u32) -> Result<String, JcsError> {
        Ok(v.to_string())
    }
    fn serialize_u64(self, v: u64) -> Result<String, JcsError> {
        Ok(v.to_string())
    }
    fn serialize_f32(self, _: f32) -> Result<String, JcsError> {
        Err(key_error())
    }
    fn serialize_f64(self, _: f64) -> Result<String, JcsError> {
        Err(key_error())
    }
    fn serialize_char(self, v: char) -> Result<String, JcsError> {
        Ok(v.to_string())
    }
    fn serialize_str(self, v: &str) -> Result<String, JcsError> {
        Ok(v.to_string())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<String, JcsError> {
        Err(key_error())
    }
    fn serialize_none(self) -> Result<String, JcsError> {
        Err(key_error())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<String, JcsError> {
        Err(key_error())
    }
    fn serialize_unit(self) -> Result<String, JcsError> {
        Err(key_error())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<String, JcsError> {
        Err(key_error())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<String, JcsError> {
        Ok(variant.to_string())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<String, JcsError> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<String, JcsError> {
        Err(key_error())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, JcsError> {
        Err(key_error())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, JcsError> {
        Err(key_error())
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, JcsError> {
        Err(key_error())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, JcsError> {
        Err(key_error())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, JcsError> {
        Err(key_error())
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, JcsError> {
        Err(key_error())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, JcsError> {
        Err(key_error())
    }
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

    /// The word-at-a-time scan escapes exactly as a byte-by-byte reference would
    /// (serde_json's escaping, which agrees with ECMAScript's on every byte), for
    /// each special byte at every offset of a word, next to multi-byte characters.
    #[test]
    fn escaping_matches_a_bytewise_reference_at_every_offset() {
        let mut specials: Vec<char> = (0u8..0x20).map(char::from).collect();
        specials.extend(['"', '\\', '\u{7f}', 'é', '\u{2028}', '😀', ' ', '~']);
        for &c in &specials {
            for len in 0..20 {
                for at in 0..=len {
                    let mut text: String =
                        "ab\u{e9}cdefghijklmnopqrstu".chars().take(len).collect();
                    let at = text.char_indices().nth(at).map_or(text.len(), |(i, _)| i);
                    text.insert(at, c);
                    text.push(c);
                    let mut out = Vec::new();
                    write_string(&text, &mut out);
                    let reference = serde_json::to_string(&text).unwrap();
                    assert_eq!(String::from_utf8(out).unwrap(), reference, "{text:?}");
                }
            }
        }
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
    fn direct_serialization_matches_canonicalize_of_the_value() {
        #[derive(Serialize)]
        struct Inner {
            z: u32,
            a: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            skipped: Option<u8>,
        }
        #[derive(Serialize)]
        #[serde(tag = "kind", rename_all = "snake_case")]
        enum Tagged {
            Thing { b: Vec<Inner>, a: i64 },
        }
        #[derive(Serialize)]
        enum External {
            Unit,
            New(u8),
            Tup(u8, String),
            Rec { y: bool, x: char },
        }
        let mut map = std::collections::BTreeMap::new();
        map.insert("\u{fb33}".to_string(), -0i64);
        map.insert("\u{1f600}".to_string(), -5);
        map.insert("\r".to_string(), 7);
        let tagged = Tagged::Thing {
            b: vec![
                Inner {
                    z: 1,
                    a: None,
                    skipped: None,
                },
                Inner {
                    z: 2,
                    a: Some("\u{0}\u{1f}\"\\/\u{7f}\u{2028}é\n".into()),
                    skipped: Some(3),
                },
            ],
            a: -(MAX_SAFE_INTEGER as i64),
        };
        let check = |got: Result<Vec<u8>, JcsError>, want: Value| {
            assert_eq!(got.unwrap(), canonicalize(&want).unwrap());
        };
        check(
            to_canonical(&tagged),
            serde_json::to_value(&tagged).unwrap(),
        );
        check(to_canonical(&map), serde_json::to_value(&map).unwrap());
        for e in [
            External::Unit,
            External::New(9),
            External::Tup(1, "t".into()),
            External::Rec { y: true, x: 'q' },
        ] {
            check(to_canonical(&e), serde_json::to_value(&e).unwrap());
        }
        // A Value serialized directly gives what canonicalize gives, errors included.
        for text in [
            r#"{"b":[1,{"z":0,"a":-5}],"a":"x","":null,"\u00f6":true}"#,
            r#"[[],{},"\u000f",9007199254740991]"#,
        ] {
            let v: Value = serde_json::from_str(text).unwrap();
            check(to_canonical(&v), v.clone());
        }
        assert!(matches!(
            to_canonical(&json!({"a": [1.5]})),
            Err(JcsError::NotInteger { path, .. }) if path == "$.a[0]"
        ));
        assert!(matches!(
            to_canonical(&json!({"n": MAX_SAFE_INTEGER + 1})),
            Err(JcsError::OutOfRange { path, .. }) if path == "$.n"
        ));
        assert!(matches!(
            to_canonical(&1.0f64),
            Err(JcsError::NotInteger { .. })
        ));
    }

    #[test]
    fn lenient_writes_out_of_range_integers() {
        let v = json!({"n": u64::MAX});
        assert!(canonicalize(&v).is_err());
        assert_eq!(canonicalize_lenient(&v), b"{\"n\":18446744073709551615}");
    }

    #[test]
    fn quick_check_confirms_canonical_text_and_finds_the_member() {
        let text = r#"{"a":1,"entry":{"b":[true,null,"x\ny\"\\"],"c":-5,"d":{}},"z":[]}"#;
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            canonicalize(&v).unwrap(),
            text.as_bytes(),
            "the sample is canonical"
        );
        let span = quick_canonical(text, "entry").expect("confirmed");
        assert_eq!(&text[span], r#"{"b":[true,null,"x\ny\"\\"],"c":-5,"d":{}}"#);
        // Canonical, but no such member: nothing to return.
        assert_eq!(quick_canonical(text, "missing"), None);
        assert_eq!(quick_canonical(r#"{"entry":0}"#, "entry"), Some(9..10));
        assert_eq!(
            quick_canonical(r#"{"entry":999999999999999}"#, "entry"),
            Some(9..24)
        );
    }

    #[test]
    fn quick_check_never_confirms_what_it_cannot_vouch_for() {
        for text in [
            r#"{ "entry":1}"#,               // whitespace
            r#"{"entry" :1}"#,               // whitespace
            r#"{"entry":1,"a":2}"#,          // unsorted
            r#"{"entry":1,"entry":1}"#,      // a name twice
            r#"{"entry":"a\/b"}"#,           // escaped solidus: not canonical
            r#"{"entry":"\u0041"}"#,         // \u escape: left to the full check
            r#"{"entry":"\u001f"}"#,         // canonical, but left to the full check
            r#"{"entry":-0}"#,               // -0 is written 0
            r#"{"entry":01}"#,               // leading zero
            r#"{"entry":1.0}"#,              // fraction
            r#"{"entry":1e3}"#,              // exponent
            r#"{"entry":1000000000000000}"#, // 16 digits: range left to the full check
            r#"{"entry":1}x"#,               // trailing bytes
            r#"{"é":1,"entry":2}"#,          // non-ASCII name
            r#"{"entry":{"b":1,"a":2}}"#,    // unsorted below the top
            r#"[{"entry":1}]"#,              // not a top-level member
        ] {
            assert_eq!(quick_canonical(text, "entry"), None, "{text}");
        }
    }

    /// Whether every number in `v` is within Candor's profile.
    fn in_profile(v: &Value) -> bool {
        match v {
            Value::Number(n) => {
                n.as_i64()
                    .is_some_and(|i| i.unsigned_abs() <= MAX_SAFE_INTEGER)
                    || n.as_u64().is_some_and(|u| u <= MAX_SAFE_INTEGER)
            }
            Value::Array(a) => a.iter().all(in_profile),
            Value::Object(m) => m.values().all(in_profile),
            _ => true,
        }
    }

    /// Random JSON whose numbers are all within the profile, with names and strings
    /// of any characters (controls, U+2028, astral ones whose UTF-16 order differs).
    fn integer_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let text =
            "(\\PC|[\\x00-\\x1f\\x7f\\u{2028}\\u{e000}-\\u{ffff}\\u{10000}-\\u{10ffff}]){0,8}";
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-(MAX_SAFE_INTEGER as i64)..=MAX_SAFE_INTEGER as i64).prop_map(|n| json!(n)),
            (-1000i64..1000).prop_map(|n| json!(n)),
            text.prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(text, inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// Differential: the own writer (the ingest path's) and the checked crate path
        /// give serde_json_canonicalizer's bytes for integer-only JSON.
        #[test]
        fn own_writer_matches_serde_json_canonicalizer(v in integer_json()) {
            let reference = serde_json_canonicalizer::to_vec(&v).expect("serializes");
            proptest::prop_assert_eq!(to_canonical(&v).ok(), Some(reference.clone()));
            proptest::prop_assert_eq!(canonicalize(&v).ok(), Some(reference.clone()));
            proptest::prop_assert!(is_canonical(&reference));
        }

        /// Outside the profile both writers refuse, with the same error; inside it
        /// they agree with the crate.
        #[test]
        fn both_writers_enforce_the_profile(v in json_value()) {
            match (to_canonical(&v), canonicalize(&v)) {
                (Ok(own), Ok(checked)) => {
                    proptest::prop_assert!(in_profile(&v));
                    let reference = serde_json_canonicalizer::to_vec(&v).expect("serializes");
                    proptest::prop_assert_eq!(&own, &reference);
                    proptest::prop_assert_eq!(&checked, &reference);
                }
                (Err(own), Err(checked)) => {
                    proptest::prop_assert!(!in_profile(&v));
                    proptest::prop_assert_eq!(own, checked);
                }
                (own, checked) => proptest::prop_assert!(false, "{:?} vs {:?}", own, checked),
            }
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-(MAX_SAFE_INTEGER as i64)..=MAX_SAFE_INTEGER as i64).prop_map(|n| json!(n)),
            (-1_000_000_000_000_000i64..1_000_000_000_000_000).prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)),
            "(\\PC|[\\x00-\\x1f\\x7f\\u{2028}\\u{e000}-\\u{ffff}]){0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                proptest::collection::btree_map(
                    "[a-z\\u{e9}\\u{1f600}\\u{ff41}\\\\\"]{0,3}|entry",
                    inner,
                    0..5
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// Soundness: whatever the quick check confirms, the full check confirms,
        /// with the member's bytes canonical too; and it confirms every canonical
        /// text within its profile.
        #[test]
        fn quick_check_agrees_with_the_full_check(v in json_value()) {
            let texts = [
                canonicalize(&v).ok().and_then(|c| String::from_utf8(c).ok()),
                serde_json::to_string(&v).ok(),
                serde_json::to_string_pretty(&v).ok(),
            ];
            for text in texts.into_iter().flatten() {
                if let Some(span) = quick_canonical(&text, "entry") {
                    proptest::prop_assert!(is_canonical(text.as_bytes()), "{}", text);
                    let member = canonicalize(&v["entry"]).ok();
                    proptest::prop_assert_eq!(member.as_deref(), Some(text[span].as_bytes()));
                }
            }
            // Completeness within the profile.
            if let Ok(c) = canonicalize(&v) {
                let text = String::from_utf8(c).expect("UTF-8");
                if v.get("entry").is_some() && in_quick_profile(&v) {
                    proptest::prop_assert!(quick_canonical(&text, "entry").is_some(), "{}", text);
                }
            }
        }
    }

    /// Whether the quick check is meant to confirm the canonical form of `v`.
    fn in_quick_profile(v: &Value) -> bool {
        let plain = |s: &str| {
            s.chars()
                .all(|c| c >= ' ' || matches!(c, '\u{8}' | '\t' | '\n' | '\u{c}' | '\r'))
        };
        match v {
            Value::Null | Value::Bool(_) => true,
            Value::Number(n) => n
                .as_i64()
                .is_some_and(|i| i.unsigned_abs() < 1_000_000_000_000_000),
            Value::String(s) => plain(s),
            Value::Array(a) => a.iter().all(in_quick_profile),
            Value::Object(m) => m.iter().all(|(k, x)| {
                k.bytes()
                    .all(|b| (0x20..0x7f).contains(&b) && b != b'\\' && b != b'"')
                    && in_quick_profile(x)
            }),
        }
    }
}
