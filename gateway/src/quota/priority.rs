//! Priority admission to a saturated engine, fair in tokens within a tier.
//!
//! Each engine has `slots` (requests it serves at once). While a slot is free and
//! nobody waits, a request runs at once. Otherwise it queues, and a freed slot goes
//! to a waiting request of the lowest band: every member class before customers,
//! lower tier numbers first (members and schools before local businesses), and work
//! within a member's floor before any member's borrowed work ([`OVERFLOW_BAND`]).
//!
//! **Within a tier, a virtual token counter** (after VTC, Sheng et al., OSDI 2024):
//! each caller has a counter of the service it received, in weighted tokens (input
//! plus [`OUTPUT_WEIGHT`] × output) divided by its weight, and a freed slot goes to the
//! waiting caller with the lowest counter. A request is charged its prompt estimate
//! when it is dispatched and corrected to what it really used (prompt and output) when
//! it ends. A caller that was idle comes back at the lowest counter of those waiting
//! (or the tier's clock, the counter of the last caller served), so idleness banks
//! no credit. Between two callers that stay backlogged, the service gap (normalised by
//! weight) stays within a bound of about twice the largest request's cost, the paper's
//! bound: a school sending prompts ten times longer than its neighbour gets ten times
//! fewer requests served, not ten times the engine.
//!
//! Weights are the callers' floors in the Allocation in force (a member's floor is its
//! share); see [`CallerWeight`].
//!
//! **Across gateway replicas** the counters are per replica: each replica shares its
//! own slots fairly, so with `R` replicas the gap between two backlogged callers is at
//! most `R` times the one-replica bound (and none when the load balancer spreads each
//! caller's requests evenly).
//!
//! **The slots are measured, not configured.** `--engine-slots` is a ceiling (an
//! in-process engine lowers it to the sequences it runs at once, `--max-seqs`, so that
//! nothing waits in the engine's own queue, where tiers do not apply); the
//! number of slots in use follows the engine's latency per token ([`Gradient`], after
//! the gradient concurrency limits of Netflix's `concurrency-limits`): while the
//! recent time per token stays within [`TOLERANCE`] of the best seen, the limit grows
//! by about its square root; past it, the limit shrinks in proportion. It starts at one
//! request at a time, so that the best is the engine's speed unloaded. An engine that
//! queues inside itself (its latency rises with what it is given) is thus given about
//! as much as it serves at its best speed, and the rest waits here, where tiers and
//! fairness decide who goes next. `synco_gateway_engine_concurrency_limit` shows it.
//!
//! Customers may hold at most the surplus share of the slots the engine works on (see
//! `Gradient::working`: not those it would queue inside itself) and
//! wait at most `customer_wait`; with no surplus, or after the wait, they get a 429
//! with `Retry-After`. A peer co-op's requests are capped the same way, at the share
//! the bylaws lend that peer ([`Share::Peer`]). Slots are not pre-empted, so a member that arrives when every
//! slot is taken by lower tiers waits at most until the first of them finishes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::admission::{Caller, CallerKind};
use crate::error::ApiError;

/// The most of a model's slots the governance assistant holds at once (rounded up, so
/// at least one).
pub const ASSISTANT_PERCENT: u32 = 25;

/// An output token costs this many input tokens in the counters (generating is the
/// expensive part of serving, as in the VTC paper's weights).
pub const OUTPUT_WEIGHT: u64 = 2;

/// The recent time per token may be this many times the best seen before the limit
/// shrinks (room for noise and for batching engines that slow a little as they fill).
pub const TOLERANCE: f64 = 2.0;

/// The code of a member's 429 when no slot came within its wait.
const SATURATED: &str = "engine_saturated";

/// The engine's concurrency limit, from its latency per token.
#[derive(Debug)]
struct Gradient {
    limit: f64,
    ceiling: f64,
    /// The best time per token seen, or the last one of a request that had the engine
    /// to itself (so that an engine that became slower for good, say a busier GPU, is
    /// judged by its new speed once the limit has come down to one).
    best: Option<f64>,
    /// A moving average of the recent times per token.
    recent: Option<f64>,
    /// A moving average of the recent requests' whole times, and when the limit last
    /// changed: it changes at most once per such round trip, since a change shows in
    /// the latency only once the requests it let in have run.
    round_trip: Option<Duration>,
    changed: Option<Instant>,
}

impl Gradient {
    /// Starts at one request, so that the first samples show the engine's speed
    /// unloaded; the limit reaches a ceiling of 64 in about 70 requests.
    fn new(ceiling: usize) -> Self {
        Self {
            limit: 1.0,
            ceiling: ceiling as f64,
            best: None,
            recent: None,
            round_trip: None,
            changed: None,
        }
    }

    /// The slots to use now.
    fn slots(&self) -> usize {
        (self.limit.floor() as usize).max(1)
    }

    /// How many of the slots the engine is working on rather than queueing inside
    /// itself, by Little's law: with the recent time per token at twice the best, half
    /// of what it is given waits in it. The surplus sold to customers is a share of
    /// this, so that their requests cannot fill the engine's own queue ahead of the
    /// members' (the engine serves its queue in order, whoever sent what).
    fn working(&self) -> usize {
        let speed = match (self.best, self.recent) {
            (Some(best), Some(recent)) if recent > 0.0 => (best / recent).min(1.0),
            _ => 1.0,
        };
        ((self.limit.floor() * speed).round() as usize).max(1)
    }

