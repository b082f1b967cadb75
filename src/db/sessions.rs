//! `sessions` (and the rows a session creation writes with it). Every
//! statement checks the caller's participation itself, so a permission
//! check and the write it guards are one atomic round trip.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use super::DbError;
use super::caller::{
    Guarded, check_key, guarded_select, verdict, verdict_from, with_app, with_caller,
};
use crate::roles::Role;

#[derive(Debug, Serialize, ToSchema)]
pub struct Session {
    pub session_id: Uuid,
    pub config_id: Uuid,
    pub owner_user_id: Option<Uuid>,
    pub created_by_app_id: Option<String>,
    /// `active`, `completed`, `failed` or `cancelled`.
    pub status: String,
    /// Messages in the transcript.
    pub message_count: i32,
    /// `seq` of the newest message (messages are numbered 1, 2, 3...); 0
    /// while there is none.
    pub last_seq: i32,
    /// The transcript's size: the messages' JSON text, in bytes.
    pub transcript_bytes: i64,
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// The session this one was forked from (`null` once that is deleted
    /// for good; while it is in the trash, its id stays).
    pub parent_session_id: Option<Uuid>,
    /// The last message shared with the parent.
    pub forked_from_seq: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_accessed_at: Option<DateTime<Utc>>,
}

impl From<&Row> for Session {
    fn from(row: &Row) -> Self {
        Self {
            session_id: row.get("session_id"),
            config_id: row.get("config_id"),
            owner_user_id: row.get("owner_user_id"),
            created_by_app_id: row.get("created_by_app_id"),
            status: row.get("status"),
            message_count: row.get("message_count"),
            // Numbers run 1..=count without gaps (forks keep theirs).
            last_seq: row.get("message_count"),
            transcript_bytes: row.get("transcript_bytes"),
            metadata: row.get::<_, Option<Value>>("metadata").unwrap_or_default(),
            parent_session_id: row.get("parent_session_id"),
            forked_from_seq: row.get("forked_from_seq"),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
            last_accessed_at: row.get("last_accessed_at"),
        }
    }
}

/// A session as one of its participants reads it: its size does not
/// depend on the transcript (read that with list-messages or export).
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    #[serde(flatten)]
    pub session: Session,
    /// The caller's role in this session.
    pub role: Role,
}

/// The CTEs that make the `owner_user_id` of `new_session` its owner: their
/// participant row, active from the start so that the session comes first
/// in their list, and their `users` row. create and fork share them.
macro_rules! owner_rows {
    () => {
        ", owner_participant AS (
             INSERT INTO session_participants (session_id, user_id, role, last_active_at)
             SELECT session_id, owner_user_id, 'owner', created_at FROM new_session
         ), owner_user AS (
             INSERT INTO users (user_id, last_seen_app_id, total_sessions)
             SELECT owner_user_id, created_by_app_id, 1 FROM new_session
             ON CONFLICT (user_id) DO UPDATE
             SET last_seen = now(),
                 last_seen_app_id = EXCLUDED.last_seen_app_id,
                 total_sessions = users.total_sessions + 1
         )"
    };
}

/// What create-session did.
#[derive(Debug)]
pub enum Created {
    Done(Box<Session>),
    /// The config does not exist, or is private to another application.
    NoConfig,
    /// The config is retired: it takes no new sessions.
    ConfigRetired,
}

/// The CTE `config`: session `$2`'s config as the application in `app`
/// may start sessions from it (`usable`: it created it, or it is shared),
/// locked FOR SHARE so that a concurrent retire waits for the new session
/// and then sees it, or this statement sees the config retired (or gone).
/// Its select list is `$columns`; `$from` names the config (`c`).
macro_rules! session_config {
    ($columns:expr, $from:expr $(,)?) => {
        concat!(
            ", config AS (
                 SELECT ",
            $columns,
            " FROM ",
            $from,
            " FOR SHARE OF c
             )"
        )
    };
}

