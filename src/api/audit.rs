//! The audit trail: the admin lists every recorded action, with filters;
//! a session's owners read that session's trail. Both newest first, a
//! page at a time.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::configs::PageQuery;
use super::cursor;
use super::extract::{PathParams, QueryParams};
use super::problems::{CallerProblems, TargetProblems};
use super::sessions::settle_action;
use crate::auth::{Admin, UserCaller};
use crate::db::audit::{self, AuditEvent, AuditFilter};
use crate::error::{ApiError, Problem};
use crate::roles::{self, Action};
use crate::state::AppState;

/// The longest `action` and `app_id` filters (the columns' widths).
const MAX_ACTION_CHARS: usize = 64;
const MAX_APP_ID_CHARS: usize = 100;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Page size, 1 to 100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page (pass the same filters).
    cursor: Option<String>,
    /// Only this action, e.g. `application.key_rotated` (see the README
    /// for the list).
    #[param(max_length = 64)]
    action: Option<String>,
    /// Only events about targets of this application.
    #[param(max_length = 100)]
    app_id: Option<String>,
    /// Only events concerning this session.
    session_id: Option<Uuid>,
    /// Only events this user did, or that are about them.
    user_id: Option<Uuid>,
    /// Only events at or after this time (RFC 3339).
    since: Option<DateTime<Utc>>,
    /// Only events before this time (RFC 3339).
    until: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventPage {
    events: Vec<AuditEvent>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

/// Where the previous page ended: its last (oldest) event.
#[derive(Debug, Serialize, Deserialize)]
struct EventsAfter {
    event_id: i64,
}

/// The page size and the `event_id` the page starts below.
fn position(limit: Option<i64>, cursor: Option<&str>) -> Result<(i64, i64), ApiError> {
    let limit = cursor::limit(limit)?;
    let before = match cursor {
        Some(cursor) => cursor::decode::<EventsAfter>(cursor)?.event_id,
        None => i64::MAX,
    };
    Ok((limit, before))
}

fn page(rows: Vec<AuditEvent>, limit: i64) -> AuditEventPage {
    let (events, next_cursor) =
        cursor::page(rows, limit, cursor::MAX_PAGE_BYTES, |e: &AuditEvent| {
            EventsAfter {
                event_id: e.event_id,
            }
        });
    AuditEventPage {
        events,
        next_cursor,
    }
}

fn at_most(name: &str, value: Option<&str>, max: usize) -> Result<(), ApiError> {
    match value {
        Some(value) if value.chars().count() > max => Err(ApiError::Validation(format!(
            "{name} must be at most {max} characters"
        ))),
        _ => Ok(()),
    }
}

/// Every recorded action, newest first, a page at a time: applications
/// registered, rotated, deactivated, reactivated, deleted or given other
/// limits; configs shared, retired, deleted; sessions trashed, restored,
/// deleted, purged; participants added, re-roled, removed; users erased.
/// Filters combine (all must hold). Admin only.
#[utoipa::path(
    get, path = "/api/audit-events", operation_id = "list-audit-events", tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of events", body = AuditEventPage),
        CallerProblems, (status = 422, response = Problem),
    ),
    security(("api_key" = [])),
)]
pub async fn list(
    _: Admin,
    State(state): State<AppState>,
    QueryParams(query): QueryParams<AuditQuery>,
) -> Result<Json<AuditEventPage>, ApiError> {
    let (limit, before) = position(query.limit, query.cursor.as_deref())?;
    at_most("action", query.action.as_deref(), MAX_ACTION_CHARS)?;
    at_most("app_id", query.app_id.as_deref(), MAX_APP_ID_CHARS)?;
    let filter = AuditFilter {
        action: query.action.as_deref(),
        app_id: query.app_id.as_deref(),
        session_id: query.session_id,
        user_id: query.user_id,
        since: query.since,
        until: query.until,
    };
    let client = state.db.client().await?;
    let rows = audit::list(&*client, &filter, before, limit + 1).await?;
    Ok(Json(page(rows, limit)))
}

/// The session's audit trail (participants added, re-roled and removed,
/// the session trashed or restored), newest first, a page at a time.
/// Owners only: other participants get a 403, anyone else a 404.
#[utoipa::path(
    get, path = "/api/sessions/{session_id}/audit-events",
    operation_id = "list-session-audit-events", tag = "audit",
    params(("session_id" = Uuid, Path, description = "The session's id"), PageQuery),
    responses(
        (status = 200, description = "A page of the session's events", body = AuditEventPage),
        CallerProblems, TargetProblems, (status = 422, response = Problem),
    ),
    security(("api_key" = [], "bearer" = [])),
)]
pub async fn session_trail(
    caller: UserCaller,
    State(state): State<AppState>,
    PathParams(session_id): PathParams<Uuid>,
    QueryParams(query): QueryParams<PageQuery>,
) -> Result<Json<AuditEventPage>, ApiError> {
    let (limit, before) = position(query.limit, query.cursor.as_deref())?;
    let permitted = roles::roles_permitted(Action::ReadAuditTrail);
    let client = state.db.client().await?;
    let outcome = audit::session_trail(
        &*client,
        caller.key.hash(),
        session_id,
        caller.user_id,
        &permitted,
        before,
        limit + 1,
    )
    .await?;
    let rows = settle_action(
        outcome,
        session_id,
        Action::ReadAuditTrail,
        "read the audit trail",
    )?;
    Ok(Json(page(rows, limit)))
}
