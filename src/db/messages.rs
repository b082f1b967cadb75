//! `session_messages`: a session's transcript, one row per message,
//! numbered 1, 2, 3... per session (`seq`). A row belongs to the session
//! that appended it (its origin); a session reads its transcript through
//! `session_lineage`: its own rows, and those it shares with the sessions
//! it was forked from, up to where it was forked (migration V13).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use super::DbError;
use super::caller::{Guarded, check_key, guarded_select, with_caller};
use crate::settings::SessionLimits;

/// The bytes of messages (their JSON text) a page of list-messages or of
/// an export holds at most, besides its first message (each at most
/// `MAX_BODY_BYTES`): a page ends early rather than pass it, and its cursor
/// goes on from there. So memory per request is bounded by bytes, not by
/// a count of messages of any size.
pub const PAGE_BYTES: i64 = 256 * 1024;

/// One message of a transcript.
#[derive(Debug, Serialize, ToSchema)]
pub struct StoredMessage {
    /// Its number in the session: 1, 2, 3... without gaps.
    pub seq: i32,
    pub created_at: DateTime<Utc>,
    /// The object as it was appended.
    #[schema(value_type = Object)]
    pub message: Value,
}

impl From<&Row> for StoredMessage {
    fn from(row: &Row) -> Self {
        Self {
            seq: row.get("seq"),
            created_at: row.get("created_at"),
            message: row.get("message"),
        }
    }
}

/// Messages to append: a JSON array of objects, and their words for search
/// (`search::documents`: as many documents as the words need).
pub struct NewMessages<'a> {
    pub messages: &'a Value,
    pub documents: &'a [String],
}

/// What an append did, or which limit stopped it.
#[derive(Debug)]
pub enum Appended {
    Done {
        message_count: i32,
        first_seq: i32,
    },
    /// The session would hold more than `SESSION_MAX_MESSAGES`.
    TooManyMessages {
        limit: i32,
    },
    /// The transcript would exceed `SESSION_MAX_TRANSCRIPT_BYTES`.
    TooLarge {
        limit: i64,
    },
}

