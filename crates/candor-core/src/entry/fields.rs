//! Field readers and validators shared by the entry kinds.
//!
//! Entries are parsed from a [`Json`] tree by hand rather than by derived
//! `Deserialize`, so every error names the exact field path (`criteria[2].effect`)
//! and the precise problem (spec/entries.md, "Errors").

use super::EntryError;
use super::json::Json;
use crate::hash::Hash;
use crate::jcs::MAX_SAFE_INTEGER;
use std::borrow::Cow;
use std::rc::Rc;

/// Defines a closed vocabulary: a fieldless enum with its JSON names.
macro_rules! vocab {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vm])* $var),+ }

        impl $name {
            /// Every value, in documentation order.
            pub const ALL: &'static [$name] = &[$($name::$var),+];
            /// The JSON names, in documentation order.
            pub const NAMES: &'static [&'static str] = &[$($s),+];
            /// The JSON name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$var => $s),+ }
            }
            /// Looks up a JSON name (exact, case-sensitive).
            pub fn from_name(s: &str) -> Option<$name> {
                match s { $($s => Some($name::$var),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::from_name(&s).ok_or_else(|| serde::de::Error::unknown_variant(&s, $name::NAMES))
            }
        }

        impl $crate::entry::fields::Vocab for $name {
            const NAMES: &'static [&'static str] = $name::NAMES;
            fn from_name(s: &str) -> Option<Self> { $name::from_name(s) }
        }
    };
}
pub(crate) use vocab;

/// Implemented by every `vocab!` enum so the reader can produce `BadEnum` errors.
pub trait Vocab: Sized + Copy + Eq {
    const NAMES: &'static [&'static str];
    fn from_name(s: &str) -> Option<Self>;
}

/// Joins a parent path and a member name.
pub(crate) fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}.{name}")
    }
}

/// Where a value sits, spelled out only when an error names it: formatting a path
/// for every nested object and array cost more than checking most of them.
#[derive(Clone)]
pub(crate) struct Path<'a>(Rc<Step<'a>>);

enum Step<'a> {
    Root(Box<str>),
    Member(Path<'a>, &'a str),
    Element(Path<'a>, usize),
}

impl<'a> Path<'a> {
    fn root(path: &str) -> Path<'a> {
        Path(Rc::new(Step::Root(path.into())))
    }

    /// The path as errors print it, e.g. `entry.criteria[2]`.
    fn render(&self) -> String {
        match &*self.0 {
            Step::Root(p) => p.to_string(),
            Step::Member(parent, name) => join(&parent.render(), name),
            Step::Element(parent, i) => format!("{}[{i}]", parent.render()),
        }
    }
}

/// A JSON object being read; unknown members are rejected up front so a misspelled
/// field is reported as unknown rather than as the missing correct one.
pub(crate) struct Obj<'a> {
    members: &'a [(Cow<'a, str>, Json<'a>)],
    /// Shared by the object's fields, which join their name to it only for an error.
    path: Path<'a>,
}

impl<'a> Obj<'a> {
    pub fn new(v: &'a Json<'a>, path: &str, allowed: &[&str]) -> Result<Obj<'a>, EntryError> {
        Obj::at(v, Path::root(path), allowed)
    }

    fn at(v: &'a Json<'a>, path: Path<'a>, allowed: &[&str]) -> Result<Obj<'a>, EntryError> {
        let members = v
            .as_object()
            .ok_or_else(|| wrong_type(&path.render(), "an object", v))?;
        // Report the first unknown member in a stable (sorted) order.
        if let Some(k) = members
            .iter()
            .map(|(k, _)| k)
            .filter(|k| !allowed.contains(&k.as_ref()))
            .min()
        {
            return Err(EntryError::UnknownField(join(&path.render(), k)));
        }
        Ok(Obj { members, path })
    }

    /// The path of member `name` of this object.
    pub fn path_of(&self, name: &str) -> String {
        join(&self.path.render(), name)
    }

    pub fn req(&self, name: &str) -> Result<Field<'a>, EntryError> {
        self.opt(name)
            .ok_or_else(|| EntryError::MissingField(self.path_of(name)))
    }

    /// An optional member. `null` is not a way to omit one: it is reported as the
    /// wrong type, so that every entry has exactly one JSON form.
    pub fn opt(&self, name: &str) -> Option<Field<'a>> {
        self.members
            .iter()
            .find(|(k, _)| k == name)
            .map(|(k, v)| Field {
                v,
                parent: self.path.clone(),
                at: At::Member(k),
            })
    }
}

/// One member value, with where it sits. Its path is spelled out only when an error
/// names it: building a string per field cost more than checking most fields.
pub(crate) struct Field<'a> {
    pub v: &'a Json<'a>,
    parent: Path<'a>,
    at: At<'a>,
}

/// A field's place in its parent.
enum At<'a> {
    /// The parent path is the field's own.
    Itself,
    Member(&'a str),
    Element(usize),
}

fn wrong_type(path: &str, expected: &'static str, v: &Json) -> EntryError {
    EntryError::WrongType {
        field: path.to_string(),
        expected,
        found: v.type_name(),
    }
}

