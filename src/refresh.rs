//! A value fetched from another service (signing keys, Key Vault secrets,
//! Entra ID tokens), kept fresh without letting that service's outage or
//! slowness reach requests (stale-while-revalidate):
//!
//! - a request that has a usable value never waits: once the value is due
//!   (past its freshness), the next caller starts a refresh in the
//!   background and every caller keeps getting the current value, however
//!   long that refresh takes (a vault that accepts connections and never
//!   answers included);
//! - a failed refresh keeps the last good value while it is usable
//!   (stale-while-error), with a log line; no refresh starts within a
//!   second of the last one;
//! - one fetch at a time (single-flight): only callers without a usable
//!   value wait, for that one fetch (bounded by its own timeout), and share
//!   its outcome, so after a failure they get its error at once instead of
//!   queueing behind further timeouts.
//!
//! Time is tokio's, so the tests run on paused time.

use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// After a failed fetch, how long callers get its error (or the stale
/// value) instead of starting another: long enough that a dead service is
/// not asked by every request, short enough that recovery shows at once.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// How long a fetched value is fresh, and how long it may still be used
/// while refreshing it fails.
pub enum Lifetime<T> {
    /// The same for every value: fresh for `ttl`, usable for `max_stale`.
    Fixed { ttl: Duration, max_stale: Duration },
    /// Read off the value (a token's expiry): `expires_in` says how long it
    /// has left when fetched; it is refreshed `margin` before that and used
    /// until `min_left` before that.
    Expiring {
        expires_in: fn(&T) -> Duration,
        margin: Duration,
        min_left: Duration,
    },
}

pub struct Refreshing<T, E> {
    /// What is fetched, for log lines.
    what: &'static str,
    lifetime: Lifetime<T>,
    state: Mutex<State<T, E>>,
    /// Held by whoever fetches.
    fetching: tokio::sync::Mutex<()>,
}

struct Current<T> {
    value: Arc<T>,
    /// When it was fetched (its age, for log lines).
    fetched: Instant,
    fresh_until: Instant,
    usable_until: Instant,
}

struct State<T, E> {
    current: Option<Current<T>>,
    /// The last failed fetch, until a fetch succeeds.
    failed: Option<(E, Instant)>,
    /// Whether a background refresh is under way.
    background: bool,
    /// How many fetches have ended, and when the last one did.
    fetches: u64,
    last_ended: Option<Instant>,
}

