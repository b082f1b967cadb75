//! Stream tickets: for browsers, whose `EventSource` cannot send
//! `X-API-Key` or `Authorization`. A ticket is random, shown once, stored
//! only as SHA-256 (`event_tickets`), valid for [`TTL_SECONDS`] and for one
//! stream of one user of one application in one session.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::auth::api_key;

/// Marks tickets where they might show up (logs, support requests).
pub const PREFIX: &str = "amt_";
/// How long a ticket may wait for its stream: long enough to open one,
/// short enough that a ticket in a URL (history, a proxy's log) is useless.
pub const TTL_SECONDS: i32 = 60;

/// A new ticket and the hash to store.
pub fn generate() -> (String, String) {
    let bytes: [u8; 32] = rand::random();
    let ticket = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = api_key::hash(&ticket);
    (ticket, hash)
}

/// The hash a presented ticket is looked up by.
pub fn hash(ticket: &str) -> String {
    api_key::hash(ticket)
}