pub(crate) fn invalid(path: &str, reason: impl Into<String>) -> EntryError {
    EntryError::Invalid {
        field: path.to_string(),
        reason: reason.into(),
    }
}

impl<'a> Field<'a> {
    /// A value whose path is `path`.
    pub fn at(v: &'a Json<'a>, path: &str) -> Field<'a> {
        Field {
            v,
            parent: Path::root(path),
            at: At::Itself,
        }
    }

    /// The field's path, e.g. `entry.criteria[2].effect`.
    pub fn path(&self) -> String {
        self.node().render()
    }

    /// The field's path as the parent of what lies below it.
    fn node(&self) -> Path<'a> {
        match self.at {
            At::Itself => self.parent.clone(),
            At::Member(name) => Path(Rc::new(Step::Member(self.parent.clone(), name))),
            At::Element(i) => Path(Rc::new(Step::Element(self.parent.clone(), i))),
        }
    }

    pub fn obj(&self, allowed: &[&str]) -> Result<Obj<'a>, EntryError> {
        Obj::at(self.v, self.node(), allowed)
    }

    pub fn str(&self) -> Result<&'a str, EntryError> {
        self.v
            .as_str()
            .ok_or_else(|| wrong_type(&self.path(), "a string", self.v))
    }

    /// Free text: 1..=max UTF-8 bytes, no control characters (C0, DEL, C1).
    pub fn text(&self, max: usize) -> Result<String, EntryError> {
        let s = self.str()?;
        match text_problem(s, max) {
            None => Ok(s.to_string()),
            Some(why) => Err(invalid(&self.path(), why)),
        }
    }

    /// A non-negative integer ≤ 2^53−1 (the JCS-safe range).
    pub fn u64(&self) -> Result<u64, EntryError> {
        match self.v {
            Json::Number(n) => match n.as_u64() {
                Some(u) if u <= MAX_SAFE_INTEGER => Ok(u),
                Some(u) => Err(invalid(&self.path(), format!("{u} is above 2^53−1"))),
                None if n.is_i64() => Err(invalid(&self.path(), format!("{n} is negative"))),
                None => Err(invalid(
                    &self.path(),
                    format!("{n} is not an integer (Candor numbers are integers only)"),
                )),
            },
            _ => Err(wrong_type(&self.path(), "an integer", self.v)),
        }
    }

    pub fn u64_in(&self, min: u64, max: u64) -> Result<u64, EntryError> {
        let u = self.u64()?;
        if u < min || u > max {
            return Err(invalid(
                &self.path(),
                format!("{u} is outside {min}..={max}"),
            ));
        }
        Ok(u)
    }

    pub fn vocab<T: Vocab>(&self) -> Result<T, EntryError> {
        let s = self.str()?;
        T::from_name(s).ok_or_else(|| EntryError::BadEnum {
            field: self.path(),
            value: s.to_string(),
            allowed: T::NAMES,
        })
    }

    /// An array of min..=max elements, each with its own indexed path.
    pub fn array(&self, min: usize, max: usize) -> Result<Vec<Field<'a>>, EntryError> {
        let items = self
            .v
            .as_array()
            .ok_or_else(|| wrong_type(&self.path(), "an array", self.v))?;
        if items.len() < min || items.len() > max {
            let reason = if items.is_empty() {
                format!("must not be empty (at least {min} element(s))")
            } else {
                format!("has {} elements; allowed {min}..={max}", items.len())
            };
            return Err(invalid(&self.path(), reason));
        }
        let parent = self.node();
        Ok(items
            .iter()
            .enumerate()
            .map(|(i, v)| Field {
                v,
                parent: parent.clone(),
                at: At::Element(i),
            })
            .collect())
    }

    /// An array of distinct vocabulary values.
    pub fn vocab_set<T: Vocab>(&self, min: usize) -> Result<Vec<T>, EntryError> {
        let mut out: Vec<T> = Vec::new();
        for f in self.array(min, T::NAMES.len())? {
            let v = f.vocab::<T>()?;
            if out.contains(&v) {
                let name = f.str()?;
                return Err(invalid(&f.path(), format!("{name:?} is listed twice")));
            }
            out.push(v);
        }
        Ok(out)
    }

    pub fn time(&self) -> Result<String, EntryError> {
        let s = self.str()?;
        if super::parse_time(s).is_none() {
            return Err(EntryError::BadTime {
                field: self.path(),
                value: s.to_string(),
            });
        }
        Ok(s.to_string())
    }

    /// 64 lower-case hex digits.
    pub fn hash_hex(&self) -> Result<Hash, EntryError> {
        let s = self.str()?;
        if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(invalid(
                &self.path(),
                format!("{s:?} is not 64 lower-case hex digits"),
            ));
        }
        Hash::from_hex(s).ok_or_else(|| invalid(&self.path(), "not hex"))
    }

    pub fn dns_name(&self) -> Result<String, EntryError> {
        let s = self.str()?;
        match dns_name_problem(s) {
            None => Ok(s.to_string()),
            Some(why) => Err(not_a_dns_name(&self.path(), s, &why)),
        }
    }
}