impl<T, E> Refreshing<T, E>
where
    T: Send + Sync + 'static,
    E: Clone + Display + Send + 'static,
{
    pub fn new(what: &'static str, lifetime: Lifetime<T>) -> Self {
        Self {
            what,
            lifetime,
            state: Mutex::new(State {
                current: None,
                failed: None,
                background: false,
                fetches: 0,
                last_ended: None,
            }),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// Fresh for `ttl`, usable for `max_stale` (at least `ttl`).
    pub fn fixed(what: &'static str, ttl: Duration, max_stale: Duration) -> Self {
        Self::new(
            what,
            Lifetime::Fixed {
                ttl,
                max_stale: max_stale.max(ttl),
            },
        )
    }

    /// The current value if it is still usable, without fetching.
    pub fn peek(&self) -> Option<Arc<T>> {
        let state = self.state.lock().expect("refresh state");
        state
            .current
            .as_ref()
            .filter(|c| Instant::now() < c.usable_until)
            .map(|c| c.value.clone())
    }

    /// Forgets the current value (e.g. a token the server rejected): the
    /// next caller fetches.
    pub fn invalidate(&self) {
        self.state.lock().expect("refresh state").current = None;
    }

    /// The current value; `fetch` gets a new one when there is none usable
    /// (the caller waits), or in the background when it is due (nobody
    /// waits).
    pub async fn get<F, Fut>(self: &Arc<Self>, fetch: F) -> Result<Arc<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        {
            let mut state = self.state.lock().expect("refresh state");
            let now = Instant::now();
            if let Some(current) = &state.current
                && now < current.usable_until
            {
                let value = current.value.clone();
                let due = now >= current.fresh_until;
                // Not again within a second of the last fetch, whatever its
                // outcome (a token that is due as soon as it is fetched).
                let resting = state
                    .last_ended
                    .is_some_and(|at| now < at + self.retry_after());
                if due && !state.background && !resting {
                    state.background = true;
                    let this = self.clone();
                    let future = fetch();
                    tokio::spawn(async move {
                        let _one = this.fetching.lock().await;
                        let result = future.await;
                        this.store(result).ok();
                        this.state.lock().expect("refresh state").background = false;
                    });
                }
                return Ok(value);
            }
        }
        self.fetch(|_| true, fetch).await
    }

    /// Fetches now, unless someone fetched since this call began, or a
    /// fetch failed within a second (its error is returned), or the
    /// current value does not satisfy `wanting` (it is returned). For when
    /// there is no usable value, or the current one was found wanting (an
    /// unknown key id, a rejected password).
    pub async fn fetch<F, Fut>(
        &self,
        wanting: impl Fn(&Arc<T>) -> bool,
        fetch: F,
    ) -> Result<Arc<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let asked = self.state.lock().expect("refresh state").fetches;
        let _one = self.fetching.lock().await;
        {
            let state = self.state.lock().expect("refresh state");
            let now = Instant::now();
            let usable = state
                .current
                .as_ref()
                .filter(|c| now < c.usable_until)
                .map(|c| &c.value);
            // Someone fetched while this call waited: share their outcome.
            if state.fetches != asked {
                match (&state.failed, usable) {
                    (Some((error, _)), _) => return Err(error.clone()),
                    (None, Some(value)) => return Ok(value.clone()),
                    (None, None) => {}
                }
            }
            if let Some(value) = usable
                && !wanting(value)
            {
                return Ok(value.clone());
            }
            if let Some((error, at)) = &state.failed
                && now < *at + self.retry_after()
            {
                return Err(error.clone());
            }
        }
        let result = fetch().await;
        self.store(result)
    }

    fn retry_after(&self) -> Duration {
        match &self.lifetime {
            Lifetime::Fixed { ttl, .. } => RETRY_AFTER.min(*ttl),
            Lifetime::Expiring { .. } => RETRY_AFTER,
        }
    }

    fn store(&self, result: Result<T, E>) -> Result<Arc<T>, E> {
        let mut state = self.state.lock().expect("refresh state");
        let now = Instant::now();
        state.fetches += 1;
        state.last_ended = Some(now);
        match result {
            Ok(value) => {
                let (fresh_for, usable_for) = match &self.lifetime {
                    Lifetime::Fixed { ttl, max_stale } => (*ttl, *max_stale),
                    Lifetime::Expiring {
                        expires_in,
                        margin,
                        min_left,
                    } => {
                        let left = expires_in(&value);
                        (left.saturating_sub(*margin), left.saturating_sub(*min_left))
                    }
                };
                let value = Arc::new(value);
                state.current = Some(Current {
                    value: value.clone(),
                    fetched: now,
                    fresh_until: now.checked_add(fresh_for).unwrap_or(far_future(now)),
                    usable_until: now.checked_add(usable_for).unwrap_or(far_future(now)),
                });
                state.failed = None;
                Ok(value)
            }
            Err(error) => {
                match &state.current {
                    Some(current) if now < current.usable_until => tracing::warn!(
                        what = self.what,
                        %error,
                        age_seconds = (now - current.fetched).as_secs(),
                        "refresh failed; serving the last good value"
                    ),
                    _ => tracing::error!(what = self.what, %error, "fetch failed"),
                }
                state.failed = Some((error.clone(), now));
                Err(error)
            }
        }
    }
}

