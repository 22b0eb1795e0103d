//! Per-caller rate (a token bucket refilled at the caller's tokens per second, holding
//! up to `window` seconds of them) and concurrency (requests running at once), both as
//! the Allocation in force publishes them. Local to each replica: rates smooth load; the
//! monthly budget is what is shared.
//!
//! When a caller's limit changes (a new Allocation), what it used in the window stays
//! used: its bucket keeps the same shortfall against the new size.
//!
//! The `x-ratelimit-reset-*` headers say when the limit is back: for tokens, when the
//! bucket is full again; for requests, when the first of the caller's running
//! requests is expected to end (its age against the caller's typical request time, a
//! moving average of its recent requests), `0s` while a place is free.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::coop::CallerLimits;
use crate::error::ApiError;

/// Which lane a request is admitted in: within the caller's floor (reserved) or on
/// capacity it borrows (overflow), which the scheduler serves behind every reserved
/// request and so reclaims first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Reserved,
    Overflow,
}

impl Lane {
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Reserved => "reserved",
            Lane::Overflow => "overflow",
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    /// The size the bucket had when last filled.
    capacity: f64,
    /// The part of the rate within the caller's floor: a second bucket, refilled at
    /// the floor rate, that a request draws on too when it fits (its reserved lane).
    reserved: f64,
    reserved_capacity: f64,
    at: Instant,
    /// When each running request started.
    running: Vec<Instant>,
    /// A moving average of how long this caller's requests run (weight 1/8 for the
    /// latest); none until one has ended.
    typical: Option<Duration>,
}

/// The least a full caller is told to wait: a request past its typical time may end
/// at any moment, but a hint of zero would invite a busy loop.
const LEAST_REQUEST_RESET: Duration = Duration::from_millis(100);

impl Bucket {
    fn running(&self) -> u32 {
        u32::try_from(self.running.len()).unwrap_or(u32::MAX)
    }

    /// How long until one of the running requests is expected to end.
    fn next_place(&self, now: Instant) -> Duration {
        let Some(typical) = self.typical else {
            // Nothing known yet about this caller's requests.
            return Duration::from_secs(1);
        };
        let oldest = self.running.iter().min().copied().unwrap_or(now);
        typical
            .saturating_sub(now.duration_since(oldest))
            .max(LEAST_REQUEST_RESET)
    }
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
    lane: Lane,
    started: Instant,
    headers: Headers,
}

/// The `x-ratelimit-*` figures of one caller at one moment.
#[derive(Debug, Clone, Copy)]
struct Headers {
    limit_tokens: u64,
    remaining_tokens: u64,
    reset_tokens: Duration,
    limit_requests: u32,
    remaining_requests: u32,
    reset_requests: Duration,
}

impl Headers {
    fn of(bucket: &Bucket, rate: f64, concurrency: u32, now: Instant) -> Self {
        let tokens = bucket.tokens.max(0.0);
        let remaining_requests = concurrency.saturating_sub(bucket.running());
        Self {
            limit_tokens: bucket.capacity as u64,
            remaining_tokens: tokens as u64,
            // Until the bucket is full again.
            reset_tokens: Duration::try_from_secs_f64((bucket.capacity - tokens) / rate).unwrap_or_default(),
            limit_requests: concurrency,
            remaining_requests,
            reset_requests: if remaining_requests > 0 {
                Duration::ZERO
            } else {
                bucket.next_place(now)
            },
        }
    }

    fn list(self) -> Vec<(&'static str, String)> {
        vec![
            ("x-ratelimit-limit-tokens", self.limit_tokens.to_string()),
            ("x-ratelimit-remaining-tokens", self.remaining_tokens.to_string()),
            ("x-ratelimit-reset-tokens", reset(self.reset_tokens)),
            ("x-ratelimit-limit-requests", self.limit_requests.to_string()),
            (
                "x-ratelimit-remaining-requests",
                self.remaining_requests.to_string(),
            ),
            ("x-ratelimit-reset-requests", reset(self.reset_requests)),
        ]
    }
}

