//! Live sessions over HTTP: the event stream of a session (Server-Sent
//! Events) and the tickets browsers open it with. The work is in
//! `crate::events`.

use axum::Json;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{PathParams, QueryParams};
use super::problems::{CallerProblems, TargetProblems};
use super::sessions::not_found;
use crate::auth::{API_KEY_HEADER, UserCaller};
use crate::db::Guarded;
use crate::db::events::{self as statements, Opened, TicketOpened};
use crate::error::{ApiError, Problem};
use crate::events::payloads::{SessionWithRole, Snapshot, StreamEvent};
use crate::events::stream::{self, Held, Opening};
use crate::events::{sse, tickets};
use crate::limits::pool_share;
use crate::state::AppState;

/// The header a reconnecting client sends with the last `id` it received.
const LAST_EVENT_ID: &str = "last-event-id";

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Send the messages after this `seq` first (`Last-Event-ID` wins when
    /// both are sent). Without either, the stream starts after the
    /// snapshot's `last_seq`.
    #[param(minimum = 0)]
    after_seq: Option<i32>,
    /// A ticket from create-events-ticket, instead of `X-API-Key` and
    /// `Authorization` (which a browser's `EventSource` cannot send).
    // Read by `StreamCaller`; declared here for the OpenAPI document and
    // so that `deny_unknown_fields` accepts it.
    #[allow(dead_code)]
    ticket: Option<String>,
}

/// Who opens a stream: an application and a user by their headers (counted
/// against the rate limits like any request), or a ticket (counted when
/// it was created).
pub enum StreamCaller {
    Headers(UserCaller),
    Ticket(String),
}

impl FromRequestParts<AppState> for StreamCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        #[derive(Deserialize)]
        struct Ticket {
            ticket: Option<String>,
        }
        let ticket = Query::<Ticket>::try_from_uri(&parts.uri)
            .ok()
            .and_then(|query| query.0.ticket);
        let has_headers = parts.headers.contains_key(API_KEY_HEADER)
            || parts.headers.contains_key(header::AUTHORIZATION);
        match ticket {
            None => Ok(Self::Headers(
                UserCaller::from_request_parts(parts, state).await?,
            )),
            Some(_) if has_headers => Err(ApiError::BadRequest(
                "send either a ticket or X-API-Key and Authorization, not both".to_owned(),
            )),
            Some(ticket) => Ok(Self::Ticket(ticket)),
        }
    }
}

/// Follows a session live, as Server-Sent Events (`text/event-stream`).
/// Any participant, with `X-API-Key` and `Authorization`, or with a ticket
/// (`?ticket=`, from create-events-ticket) where headers cannot be sent.
///
/// Events, in order:
/// - `snapshot` (first): `{session, participants}`, as get-session and
///   list-participants return them.
/// - `message`, `id` = its `seq`: `{seq, created_at, message}` as
///   list-messages returns it. First every message after `Last-Event-ID`
///   (or `after_seq`), then each one appended, exactly once and in order.
/// - `session`: the session (as get-session) after its status or metadata
///   changed.
/// - `participants`: `{session_id, participants}` after someone was added,
///   changed role or was removed.
/// - `end` (last): `{reason}`: `removed`, `deleted` (moved to the trash,
///   or deleted for good), `key_revoked` (the
///   application's key was rotated, or the application deactivated or
///   deleted), `max_duration` (`EVENTS_MAX_STREAM_SECONDS`, default 120)
///   or `shutdown`. After the last two a `retry:` hint precedes it: reconnect
///   with `Last-Event-ID` (or `after_seq`) and nothing is lost or repeated.
///
/// A comment line (`: heartbeat`) comes at least every 15 seconds. Each
/// instance holds at most `EVENTS_MAX_STREAMS` streams (503 beyond),
/// `EVENTS_APP_SHARE` of them for one application and
/// `EVENTS_MAX_STREAMS_PER_USER` for one user (429 beyond).
#[utoipa::path(
    get, path = "/api/sessions/{session_id}/events", operation_id = "session-events",
    tag = "events",
    params(
        ("session_id" = Uuid, Path, description = "The session's id"),
        ("Last-Event-ID" = Option<i32>, Header,
         description = "The last message `seq` the client received: resume after it"),
        EventsQuery,
    ),
    responses(
        (status = 200, description = "The session's events, until an `end` event; \
                                      each event's `data` is one `EventData` object",
         content_type = "text/event-stream", body = StreamEvent),
        CallerProblems, TargetProblems, (status = 422, response = Problem),
    ),
    security(("api_key" = [], "bearer" = []), ()),
)]
pub async fn stream(
    State(state): State<AppState>,
    PathParams(session_id): PathParams<Uuid>,
    QueryParams(query): QueryParams<EventsQuery>,
    headers: HeaderMap,
    caller: StreamCaller,
) -> Result<Response, ApiError> {
    let after = position(&headers, query.after_seq)?;
    // Subscribed before the session is read: whatever changes after that
    // read reaches the stream.
    let (place, subscription, key, user, opened) = match caller {
        StreamCaller::Headers(caller) => {
            let place = state.events.admit(caller.key.hash(), caller.user_id)?;
            let subscription = state.events.subscribe(session_id).await?;
            let client = state.db.client().await?;
            let opened = statements::open(&*client, caller.key.hash(), session_id, caller.user_id)
                .await?
                .ok_or_else(|| not_found(session_id))?;
            let key = caller.key.hash().map(str::to_owned);
            (place, subscription, key, caller.user_id, opened)
        }
        StreamCaller::Ticket(ticket) => {
            let subscription = state.events.subscribe(session_id).await?;
            let used = {
                let client = state.db.client().await?;
                statements::open_with_ticket(&*client, &tickets::hash(&ticket), session_id).await?
            };
            let TicketOpened::Used { key, user, opened } = used else {
                return Err(ApiError::Unauthorized {
                    detail: format!(
                        "the ticket is unknown, expired or used: tickets are single-use and \
                         valid for {} s; get a new one from create-events-ticket",
                        tickets::TTL_SECONDS
                    ),
                    challenge: "Ticket realm=\"amplifier\"".to_owned(),
                });
            };
            // The stream's own reads count against its application's share.
            pool_share::claim(key.as_deref());
            let opened = *opened.ok_or_else(|| not_found(session_id))?;
            let place = state.events.admit(key.as_deref(), user)?;
            (place, subscription, key, user, opened)
        }
    };
    let Opened {
        app_id,
        role,
        state: session,
    } = opened;
    let snapshot = sse::event(
        "snapshot",
        None,
        &Snapshot {
            session: SessionWithRole {
                session: &session.session,
                role,
            },
            participants: &session.participants,
        },
    );
    let head = session.session.message_count;
    let held = Held {
        subscription,
        app: state.events.hub().watch_app(&app_id),
        place,
        claim: pool_share::current(),
    };
    let opening = Opening {
        session_id,
        user,
        key,
        app_id,
        role,
        after: after.unwrap_or(head),
        head,
        snapshot,
    };
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            // Proxies that buffer responses (nginx) pass this one through.
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        stream::body(state.events.clone(), held, opening),
    )
        .into_response())
}

