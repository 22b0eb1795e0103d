//! Per-caller rate (a token bucket refilled at the caller's tokens per second, holding
//! up to `window` seconds of them) and concurrency (requests running at once). Local
//! to each replica: rates smooth load; the monthly budget is what is shared.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::coop::CallerLimits;
use crate::error::ApiError;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
    running: u32,
}

#[derive(Debug)]
pub struct Limiter {
    callers: Mutex<HashMap<String, Bucket>>,
    window: Duration,
}

/// A running request's place in its caller's limits.
#[derive(Debug)]
pub struct Ticket {
    limiter: Arc<Limiter>,
    caller: String,
    estimate: u64,
    /// For the response headers.
    pub limit_tokens: u64,
    pub remaining_tokens: u64,
    pub reset_seconds: u64,
    pub limit_requests: u32,
    pub remaining_requests: u32,
}

fn rate_limited(message: String, retry_after: u64) -> ApiError {
    ApiError::RateLimited {
        message,
        code: "rate_limit_exceeded".to_owned(),
        retry_after: Some(retry_after.max(1)),
    }
}

impl Limiter {
    pub fn new(window: Duration) -> Arc<Self> {
        Arc::new(Self {
            callers: Mutex::default(),
            window,
        })
    }

    /// Takes `estimate` tokens and a concurrency place, or refuses with a 429.
    pub fn take(
        self: &Arc<Self>,
        caller: &str,
        limits: &CallerLimits,
        estimate: u64,
    ) -> Result<Ticket, ApiError> {
        let rate = limits.tokens_per_second.max(1) as f64;
        let capacity = rate * self.window.as_secs_f64();
        let mut callers = self
            .callers
            .lock()
            .map_err(|_| ApiError::Unavailable("rate limiter unavailable".to_owned()))?;
        let now = Instant::now();
        let bucket = callers.entry(caller.to_owned()).or_insert(Bucket {
            tokens: capacity,
            at: now,
            running: 0,
        });
        bucket.tokens = (bucket.tokens + rate * now.duration_since(bucket.at).as_secs_f64()).min(capacity);
        bucket.at = now;
        if limits.concurrency > 0 && bucket.running >= limits.concurrency {
            return Err(rate_limited(
                format!(
                    "Too many requests at once: {} may run {} at a time.",
                    caller, limits.concurrency
                ),
                1,
            ));
        }
        // A request larger than the bucket passes when the bucket is full.
        let needed = (estimate as f64).min(capacity);
        if bucket.tokens < needed {
            let wait = ((needed - bucket.tokens) / rate).ceil() as u64;
            return Err(rate_limited(
                format!(
                    "Rate limit reached: {caller} may use {} tokens per second.",
                    limits.tokens_per_second
                ),
                wait,
            ));
        }
        bucket.tokens -= estimate as f64;
        bucket.running += 1;
        Ok(Ticket {
            limiter: self.clone(),
            caller: caller.to_owned(),
            estimate,
            limit_tokens: capacity as u64,
            remaining_tokens: bucket.tokens.max(0.0) as u64,
            reset_seconds: ((capacity - bucket.tokens.max(0.0)) / rate).ceil() as u64,
            limit_requests: limits.concurrency,
            remaining_requests: limits.concurrency.saturating_sub(bucket.running),
        })
    }
}

impl Ticket {
    /// Gives back the part of the estimate that was not used.
    pub fn settle(&mut self, used: u64) {
        if let Ok(mut callers) = self.limiter.callers.lock()
            && let Some(bucket) = callers.get_mut(&self.caller)
        {
            bucket.tokens += self.estimate as f64 - used as f64;
        }
        self.estimate = used;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Ok(mut callers) = self.limiter.callers.lock()
            && let Some(bucket) = callers.get_mut(&self.caller)
        {
            bucket.running = bucket.running.saturating_sub(1);
        }
    }
}
