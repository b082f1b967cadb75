//! The statements of live sessions (`crate::events`): opening a stream
//! (the caller's check and the session's state in one statement, with
//! headers or with a ticket), the state and head a session's feed reads,
//! tickets, and which keys are still valid.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

use super::DbError;
use super::caller::{Guarded, guarded_select, role, verdict, verdict_from, with_caller};
use super::participants::Participant;
use super::sessions::Session;
use crate::roles::Role;

/// The participants of session `s`, as arrays (one row, however many),
/// in list-participants' order.
macro_rules! participants_of_s {
    () => {
        " LEFT JOIN LATERAL (
             SELECT array_agg(user_id ORDER BY joined_at, user_id) AS participant_ids,
                    array_agg(role::text ORDER BY joined_at, user_id) AS participant_roles,
                    array_agg(joined_at ORDER BY joined_at, user_id) AS participant_joined,
                    array_agg(last_active_at ORDER BY joined_at, user_id) AS participant_active,
                    array_agg(permissions ORDER BY joined_at, user_id) AS participant_permissions
             FROM session_participants WHERE session_id = s.session_id
         ) pp ON true"
    };
}

/// A session as its participants read it, and its participants.
#[derive(Debug)]
pub struct SessionState {
    pub session: Session,
    pub participants: Vec<Participant>,
}

impl SessionState {
    /// The role of `user`, if they participate.
    pub fn role_of(&self, user: Uuid) -> Option<Role> {
        self.participants
            .iter()
            .find(|p| p.user_id == user)
            .map(|p| p.role)
    }

    /// Reads [`participants_of_s`] and the session's columns; `None` when
    /// there is no session.
    fn from_row(row: &Row) -> Result<Option<Self>, DbError> {
        let Some(session_id) = row.get::<_, Option<Uuid>>("session_id") else {
            return Ok(None);
        };
        let ids: Vec<Uuid> = row
            .get::<_, Option<Vec<Uuid>>>("participant_ids")
            .unwrap_or_default();
        let roles: Vec<String> = row
            .get::<_, Option<Vec<String>>>("participant_roles")
            .unwrap_or_default();
        let joined: Vec<DateTime<Utc>> = row
            .get::<_, Option<Vec<DateTime<Utc>>>>("participant_joined")
            .unwrap_or_default();
        let active: Vec<Option<DateTime<Utc>>> = row
            .get::<_, Option<Vec<Option<DateTime<Utc>>>>>("participant_active")
            .unwrap_or_default();
        let permissions: Vec<Option<Value>> = row
            .get::<_, Option<Vec<Option<Value>>>>("participant_permissions")
            .unwrap_or_default();
        let participants = ids
            .into_iter()
            .zip(roles)
            .zip(joined)
            .zip(active)
            .zip(permissions)
            .map(
                |((((user_id, r), joined_at), last_active_at), permissions)| {
                    Ok(Participant {
                        session_id,
                        user_id,
                        role: role(&r)?,
                        joined_at,
                        last_active_at,
                        permissions: permissions.unwrap_or_default(),
                    })
                },
            )
            .collect::<Result<_, DbError>>()?;
        Ok(Some(Self {
            session: Session::from(row),
            participants,
        }))
    }
}

/// A stream's first statement: who opened it, and what the session is.
#[derive(Debug)]
pub struct Opened {
    /// The caller's application.
    pub app_id: String,
    pub role: Role,
    pub state: SessionState,
}

fn opened(row: &Row) -> Result<Option<Opened>, DbError> {
    match Guarded::from_row(row, SessionState::from_row)? {
        Guarded::Seen {
            role,
            done: Some(state),
        } => Ok(Some(Opened {
            app_id: row.get("app_id"),
            role,
            state,
        })),
        _ => Ok(None),
    }
}

/// The session and its participants if `user` participates (`Ok(None)`
/// otherwise, or if it does not exist), with the key's verdict.
#[tracing::instrument(name = "events.open", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "events.open",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn open(
    client: &impl GenericClient,
    key: Option<&str>,
    session_id: Uuid,
    user: Uuid,
) -> Result<Option<Opened>, DbError> {
    let stmt = client
        .prepare_cached(concat!(
            with_caller!(" "),
            guarded_select!(
                ", s.*, pp.*",
                concat!(
                    " LEFT JOIN sessions s ON caller.role IS NOT NULL AND s.session_id = $2",
                    participants_of_s!()
                )
            )
        ))
        .await?;
    let row = client.query_one(&stmt, &[&key, &session_id, &user]).await?;
    opened(&row)
}

/// What a ticket opened.
#[derive(Debug)]
pub enum TicketOpened {
    /// No such ticket for this session: never issued, expired, or used.
    Unknown,
    /// The ticket was valid, and is now used up: it was issued to this
    /// key and user; `opened` as [`open`] would say.
    Used {
        key: Option<String>,
        user: Uuid,
        opened: Option<Box<Opened>>,
    },
}

