//! Pool shares: one application holds at most a share of this instance's
//! database connections, and at most a few more of its requests wait for
//! them; beyond that its requests are refused at once (429). So one
//! application's burst of slow requests leaves the rest of the pool to the
//! others instead of making every application wait for it.
//!
//! The application is not known until its statement checks the key, but
//! the key is: a tenant is the SHA-256 of `X-API-Key` (keyless development
//! calls are one tenant), claimed by the extractor that read the key. The
//! admin and health claim none and are never limited by shares.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// The tenant of keyless development calls (a key's hash is never empty).
const KEYLESS: &str = "";

/// Who the request being handled counts against: empty until an extractor
/// claims it.
#[derive(Clone, Default)]
pub struct Claim(Arc<OnceLock<Arc<str>>>);

tokio::task_local! {
    static CLAIM: Claim;
}

/// Middleware: gives the request an unclaimed tenant.
pub async fn scope(request: Request, next: Next) -> Response {
    CLAIM.scope(Claim::default(), next.run(request)).await
}

/// Counts the request being handled against the application of this key
/// hash (`None`: a keyless development call). The first claim stands.
pub fn claim(key_hash: Option<&str>) {
    let _ = CLAIM.try_with(|claim| claim.0.set(key_hash.unwrap_or(KEYLESS).into()));
}

/// The request's claim, to carry into work done after its handler returned
/// (a streamed body is polled outside the middleware's scope).
pub fn current() -> Option<Claim> {
    CLAIM.try_with(Claim::clone).ok()
}

/// Runs `work` as part of the request that `claim` came from.
pub async fn carried<F: Future>(claim: Option<Claim>, work: F) -> F::Output {
    CLAIM.scope(claim.unwrap_or_default(), work).await
}

/// The tenant the request being handled counts against, if any.
pub fn tenant() -> Option<Arc<str>> {
    CLAIM
        .try_with(|claim| claim.0.get().cloned())
        .ok()
        .flatten()
}

/// Why a request of an application got no connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverShare {
    /// Its share is held and its waiting slots are taken.
    Full { connections: usize, waiting: usize },
    /// It waited the whole pool timeout for its share.
    TimedOut {
        connections: usize,
        waited: Duration,
    },
}

impl fmt::Display for OverShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OverShare::Full {
                connections,
                waiting,
            } => write!(
                f,
                "this application already holds its share of {connections} database \
                 connection(s) on this instance, and {waiting} more of its requests wait for \
                 one; retry when some have finished"
            ),
            OverShare::TimedOut {
                connections,
                waited,
            } => write!(
                f,
                "this application's other requests held its share of {connections} database \
                 connection(s) on this instance for {} ms; retry when some have finished",
                waited.as_millis()
            ),
        }
    }
}

/// Every tenant's share of one pool.
pub struct PoolShares {
    /// Connections one tenant may hold.
    connections: usize,
    /// Requests of one tenant let in: holding a connection or waiting.
    admitted: usize,
    /// Tenants with a request holding or waiting; an idle tenant is
    /// forgotten, so the map is bounded by the requests in flight however
    /// many keys are tried.
    tenants: Mutex<HashMap<Arc<str>, Arc<Tenant>>>,
}

struct Tenant {
    /// `admitted` permits: taken without waiting, or the request is refused.
    admitted: Arc<Semaphore>,
    /// `connections` permits: waited for (fairly) by admitted requests.
    holding: Arc<Semaphore>,
}

impl PoolShares {
    pub fn new(connections: usize, max_waiting: usize) -> Arc<Self> {
        Arc::new(Self {
            connections,
            admitted: connections + max_waiting,
            tenants: Mutex::default(),
        })
    }