    /// One finished request's time per token; `alone`: it was the only request given
    /// to the engine when it was dispatched; `pressed`: requests wait, or at least half
    /// the limit is in use. The limit grows only when pressed: a limit nobody reaches
    /// has not been shown to be safe.
    fn observe(&mut self, took: Duration, tokens: u64, now: Instant, alone: bool, pressed: bool) {
        let per_token = took.as_secs_f64() / tokens.max(1) as f64;
        if !per_token.is_finite() || per_token <= 0.0 {
            return;
        }
        let round_trip = self.round_trip.map_or(took, |r| (r * 9 + took) / 10);
        self.round_trip = Some(round_trip);
        let best = match self.best {
            Some(best) if !alone => best.min(per_token),
            _ => per_token,
        };
        let recent = self.recent.map_or(per_token, |r| r * 0.9 + per_token * 0.1);
        self.best = Some(best);
        self.recent = Some(recent);
        if self
            .changed
            .is_some_and(|at| now.saturating_duration_since(at) < round_trip)
        {
            return;
        }
        self.changed = Some(now);
        let gradient = (TOLERANCE * best / recent).clamp(0.5, 1.0);
        let growth = if pressed { self.limit.sqrt() } else { 0.0 };
        let proposed = self.limit * gradient + growth;
        self.limit = (self.limit * 0.5 + proposed * 0.5).clamp(1.0, self.ceiling);
    }
}

/// Where the overflow lane's bands start: a member's request on borrowed capacity
/// (over its floor; see [`crate::quota::limiter::Lane`]) queues in band
/// `OVERFLOW_BAND + tier`, behind every member's reserved work and ahead of customers.
/// So the order in which capacity is taken back when a slot frees, the reverse of the
/// order it is handed out, is the solver's reclaim order (`Quotas::reclaim_order`):
/// customers first, then borrowers from the lowest-priority tier up, and within a
/// band the one served most for its weight.
pub const OVERFLOW_BAND: u32 = 1 << 16;

/// The band a request queues in: its tier, or its tier's overflow band.
#[must_use]
pub fn band(tier: u32, lane: crate::quota::limiter::Lane) -> u32 {
    match lane {
        crate::quota::limiter::Lane::Reserved => tier,
        crate::quota::limiter::Lane::Overflow => OVERFLOW_BAND
            .saturating_add(tier.min(OVERFLOW_BAND - 1))
            .min(crate::coop::CUSTOMER_TIER - 1),
    }
}

/// How a band shows in `/metrics`: the tier, with `/overflow` for an overflow band.
fn band_label(band: u32) -> String {
    if (OVERFLOW_BAND..crate::coop::CUSTOMER_TIER).contains(&band) {
        format!("{}/overflow", band - OVERFLOW_BAND)
    } else {
        band.to_string()
    }
}

/// How long the fairness index is measured over before it is published.
const FAIRNESS_WINDOW: Duration = Duration::from_secs(10);

/// A caller's share within its tier.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CallerWeight(pub f64);

impl CallerWeight {
    /// The caller's floor in tokens per second if it has one, else its whole rate
    /// (customers, and classes without a floor), never less than 1.
    pub fn of(limits: &crate::coop::CallerLimits) -> Self {
        let share = if limits.floor_tokens_per_second > 0 {
            limits.floor_tokens_per_second
        } else {
            limits.tokens_per_second
        };
        Self(share.max(1) as f64)
    }
}

#[derive(Debug)]
struct Waiter {
    seq: u64,
    /// The prompt estimate, charged when the request is dispatched.
    cost: u64,
    /// Sent when the slot is granted: whether it is the only request on the engine.
    grant: oneshot::Sender<bool>,
}

/// A capped part of the slots that some callers' requests count against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Share {
    /// Every customer together, within the surplus share.
    Customers,
    /// One peer co-op, within the share the bylaws lend it (percent).
    Peer(String, u32),
    /// The governance assistant, within [`ASSISTANT_PERCENT`].
    Assistant,
}

impl Share {
    /// The share a caller's requests count against, if any (a peer's percent is given
    /// by the caller of [`Scheduler::acquire_lent`]).
    fn of(caller: &Caller) -> Option<Self> {
        match caller.kind {
            CallerKind::Member => None,
            CallerKind::Coop => Some(Self::Assistant),
            CallerKind::Peer => Some(Self::Peer(caller.id.clone(), 0)),
            CallerKind::Customer | CallerKind::Anonymous => Some(Self::Customers),
        }
    }

    /// The key its running requests are counted under.
    fn key(&self) -> &str {
        match self {
            Self::Customers => "",
            Self::Peer(name, _) => name,
            // Not a resource name, so no peer co-op can share its count.
            Self::Assistant => "coop:assistant",
        }
    }
}

#[derive(Debug, Default)]
struct Tenant {
    /// Weighted tokens served, divided by the weight.
    counter: f64,
    weight: f64,
    queue: VecDeque<Waiter>,
    /// Weighted tokens served in the current fairness window, and whether the caller
    /// waited in it (only callers that waited compete for the engine).
    window_service: f64,
    waited: bool,
    /// The capped share its requests count against.
    share: Option<Share>,
}

#[derive(Debug)]
struct Tier {
    tenants: HashMap<String, Tenant>,
    /// Requests waiting in the tier (the sum of the tenants' queues), so that whether
    /// anyone waits is known without looking at every tenant.
    queued: usize,
    /// The counter of the last caller served: where a caller coming back starts.
    clock: f64,
    window_start: Instant,
}

impl Tier {
    fn new() -> Self {
        Self {
            tenants: HashMap::new(),
            queued: 0,
            clock: 0.0,
            window_start: Instant::now(),
        }
    }

    fn waiting(&self) -> bool {
        self.queued > 0
    }

    fn enqueue(&mut self, caller: &str, waiter: Waiter) {
        if let Some(tenant) = self.tenants.get_mut(caller) {
            tenant.waited = true;
            tenant.queue.push_back(waiter);
            self.queued += 1;
        }
    }

    /// The caller's first waiting request.
    fn pop(&mut self, caller: &str) -> Option<Waiter> {
        let waiter = self.tenants.get_mut(caller)?.queue.pop_front()?;
        self.queued -= 1;
        Some(waiter)
    }

    /// Takes the waiting request `seq` out of the queue; false if it is not there.
    fn withdraw(&mut self, caller: &str, seq: u64) -> bool {
        let Some(queue) = self.tenants.get_mut(caller).map(|t| &mut t.queue) else {
            return false;
        };
        let Some(at) = queue.iter().position(|w| w.seq == seq) else {
            return false;
        };
        queue.remove(at);
        self.queued -= 1;
        true
    }

