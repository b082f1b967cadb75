//! Erasure of one user: everything about them goes, or stops naming
//! them. The run takes its steps in order, each a batch at a time (one
//! transaction, on a connection of its own, of at most a few thousand
//! rows), until each finds nothing left:
//!
//! 1. sessions in which the user is the only participant: deleted for
//!    good, with their participants, lineage and stream tickets;
//! 2. their other participations: removed; where they were the last
//!    owner, ownership first passes to the earliest-joined editor, else the
//!    earliest-joined viewer (ties by user id);
//! 3. sessions still naming them as `owner_user_id`: named after their
//!    earliest-joined owner;
//! 4. the messages and search documents of the deleted sessions: swept
//!    (`db::messages::sweep_step`), but for those a fork of another user reads;
//! 5. every message they appended that is still kept (in sessions others
//!    keep, or read by others' forks): a tombstone (same `seq`, no content,
//!    no author), and the search documents covering it written again;
//! 6. their idempotency records, stream tickets and rate-limit counts;
//! 7. audit rows naming them: their id removed;
//! 8. their `users` row, and the `user.erased` audit row, in one statement.
//!
//! Every step finds what is left by itself, so a run that stopped (an
//! error, the client gone, its time budget spent) is continued by running
//! it again, and a run over nothing counts zeros. Steps 1 and 2 repeat
//! until neither finds anything, and the whole run repeats should step 8
//! find the user in a session or author of a message again (someone may
//! add them to a session while the run goes on).

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db::erasure::{self, UserRows};
use crate::db::{Database, DbError, messages};

/// Rows per batch, by kind: each batch is one transaction, well within
/// `DATABASE_STATEMENT_TIMEOUT_MS`. A session's deletion cascades to its
/// participants and lineage; a tombstone rewrites its append's search
/// documents.
const SESSIONS_PER_BATCH: i64 = 100;
const PARTICIPATIONS_PER_BATCH: i64 = 200;
const MESSAGES_PER_BATCH: i64 = 200;
const ROWS_PER_BATCH: i64 = 2000;

/// What an erasure did, by kind; the audit row's details, and the
/// answer to the admin.
#[derive(Debug, Default, Clone, Serialize, ToSchema)]
pub struct Counts {
    /// Sessions in which the user was the only participant: deleted for
    /// good (not to the trash), with their messages and search documents
    /// (but for messages other users' forks read, which are tombstoned).
    pub sessions_deleted: u64,
    /// Their participations in sessions that others keep: removed.
    pub participations_removed: u64,
    /// Sessions where they were the last owner: another participant is
    /// owner now (the earliest-joined editor, else viewer).
    pub ownerships_passed_on: u64,
    /// Sessions that named them as `owner_user_id` (their creator): now
    /// named after their earliest-joined owner.
    pub owner_ids_replaced: u64,
    /// Messages they appended that others still read: replaced by a
    /// tombstone that keeps their `seq`.
    pub messages_tombstoned: u64,
    /// Search documents written again without their words (a document is
    /// counted once per batch it was rewritten in).
    pub search_documents_rebuilt: u64,
    /// Rows of the transcripts of deleted sessions that no fork reads
    /// (messages and search documents): deleted. Includes the rows of any
    /// other session deleted before and not yet swept.
    pub transcript_rows_swept: u64,
    pub idempotency_records: u64,
    pub stream_tickets: u64,
    /// Rate-limit counts of their buckets.
    pub rate_limit_rows: u64,
    /// Their `users` row (0 when it was gone already).
    pub users_rows: u64,
    /// Audit rows that named them: they no longer do.
    pub audit_rows_anonymised: u64,
}

/// The answer to an erasure.
#[derive(Debug, Serialize, ToSchema)]
pub struct Receipt {
    /// This run's id: the `target_id` of its `user.erased` audit row (the
    /// user's id is nowhere in the trail any more). Each run has its own.
    pub erasure_id: Uuid,
    /// The user erased (the admin named them; nothing stores this).
    pub user_id: Uuid,
    /// `false`: the run spent its time budget first; run it again to
    /// continue (what is done stays done).
    pub completed: bool,
    /// What this run did.
    pub counts: Counts,
}

/// Erases `user`, a batch at a time, starting no batch after `budget`
/// has passed (at least one batch runs). Each batch takes a connection of
/// its own: none is held while waiting.
pub async fn erase(
    db: &Database,
    user: Uuid,
    budget: Duration,
    invocation_id: Option<&str>,
) -> Result<Receipt, DbError> {
    let mut run = Run {
        db,
        user,
        counts: Counts::default(),
        deadline: Instant::now() + budget,
        batches: 0,
        lone_after: Uuid::nil(),
    };
    let erasure_id = Uuid::new_v4();
    let completed = match run.steps(erasure_id, invocation_id).await {
        Ok(completed) => completed,
        Err(e) => {
            // What the run did is done: the trail says so if it can.
            let mut details = details(&run.counts, false);
            details["failed"] = json!(true);
            if let Ok(client) = db.client().await {
                let _ = erasure::audit_partial(&*client, erasure_id, &details, invocation_id).await;
            }
            return Err(e);
        }
    };
    if completed {
        tracing::info!(%erasure_id, "user erased");
    } else {
        let client = db.client().await?;
        erasure::audit_partial(
            &*client,
            erasure_id,
            &details(&run.counts, false),
            invocation_id,
        )
        .await?;
        tracing::info!(%erasure_id, "erasure stopped at its time budget; run it again to continue");
    }
    Ok(Receipt {
        erasure_id,
        user_id: user,
        completed,
        counts: run.counts,
    })
}

