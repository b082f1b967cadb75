//! `idempotency_keys`: the first successful response to a request carrying
//! an `Idempotency-Key`, kept for 24 hours. Used inside the transaction of
//! the write it protects, so the write and its record commit together.
//! A key belongs to its caller (migration V15): the application and the
//! user for a user's request, the application alone (user `None`) for a
//! request without one; no caller can use up or probe another's keys.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::DbError;
use super::caller::{check_key, verdict, verdict_from, with_app};

/// How long a recorded response is replayed; older records are deleted.
pub const RETENTION_HOURS: i32 = 24;
/// Expired records deleted per statement by [`sweep`].
const SWEEP_BATCH: i64 = 1000;

/// The response recorded for a key.
#[derive(Debug)]
pub struct Recorded {
    pub status: u16,
    pub body: String,
    pub location: Option<String>,
    /// The session the response is about (created, forked or appended
    /// to); unknown for records written before migration V11.
    pub session_id: Option<Uuid>,
}

#[derive(Debug)]
pub enum Claim {
    /// The key is ours: do the work, then [`record`] its response.
    Claimed,
    /// The same request was already answered: send this again.
    Replay(Recorded),
    /// The same request was answered, but the session its response is
    /// about has been deleted since: the response would point at nothing.
    SessionDeleted(Uuid),
    /// The key was used for a different request.
    Mismatch,
}

/// Claims `key` for this request of `user` through the application whose
/// key hash is `app_key` (checked here too); returns that application's id
/// with the claim. A concurrent claim of the same key by the same caller
/// waits here until the first transaction ends, then sees its recorded
/// response.
#[tracing::instrument(name = "idempotency.claim", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "idempotency.claim",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn claim(
    client: &impl GenericClient,
    app_key: Option<&str>,
    user: Option<Uuid>,
    key: &str,
    request_hash: &str,
) -> Result<(String, Claim), DbError> {
    let insert = client
        .prepare_cached(concat!(
            with_app!(
                ", claimed AS (
                 INSERT INTO idempotency_keys (app_id, idempotency_key, user_id, request_hash)
                 SELECT app.app_id, $2, $5::uuid, $3 FROM app WHERE app.is_active
                 ON CONFLICT (app_id, idempotency_key, user_id) DO UPDATE
                 SET request_hash = EXCLUDED.request_hash, created_at = now(),
                     response_status = NULL, response_body = NULL, response_location = NULL,
                     session_id = NULL
                 WHERE idempotency_keys.created_at < now() - make_interval(hours => $4)
                 RETURNING 1
             ) "
            ),
            verdict!(),
            ", EXISTS (SELECT 1 FROM claimed) AS claimed",
            verdict_from!()
        ))
        .await?;
    let row = client
        .query_one(
            &insert,
            &[&app_key, &key, &request_hash, &RETENTION_HOURS, &user],
        )
        .await?;
    check_key(&row)?;
    let app_id: String = row.get("app_id");
    let claim = if row.get("claimed") {
        Claim::Claimed
    } else {
        existing(client, &app_id, user, key, request_hash).await?
    };
    Ok((app_id, claim))
}

/// What was recorded for a key claimed before, and whether the session it
/// is about still exists (one in the trash counts as deleted: a replay
/// must not show it).
async fn existing(
    client: &impl GenericClient,
    app_id: &str,
    user: Option<Uuid>,
    key: &str,
    request_hash: &str,
) -> Result<Claim, DbError> {
    let select = client
        .prepare_cached(
            "SELECT k.request_hash, k.response_status, k.response_body, k.response_location,
                    k.session_id, s.session_id IS NOT NULL AS session_exists
             FROM idempotency_keys k
             LEFT JOIN sessions s ON s.session_id = k.session_id AND s.trashed_at IS NULL
             WHERE k.app_id = $1 AND k.idempotency_key = $2
               AND k.user_id IS NOT DISTINCT FROM $3",
        )
        .await?;
    let row = client.query_one(&select, &[&app_id, &key, &user]).await?;
    if row.get::<_, String>("request_hash") != request_hash {
        return Ok(Claim::Mismatch);
    }
    let status: Option<i16> = row.get("response_status");
    let body: Option<String> = row.get("response_body");
    let session_id: Option<Uuid> = row.get("session_id");
    match (status, body, session_id) {
        (Some(_), Some(_), Some(session_id)) if !row.get::<_, bool>("session_exists") => {
            Ok(Claim::SessionDeleted(session_id))
        }
        (Some(status), Some(body), session_id) => Ok(Claim::Replay(Recorded {
            status: status as u16,
            body,
            location: row.get("response_location"),
            session_id,
        })),
        // Only committed with a response; anything else is a data fault.
        _ => Err(DbError::Other(
            "idempotency key recorded without a response".to_owned(),
        )),
    }
}

#[tracing::instrument(name = "idempotency.record", skip_all, fields(
    otel.kind = "client", db.system.name = "postgresql", db.operation.name = "idempotency.record",
    db.response.returned_rows = tracing::field::Empty,
))]
pub async fn record(
    client: &impl GenericClient,
    app_id: &str,
    user: Option<Uuid>,
    key: &str,
    response: &Recorded,
) -> Result<(), DbError> {
    let stmt = client
        .prepare_cached(
            "UPDATE idempotency_keys
             SET response_status = $3, response_body = $4, response_location = $5,
                 session_id = $6
             WHERE app_id = $1 AND idempotency_key = $2 AND user_id IS NOT DISTINCT FROM $7",
        )
        .await?;
    client
        .execute(
            &stmt,
            &[
                &app_id,
                &key,
                &(response.status as i16),
                &response.body,
                &response.location,
                &response.session_id,
                &user,
            ],
        )
        .await?;
    Ok(())
}

/// Deletes expired records, a batch at a time, until none is left; returns
/// how many. Rows another transaction holds are skipped (the next sweep
/// gets them), so the sweep never waits for a request or makes one wait.
/// Rows are named by `ctid`: their key's user part may be NULL, which a
/// row comparison would never match.
pub async fn sweep(client: &impl GenericClient) -> Result<u64, DbError> {
    let stmt = client
        .prepare_cached(
            "DELETE FROM idempotency_keys WHERE ctid = ANY (ARRAY(
                 SELECT ctid FROM idempotency_keys
                 WHERE created_at < now() - make_interval(hours => $1)
                 LIMIT $2 FOR UPDATE SKIP LOCKED))",
        )
        .await?;
    let mut deleted = 0;
    loop {
        let batch = client
            .execute(&stmt, &[&RETENTION_HOURS, &SWEEP_BATCH])
            .await?;
        deleted += batch;
        if batch < SWEEP_BATCH as u64 {
            return Ok(deleted);
        }
    }
}