    /// The lowest counter among the callers that wait.
    fn lowest_waiting(&self) -> Option<f64> {
        self.tenants
            .values()
            .filter(|t| !t.queue.is_empty())
            .map(|t| t.counter)
            .min_by(f64::total_cmp)
    }

    /// Jain's index over the window's service (per unit of weight) of the callers that
    /// waited in it; `None` with fewer than two of them.
    fn fairness(&self) -> Option<f64> {
        let shares: Vec<f64> = self
            .tenants
            .values()
            .filter(|t| t.waited)
            .map(|t| t.window_service / t.weight)
            .collect();
        jain(&shares)
    }

    fn roll_window(&mut self, model: &str, tier: u32) {
        if self.window_start.elapsed() < FAIRNESS_WINDOW {
            return;
        }
        if let Some(index) = self.fairness() {
            metrics::gauge!(
                "synco_gateway_fairness_jain_index",
                "model" => model.to_owned(),
                "tier" => band_label(tier)
            )
            .set(index);
        }
        self.window_start = Instant::now();
        self.tenants.retain(|_, t| {
            t.window_service = 0.0;
            t.waited = !t.queue.is_empty();
            // A caller with nothing waiting and its counter at or below the clock would
            // come back at the clock anyway: forget it.
            !t.queue.is_empty() || t.counter > self.clock
        });
    }
}

/// Jain's fairness index of `shares`: 1 when all are equal, `1/n` when one has all.
pub fn jain(shares: &[f64]) -> Option<f64> {
    if shares.len() < 2 {
        return None;
    }
    let sum: f64 = shares.iter().sum();
    let squares: f64 = shares.iter().map(|s| s * s).sum();
    if squares == 0.0 {
        return None;
    }
    Some(sum * sum / (shares.len() as f64 * squares))
}

/// How often a model's demand gauges are set at most.
const DEMAND_EVERY: Duration = Duration::from_millis(250);

/// What a model's callers ask of it now: the demand the gateway publishes (in
/// `/metrics`) for scaling, counted in prompt tokens as estimated at admission.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Demand {
    pub queued_requests: u64,
    pub queued_tokens: u64,
    pub running_requests: u64,
    pub running_tokens: u64,
}

#[derive(Debug)]
struct State {
    gradient: Gradient,
    busy: usize,
    demand: Demand,
    /// When the demand was last published.
    published: Option<Instant>,
    /// Running requests per capped share (by [`Share::key`]; customers under "").
    held: HashMap<String, usize>,
    tiers: BTreeMap<u32, Tier>,
    seq: u64,
}

/// `percent` of `slots`, rounded up.
fn part_of(slots: usize, percent: u32) -> usize {
    (slots * percent.min(100) as usize).div_ceil(100)
}

impl State {
    fn new(ceiling: usize) -> Self {
        Self {
            gradient: Gradient::new(ceiling),
            busy: 0,
            demand: Demand::default(),
            published: None,
            held: HashMap::new(),
            tiers: BTreeMap::new(),
            seq: 0,
        }
    }

    /// Whether `share` may take one more slot now: customers within the surplus share
    /// of the slots in use, a peer within the share lent to it (both rounded up).
    fn share_has_room(&self, share: Option<&Share>, surplus_percent: u32) -> bool {
        let Some(share) = share else { return true };
        let cap = match share {
            // Rounded down (at least one): a surplus is never more than its share.
            Share::Customers => (self.gradient.working() * surplus_percent.min(100) as usize / 100).max(1),
            Share::Peer(_, percent) => part_of(self.gradient.slots(), *percent),
            Share::Assistant => part_of(self.gradient.slots(), ASSISTANT_PERCENT),
        };
        self.held.get(share.key()).copied().unwrap_or(0) < cap
    }

    /// Whether a request waits in `tier` or a higher one that could take a slot now: one
    /// held back by its capped share (the assistant's, customers' at the surplus share)
    /// is not.
    fn has_eligible_waiter(&self, tier: u32, surplus_percent: u32) -> bool {
        self.tiers.range(..=tier).any(|(_, t)| {
            t.tenants
                .values()
                .any(|w| !w.queue.is_empty() && self.share_has_room(w.share.as_ref(), surplus_percent))
        })
    }

    fn hold(&mut self, share: Option<&Share>, cost: u64) {
        self.busy += 1;
        self.demand.running_requests += 1;
        self.demand.running_tokens += cost;
        if let Some(share) = share {
            *self.held.entry(share.key().to_owned()).or_default() += 1;
        }
    }

    /// Charges `cost` weighted tokens to `caller` in `tier`.
    fn charge(&mut self, tier: u32, caller: &str, cost: f64) {
        if let Some(t) = self.tiers.get_mut(&tier).and_then(|t| t.tenants.get_mut(caller)) {
            t.counter += cost / t.weight;
            t.window_service += cost;
        }
    }
}

/// One engine's slots and queue.
#[derive(Debug)]
pub struct Scheduler {
    model: String,
    /// Changes with the Allocation in force, in place: the counters and the measured
    /// limit carry over.
    surplus_percent: AtomicU32,
    customer_wait: Duration,
    member_wait: Duration,
    state: Mutex<State>,
}

/// A slot held by a running request; freed (and handed on) when dropped.
#[derive(Debug)]
pub struct Slot {
    scheduler: Arc<Scheduler>,
    share: Option<Share>,
    tier: u32,
    caller: String,
    /// What the caller's counter was charged at dispatch.
    charged: u64,
    /// Its prompt tokens as counted in the model's running demand.
    demand: u64,
    dispatched: Instant,
    /// Whether it was the only request on the engine when dispatched.
    alone: bool,
}

