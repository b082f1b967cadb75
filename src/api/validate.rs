//! Input newtypes: a value of one of these types has been checked, so
//! handlers never re-validate ("parse, don't validate"). Each is
//! deserialized through `TryFrom<String>`, so a failure names the field.

use std::collections::HashMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::numbers;

/// `^[a-z0-9-]{3,100}$`: safe in URLs, logs and as a primary key.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String")]
#[schema(value_type = String, pattern = "^[a-z0-9-]{3,100}$", example = "web-app")]
pub struct AppId(String);

impl TryFrom<String> for AppId {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let ok = (3..=100).contains(&value.len())
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(value))
        } else {
            Err("must be 3 to 100 characters of a-z, 0-9 and -".to_owned())
        }
    }
}

impl AppId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Text PostgreSQL can store and that says something: no NUL character
/// (text columns and JSONB refuse it) and not only spaces, tabs or line
/// breaks. "Blank" is defined by those four ASCII characters so that every
/// JSON Schema regex engine agrees with this check. The schemas say the
/// same as `^[ \t\r\n]*[^\u0000 \t\r\n][^\u0000]*$`: blanks, then one
/// character that is neither blank nor NUL, then anything but NUL (one
/// way to match, so a validator's work stays linear).
fn check_text(value: &str) -> Result<(), String> {
    if value.contains('\0') {
        return Err("must not contain the NUL character".to_owned());
    }
    if value
        .bytes()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
    {
        return Err("must not be empty or blank".to_owned());
    }
    Ok(())
}

/// A display name: 1 to 255 characters (the column is VARCHAR(255)), not blank.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String")]
#[schema(value_type = String, min_length = 1, max_length = 255, pattern = "^[ \\t\\r\\n]*[^\\u0000 \\t\\r\\n][^\\u0000]*$")]
pub struct Name(String);

impl TryFrom<String> for Name {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        check_text(&value)?;
        if value.chars().count() > 255 {
            return Err("must be at most 255 characters".to_owned());
        }
        Ok(Self(value))
    }
}

impl Name {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Free text (a config's description): anything PostgreSQL can store.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String")]
#[schema(value_type = String, pattern = "^[^\\u0000]*$")]
pub struct Text(String);

impl TryFrom<String> for Text {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        if value.contains('\0') {
            return Err("must not contain the NUL character".to_owned());
        }
        Ok(Self(value))
    }
}

impl Text {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The most a `metadata`, `settings` or `tags` object may hold, as JSON.
pub const MAX_OBJECT_BYTES: usize = 64 * 1024;

/// Checks that PostgreSQL can store `value` as JSONB, so the answer names
/// the field instead of echoing the server: no NUL character (`\u0000`) in
/// strings and keys, numbers it can hold without growing much
/// (`numbers`). Returns how many bytes longer (or shorter) the numbers get
/// when PostgreSQL writes them back.
fn check_storable(value: &Value) -> Result<isize, String> {
    let nul = || Err("must not contain the NUL character (\\u0000) in any string".to_owned());
    let mut growth = 0;
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        match value {
            Value::String(s) if s.contains('\0') => return nul(),
            Value::Number(n) => {
                let sent = n.as_str();
                growth += numbers::stored_len(sent)? as isize - sent.len() as isize;
            }
            Value::Array(items) => pending.extend(items),
            Value::Object(map) => {
                if map.keys().any(|k| k.contains('\0')) {
                    return nul();
                }
                pending.extend(map.values());
            }
            _ => {}
        }
    }
    Ok(growth)
}

/// A JSON object of at most [`MAX_OBJECT_BYTES`] as JSON, storable as JSONB
/// (session `metadata`, application `settings`).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(try_from = "Map<String, Value>")]
#[schema(value_type = Object)]
pub struct JsonObject(Map<String, Value>);

impl TryFrom<Map<String, Value>> for JsonObject {
    type Error = String;
    fn try_from(map: Map<String, Value>) -> Result<Self, String> {
        let value = Value::Object(map);
        let growth = check_storable(&value)?;
        check_size(&value, growth)?;
        let Value::Object(map) = value else {
            unreachable!("built as an object above")
        };
        Ok(Self(map))
    }
}

/// Numbers count as PostgreSQL writes them (`growth`), the rest as compact
/// JSON.
fn check_size(value: &Value, growth: isize) -> Result<(), String> {
    let bytes = json_len(value).saturating_add_signed(growth);
    if bytes > MAX_OBJECT_BYTES {
        return Err(format!(
            "must be at most {MAX_OBJECT_BYTES} bytes as JSON (64 KiB), not {bytes}"
        ));
    }
    Ok(())
}

/// How long `value` is as compact JSON text, without writing it anywhere.
pub fn json_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).map_or(usize::MAX, |()| count.0)
}

