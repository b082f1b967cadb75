//! Application API keys: random, recognisable, stored only as a hash.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Marks our keys in logs, secret scanners and support requests.
pub const KEY_PREFIX: &str = "amp_";

/// A new key (shown to the admin once) and the hash to store.
pub fn generate() -> (String, String) {
    let bytes: [u8; 32] = rand::random();
    let key = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash(&key);
    (key, hash)
}

/// Lowercase hex SHA-256: what `applications.api_key_hash` holds. Keys carry
/// 256 bits of entropy, so a fast unsalted hash is enough to make a leaked
/// table useless.
pub fn hash(key: &str) -> String {
    format!("{:x}", Sha256::digest(key.as_bytes()))
}

/// Constant-time equality that also hides the length of the expected value.
pub fn secrets_match(presented: &str, expected: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.ct_eq(&b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_random_and_hashed() {
        let (k1, h1) = generate();
        let (k2, h2) = generate();
        assert!(k1.starts_with(KEY_PREFIX));
        assert_eq!(
            k1.len(),
            KEY_PREFIX.len() + 43,
            "32 bytes in unpadded base64url"
        );
        assert_ne!(k1, k2);
        assert_eq!(h1, hash(&k1));
        assert_ne!(h1, h2);
        assert_eq!(h1.len(), 64);
        assert!(!h1.contains(&k1));
    }

    #[test]
    fn secrets_match_only_when_equal() {
        assert!(secrets_match("admin-key", "admin-key"));
        assert!(!secrets_match("admin-key", "admin-kez"));
        assert!(!secrets_match("admin", "admin-key"));
    }
}
