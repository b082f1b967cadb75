//! A user's export: NDJSON, one JSON object per line, each with its
//! `kind`: first `user` (their row), then a `session` per session they
//! participate in (as list-user-sessions shows it: the session and their
//! participation, role and `joined_at`), then a `message` per message they
//! appended. Read a page at a time as the client takes the lines, each page
//! on a connection of its own given back before the next: memory stays
//! flat, and a client that leaves stops the export (the stream is dropped
//! with the response).

use std::io;

use futures_util::future::Either;
use futures_util::{Stream, StreamExt, stream};
use serde::Serialize;
use uuid::Uuid;

use crate::db::DbError;
use crate::db::participants::UserSession;
use crate::db::user_export::{self, AuthoredMessage, UserRecord};
use crate::limits::pool_share;
use crate::state::AppState;

/// Sessions per page (each at most 64 KiB of metadata).
const SESSIONS_PAGE: i64 = 50;
/// Messages per page (also bounded by bytes, `messages::PAGE_BYTES`).
const MESSAGES_PAGE: i64 = 500;

/// One line of the export.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Line {
    User(UserRecord),
    Session(UserSession),
    Message(AuthoredMessage),
}

/// Where the export is: what the next page reads.
#[derive(Debug, Clone, Copy)]
enum Next {
    /// Sessions after this id (the nil id: from the first).
    Sessions(Uuid),
    /// Messages after this (session, seq).
    Messages(Uuid, i32),
    Done,
}

/// The lines after the first (`first`, the user's row, read and the key
/// checked by the caller), as the body of a response.
pub fn lines(
    state: AppState,
    user_id: Uuid,
    first: UserRecord,
) -> impl Stream<Item = Result<Vec<u8>, io::Error>> + Send + 'static {
    // The body is polled after the handler returned: its pages still
    // count against the application's pool share.
    let claim = pool_share::current();
    let pages = stream::unfold(Next::Sessions(Uuid::nil()), move |next| {
        let state = state.clone();
        let claim = claim.clone();
        async move {
            let page = match next {
                Next::Done => return None,
                next => pool_share::carried(claim, page(&state, user_id, next)).await,
            };
            match page {
                Ok((lines, next)) => Some((Ok(lines), next)),
                Err(e) => {
                    tracing::warn!(error = %e, "user export stopped");
                    Some((Err(io::Error::other(e.to_string())), Next::Done))
                }
            }
        }
    });
    // One frame per line, written as the client takes it.
    let rest = pages.flat_map(|page| match page {
        Ok(lines) => Either::Left(stream::iter(lines.into_iter().map(|l| Ok(ndjson(&l))))),
        Err(e) => Either::Right(stream::once(std::future::ready(Err(e)))),
    });
    stream::once(std::future::ready(Ok(ndjson(&Line::User(first))))).chain(rest)
}

/// The page at `next`, and where the one after starts.
async fn page(state: &AppState, user_id: Uuid, next: Next) -> Result<(Vec<Line>, Next), DbError> {
    let client = state.db.client().await?;
    match next {
        Next::Sessions(after) => {
            let sessions =
                user_export::sessions_page(&*client, user_id, after, SESSIONS_PAGE).await?;
            let next = match sessions.last() {
                Some(last) if sessions.len() as i64 == SESSIONS_PAGE => {
                    Next::Sessions(last.session_id)
                }
                _ => Next::Messages(Uuid::nil(), 0),
            };
            Ok((sessions.into_iter().map(Line::Session).collect(), next))
        }
        Next::Messages(session_id, seq) => {
            let messages =
                user_export::messages_page(&*client, user_id, (session_id, seq), MESSAGES_PAGE)
                    .await?;
            // A page ends early at its byte budget: only an empty one ends.
            let next = match messages.last() {
                Some(last) => Next::Messages(last.session_id, last.seq),
                None => Next::Done,
            };
            Ok((messages.into_iter().map(Line::Message).collect(), next))
        }
        Next::Done => Ok((Vec::new(), Next::Done)),
    }
}

fn ndjson(value: &impl Serialize) -> Vec<u8> {
    let mut line = serde_json::to_vec(value).expect("rows serialize");
    line.push(b'\n');
    line
}
