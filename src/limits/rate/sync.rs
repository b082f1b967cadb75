//! Reconciling this instance's counts with the other instances': one
//! statement every `RATE_LIMIT_SYNC_MS` while requests are being counted
//! (none while the instance is idle), run in the background.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::{Instant, MissedTickBehavior};

use super::window::{Counts, Moment, WINDOW_SECS};
use super::{Bucket, BucketKey, Lease, RateLimiter};
use crate::db::DbError;

/// For each bucket this instance counted (`$2`..`$6`: key hash, bucket,
/// requests to add, its own sliding-minute count, the setting's limit with
/// 0 for none, the field of `settings.rate_limits` that overrides it):
/// reads the other instances' counts in window `$7` and the one before
/// (`$8`: how much of `$7` has passed), the leases they hold and how many
/// they are (of those that synced within `$11` seconds: a lease lapses
/// then, a sync interval after its holder stops using it);
/// decides this instance's lease (what it may admit before its
/// next sync): what it wants (`$12`), at most an equal share of what is
/// left (at least 1 while anything is, 0 once nothing is); and adds its
/// requests and its lease to its own row. An instance only writes its own
/// rows (`$1`), so instances never wait for each other. `$9`: also sweep
/// windows that no longer count.
const SYNC: &str = "
WITH mine AS (
    SELECT * FROM unnest($2::varchar[], $3::varchar[], $4::bigint[], $5::float8[],
                         $6::bigint[], $10::varchar[], $12::bigint[])
        AS m (api_key_hash, bucket, requests, counted, setting, override_field, wanted)
), others AS (
    SELECT m.api_key_hash, m.bucket,
           coalesce(sum(c.requests) FILTER (WHERE c.window_start = $7), 0)::bigint AS current,
           coalesce(sum(c.requests) FILTER (WHERE c.window_start < $7), 0)::bigint AS previous,
           coalesce(sum(c.leased) FILTER (WHERE c.window_start = $7 AND c.live), 0)::bigint
               AS leased,
           count(DISTINCT c.instance_id) FILTER (WHERE c.live) AS instances
    FROM mine m
    LEFT JOIN LATERAL (
        SELECT *, synced_at > now() - make_interval(secs => $11) AS live
        FROM rate_limit_counts
        WHERE api_key_hash = m.api_key_hash AND bucket = m.bucket
          AND window_start >= $7::timestamptz - interval '1 minute'
          AND window_start <= $7
          AND instance_id <> $1
    ) AS c ON true
    GROUP BY m.api_key_hash, m.bucket
), limited AS MATERIALIZED (
    SELECT m.*, o.current, o.previous, o.leased, o.instances,
           coalesce(
               CASE WHEN jsonb_typeof(a.settings -> 'rate_limits' -> m.override_field) = 'number'
                    THEN (a.settings -> 'rate_limits' ->> m.override_field)::bigint
               END,
               m.setting) AS rate_limit
    FROM mine m
    JOIN others o USING (api_key_hash, bucket)
    LEFT JOIN applications a ON a.api_key_hash = m.api_key_hash
), decided AS (
    SELECT l.*,
           CASE WHEN l.rate_limit = 0 THEN NULL
                WHEN l.left_over >= 1
                    THEN least(l.wanted, greatest(1, floor(l.left_over / (l.instances + 1))))::bigint
                ELSE 0
           END AS lease
    FROM (SELECT *, rate_limit - counted - previous * (1 - $8::float8) - current - leased
                    AS left_over
          FROM limited) AS l
), added AS (
    INSERT INTO rate_limit_counts AS c
        (api_key_hash, bucket, window_start, instance_id, requests, leased, synced_at)
    SELECT api_key_hash, bucket, $7, $1, requests, coalesce(lease, 0), now() FROM decided
    ON CONFLICT (api_key_hash, bucket, window_start, instance_id)
    DO UPDATE SET requests = c.requests + excluded.requests, leased = excluded.leased,
                  synced_at = excluded.synced_at
), swept AS (
    DELETE FROM rate_limit_counts
    WHERE $9 AND window_start < $7::timestamptz - interval '2 minutes'
)
SELECT api_key_hash, bucket, current, previous, rate_limit, lease FROM decided";

/// Takes, in one order, a transaction-level lock per application of the
/// sync (`$1`: key hashes), so that instances take their leases of an
/// application's buckets one after the other: each sees the leases taken
/// before its own, and together they never lease more than what is left.
/// Per application rather than per bucket, so that a sync holds a few
/// locks, not one per user. (A transaction lock: PgBouncer's transaction
/// pooling keeps it.)
const LOCK: &str = "
SELECT pg_advisory_xact_lock(h) FROM (
    SELECT DISTINCT hashtextextended(api_key_hash, 0) AS h
    FROM unnest($1::varchar[]) AS m (api_key_hash)
    ORDER BY h
) AS locks";

