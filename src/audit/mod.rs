//! The audit trail (migration V20, `audit_events`): who did what to which
//! target, written by the statement that does it. This module holds what
//! every such statement shares: the action names and the request's
//! Functions invocation id.

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

/// The Functions invocation id of the request, when the host sent one
/// (`telemetry::invocation_id`), at most 64 bytes as the column holds: a
/// caller can forge the forwarding host's header, so it is evidence of
/// which invocation only together with the host's own logs.
#[derive(Debug, Clone, Default)]
pub struct InvocationId(pub Option<String>);

impl InvocationId {
    /// The statement parameter: the id, or `NULL` when none was sent.
    pub fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

/// The longest invocation id kept (the host's are 36-byte GUIDs).
const MAX_LEN: usize = 64;

impl<S: Send + Sync> FromRequestParts<S> for InvocationId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(InvocationId(
            crate::telemetry::invocation_id(&parts.headers)
                .map(|id| id.chars().take(MAX_LEN).collect()),
        ))
    }
}

/// The `action` of each audited kind of event. One list, so that the
/// admin's filter and the documentation name the same things.
pub mod action {
    pub const APPLICATION_REGISTERED: &str = "application.registered";
    pub const APPLICATION_KEY_ROTATED: &str = "application.key_rotated";
    pub const APPLICATION_DEACTIVATED: &str = "application.deactivated";
    pub const APPLICATION_REACTIVATED: &str = "application.reactivated";
    pub const APPLICATION_DELETED: &str = "application.deleted";
    pub const APPLICATION_LIMITS_CHANGED: &str = "application.limits_changed";
    pub const CONFIG_SHARED: &str = "config.shared";
    pub const CONFIG_RETIRED: &str = "config.retired";
    pub const CONFIG_DELETED: &str = "config.deleted";
    pub const SESSION_TRASHED: &str = "session.trashed";
    pub const SESSION_RESTORED: &str = "session.restored";
    pub const SESSION_DELETED: &str = "session.deleted";
    pub const SESSION_PURGED: &str = "session.purged";
    pub const PARTICIPANT_ADDED: &str = "participant.added";
    pub const PARTICIPANT_ROLE_CHANGED: &str = "participant.role_changed";
    pub const PARTICIPANT_REMOVED: &str = "participant.removed";
    pub const USER_ERASED: &str = "user.erased";
}
