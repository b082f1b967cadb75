//! A value fetched from another service (signing keys, Key Vault secrets),
//! kept fresh without letting that service's outage reach requests:
//!
//! - fresh for `ttl`; after that the next caller starts a refresh in the
//!   background and every caller keeps getting the current value;
//! - a failed refresh keeps the last good value for up to `max_stale`
//!   (stale-while-error), with a log line, and is not retried for a
//!   second;
//! - one fetch at a time (single-flight): callers without a usable value
//!   wait for that one fetch and share its outcome, so after a failure
//!   they get its error at once instead of queueing behind further
//!   timeouts.

use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// After a failed fetch, how long callers get its error (or the stale
/// value) instead of starting another: long enough that a dead service is
/// not asked by every request, short enough that recovery shows at once.
const RETRY_AFTER: Duration = Duration::from_secs(1);

pub struct Refreshing<T, E> {
    /// What is fetched, for log lines.
    what: &'static str,
    ttl: Duration,
    max_stale: Duration,
    retry_after: Duration,
    state: Mutex<State<T, E>>,
    /// Held by whoever fetches.
    fetching: tokio::sync::Mutex<()>,
}

struct State<T, E> {
    value: Option<(Arc<T>, Instant)>,
    /// The last failed fetch, until a fetch succeeds.
    failed: Option<(E, Instant)>,
    background: bool,
}

impl<T, E> Refreshing<T, E>
where
    T: Send + Sync + 'static,
    E: Clone + Display + Send + 'static,
{
    pub fn new(what: &'static str, ttl: Duration, max_stale: Duration) -> Self {
        Self {
            what,
            ttl,
            max_stale: max_stale.max(ttl),
            retry_after: RETRY_AFTER.min(ttl),
            state: Mutex::new(State {
                value: None,
                failed: None,
                background: false,
            }),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// The current value; `fetch` gets a new one when there is none, or in
    /// the background when it is due.
    pub async fn get<F, Fut>(self: &Arc<Self>, fetch: F) -> Result<Arc<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        {
            let mut state = self.state.lock().expect("refresh state");
            if let Some((value, at)) = &state.value {
                let age = at.elapsed();
                if age < self.ttl {
                    return Ok(value.clone());
                }
                if age < self.max_stale {
                    let value = value.clone();
                    let resting = state
                        .failed
                        .as_ref()
                        .is_some_and(|(_, at)| at.elapsed() < self.retry_after);
                    if !state.background && !resting {
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
        }
        self.fetch(|_| true, fetch).await
    }

    /// Fetches now, unless someone fetched since this call began, or a
    /// fetch failed within `retry_after` (its error is returned), or the
    /// current value does not satisfy `wanting` (it is returned). For when
    /// the current value was found wanting: an unknown key id, a rejected
    /// password.
    pub async fn fetch<F, Fut>(
        &self,
        wanting: impl Fn(&Arc<T>) -> bool,
        fetch: F,
    ) -> Result<Arc<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let asked = Instant::now();
        let _one = self.fetching.lock().await;
        {
            let state = self.state.lock().expect("refresh state");
            if let Some((value, at)) = &state.value
                && (*at >= asked || !wanting(value))
            {
                return Ok(value.clone());
            }
            if let Some((error, at)) = &state.failed
                && (*at >= asked || at.elapsed() < self.retry_after)
            {
                return Err(error.clone());
            }
        }
        let result = fetch().await;
        self.store(result)
    }

    fn store(&self, result: Result<T, E>) -> Result<Arc<T>, E> {
        let mut state = self.state.lock().expect("refresh state");
        match result {
            Ok(value) => {
                let value = Arc::new(value);
                state.value = Some((value.clone(), Instant::now()));
                state.failed = None;
                Ok(value)
            }
            Err(error) => {
                match &state.value {
                    Some((_, at)) if at.elapsed() < self.max_stale => tracing::warn!(
                        what = self.what,
                        %error,
                        age_seconds = at.elapsed().as_secs(),
                        "refresh failed; serving the last good value"
                    ),
                    _ => tracing::error!(what = self.what, %error, "fetch failed"),
                }
                state.failed = Some((error.clone(), Instant::now()));
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn counter() -> Arc<AtomicUsize> {
        Arc::new(AtomicUsize::new(0))
    }

    #[tokio::test]
    async fn stale_values_are_served_while_a_background_refresh_fails() {
        let cache = Arc::new(Refreshing::<u32, String>::new(
            "test",
            Duration::from_millis(20),
            Duration::from_secs(60),
        ));
        assert_eq!(*cache.get(|| async { Ok(1) }).await.unwrap(), 1);
        tokio::time::sleep(Duration::from_millis(30)).await;
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

    #[tokio::test]
    async fn waiters_share_one_failed_fetch_instead_of_queueing() {
        let cache = Arc::new(Refreshing::<u32, String>::new(
            "test",
            Duration::from_secs(60),
            Duration::from_secs(60),
        ));
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
        assert!(started.elapsed() < Duration::from_millis(1000));
    }

    #[tokio::test]
    async fn a_value_found_wanting_is_fetched_again_once() {
        let cache = Arc::new(Refreshing::<u32, String>::new(
            "test",
            Duration::from_secs(60),
            Duration::from_secs(60),
        ));
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
}
