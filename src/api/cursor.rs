//! Opaque keyset-pagination cursors: where the previous page ended, as
//! base64url JSON. Clients must not build them; we may change the format.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 100;
/// The most a page holds as JSON, whatever its rows carry (a config's YAML,
/// 64 KiB of a session's metadata): a page ends early rather than grow
/// past it, and its `next_cursor` goes on from there.
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;

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
/// one (`None` on the last page). The page also ends before its JSON would
/// exceed `max_bytes` (but holds at least one row).
pub fn page<T: Serialize, P: Serialize>(
    mut rows: Vec<T>,
    limit: i64,
    max_bytes: usize,
    position: impl Fn(&T) -> P,
) -> (Vec<T>, Option<String>) {
    let mut keep = rows.len().min(limit as usize);
    let mut bytes = 0;
    for (i, row) in rows.iter().take(keep).enumerate() {
        bytes += serde_json::to_vec(row).map_or(0, |json| json.len() + 1);
        if bytes > max_bytes && i > 0 {
            keep = i;
            break;
        }
    }
    if rows.len() <= keep {
        return (rows, None);
    }
    rows.truncate(keep);
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
        let (rows, next) = page(vec![1, 2, 3], 3, MAX_PAGE_BYTES, |n| *n);
        assert_eq!((rows, next), (vec![1, 2, 3], None));
        let (rows, next) = page(vec![1, 2, 3, 4], 3, MAX_PAGE_BYTES, |n| *n);
        assert_eq!(rows, vec![1, 2, 3]);
        assert_eq!(decode::<i32>(&next.unwrap()).unwrap(), 3);
    }

    #[test]
    fn pages_end_early_rather_than_exceed_their_byte_budget() {
        let rows = vec!["x".repeat(40); 5];
        let (page_rows, next) = page(rows.clone(), 4, 100, |s| s.len());
        assert_eq!(page_rows.len(), 2, "two rows of 43 bytes fit in 100");
        assert!(next.is_some());
        let (page_rows, next) = page(rows[..1].to_vec(), 4, 10, |s| s.len());
        assert_eq!((page_rows.len(), next), (1, None), "at least one row");
    }

    #[test]
    fn limits() {
        assert_eq!(limit(None).unwrap(), 50);
        assert_eq!(limit(Some(100)).unwrap(), 100);
        assert!(limit(Some(0)).is_err() && limit(Some(101)).is_err());
    }
}