/// A wait as OpenAI writes it: `0s`, `250ms`, `7s`, `6m0s` (milliseconds below a
/// second, else whole seconds rounded up).
fn reset(wait: Duration) -> String {
    if wait.is_zero() {
        return "0s".to_owned();
    }
    if wait < Duration::from_secs(1) {
        return format!("{}ms", wait.as_millis().max(1));
    }
    let seconds = seconds_up(wait);
    if seconds < 60 {
        format!("{seconds}s")
    } else {
        format!("{}m{}s", seconds / 60, seconds % 60)
    }
}

/// Whole seconds, rounded up (what `Retry-After` can say).
fn seconds_up(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

fn rate_limited(message: String, retry_after: u64, headers: Headers) -> ApiError {
    ApiError::RateLimited {
        message,
        code: "rate_limit_exceeded".to_owned(),
        retry_after: Some(retry_after.max(1)),
        headers: headers.list(),
    }
}

impl Limiter {
    pub fn new(window: Duration) -> Arc<Self> {
        Arc::new(Self {
            callers: Mutex::default(),
            window,
        })
    }

    /// Takes `estimate` tokens and a concurrency place, or refuses with a 429 that says
    /// which limit was hit.
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
        let floor = limits.floor_tokens_per_second.min(limits.tokens_per_second) as f64;
        let reserved_capacity = floor * self.window.as_secs_f64();
        let bucket = callers.entry(caller.to_owned()).or_insert(Bucket {
            tokens: capacity,
            capacity,
            reserved: reserved_capacity,
            reserved_capacity,
            at: now,
            running: Vec::new(),
            typical: None,
        });
        if bucket.capacity != capacity {
            // A new limit: what was used stays used.
            bucket.tokens += capacity - bucket.capacity;
            bucket.capacity = capacity;
        }
        if bucket.reserved_capacity != reserved_capacity {
            bucket.reserved += reserved_capacity - bucket.reserved_capacity;
            bucket.reserved_capacity = reserved_capacity;
        }
        let elapsed = now.duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + rate * elapsed).min(capacity);
        bucket.reserved = (bucket.reserved + floor * elapsed).min(reserved_capacity);
        bucket.at = now;
        if limits.concurrency > 0 && bucket.running() >= limits.concurrency {
            return Err(rate_limited(
                format!(
                    "Too many requests at once: {caller} may run {} at a time (its concurrency in the \
                     allocation in force).",
                    limits.concurrency
                ),
                seconds_up(bucket.next_place(now)),
                Headers::of(bucket, rate, limits.concurrency, now),
            ));
        }
        // A request larger than the bucket passes when the bucket is full.
        let needed = (estimate as f64).min(capacity);
        if bucket.tokens < needed {
            let wait = ((needed - bucket.tokens) / rate).ceil() as u64;
            return Err(rate_limited(
                format!(
                    "Rate limit reached: {caller} may use {} tokens per second ({} a minute) in the \
                     allocation in force.",
                    limits.tokens_per_second,
                    limits.tokens_per_second.saturating_mul(self.window.as_secs())
                ),
                wait,
                Headers::of(bucket, rate, limits.concurrency, now),
            ));
        }
        bucket.tokens -= estimate as f64;
        // Within the floor: the reserved lane (a request larger than the reserved
        // bucket fits when it is full, as above).
        let lane = if reserved_capacity > 0.0 && bucket.reserved >= (estimate as f64).min(reserved_capacity) {
            bucket.reserved -= estimate as f64;
            Lane::Reserved
        } else {
            Lane::Overflow
        };
        bucket.running.push(now);
        Ok(Ticket {
            limiter: self.clone(),
            caller: caller.to_owned(),
            estimate,
            lane,
            started: now,
            headers: Headers::of(bucket, rate, limits.concurrency, now),
        })
    }
}