/// Creates a session owned by `owner`, its owner participant row and the
/// owner's `users` row, in one statement (one round trip, atomic), for the
/// application of `key`, from a config that application may use.
#[tracing::instrument(name = "sessions.create", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "sessions.create",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn create(
    client: &impl GenericClient,
    key: Option<&str>,
    config_id: Uuid,
    owner: Uuid,
    metadata: &Value,
    metadata_words: &str,
) -> Result<Created, DbError> {
    let stmt = client
        .prepare_cached(concat!(
            with_app!(
                session_config!(
                    "c.config_id, c.retired",
                    "configs c, app
                     WHERE app.is_active AND c.config_id = $2
                       AND (c.created_by_app_id = app.app_id OR c.shared)"
                ),
                ", new_session AS (
                 INSERT INTO sessions (config_id, owner_user_id, created_by_app_id, metadata)
                 SELECT config.config_id, $3::uuid, app.app_id, $4::jsonb
                 FROM config, app WHERE NOT config.retired
                 RETURNING *
             ), lineage AS (
                 INSERT INTO session_lineage (session_id, origin_id, from_seq, through_seq)
                 SELECT session_id, session_id, 1, 2147483647 FROM new_session
             ), metadata_words AS (
                 INSERT INTO session_search (session_id, first_seq, last_seq, part, words)
                 SELECT session_id, 0, 0, 0, $5::text::tsvector FROM new_session
             )",
                owner_rows!(),
                " "
            ),
            verdict!(),
            ", config.retired AS config_retired, new_session.*",
            verdict_from!(),
            " LEFT JOIN config ON true LEFT JOIN new_session ON true"
        ))
        .await?;
    let row = client
        .query_one(
            &stmt,
            &[&key, &config_id, &owner, metadata, &metadata_words],
        )
        .await?;
    check_key(&row)?;
    if row.get::<_, Option<Uuid>>("session_id").is_some() {
        return Ok(Created::Done(Box::new(Session::from(&row))));
    }
    Ok(match row.get::<_, Option<bool>>("config_retired") {
        Some(true) => Created::ConfigRetired,
        _ => Created::NoConfig,
    })
}

/// The session and the caller's role, recording the access; `Ok(None)`
/// when the caller does not participate (or it does not exist: the two are
/// deliberately indistinguishable).
#[tracing::instrument(name = "sessions.read", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "sessions.read",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn read(
    client: &impl GenericClient,
    key: Option<&str>,
    session_id: Uuid,
    user_id: Uuid,
) -> Result<Option<SessionView>, DbError> {
    let stmt = client
        .prepare_cached(concat!(
            with_caller!(
                ", accessed AS (
                 UPDATE sessions s
                 SET last_accessed_at = now(), last_accessed_by_app_id = app.app_id
                 FROM caller, app
                 WHERE s.session_id = $2 AND s.trashed_at IS NULL
                 RETURNING s.*
             ) "
            ),
            guarded_select!(", accessed.*", " LEFT JOIN accessed ON true")
        ))
        .await?;
    let row = client
        .query_one(&stmt, &[&key, &session_id, &user_id])
        .await?;
    match Guarded::from_row(&row, |row| Ok(Some(Session::from(row))))? {
        Guarded::Seen {
            role,
            done: Some(session),
        } => Ok(Some(SessionView { session, role })),
        _ => Ok(None),
    }
}

/// Whether the caller's role is in `permitted`, and nothing else: a look
/// before work that costs more than this round trip (a large append's
/// words are not worth finding for a caller who may not append).
#[tracing::instrument(name = "sessions.allows", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "sessions.allows",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn allows(
    client: &impl GenericClient,
    key: Option<&str>,
    session_id: Uuid,
    user_id: Uuid,
    permitted: &[&str],
) -> Result<Guarded<()>, DbError> {
    let stmt = client
        .prepare_cached(concat!(
            with_caller!(" "),
            guarded_select!(", caller.role = ANY($4::text[]) AS allowed", "")
        ))
        .await?;
    let row = client
        .query_one(&stmt, &[&key, &session_id, &user_id, &permitted])
        .await?;
    Guarded::from_row(&row, |row| {
        Ok(row
            .get::<_, Option<bool>>("allowed")
            .unwrap_or(false)
            .then_some(()))
    })
}

/// What update-session may change; `None` leaves a field as it is.
pub struct SessionChanges<'a> {
    pub status: Option<&'a str>,
    /// New metadata, with its words (`search::document`).
    pub metadata: Option<(&'a Value, &'a str)>,
}