/// Appends `new` messages if the caller's role is in
/// `permitted` and the session's limits allow, numbering them after the
/// last one. One statement: the session row's update (count and size,
/// checked against the limits) takes its lock first, so concurrent appends
/// to one session get contiguous ranges in commit order, and appends to
/// different sessions do not wait for each other. The cost does not depend
/// on the transcript's length. Also marks the caller active.
#[tracing::instrument(name = "messages.append", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "messages.append",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn append(
    client: &impl GenericClient,
    key: Option<&str>,
    session_id: Uuid,
    caller: Uuid,
    permitted: &[&str],
    new: &NewMessages<'_>,
    limits: SessionLimits,
) -> Result<Guarded<Appended>, DbError> {
    let stmt = client
        .prepare_cached(concat!(
            with_caller!(
                ", incoming AS (
                 SELECT m.message, m.ord::int AS ord, octet_length(m.message::text)::bigint AS bytes
                 FROM jsonb_array_elements($5::jsonb) WITH ORDINALITY AS m(message, ord)
             ), totals AS (
                 SELECT count(*)::int AS n, COALESCE(sum(bytes), 0)::bigint AS bytes
                 FROM incoming
             ), bumped AS (
                 UPDATE sessions s
                 SET message_count = s.message_count + totals.n,
                     transcript_bytes = s.transcript_bytes + totals.bytes
                 FROM caller, totals
                 WHERE s.session_id = $2 AND caller.role = ANY($4::text[])
                   AND s.message_count + totals.n <= $6
                   AND s.transcript_bytes + totals.bytes <= $7
                 RETURNING s.message_count, s.transcript_bytes
             ), inserted AS (
                 INSERT INTO session_messages
                     (session_id, seq, message, transcript_bytes,
                      appended_by_user_id, appended_by_app_id)
                 SELECT $2, bumped.message_count - totals.n + incoming.ord, incoming.message,
                        bumped.transcript_bytes - totals.bytes
                            + sum(incoming.bytes) OVER (ORDER BY incoming.ord),
                        $3, app.app_id
                 FROM bumped, totals, incoming, app
             ), indexed AS (
                 INSERT INTO session_search (session_id, first_seq, last_seq, part, words)
                 SELECT $2, bumped.message_count - totals.n + 1, bumped.message_count,
                        d.part::int - 1, d.words::tsvector
                 FROM bumped, totals, unnest($8::text[]) WITH ORDINALITY AS d (words, part)
             ), active AS (
                 UPDATE session_participants SET last_active_at = now()
                 WHERE session_id = $2 AND user_id = $3 AND EXISTS (SELECT 1 FROM bumped)
             ) "
            ),
            guarded_select!(
                ", bumped.message_count, totals.n, s.message_count AS count_before",
                " CROSS JOIN totals
                  LEFT JOIN bumped ON true
                  LEFT JOIN sessions s ON s.session_id = $2"
            )
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
                new.messages,
                &limits.max_messages,
                &limits.max_transcript_bytes,
                &new.documents,
            ],
        )
        .await?;
    Guarded::from_row(&row, |row| {
        let n: i32 = row.get("n");
        if let Some(message_count) = row.get::<_, Option<i32>>("message_count") {
            return Ok(Some(Appended::Done {
                message_count,
                first_seq: message_count - n + 1,
            }));
        }
        // Permitted but not done: a limit (judged on the count the
        // statement saw; a concurrent append may have taken the rest).
        if !permitted.contains(&row.get::<_, &str>("caller_role")) {
            return Ok(None);
        }
        let count_before: Option<i32> = row.get("count_before");
        Ok(count_before.map(|count| {
            if i64::from(count) + i64::from(n) > i64::from(limits.max_messages) {
                Appended::TooManyMessages {
                    limit: limits.max_messages,
                }
            } else {
                Appended::TooLarge {
                    limit: limits.max_transcript_bytes,
                }
            }
        }))
    })
}

/// Which way a page of messages goes.
#[derive(Debug, Clone, Copy)]
pub enum Direction {
    /// Oldest first, after this seq (0: from the start).
    After(i32),
    /// Newest first, before this seq.
    Before(i32),
}

