//! Rate limits: requests per minute of one application, of one user
//! through one application, and of that user's writes, held across every
//! instance of the service.
//!
//! Each instance decides alone, from what it knew at its last sync plus
//! what it admitted since: no request of an active caller waits for the
//! database. Every `RATE_LIMIT_SYNC_MS`, and at once when a request needs
//! it, an instance syncs (`sync`): in turn with the other instances, it
//! adds its counts to `rate_limit_counts`, reads theirs and the leases
//! they hold, and takes a lease of its own, an equal share of what is left
//! among the instances serving that caller. It admits at most its lease
//! until the next sync. As leases are taken in turn and never add up to
//! more than what is left, however many instances serve a caller they
//! admit at most its limit (README, "Rate limits").

mod headers;
pub mod sources;
mod sync;
mod window;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::{Notify, watch};
use uuid::Uuid;

pub use headers::{
    RATELIMIT, RATELIMIT_POLICY, Slot, Standing, Standings, middleware as headers_middleware,
};
use window::{Counts, Moment};

use crate::db::Database;
use crate::settings::{PerMinute, RateLimits};

/// Buckets one instance keeps (about 200 bytes each); beyond it the idle
/// ones go first.
const CAPACITY: usize = 100_000;
/// How long a lease may be used without being renewed. Leases follow
/// demand, so what an idle instance holds back meanwhile is small.
const LEASE_LIFE: Duration = Duration::from_secs(10);
/// Rounds of sync a request beyond its instance's share waits for.
const MAX_SYNC_WAITS: usize = 3;
/// At most this many sync intervals between two syncs of a caller's
/// counts while it is active.
const MAX_SYNC_SPACING: u32 = 5;

/// The fields of an application's `settings.rate_limits`, each overriding
/// one limit for that application (0: unlimited).
pub const OVERRIDES: [&str; 3] = [
    "requests_per_minute",
    "writes_per_minute",
    "app_requests_per_minute",
];

/// Whose requests a count is of.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BucketKey {
    /// The SHA-256 of the application's key; `dev` for keyless calls in
    /// development.
    api_key_hash: Arc<str>,
    scope: Scope,
}

impl BucketKey {
    fn new(api_key_hash: &Arc<str>, scope: Scope) -> Self {
        Self {
            api_key_hash: api_key_hash.clone(),
            scope,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Scope {
    App,
    User(Uuid),
    Writes(Uuid),
}

impl Scope {
    /// The name of the policy, in headers and problem details.
    fn policy(self) -> &'static str {
        match self {
            Scope::App => "app",
            Scope::User(_) => "user",
            Scope::Writes(_) => "writes",
        }
    }

    /// What the policy counts, for problem details.
    fn counted(self) -> &'static str {
        match self {
            Scope::App => "requests of one application",
            Scope::User(_) => "requests of one user through one application",
            Scope::Writes(_) => "writes (POST, PATCH, DELETE) of one user through one application",
        }
    }

    /// The bucket's name in `rate_limit_counts`.
    fn bucket(self) -> String {
        match self {
            Scope::App => "app".to_owned(),
            Scope::User(user) => format!("user:{user}"),
            Scope::Writes(user) => format!("writes:{user}"),
        }
    }

    /// The field of an application's `settings.rate_limits` that
    /// overrides this scope's limit.
    fn override_field(self) -> &'static str {
        match self {
            Scope::User(_) => OVERRIDES[0],
            Scope::Writes(_) => OVERRIDES[1],
            Scope::App => OVERRIDES[2],
        }
    }

    fn default_limit(self, settings: &RateLimits) -> PerMinute {
        match self {
            Scope::App => settings.app_requests,
            Scope::User(_) => settings.user_requests,
            Scope::Writes(_) => settings.user_writes,
        }
    }
}

/// The scopes one request counts in: at most three, kept inline (there is
/// one per request).
#[derive(Debug, Clone, Copy)]
struct Scopes {
    list: [Scope; 3],
    len: usize,
}

impl Scopes {
    const NONE: Scopes = Scopes {
        list: [Scope::App; 3],
        len: 0,
    };

    fn push(&mut self, scope: Scope) {
        self.list[self.len] = scope;
        self.len += 1;
    }
}

impl std::ops::Deref for Scopes {
    type Target = [Scope];

    fn deref(&self) -> &[Scope] {
        &self.list[..self.len]
    }
}

/// A part of a caller's limit this instance may admit without asking:
/// the others count it as taken while it holds.
#[derive(Debug, Clone, Copy)]
struct Lease {
    granted: u64,
    window: i64,
    taken_at: Instant,
}

