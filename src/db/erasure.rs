//! The statements of a user's erasure (`crate::erasure` runs them): each
//! function is one batch, one transaction of at most a given number of
//! rows, and finds what is left to do by itself, so that a run that was
//! interrupted is continued by running again.
//!
//! Changes to a session's participants lock its `sessions` row first, as
//! every participant change does (migration V19: feeds of the session's
//! events), and a session is deleted after the retired config it may take
//! with it is locked, in the order delete-config takes them (V16).

use deadpool_postgres::{GenericClient, Object};
use serde_json::Value;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::DbError;

/// What a message becomes when its author is erased: it keeps its number,
/// its time and the application that appended it, and no longer holds
/// anything they wrote nor names them.
pub const TOMBSTONE: &str = r#"{"erased": true}"#;

/// Deletes up to `limit` sessions in which `user` is the only participant
/// (so the only owner), for good: participants, lineage and stream tickets
/// cascade; their messages and search documents are queued for the sweep
/// (migration V13), which keeps those a fork of another user reads.
/// Candidates are looked for after session `after` (in id order), so that
/// a pass over a user with many shared sessions reads each once.
pub async fn delete_lone_sessions(
    client: &mut Object,
    user: Uuid,
    after: Uuid,
    limit: i64,
) -> Result<LoneSessions, DbError> {
    let tx = client.transaction().await?;
    let candidates: Vec<Uuid> = tx
        .query(
            "SELECT p.session_id
             FROM session_participants p
             WHERE p.user_id = $1 AND p.session_id > $2
               AND NOT EXISTS (SELECT 1 FROM session_participants o
                               WHERE o.session_id = p.session_id AND o.user_id <> $1)
             ORDER BY p.session_id
             LIMIT $3",
            &[&user, &after, &limit],
        )
        .await?
        .iter()
        .map(|row| row.get("session_id"))
        .collect();
    let Some(&last) = candidates.last() else {
        return Ok(LoneSessions::default());
    };
    // The retired configs they may take with them, locked before them.
    tx.execute(
        "SELECT 1 FROM configs c
         WHERE c.retired
           AND c.config_id IN (SELECT config_id FROM sessions WHERE session_id = ANY($1))
         ORDER BY c.config_id
         FOR NO KEY UPDATE",
        &[&candidates],
    )
    .await?;
    // Locked, then checked again with a fresh snapshot: a participant
    // added meanwhile keeps the session (it is passed on instead).
    tx.execute(
        "SELECT 1 FROM sessions WHERE session_id = ANY($1)
         ORDER BY session_id FOR UPDATE",
        &[&candidates],
    )
    .await?;
    let deleted = tx
        .execute(
            "DELETE FROM sessions s
             WHERE s.session_id = ANY($2)
               AND EXISTS (SELECT 1 FROM session_participants p
                           WHERE p.session_id = s.session_id AND p.user_id = $1)
               AND NOT EXISTS (SELECT 1 FROM session_participants o
                               WHERE o.session_id = s.session_id AND o.user_id <> $1)",
            &[&user, &candidates],
        )
        .await?;
    tx.commit().await?;
    Ok(LoneSessions {
        deleted,
        last: Some(last),
    })
}

/// What one batch of [`delete_lone_sessions`] did.
#[derive(Debug, Default)]
pub struct LoneSessions {
    pub deleted: u64,
    /// The last candidate looked at: the next batch starts after it
    /// (`None`: there was none).
    pub last: Option<Uuid>,
}

/// What one batch of [`leave_sessions`] did.
#[derive(Debug, Default)]
pub struct Left {
    /// Sessions whose last owner was `user` and that got another.
    pub passed_on: u64,
    /// Participations of `user` removed.
    pub removed: u64,
}