/// Up to `limit` messages in `direction`, if the caller participates
/// (`Ok(None)` otherwise). Numbers run 1..=message_count without gaps, so
/// the page is the window of `limit` numbers next to `seq`: each segment of
/// the session's lineage is read by a keyset range of the primary key
/// within that window (a `LIMIT` per segment keeps PostgreSQL's generic
/// plan on the index), and the page costs the same wherever it starts.
#[tracing::instrument(name = "messages.page", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "messages.page",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn page(
    client: &impl GenericClient,
    key: Option<&str>,
    session_id: Uuid,
    caller: Uuid,
    direction: Direction,
    limit: i64,
) -> Result<Option<Page>, DbError> {
    let (sql, from) = match direction {
        Direction::After(seq) => (
            concat!(
                with_caller!(" "),
                guarded_select!(
                    ", m.seq, m.created_at, m.message,
                     (SELECT message_count FROM sessions WHERE session_id = $2) AS message_count",
                    " LEFT JOIN LATERAL (
                     SELECT m.seq, m.created_at, m.message
                     FROM session_lineage l
                     CROSS JOIN LATERAL (
                         SELECT seq, created_at, message FROM session_messages
                         WHERE session_id = l.origin_id
                           AND seq > $4::int AND seq <= LEAST(l.through_seq, $4::int + $5::bigint)
                           AND (seq = $4::int + 1
                                OR transcript_bytes <= (SELECT transcript_bytes_through($2, $4::int)) + $6::bigint)
                         ORDER BY seq LIMIT $5
                     ) m
                     WHERE caller.role IS NOT NULL AND l.session_id = $2
                     ORDER BY m.seq LIMIT $5
                 ) m ON true"
                )
            ),
            seq,
        ),
        // The window ends at the last message: `before_seq` may be any
        // larger number.
        Direction::Before(seq) => (
            concat!(
                with_caller!(" "),
                guarded_select!(
                    ", m.seq, m.created_at, m.message,
                     (SELECT message_count FROM sessions WHERE session_id = $2) AS message_count",
                    " LEFT JOIN LATERAL (
                     SELECT m.seq, m.created_at, m.message
                     FROM sessions s
                     JOIN session_lineage l ON l.session_id = s.session_id
                     CROSS JOIN LATERAL (
                         SELECT seq, created_at, message FROM session_messages
                         WHERE session_id = l.origin_id
                           AND seq < LEAST($4::int, s.message_count + 1) AND seq <= l.through_seq
                           AND seq >= LEAST($4::int, s.message_count + 1) - $5::bigint
                           AND (seq = LEAST($4::int, s.message_count + 1) - 1
                                OR transcript_bytes >= (SELECT transcript_bytes_through(
                                       $2, LEAST($4::int, s.message_count + 1) - 1)) - $6::bigint)
                         ORDER BY seq DESC LIMIT $5
                     ) m
                     WHERE caller.role IS NOT NULL AND s.session_id = $2
                     ORDER BY m.seq DESC LIMIT $5
                 ) m ON true"
                )
            ),
            seq,
        ),
    };
    let stmt = client.prepare_cached(sql).await?;
    let rows = client
        .query(
            &stmt,
            &[&key, &session_id, &caller, &from, &limit, &PAGE_BYTES],
        )
        .await?;
    crate::telemetry::record_rows(rows.len() as u64);
    check_key(&rows[0])?;
    if rows[0].get::<_, Option<&str>>("caller_role").is_none() {
        return Ok(None);
    }
    Ok(Some(Page {
        messages: rows
            .iter()
            .filter(|row| row.get::<_, Option<i32>>("seq").is_some())
            .map(StoredMessage::from)
            .collect(),
        message_count: rows[0].get::<_, Option<i32>>("message_count").unwrap_or(0),
    }))
}

/// A page of messages, and how many the session holds (a page may end
/// before `limit` at [`PAGE_BYTES`]; the count tells whether more follow).
pub struct Page {
    pub messages: Vec<StoredMessage>,
    pub message_count: i32,
}

/// Messages `after < seq <= through`, oldest first, at most `limit`: one
/// page of an export, whose caller was checked when it began. Messages
/// never change once appended, so the pages form the transcript as it was
/// then. Empty once the session is deleted (its lineage goes with it).
#[tracing::instrument(name = "messages.export_page", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "messages.export_page",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn export_page(
    client: &impl GenericClient,
    session_id: Uuid,
    after: i32,
    through: i32,
    limit: i64,
) -> Result<Vec<StoredMessage>, DbError> {
    let stmt = client
        .prepare_cached(
            "SELECT m.seq, m.created_at, m.message
             FROM session_lineage l
             CROSS JOIN LATERAL (
                 SELECT seq, created_at, message FROM session_messages
                 WHERE session_id = l.origin_id
                   AND seq > $2::int AND seq <= LEAST(l.through_seq, $3::int, $2::int + $4::bigint)
                   AND (seq = $2::int + 1
                        OR transcript_bytes <= (SELECT transcript_bytes_through($1, $2::int)) + $5::bigint)
                 ORDER BY seq LIMIT $4
             ) m
             WHERE l.session_id = $1
             ORDER BY m.seq",
        )
        .await?;
    let rows = client
        .query(&stmt, &[&session_id, &after, &through, &limit, &PAGE_BYTES])
        .await?;
    crate::telemetry::record_rows(rows.len() as u64);
    Ok(rows.iter().map(StoredMessage::from).collect())
}

