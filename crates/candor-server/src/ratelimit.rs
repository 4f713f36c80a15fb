//! Per-company rate limiting (`--rate-limit N/s`, `--rate-burst B`) with governor's
//! keyed GCRA limiter, which behaves as a token bucket: at most B tokens, refilled at
//! N per second; a submission of k entries takes k tokens or is refused with 429 and
//! the seconds until it could pass.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter as Governor};

/// A parsed `N/s` rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_second: f64,
}

/// Why a rate string is not `N/s`.
#[derive(Debug, thiserror::Error)]
#[error("rate {0:?} is not of the form N/s with N a positive number (e.g. 100/s)")]
pub struct RateParseError(String);

impl std::str::FromStr for Rate {
    type Err = RateParseError;
    fn from_str(s: &str) -> Result<Rate, RateParseError> {
        let n = s
            .strip_suffix("/s")
            .ok_or_else(|| RateParseError(s.to_string()))?;
        let per_second: f64 = n
            .trim()
            .parse()
            .map_err(|_| RateParseError(s.to_string()))?;
        if !(per_second.is_finite() && per_second > 0.0) {
            return Err(RateParseError(s.to_string()));
        }
        Ok(Rate { per_second })
    }
}

/// The buckets of every company that submitted recently.
pub struct RateLimiter<C: Clock = DefaultClock> {
    limiter: Governor<String, DefaultKeyedStateStore<String>, C, NoOpMiddleware<C::Instant>>,
    /// The burst, and the time an empty bucket takes to fill.
    burst: NonZeroU32,
    refill: Duration,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("burst", &self.burst)
            .field("refill", &self.refill)
            .finish_non_exhaustive()
    }
}

/// A refusal: how many whole seconds to wait, and whether waiting can help at all.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Refusal {
    /// Seconds until enough tokens accumulate; for a request over the burst, the
    /// time an empty bucket takes to fill.
    pub retry_after_secs: u64,
    /// True when the request needs more tokens than the bucket can ever hold.
    pub exceeds_burst: bool,
}

/// Above this many companies, those whose bucket is full again are forgotten.
const MAX_KEYS: usize = 100_000;

impl RateLimiter {
    /// A limiter refilling `rate` tokens per second, holding at most `burst`.
    pub fn new(rate: Rate, burst: u64) -> RateLimiter {
        RateLimiter::with_clock(rate, burst, DefaultClock::default())
    }
}

impl<C: Clock> RateLimiter<C> {
    /// [`RateLimiter::new`] reading the time from `clock`.
    pub fn with_clock(rate: Rate, burst: u64, clock: C) -> RateLimiter<C> {
        let burst =
            NonZeroU32::new(u32::try_from(burst).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
        // governor counts in nanoseconds: a rate above 10^9/s is one token per ns.
        let period = Duration::from_secs_f64(1.0 / rate.per_second).max(Duration::from_nanos(1));
        let quota = Quota::with_period(period)
            .expect("a period of at least 1 ns")
            .allow_burst(burst);
        RateLimiter {
            limiter: Governor::new(quota, DefaultKeyedStateStore::default(), clock),
            burst,
            refill: period.saturating_mul(burst.get()),
        }
    }

    /// Takes `n` tokens from `company`'s bucket, or says when to retry.
    pub fn check(&self, company: &str, n: u64) -> Result<(), Refusal> {
        if self.limiter.len() > MAX_KEYS {
            self.limiter.retain_recent();
        }
        let over_burst = Refusal {
            retry_after_secs: whole_seconds(self.refill),
            exceeds_burst: true,
        };
        let Some(cells) = u32::try_from(n).ok().and_then(NonZeroU32::new) else {
            return if n == 0 { Ok(()) } else { Err(over_burst) };
        };
        match self.limiter.check_key_n(&company.to_string(), cells) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(Refusal {
                retry_after_secs: whole_seconds(
                    not_until.wait_time_from(self.limiter.clock().now()),
                ),
                exceeds_burst: false,
            }),
            Err(_insufficient_capacity) => Err(over_burst),
        }
    }
}

/// Whole seconds, rounded up, at least one (Retry-After has a resolution of seconds).
fn whole_seconds(d: Duration) -> u64 {
    d.as_secs()
        .saturating_add(u64::from(d.subsec_nanos() > 0))
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    #[test]
    fn parses_rates() {
        assert_eq!("10/s".parse::<Rate>().ok(), Some(Rate { per_second: 10.0 }));
        assert!("10".parse::<Rate>().is_err());
        assert!("0/s".parse::<Rate>().is_err());
        assert!("-1/s".parse::<Rate>().is_err());
    }

    #[test]
    fn bucket_drains_refills_and_is_per_company() {
        let clock = FakeRelativeClock::default();
        let rl = RateLimiter::with_clock(Rate { per_second: 2.0 }, 4, clock.clone());
        assert!(rl.check("a.example", 3).is_ok());
        assert!(rl.check("a.example", 1).is_ok());
        let refusal = rl.check("a.example", 2).unwrap_err();
        assert_eq!(refusal.retry_after_secs, 1);
        assert!(!refusal.exceeds_burst);
        // Another company has its own bucket.
        assert!(rl.check("b.example", 4).is_ok());
        // Half a second later one token is back, not two.
        clock.advance(Duration::from_millis(500));
        assert!(rl.check("a.example", 2).is_err());
        // One second after the drain two tokens are back.
        clock.advance(Duration::from_millis(500));
        assert!(rl.check("a.example", 2).is_ok());
        // More than the burst can never pass; an empty bucket fills in 2 s.
        let refusal = rl.check("c.example", 5).unwrap_err();
        assert!(refusal.exceeds_burst);
        assert_eq!(refusal.retry_after_secs, 2);
    }

    #[test]
    fn retry_after_counts_whole_seconds_up() {
        let clock = FakeRelativeClock::default();
        let rl = RateLimiter::with_clock(Rate { per_second: 0.4 }, 1, clock.clone());
        assert!(rl.check("a.example", 1).is_ok());
        // One token every 2.5 s: wait 3 whole seconds.
        assert_eq!(rl.check("a.example", 1).unwrap_err().retry_after_secs, 3);
        clock.advance(Duration::from_millis(2500));
        assert!(rl.check("a.example", 1).is_ok());
    }
}