impl Ticket {
    /// Gives back the part of the estimate that was not used.
    pub fn settle(&mut self, used: u64) {
        if let Ok(mut callers) = self.limiter.callers.lock()
            && let Some(bucket) = callers.get_mut(&self.caller)
        {
            let unused = self.estimate as f64 - used as f64;
            bucket.tokens = (bucket.tokens + unused).min(bucket.capacity);
            if self.lane == Lane::Reserved {
                bucket.reserved = (bucket.reserved + unused).min(bucket.reserved_capacity);
            }
        }
        self.estimate = used;
    }

    /// The lane the request was admitted in.
    pub fn lane(&self) -> Lane {
        self.lane
    }

    /// The `x-ratelimit-*` headers as they stood when the request was admitted.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        self.headers.list()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Ok(mut callers) = self.limiter.callers.lock()
            && let Some(bucket) = callers.get_mut(&self.caller)
        {
            if let Some(at) = bucket.running.iter().position(|s| *s == self.started) {
                bucket.running.swap_remove(at);
            }
            let took = self.started.elapsed();
            bucket.typical = Some(match bucket.typical {
                Some(typical) => (typical * 7 + took) / 8,
                None => took,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: u64, concurrency: u32) -> CallerLimits {
        CallerLimits {
            tokens_per_second: rate,
            floor_tokens_per_second: rate,
            monthly_budget: u64::MAX,
            concurrency,
        }
    }

    fn code(e: &ApiError) -> (&str, Option<&str>) {
        match e {
            ApiError::RateLimited { code, headers, .. } => (
                code.as_str(),
                headers
                    .iter()
                    .find(|(n, _)| *n == "x-ratelimit-limit-tokens")
                    .map(|(_, v)| v.as_str()),
            ),
            _ => ("", None),
        }
    }

    #[test]
    fn work_within_the_floor_is_reserved_and_borrowed_work_is_overflow() {
        let l = Limiter::new(Duration::from_secs(60));
        // 10 tokens/s of which 4 are the floor: 600 in the bucket, 240 of them reserved.
        let mixed = CallerLimits {
            tokens_per_second: 10,
            floor_tokens_per_second: 4,
            monthly_budget: u64::MAX,
            concurrency: 10,
        };
        let a = l.take("ana", &mixed, 200).unwrap();
        assert_eq!(a.lane(), Lane::Reserved);
        // 40 reserved left: a request of 100 borrows.
        let mut b = l.take("ana", &mixed, 100).unwrap();
        assert_eq!(b.lane(), Lane::Overflow);
        // What a reserved request did not use goes back to the reserved bucket.
        let mut c = l.take("ana", &mixed, 40).unwrap();
        assert_eq!(c.lane(), Lane::Reserved);
        c.settle(0);
        b.settle(0);
        assert_eq!(l.take("ana", &mixed, 40).unwrap().lane(), Lane::Reserved);
        // Past the whole rate (floor and borrowing) it is still a 429.
        let refused = l.take("ana", &mixed, 400).unwrap_err();
        assert_eq!(code(&refused).0, "rate_limit_exceeded");
        // No floor (customers, classes without one): everything borrows.
        let borrowing = CallerLimits {
            floor_tokens_per_second: 0,
            ..mixed
        };
        assert_eq!(l.take("acme", &borrowing, 1).unwrap().lane(), Lane::Overflow);
        drop(a);
    }

    #[test]
    fn the_bucket_holds_a_minute_and_a_new_limit_keeps_what_was_used() {
        let l = Limiter::new(Duration::from_secs(60));
        // 4 tokens/s: 240 in the bucket.
        let t = l.take("ana", &limits(4, 10), 200).unwrap();
        assert_eq!(t.headers()[0], ("x-ratelimit-limit-tokens", "240".to_owned()));
        let refused = l.take("ana", &limits(4, 10), 100).unwrap_err();
        assert_eq!(code(&refused), ("rate_limit_exceeded", Some("240")));
        // 9 tokens/s: 540; the 200 used stay used, so 340 are left.
        let t2 = l.take("ana", &limits(9, 10), 300).unwrap();
        assert!(t2.headers()[1].1.parse::<u64>().unwrap() >= 40);
        assert!(l.take("ana", &limits(9, 10), 100).is_err());
        drop((t, t2));
    }

    #[test]
    fn concurrency_is_a_429_with_the_headers_and_frees_when_a_request_ends() {
        let l = Limiter::new(Duration::from_secs(60));
        let a = l.take("ben", &limits(1000, 2), 1).unwrap();
        assert!(
            a.headers()
                .contains(&("x-ratelimit-remaining-requests", "1".to_owned()))
        );
        assert!(
            a.headers()
                .contains(&("x-ratelimit-reset-requests", "0s".to_owned()))
        );
        let b = l.take("ben", &limits(1000, 2), 1).unwrap();
        let refused = l.take("ben", &limits(1000, 2), 1).unwrap_err();
        let ApiError::RateLimited { headers, message, .. } = &refused else {
            panic!("{refused:?}")
        };
        assert!(message.contains("2 at a time"));
        assert!(headers.contains(&("x-ratelimit-remaining-requests", "0".to_owned())));
        // Nothing is known yet about how long ben's requests run.
        assert!(headers.contains(&("x-ratelimit-reset-requests", "1s".to_owned())));
        drop(a);
        let c = l.take("ben", &limits(1000, 2), 1).unwrap();
        // `a` ran for next to no time: a place is expected back at once (the least hint).
        assert!(
            c.headers()
                .contains(&("x-ratelimit-reset-requests", "100ms".to_owned())),
            "{:?}",
            c.headers()
        );
        drop((b, c));
    }

    #[test]
    fn a_full_caller_is_told_when_its_oldest_request_should_end() {
        let now = Instant::now();
        let bucket = Bucket {
            tokens: 10.0,
            capacity: 10.0,
            reserved: 10.0,
            reserved_capacity: 10.0,
            at: now,
            running: vec![
                now - Duration::from_millis(1500),
                now - Duration::from_millis(200),
            ],
            typical: Some(Duration::from_secs(4)),
        };
        // The oldest has run 1.5 s of a typical 4 s.
        assert_eq!(bucket.next_place(now), Duration::from_millis(2500));
        let headers = Headers::of(&bucket, 1.0, 2, now).list();
        assert!(headers.contains(&("x-ratelimit-reset-requests", "3s".to_owned())));
        // A place free: nothing to wait for.
        let headers = Headers::of(&bucket, 1.0, 3, now).list();
        assert!(headers.contains(&("x-ratelimit-reset-requests", "0s".to_owned())));
        // Past its typical time: the least hint, never zero.
        let overdue = Bucket {
            typical: Some(Duration::from_secs(1)),
            ..bucket
        };
        assert_eq!(overdue.next_place(now), LEAST_REQUEST_RESET);
    }

    #[test]
    fn waits_are_written_as_openai_writes_them() {
        assert_eq!(reset(Duration::ZERO), "0s");
        assert_eq!(reset(Duration::from_micros(300)), "1ms");
        assert_eq!(reset(Duration::from_millis(250)), "250ms");
        assert_eq!(reset(Duration::from_millis(6200)), "7s");
        assert_eq!(reset(Duration::from_secs(360)), "6m0s");
    }

    #[test]
    fn the_typical_time_follows_the_requests_that_end() {
        let l = Limiter::new(Duration::from_secs(60));
        let t = l.take("cleo", &limits(1000, 1), 1).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        drop(t);
        let typical = l.callers.lock().unwrap()["cleo"].typical.unwrap();
        assert!(typical >= Duration::from_millis(30), "{typical:?}");
        let _t = l.take("cleo", &limits(1000, 1), 1).unwrap();
        let refused = l.take("cleo", &limits(1000, 1), 1).unwrap_err();
        let ApiError::RateLimited {
            headers, retry_after, ..
        } = &refused
        else {
            panic!("{refused:?}")
        };
        let hint = &headers
            .iter()
            .find(|(n, _)| *n == "x-ratelimit-reset-requests")
            .unwrap()
            .1;
        assert!(hint.ends_with("ms"), "{hint}");
        assert_eq!(*retry_after, Some(1));
    }
}