impl Scheduler {
    /// `slots`: the most requests the engine is given at once (the limit measured from
    /// its latency stays at or under it). `surplus_percent`: the share of slots
    /// customers may hold at once (rounded up).
    pub fn new(
        model: &str,
        slots: usize,
        surplus_percent: u32,
        customer_wait: Duration,
        member_wait: Duration,
    ) -> Arc<Self> {
        metrics::gauge!("synco_gateway_engine_concurrency_ceiling", "model" => model.to_owned())
            .set(slots.max(1) as f64);
        Arc::new(Self {
            model: model.to_owned(),
            surplus_percent: AtomicU32::new(surplus_percent),
            customer_wait,
            member_wait,
            state: Mutex::new(State::new(slots.max(1))),
        })
    }

    /// A new ceiling on the requests given to the engine at once (the engine says it
    /// runs no more); the measured limit stays under it.
    pub fn set_ceiling(&self, ceiling: usize) {
        if let Ok(mut s) = self.state.lock() {
            let ceiling = ceiling.max(1) as f64;
            if s.gradient.ceiling != ceiling {
                s.gradient.ceiling = ceiling;
                s.gradient.limit = s.gradient.limit.min(ceiling);
                metrics::gauge!("synco_gateway_engine_concurrency_ceiling", "model" => self.model.clone())
                    .set(ceiling);
            }
        }
    }

    /// The surplus share it was made with.
    pub fn surplus_percent(&self) -> u32 {
        self.surplus_percent.load(Ordering::Relaxed)
    }

    /// A new surplus share (a new Allocation): customers' requests already running keep
    /// their slots; new ones are admitted within the new share.
    pub fn set_surplus_percent(&self, percent: u32) {
        self.surplus_percent.store(percent, Ordering::Relaxed);
    }

    fn no_surplus(&self) -> ApiError {
        ApiError::RateLimited {
            message: "No surplus capacity is free for customers now; retry later.".to_owned(),
            code: "surplus_unavailable".to_owned(),
            retry_after: Some(self.customer_wait.as_secs().max(1)),
            headers: Vec::new(),
        }
    }

    /// Waits for a slot in `caller`'s turn; `prompt` is the request's prompt estimate in
    /// tokens, charged to the caller's counter when it is dispatched.
    pub async fn acquire(
        self: &Arc<Self>,
        caller: &Caller,
        weight: CallerWeight,
        prompt: u64,
    ) -> Result<Slot, ApiError> {
        let share = Share::of(caller);
        self.acquire_in(caller, weight, prompt, share, None).await
    }