/// The smallest lease asked for.
const MIN_LEASE: i64 = 4;

/// How often windows that no longer count are swept, at most.
const SWEEP_EVERY_SECS: u64 = 60;

pub(super) fn start(limiter: Arc<RateLimiter>) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(limiter.settings.sync_interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_sweep: Option<Instant> = None;
        loop {
            // Every interval, the buckets used since their last sync;
            // asked for early, only those with requests waiting or without
            // a lease, so that early syncs do not re-lease (and shrink)
            // everybody's leases.
            let only_waiting = tokio::select! {
                _ = ticks.tick() => false,
                () = limiter.wanted.notified() => true,
            };
            let sweep = last_sweep.is_none_or(|at| at.elapsed().as_secs() >= SWEEP_EVERY_SECS);
            let ok = match sync_once(&limiter, sweep, only_waiting).await {
                Ok(synced) => {
                    if synced && sweep {
                        last_sweep = Some(Instant::now());
                    }
                    true
                }
                Err(e) => {
                    tracing::warn!(error = %e, "rate limit counts not synced");
                    false
                }
            };
            limiter.synced.send_replace(ok);
        }
    });
}

/// One bucket's part in a sync.
struct Flush {
    key: BucketKey,
    requests: u64,
    since_sync: u64,
    counted: f64,
    setting: i64,
    /// The lease to ask for (see [`wanted`]): it follows demand, so a
    /// burst waits for one sync, not one per doubling, and an instance
    /// holds back little of the limit from the others.
    wanted: i64,
}

/// Syncs the buckets used since the last sync; `Ok(false)` when there
/// was nothing to do.
async fn sync_once(
    limiter: &RateLimiter,
    sweep: bool,
    only_waiting: bool,
) -> Result<bool, DbError> {
    let (at, started) = (Moment::now(), Instant::now());
    let interval = limiter.settings.sync_interval;
    let flushes: Vec<Flush> = {
        let mut buckets = limiter.buckets.lock().expect("rate buckets");
        buckets
            .iter_mut()
            .filter(|(_, b)| {
                !b.fresh
                    && (b.waiting > 0
                        || b.lease(at).is_none()
                        || (!only_waiting && b.lease_running_out(at, interval)))
            })
            .map(|(key, b)| {
                b.roll(at);
                // A request from now on makes it due again.
                b.fresh = true;
                let flush = Flush {
                    key: key.clone(),
                    requests: b.unsynced,
                    since_sync: b.since_sync,
                    counted: b.mine.estimate(at),
                    wanted: wanted(b, interval),
                    setting: key
                        .scope
                        .default_limit(&limiter.settings)
                        .map_or(0, i64::from),
                };
                b.unsynced = 0;
                flush
            })
            .collect()
    };
    if flushes.is_empty() {
        return Ok(false);
    }
    let result = run(limiter, &flushes, at, sweep).await;
    let mut buckets = limiter.buckets.lock().expect("rate buckets");
    let rows = match result {
        Ok(rows) => rows,
        Err(e) => {
            // Counted again next time.
            for flush in &flushes {
                if let Some(b) = buckets.get_mut(&flush.key) {
                    b.unsynced += flush.requests;
                    b.fresh = false;
                }
            }
            return Err(e);
        }
    };
    let now = Moment::now();
    for flush in &flushes {
        let Some(b) = buckets.get_mut(&flush.key) else {
            continue;
        };
        let name = (flush.key.api_key_hash.to_string(), flush.key.scope.bucket());
        let Some(row) = rows.get(&name) else { continue };
        b.others = Counts {
            window: at.window,
            current: row.current,
            previous: row.previous,
        };
        b.roll(now);
        b.limit = row.limit;
        b.since_sync = b.since_sync.saturating_sub(flush.since_sync);
        b.lease = Some(Lease {
            granted: row.lease,
            window: at.window,
            taken_at: started,
        });
    }
    Ok(true)
}

