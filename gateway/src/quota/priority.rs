//! Priority admission to a saturated engine.
//!
//! Each engine has `slots` (requests it serves at once). While a slot is free and
//! nobody waits, a request runs at once. Otherwise it queues, and a freed slot goes
//! to the waiting request with the lowest `(tier, tag)`: every member class before
//! customers, lower tier numbers first (members and schools before local
//! businesses). Within a tier the tag is a weighted-fair virtual finish time: a
//! caller's tag advances by `1/weight` per request, so busy callers do not starve
//! quiet ones.
//!
//! Customers may hold at most `customer_slots` (the surplus share of the slots) and
//! wait at most `customer_wait`; with no surplus, or after the wait, they get a 429
//! with `Retry-After`. Slots are not pre-empted, so a member that arrives when every
//! slot is taken by lower tiers waits at most until the first of them finishes: one
//! request's service time. And because customers never hold more than their share,
//! members usually find a slot free at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::admission::{Caller, CallerKind};
use crate::error::ApiError;

/// Virtual time units per request of weight 1.
const UNIT: u64 = 1_000_000;

type QueueKey = (u32, u64, u64);

#[derive(Debug)]
struct Waiter {
    customer: bool,
    grant: oneshot::Sender<()>,
}

#[derive(Debug, Default)]
struct State {
    busy: usize,
    busy_customers: usize,
    queue: BTreeMap<QueueKey, Waiter>,
    /// Per tier: the tag of the last request dispatched.
    clock: HashMap<u32, u64>,
    /// Per caller: its last tag.
    last: HashMap<String, u64>,
    seq: u64,
}

/// One engine's slots and queue.
#[derive(Debug)]
pub struct Scheduler {
    slots: usize,
    surplus_percent: u32,
    customer_slots: usize,
    customer_wait: Duration,
    member_wait: Duration,
    state: Mutex<State>,
}

/// A slot held by a running request; freed (and handed on) when dropped.
#[derive(Debug)]
pub struct Slot {
    scheduler: Arc<Scheduler>,
    customer: bool,
}

impl Scheduler {
    /// `surplus_percent`: the share of slots customers may hold at once (rounded up).
    pub fn new(
        slots: usize,
        surplus_percent: u32,
        customer_wait: Duration,
        member_wait: Duration,
    ) -> Arc<Self> {
        let slots = slots.max(1);
        let customer_slots = (slots * surplus_percent.min(100) as usize).div_ceil(100);
        Arc::new(Self {
            slots,
            surplus_percent,
            customer_slots,
            customer_wait,
            member_wait,
            state: Mutex::default(),
        })
    }

    /// The surplus share it was made with.
    pub fn surplus_percent(&self) -> u32 {
        self.surplus_percent
    }

    fn no_surplus(&self) -> ApiError {
        ApiError::RateLimited {
            message: "No surplus capacity is free for customers now; retry later.".to_owned(),
            code: "surplus_unavailable".to_owned(),
            retry_after: Some(self.customer_wait.as_secs().max(1)),
            headers: Vec::new(),
        }
    }

    /// Waits for a slot in `caller`'s turn.
    pub async fn acquire(self: &Arc<Self>, caller: &Caller) -> Result<Slot, ApiError> {
        let customer = caller.kind != CallerKind::Member;
        if customer && self.customer_slots == 0 {
            return Err(self.no_surplus());
        }
        let slot = || Slot {
            scheduler: self.clone(),
            customer,
        };
        let (key, rx) = {
            let mut s = self
                .state
                .lock()
                .map_err(|_| ApiError::Unavailable("scheduler unavailable".to_owned()))?;
            let ahead = s.queue.keys().next().is_some_and(|k| k.0 <= caller.tier);
            if s.busy < self.slots && !ahead && (!customer || s.busy_customers < self.customer_slots) {
                s.busy += 1;
                s.busy_customers += usize::from(customer);
                return Ok(slot());
            }
            let clock = s.clock.get(&caller.tier).copied().unwrap_or(0);
            let last = s.last.get(&caller.id).copied().unwrap_or(0);
            let tag = clock.max(last) + UNIT / u64::from(caller.weight.max(1));
            s.last.insert(caller.id.clone(), tag);
            s.seq += 1;
            let key = (caller.tier, tag, s.seq);
            let (tx, rx) = oneshot::channel();
            s.queue.insert(key, Waiter { customer, grant: tx });
            (key, rx)
        };
        let wait = if customer {
            self.customer_wait
        } else {
            self.member_wait
        };
        let mut rx = rx;
        match tokio::time::timeout(wait, &mut rx).await {
            Ok(Ok(())) => Ok(slot()),
            _ => {
                let still_queued = self
                    .state
                    .lock()
                    .map(|mut s| s.queue.remove(&key).is_some())
                    .unwrap_or(true);
                if !still_queued && rx.try_recv().is_ok() {
                    // Granted just as the wait ran out: take it.
                    return Ok(slot());
                }
                Err(if customer {
                    self.no_surplus()
                } else {
                    ApiError::RateLimited {
                        message: "The model is saturated; retry shortly.".to_owned(),
                        code: "engine_saturated".to_owned(),
                        retry_after: Some(1),
                        headers: Vec::new(),
                    }
                })
            }
        }
    }

    fn release(&self, customer: bool) {
        let Ok(mut s) = self.state.lock() else { return };
        s.busy = s.busy.saturating_sub(1);
        if customer {
            s.busy_customers = s.busy_customers.saturating_sub(1);
        }
        // Hand the slot to the first eligible waiter that still waits.
        while s.busy < self.slots {
            let next = s
                .queue
                .iter()
                .find(|(_, w)| !w.customer || s.busy_customers < self.customer_slots)
                .map(|(k, _)| *k);
            let Some(key) = next else { break };
            let Some(waiter) = s.queue.remove(&key) else { break };
            if waiter.grant.send(()).is_ok() {
                s.busy += 1;
                s.busy_customers += usize::from(waiter.customer);
                s.clock.insert(key.0, key.1);
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.scheduler.release(self.customer);
    }
}
