//! The purge: everything past its retention goes, in bounded batches
//! (`db::purge`), while one instance at a time holds a PostgreSQL advisory
//! lock on a connection of its own (`DATABASE_LISTEN_HOST`/`_PORT`, past
//! PgBouncer, as the listening connection): a second purge that finds it
//! taken does nothing. The batches run on that connection, so a purge
//! whose connection is lost stops with its lock; what it committed stays
//! purged and the next run does the rest.
//!
//! In order: sessions inactive past their retention; sessions in the
//! trash past TRASH_RETENTION_DAYS; their messages and search documents
//! that no fork reads (the sweep, `db::messages::sweep_step`); users with no
//! session left; audit events past AUDIT_RETENTION_DAYS.

use std::time::{Duration, Instant};

use serde::Serialize;
use uuid::Uuid;

use crate::db::pooled::Pooled;
use crate::db::purge::{self as sql, Counts};
use crate::db::{Database, DbError, listen, messages};
use crate::limits::pace::Pace;
use crate::settings::Settings;

/// What one purge did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Counted only: nothing was changed.
    pub dry_run: bool,
    /// Rows removed (or, dry, that would be), per kind.
    #[serde(flatten)]
    pub counts: Counts,
    /// Statements run (each its own transaction).
    pub batches: u64,
    /// Rows each may remove at most (PURGE_BATCH_SIZE).
    pub batch_size: u32,
    /// The share of the time spent running them (BACKGROUND_BUSY_PERCENT);
    /// the purge rests the rest.
    pub busy_percent: u8,
    /// The longest of them, in milliseconds.
    pub longest_batch_ms: u64,
    pub elapsed_ms: u64,
}

impl Report {
    /// One line for logs and the host's invocation log.
    pub fn summary(&self) -> String {
        let c = &self.counts;
        format!(
            "{}: {} inactive sessions, {} from the trash, {} users, {} audit events, \
             {} transcript rows; {} batches of up to {} (longest {} ms), busy {}% of {} ms",
            if self.dry_run {
                "would purge"
            } else {
                "purged"
            },
            c.sessions_inactive,
            c.sessions_from_trash,
            c.users,
            c.audit_events,
            c.transcript_rows,
            self.batches,
            self.batch_size,
            self.longest_batch_ms,
            self.busy_percent,
            self.elapsed_ms
        )
    }
}

#[derive(Debug)]
pub enum Outcome {
    Done(Report),
    /// Another purge holds the lock: this one did nothing.
    Skipped,
}

/// Times the batches of one purge, each on a connection of the pool
/// taken for it (so each is bounded by DATABASE_STATEMENT_TIMEOUT_MS, as a
/// request is) and given back before the purge rests (`pace`), and stops
/// the purge once the lock's connection is lost.
struct Batches<'a> {
    db: &'a Database,
    lock: &'a tokio_postgres::Client,
    pace: Pace,
    count: u64,
    longest: Duration,
}

impl Batches<'_> {
    async fn run<T, F>(&mut self, batch: F) -> Result<T, DbError>
    where
        F: AsyncFnOnce(&mut Pooled) -> Result<T, DbError>,
    {
        if self.lock.is_closed() {
            return Err(DbError::Unavailable(
                "the connection holding the purge's lock was lost".to_owned(),
            ));
        }
        let mut client = self.db.client().await?;
        let started = Instant::now();
        let result = batch(&mut client).await;
        drop(client);
        let took = started.elapsed();
        self.count += 1;
        self.longest = self.longest.max(took);
        self.pace.rest(took).await;
        result
    }
}

/// Runs one purge (or, `dry_run`, counts what it would remove), unless
/// another holds the lock.
pub async fn run(db: &Database, settings: &Settings, dry_run: bool) -> Result<Outcome, DbError> {
    let started = Instant::now();
    let lock = listen::direct(
        db,
        settings.events.listen_host.as_deref(),
        settings.events.listen_port,
    )
    .await?;
    if !sql::try_lock(&lock.client).await? {
        tracing::info!("purge skipped: another instance is purging");
        return Ok(Outcome::Skipped);
    }
    let lifecycle = &settings.lifecycle;
    // Settings are at most MAX_RETENTION_DAYS.
    let global = lifecycle.max_session_age_days as i32;
    let trash = lifecycle.trash_retention_days as i32;
    let audit = lifecycle.audit_retention_days as i32;
    let batch = i64::from(lifecycle.purge_batch_size);
    let mut batches = Batches {
        db,
        lock: &lock.client,
        pace: settings.database.background_pace,
        count: 0,
        longest: Duration::ZERO,
    };
    let counts = if dry_run {
        batches
            .run(async |c| sql::would_purge(&**c, global, trash, audit).await)
            .await?
    } else {
        let mut counts = Counts::default();
        let any_retention = batches
            .run(async |c| sql::any_retention(&**c, global).await)
            .await?;
        // Passes over a table in key order: each batch after the last key
        // the one before looked at, until none is left.
        let mut after: Option<Uuid> = None;
        if any_retention {
            loop {
                let (last, purged) = batches
                    .run(async |c| sql::expired_sessions(&**c, after, batch, global).await)
                    .await?;
                counts.sessions_inactive += purged;
                after = last;
                if after.is_none() {
                    break;
                }
            }
        }
        // Oldest first, until a batch finds nothing.
        if trash > 0 {
            loop {
                let purged = batches
                    .run(async |c| sql::trashed_sessions(&**c, trash, batch).await)
                    .await?;
                counts.sessions_from_trash += purged;
                if purged == 0 {
                    break;
                }
            }
        }
        loop {
            let step = batches
                .run(async |c| messages::sweep_step(&**c).await)
                .await?;
            counts.transcript_rows += step.deleted;
            if !step.queued {
                break;
            }
        }
        if any_retention {
            loop {
                let (last, deleted) = batches
                    .run(async |c| sql::users(&**c, after, batch, global).await)
                    .await?;
                counts.users += deleted;
                after = last;
                if after.is_none() {
                    break;
                }
            }
        }
        if audit > 0 {
            loop {
                let deleted = batches
                    .run(async |c| sql::audit_events(c, audit, batch).await)
                    .await?;
                counts.audit_events += deleted;
                if deleted == 0 {
                    break;
                }
            }
        }
        counts
    };
    let report = Report {
        dry_run,
        counts,
        batches: batches.count,
        batch_size: lifecycle.purge_batch_size,
        busy_percent: batches.pace.percent(),
        longest_batch_ms: batches.longest.as_millis() as u64,
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    tracing::info!(
        dry_run,
        sessions_inactive = counts.sessions_inactive,
        sessions_from_trash = counts.sessions_from_trash,
        users = counts.users,
        audit_events = counts.audit_events,
        transcript_rows = counts.transcript_rows,
        batches = report.batches,
        longest_batch_ms = report.longest_batch_ms,
        elapsed_ms = report.elapsed_ms,
        "purge done"
    );
    Ok(Outcome::Done(report))
}