/// One caller's requests as this instance knows them.
#[derive(Debug)]
struct Bucket {
    /// `None`: unlimited.
    limit: PerMinute,
    /// Admitted here (including what is not synced yet).
    mine: Counts,
    /// The other instances', as of the last sync.
    others: Counts,
    /// Admitted here and not yet added to the database.
    unsynced: u64,
    /// Admitted here since the lease was taken.
    since_sync: u64,
    /// What this instance may admit until its next sync.
    lease: Option<Lease>,
    /// Requests waiting for a sync to get a lease: the next one asks for
    /// room for them.
    waiting: u64,
    /// The window whose first request was admitted without a lease.
    on_trust: i64,
    /// Whether a sync since this bucket was last used has read the others.
    fresh: bool,
    /// The window of the last request, to forget idle buckets.
    last_used: i64,
}

impl Bucket {
    fn new(limit: PerMinute, at: Moment) -> Self {
        let empty = Counts {
            window: at.window,
            ..Counts::default()
        };
        Self {
            limit,
            mine: empty,
            others: empty,
            unsynced: 0,
            since_sync: 0,
            // Nothing until a sync has taken a lease.
            lease: None,
            waiting: 0,
            on_trust: i64::MIN,
            fresh: false,
            last_used: at.window,
        }
    }

    /// The lease, while it holds: within the window it was taken in, and
    /// for [`LEASE_LIFE`] after the sync that took it began (the others
    /// count it a sync interval longer, by the database's clock). Syncs
    /// renew the leases of callers still active every interval; a caller
    /// who pauses for less than the life finds its lease still there.
    fn lease(&self, at: Moment) -> Option<u64> {
        self.lease
            .filter(|l| l.window == at.window && l.taken_at.elapsed() < LEASE_LIFE)
            .map(|l| l.granted)
    }

    /// Whether the next sync should renew the lease: half of it is used,
    /// or it was taken [`MAX_SYNC_SPACING`] intervals ago (or half its
    /// life). A caller well within a generous lease (slower than its
    /// limit's pace) needs no sync every interval: what it admits is
    /// within the lease, which the others already count as taken. So the
    /// background syncs' work follows the callers who need it, not all
    /// of them.
    fn lease_running_out(&self, at: Moment, interval: Duration) -> bool {
        self.lease.is_none_or(|l| {
            l.window != at.window
                || self.since_sync * 2 >= l.granted
                || l.taken_at.elapsed() >= (interval * MAX_SYNC_SPACING).min(LEASE_LIFE / 2)
        })
    }

    fn roll(&mut self, at: Moment) {
        self.mine.roll(at.window);
        self.others.roll(at.window);
    }

    fn estimate(&self, at: Moment) -> f64 {
        self.mine.estimate(at) + self.others.estimate(at)
    }

    fn standing(&self, scope: Scope, limit: u32, at: Moment) -> Standing {
        let used = self.estimate(at).ceil() as u64;
        Standing {
            policy: scope.policy(),
            limit,
            remaining: u64::from(limit).saturating_sub(used),
            reset: at.secs_to_window_end(),
        }
    }
}

/// What one request is counted as.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The SHA-256 of the application's key; `None` for keyless calls in
    /// development.
    pub api_key_hash: Option<&'a str>,
    /// The user the request is for, if any.
    pub user: Option<Uuid>,
    /// POST, PATCH or DELETE.
    pub writes: bool,
}

/// Why a request was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{policy} rate limit of {limit} {counted} per minute reached")]
    OverLimit {
        policy: &'static str,
        counted: &'static str,
        limit: u32,
        retry_after: u64,
        standings: Standings,
    },
    /// Near the limit, this instance's share of what is left is used up
    /// until the other instances' use is known.
    #[error("the {policy} rate limit's share of this instance is used up")]
    ShareUsedUp {
        policy: &'static str,
        standings: Standings,
    },
    /// The counts could not be synced with the database in time.
    #[error("rate limits cannot be checked now")]
    Unsynced,
}

enum Verdict {
    /// Admitted; `true`: on trust, so a sync should take a lease soon.
    Admit(Standings, bool),
    Refuse(Refusal),
    /// Within the limit, beyond this instance's lease: a sync may give
    /// more; if none does, the refusal.
    WaitForSync(Refusal),
}

