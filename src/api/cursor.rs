//! Opaque keyset-pagination cursors: where the previous page ended, as
//! base64url JSON. Clients must not build them; we may change the format.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 100;

pub fn encode<T: Serialize>(position: &T) -> String {
    let json = serde_json::to_vec(position).expect("cursor positions serialize");
    URL_SAFE_NO_PAD.encode(json)
}

pub fn decode<T: DeserializeOwned>(cursor: &str) -> Result<T, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or_else(|| {
            ApiError::Validation(
                "cursor is not valid: pass back the next_cursor of a previous page".to_owned(),
            )
        })
}

/// The page size asked for: 1 to 100, default 50.
pub fn limit(requested: Option<i64>) -> Result<i64, ApiError> {
    let limit = requested.unwrap_or(DEFAULT_LIMIT);
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::Validation(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )))
    }
}

/// Splits `limit + 1` fetched rows into the page and the cursor of the next
/// one (`None` on the last page).
pub fn page<T, P: Serialize>(
    mut rows: Vec<T>,
    limit: i64,
    position: impl Fn(&T) -> P,
) -> (Vec<T>, Option<String>) {
    let limit = limit as usize;
    if rows.len() <= limit {
        return (rows, None);
    }
    rows.truncate(limit);
    let next = rows.last().map(|last| encode(&position(last)));
    (rows, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_rejected() {
        let cursor = encode(&(42, "x"));
        assert_eq!(
            decode::<(i32, String)>(&cursor).unwrap(),
            (42, "x".to_owned())
        );
        assert!(decode::<(i32, String)>("not base64!").is_err());
        assert!(decode::<(i32, String)>(&encode(&"other shape")).is_err());
    }

    #[test]
    fn pages_know_whether_more_follow() {
        let (rows, next) = page(vec![1, 2, 3], 3, |n| *n);
        assert_eq!((rows, next), (vec![1, 2, 3], None));
        let (rows, next) = page(vec![1, 2, 3, 4], 3, |n| *n);
        assert_eq!(rows, vec![1, 2, 3]);
        assert_eq!(decode::<i32>(&next.unwrap()).unwrap(), 3);
    }

    #[test]
    fn limits() {
        assert_eq!(limit(None).unwrap(), 50);
        assert_eq!(limit(Some(100)).unwrap(), 100);
        assert!(limit(Some(0)).is_err() && limit(Some(101)).is_err());
    }
}
