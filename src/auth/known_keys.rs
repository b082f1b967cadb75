//! Application keys this instance has lately seen to be valid, so that a
//! request with any other key is refused before its body is read or
//! parsed: an unknown key costs one lookup, then a 401, whatever the body.
//! A known key costs nothing more: the statement that does the work still
//! checks it (the authority: a rotated or deactivated key is refused by
//! the very next request on every instance), and an entry only decides
//! whether reading the body is worth it. Entries expire after a minute,
//! and this instance's own rotate, deactivate and delete forget them all.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a key is taken as known without a lookup.
const TTL: Duration = Duration::from_secs(60);
/// Entries kept at most (a few hundred bytes each).
const CAPACITY: usize = 10_000;

#[derive(Default)]
pub struct KnownKeys {
    /// Key hash → when it was found valid.
    seen: Mutex<HashMap<String, Instant>>,
}

impl KnownKeys {
    pub fn contains(&self, hash: &str) -> bool {
        let seen = self.seen.lock().expect("known keys");
        seen.get(hash).is_some_and(|at| at.elapsed() < TTL)
    }

    pub fn insert(&self, hash: &str) {
        let mut seen = self.seen.lock().expect("known keys");
        if seen.len() >= CAPACITY {
            seen.retain(|_, at| at.elapsed() < TTL);
            if seen.len() >= CAPACITY {
                seen.clear();
            }
        }
        seen.insert(hash.to_owned(), Instant::now());
    }

    /// After a key was rotated, or an application deactivated or deleted.
    pub fn forget_all(&self) {
        self.seen.lock().expect("known keys").clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_known_until_forgotten() {
        let known = KnownKeys::default();
        assert!(!known.contains("a"));
        known.insert("a");
        assert!(known.contains("a") && !known.contains("b"));
        known.forget_all();
        assert!(!known.contains("a"));
    }

    #[test]
    fn a_full_set_makes_room() {
        let known = KnownKeys::default();
        for i in 0..=CAPACITY {
            known.insert(&i.to_string());
        }
        assert!(known.contains(&CAPACITY.to_string()));
        assert!(known.seen.lock().unwrap().len() <= CAPACITY);
    }
}