pub struct RateLimiter {
    settings: RateLimits,
    /// Names this instance's rows in `rate_limit_counts`.
    instance: Uuid,
    buckets: Mutex<HashMap<BucketKey, Bucket>>,
    /// After every sync: whether it succeeded.
    synced: watch::Sender<bool>,
    /// A request waits for a sync: run the next one soon.
    wanted: Notify,
    started: Once,
    /// How long a request may wait for a sync: longer means the database
    /// is not answering.
    max_wait: Duration,
    db: Arc<Database>,
}

impl RateLimiter {
    /// `db_wait`: how long one statement may take to get a connection and run.
    pub fn new(settings: RateLimits, db_wait: Duration, db: Arc<Database>) -> Arc<Self> {
        Arc::new(Self {
            settings,
            instance: Uuid::new_v4(),
            buckets: Mutex::default(),
            synced: watch::Sender::new(true),
            wanted: Notify::new(),
            started: Once::new(),
            max_wait: settings.sync_interval * 2 + db_wait,
            db,
        })
    }

    /// Counts one request of `caller`, or says why it may not be made.
    /// Decided at once from what this instance holds; only a request
    /// beyond its instance's lease waits, for a sync.
    pub async fn admit(self: &Arc<Self>, caller: Caller<'_>) -> Result<Standings, Refusal> {
        let scopes = self.scopes(caller);
        if scopes.is_empty() {
            return Ok(Standings::default());
        }
        self.started.call_once(|| sync::start(self.clone()));
        let key_hash: Arc<str> = Arc::from(caller.api_key_hash.unwrap_or("dev"));
        match self.decide_now(&key_hash, &scopes) {
            Verdict::Admit(standings, _) => Ok(standings),
            Verdict::Refuse(refusal) => Err(refusal),
            // Boxed: every request's future carries the common path only.
            Verdict::WaitForSync(_) => Box::pin(self.wait_for_room(key_hash, scopes)).await,
        }
    }

    /// Waits for up to [`MAX_SYNC_WAITS`] syncs to give the request room.
    async fn wait_for_room(
        &self,
        key_hash: Arc<str>,
        scopes: Scopes,
    ) -> Result<Standings, Refusal> {
        let mut synced = self.synced.subscribe();
        for wait in 1..=MAX_SYNC_WAITS {
            synced.borrow_and_update();
            self.count_waiting(&key_hash, &scopes, true);
            // Stored as a permit if the sync loop is busy: a sync starts
            // after this point, and `synced` sees it end.
            self.wanted.notify_one();
            // A sync that fails (the database is out of reach) gives no
            // room: say so rather than wait for more.
            let done = tokio::time::timeout(self.max_wait, synced.changed()).await;
            self.count_waiting(&key_hash, &scopes, false);
            if !matches!(done, Ok(Ok(()))) || !*synced.borrow_and_update() {
                return Err(Refusal::Unsynced);
            }
            match self.decide_now(&key_hash, &scopes) {
                Verdict::Admit(standings, _) => return Ok(standings),
                Verdict::Refuse(refusal) => return Err(refusal),
                Verdict::WaitForSync(refusal) if wait == MAX_SYNC_WAITS => return Err(refusal),
                Verdict::WaitForSync(_) => {}
            }
        }
        unreachable!("the last wait returns")
    }

    /// [`Self::decide`] now; a request admitted on trust asks for a sync,
    /// so that a lease follows it soon.
    fn decide_now(&self, key_hash: &Arc<str>, scopes: &Scopes) -> Verdict {
        let verdict = self.decide(key_hash, scopes, Moment::now());
        if let Verdict::Admit(_, true) = verdict {
            self.wanted.notify_one();
        }
        verdict
    }

    /// Callers (an application, a user through it, their writes) whose
    /// counts this instance holds now.
    pub fn callers(&self) -> usize {
        self.buckets.lock().expect("rate buckets").len()
    }

    fn scopes(&self, caller: Caller<'_>) -> Scopes {
        // A scope without a default limit may still have an override, so
        // only a limiter with no limits at all counts nothing.
        if [
            self.settings.app_requests,
            self.settings.user_requests,
            self.settings.user_writes,
        ]
        .iter()
        .all(Option::is_none)
        {
            return Scopes::NONE;
        }
        let mut scopes = Scopes::NONE;
        scopes.push(Scope::App);
        if let Some(user) = caller.user {
            scopes.push(Scope::User(user));
            if caller.writes {
                scopes.push(Scope::Writes(user));
            }
        }
        scopes
    }

