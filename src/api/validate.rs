//! Input newtypes: a value of one of these types has been checked, so
//! handlers never re-validate ("parse, don't validate"). Each is
//! deserialized through `TryFrom<String>`, so a failure names the field.

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

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
/// JSON Schema regex engine agrees with this check (see `pattern`s below).
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
#[schema(value_type = String, min_length = 1, max_length = 255, pattern = "[^ \\t\\r\\n]")]
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

/// Non-empty text that parses as YAML.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String")]
#[schema(value_type = String, min_length = 1, pattern = "[^ \\t\\r\\n]", example = "model: gpt\n")]
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

/// Parses with the pull parser (whose state is a loop, not recursion, so a
/// hostile document cannot exhaust the stack) and keeps nothing.
fn check_yaml(text: &str) -> Result<(), String> {
    use yaml_rust2::parser::{Event, Parser};
    let at = |m: &yaml_rust2::scanner::Marker| format!("line {} column {}", m.line(), m.col() + 1);
    let mut parser = Parser::new_from_str(text);
    let mut depth = 0usize;
    loop {
        let (event, mark) = parser
            .next_token()
            .map_err(|e| format!("is not valid YAML: {} at {}", e.info(), at(e.marker())))?;
        match event {
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                depth += 1;
                if depth > MAX_YAML_DEPTH {
                    return Err(format!(
                        "nests deeper than {MAX_YAML_DEPTH} levels at {}",
                        at(&mark)
                    ));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            Event::StreamEnd => return Ok(()),
            _ => {}
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
}
