//! How many streams (and waiting long-polls) one instance holds: in all,
//! and per user. A place is taken before any work and given back when the
//! stream ends, however it ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

/// Why a stream was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// `EVENTS_MAX_STREAMS` streams are open on this instance.
    Instance(usize),
    /// The user has `EVENTS_MAX_STREAMS_PER_USER` streams open here.
    User(usize),
}

pub struct StreamLimits {
    max: usize,
    max_per_user: usize,
    /// Open streams: in all, and of each user who has one.
    open: Mutex<(usize, HashMap<Uuid, usize>)>,
}

impl StreamLimits {
    pub fn new(max: usize, max_per_user: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            max_per_user,
            open: Mutex::default(),
        })
    }

    /// A place for one more stream of `user`, or why not.
    pub fn admit(self: &Arc<Self>, user: Uuid) -> Result<Place, Full> {
        let mut open = self.open.lock().expect("stream limits");
        if open.0 >= self.max {
            return Err(Full::Instance(self.max));
        }
        let of_user = open.1.entry(user).or_default();
        if *of_user >= self.max_per_user {
            return Err(Full::User(self.max_per_user));
        }
        *of_user += 1;
        open.0 += 1;
        Ok(Place {
            limits: self.clone(),
            user,
        })
    }

    /// Streams open now.
    pub fn open(&self) -> usize {
        self.open.lock().expect("stream limits").0
    }
}

/// One stream's place, given back when dropped.
pub struct Place {
    limits: Arc<StreamLimits>,
    user: Uuid,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().expect("stream limits");
        open.0 -= 1;
        if let Some(n) = open.1.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_per_user_and_per_instance_are_given_back() {
        let limits = StreamLimits::new(3, 2);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let a1 = limits.admit(a).unwrap();
        let _a2 = limits.admit(a).unwrap();
        assert_eq!(limits.admit(a).err(), Some(Full::User(2)));
        let _b1 = limits.admit(b).unwrap();
        assert_eq!(limits.admit(b).err(), Some(Full::Instance(3)));
        drop(a1);
        assert_eq!(limits.open(), 2);
        let _b2 = limits.admit(b).unwrap();
        assert_eq!(limits.open.lock().unwrap().1.len(), 2);
    }
}