    fn count_waiting(&self, key_hash: &Arc<str>, scopes: &Scopes, start: bool) {
        let mut buckets = self.buckets.lock().expect("rate buckets");
        for &scope in scopes.iter() {
            let key = BucketKey::new(key_hash, scope);
            if let Some(bucket) = buckets.get_mut(&key) {
                bucket.waiting = if start {
                    bucket.waiting + 1
                } else {
                    bucket.waiting.saturating_sub(1)
                };
            }
        }
    }

    /// Admits the request in every scope, or in none: each scope's bucket
    /// is looked up once and counted as it is checked; a later scope's
    /// refusal takes the earlier counts back (rare, so the common path
    /// hashes each key once).
    fn decide(&self, key_hash: &Arc<str>, scopes: &Scopes, at: Moment) -> Verdict {
        let mut buckets = self.buckets.lock().expect("rate buckets");
        if buckets.len() + scopes.len() > CAPACITY {
            make_room(&mut buckets, at);
        }
        let mut standings = Standings::with_capacity(scopes.len());
        // The scopes counted so far, and whether each was on trust.
        let mut counted = [(Scope::App, false); 3];
        let mut n_counted = 0;
        let mut on_trust = false;
        // A refusal's standings are moved into it at the end, once every
        // scope checked has added its own.
        let mut verdict = None;
        for &scope in scopes.iter() {
            let key = BucketKey::new(key_hash, scope);
            let bucket = buckets
                .entry(key)
                .or_insert_with(|| Bucket::new(scope.default_limit(&self.settings), at));
            bucket.roll(at);
            bucket.last_used = at.window;
            bucket.fresh = false;
            let Some(limit) = bucket.limit else { continue };
            if bucket.estimate(at) + 1.0 > f64::from(limit) {
                let counts = bucket.mine.add(&bucket.others);
                standings.push(bucket.standing(scope, limit, at));
                verdict = Some(Verdict::Refuse(Refusal::OverLimit {
                    policy: scope.policy(),
                    counted: scope.counted(),
                    limit,
                    retry_after: window::secs_until_room(counts, limit.into(), at),
                    standings: Standings::new(),
                }));
                break;
            }
            let lease = bucket.lease(at);
            match lease {
                Some(0) => {
                    // What is left is leased to other instances: refused
                    // until a sync finds some of it given back.
                    standings.push(bucket.standing(scope, limit, at));
                    verdict = Some(Verdict::Refuse(Refusal::ShareUsedUp {
                        policy: scope.policy(),
                        standings: Standings::new(),
                    }));
                    break;
                }
                Some(granted) if bucket.since_sync < granted => {}
                // The first request of a minute, before any lease of
                // that minute: admitted on trust, once (README's bound).
                None if bucket.on_trust != at.window
                    && bucket.lease.is_none_or(|l| l.window != at.window) => {}
                _ => {
                    // Within the limit, beyond this instance's lease: the
                    // other scopes are still checked, so a refusal wins.
                    if verdict.is_none() {
                        verdict = Some(Verdict::WaitForSync(Refusal::ShareUsedUp {
                            policy: scope.policy(),
                            standings: Standings::new(),
                        }));
                    }
                    standings.push(bucket.standing(scope, limit, at));
                    continue;
                }
            }
            standings.push(bucket.standing(scope, limit, at));
            if lease.is_none() {
                bucket.on_trust = at.window;
                on_trust = true;
            }
            bucket.mine.current += 1;
            bucket.unsynced += 1;
            bucket.since_sync += 1;
            counted[n_counted] = (scope, lease.is_none());
            n_counted += 1;
        }
        let Some(mut verdict) = verdict else {
            for standing in standings.iter_mut() {
                standing.remaining = standing.remaining.saturating_sub(1);
            }
            return Verdict::Admit(standings, on_trust);
        };
        for &(scope, trusted) in &counted[..n_counted] {
            let key = BucketKey::new(key_hash, scope);
            let bucket = buckets.get_mut(&key).expect("counted above");
            bucket.mine.current -= 1;
            bucket.unsynced -= 1;
            bucket.since_sync -= 1;
            if trusted {
                // Its one request on trust this minute is still to come.
                bucket.on_trust = i64::MIN;
            }
        }
        match &mut verdict {
            Verdict::Refuse(
                Refusal::OverLimit { standings: s, .. } | Refusal::ShareUsedUp { standings: s, .. },
            )
            | Verdict::WaitForSync(Refusal::ShareUsedUp { standings: s, .. }) => *s = standings,
            _ => {}
        }
        verdict
    }
}