pub(crate) fn check_text(path: &str, s: &str, max: usize) -> Result<(), EntryError> {
    text_problem(s, max).map_or(Ok(()), |why| Err(invalid(path, why)))
}

/// What is wrong with free text, if anything (the rule of [`check_text`]).
fn text_problem(s: &str, max: usize) -> Option<String> {
    if s.is_empty() {
        return Some("must not be empty".into());
    }
    if s.len() > max {
        return Some(format!("is {} bytes; at most {max} allowed", s.len()));
    }
    // Cc is U+0000–U+001F and U+007F–U+009F: in UTF-8, a byte below 0x20, 0x7F, or
    // 0xC2 followed by 0x80–0x9F. A byte scan finds them without decoding the text.
    let b = s.as_bytes();
    let at = b.iter().enumerate().position(|(i, &c)| {
        c < 0x20 || c == 0x7f || (c == 0xc2 && matches!(b.get(i + 1), Some(0x80..=0x9f)))
    })?;
    s[at..]
        .chars()
        .next()
        .map(|c| format!("contains control character U+{:04X}", c as u32))
}

/// Longest DNS name in presentation form (RFC 1035 §2.3.4, without the final dot).
pub const MAX_DNS_NAME: usize = 253;

/// A company or seller name: a lower-case DNS host name (RFC 1123 §2.1 letters,
/// digits and hyphens), at least two labels, each 1..=63 bytes, no leading or
/// trailing hyphen, no final dot, and a top-level label that is not all digits (so
/// no IPv4 address passes).
pub fn check_dns_name(path: &str, s: &str) -> Result<(), EntryError> {
    dns_name_problem(s).map_or(Ok(()), |why| Err(not_a_dns_name(path, s, &why)))
}

fn not_a_dns_name(path: &str, s: &str, why: &str) -> EntryError {
    invalid(path, format!("{s:?} is not a lower-case DNS name: {why}"))
}

/// Which rule of [`check_dns_name`] `s` breaks, if any.
fn dns_name_problem(s: &str) -> Option<String> {
    if s.is_empty() || s.len() > MAX_DNS_NAME {
        return Some(format!("length must be 1..={MAX_DNS_NAME}"));
    }
    if !s.contains('.') {
        return Some("needs at least two labels, e.g. acme.example".into());
    }
    let mut last = "";
    for l in s.split('.') {
        last = l;
        if l.is_empty() || l.len() > 63 {
            return Some("each label must be 1..=63 bytes".into());
        }
        if !l
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
        {
            return Some("only a-z, 0-9, '-' and '.' are allowed".into());
        }
        if l.starts_with('-') || l.ends_with('-') {
            return Some("a label may not start or end with '-'".into());
        }
    }
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Some("the top-level label may not be all digits".into());
    }
    None
}

/// Longest `opt_out` value.
pub const MAX_OPT_OUT: usize = 512;

/// An opt-out location: `https://host[...]` or `mailto:local@domain[...]`, printable
/// ASCII only (RFC 3986 / RFC 6068 require non-ASCII to be percent-encoded).
pub(crate) fn check_opt_out(path: &str, s: &str) -> Result<(), EntryError> {
    check_text(path, s, MAX_OPT_OUT)?;
    if !s.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(invalid(
            path,
            "must be printable ASCII without spaces (percent-encode the rest)",
        ));
    }
    if let Some(rest) = s.strip_prefix("https://") {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
        if host.is_empty() || authority.contains('@') {
            return Err(invalid(
                path,
                "https URL needs a host and no user information",
            ));
        }
        check_dns_name(path, &host.to_ascii_lowercase())
    } else if let Some(rest) = s.strip_prefix("mailto:") {
        let addr = rest.split('?').next().unwrap_or("");
        match addr.split_once('@') {
            Some((l, d)) if !l.is_empty() && d.contains('.') => Ok(()),
            _ => Err(invalid(path, "mailto: URI needs an address local@domain")),
        }
    } else {
        Err(invalid(
            path,
            format!("{s:?} must start with https:// or mailto:"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte scan flags exactly the characters `char::is_control` does (Cc), at
    /// any position, among neighbours of every UTF-8 length.
    #[test]
    fn control_scan_matches_is_control() {
        let samples = (0u32..0x900)
            .chain([0x2028, 0xfeff, 0x1_f600, 0x10_ffff])
            .filter_map(char::from_u32);
        for c in samples {
            for text in [format!("{c}"), format!("aé{c}z"), format!("😀{c}\u{85}")] {
                let expect = text.chars().find(|c| c.is_control());
                let got = text_problem(&text, 100);
                match expect {
                    Some(cc) => assert_eq!(
                        got,
                        Some(format!("contains control character U+{:04X}", cc as u32)),
                        "{text:?}"
                    ),
                    None => assert_eq!(got, None, "{text:?}"),
                }
            }
        }
    }
}