/// Applies `changes` if the caller's role is in `permitted`, and marks the
/// caller active.
#[tracing::instrument(name = "sessions.update", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "sessions.update",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn update(
    client: &impl GenericClient,
    key: Option<&str>,
    session_id: Uuid,
    caller: Uuid,
    permitted: &[&str],
    changes: &SessionChanges<'_>,
) -> Result<Guarded<Session>, DbError> {
    let stmt = client
        .prepare_cached(concat!(
            with_caller!(
                ", updated AS (
                 UPDATE sessions s
                 SET status = COALESCE($5::varchar, s.status),
                     metadata = COALESCE($6::jsonb, s.metadata)
                 FROM caller
                 WHERE s.session_id = $2 AND caller.role = ANY($4::text[]) AND s.trashed_at IS NULL
                 RETURNING s.*
             ), active AS (
                 UPDATE session_participants SET last_active_at = now()
                 WHERE session_id = $2 AND user_id = $3 AND EXISTS (SELECT 1 FROM updated)
             ), metadata_words AS (
                 INSERT INTO session_search (session_id, first_seq, last_seq, part, words)
                 SELECT session_id, 0, 0, 0, $7::text::tsvector FROM updated WHERE $7::text::tsvector IS NOT NULL
                 ON CONFLICT (session_id, first_seq, last_seq, part) DO UPDATE SET words = EXCLUDED.words
             ) "
            ),
            guarded_select!(
                ", updated.*",
                " LEFT JOIN updated ON true")
        ))
        .await?;
    let row = client
        .query_one(
            &stmt,
            &[
                &key,
                &session_id,
                &caller,
                &permitted,
                &changes.status,
                &changes.metadata.map(|(metadata, _)| metadata),
                &changes.metadata.map(|(_, words)| words),
            ],
        )
        .await?;
    Guarded::from_row(&row, |row| {
        let done: Option<Uuid> = row.get("session_id");
        Ok(done.map(|_| Session::from(row)))
    })
}

/// The session for an export, if the caller participates (nothing is
/// recorded: exports are reads).
#[tracing::instrument(name = "sessions.for_export", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "sessions.for_export",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn for_export(
    client: &impl GenericClient,
    key: Option<&str>,
    session_id: Uuid,
    caller: Uuid,
) -> Result<Option<Session>, DbError> {
    let stmt = client
        .prepare_cached(concat!(
            with_caller!(" "),
            guarded_select!(
                ", s.*",
                "
              LEFT JOIN sessions s ON caller.role IS NOT NULL AND s.session_id = $2"
            )
        ))
        .await?;
    let row = client
        .query_one(&stmt, &[&key, &session_id, &caller])
        .await?;
    check_key(&row)?;
    Ok(row
        .get::<_, Option<Uuid>>("session_id")
        .map(|_| Session::from(&row)))
}

/// What a fork did.
#[derive(Debug)]
pub enum Forked {
    Done(Box<Session>),
    /// `up_to_seq` is beyond the source's last message.
    BeyondLast {
        last_seq: i32,
    },
    /// Messages up to the cut come from `limit` sessions already (the
    /// source and its ancestors): the fork would read from one more.
    TooDeep {
        limit: i32,
    },
    /// The source's config is private to another application.
    ConfigPrivate {
        config_id: Uuid,
    },
    /// The source's config is retired: it takes no new sessions.
    ConfigRetired {
        config_id: Uuid,
    },
}

