//! Per-company token-bucket rate limiting (`--rate-limit N/s`, `--rate-burst B`).
//! A bucket holds at most B tokens and refills at N per second; a submission of k
//! entries takes k tokens or is refused with 429 and the seconds until it could pass.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

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

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The buckets of every company that submitted recently.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// A refusal: how many whole seconds to wait, and whether waiting can help at all.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Refusal {
    /// Seconds until enough tokens accumulate (capped at the time to fill the bucket).
    pub retry_after_secs: u64,
    /// True when the request needs more tokens than the bucket can ever hold.
    pub exceeds_burst: bool,
}

impl RateLimiter {
    /// A limiter refilling `rate` tokens per second, holding at most `burst`.
    pub fn new(rate: Rate, burst: u64) -> RateLimiter {
        RateLimiter {
            rate: rate.per_second,
            burst: burst.max(1) as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `n` tokens from `company`'s bucket at time `now`, or says when to retry.
    pub fn check(&self, company: &str, n: u64, now: Instant) -> Result<(), Refusal> {
        let need = n as f64;
        // Poisoning cannot leave a bucket half-updated in a harmful way (two plain
        // fields), so keep serving with the inner map.
        let mut map = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Bound memory: forget buckets that have refilled completely.
        if map.len() > 100_000 {
            let (rate, burst) = (self.rate, self.burst);
            map.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * rate < burst
            });
        }
        let bucket = map.entry(company.to_string()).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.last = now;
        if need <= bucket.tokens {
            bucket.tokens -= need;
            return Ok(());
        }
        let exceeds_burst = need > self.burst;
        let missing = need.min(self.burst) - bucket.tokens;
        Err(Refusal {
            retry_after_secs: (missing / self.rate).ceil().max(1.0) as u64,
            exceeds_burst,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parses_rates() {
        assert_eq!("10/s".parse::<Rate>().ok(), Some(Rate { per_second: 10.0 }));
        assert!("10".parse::<Rate>().is_err());
        assert!("0/s".parse::<Rate>().is_err());
        assert!("-1/s".parse::<Rate>().is_err());
    }

    #[test]
    fn bucket_drains_refills_and_is_per_company() {
        let rl = RateLimiter::new(Rate { per_second: 2.0 }, 4);
        let t0 = Instant::now();
        assert!(rl.check("a.example", 3, t0).is_ok());
        assert!(rl.check("a.example", 1, t0).is_ok());
        let refusal = rl.check("a.example", 2, t0).unwrap_err();
        assert_eq!(refusal.retry_after_secs, 1);
        assert!(!refusal.exceeds_burst);
        // Another company has its own bucket.
        assert!(rl.check("b.example", 4, t0).is_ok());
        // One second later two tokens are back.
        assert!(
            rl.check("a.example", 2, t0 + Duration::from_secs(1))
                .is_ok()
        );
        // More than the burst can never pass.
        assert!(rl.check("c.example", 5, t0).unwrap_err().exceeds_burst);
    }
}