    /// Like [`Scheduler::acquire`], but waits at most `wait` (when a peer co-op could
    /// serve the request instead): `Ok(None)` when no slot came in time, the request
    /// taken out of the queue.
    pub async fn acquire_within(
        self: &Arc<Self>,
        caller: &Caller,
        weight: CallerWeight,
        prompt: u64,
        wait: Duration,
    ) -> Result<Option<Slot>, ApiError> {
        let share = Share::of(caller);
        match self.acquire_in(caller, weight, prompt, share, Some(wait)).await {
            Ok(slot) => Ok(Some(slot)),
            Err(ApiError::RateLimited { code, .. }) if code == SATURATED => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Waits for a slot for a peer co-op's request, within `percent` of the slots (the
    /// share the bylaws lend it).
    pub async fn acquire_lent(
        self: &Arc<Self>,
        peer: &Caller,
        percent: u32,
        prompt: u64,
    ) -> Result<Slot, ApiError> {
        if percent == 0 {
            return Err(self.peer_share_full(&peer.id));
        }
        let share = Share::Peer(peer.id.clone(), percent);
        self.acquire_in(peer, CallerWeight(1.0), prompt, Some(share), None)
            .await
    }

    /// Requests the peer co-op `peer` could start now: free slots within the `percent`
    /// lent to it, and none while anyone waits.
    pub fn room_for(&self, peer: &str, percent: u32) -> u32 {
        let Ok(s) = self.state.lock() else { return 0 };
        if s.tiers.values().any(Tier::waiting) {
            return 0;
        }
        let slots = s.gradient.slots();
        let free = slots.saturating_sub(s.busy);
        let share = part_of(slots, percent).saturating_sub(s.held.get(peer).copied().unwrap_or(0));
        u32::try_from(free.min(share)).unwrap_or(u32::MAX)
    }

    fn peer_share_full(&self, peer: &str) -> ApiError {
        ApiError::RateLimited {
            message: format!(
                "The share of `{}` lent to {peer} is in use; retry later.",
                self.model
            ),
            code: "peer_share_full".to_owned(),
            retry_after: Some(self.customer_wait.as_secs().max(1)),
            headers: Vec::new(),
        }
    }

    async fn acquire_in(
        self: &Arc<Self>,
        caller: &Caller,
        weight: CallerWeight,
        prompt: u64,
        share: Option<Share>,
        wait: Option<Duration>,
    ) -> Result<Slot, ApiError> {
        let customer = !matches!(caller.kind, CallerKind::Member | CallerKind::Coop);
        if share == Some(Share::Customers) && self.surplus_percent() == 0 {
            return Err(self.no_surplus());
        }
        let refusal = || match &share {
            Some(Share::Peer(name, _)) => self.peer_share_full(name),
            _ => self.no_surplus(),
        };
        let slot = |alone: bool| Slot {
            scheduler: self.clone(),
            share: share.clone(),
            tier: caller.tier,
            caller: caller.id.clone(),
            charged: prompt,
            demand: prompt,
            dispatched: Instant::now(),
            alone,
        };
        let (seq, rx) = {
            let mut s = self
                .state
                .lock()
                .map_err(|_| ApiError::Unavailable("scheduler unavailable".to_owned()))?;
            // Waiters ahead: in this tier or a higher one, and free to take a slot (one
            // held back by its capped share, such as the assistant's, is not ahead).
            let ahead = s.has_eligible_waiter(caller.tier, self.surplus_percent());
            let tier = s.tiers.entry(caller.tier).or_insert_with(Tier::new);
            tier.roll_window(&self.model, caller.tier);
            // Idle callers come back at the lowest waiting counter (or the clock).
            let floor = tier.lowest_waiting().unwrap_or(tier.clock);
            let tenant = tier.tenants.entry(caller.id.clone()).or_default();
            tenant.weight = weight.0.max(1.0);
            tenant.share = share.clone();
            if tenant.queue.is_empty() {
                tenant.counter = tenant.counter.max(floor);
            }
            if s.busy < s.gradient.slots()
                && !ahead
                && s.share_has_room(share.as_ref(), self.surplus_percent())
            {
                s.hold(share.as_ref(), prompt);
                s.charge(caller.tier, &caller.id, prompt as f64);
                self.publish(&mut s);
                return Ok(slot(s.busy == 1));
            }
            s.seq += 1;
            let seq = s.seq;
            let (tx, rx) = oneshot::channel();
            if let Some(tier) = s.tiers.get_mut(&caller.tier) {
                tier.enqueue(
                    &caller.id,
                    Waiter {
                        seq,
                        cost: prompt,
                        grant: tx,
                    },
                );
                s.demand.queued_requests += 1;
                s.demand.queued_tokens += prompt;
                self.publish(&mut s);
            }
            (seq, rx)
        };
        let wait = wait.unwrap_or(if customer {
            self.customer_wait
        } else {
            self.member_wait
        });
        let mut rx = rx;
        match tokio::time::timeout(wait, &mut rx).await {
            Ok(Ok(alone)) => Ok(slot(alone)),
            _ => {
                let still_queued = self
                    .state
                    .lock()
                    .map(|mut s| {
                        s.tiers
                            .get_mut(&caller.tier)
                            .is_some_and(|t| t.withdraw(&caller.id, seq))
                            .then(|| {
                                s.demand.queued_requests = s.demand.queued_requests.saturating_sub(1);
                                s.demand.queued_tokens = s.demand.queued_tokens.saturating_sub(prompt);
                                self.publish(&mut s);
                            })
                            .is_some()
                    })
                    .unwrap_or(true);
                if !still_queued && let Ok(alone) = rx.try_recv() {
                    // Granted just as the wait ran out: take it.
                    return Ok(slot(alone));
                }
                Err(if customer {
                    refusal()
                } else {
                    ApiError::RateLimited {
                        message: "The model is saturated; retry shortly.".to_owned(),
                        code: SATURATED.to_owned(),
                        retry_after: Some(1),
                        headers: Vec::new(),
                    }
                })
            }
        }
    }

    fn release(&self, share: Option<&Share>, cost: u64) {
        let Ok(mut s) = self.state.lock() else { return };
        s.busy = s.busy.saturating_sub(1);
        s.demand.running_requests = s.demand.running_requests.saturating_sub(1);
        s.demand.running_tokens = s.demand.running_tokens.saturating_sub(cost);
        if let Some(share) = share
            && let Some(held) = s.held.get_mut(share.key())
        {
            *held = held.saturating_sub(1);
        }
        let surplus = self.surplus_percent();
        // Hand the slot on: the lowest tier with an eligible waiter (one whose capped
        // share has room), and in it the waiting caller with the lowest counter.
        while s.busy < s.gradient.slots() {
            let state = &*s;
            let next = state.tiers.iter().find_map(|(number, tier)| {
                tier.tenants
                    .iter()
                    .filter(|(_, t)| !t.queue.is_empty() && state.share_has_room(t.share.as_ref(), surplus))
                    .min_by(|a, b| a.1.counter.total_cmp(&b.1.counter))
                    .map(|(name, t)| (*number, name.clone(), t.share.clone()))
            });
            let Some((number, name, share)) = next else {
                break;
            };
            let alone = s.busy == 0;
            let Some(tier) = s.tiers.get_mut(&number) else {
                break;
            };
            let Some(waiter) = tier.pop(&name) else {
                break;
            };
            let counter = tier.tenants.get(&name).map_or(tier.clock, |t| t.counter);
            let granted = waiter.grant.send(alone).is_ok();
            if granted {
                tier.clock = counter;
            }
            s.demand.queued_requests = s.demand.queued_requests.saturating_sub(1);
            s.demand.queued_tokens = s.demand.queued_tokens.saturating_sub(waiter.cost);
            if granted {
                s.hold(share.as_ref(), waiter.cost);
                s.charge(number, &name, waiter.cost as f64);
            }
        }
        self.publish(&mut s);
    }

    /// The model's demand now.
    pub fn demand(&self) -> Demand {
        self.state.lock().map(|s| s.demand).unwrap_or_default()
    }

    /// Publishes the demand in `/metrics`, for whatever scales the model: at most every
    /// [`DEMAND_EVERY`] (the gauges are off the per-request path), and whenever it
    /// falls to nothing, so that an idle model reads zero.
    fn publish(&self, s: &mut State) {
        let due = s.published.is_none_or(|at| at.elapsed() >= DEMAND_EVERY);
        if !due && s.demand != Demand::default() {
            return;
        }
        s.published = Some(Instant::now());
        let (d, model) = (&s.demand, &self.model);
        metrics::gauge!("synco_gateway_demand_queued_requests", "model" => model.clone())
            .set(d.queued_requests as f64);
        metrics::gauge!("synco_gateway_demand_queued_tokens", "model" => model.clone())
            .set(d.queued_tokens as f64);
        metrics::gauge!("synco_gateway_demand_running_requests", "model" => model.clone())
            .set(d.running_requests as f64);
        metrics::gauge!("synco_gateway_demand_running_tokens", "model" => model.clone())
            .set(d.running_tokens as f64);
    }
}

impl Slot {
    /// Corrects the caller's counter to what the request really used: its prompt and
    /// output tokens (the output weighted by [`OUTPUT_WEIGHT`]) in place of the prompt
    /// estimate charged at dispatch. Also counts the caller's service in `/metrics`, and
    /// gives the engine's concurrency limit the request's time per token.
    pub fn settle(&mut self, prompt_tokens: u64, completion_tokens: u64) {
        let used = prompt_tokens.saturating_add(completion_tokens.saturating_mul(OUTPUT_WEIGHT));
        metrics::counter!(
            "synco_gateway_fair_service_tokens_total",
            "model" => self.scheduler.model.clone(),
            "tier" => band_label(self.tier),
            "caller" => self.caller.clone()
        )
        .increment(used);
        let Ok(mut s) = self.scheduler.state.lock() else {
            return;
        };
        s.charge(self.tier, &self.caller, used as f64 - self.charged as f64);
        self.charged = used;
        let tokens = prompt_tokens.saturating_add(completion_tokens);
        let pressed = s.busy as f64 >= s.gradient.limit / 2.0 || s.tiers.values().any(Tier::waiting);
        s.gradient.observe(
            self.dispatched.elapsed(),
            tokens,
            Instant::now(),
            self.alone,
            pressed,
        );
        metrics::gauge!(
            "synco_gateway_engine_concurrency_limit",
            "model" => self.scheduler.model.clone()
        )
        .set(s.gradient.limit);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.scheduler.release(self.share.as_ref(), self.demand);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str) -> Caller {
        Caller {
            id: id.to_owned(),
            kind: CallerKind::Member,
            class: Some("community".to_owned()),
            tier: 0,
            weight: 1,
            local_only: false,
        }
    }

    /// Work over a member's floor queues in its tier's overflow band: a freed slot goes
    /// to every reserved request first, then to borrowers by tier, then customers. The
    /// reverse, who loses the slot first, is the solver's reclaim order.
    #[tokio::test]
    async fn borrowed_work_is_served_last_in_the_solvers_reclaim_order() {
        use crate::quota::limiter::Lane;
        use synco_policies::solver::{Caller as Holder, ClassPolicy, ModelCapacity, SolverInput};
        use synco_policies::{Share, solve};

        // The solver's worked example, with a customer that gets some surplus.
        let quotas = solve(&SolverInput {
            models: vec![ModelCapacity {
                model: "m".to_owned(),
                tokens_per_second: 1000,
            }],
            classes: vec![
                ClassPolicy {
                    name: "workers".to_owned(),
                    tier: 0,
                    floor: Share::percent(40),
                },
                ClassPolicy {
                    name: "schools".to_owned(),
                    tier: 1,
                    floor: Share::percent(20),
                },
            ],
            callers: vec![
                Holder::member("w1", "workers").wants("m", 100),
                Holder::member("w2", "workers").wants("m", 500),
                Holder::member("s1", "schools").wants("m", 300),
                Holder::customer("acme").wants("m", 1000),
            ],
            surplus_cap: Share::percent(30),
            period_seconds: 1,
        })
        .unwrap();
        assert_eq!(quotas.reclaim_order("m"), ["acme", "s1", "w2"]);

        let s = Scheduler::new("m", 1, 100, Duration::from_secs(30), Duration::from_secs(30));
        let in_tier = |id: &str, tier: u32| Caller { tier, ..member(id) };
        let acme = Caller {
            id: "acme".to_owned(),
            kind: CallerKind::Customer,
            class: None,
            tier: crate::coop::CUSTOMER_TIER,
            weight: 1,
            local_only: false,
        };
        let running = s.acquire(&in_tier("w1", 0), CallerWeight(1.0), 1).await.unwrap();
        let mut waiting = Vec::new();
        for (caller, label) in [
            (acme, "acme"),
            (in_tier("s1", band(1, Lane::Overflow)), "s1"),
            (in_tier("w2", band(0, Lane::Overflow)), "w2"),
            (in_tier("s1", band(1, Lane::Reserved)), "s1 reserved"),
        ] {
            let s = s.clone();
            waiting.push(tokio::spawn(async move {
                let slot = s.acquire(&caller, CallerWeight(1.0), 1).await.unwrap();
                (label, slot)
            }));
            tokio::task::yield_now().await;
        }
        drop(running);
        let mut order = Vec::new();
        while !waiting.is_empty() {
            tokio::task::yield_now().await;
            if let Some(at) = waiting.iter().position(tokio::task::JoinHandle::is_finished) {
                let (label, slot) = waiting.swap_remove(at).await.unwrap();
                order.push(label);
                drop(slot);
            }
        }
        assert_eq!(order, ["s1 reserved", "w2", "s1", "acme"]);
        let reclaimed: Vec<&str> = order[1..].iter().rev().copied().collect();
        assert_eq!(reclaimed, quotas.reclaim_order("m"));
        assert_eq!(band_label(band(1, Lane::Overflow)), "1/overflow");
        assert_eq!(band_label(band(1, Lane::Reserved)), "1");
    }

    #[test]
    fn jain_is_one_when_equal_and_one_over_n_when_one_has_all() {
        assert_eq!(jain(&[3.0, 3.0, 3.0]), Some(1.0));
        assert_eq!(jain(&[5.0, 0.0]), Some(0.5));
        // Ten times the service of the other.
        let ten = jain(&[10.0, 1.0]).unwrap();
        assert!((ten - 121.0 / 202.0).abs() < 1e-12);
        assert_eq!(jain(&[1.0]), None);
    }

    /// Two backlogged members on one slot, one sending prompts ten times longer: the
    /// slot goes by counters, so both are served the same tokens (within a request),
    /// where a per-request turn would give the long prompts ten times the tokens.
    #[tokio::test]
    async fn a_caller_with_ten_times_longer_prompts_gets_ten_times_fewer_turns() {
        let s = Scheduler::new("m", 1, 0, Duration::from_secs(1), Duration::from_secs(30));
        let (short, long) = (member("short"), member("long"));
        let weight = CallerWeight(100.0);
        let running = s.acquire(&short, weight, 10).await.unwrap();
        let mut waiting = Vec::new();
        for _ in 0..40 {
            for (caller, cost) in [(&short, 10), (&long, 100)] {
                let (s, caller) = (s.clone(), caller.clone());
                waiting.push(tokio::spawn(async move {
                    let slot = s.acquire(&caller, weight, cost).await.unwrap();
                    (caller.id, cost, slot)
                }));
                tokio::task::yield_now().await;
            }
        }
        drop(running);
        let mut served: HashMap<String, u64> = HashMap::new();
        let mut turns: HashMap<String, u64> = HashMap::new();
        let mut order = Vec::new();
        // Serve 44 requests one at a time (each uses exactly its prompt).
        for _ in 0..44 {
            let mut done = None;
            while done.is_none() {
                tokio::task::yield_now().await;
                if let Some(at) = waiting.iter().position(tokio::task::JoinHandle::is_finished) {
                    done = Some(waiting.swap_remove(at).await.unwrap());
                }
            }
            let (id, cost, mut slot) = done.unwrap();
            slot.settle(cost, 0);
            *served.entry(id.clone()).or_default() += cost;
            *turns.entry(id.clone()).or_default() += 1;
            order.push(id);
            drop(slot);
        }
        let (a, b) = (served["short"] as f64, served["long"] as f64);
        assert!((a - b).abs() <= 100.0, "short {a}, long {b}: {order:?}");
        assert!(turns["short"] >= 8 * turns["long"], "{turns:?}");
        assert!(jain(&[a, b]).unwrap() > 0.99);
        for w in waiting {
            w.abort();
        }
    }

    /// A caller that was idle while another was served comes back at the lowest
    /// waiting counter: its idleness is not banked as credit.
    #[tokio::test]
    async fn idleness_banks_no_credit() {
        let s = Scheduler::new("m", 1, 0, Duration::from_secs(1), Duration::from_secs(30));
        let (busy, quiet) = (member("busy"), member("quiet"));
        let w = CallerWeight(1.0);
        for _ in 0..50 {
            let mut slot = s.acquire(&busy, w, 10).await.unwrap();
            slot.settle(10, 0);
        }
        let running = s.acquire(&busy, w, 10).await.unwrap();
        let next_busy = {
            let s = s.clone();
            tokio::spawn(async move { s.acquire(&busy, w, 10).await.map(|_| ()) })
        };
        tokio::task::yield_now().await;
        let counters = |s: &Arc<Scheduler>| {
            let state = s.state.lock().unwrap();
            let tier = &state.tiers[&0];
            (
                tier.tenants["busy"].counter,
                tier.tenants.get("quiet").map(|t| t.counter),
            )
        };
        let quiet_turn = {
            let s = s.clone();
            tokio::spawn(async move { s.acquire(&quiet, w, 10).await.map(|_| ()) })
        };
        tokio::task::yield_now().await;
        let (busy_counter, quiet_counter) = counters(&s);
        // quiet starts at busy's waiting counter, not at zero.
        assert!(
            quiet_counter.unwrap() >= busy_counter - 1e-9,
            "{busy_counter} {quiet_counter:?}"
        );
        drop(running);
        next_busy.await.unwrap().unwrap();
        quiet_turn.await.unwrap().unwrap();
    }

    /// An engine that serves 4 at full speed and queues the rest inside itself: the
    /// limit settles near what it serves at its best (within the tolerance), far under
    /// the ceiling; an engine whose speed does not depend on the load keeps the ceiling.
    #[test]
    fn the_limit_follows_the_engines_latency() {
        // Requests of 10 tokens; 10 ms per token when the engine has at most 4.
        let engine = |given: usize, unit: u64| Duration::from_millis(given.div_ceil(4) as u64 * unit * 10);
        let mut g = Gradient::new(64);
        let mut now = Instant::now();
        let mut run = |g: &mut Gradient, unit: u64| {
            for _ in 0..2000 {
                let given = g.slots();
                let took = engine(given, unit);
                // A request ends every took / given.
                now += took / given as u32;
                g.observe(took, 10, now, given == 1, true);
            }
        };
        run(&mut g, 1);
        assert!((4..=12).contains(&g.slots()), "{g:?}");
        // The engine becomes five times slower for good: the limit comes down to one,
        // a request alone shows the new speed, and the limit settles as before.
        run(&mut g, 5);
        assert!((4..=12).contains(&g.slots()), "{g:?}");
        let mut flat = Gradient::new(64);
        let ms = Duration::from_millis(1);
        for i in 0..2000 {
            flat.observe(ms * 10, 10, Instant::now() + ms * 20 * i, false, true);
        }
        assert_eq!(flat.slots(), 64);
        // A request that took no time changes nothing.
        flat.observe(Duration::ZERO, 10, Instant::now() + ms * 50_000, true, true);
        assert_eq!(flat.slots(), 64);
        // A limit nobody uses does not grow.
        let mut idle = Gradient::new(64);
        for i in 0..2000 {
            idle.observe(ms * 10, 10, Instant::now() + ms * 20 * i, true, false);
        }
        assert_eq!(idle.slots(), 1);
    }

    /// A new surplus share changes the scheduler in place: the counters stay.
    #[tokio::test]
    async fn a_new_surplus_share_keeps_the_counters() {
        let s = Scheduler::new("m", 4, 50, Duration::from_secs(1), Duration::from_secs(30));
        let buyer = Caller {
            id: "buyer".to_owned(),
            kind: CallerKind::Customer,
            class: None,
            tier: u32::MAX,
            weight: 1,
            local_only: true,
        };
        let mut slot = s.acquire(&member("ana"), CallerWeight(1.0), 10).await.unwrap();
        slot.settle(10, 0);
        drop(slot);
        assert!(s.acquire(&buyer, CallerWeight(1.0), 1).await.is_ok());
        s.set_surplus_percent(0);
        assert_eq!(s.surplus_percent(), 0);
        assert!(s.acquire(&buyer, CallerWeight(1.0), 1).await.is_err());
        let counter = s.state.lock().unwrap().tiers[&0].tenants["ana"].counter;
        assert!((counter - 10.0).abs() < 1e-9, "{counter}");
    }

    /// A peer holds at most the share lent to it; members behind it are served first,
    /// and a slot the peer frees goes to a member before the peer's next request.
    #[tokio::test]
    async fn a_peer_holds_at_most_its_lent_share() {
        let s = Scheduler::new("m", 4, 0, Duration::from_millis(200), Duration::from_secs(30));
        // The measured limit starts at one; let it be four for the test.
        s.state.lock().unwrap().gradient.limit = 4.0;
        let peer = Caller {
            id: "hillside".to_owned(),
            kind: CallerKind::Peer,
            class: None,
            tier: 5,
            weight: 1,
            local_only: true,
        };
        let first = s.acquire_lent(&peer, 50, 1).await.unwrap();
        let _second = s.acquire_lent(&peer, 50, 1).await.unwrap();
        let refused = s.acquire_lent(&peer, 50, 1).await.unwrap_err();
        assert!(refused.to_string().contains("lent to hillside"), "{refused}");
        assert!(s.acquire_lent(&peer, 0, 1).await.is_err(), "nothing lent");
        // Members still have the other half.
        let _a = s.acquire(&member("ana"), CallerWeight(1.0), 1).await.unwrap();
        let _b = s.acquire(&member("ben"), CallerWeight(1.0), 1).await.unwrap();
        // Full: a member and the peer wait; the freed slot goes to the member.
        let waiting_member = {
            let s = s.clone();
            tokio::spawn(async move { s.acquire(&member("cy"), CallerWeight(1.0), 1).await })
        };
        let waiting_peer = {
            let (s, peer) = (s.clone(), peer.clone());
            tokio::spawn(async move { s.acquire_lent(&peer, 50, 1).await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        // The member keeps the slot it was given.
        let _kept = waiting_member.await.unwrap().unwrap();
        assert!(
            waiting_peer.await.unwrap().is_err(),
            "the peer timed out behind the member"
        );
    }

    /// The demand the gateway publishes follows requests as they queue, run, time out
    /// and finish, in requests and prompt tokens.
    #[tokio::test]
    async fn the_demand_counts_queued_and_running_requests_and_tokens() {
        let s = Scheduler::new("m", 1, 0, Duration::from_secs(1), Duration::from_secs(5));
        let a = s.acquire(&member("ana"), CallerWeight(1.0), 10).await.unwrap();
        assert_eq!(
            s.demand(),
            Demand {
                running_requests: 1,
                running_tokens: 10,
                ..Demand::default()
            }
        );
        let waiting = {
            let s = s.clone();
            tokio::spawn(async move { s.acquire(&member("ben"), CallerWeight(1.0), 20).await })
        };
        let gives_up = {
            let s = s.clone();
            tokio::spawn(async move {
                s.acquire_within(&member("cy"), CallerWeight(1.0), 5, Duration::from_millis(150))
                    .await
                    .map(|slot| slot.is_none())
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!((s.demand().queued_requests, s.demand().queued_tokens), (2, 25));
        assert!(gives_up.await.unwrap().unwrap(), "cy's wait ran out");
        assert_eq!((s.demand().queued_requests, s.demand().queued_tokens), (1, 20));
        drop(a);
        let b = waiting.await.unwrap().unwrap();
        assert_eq!(
            s.demand(),
            Demand {
                running_requests: 1,
                running_tokens: 20,
                ..Demand::default()
            }
        );
        drop(b);
        assert_eq!(s.demand(), Demand::default());
    }

    /// The assistant, in the members' tier, holds at most a quarter of the slots (one
    /// of four): its second request waits while members take the other three.
    #[tokio::test]
    async fn the_assistant_holds_at_most_its_share_of_the_slots() {
        let s = Scheduler::new("m", 4, 0, Duration::from_secs(1), Duration::from_millis(200));
        s.state.lock().unwrap().gradient.limit = 4.0;
        let assistant = Caller {
            id: "coop:assistant".to_owned(),
            kind: CallerKind::Coop,
            class: None,
            tier: 0,
            weight: 1,
            local_only: true,
        };
        let first = s.acquire(&assistant, CallerWeight(1.0), 1).await.unwrap();
        let second = {
            let (s, assistant) = (s.clone(), assistant.clone());
            tokio::spawn(async move { s.acquire(&assistant, CallerWeight(1.0), 1).await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _members: Vec<Slot> = futures::future::try_join_all(["ana", "ben", "cy"].map(|m| {
            let s = s.clone();
            async move { s.acquire(&member(m), CallerWeight(1.0), 1).await }
        }))
        .await
        .unwrap();
        let refused = second.await.unwrap().unwrap_err();
        assert!(refused.to_string().contains("saturated"), "{refused}");
        drop(first);
    }

    /// A request that may go to a peer waits only its overflow time, and leaves the
    /// queue when it gives up.
    #[tokio::test]
    async fn a_request_that_may_overflow_leaves_the_queue_in_time() {
        let s = Scheduler::new("m", 1, 0, Duration::from_secs(1), Duration::from_secs(30));
        let running = s.acquire(&member("ana"), CallerWeight(1.0), 1).await.unwrap();
        let started = Instant::now();
        let none = s
            .acquire_within(&member("ben"), CallerWeight(1.0), 1, Duration::from_millis(50))
            .await
            .unwrap();
        assert!(none.is_none() && started.elapsed() < Duration::from_secs(1));
        assert_eq!(s.state.lock().unwrap().tiers[&0].queued, 0);
        drop(running);
        let some = s
            .acquire_within(&member("ben"), CallerWeight(1.0), 1, Duration::from_millis(50))
            .await
            .unwrap();
        assert!(some.is_some(), "a free slot is taken at once");
    }

    #[test]
    fn the_weight_is_the_floor_else_the_rate() {
        let limits = crate::coop::CallerLimits {
            tokens_per_second: 90,
            floor_tokens_per_second: 30,
            monthly_budget: 1,
            concurrency: 1,
        };
        assert_eq!(CallerWeight::of(&limits), CallerWeight(30.0));
        let customer = crate::coop::CallerLimits {
            floor_tokens_per_second: 0,
            ..limits.clone()
        };
        assert_eq!(CallerWeight::of(&customer), CallerWeight(90.0));
        assert_eq!(CallerWeight::of(&Default::default()), CallerWeight(1.0));
    }
}
