//! Background work that shares the database with requests (the purge, the
//! sweep of deleted transcripts) takes turns with them: after each of its
//! statements it rests in proportion to how long the statement ran, so it
//! is busy at most `percent` of the time, however large the backlog. A
//! slower database (a heavier load) makes its statements longer and so
//! its rests longer too: the share holds without measuring the load.

use std::time::Duration;

/// The share of the time a background job may spend running statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    percent: u8,
}

impl Pace {
    /// `percent` of the time busy, 1 to 100 (100: never rests).
    pub fn new(percent: u8) -> Self {
        assert!((1..=100).contains(&percent), "a share of 1 to 100 percent");
        Self { percent }
    }

    pub fn percent(self) -> u8 {
        self.percent
    }

    /// How long to rest after a statement that ran for `busy`.
    pub fn rest_after(self, busy: Duration) -> Duration {
        let p = u32::from(self.percent);
        busy * (100 - p) / p
    }

    /// Rests after a statement that ran for `busy`.
    pub async fn rest(self, busy: Duration) {
        let rest = self.rest_after(busy);
        if !rest.is_zero() {
            tokio::time::sleep(rest).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rests_so_that_work_takes_its_share_of_the_time() {
        let ms = Duration::from_millis;
        assert_eq!(Pace::new(100).rest_after(ms(900)), Duration::ZERO);
        assert_eq!(Pace::new(50).rest_after(ms(120)), ms(120));
        assert_eq!(Pace::new(25).rest_after(ms(100)), ms(300));
        assert_eq!(Pace::new(1).rest_after(ms(10)), ms(990));
    }
}
