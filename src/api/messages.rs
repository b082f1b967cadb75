//! A session's transcript: append messages, read them a page at a time,
//! export them all.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use deadpool_postgres::GenericClient;
use futures_util::future::Either;
use futures_util::{StreamExt, stream};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{JsonBody, PathParams, QueryParams};
use super::idempotency::{self, IdempotencyKey, JsonResponse};
use super::problems::{BodyProblems, CallerProblems, ReplayProblems, TargetProblems};
use super::sessions::{not_found, settle_action};
use super::validate::{self, Message};
use crate::auth::UserCaller;
use crate::db::messages::{self, Appended, Direction, NewMessages, StoredMessage};
use crate::db::sessions;
use crate::error::{ApiError, Problem};
use crate::events::Waited;
use crate::limits::pool_share;
use crate::roles::{self, Action};
use crate::search;
use crate::state::AppState;

/// Messages one append may carry.
const MAX_MESSAGES_PER_APPEND: usize = 100;
/// Page sizes of list-messages.
const DEFAULT_PAGE: i64 = 100;
const MAX_PAGE: i64 = 1000;
/// The longest long-poll (`wait`): well under any proxy's idle timeout.
const MAX_WAIT_SECONDS: u64 = 30;
/// Messages an export reads per query (one pooled connection each, given
/// back between pages), which bounds its memory whatever the transcript.
const EXPORT_PAGE: i64 = 500;
/// Appends larger than this (their messages' text) are checked against the
/// caller's role before their words are found.
const LARGE_APPEND_BYTES: usize = 64 * 1024;

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendMessages {
    /// 1 to 100 message objects, appended in order.
    #[schema(value_type = Vec<Object>, min_items = 1, max_items = 100)]
    messages: Vec<Message>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AppendedMessages {
    session_id: Uuid,
    /// Messages in the transcript after this append.
    message_count: i32,
    /// The numbers given to the appended messages, in order: first..=last.
    first_seq: i32,
    last_seq: i32,
}

async fn append_in(
    client: &impl GenericClient,
    state: &AppState,
    caller: &UserCaller,
    session_id: Uuid,
    body: &AppendMessages,
) -> Result<JsonResponse, ApiError> {
    let messages =
        serde_json::to_value(&body.messages).map_err(|e| ApiError::Internal(e.to_string()))?;
    let permitted = roles::roles_permitted(Action::AppendMessages);
    // Finding the words costs about 0.1 ms per KiB: for a large append,
    // first make sure the caller may append at all (one more round trip,
    // for large appends only).
    if validate::json_len(&messages) > LARGE_APPEND_BYTES {
        let allowed = sessions::allows(
            client,
            caller.key.hash(),
            session_id,
            caller.user_id,
            &permitted,
        )
        .await?;
        settle_action(
            allowed,
            session_id,
            Action::AppendMessages,
            "append messages",
        )?;
    }
    let documents = search::documents(
        &search::message_words(messages.as_array().map_or(&[], Vec::as_slice)),
        search::MAX_DOCUMENT_BYTES,
    );
    let outcome = messages::append(
        client,
        caller.key.hash(),
        session_id,
        caller.user_id,
        &permitted,
        &NewMessages {
            messages: &messages,
            documents: &documents,
        },
        state.settings.limits,
    )
    .await?;
    let appended = settle_action(
        outcome,
        session_id,
        Action::AppendMessages,
        "append messages",
    )?;
    let (message_count, first_seq) = match appended {
        Appended::Done {
            message_count,
            first_seq,
        } => (message_count, first_seq),
        Appended::TooManyMessages { limit } => {
            return Err(ApiError::Conflict(format!(
                "the session would hold more than {limit} messages (SESSION_MAX_MESSAGES)"
            )));
        }
        Appended::TooLarge { limit } => {
            return Err(ApiError::Conflict(format!(
                "the transcript would exceed {limit} bytes (SESSION_MAX_TRANSCRIPT_BYTES)"
            )));
        }
    };
    Ok(JsonResponse::new(
        StatusCode::OK,
        &AppendedMessages {
            session_id,
            message_count,
            first_seq,
            last_seq: message_count,
        },
        session_id,
        None,
    ))
}

/// Appends messages, numbered after the last one, in one statement: its
/// cost does not depend on the transcript's length, and concurrent appends
/// get contiguous numbers in commit order. Owners and editors; bumps the
/// caller's `last_active_at`. A session holds at most
/// `SESSION_MAX_MESSAGES` messages and `SESSION_MAX_TRANSCRIPT_BYTES` of
/// them (409 naming the limit). With `Idempotency-Key`, a retry does not
/// append again (and is a 410 if the session was deleted since).
#[utoipa::path(
    post, path = "/api/sessions/{session_id}/messages", operation_id = "append-messages",
    tag = "messages",
    params(
        ("session_id" = Uuid, Path, description = "The session's id"),
        ("Idempotency-Key" = Option<String>, Header,
         description = "Makes retries safe for 24 hours (1-255 visible ASCII characters)"),
    ),
    request_body = AppendMessages,
    responses(
        (status = 200, description = "Appended", body = AppendedMessages),
        CallerProblems, TargetProblems, BodyProblems, ReplayProblems,
        (status = 409, response = Problem),
    ),
    security(("api_key" = [], "bearer" = [])),
)]
pub async fn append(
    caller: UserCaller,
    State(state): State<AppState>,
    PathParams(session_id): PathParams<Uuid>,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(body): JsonBody<AppendMessages>,
) -> Result<Response, ApiError> {
    if !(1..=MAX_MESSAGES_PER_APPEND).contains(&body.messages.len()) {
        return Err(ApiError::Validation(format!(
            "messages must hold 1 to {MAX_MESSAGES_PER_APPEND} objects"
        )));
    }
    let mut client = state.db.client().await?;
    let response = match key {
        None => append_in(&*client, &state, &caller, session_id, &body).await?,
        Some(key) => {
            let route = format!("POST /api/sessions/{session_id}/messages");
            let hash = idempotency::request_hash(&route, caller.user_id, &body);
            idempotency::run_once(&mut client, &caller, &key, &hash, async |tx| {
                append_in(tx, &state, &caller, session_id, &body).await
            })
            .await?
        }
    };
    Ok(response.into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MessagesQuery {
    /// Oldest first, starting after this `seq` (default 0: from the
    /// first message).
    #[param(minimum = 0)]
    after_seq: Option<i32>,
    /// Newest first, starting before this `seq`. To read from the end,
    /// pass the session's `last_seq + 1` (or any larger number).
    #[param(minimum = 1)]
    before_seq: Option<i32>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// Long-poll (with `after_seq`): when no message follows `after_seq`
    /// yet, wait up to this many seconds (at most 30) for one; the answer
    /// comes as soon as one is appended, or is an empty page.
    #[param(minimum = 0, maximum = 30)]
    wait: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessagePage {
    session_id: Uuid,
    /// In the order asked for: oldest first with `after_seq`, newest first
    /// with `before_seq`.
    messages: Vec<StoredMessage>,
    /// Reading forwards: pass as `after_seq` for the next page; `null` at
    /// the end.
    next_after_seq: Option<i32>,
    /// Reading backwards: pass as `before_seq` for the next (older) page;
    /// `null` at the first message.
    next_before_seq: Option<i32>,
}

/// A page of the transcript: oldest first from `after_seq`, or newest
/// first from `before_seq` (not both). Any participant. A keyset read of
/// the primary key: each page costs the same wherever it starts. With
/// `after_seq` and `wait=S`, a long-poll: when nothing follows `after_seq`
/// yet, the answer waits (holding no database connection) until a message
/// is appended, or comes after S seconds with an empty page. A waiting
/// long-poll counts as a stream for `EVENTS_MAX_STREAMS` and
/// `EVENTS_MAX_STREAMS_PER_USER`.
#[utoipa::path(
    get, path = "/api/sessions/{session_id}/messages", operation_id = "list-messages",
    tag = "messages",
    params(("session_id" = Uuid, Path, description = "The session's id"), MessagesQuery),
    responses(
        (status = 200, description = "A page of messages", body = MessagePage),
        CallerProblems, TargetProblems, (status = 422, response = Problem),
    ),
    security(("api_key" = [], "bearer" = [])),
)]
pub async fn list(
    caller: UserCaller,
    State(state): State<AppState>,
    PathParams(session_id): PathParams<Uuid>,
    QueryParams(query): QueryParams<MessagesQuery>,
) -> Result<Json<MessagePage>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::Validation(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    let direction = match (query.after_seq, query.before_seq) {
        (Some(_), Some(_)) => {
            return Err(ApiError::Validation(
                "give after_seq (forwards) or before_seq (backwards), not both".to_owned(),
            ));
        }
        (Some(after), None) if after < 0 => {
            return Err(ApiError::Validation(
                "after_seq must be 0 or more".to_owned(),
            ));
        }
        (None, Some(before)) if before < 1 => {
            return Err(ApiError::Validation(
                "before_seq must be 1 or more".to_owned(),
            ));
        }
        (after, None) => Direction::After(after.unwrap_or(0)),
        (None, Some(before)) => Direction::Before(before),
    };
    let wait = match (query.wait, direction) {
        (None | Some(0), _) => None,
        (Some(wait), _) if wait > MAX_WAIT_SECONDS => {
            return Err(ApiError::Validation(format!(
                "wait must be between 0 and {MAX_WAIT_SECONDS} seconds"
            )));
        }
        (Some(_), Direction::Before(_)) => {
            return Err(ApiError::Validation(
                "wait (a long-poll) goes with after_seq, not before_seq".to_owned(),
            ));
        }
        (Some(wait), Direction::After(after)) => Some((
            after,
            tokio::time::Instant::now() + Duration::from_secs(wait),
        )),
    };
    let mut page = read_page(&state, &caller, session_id, direction, limit).await?;
    if let Some((after, deadline)) = wait
        && page.messages.is_empty()
    {
        page = long_poll(&state, &caller, session_id, after, limit, deadline).await?;
    }
    // Pages end at `limit` messages or at `messages::PAGE_BYTES`, so
    // whether more follow is read off the numbers (they have no gaps).
    let last = page.messages.last().map(|m| m.seq);
    let next = match direction {
        Direction::After(_) => last.filter(|&seq| seq < page.message_count),
        Direction::Before(_) => last.filter(|&seq| seq > 1),
    };
    let messages = page.messages;
    let (next_after_seq, next_before_seq) = match direction {
        Direction::After(_) => (next, None),
        Direction::Before(_) => (None, next),
    };
    Ok(Json(MessagePage {
        session_id,
        messages,
        next_after_seq,
        next_before_seq,
    }))
}

async fn read_page(
    state: &AppState,
    caller: &UserCaller,
    session_id: Uuid,
    direction: Direction,
    limit: i64,
) -> Result<messages::Page, ApiError> {
    let client = state.db.client().await?;
    messages::page(
        &*client,
        caller.key.hash(),
        session_id,
        caller.user_id,
        direction,
        limit,
    )
    .await?
    .ok_or_else(|| not_found(session_id))
}

/// Waits until a message follows `after` (or `deadline`, or shutdown),
/// then reads the page; each read checks the caller again. Subscribed
/// before the second read, so an append committed after it wakes the wait.
async fn long_poll(
    state: &AppState,
    caller: &UserCaller,
    session_id: Uuid,
    after: i32,
    limit: i64,
    deadline: tokio::time::Instant,
) -> Result<messages::Page, ApiError> {
    let _place = state.events.admit(caller.key.hash(), caller.user_id)?;
    let mut subscription = state.events.subscribe(session_id).await?;
    let direction = Direction::After(after);
    loop {
        let page = read_page(state, caller, session_id, direction, limit).await?;
        if !page.messages.is_empty() {
            return Ok(page);
        }
        match state
            .events
            .wait_for_message(&mut subscription, after, deadline)
            .await
        {
            Waited::Message | Waited::Changed => {}
            Waited::TimedOut | Waited::ShutDown => {
                return read_page(state, caller, session_id, direction, limit).await;
            }
        }
    }
}

/// The whole session as NDJSON: the session object on the first line, then
/// one line per message `{seq, created_at, message}`, oldest first, read
/// from the database a page at a time as the client takes them (memory
/// stays flat whatever the transcript's length). Any participant. The
/// transcript is the one at the start of the export; should the session be
/// deleted meanwhile, the response ends early (without its last line).
#[utoipa::path(
    get, path = "/api/sessions/{session_id}/export", operation_id = "export-session",
    tag = "messages",
    params(("session_id" = Uuid, Path, description = "The session's id")),
    responses(
        (status = 200, description = "The session, then its messages, one JSON object per line",
         content_type = "application/x-ndjson"),
        CallerProblems, TargetProblems,
    ),
    security(("api_key" = [], "bearer" = [])),
)]
pub async fn export(
    caller: UserCaller,
    State(state): State<AppState>,
    PathParams(session_id): PathParams<Uuid>,
) -> Result<Response, ApiError> {
    let session = {
        let client = state.db.client().await?;
        sessions::for_export(&*client, caller.key.hash(), session_id, caller.user_id)
            .await?
            .ok_or_else(|| not_found(session_id))?
    };
    let through = session.last_seq;
    let first = ndjson_line(&session);
    // The body is polled after this handler returned: its pages still
    // count against the application's pool share.
    let claim = pool_share::current();
    // Pages after the first line: (last seq sent, done).
    let pages = stream::unfold((0, false), move |(after, done)| {
        let state = state.clone();
        let claim = claim.clone();
        async move {
            if done || after >= through {
                return None;
            }
            let page = pool_share::carried(claim, async {
                let client = state.db.client().await?;
                messages::export_page(&*client, session_id, after, through, EXPORT_PAGE).await
            })
            .await;
            match page {
                Ok(page) if page.is_empty() => Some((
                    Err(std::io::Error::other(
                        "the session was deleted during its export",
                    )),
                    (after, true),
                )),
                Ok(page) => {
                    let last = page.last().map_or(after, |m| m.seq);
                    Some((Ok(page), (last, false)))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "export stopped");
                    Some((Err(std::io::Error::other(e.to_string())), (after, true)))
                }
            }
        }
    });
    // One frame per message, written as the client takes it: a reader
    // that stops holds the page's rows and one line, not the page's text.
    let lines = pages.flat_map(|page| match page {
        Ok(rows) => Either::Left(stream::iter(rows.into_iter().map(|m| Ok(ndjson_line(&m))))),
        Err(e) => Either::Right(stream::once(std::future::ready(Err(e)))),
    });
    let body = stream::once(async move { Ok(first) }).chain(lines);
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(body),
    )
        .into_response())
}

fn ndjson_line(value: &impl Serialize) -> Vec<u8> {
    let mut line = serde_json::to_vec(value).expect("rows serialize");
    line.push(b'\n');
    line
}
