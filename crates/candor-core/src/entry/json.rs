//! The JSON tree entries are parsed from: like `serde_json::Value`, but its strings
//! borrow from the input where they hold no escapes and its objects are vectors, so
//! reading an entry allocates little (a `Value` allocated every key and string and
//! kept its objects in B-trees: a fifth of the server's parse and more of the
//! monitor's). serde_json's tokenizer still reads the text.
//!
//! Duplicate member names are refused: RFC 8785 §3.1 takes I-JSON input, whose
//! names are unique (RFC 7493 §2.3), and a `Value` kept only the last of them.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};
use std::borrow::Cow;
use std::fmt;

/// One JSON value. Object members keep their order of appearance.
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    Str(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    /// Parses one JSON text (serde_json's grammar and nesting limit).
    pub fn parse(text: &'a str) -> Result<Json<'a>, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The same tree over a `serde_json::Value` (whose keys are already unique).
    pub fn from_value(v: &'a Value) -> Json<'a> {
        match v {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(n) => Json::Number(n.clone()),
            Value::String(s) => Json::Str(Cow::Borrowed(s)),
            Value::Array(items) => Json::Array(items.iter().map(Json::from_value).collect()),
            Value::Object(map) => Json::Object(
                map.iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_str()), Json::from_value(v)))
                    .collect(),
            ),
        }
    }

    /// The equivalent `serde_json::Value`, for the rare paths that need one.
    pub fn to_value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => Value::Number(n.clone()),
            Json::Str(s) => Value::String(s.to_string()),
            Json::Array(items) => Value::Array(items.iter().map(Json::to_value).collect()),
            Json::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_value()))
                    .collect(),
            ),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Json::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    pub fn is_object(&self) -> bool {
        matches!(self, Json::Object(_))
    }

    pub fn as_array(&self) -> Option<&[Json<'a>]> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&[(Cow<'a, str>, Json<'a>)]> {
        match self {
            Json::Object(members) => Some(members),
            _ => None,
        }
    }

    /// Member `name` of an object.
    pub fn get(&self, name: &str) -> Option<&Json<'a>> {
        self.as_object()?
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// How an error message names the value's type.
    pub fn type_name(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::Str(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(b))
    }
    fn visit_u64<E: de::Error>(self, u: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(u.into()))
    }
    fn visit_i64<E: de::Error>(self, i: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(i.into()))
    }
    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Json<'de>, E> {
        // serde_json hands over only finite numbers.
        Number::from_f64(f)
            .map(Json::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(s)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut members: Vec<(Cow<'de, str>, Json<'de>)> = Vec::new();
        while let Some(Key(name)) = map.next_key()? {
            if members.iter().any(|(k, _)| *k == name) {
                return Err(de::Error::custom(format_args!(
                    "duplicate member name {name:?}"
                )));
            }
            let value = map.next_value()?;
            members.push((name, value));
        }
        Ok(Json::Object(members))
    }
}

/// A member name, borrowed from the input when it holds no escape.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_serde_json_value() {
        let text = r#"{"a":[1,-2,3.5,true,null,"x\"y"],"b":{"c":"d\u00e9","e":{}},"é":[]}"#;
        let json = Json::parse(text).unwrap();
        let value: Value = serde_json::from_str(text).unwrap();
        assert_eq!(json.to_value(), value);
        assert_eq!(Json::from_value(&value).to_value(), value);
        // Strings without escapes borrow from the text; with one they cannot.
        let Json::Object(members) = &json else {
            panic!("an object")
        };
        assert!(matches!(members[0].0, Cow::Borrowed("a")));
        let Some(Json::Array(items)) = json.get("a") else {
            panic!("an array")
        };
        assert!(matches!(items[5], Json::Str(Cow::Owned(_))));
        assert_eq!(
            json.get("b").and_then(|b| b.get("c")),
            Some(&Json::Str("dé".into()))
        );
    }

    #[test]
    fn duplicate_member_names_are_refused_at_any_depth() {
        for text in [
            r#"{"a":1,"a":1}"#,
            r#"{"a":1,"b":{"x":1,"y":2,"x":3}}"#,
            r#"[{"k":"v","\u006b":"w"}]"#,
        ] {
            let err = Json::parse(text).unwrap_err().to_string();
            assert!(err.contains("duplicate member name"), "{text}: {err}");
        }
        assert!(Json::parse(r#"{"a":{"a":1},"b":[{"a":2}]}"#).is_ok());
    }

    #[test]
    fn syntax_errors_and_depth_are_serde_jsons() {
        assert!(Json::parse("{").is_err());
        assert!(Json::parse("[1,]").is_err());
        assert!(Json::parse("1 2").is_err());
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(Json::parse(&deep).is_err());
    }
}