/// Rows (messages and search documents) of one queued transcript deleted
/// per statement by [`sweep_step`].
const SWEEP_BATCH: i64 = 1000;
/// Queued transcripts one statement of [`sweep_step`] takes on, each with
/// its own batch: deleting many small transcripts (a purge's) costs a
/// statement per [`SWEEP_ORIGINS`], not one each.
const SWEEP_ORIGINS: i64 = 32;

/// What one statement of [`sweep_step`] did.
pub struct SweepStep {
    /// Whether the queue had an entry (not held by another sweep).
    pub queued: bool,
    /// Messages and documents deleted.
    pub deleted: u64,
}

/// Deletes some of the messages and documents that no session reads any
/// more: those of deleted sessions (queued by migration V13's trigger)
/// beyond what the forks that share them read. One statement: a batch of
/// the rows of each of up to [`SWEEP_ORIGINS`] queued transcripts (an
/// entry goes once none of its rows are left); callers repeat it until
/// the queue is empty (the pool's periodic sweep, the purge), each
/// statement on a connection of its own, resting between them. Each
/// statement sees what was committed when it began, and a fork only ever
/// shares what its source (alive then) reads, so nothing a session can
/// read is deleted. Queue entries another sweep holds are skipped.
pub async fn sweep_step(client: &impl GenericClient) -> Result<SweepStep, DbError> {
    let stmt = client
        .prepare_cached(
            "WITH queued AS (
                 SELECT id, origin_id FROM transcripts_to_sweep
                 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED
             ), kept AS (
                 -- How far sessions still read the origin's rows: all of
                 -- them while it exists (its own lineage row).
                 SELECT q.id, q.origin_id,
                        COALESCE((SELECT max(l.through_seq) FROM session_lineage l
                                  WHERE l.origin_id = q.origin_id), 0) AS through_seq
                 FROM queued q
             ), messages AS (
                 DELETE FROM session_messages m
                 USING kept k, LATERAL (
                     SELECT seq FROM session_messages
                     WHERE session_id = k.origin_id AND seq > k.through_seq
                     ORDER BY seq DESC LIMIT $1
                 ) doomed
                 WHERE m.session_id = k.origin_id AND m.seq = doomed.seq
                 RETURNING m.session_id
             ), documents AS (
                 -- Readers see documents ending within what they read; the
                 -- metadata's (first_seq 0) only the session's own.
                 DELETE FROM session_search d
                 USING kept k, LATERAL (
                     SELECT first_seq, last_seq, part FROM session_search
                     WHERE session_id = k.origin_id
                       AND (last_seq > k.through_seq
                            OR (first_seq = 0 AND k.through_seq < 2147483647))
                     LIMIT $1
                 ) doomed
                 WHERE d.session_id = k.origin_id AND d.first_seq = doomed.first_seq
                   AND d.last_seq = doomed.last_seq AND d.part = doomed.part
                 RETURNING d.session_id
             ), tally AS (
                 -- Per origin: a full batch of either means more may be left.
                 SELECT session_id, count(*) FILTER (WHERE kind = 'm') AS messages,
                        count(*) FILTER (WHERE kind = 'd') AS documents
                 FROM (SELECT session_id, 'm' AS kind FROM messages
                       UNION ALL SELECT session_id, 'd' FROM documents) r
                 GROUP BY session_id
             ), done AS (
                 DELETE FROM transcripts_to_sweep t
                 USING kept k LEFT JOIN tally ON tally.session_id = k.origin_id
                 WHERE t.id = k.id
                   AND COALESCE(tally.messages, 0) < $1
                   AND COALESCE(tally.documents, 0) < $1
             )
             SELECT (SELECT count(*) FROM queued) AS queued,
                    (SELECT count(*) FROM messages) + (SELECT count(*) FROM documents) AS deleted",
        )
        .await?;
    let row = client
        .query_one(&stmt, &[&SWEEP_BATCH, &SWEEP_ORIGINS])
        .await?;
    Ok(SweepStep {
        queued: row.get::<_, i64>("queued") > 0,
        deleted: row.get::<_, i64>("deleted") as u64,
    })
}