/// Consumes ticket `$1` (its SHA-256) for session `$2`, and opens the
/// stream as its key and user: one statement, so a ticket is used once
/// on whichever instance, and the check is as fresh as with headers.
#[tracing::instrument(name = "events.open_with_ticket", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "events.open_with_ticket",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn open_with_ticket(
    client: &impl GenericClient,
    ticket_hash: &str,
    session_id: Uuid,
) -> Result<TicketOpened, DbError> {
    let stmt = client
        .prepare_cached(concat!(
            "WITH ticket AS (
                 DELETE FROM event_tickets
                 WHERE ticket_hash = $1 AND session_id = $2 AND expires_at > now()
                 RETURNING api_key_hash, user_id
             ), app AS (
                 SELECT a.app_id, a.is_active FROM applications a JOIN ticket t
                 ON a.api_key_hash = t.api_key_hash
                 UNION ALL
                 SELECT '",
            crate::settings::dev_app_id!(),
            "'::varchar, true FROM ticket WHERE ticket.api_key_hash IS NULL
             ), caller AS (
                 SELECT p.role FROM session_participants p
                 JOIN sessions s ON s.session_id = p.session_id AND s.trashed_at IS NULL
                 JOIN ticket t ON p.user_id = t.user_id
                 JOIN app ON app.is_active
                 WHERE p.session_id = $2
             ) ",
            verdict!(),
            ", caller.role AS caller_role, ticket.api_key_hash AS ticket_key,
               ticket.user_id AS ticket_user, s.*, pp.*",
            verdict_from!(),
            " LEFT JOIN caller ON true LEFT JOIN ticket ON true
              LEFT JOIN sessions s ON caller.role IS NOT NULL AND s.session_id = $2",
            participants_of_s!()
        ))
        .await?;
    let row = client
        .query_one(&stmt, &[&ticket_hash, &session_id])
        .await?;
    let Some(user) = row.get::<_, Option<Uuid>>("ticket_user") else {
        return Ok(TicketOpened::Unknown);
    };
    Ok(TicketOpened::Used {
        key: row.get("ticket_key"),
        user,
        opened: opened(&row)?.map(Box::new),
    })
}

/// The session's state as a feed reads it for all its subscribers (each
/// was checked when it opened); `None` once the session is deleted or in
/// the trash (its streams end with `deleted` either way).
#[tracing::instrument(name = "events.state", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "events.state",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn state(
    client: &impl GenericClient,
    session_id: Uuid,
) -> Result<Option<SessionState>, DbError> {
    let stmt = client
        .prepare_cached(concat!(
            "SELECT s.*, pp.* FROM sessions s",
            participants_of_s!(),
            " WHERE s.session_id = $1 AND s.trashed_at IS NULL"
        ))
        .await?;
    match client.query_opt(&stmt, &[&session_id]).await? {
        Some(row) => SessionState::from_row(&row),
        None => Ok(None),
    }
}

/// Registers feed `feed_id` of `instance` as following `session_id` (its
/// appends and changes notify from now on, migration V19) until
/// `ttl_seconds` from now, and returns the session's last `seq` (0 if it
/// has none, or does not exist). The session's row is updated (its
/// `watched_until` raised): appends in flight commit first and are
/// counted; later ones work on the version written here, and notify.
#[tracing::instrument(name = "events.watch", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "events.watch",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn watch(
    client: &impl GenericClient,
    session_id: Uuid,
    feed_id: Uuid,
    instance: Uuid,
    ttl_seconds: f64,
) -> Result<i32, DbError> {
    let stmt = client
        .prepare_cached(
            "WITH raised AS (
                 UPDATE sessions
                 SET watched_until = GREATEST(watched_until, now() + make_interval(secs => $4))
                 WHERE session_id = $1
                 RETURNING session_id, message_count
             ), watched AS (
                 INSERT INTO watched_sessions (feed_id, session_id, instance_id, expires_at)
                 SELECT $2, session_id, $3, now() + make_interval(secs => $4) FROM raised
                 ON CONFLICT (feed_id) DO UPDATE SET expires_at = EXCLUDED.expires_at
             )
             SELECT COALESCE((SELECT message_count FROM raised), 0)",
        )
        .await?;
    Ok(client
        .query_one(&stmt, &[&session_id, &feed_id, &instance, &ttl_seconds])
        .await?
        .get(0))
}

/// The feed is gone. Its session keeps notifying until the time it was
/// registered for (`watched_until` is only raised, migration V19).
#[tracing::instrument(name = "events.unwatch", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "events.unwatch",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn unwatch(client: &impl GenericClient, feed_id: Uuid) -> Result<(), DbError> {
    let stmt = client
        .prepare_cached("DELETE FROM watched_sessions WHERE feed_id = $1")
        .await?;
    client.execute(&stmt, &[&feed_id]).await?;
    Ok(())
}