/// Where a stream starts: `Last-Event-ID` (what a reconnecting client
/// sends), else `after_seq`.
fn position(headers: &HeaderMap, after_seq: Option<i32>) -> Result<Option<i32>, ApiError> {
    let invalid = |what: &str| ApiError::Validation(format!("{what} must be 0 or more"));
    let last_event_id = match headers
        .get(LAST_EVENT_ID)
        .map(|v| v.to_str().map(str::trim))
    {
        None | Some(Ok("")) => None,
        Some(Ok(value)) => Some(
            value
                .parse::<i32>()
                .ok()
                .filter(|&seq| seq >= 0)
                .ok_or_else(|| invalid("Last-Event-ID (a message's seq)"))?,
        ),
        Some(Err(_)) => return Err(invalid("Last-Event-ID (a message's seq)")),
    };
    if after_seq.is_some_and(|seq| seq < 0) {
        return Err(invalid("after_seq"));
    }
    Ok(last_event_id.or(after_seq))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventsTicket {
    /// Pass it once as `?ticket=` to session-events, before `expires_at`.
    ticket: String,
    expires_at: DateTime<Utc>,
    /// The stream's URL with this ticket (add `&after_seq=N` to resume).
    url: String,
}

/// A stream ticket, for clients that cannot send headers with a stream
/// (a browser's `EventSource`): single-use, valid for 60 seconds, for this
/// user, application key and session only, and never logged. Any
/// participant. A stream ended by `max_duration` or `shutdown` is resumed
/// with a new ticket and `after_seq` = the last `id` received.
#[utoipa::path(
    post, path = "/api/sessions/{session_id}/events/tickets",
    operation_id = "create-events-ticket", tag = "events",
    params(("session_id" = Uuid, Path, description = "The session's id")),
    responses(
        (status = 201, description = "A new ticket", body = EventsTicket),
        CallerProblems, TargetProblems,
    ),
    security(("api_key" = [], "bearer" = [])),
)]
pub async fn create_ticket(
    caller: UserCaller,
    State(state): State<AppState>,
    PathParams(session_id): PathParams<Uuid>,
) -> Result<(StatusCode, Json<EventsTicket>), ApiError> {
    let (ticket, hash) = tickets::generate();
    let client = state.db.client().await?;
    let issued = statements::issue_ticket(
        &*client,
        caller.key.hash(),
        session_id,
        caller.user_id,
        &hash,
        tickets::TTL_SECONDS,
    )
    .await?;
    let Guarded::Seen {
        done: Some(expires_at),
        ..
    } = issued
    else {
        return Err(not_found(session_id));
    };
    let url = format!("/api/sessions/{session_id}/events?ticket={ticket}");
    Ok((
        StatusCode::CREATED,
        Json(EventsTicket {
            ticket,
            expires_at,
            url,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_event_id_wins_over_after_seq_and_must_be_a_seq() {
        let mut headers = HeaderMap::new();
        assert_eq!(position(&headers, Some(3)).unwrap(), Some(3));
        headers.insert(LAST_EVENT_ID, "7".parse().unwrap());
        assert_eq!(position(&headers, Some(3)).unwrap(), Some(7));
        headers.insert(LAST_EVENT_ID, "".parse().unwrap());
        assert_eq!(position(&headers, None).unwrap(), None);
        headers.insert(LAST_EVENT_ID, "abc".parse().unwrap());
        assert!(position(&headers, None).is_err());
        assert!(position(&HeaderMap::new(), Some(-1)).is_err());
    }
}
