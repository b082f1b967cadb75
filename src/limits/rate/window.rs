//! Counting requests in one-minute windows, estimated as a sliding minute:
//! the previous window's count weighs what is left of it. A caller at its
//! limit at 12:00:59 is not given a whole new minute at 12:01:00.

/// Seconds in a window.
pub const WINDOW_SECS: i64 = 60;

/// A moment, as the window it falls in and the fraction of it elapsed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moment {
    pub window: i64,
    pub elapsed: f64,
}

impl Moment {
    pub fn at_unix_millis(millis: i64) -> Self {
        let window_ms = WINDOW_SECS * 1000;
        Self {
            window: millis.div_euclid(window_ms),
            elapsed: millis.rem_euclid(window_ms) as f64 / window_ms as f64,
        }
    }

    pub fn now() -> Self {
        Self::at_unix_millis(chrono::Utc::now().timestamp_millis())
    }

    /// Whole seconds until the window ends (at least 1).
    pub fn secs_to_window_end(self) -> u64 {
        (((1.0 - self.elapsed) * WINDOW_SECS as f64).ceil() as u64).max(1)
    }
}

/// Requests in the current and the previous window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub window: i64,
    pub current: u64,
    pub previous: u64,
}

impl Counts {
    /// Moves to `window`: what was current becomes previous if it is the
    /// window just before, and is forgotten if older.
    pub fn roll(&mut self, window: i64) {
        if window == self.window + 1 {
            self.previous = self.current;
            self.current = 0;
        } else if window > self.window + 1 {
            self.previous = 0;
            self.current = 0;
        }
        self.window = self.window.max(window);
    }

    /// The requests of the sliding minute ending at `at`.
    pub fn estimate(&self, at: Moment) -> f64 {
        let mut counts = *self;
        counts.roll(at.window);
        counts.previous as f64 * (1.0 - at.elapsed) + counts.current as f64
    }

    pub fn add(&self, other: &Counts) -> Counts {
        debug_assert_eq!(self.window, other.window);
        Counts {
            window: self.window,
            current: self.current + other.current,
            previous: self.previous + other.previous,
        }
    }
}

/// Whole seconds from `at` until one more request fits under `limit`, for
/// a caller who made `counts` requests and none after.
pub fn secs_until_room(counts: Counts, limit: u64, at: Moment) -> u64 {
    let mut counts = counts;
    counts.roll(at.window);
    let room = limit.saturating_sub(1) as f64;
    let secs = if (counts.current as f64) <= room {
        // The previous window's weight must fall to what is left.
        if counts.previous == 0 {
            0.0
        } else {
            let elapsed_needed = 1.0 - (room - counts.current as f64) / counts.previous as f64;
            (elapsed_needed - at.elapsed).max(0.0) * WINDOW_SECS as f64
        }
    } else {
        // Only in the next window, once this one's weight has fallen.
        let next_elapsed = 1.0 - room / counts.current as f64;
        ((1.0 - at.elapsed) + next_elapsed) * WINDOW_SECS as f64
    };
    // Less a nanosecond's worth, so that float noise does not add a second.
    ((secs - 1e-9).ceil() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(window: i64, elapsed: f64) -> Moment {
        Moment { window, elapsed }
    }

    #[test]
    fn moments_split_unix_time_into_minutes() {
        assert_eq!(Moment::at_unix_millis(90_000), at(1, 0.5));
        assert_eq!(Moment::at_unix_millis(120_000).secs_to_window_end(), 60);
    }

    #[test]
    fn the_previous_minute_weighs_what_is_left_of_it() {
        let counts = Counts {
            window: 5,
            current: 10,
            previous: 100,
        };
        assert_eq!(counts.estimate(at(5, 0.25)), 85.0);
        // A minute later, today's count is yesterday's, at full weight at first.
        assert_eq!(counts.estimate(at(6, 0.0)), 10.0);
        assert_eq!(counts.estimate(at(7, 0.0)), 0.0);
    }

    #[test]
    fn rolling_forgets_windows_older_than_the_previous() {
        let mut counts = Counts {
            window: 5,
            current: 3,
            previous: 9,
        };
        counts.roll(6);
        assert_eq!(
            counts,
            Counts {
                window: 6,
                current: 0,
                previous: 3
            }
        );
        counts.roll(9);
        assert_eq!(
            counts,
            Counts {
                window: 9,
                current: 0,
                previous: 0
            }
        );
        counts.roll(8);
        assert_eq!(counts.window, 9, "a late clock does not move back");
    }

    #[test]
    fn room_comes_back_as_the_previous_minute_fades() {
        // 60 last minute, none now, limit 60: room for one more once a
        // sixtieth of the previous minute's weight is gone, i.e. after 1 s.
        let counts = Counts {
            window: 1,
            current: 0,
            previous: 60,
        };
        assert_eq!(secs_until_room(counts, 60, at(1, 0.0)), 1);
        // At the limit within this minute: wait for the next one.
        let counts = Counts {
            window: 1,
            current: 60,
            previous: 0,
        };
        assert_eq!(secs_until_room(counts, 60, at(1, 0.5)), 31);
    }
}