/// The lease to ask for: twice what the bucket's rate since its last lease
/// would let in over a sync interval, plus room for the requests waiting,
/// and never less than the limit's own pace over an interval.
/// A rate, not a count: syncs asked for early come faster than the
/// interval, and a count since the last one would shrink the lease each
/// time and so ask for ever more syncs. The pace: a caller well within its
/// limit sent 3 requests in one second and 9 in the next (a rate that
/// small wobbles by itself), and without it would wait for a sync; near
/// the limit, the equal share of what is left caps the lease anyway.
fn wanted(bucket: &Bucket, interval: Duration) -> i64 {
    let pace = bucket.limit.map_or(0.0, |limit| {
        f64::from(limit) * interval.as_secs_f64() / WINDOW_SECS as f64
    });
    let (rate, floor) = match bucket.lease {
        Some(lease) => {
            let elapsed = lease.taken_at.elapsed().max(Duration::from_millis(1));
            let rate = bucket.since_sync as f64 * interval.as_secs_f64() / elapsed.as_secs_f64();
            // Within an interval of the last lease, too few requests
            // to tell a rate: ask for no less than it gave.
            let floor = if elapsed < interval { lease.granted } else { 0 };
            (rate, floor)
        }
        None => (0.0, 0),
    };
    let wanted = (2.0 * (rate + bucket.waiting as f64)).max(pace);
    (wanted.ceil() as i64)
        .max(i64::try_from(floor).unwrap_or(i64::MAX))
        .max(MIN_LEASE)
}

/// What a sync tells about one bucket.
struct Synced {
    /// The other instances' requests in the sync's window and the one before.
    current: u64,
    previous: u64,
    /// The application's override, else the setting; `None`: unlimited.
    limit: Option<u32>,
    /// What this instance may admit before its next sync.
    lease: u64,
}

async fn run(
    limiter: &RateLimiter,
    flushes: &[Flush],
    at: Moment,
    sweep: bool,
) -> Result<HashMap<(String, String), Synced>, DbError> {
    let key_hashes: Vec<&str> = flushes.iter().map(|f| &*f.key.api_key_hash).collect();
    let buckets: Vec<String> = flushes.iter().map(|f| f.key.scope.bucket()).collect();
    let requests: Vec<i64> = flushes
        .iter()
        .map(|f| i64::try_from(f.requests).unwrap_or(i64::MAX))
        .collect();
    let counted: Vec<f64> = flushes.iter().map(|f| f.counted).collect();
    let wanted: Vec<i64> = flushes.iter().map(|f| f.wanted).collect();
    let settings: Vec<i64> = flushes.iter().map(|f| f.setting).collect();
    let fields: Vec<&str> = flushes
        .iter()
        .map(|f| f.key.scope.override_field())
        .collect();
    let window_start: DateTime<Utc> = DateTime::from_timestamp(at.window * WINDOW_SECS, 0)
        .ok_or_else(|| DbError::Other("the clock is out of range".to_owned()))?;
    let lease_life = (super::LEASE_LIFE + limiter.settings.sync_interval).as_secs_f64();
    let mut client = limiter.db.client().await?;
    let tx = client.transaction().await?;
    tx.execute(LOCK, &[&key_hashes]).await?;
    let rows = tx
        .query(
            SYNC,
            &[
                &limiter.instance,
                &key_hashes,
                &buckets,
                &requests,
                &counted,
                &settings,
                &window_start,
                &at.elapsed,
                &sweep,
                &fields,
                &lease_life,
                &wanted,
            ],
        )
        .await?;
    tx.commit().await?;
    Ok(rows
        .iter()
        .map(|row| {
            let count = |name: &str| u64::try_from(row.get::<_, i64>(name)).unwrap_or(0);
            let limit = u32::try_from(row.get::<_, i64>("rate_limit")).unwrap_or(u32::MAX);
            let lease: Option<i64> = row.get("lease");
            (
                (row.get("api_key_hash"), row.get("bucket")),
                Synced {
                    current: count("current"),
                    previous: count("previous"),
                    limit: (limit > 0).then_some(limit),
                    lease: lease.map_or(u64::MAX, |n| u64::try_from(n).unwrap_or(1)),
                },
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket_with(limit: u32, since_sync: u64, lease_age: Duration) -> Bucket {
        let at = Moment::now();
        let mut bucket = Bucket::new(Some(limit), at);
        bucket.lease = Some(Lease {
            granted: 4,
            window: at.window,
            taken_at: Instant::now() - lease_age,
        });
        bucket.since_sync = since_sync;
        bucket
    }

    #[test]
    fn a_lease_follows_the_callers_rate() {
        // 100 requests in the last second: room for twice that.
        let busy = bucket_with(6_000, 100, Duration::from_secs(1));
        let wanted = wanted(&busy, Duration::from_secs(1));
        assert!((190..=210).contains(&wanted), "{wanted}");
    }

    #[test]
    fn a_slow_caller_still_gets_its_limits_pace() {
        // 2 requests in the last second of a caller allowed 600 a minute:
        // its lease still holds 10 (the limit's pace over the interval), so
        // a few more next second do not make it wait for a sync.
        let slow = bucket_with(600, 2, Duration::from_secs(1));
        assert_eq!(wanted(&slow, Duration::from_secs(1)), 10);
        // And a new caller starts at the pace.
        let new = Bucket::new(Some(600), Moment::now());
        assert_eq!(wanted(&new, Duration::from_secs(1)), 10);
    }
}
