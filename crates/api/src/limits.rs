//! Per-token rate limits: a token bucket per API token (per address for
//! requests without one), held in a bounded, expiring map.
//!
//! [`TokenBucket`] is the pure arithmetic (time is passed in);
//! [`RateLimiter`] keeps one bucket per key; [`rate_limit`] is the thin
//! middleware in front of the `/v1` routes. The agent protocol
//! (`/v1/agent/…`), `/healthz`, `/metrics` and the console's files are not
//! limited: an agent's requests are paced by its own loop (heartbeats,
//! claims, lease renewals), and refusing a renewal would declare a healthy
//! node's jobs lost.

use crate::ApiError;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::hash::{BuildHasher, Hash};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most keys (tokens, addresses) the limiter remembers. A key it forgot
/// starts again with a full bucket; a bucket idle long enough to refill
/// is forgotten anyway.
const MAX_KEYS: u64 = 100_000;

/// Tokens that refill at `rate` per second up to `burst`; a request takes
/// one.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn full(burst: f64, now: Instant) -> Self {
        TokenBucket {
            tokens: burst,
            at: now,
        }
    }

    /// Take a token at `now`; when there is none, how long until there is.
    pub fn take(&mut self, rate: f64, burst: f64, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at = self.at.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / rate;
            Err(Duration::try_from_secs_f64(wait).unwrap_or(Duration::MAX))
        }
    }
}

/// One [`TokenBucket`] per key.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    hasher: std::hash::RandomState,
    /// Keyed by a hash of the key: a token's text is neither kept nor
    /// allowed to make an entry larger.
    buckets: moka::sync::Cache<u64, Arc<Mutex<TokenBucket>>>,
}

impl RateLimiter {
    /// `rate` requests per second with bursts of `burst`; `None` when
    /// `rate` is 0 (no limit).
    pub fn new(rate: f64, burst: u32) -> Option<Self> {
        if !(rate.is_finite() && rate > 0.0) {
            return None;
        }
        let burst = f64::from(burst.max(1));
        // Past this, an idle bucket is full again: forgetting it changes
        // nothing.
        let refill = Duration::try_from_secs_f64(burst / rate + 1.0)
            .unwrap_or(Duration::MAX)
            .min(Duration::from_secs(3600));
        Some(RateLimiter {
            rate,
            burst,
            hasher: std::hash::RandomState::new(),
            buckets: moka::sync::Cache::builder()
                .max_capacity(MAX_KEYS)
                .time_to_idle(refill)
                .build(),
        })
    }

    /// Take a request from `key`'s budget at `now`; `Err(wait)` when it has
    /// none left.
    pub fn check(&self, key: impl Hash, now: Instant) -> Result<(), Duration> {
        let burst = self.burst;
        let bucket = self.buckets.get_with(self.hasher.hash_one(key), || {
            Arc::new(Mutex::new(TokenBucket::full(burst, now)))
        });
        let mut bucket = bucket.lock().unwrap_or_else(|p| p.into_inner());
        bucket.take(self.rate, self.burst, now)
    }

    fn refused(&self, wait: Duration) -> ApiError {
        // Whole seconds, rounded up: a client that waits this long is
        // served.
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        ApiError::too_many_requests(
            secs.max(1),
            format!(
                "too many requests with this token: at most {} per second, in bursts of {}; \
                 retry after the Retry-After header's seconds and spread requests out \
                 (the operator sets the limit with `accelhub serve --rate-limit`)",
                self.rate, self.burst
            ),
        )
    }
}

/// Whose budget a request takes.
#[derive(Hash)]
enum Key<'a> {
    Token(&'a str),
    Address(IpAddr),
    Anonymous,
}

/// The middleware: a request's budget is its bearer token's, or its
/// address's when it has none.
pub(crate) async fn rate_limit(
    State(limiter): State<Arc<RateLimiter>>,
    req: Request,
    next: Next,
) -> Response {
    let key = match crate::auth::bearer_token(req.headers()) {
        Some(token) => Key::Token(token),
        None => match req.extensions().get::<ConnectInfo<SocketAddr>>() {
            Some(ConnectInfo(peer)) => Key::Address(peer.ip()),
            None => Key::Anonymous,
        },
    };
    match limiter.check(key, Instant::now()) {
        Ok(()) => next.run(req).await,
        Err(wait) => limiter.refused(wait).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::full(3.0, t0);
        for _ in 0..3 {
            assert!(b.take(2.0, 3.0, t0).is_ok());
        }
        // Empty: one token comes in 1/rate = 0.5 s.
        let wait = b.take(2.0, 3.0, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // A quarter second later, a quarter second more to wait.
        let t1 = t0 + Duration::from_millis(250);
        assert_eq!(
            b.take(2.0, 3.0, t1).unwrap_err(),
            Duration::from_millis(250)
        );
        let t2 = t0 + Duration::from_millis(500);
        assert!(b.take(2.0, 3.0, t2).is_ok());
        assert!(b.take(2.0, 3.0, t2).is_err());
        // A long pause refills to the burst, never beyond.
        let t3 = t2 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(b.take(2.0, 3.0, t3).is_ok());
        }
        assert!(b.take(2.0, 3.0, t3).is_err());
    }

    #[test]
    fn time_going_backwards_takes_nothing_and_gives_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = TokenBucket::full(1.0, t0);
        assert!(b.take(1.0, 1.0, t0).is_ok());
        let earlier = t0 - Duration::from_secs(5);
        assert_eq!(
            b.take(1.0, 1.0, earlier).unwrap_err(),
            Duration::from_secs(1)
        );
        assert!(b.take(1.0, 1.0, t0 + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn keys_have_their_own_buckets() {
        let limiter = RateLimiter::new(1.0, 2).unwrap();
        let now = Instant::now();
        assert!(limiter.check("a", now).is_ok());
        assert!(limiter.check("a", now).is_ok());
        let wait = limiter.check("a", now).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        assert!(limiter.check("b", now).is_ok());
        assert!(limiter.check("a", now + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn a_zero_or_invalid_rate_is_no_limit() {
        assert!(RateLimiter::new(0.0, 10).is_none());
        assert!(RateLimiter::new(-1.0, 10).is_none());
        assert!(RateLimiter::new(f64::NAN, 10).is_none());
        assert!(RateLimiter::new(f64::INFINITY, 10).is_none());
    }

    #[test]
    fn a_refusal_is_a_429_with_whole_seconds_to_wait() {
        let limiter = RateLimiter::new(3.0, 1).unwrap();
        let err = limiter.refused(Duration::from_millis(333));
        assert_eq!(err.status.as_u16(), 429);
        assert_eq!(err.retry_after, Some(1));
        let resp = limiter.refused(Duration::from_millis(1500)).into_response();
        assert_eq!(resp.headers()["retry-after"], "2");
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
    }

    #[test]
    fn the_map_of_buckets_is_bounded() {
        let limiter = RateLimiter::new(1.0, 1).unwrap();
        let now = Instant::now();
        for i in 0..(MAX_KEYS + 1000) {
            let _ = limiter.check(i, now);
        }
        limiter.buckets.run_pending_tasks();
        assert!(limiter.buckets.entry_count() <= MAX_KEYS);
    }
}