/// Removes up to `limit` of `user`'s participations in sessions that
/// others participate in. Where `user` is the last owner, ownership first
/// passes to the earliest-joined editor, else the earliest-joined viewer
/// (ties by user id), so the session keeps an owner (migration V7).
/// Sessions where `user` is alone are left to [`delete_lone_sessions`].
pub async fn leave_sessions(client: &mut Object, user: Uuid, limit: i64) -> Result<Left, DbError> {
    let tx = client.transaction().await?;
    let sessions: Vec<Uuid> = tx
        .query(
            "SELECT s.session_id
             FROM sessions s
             WHERE s.session_id IN (SELECT session_id FROM session_participants
                                    WHERE user_id = $1
                                    ORDER BY session_id LIMIT $2)
             ORDER BY s.session_id
             FOR NO KEY UPDATE",
            &[&user, &limit],
        )
        .await?
        .iter()
        .map(|row| row.get("session_id"))
        .collect();
    if sessions.is_empty() {
        return Ok(Left::default());
    }
    let passed_on = tx
        .execute(
            "WITH orphaned AS (
                 SELECT p.session_id
                 FROM session_participants p
                 WHERE p.user_id = $1 AND p.session_id = ANY($2) AND p.role = 'owner'
                   AND NOT EXISTS (SELECT 1 FROM session_participants o
                                   WHERE o.session_id = p.session_id AND o.user_id <> $1
                                     AND o.role = 'owner')
             ), heirs AS (
                 SELECT DISTINCT ON (o.session_id) o.session_id, o.user_id
                 FROM orphaned
                 JOIN session_participants o
                   ON o.session_id = orphaned.session_id AND o.user_id <> $1
                 ORDER BY o.session_id, o.role = 'editor' DESC, o.joined_at, o.user_id
             )
             UPDATE session_participants p SET role = 'owner'
             FROM heirs
             WHERE p.session_id = heirs.session_id AND p.user_id = heirs.user_id",
            &[&user, &sessions],
        )
        .await?;
    let removed = tx
        .execute(
            "DELETE FROM session_participants p
             WHERE p.user_id = $1 AND p.session_id = ANY($2)
               AND EXISTS (SELECT 1 FROM session_participants o
                           WHERE o.session_id = p.session_id AND o.user_id <> $1)",
            &[&user, &sessions],
        )
        .await?;
    tx.commit().await?;
    Ok(Left { passed_on, removed })
}

/// Gives up to `limit` sessions that still name `user` as
/// `owner_user_id` (their creator, who no longer participates) their
/// earliest-joined owner instead (NULL should none be left). Returns how
/// many. (The column is a content column: their `updated_at` moves.)
pub async fn rename_owner(
    client: &impl GenericClient,
    user: Uuid,
    limit: i64,
) -> Result<u64, DbError> {
    let stmt = client
        .prepare_cached(
            "UPDATE sessions s
             SET owner_user_id = (SELECT o.user_id FROM session_participants o
                                  WHERE o.session_id = s.session_id AND o.role = 'owner'
                                    AND o.user_id <> $1
                                  ORDER BY o.joined_at, o.user_id LIMIT 1)
             WHERE s.session_id IN (SELECT session_id FROM sessions
                                    WHERE owner_user_id = $1 LIMIT $2)",
        )
        .await?;
    Ok(client.execute(&stmt, &[&user, &limit]).await?)
}

/// What one batch of [`tombstone_messages`] did.
#[derive(Debug, Default)]
pub struct Tombstoned {
    pub messages: u64,
    /// Search documents (one append's, or a fork's cut of it) written
    /// again from the messages they cover.
    pub documents: u64,
}

/// Replaces up to `limit` messages `user` appended, wherever they are kept,
/// with [`TOMBSTONE`]: same session, `seq`, `created_at` and
/// `transcript_bytes` (the running size recorded when it was appended, on
/// which later messages' and forks' sizes build), no author. In the same
/// transaction, the search documents covering them are written again from
/// what their messages hold now, so that neither a crash nor a second run
/// can leave words behind (a tombstone no longer names its author: it is
/// never found again).
pub async fn tombstone_messages(
    client: &mut Object,
    user: Uuid,
    limit: i64,
) -> Result<Tombstoned, DbError> {
    let tx = client.transaction().await?;
    let tombstoned = tx
        .query(
            "WITH doomed AS (
                 SELECT session_id, seq FROM session_messages
                 WHERE appended_by_user_id = $1
                 ORDER BY session_id, seq
                 LIMIT $2
                 FOR UPDATE
             )
             UPDATE session_messages m
             SET message = $3::text::jsonb, appended_by_user_id = NULL
             FROM doomed
             WHERE m.session_id = doomed.session_id AND m.seq = doomed.seq
             RETURNING m.session_id, m.seq",
            &[&user, &limit, &TOMBSTONE],
        )
        .await?;
    if tombstoned.is_empty() {
        return Ok(Tombstoned::default());
    }
    let sessions: Vec<Uuid> = tombstoned.iter().map(|row| row.get("session_id")).collect();
    let seqs: Vec<i32> = tombstoned.iter().map(|row| row.get("seq")).collect();
    // The documents holding a message's words: its append's, which start
    // at the latest first_seq at or before it, and the forks' cuts of that
    // append that reach it (a cut ending before it holds none of its
    // words). Metadata documents (first_seq 0) hold no message's.
    let documents = tx
        .query(
            "SELECT DISTINCT d.session_id, d.first_seq, d.last_seq
             FROM unnest($1::uuid[], $2::int[]) AS t (session_id, seq)
             CROSS JOIN LATERAL (
                 SELECT max(first_seq) AS first_seq FROM session_search
                 WHERE session_id = t.session_id AND first_seq BETWEEN 1 AND t.seq
             ) latest
             JOIN session_search d
               ON d.session_id = t.session_id AND d.first_seq = latest.first_seq
              AND d.last_seq >= t.seq",
            &[&sessions, &seqs],
        )
        .await?;
    for document in &documents {
        let session_id: Uuid = document.get("session_id");
        let first_seq: i32 = document.get("first_seq");
        let last_seq: i32 = document.get("last_seq");
        let messages = tx
            .query(
                "SELECT seq, message FROM session_messages
                 WHERE session_id = $1 AND seq BETWEEN $2 AND $3
                 ORDER BY seq",
                &[&session_id, &first_seq, &last_seq],
            )
            .await?;
        let words = rebuilt_words(
            first_seq,
            last_seq,
            messages
                .iter()
                .map(|row| (row.get::<_, i32>("seq"), row.get::<_, Value>("message"))),
        );
        tx.execute(
            "DELETE FROM session_search
             WHERE session_id = $1 AND first_seq = $2 AND last_seq = $3",
            &[&session_id, &first_seq, &last_seq],
        )
        .await?;
        tx.execute(
            "INSERT INTO session_search (session_id, first_seq, last_seq, part, words)
             SELECT $1, $2, $3, d.part::int - 1, d.words::tsvector
             FROM unnest($4::text[]) WITH ORDINALITY AS d (words, part)",
            &[&session_id, &first_seq, &last_seq, &words],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Tombstoned {
        messages: tombstoned.len() as u64,
        documents: documents.len() as u64,
    })
}