/// Forgets the buckets not used in this window or the last; if that is not
/// enough, all of them (the database still holds every synced count; what
/// this instance admitted since its last sync is lost, which errs on the
/// caller's side).
fn make_room(buckets: &mut HashMap<BucketKey, Bucket>, at: Moment) {
    buckets.retain(|_, b| b.last_used + 1 >= at.window);
    if buckets.len() >= CAPACITY {
        tracing::warn!(
            buckets = buckets.len(),
            "rate limit buckets full; forgetting them"
        );
        buckets.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Secrets;
    use crate::settings::Settings;
    use crate::settings::tests::vars;

    /// A limiter with these limits; `decide` alone never reaches the
    /// database (only syncs do).
    fn limiter(limits: &[(&str, &str)]) -> Arc<RateLimiter> {
        let settings = Arc::new(Settings::from_vars(&vars(limits)).unwrap());
        let secrets = Arc::new(Secrets::new(settings.clone()).unwrap());
        let db = Arc::new(Database::new(settings.database.clone(), secrets, None));
        RateLimiter::new(settings.rate_limits, Duration::from_secs(1), db)
    }

    fn write_of(user: Uuid) -> Scopes {
        let mut scopes = Scopes::NONE;
        for scope in [Scope::App, Scope::User(user), Scope::Writes(user)] {
            scopes.push(scope);
        }
        scopes
    }

    fn used(limiter: &RateLimiter, key: &Arc<str>, scope: Scope) -> (u64, u64, i64) {
        let buckets = limiter.buckets.lock().unwrap();
        let b = &buckets[&BucketKey::new(key, scope)];
        (b.mine.current, b.unsynced, b.on_trust)
    }

    #[test]
    fn a_request_refused_in_one_scope_is_counted_in_none() {
        let limiter = limiter(&[
            ("RATE_LIMIT_REQUESTS_PER_MINUTE", "100"),
            ("RATE_LIMIT_WRITES_PER_MINUTE", "1"),
        ]);
        let (key, user, at) = (Arc::<str>::from("k"), Uuid::new_v4(), Moment::now());
        // The first write of the minute is admitted on trust in all three.
        assert!(matches!(
            limiter.decide(&key, &write_of(user), at),
            Verdict::Admit(_, true)
        ));
        // A sync leased the application and the user room for more.
        for scope in [Scope::App, Scope::User(user)] {
            let mut buckets = limiter.buckets.lock().unwrap();
            let bucket = buckets.get_mut(&BucketKey::new(&key, scope)).unwrap();
            bucket.lease = Some(Lease {
                granted: 50,
                window: at.window,
                taken_at: Instant::now(),
            });
            bucket.since_sync = 0;
        }
        let before = [Scope::App, Scope::User(user)].map(|s| used(&limiter, &key, s));
        assert_eq!(before[1].0, 1);
        // The second is over the writes limit: app and user, checked
        // (and counted) before it, give their count back.
        match limiter.decide(&key, &write_of(user), at) {
            Verdict::Refuse(Refusal::OverLimit {
                policy, standings, ..
            }) => {
                assert_eq!(policy, "writes");
                let policies: Vec<_> = standings.iter().map(|s| s.policy).collect();
                assert_eq!(policies, ["app", "user", "writes"]);
            }
            _ => panic!("the second write is refused"),
        }
        let after = [Scope::App, Scope::User(user)].map(|s| used(&limiter, &key, s));
        assert_eq!(after, before);
    }

    #[test]
    fn a_request_waiting_for_a_sync_is_counted_only_once_admitted() {
        let limiter = limiter(&[("RATE_LIMIT_REQUESTS_PER_MINUTE", "100")]);
        let (key, user, at) = (Arc::<str>::from("k"), Uuid::new_v4(), Moment::now());
        let mut read = Scopes::NONE;
        read.push(Scope::App);
        read.push(Scope::User(user));
        assert!(matches!(
            limiter.decide(&key, &read, at),
            Verdict::Admit(_, true)
        ));
        // A new user of the same application: its own first request is on
        // trust, but the application's was used, so it waits for a lease;
        // the user's trust is not spent by it.
        let other = Uuid::new_v4();
        let mut theirs = Scopes::NONE;
        theirs.push(Scope::App);
        theirs.push(Scope::User(other));
        assert!(matches!(
            limiter.decide(&key, &theirs, at),
            Verdict::WaitForSync(_)
        ));
        assert_eq!(used(&limiter, &key, Scope::App).0, 1);
        let (count, unsynced, on_trust) = used(&limiter, &key, Scope::User(other));
        assert_eq!((count, unsynced), (0, 0));
        assert_ne!(on_trust, at.window, "its request on trust is still to come");
    }
}