/// A new session owned by `caller`, with the source's config, its
/// metadata (or `metadata`), and the source's messages `1..=up_to_seq`
/// (default: all) under the same numbers, if the caller participates in
/// the source and the fork's lineage (the source's, cut at `up_to_seq`,
/// and its own) has at most `max_depth` segments. One statement, whose
/// cost does not depend on the transcript: the fork shares the messages
/// (a lineage row per session they come from), and its size is the
/// running size recorded with the message at the cut. Messages never
/// change once appended, so what is shared stays as it was.
#[tracing::instrument(name = "sessions.fork", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "sessions.fork",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn fork(
    client: &impl GenericClient,
    key: Option<&str>,
    session_id: Uuid,
    caller: Uuid,
    up_to_seq: Option<i32>,
    metadata: Option<(&Value, &str)>,
    max_depth: i32,
) -> Result<Guarded<Forked>, DbError> {
    let stmt = client
        .prepare_cached(concat!(
            with_caller!(
                ", source AS (
                 SELECT s.config_id, s.metadata, s.message_count
                 FROM sessions s, caller WHERE s.session_id = $2
             )",
                session_config!(
                    "c.retired, (c.created_by_app_id = app.app_id OR c.shared) AS usable",
                    "configs c, source, app WHERE c.config_id = source.config_id"
                ),
                ", cut AS (
                 SELECT COALESCE($4::int, message_count) AS up_to FROM source
             ), ancestry AS (
                 -- The source's lineage cut at up_to: the segments holding
                 -- messages 1..up_to.
                 SELECT l.origin_id, l.from_seq, LEAST(l.through_seq, cut.up_to) AS through_seq,
                        l.through_seq AS source_through
                 FROM session_lineage l, cut
                 WHERE l.session_id = $2 AND l.from_seq <= cut.up_to
             ), last_message AS (
                 SELECT m.transcript_bytes
                 FROM ancestry a, cut, session_messages m
                 WHERE a.through_seq = cut.up_to
                   AND m.session_id = a.origin_id AND m.seq = cut.up_to
             ), new_session AS (
                 INSERT INTO sessions (config_id, owner_user_id, created_by_app_id, metadata,
                                       message_count, transcript_bytes,
                                       parent_session_id, forked_from_seq)
                 SELECT source.config_id, $3, app.app_id, COALESCE($5::jsonb, source.metadata),
                        cut.up_to, COALESCE((SELECT transcript_bytes FROM last_message), 0),
                        $2, cut.up_to
                 FROM source, cut, app, config
                 WHERE config.usable AND NOT config.retired
                   AND cut.up_to <= source.message_count
                   AND (SELECT count(*) FROM ancestry) < $7
                 RETURNING *
             ), lineage AS (
                 INSERT INTO session_lineage (session_id, origin_id, from_seq, through_seq)
                 SELECT n.session_id, a.origin_id, a.from_seq, a.through_seq
                 FROM new_session n, ancestry a
                 UNION ALL
                 SELECT n.session_id, n.session_id, n.forked_from_seq + 1, 2147483647
                 FROM new_session n
             ), cut_append AS (
                 -- The append the cut goes through, if any, as the source
                 -- sees it: its documents start at the latest first_seq at
                 -- or before the cut; the shortest one ending after it.
                 SELECT d.session_id, d.first_seq, min(d.last_seq) AS last_seq
                 FROM ancestry a
                 CROSS JOIN cut
                 CROSS JOIN LATERAL (
                     SELECT max(first_seq) AS first_seq FROM session_search
                     WHERE session_id = a.origin_id AND first_seq BETWEEN 1 AND cut.up_to
                 ) latest
                 JOIN session_search d
                   ON d.session_id = a.origin_id AND d.first_seq = latest.first_seq
                  AND d.last_seq > cut.up_to AND d.last_seq <= a.source_through
                 WHERE a.through_seq = cut.up_to
                 GROUP BY d.session_id, d.first_seq
             ), cut_words AS (
                 -- Its words up to the cut, from each word's first message
                 -- (the position): a subset of documents that fit, stored
                 -- with the origin's for every fork at this cut.
                 INSERT INTO session_search (session_id, first_seq, last_seq, part, words)
                 SELECT d.session_id, d.first_seq, cut.up_to, d.part,
                        ts_delete(d.words, ARRAY(
                            SELECT u.lexeme FROM unnest(d.words) u
                            WHERE u.positions[1] > cut.up_to - d.first_seq + 1))
                 FROM new_session n, cut, cut_append c
                 JOIN session_search d
                   ON d.session_id = c.session_id AND d.first_seq = c.first_seq
                  AND d.last_seq = c.last_seq
                 ON CONFLICT DO NOTHING
             ), metadata_words AS (
                 INSERT INTO session_search (session_id, first_seq, last_seq, part, words)
                 SELECT n.session_id, 0, 0, 0,
                        COALESCE($6::text::tsvector,
                                 (SELECT words FROM session_search
                                  WHERE session_id = $2 AND first_seq = 0 AND last_seq = 0 AND part = 0),
                                 ''::tsvector)
                 FROM new_session n
             )",
                owner_rows!(),
                " "
            ),
            guarded_select!(
                ", source.message_count AS source_count, source.config_id AS source_config,
                   config.usable AS config_usable, config.retired AS config_retired,
                   cut.up_to, new_session.*",
                " LEFT JOIN source ON true LEFT JOIN config ON true LEFT JOIN cut ON true
                  LEFT JOIN new_session ON true")
        ))
        .await?;
    let row = client
        .query_one(
            &stmt,
            &[
                &key,
                &session_id,
                &caller,
                &up_to_seq,
                &metadata.map(|(metadata, _)| metadata),
                &metadata.map(|(_, words)| words),
                &i64::from(max_depth),
            ],
        )
        .await?;
    Guarded::from_row(&row, |row| {
        if row.get::<_, Option<Uuid>>("session_id").is_some() {
            return Ok(Some(Forked::Done(Box::new(Session::from(row)))));
        }
        // A participant's session exists in the statement's snapshot.
        let Some(last_seq) = row.get::<_, Option<i32>>("source_count") else {
            return Ok(None);
        };
        let config_id: Uuid = row.get("source_config");
        // Sessions keep their config (it is deleted with them), so it is here.
        if row.get::<_, Option<bool>>("config_usable") != Some(true) {
            return Ok(Some(Forked::ConfigPrivate { config_id }));
        }
        if row.get::<_, bool>("config_retired") {
            return Ok(Some(Forked::ConfigRetired { config_id }));
        }
        Ok(Some(if row.get::<_, i32>("up_to") > last_seq {
            Forked::BeyondLast { last_seq }
        } else {
            Forked::TooDeep { limit: max_depth }
        }))
    })
}
