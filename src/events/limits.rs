//! How many streams (and waiting long-polls) one instance holds: in all,
//! per application (its key: the tenant of the pool shares,
//! `crate::limits::pool_share`) and per user. A place is taken before any
//! work and given back when the stream ends, however it ends.
//!
//! A stream holds no database connection while idle, so it is not counted
//! in its application's pool share then (its reads are); its place here
//! is what it holds, and one application's streams leave the rest of the
//! instance's places to the others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

/// Why a stream was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// `EVENTS_MAX_STREAMS` streams are open on this instance.
    Instance(usize),
    /// The application has its share (`EVENTS_APP_SHARE`) open here.
    Application(usize),
    /// The user has `EVENTS_MAX_STREAMS_PER_USER` streams open here.
    User(usize),
}

pub struct StreamLimits {
    max: usize,
    max_per_app: usize,
    max_per_user: usize,
    open: Mutex<Open>,
}

/// Open streams: in all, and of each application and user that has one.
#[derive(Default)]
struct Open {
    all: usize,
    apps: HashMap<Arc<str>, usize>,
    users: HashMap<Uuid, usize>,
}

impl StreamLimits {
    pub fn new(max: usize, max_per_app: usize, max_per_user: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            max_per_app,
            max_per_user,
            open: Mutex::default(),
        })
    }

    /// A place for one more stream of `user` of application `tenant`, or
    /// why not.
    pub fn admit(self: &Arc<Self>, tenant: Arc<str>, user: Uuid) -> Result<Place, Full> {
        let mut open = self.open.lock().expect("stream limits");
        if open.all >= self.max {
            return Err(Full::Instance(self.max));
        }
        if open.apps.get(&tenant).copied().unwrap_or(0) >= self.max_per_app {
            return Err(Full::Application(self.max_per_app));
        }
        if open.users.get(&user).copied().unwrap_or(0) >= self.max_per_user {
            return Err(Full::User(self.max_per_user));
        }
        open.all += 1;
        *open.apps.entry(tenant.clone()).or_default() += 1;
        *open.users.entry(user).or_default() += 1;
        Ok(Place {
            limits: self.clone(),
            tenant,
            user,
        })
    }

    /// Streams open now.
    pub fn open(&self) -> usize {
        self.open.lock().expect("stream limits").all
    }
}

/// One stream's place, given back when dropped.
pub struct Place {
    limits: Arc<StreamLimits>,
    tenant: Arc<str>,
    user: Uuid,
}

fn give_back<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = counts.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            counts.remove(key);
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().expect("stream limits");
        open.all -= 1;
        give_back(&mut open.apps, &self.tenant);
        give_back(&mut open.users, &self.user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_per_user_application_and_instance_are_given_back() {
        let limits = StreamLimits::new(4, 3, 2);
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let (x, y): (Arc<str>, Arc<str>) = ("x".into(), "y".into());
        let a1 = limits.admit(x.clone(), a).unwrap();
        let _a2 = limits.admit(x.clone(), a).unwrap();
        assert_eq!(limits.admit(x.clone(), a).err(), Some(Full::User(2)));
        let _b1 = limits.admit(x.clone(), b).unwrap();
        assert_eq!(limits.admit(x.clone(), c).err(), Some(Full::Application(3)));
        let _c1 = limits.admit(y.clone(), c).unwrap();
        assert_eq!(limits.admit(y.clone(), c).err(), Some(Full::Instance(4)));
        drop(a1);
        assert_eq!(limits.open(), 3);
        let _c2 = limits.admit(y, c).unwrap();
        let open = limits.open.lock().unwrap();
        assert_eq!((open.apps.len(), open.users.len()), (2, 3));
    }
}