/// A deadline that never comes (a `Duration::MAX` lifetime).
fn far_future(now: Instant) -> Instant {
    now + Duration::from_secs(100 * 365 * 24 * 3600)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn counter() -> Arc<AtomicUsize> {
        Arc::new(AtomicUsize::new(0))
    }

    fn fixed(ttl_ms: u64, max_stale_ms: u64) -> Arc<Refreshing<u32, String>> {
        Arc::new(Refreshing::fixed(
            "test",
            Duration::from_millis(ttl_ms),
            Duration::from_millis(max_stale_ms),
        ))
    }

    /// Lets spawned tasks run until they wait on (paused) time.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn stale_values_are_served_while_a_background_refresh_fails() {
        let cache = fixed(20, 60_000);
        assert_eq!(*cache.get(|| async { Ok(1) }).await.unwrap(), 1);
        tokio::time::advance(Duration::from_millis(30)).await;
        let calls = counter();
        for _ in 0..50 {
            let calls = calls.clone();
            let value = cache
                .get(|| async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Err::<u32, _>("down".to_owned())
                })
                .await;
            assert_eq!(*value.unwrap(), 1, "the last good value");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one refresh at a time");
        assert_eq!(*cache.get(|| async { Ok(2) }).await.unwrap(), 1, "resting");
    }

    /// The refresh of a due value hangs (a vault that never answers):
    /// callers get the current value without waiting at all.
    #[tokio::test(start_paused = true)]
    async fn nobody_waits_for_a_refresh_that_never_ends() {
        let cache = fixed(1_000, 60_000);
        cache.get(|| async { Ok(1) }).await.unwrap();
        tokio::time::advance(Duration::from_millis(1_500)).await;
        let started = Instant::now();
        for _ in 0..20 {
            let value = cache
                .get(std::future::pending::<Result<u32, String>>)
                .await
                .unwrap();
            assert_eq!(*value, 1);
        }
        settle().await;
        assert_eq!(started.elapsed(), Duration::ZERO, "no caller waited");
    }

    /// A value past its usable life is fetched again by the caller, who
    /// waits; then the new value is served.
    #[tokio::test(start_paused = true)]
    async fn a_value_past_its_usable_life_is_fetched_in_the_foreground() {
        let cache = fixed(1_000, 5_000);
        cache.get(|| async { Ok(1) }).await.unwrap();
        tokio::time::advance(Duration::from_millis(6_000)).await;
        assert_eq!(cache.peek(), None);
        assert_eq!(*cache.get(|| async { Ok(2) }).await.unwrap(), 2);
        assert_eq!(cache.peek().as_deref(), Some(&2));
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_share_one_failed_fetch_instead_of_queueing() {
        let cache = fixed(60_000, 60_000);
        let calls = counter();
        let started = Instant::now();
        let waiters: Vec<_> = (0..20)
            .map(|_| {
                let (cache, calls) = (cache.clone(), calls.clone());
                tokio::spawn(async move {
                    cache
                        .get(|| async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            Err::<u32, _>("timeout".to_owned())
                        })
                        .await
                })
            })
            .collect();
        for waiter in waiters {
            assert_eq!(waiter.await.unwrap().unwrap_err(), "timeout");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(started.elapsed(), Duration::from_millis(200), "one timeout");
        // After a second the next caller tries again.
        tokio::time::advance(Duration::from_millis(1_000)).await;
        assert_eq!(*cache.get(|| async { Ok(3) }).await.unwrap(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_value_found_wanting_is_fetched_again_once() {
        let cache = fixed(60_000, 60_000);
        let first = cache.get(|| async { Ok(1) }).await.unwrap();
        let second = cache
            .fetch(|v| Arc::ptr_eq(v, &first), || async { Ok(2) })
            .await
            .unwrap();
        assert_eq!(*second, 2);
        // Someone holding the old value asks again: the new one is returned.
        let third = cache
            .fetch(|v| Arc::ptr_eq(v, &first), || async { Ok(3) })
            .await
            .unwrap();
        assert_eq!(*third, 2);
    }

    /// Tokens: refreshed `margin` before they expire, in the background;
    /// while that fails they are used until `min_left` before expiry.
    #[tokio::test(start_paused = true)]
    async fn expiring_values_refresh_before_expiry_and_serve_until_nearly_expired() {
        let cache: Arc<Refreshing<u64, String>> = Arc::new(Refreshing::new(
            "token",
            Lifetime::Expiring {
                expires_in: |seconds| Duration::from_secs(*seconds),
                margin: Duration::from_secs(300),
                min_left: Duration::from_secs(30),
            },
        ));
        cache.get(|| async { Ok(3_600) }).await.unwrap();
        // Within the margin: due, refreshed in the background (failing).
        tokio::time::advance(Duration::from_secs(3_400)).await;
        let value = cache
            .get(|| async { Err::<u64, _>("down".to_owned()) })
            .await
            .unwrap();
        assert_eq!(*value, 3_600);
        settle().await;
        assert!(cache.peek().is_some(), "still usable");
        // 30 s before expiry it is no longer used.
        tokio::time::advance(Duration::from_secs(171)).await;
        assert!(cache.peek().is_none());
        let error = cache
            .get(|| async { Err::<u64, _>("down".to_owned()) })
            .await
            .unwrap_err();
        assert_eq!(error, "down");
        tokio::time::advance(RETRY_AFTER).await;
        cache.invalidate();
        assert_eq!(*cache.get(|| async { Ok(7) }).await.unwrap(), 7);
    }
}