/// Extends the registrations of `instance` that have more than
/// `margin_seconds` left to `ttl_seconds` from now (and their sessions'
/// `watched_until`, the rows locked in one order), and returns their
/// feeds. A registration not among them may have lapsed (appends may have
/// skipped their notifications): [`rewatch`] it, then read what is new.
pub async fn renew_watches(
    client: &impl GenericClient,
    instance: Uuid,
    ttl_seconds: f64,
    margin_seconds: f64,
) -> Result<Vec<Uuid>, DbError> {
    let stmt = client
        .prepare_cached(
            "WITH renewed AS (
                 UPDATE watched_sessions SET expires_at = now() + make_interval(secs => $2)
                 WHERE instance_id = $1 AND expires_at > now() + make_interval(secs => $3)
                 RETURNING feed_id, session_id
             ), locked AS MATERIALIZED (
                 SELECT session_id FROM sessions
                 WHERE session_id IN (SELECT session_id FROM renewed)
                 ORDER BY session_id FOR NO KEY UPDATE
             ), raised AS (
                 UPDATE sessions s SET watched_until = now() + make_interval(secs => $2)
                 FROM locked
                 WHERE s.session_id = locked.session_id
                   AND (s.watched_until IS NULL
                        OR s.watched_until < now() + make_interval(secs => $2))
             )
             SELECT feed_id FROM renewed",
        )
        .await?;
    Ok(client
        .query(&stmt, &[&instance, &ttl_seconds, &margin_seconds])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// Registers again feeds of `instance` (`feeds[i]` following
/// `sessions[i]`) whose registrations may have lapsed, like [`watch`]:
/// their sessions' rows are updated (locked in one order first), so an
/// append that did not see the registration has committed when this
/// returns, and a read after it finds the message.
pub async fn rewatch(
    client: &impl GenericClient,
    instance: Uuid,
    feeds: &[Uuid],
    sessions: &[Uuid],
    ttl_seconds: f64,
) -> Result<(), DbError> {
    let stmt = client
        .prepare_cached(
            "WITH feeds AS (
                 SELECT * FROM unnest($2::uuid[], $3::uuid[]) AS f (feed_id, session_id)
             ), locked AS MATERIALIZED (
                 SELECT session_id FROM sessions
                 WHERE session_id IN (SELECT session_id FROM feeds)
                 ORDER BY session_id FOR NO KEY UPDATE
             ), raised AS (
                 UPDATE sessions s
                 SET watched_until = GREATEST(s.watched_until, now() + make_interval(secs => $4))
                 FROM locked
                 WHERE s.session_id = locked.session_id
                 RETURNING s.session_id
             )
             INSERT INTO watched_sessions (feed_id, session_id, instance_id, expires_at)
             SELECT feeds.feed_id, feeds.session_id, $1, now() + make_interval(secs => $4)
             FROM feeds JOIN raised USING (session_id)
             ON CONFLICT (feed_id) DO UPDATE SET expires_at = EXCLUDED.expires_at",
        )
        .await?;
    client
        .execute(&stmt, &[&instance, &feeds, &sessions, &ttl_seconds])
        .await?;
    Ok(())
}

/// Stores a ticket (its SHA-256) for the caller if they participate,
/// valid for `ttl_seconds`; returns when it expires.
#[tracing::instrument(name = "events.issue_ticket", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "events.issue_ticket",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn issue_ticket(
    client: &impl GenericClient,
    key: Option<&str>,
    session_id: Uuid,
    user: Uuid,
    ticket_hash: &str,
    ttl_seconds: i32,
) -> Result<Guarded<DateTime<Utc>>, DbError> {
    let stmt = client
        .prepare_cached(concat!(
            with_caller!(
                ", issued AS (
                 INSERT INTO event_tickets (ticket_hash, api_key_hash, user_id, session_id, expires_at)
                 SELECT $4, $1, $3, $2, now() + make_interval(secs => $5) FROM caller
                 RETURNING expires_at
             ) "
            ),
            guarded_select!(", issued.expires_at", " LEFT JOIN issued ON true")
        ))
        .await?;
    let row = client
        .query_one(
            &stmt,
            &[
                &key,
                &session_id,
                &user,
                &ticket_hash,
                &f64::from(ttl_seconds),
            ],
        )
        .await?;
    Guarded::from_row(&row, |row| Ok(row.get("expires_at")))
}

/// The current key (SHA-256) of each of `app_ids` that is active;
/// applications missing from the answer have no valid key.
pub async fn active_keys(
    client: &impl GenericClient,
    app_ids: &[String],
) -> Result<Vec<(String, String)>, DbError> {
    let stmt = client
        .prepare_cached(
            "SELECT app_id, api_key_hash FROM applications
             WHERE app_id = ANY($1) AND is_active AND deleted_at IS NULL",
        )
        .await?;
    Ok(client
        .query(&stmt, &[&app_ids])
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}

/// Deletes tickets that expired (a used one is deleted when used), and
/// the registrations of feeds whose instance stopped renewing them.
pub async fn sweep(client: &impl GenericClient) -> Result<u64, DbError> {
    let stmt = client
        .prepare_cached(
            "WITH tickets AS (
                 DELETE FROM event_tickets WHERE expires_at < now() RETURNING 1
             ), watches AS (
                 DELETE FROM watched_sessions WHERE expires_at < now() RETURNING 1
             )
             SELECT (SELECT count(*) FROM tickets) + (SELECT count(*) FROM watches)",
        )
        .await?;
    Ok(client.query_one(&stmt, &[]).await?.get::<_, i64>(0) as u64)
}
