//! What one session may hold (the per-request bounds are in the API).

use super::{SettingsError, Vars};

#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// `SESSION_MAX_MESSAGES`: messages in one transcript.
    pub max_messages: i32,
    /// `SESSION_MAX_TRANSCRIPT_BYTES`: the transcript's size, counted as
    /// the messages' JSON text.
    pub max_transcript_bytes: i64,
    /// `SESSION_MAX_FORK_DEPTH`: sessions one transcript may be read from
    /// (a fork, its source, and their ancestors that added messages). Each
    /// is one more index probe per word of a search.
    pub max_fork_depth: i32,
}

pub(super) fn from_vars(vars: &Vars<'_>) -> Result<SessionLimits, SettingsError> {
    let limits = SessionLimits {
        max_messages: vars.parse_or("SESSION_MAX_MESSAGES", 200_000)?,
        max_transcript_bytes: vars.parse_or("SESSION_MAX_TRANSCRIPT_BYTES", 256 * 1024 * 1024)?,
        max_fork_depth: vars.parse_or("SESSION_MAX_FORK_DEPTH", 16)?,
    };
    if limits.max_messages < 1 {
        return Err(SettingsError::new(
            "SESSION_MAX_MESSAGES",
            "must be at least 1",
        ));
    }
    if limits.max_transcript_bytes < 1 {
        return Err(SettingsError::new(
            "SESSION_MAX_TRANSCRIPT_BYTES",
            "must be at least 1",
        ));
    }
    if limits.max_fork_depth < 1 {
        return Err(SettingsError::new(
            "SESSION_MAX_FORK_DEPTH",
            "must be at least 1",
        ));
    }
    Ok(limits)
}
