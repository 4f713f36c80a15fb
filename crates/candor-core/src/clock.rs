//! The one clock that the log, the monitor and the witness read
//! (spec/overview.md, "Clocks").
//!
//! Every rule that depends on the time reads a [`Clock`] handed to it, never the
//! system clock directly, so that tests can run any component at any date
//! in-process (a [`ManualClock`]) instead of sleeping or depending on today.

use std::fmt;
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time, UTC.
    fn now(&self) -> OffsetDateTime;

    /// The current time as whole POSIX seconds (0 before 1970, a broken host).
    fn now_unix(&self) -> u64 {
        u64::try_from(self.now().unix_timestamp()).unwrap_or(0)
    }

    /// The current time as entries and findings carry it: RFC 3339 UTC, whole
    /// seconds, `Z` (spec/overview.md, "Conventions").
    fn now_rfc3339(&self) -> String {
        format_rfc3339(self.now())
    }
}

/// Formats a time as entries carry it: RFC 3339, UTC, whole seconds (truncated), `Z`.
pub fn format_rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A shared clock, as components hold it.
pub type SharedClock = Arc<dyn Clock>;

/// The host's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// The host's clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that stands still until it is set or advanced: for tests that need a
/// given "now".
#[derive(Debug)]
pub struct ManualClock(Mutex<OffsetDateTime>);

impl ManualClock {
    /// A clock showing `t`.
    pub fn new(t: OffsetDateTime) -> Arc<ManualClock> {
        Arc::new(ManualClock(Mutex::new(t)))
    }

    /// Shows `t` from now on.
    pub fn set(&self, t: OffsetDateTime) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = t;
    }

    /// Moves the clock on by `d` (back, if negative).
    pub fn advance(&self, d: time::Duration) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *t += d;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn manual_clock_shows_what_it_is_set_to() {
        let c = ManualClock::new(datetime!(2031-02-03 04:05:06.7 UTC));
        assert_eq!(c.now_rfc3339(), "2031-02-03T04:05:06Z");
        assert_eq!(c.now_unix(), 1_927_857_906);
        c.advance(time::Duration::days(1));
        assert_eq!(c.now_rfc3339(), "2031-02-04T04:05:06Z");
        c.set(datetime!(1969-12-31 23:59:59 UTC));
        assert_eq!(c.now_unix(), 0, "a time before 1970 reads as 0");
    }

    #[test]
    fn system_clock_moves() {
        let a = SystemClock.now();
        let b = system().now();
        assert!(b >= a);
        assert!(a.year() >= 2026);
    }
}
