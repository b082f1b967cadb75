//! One user's data, across sessions: erasure (admin only: everything
//! about them goes, or stops naming them) and export (the user
//! themself: an NDJSON stream of their sessions and the messages they
//! appended). Issue 18, GDPR articles 17 and 20.

pub mod erasure;
pub mod export;