/// The documents of messages `first_seq..=last_seq` as an append writes
/// them (each word at the position of the first message holding it,
/// counted from `first_seq`), at least one, empty when they hold no word:
/// the range keeps a document, as the append had.
fn rebuilt_words(
    first_seq: i32,
    last_seq: i32,
    messages: impl Iterator<Item = (i32, Value)>,
) -> Vec<String> {
    let len = usize::try_from(last_seq - first_seq + 1).unwrap_or(0);
    let mut by_position = vec![Value::Null; len];
    for (seq, message) in messages {
        if let Some(slot) = usize::try_from(seq - first_seq)
            .ok()
            .and_then(|i| by_position.get_mut(i))
        {
            *slot = message;
        }
    }
    let words = crate::search::message_words(&by_position);
    let mut documents = crate::search::documents(&words, crate::search::MAX_DOCUMENT_BYTES);
    if documents.is_empty() {
        documents.push(String::new());
    }
    documents
}

/// Rows that belong to one user and go with them.
#[derive(Debug, Clone, Copy)]
pub enum UserRows {
    /// Idempotency records: their responses name their sessions.
    IdempotencyRecords,
    /// Stream tickets.
    StreamTickets,
    /// The counts of their rate-limit buckets (`user:<id>`, `writes:<id>`,
    /// migration V17).
    RateLimitCounts,
}

/// Deletes up to `limit` of `user`'s rows of `kind`. Returns how many.
pub async fn delete_user_rows(
    client: &impl GenericClient,
    kind: UserRows,
    user: Uuid,
    limit: i64,
) -> Result<u64, DbError> {
    let sql = match kind {
        UserRows::IdempotencyRecords => {
            "DELETE FROM idempotency_keys WHERE ctid = ANY (ARRAY(
                 SELECT ctid FROM idempotency_keys WHERE user_id = $1 LIMIT $2))"
        }
        UserRows::StreamTickets => {
            "DELETE FROM event_tickets WHERE ctid = ANY (ARRAY(
                 SELECT ctid FROM event_tickets WHERE user_id = $1 LIMIT $2))"
        }
        UserRows::RateLimitCounts => {
            "DELETE FROM rate_limit_counts WHERE ctid = ANY (ARRAY(
                 SELECT ctid FROM rate_limit_counts WHERE bucket = ANY($1) LIMIT $2))"
        }
    };
    // `$1`: what names the user in the table.
    let buckets = vec![format!("user:{user}"), format!("writes:{user}")];
    let named_by: &(dyn ToSql + Sync) = match kind {
        UserRows::RateLimitCounts => &buckets,
        _ => &user,
    };
    let stmt = client.prepare_cached(sql).await?;
    Ok(client.execute(&stmt, &[named_by, &limit]).await?)
}