    /// A place in `tenant`'s share, or `Full` at once; waits (cancellably:
    /// the caller bounds the wait) while the share is held.
    pub async fn acquire(self: &Arc<Self>, tenant: Arc<str>) -> Result<Share, OverShare> {
        let mut share = {
            let mut tenants = self.tenants.lock().expect("pool shares");
            let entry = tenants.entry(tenant.clone()).or_insert_with(|| {
                Arc::new(Tenant {
                    admitted: Arc::new(Semaphore::new(self.admitted)),
                    holding: Arc::new(Semaphore::new(self.connections)),
                })
            });
            let admitted = match entry.admitted.clone().try_acquire_owned() {
                Ok(permit) => permit,
                // Some request of the tenant holds a permit: the entry stays.
                Err(TryAcquireError::NoPermits) => {
                    return Err(OverShare::Full {
                        connections: self.connections,
                        waiting: self.admitted - self.connections,
                    });
                }
                Err(TryAcquireError::Closed) => unreachable!("never closed"),
            };
            Share {
                shares: self.clone(),
                tenant,
                entry: Some(entry.clone()),
                admitted: Some(admitted),
                holding: None,
            }
        };
        // Dropped while waiting (the pool timeout, or the client left),
        // `share` gives its place back.
        let holding = share.entry.as_ref().expect("set above").holding.clone();
        share.holding = Some(holding.acquire_owned().await.expect("never closed"));
        Ok(share)
    }

    pub fn connections(&self) -> usize {
        self.connections
    }

    #[cfg(test)]
    fn tenants(&self) -> usize {
        self.tenants.lock().unwrap().len()
    }
}

/// A request's place in its tenant's share, given back when dropped.
pub struct Share {
    shares: Arc<PoolShares>,
    tenant: Arc<str>,
    entry: Option<Arc<Tenant>>,
    admitted: Option<OwnedSemaphorePermit>,
    /// Once the wait is over.
    holding: Option<OwnedSemaphorePermit>,
}

impl Drop for Share {
    fn drop(&mut self) {
        self.holding = None;
        self.admitted = None;
        // Entries are cloned and dropped only under the lock, so the count
        // is exact here: 1 means no other request holds or waits.
        let mut tenants = self.shares.tenants.lock().expect("pool shares");
        drop(self.entry.take());
        if tenants
            .get(&self.tenant)
            .is_some_and(|entry| Arc::strong_count(entry) == 1)
        {
            tenants.remove(&self.tenant);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str) -> Arc<str> {
        name.into()
    }

    #[tokio::test]
    async fn a_tenant_holds_its_share_then_waits_then_is_refused() {
        let shares = PoolShares::new(2, 1);
        let a1 = shares.acquire(named("a")).await.unwrap();
        let _a2 = shares.acquire(named("a")).await.unwrap();
        let waiting = tokio::spawn({
            let shares = shares.clone();
            async move { shares.acquire(named("a")).await.map(|_| ()) }
        });
        while shares.tenants.lock().unwrap()[&named("a")]
            .admitted
            .available_permits()
            > 0
        {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            shares.acquire(named("a")).await.err(),
            Some(OverShare::Full {
                connections: 2,
                waiting: 1
            })
        );
        // Another tenant is not affected.
        let _b = shares.acquire(named("b")).await.unwrap();
        drop(a1);
        waiting.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn idle_tenants_are_forgotten_however_many_there_were() {
        let shares = PoolShares::new(1, 1);
        for i in 0..1000 {
            let held = shares.acquire(named(&i.to_string())).await.unwrap();
            drop(held);
        }
        assert_eq!(shares.tenants(), 0);
        let held = shares.acquire(named("a")).await.unwrap();
        // A wait given up (the pool timeout) leaves nothing behind either.
        let gave_up =
            tokio::time::timeout(Duration::from_millis(10), shares.acquire(named("a"))).await;
        assert!(gave_up.is_err());
        drop(held);
        assert_eq!(shares.tenants(), 0);
    }

    #[tokio::test]
    async fn claims_are_per_request_and_the_first_stands() {
        assert_eq!(tenant(), None, "outside a request");
        let claimed = CLAIM
            .scope(Claim::default(), async {
                assert_eq!(tenant(), None, "nothing claimed");
                claim(Some("hash"));
                claim(None);
                let claim = current();
                // As a streamed body is polled: elsewhere, after the handler.
                tokio::spawn(carried(claim, async { tenant() }))
                    .await
                    .unwrap()
            })
            .await;
        assert_eq!(claimed.as_deref(), Some("hash"));
    }
}