impl Serialize for JsonObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl JsonObject {
    pub fn to_value(&self) -> Value {
        Value::Object(self.0.clone())
    }
}

/// An application's `settings`: a [`JsonObject`] whose `rate_limits`, if
/// any, overrides the rate limit settings for this application:
/// `{"requests_per_minute": n, "writes_per_minute": n,
/// "app_requests_per_minute": n}`, each optional, 0 for unlimited; and
/// whose `retention`, if any, overrides MAX_SESSION_AGE_DAYS for the
/// sessions it creates: `{"max_session_age_days": n}`, 0 keeping them
/// forever.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(try_from = "Map<String, Value>")]
#[schema(value_type = Object)]
pub struct AppSettings(JsonObject);

impl TryFrom<Map<String, Value>> for AppSettings {
    type Error = String;
    fn try_from(map: Map<String, Value>) -> Result<Self, String> {
        if let Some(limits) = map.get("rate_limits") {
            let Some(limits) = limits.as_object() else {
                return Err("rate_limits must be an object".to_owned());
            };
            for (name, value) in limits {
                if !crate::limits::rate::OVERRIDES.contains(&name.as_str()) {
                    return Err(format!(
                        "rate_limits.{name} is not a rate limit; use {}",
                        crate::limits::rate::OVERRIDES.join(", ")
                    ));
                }
                if value.as_u64().is_none_or(|n| u32::try_from(n).is_err()) {
                    return Err(format!(
                        "rate_limits.{name} must be a whole number of requests per minute, \
                         0 (unlimited) to {}",
                        u32::MAX
                    ));
                }
            }
        }
        if let Some(retention) = map.get("retention") {
            let Some(retention) = retention.as_object() else {
                return Err("retention must be an object".to_owned());
            };
            for (name, value) in retention {
                if name != "max_session_age_days" {
                    return Err(format!(
                        "retention.{name} is not a retention setting; use max_session_age_days"
                    ));
                }
                let max = crate::settings::MAX_RETENTION_DAYS;
                if value.as_u64().is_none_or(|days| days > u64::from(max)) {
                    return Err(format!(
                        "retention.max_session_age_days must be a whole number of days, \
                         0 (kept forever) to {max}"
                    ));
                }
            }
        }
        Ok(Self(JsonObject::try_from(map)?))
    }
}

impl AppSettings {
    pub fn to_value(&self) -> Value {
        self.0.to_value()
    }
}

/// A config's tags: string values, at most [`MAX_OBJECT_BYTES`] as JSON.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(try_from = "HashMap<String, String>")]
#[schema(value_type = HashMap<String, String>)]
pub struct Tags(Map<String, Value>);

impl TryFrom<HashMap<String, String>> for Tags {
    type Error = String;
    fn try_from(tags: HashMap<String, String>) -> Result<Self, String> {
        let map: Map<String, Value> = tags
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        Ok(Self(JsonObject::try_from(map)?.0))
    }
}

impl Tags {
    pub fn to_value(&self) -> Value {
        Value::Object(self.0.clone())
    }
}

/// One transcript message: any JSON object PostgreSQL can store. Its size
/// counts toward the session's limit as PostgreSQL writes it
/// (`db::messages::append`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(try_from = "Map<String, Value>")]
#[schema(value_type = Object)]
pub struct Message(Map<String, Value>);

impl TryFrom<Map<String, Value>> for Message {
    type Error = String;
    fn try_from(map: Map<String, Value>) -> Result<Self, String> {
        let value = Value::Object(map);
        check_storable(&value)?;
        let Value::Object(map) = value else {
            unreachable!("built as an object above")
        };
        Ok(Self(map))
    }
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// Non-empty text that parses as YAML.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String")]
#[schema(value_type = String, min_length = 1, pattern = "^[ \\t\\r\\n]*[^\\u0000 \\t\\r\\n][^\\u0000]*$", example = "model: gpt\n")]
pub struct YamlText(String);

impl TryFrom<String> for YamlText {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        check_text(&value)?;
        check_yaml(&value)?;
        Ok(Self(value))
    }
}

/// Nesting deeper than this is refused: no real config needs it, and it
/// bounds the work of checking a 1 MiB document.
const MAX_YAML_DEPTH: usize = 64;
/// Nodes that aliases may add when a reader expands them. Every reader of
/// a config expands them, so a "billion laughs" document (aliases of
/// aliases) would cost each of them exponential memory; real configs
/// reuse a few blocks.
pub const MAX_YAML_ALIAS_NODES: u64 = 10_000;