/// Removes `user` from up to `limit` audit rows naming them (as actor or
/// subject; their id in the target or details too): the rows stay, the
/// user goes. The trail is append-only but for this (migration V20), which
/// says so for its own transaction. Returns how many.
pub async fn anonymise_audit_events(
    client: &mut Object,
    user: Uuid,
    limit: i64,
) -> Result<u64, DbError> {
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT set_config('amplifier.audit_maintenance', 'on', true)",
        &[],
    )
    .await?;
    let anonymised = tx
        .execute(
            "UPDATE audit_events e
             SET actor_user_id = NULLIF(e.actor_user_id, $1),
                 subject_user_id = NULLIF(e.subject_user_id, $1),
                 target_id = replace(e.target_id, $3, 'erased'),
                 details = replace(e.details::text, $3, 'erased')::jsonb
             WHERE e.event_id IN (
                 (SELECT event_id FROM audit_events WHERE actor_user_id = $1 LIMIT $2)
                 UNION
                 (SELECT event_id FROM audit_events WHERE subject_user_id = $1 LIMIT $2))",
            &[&user, &limit, &user.to_string()],
        )
        .await?;
    tx.commit().await?;
    Ok(anonymised)
}

/// The last step: deletes `user`'s `users` row unless they participate in
/// a session again (someone added them meanwhile: the run goes on), and
/// writes the erasure's audit row (`details`: the receipt's counts), in
/// one statement. Returns whether the user was gone (no participation
/// left).
pub async fn finish(
    client: &impl GenericClient,
    user: Uuid,
    erasure_id: Uuid,
    completed_details: &Value,
    invocation_id: Option<&str>,
) -> Result<Finished, DbError> {
    let stmt = client
        .prepare_cached(
            "WITH clear AS (
                 SELECT NOT EXISTS (SELECT 1 FROM session_participants WHERE user_id = $1)
                        AND NOT EXISTS (SELECT 1 FROM session_messages WHERE appended_by_user_id = $1)
                        AS done
             ), deleted AS (
                 DELETE FROM users WHERE user_id = $1 AND (SELECT done FROM clear)
                 RETURNING 1
             ), audited AS (
                 INSERT INTO audit_events (actor_kind, action, target_kind, target_id,
                                           invocation_id, details)
                 SELECT 'admin', $4, 'user', $2,
                        $5, $3::jsonb || jsonb_build_object('users_rows', (SELECT count(*) FROM deleted))
                 FROM clear WHERE clear.done
             )
             SELECT clear.done, (SELECT count(*) FROM deleted) AS users FROM clear",
        )
        .await?;
    let row = client
        .query_one(
            &stmt,
            &[
                &user,
                &erasure_id.to_string(),
                completed_details,
                &crate::audit::action::USER_ERASED,
                &invocation_id,
            ],
        )
        .await?;
    Ok(Finished {
        done: row.get("done"),
        users: row.get::<_, i64>("users") as u64,
    })
}

/// What [`finish`] found.
#[derive(Debug)]
pub struct Finished {
    /// Nothing of the user was left but their `users` row (now deleted).
    pub done: bool,
    /// `users` rows deleted (0 or 1).
    pub users: u64,
}

/// Writes the audit row of a run that stopped before finishing (its time
/// budget spent): what it did, `completed: false`.
pub async fn audit_partial(
    client: &impl GenericClient,
    erasure_id: Uuid,
    details: &Value,
    invocation_id: Option<&str>,
) -> Result<(), DbError> {
    let stmt = client
        .prepare_cached(
            "INSERT INTO audit_events (actor_kind, action, target_kind, target_id,
                                       invocation_id, details)
             VALUES ('admin', $1, 'user', $2, $3, $4::jsonb)",
        )
        .await?;
    client
        .execute(
            &stmt,
            &[
                &crate::audit::action::USER_ERASED,
                &erasure_id.to_string(),
                &invocation_id,
                details,
            ],
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rebuilt_documents_hold_the_words_left_at_their_positions() {
        // Messages 5..=7: 5 erased, 6 and 7 keep their words, counted from 5.
        let messages = [
            (5, serde_json::from_str(TOMBSTONE).unwrap()),
            (6, json!({"text": "Alpha beta"})),
            (7, json!({"text": "beta gamma"})),
        ];
        assert_eq!(
            rebuilt_words(5, 7, messages.into_iter()),
            ["'alpha':2 'beta':2 'gamma':3"]
        );
        let erased = [(5, serde_json::from_str(TOMBSTONE).unwrap())];
        assert_eq!(rebuilt_words(5, 5, erased.into_iter()), [""]);
    }
}
