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

/// A display name: 1 to 255 characters (the column is VARCHAR(255)), not blank.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String")]
#[schema(value_type = String, min_length = 1, max_length = 255, pattern = "\\S")]
pub struct Name(String);

impl TryFrom<String> for Name {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        if value.trim().is_empty() {
            return Err("must not be empty".to_owned());
        }
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
#[schema(value_type = String, min_length = 1, pattern = "\\S", example = "model: gpt\n")]
pub struct YamlText(String);

impl TryFrom<String> for YamlText {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        if value.trim().is_empty() {
            return Err("must not be empty".to_owned());
        }
        yaml_rust2::YamlLoader::load_from_str(&value).map_err(|e| {
            let at = e.marker();
            format!(
                "is not valid YAML: {} at line {} column {}",
                e.info(),
                at.line(),
                at.col() + 1
            )
        })?;
        Ok(Self(value))
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
        assert!(Name::try_from("   ".to_owned()).is_err());
    }

    #[test]
    fn yaml_errors_carry_line_and_column() {
        assert!(YamlText::try_from("a: 1\nb: [2, 3]\n".to_owned()).is_ok());
        let err = YamlText::try_from("a: 1\nb: [2, 3\n".to_owned()).unwrap_err();
        assert!(err.contains("line 3"), "{err}");
        assert!(YamlText::try_from("\n".to_owned()).is_err());
    }
}