/// Parses with the pull parser (whose state is a loop, not recursion, so a
/// hostile document cannot exhaust the stack) and keeps nothing but, per
/// anchor, how many nodes its expansion holds.
fn check_yaml(text: &str) -> Result<(), String> {
    use yaml_rust2::parser::{Event, Parser};
    let at = |m: &yaml_rust2::scanner::Marker| format!("line {} column {}", m.line(), m.col() + 1);
    let mut parser = Parser::new_from_str(text);
    // Open collections: (anchor id, nodes in their expansion so far).
    let mut open: Vec<(usize, u64)> = Vec::new();
    let mut anchored: HashMap<usize, u64> = HashMap::new();
    let mut alias_nodes = 0u64;
    loop {
        let (event, mark) = parser
            .next_token()
            .map_err(|e| format!("is not valid YAML: {} at {}", e.info(), at(e.marker())))?;
        let done = match event {
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if open.len() >= MAX_YAML_DEPTH {
                    return Err(format!(
                        "nests deeper than {MAX_YAML_DEPTH} levels at {}",
                        at(&mark)
                    ));
                }
                open.push((anchor, 1));
                None
            }
            Event::SequenceEnd | Event::MappingEnd => open.pop(),
            Event::Scalar(_, _, anchor, _) => Some((anchor, 1)),
            Event::Alias(anchor) => {
                let nodes = anchored.get(&anchor).copied().unwrap_or(1);
                alias_nodes = alias_nodes.saturating_add(nodes);
                if alias_nodes > MAX_YAML_ALIAS_NODES {
                    return Err(format!(
                        "expands its aliases to more than {MAX_YAML_ALIAS_NODES} nodes at {}",
                        at(&mark)
                    ));
                }
                Some((0, nodes))
            }
            Event::StreamEnd => return Ok(()),
            _ => None,
        };
        // A finished node counts in its parent; an anchored one is remembered.
        if let Some((anchor, nodes)) = done {
            if anchor > 0 {
                anchored.insert(anchor, nodes);
            }
            if let Some(parent) = open.last_mut() {
                parent.1 = parent.1.saturating_add(nodes);
            }
        }
    }
}

impl YamlText {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// For nullable fields of a partial update: absent is `None`, `null` is
/// `Some(None)`, a value is `Some(Some(value))`.
pub fn nullable<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_ids() {
        for ok in ["abc", "my-app-2", &"a".repeat(100)] {
            assert!(AppId::try_from(ok.to_owned()).is_ok(), "{ok}");
        }
        for bad in ["ab", "My-App", "my_app", "app!", "", &"a".repeat(101)] {
            assert!(AppId::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_count_characters_not_bytes() {
        assert!(Name::try_from("é".repeat(255)).is_ok());
        assert!(Name::try_from("é".repeat(256)).is_err());
        assert!(Name::try_from(" \t\r\n".to_owned()).is_err());
        assert!(Name::try_from("a\0b".to_owned()).is_err());
        assert!(
            Name::try_from("\u{a0}".to_owned()).is_ok(),
            "only ASCII blanks are blank"
        );
    }

    #[test]
    fn yaml_errors_carry_line_and_column() {
        assert!(YamlText::try_from("a: 1\nb: [2, 3]\n".to_owned()).is_ok());
        let err = YamlText::try_from("a: 1\nb: [2, 3\n".to_owned()).unwrap_err();
        assert!(err.contains("line 3"), "{err}");
        assert!(YamlText::try_from("\n".to_owned()).is_err());
        let deep = format!("{}x", "- ".repeat(200_000));
        let err = YamlText::try_from(deep).unwrap_err();
        assert!(err.contains("deeper"), "{err}");
        let flow = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(YamlText::try_from(flow).is_err());
    }

    #[test]
    fn billion_laughs_is_refused_naming_the_line_and_reuse_is_fine() {
        let mut doc = "a: &a [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n".to_owned();
        for (name, prev) in ["b", "c", "d", "e", "f", "g", "h", "i"]
            .iter()
            .zip(["a", "b", "c", "d", "e", "f", "g", "h"])
        {
            doc.push_str(&format!("{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        let err = YamlText::try_from(doc).unwrap_err();
        assert!(err.contains("aliases") && err.contains("line 5"), "{err}");
        let reuse = "defaults: &d {model: gpt, temperature: 0.2}\nfast: *d\nslow: *d\n";
        assert!(YamlText::try_from(reuse.to_owned()).is_ok());
    }

    #[test]
    fn objects_are_bounded_and_storable() {
        let big = serde_json::json!({"x": "a".repeat(MAX_OBJECT_BYTES)});
        let Value::Object(map) = big else {
            unreachable!()
        };
        assert!(JsonObject::try_from(map).unwrap_err().contains("64 KiB"));
        let nul = serde_json::json!({"nested": [{"k": "a\u{0}b"}]});
        let Value::Object(map) = nul else {
            unreachable!()
        };
        assert!(JsonObject::try_from(map).unwrap_err().contains("NUL"));
        let ok = serde_json::json!({"title": "hi", "n": [1, 2]});
        let Value::Object(map) = ok else {
            unreachable!()
        };
        assert!(JsonObject::try_from(map).is_ok());
    }
}