/// The audit row's details: the counts, and whether the run completed.
fn details(counts: &Counts, completed: bool) -> serde_json::Value {
    let mut details = json!(counts);
    details["completed"] = json!(completed);
    details
}

struct Run<'a> {
    db: &'a Database,
    user: Uuid,
    counts: Counts,
    deadline: Instant,
    batches: u64,
    /// Where the pass over lone sessions is (their ids, in order).
    lone_after: Uuid,
}

/// The steps (see the module's documentation), each a batch at a time.
#[derive(Debug, Clone, Copy)]
enum Step {
    LoneSessions,
    Participations,
    OwnerIds,
    Sweep,
    Messages,
    IdempotencyRecords,
    StreamTickets,
    RateLimitRows,
    AuditRows,
}

impl Run<'_> {
    /// Every step, in order; `Ok(false)` once the budget is spent.
    async fn steps(
        &mut self,
        erasure_id: Uuid,
        invocation_id: Option<&str>,
    ) -> Result<bool, DbError> {
        loop {
            // 1 and 2 until the user takes part in nothing.
            loop {
                let Some(deleted) = self.until_done(Step::LoneSessions).await? else {
                    return Ok(false);
                };
                let Some(left) = self.until_done(Step::Participations).await? else {
                    return Ok(false);
                };
                if deleted + left == 0 {
                    break;
                }
            }
            for step in [
                Step::OwnerIds,
                Step::Sweep,
                Step::Messages,
                Step::IdempotencyRecords,
                Step::StreamTickets,
                Step::RateLimitRows,
                Step::AuditRows,
            ] {
                if self.until_done(step).await?.is_none() {
                    return Ok(false);
                }
            }
            if !self.may_start_a_batch() {
                return Ok(false);
            }
            let mut details = details(&self.counts, true);
            if let Some(object) = details.as_object_mut() {
                object.remove("users_rows");
            }
            let client = self.db.client().await?;
            let finished =
                erasure::finish(&*client, self.user, erasure_id, &details, invocation_id).await?;
            self.counts.users_rows += finished.users;
            if finished.done {
                return Ok(true);
            }
            // Added to a session, or a message appended, meanwhile: again.
        }
    }

    /// Whether another batch may start: the first always does.
    fn may_start_a_batch(&mut self) -> bool {
        self.batches += 1;
        self.batches == 1 || Instant::now() < self.deadline
    }

    /// Runs `step` a batch at a time until a batch finds nothing to do;
    /// how many batches found something, or `None` if the budget ran out.
    async fn until_done(&mut self, step: Step) -> Result<Option<u64>, DbError> {
        let mut busy = 0;
        loop {
            if !self.may_start_a_batch() {
                return Ok(None);
            }
            if !self.batch(step).await? {
                return Ok(Some(busy));
            }
            busy += 1;
        }
    }

    /// One batch of `step`, counted; whether it found anything to do.
    async fn batch(&mut self, step: Step) -> Result<bool, DbError> {
        let (user, counts) = (self.user, &mut self.counts);
        let mut client = self.db.client().await?;
        let n = match step {
            Step::LoneSessions => {
                let batch = erasure::delete_lone_sessions(
                    &mut client,
                    user,
                    self.lone_after,
                    SESSIONS_PER_BATCH,
                )
                .await?;
                counts.sessions_deleted += batch.deleted;
                let Some(last) = batch.last else {
                    // The pass is over: the next starts from the first.
                    self.lone_after = Uuid::nil();
                    return Ok(false);
                };
                self.lone_after = last;
                1
            }
            Step::Participations => {
                let left =
                    erasure::leave_sessions(&mut client, user, PARTICIPATIONS_PER_BATCH).await?;
                counts.ownerships_passed_on += left.passed_on;
                counts.participations_removed += left.removed;
                left.removed
            }
            Step::OwnerIds => {
                let n = erasure::rename_owner(&*client, user, ROWS_PER_BATCH).await?;
                counts.owner_ids_replaced += n;
                n
            }
            Step::Sweep => {
                let swept = messages::sweep_step(&*client).await?;
                counts.transcript_rows_swept += swept.deleted;
                u64::from(swept.queued)
            }
            Step::Messages => {
                let done =
                    erasure::tombstone_messages(&mut client, user, MESSAGES_PER_BATCH).await?;
                counts.messages_tombstoned += done.messages;
                counts.search_documents_rebuilt += done.documents;
                done.messages
            }
            Step::IdempotencyRecords | Step::StreamTickets | Step::RateLimitRows => {
                let (kind, count) = match step {
                    Step::IdempotencyRecords => (
                        UserRows::IdempotencyRecords,
                        &mut counts.idempotency_records,
                    ),
                    Step::StreamTickets => (UserRows::StreamTickets, &mut counts.stream_tickets),
                    _ => (UserRows::RateLimitCounts, &mut counts.rate_limit_rows),
                };
                let n = erasure::delete_user_rows(&*client, kind, user, ROWS_PER_BATCH).await?;
                *count += n;
                n
            }
            Step::AuditRows => {
                let n = erasure::anonymise_audit_events(&mut client, user, ROWS_PER_BATCH).await?;
                counts.audit_rows_anonymised += n;
                n
            }
        };
        Ok(n > 0)
    }
}
