//! Quotas and priority: the co-op's [`Admission`] policy.
//!
//! For each request, in order (cheap refusals first):
//! 1. the caller may use the model (403 otherwise, from the InferenceModel's access);
//! 2. its rate and concurrency limits ([`limiter`]; 429 `rate_limit_exceeded`);
//! 3. its monthly token budget: the request's worst case (prompt estimate plus
//!    `max_tokens` × `n`) is reserved from the budget shared through the database
//!    ([`ledger`]; 429 `insufficient_quota`);
//! 4. a prepaid customer's credit: the worst-case price is reserved the same way
//!    (429 `insufficient_quota` when the credit is spent);
//! 5. a slot on the engine: by band, and within a band to the caller served the fewest
//!    tokens for its floor ([`priority`]: a virtual token counter). A member's request
//!    within its floor (the reserved part of its rate, [`limiter::Lane`]) queues in its
//!    tier; one on borrowed capacity in its tier's overflow band, behind every member's
//!    reserved work and ahead of customers, so borrowed work is the first taken back,
//!    in the solver's reclaim order. Responses say which (`x-synco-lane`).
//!
//! When the request ends, however it ends, the reservation is settled with the tokens
//! actually used (a cancelled stream pays for what it produced) and the rest given back.
//!
//! The prompt is counted before admission with the model's tokenizer and chat
//! template when the engine can (the embedded engine). An external engine's tokenizer
//! is not at hand, so its prompt is bounded by the request body's size in bytes: a
//! conservative bound, since every token of a byte-level BPE tokenizer covers at least
//! one byte of text and the JSON around each message is longer than the chat
//! template's tokens. The engine's own count is what is charged.

pub mod ledger;
pub mod limiter;
pub mod priority;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::admission::{Admission, AdmissionRequest, Caller, CallerKind, Charge, Overflow, Reservation};
use crate::coop::{CoopHandle, Price};
use crate::error::ApiError;
use crate::openai::Usage;
use ledger::{Hold, Ledger, LedgerError};
use limiter::{Lane, Limiter, Ticket};
use priority::{CallerWeight, Scheduler, Slot};

/// Tunables of admission.
#[derive(Debug, Clone)]
pub struct QuotaOptions {
    /// Requests an engine serves at once (per model).
    pub engine_slots: usize,
    /// How long a customer waits for a surplus slot before a 429.
    pub customer_wait: Duration,
    /// How long a member waits for a slot before a 429.
    pub member_wait: Duration,
    /// Completion tokens reserved (and enforced as `max_tokens`) when a request sets none.
    pub default_max_tokens: u64,
    /// Seconds of a caller's rate its bucket holds.
    pub rate_window: Duration,
}

impl Default for QuotaOptions {
    fn default() -> Self {
        Self {
            engine_slots: 32,
            customer_wait: Duration::from_secs(5),
            member_wait: Duration::from_secs(120),
            default_max_tokens: 1024,
            rate_window: Duration::from_secs(60),
        }
    }
}

/// The budget period of `now`: its UTC month, `YYYY-MM`.
pub fn month_of(now: jiff::Timestamp) -> String {
    now.strftime("%Y-%m").to_string()
}

/// The account of a caller's monthly tokens.
pub fn token_account(caller: &str) -> String {
    format!("tokens:{caller}")
}

/// The account of a prepaid customer's credit (millionths of a minor unit).
pub fn credit_account(customer: &str) -> String {
    format!("credit:{customer}")
}

/// Millionths of a minor unit per minor unit.
pub const MICRO: u64 = 1_000_000;

/// Tokens (lent to, borrowed from) a peer co-op in a month.
type Balance = (u64, u64);

/// The co-op's admission policy.
#[derive(Debug)]
pub struct CoopAdmission {
    coop: CoopHandle,
    pub ledger: Ledger,
    limiter: Arc<Limiter>,
    schedulers: Mutex<HashMap<String, Arc<Scheduler>>>,
    options: QuotaOptions,
    /// Customers' top-ups from the books, read again after [`TOPUPS_FRESH_FOR`].
    topups: Mutex<HashMap<String, (std::time::Instant, u64)>>,
    /// Peers' tokens (lent, borrowed) this month, read again after [`TOPUPS_FRESH_FOR`].
    balances: Mutex<HashMap<String, (std::time::Instant, Balance)>>,
}

/// How long a customer's total of top-ups is used before the books are read again (a
/// top-up posted with `books topup` counts within this time, on every replica).
pub const TOPUPS_FRESH_FOR: std::time::Duration = std::time::Duration::from_secs(2);

impl CoopAdmission {
    pub fn new(coop: CoopHandle, ledger: Ledger, options: QuotaOptions) -> Self {
        Self {
            coop,
            ledger,
            limiter: Limiter::new(options.rate_window),
            schedulers: Mutex::default(),
            options,
            topups: Mutex::default(),
            balances: Mutex::default(),
        }
    }

    /// Each model's demand now (queued and running, in requests and prompt tokens),
    /// for the models requests have been admitted to.
    #[must_use]
    pub fn demand(&self) -> std::collections::BTreeMap<String, priority::Demand> {
        self.schedulers
            .lock()
            .map(|s| s.iter().map(|(m, s)| (m.clone(), s.demand())).collect())
            .unwrap_or_default()
    }

    /// The model's scheduler, with the surplus share in force (changed in place, so that
    /// its fairness counters and measured limit carry over a new Allocation).
    /// `engine_max_running`, when the engine says, lowers the `--engine-slots` ceiling
    /// to what it runs at once, so that nothing waits in its own queue.
    fn scheduler(
        &self,
        model: &str,
        surplus_percent: u32,
        engine_max_running: Option<usize>,
    ) -> Result<Arc<Scheduler>, ApiError> {
        let ceiling = engine_max_running.map_or(self.options.engine_slots, |n| {
            n.clamp(1, self.options.engine_slots.max(1))
        });
        let mut schedulers = self
            .schedulers
            .lock()
            .map_err(|_| ApiError::Unavailable("scheduler unavailable".to_owned()))?;
        if let Some(current) = schedulers.get(model) {
            current.set_surplus_percent(surplus_percent);
            if engine_max_running.is_some() {
                current.set_ceiling(ceiling);
            }
            return Ok(current.clone());
        }
        let scheduler = Scheduler::new(
            model,
            ceiling,
            surplus_percent,
            self.options.customer_wait,
            self.options.member_wait,
        );
        schedulers.insert(model.to_owned(), scheduler.clone());
        Ok(scheduler)
    }
}

fn insufficient(message: String) -> ApiError {
    ApiError::RateLimited {
        message,
        code: "insufficient_quota".to_owned(),
        retry_after: None,
        headers: Vec::new(),
    }
}

fn ledger_error(e: LedgerError, exhausted: String) -> ApiError {
    match e {
        LedgerError::Exhausted => insufficient(exhausted),
        LedgerError::Db(e) => {
            tracing::warn!(error = %e, "cannot lease budget");
            ApiError::Unavailable("The budget database cannot be reached; try again shortly.".to_owned())
        }
    }
}

impl CoopAdmission {
    /// A customer's top-ups in the books, in minor units (the last figure read if the
    /// books cannot be read now).
    async fn topups(&self, customer: &str) -> u64 {
        let known = self.topups.lock().ok().and_then(|t| t.get(customer).copied());
        if let Some((at, minor)) = known
            && at.elapsed() < TOPUPS_FRESH_FOR
        {
            return minor;
        }
        match crate::books::topups(self.ledger.db(), customer).await {
            Ok(minor) => {
                let minor = u64::try_from(minor).unwrap_or(0);
                if let Ok(mut t) = self.topups.lock() {
                    t.insert(customer.to_owned(), (std::time::Instant::now(), minor));
                }
                minor
            }
            Err(e) => {
                tracing::warn!(error = %e, customer, "the books cannot be read: top-ups as last known");
                known.map_or(0, |(_, minor)| minor)
            }
        }
    }
}

impl CoopAdmission {
    /// A peer co-op's request: the model must be lent to it, the reciprocity rule must
    /// allow it, and it runs at the peer's tier within the share lent to it. The peer's
    /// own quotas are its own co-op's business; no budget is kept for it here.
    async fn admit_peer(
        &self,
        coop: &crate::coop::Coop,
        req: &AdmissionRequest<'_>,
    ) -> Result<Box<dyn Reservation>, ApiError> {
        let caller = req.caller;
        let Some(peer) = coop.peers.get(&caller.id) else {
            return Err(ApiError::PermissionDenied(format!(
                "{} is not a peer of {}.",
                caller.id, coop.name
            )));
        };
        if !coop.may_use(caller, req.model) {
            return Err(ApiError::PermissionDenied(format!(
                "{} does not lend the model `{}` to {} (its bylaws lend: {}).",
                coop.name,
                req.model,
                caller.id,
                if peer.lend.is_empty() {
                    "nothing".to_owned()
                } else {
                    peer.lend.join(", ")
                }
            )));
        }
        if let Some(rule) = &peer.terms.reciprocal {
            let month = month_of(jiff::Timestamp::now());
            let (lent, borrowed) = self.peer_balance(&caller.id, &month).await?;
            let allowance = u64::try_from(rule.allowance_tokens).unwrap_or(0);
            if lent > borrowed.saturating_add(allowance) {
                return Err(insufficient(format!(
                    "{} has borrowed {lent} tokens from {} in {month} and lent {borrowed}; \
                     the bylaws allow {allowance} more than it lent.",
                    caller.id, coop.name
                )));
            }
        }
        let surplus = coop.surplus_percent;
        let slot = self
            .scheduler(req.model, surplus, req.engine_max_running)?
            .acquire_lent(caller, peer.max_lend_percent, typical_prompt(req))
            .await?;
        Ok(Box::new(LentReservation { slot }))
    }

    /// Tokens lent to and borrowed from `peer` this month, read again after
    /// [`TOPUPS_FRESH_FOR`].
    async fn peer_balance(&self, peer: &str, month: &str) -> Result<(u64, u64), ApiError> {
        let key = format!("{peer}:{month}");
        let known = self.balances.lock().ok().and_then(|t| t.get(&key).copied());
        if let Some((at, balance)) = known
            && at.elapsed() < TOPUPS_FRESH_FOR
        {
            return Ok(balance);
        }
        let (lent, borrowed) = crate::federation::settlement::balance(self.ledger.db(), peer, month)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, peer, "the settlement ledger cannot be read");
                ApiError::Unavailable("The settlement ledger cannot be read; try again shortly.".to_owned())
            })?;
        if let Ok(mut t) = self.balances.lock() {
            t.insert(key, (std::time::Instant::now(), (lent, borrowed)));
        }
        Ok((lent, borrowed))
    }
}

/// What a peer co-op's request holds: a slot within the share lent to it.
#[derive(Debug)]
struct LentReservation {
    slot: Slot,
}

impl Reservation for LentReservation {
    fn settle(mut self: Box<Self>, usage: &Usage) -> Charge {
        self.slot.settle(usage.prompt_tokens, usage.completion_tokens);
        Charge::default()
    }
}

#[async_trait]
impl Admission for CoopAdmission {
    fn room_for_peer(&self, model: &str, peer: &Caller) -> Option<u32> {
        let coop = self.coop.current();
        let lent = coop.peers.get(&peer.id)?;
        let scheduler = self.scheduler(model, coop.surplus_percent, None).ok()?;
        Some(scheduler.room_for(&peer.id, lent.max_lend_percent))
    }

    async fn admit(&self, req: &AdmissionRequest<'_>) -> Result<Box<dyn Reservation>, ApiError> {
        let caller = req.caller;
        if caller.kind == CallerKind::Anonymous {
            return Err(ApiError::Unauthenticated(
                "An API key or token is required.".to_owned(),
            ));
        }
        let coop = self.coop.current();
        if caller.kind == CallerKind::Peer {
            return self.admit_peer(&coop, req).await;
        }
        if !coop.may_use(caller, req.model) {
            return Err(ApiError::PermissionDenied(format!(
                "{} may not use the model `{}`: the co-op has not opened it to {}.",
                caller.id,
                req.model,
                match caller.kind {
                    CallerKind::Customer => "customers".to_owned(),
                    _ => format!("the {} class", caller.class.as_deref().unwrap_or("-")),
                }
            )));
        }
        let limits = if caller.kind == CallerKind::Coop {
            // The assistant: the co-op's governance budget, no rate of its own.
            crate::coop::CallerLimits {
                monthly_budget: coop.assistant.as_ref().map_or(0, |(_, tokens)| *tokens),
                ..crate::coop::CallerLimits::default()
            }
        } else {
            coop.limits(&caller.id)
        };
        let allowance = req
            .max_completion_tokens
            .is_none()
            .then_some(self.options.default_max_tokens);
        let completion = req
            .max_completion_tokens
            .unwrap_or(self.options.default_max_tokens);
        // The model's own count when the engine can give it, else the byte bound.
        let prompt = req.prompt_tokens.unwrap_or(req.body_bytes as u64);
        let need = prompt.saturating_add(completion);
        if limits.monthly_budget == 0 {
            return Err(insufficient(format!(
                "{} has no token budget in the allocation in force.",
                caller.id
            )));
        }
        let ticket = if caller.kind == CallerKind::Coop {
            None
        } else {
            Some(self.limiter.take(&caller.id, &limits, need)?)
        };
        let month = month_of(jiff::Timestamp::now());
        let budget = self
            .ledger
            .reserve(&token_account(&caller.id), &month, limits.monthly_budget, need)
            .await
            .map_err(|e| {
                ledger_error(
                    e,
                    format!(
                        "You exceeded your monthly token budget ({} tokens for {month}).",
                        limits.monthly_budget
                    ),
                )
            })?;
        let (price, currency) = if caller.kind == CallerKind::Customer {
            (coop.price(req.model), coop.currency.clone())
        } else {
            (Price::default(), String::new())
        };
        let credit = match coop.prepaid_credit_minor.get(&caller.id) {
            Some(credit_minor) if caller.kind == CallerKind::Customer => Some(
                self.ledger
                    .reserve(
                        &credit_account(&caller.id),
                        "prepaid",
                        credit_minor
                            .saturating_add(self.topups(&caller.id).await)
                            .saturating_mul(MICRO),
                        price.cost_micro(prompt, completion),
                    )
                    .await
                    .map_err(|e| {
                        ledger_error(
                            e,
                            "Your prepaid credit is used up; top it up to continue.".to_owned(),
                        )
                    })?,
            ),
            _ => None,
        };
        let weight = CallerWeight::of(&limits);
        // A member's work on borrowed capacity queues in its tier's overflow band, behind
        // every member's work within its floor (customers are in the lowest band anyway).
        let lane = ticket.as_ref().map_or(Lane::Reserved, Ticket::lane);
        let queued_as;
        let queued = if caller.kind == CallerKind::Member && lane == Lane::Overflow {
            queued_as = Caller {
                tier: priority::band(caller.tier, lane),
                ..caller.clone()
            };
            &queued_as
        } else {
            caller
        };
        let slot = match req.overflow {
            Overflow::Never => Some(
                self.scheduler(req.model, coop.surplus_percent, req.engine_max_running)?
                    .acquire(queued, weight, typical_prompt(req))
                    .await?,
            ),
            // Not served here: a peer serves it (budget and rate are still this
            // co-op's to keep).
            Overflow::Only => None,
            // No slot within the wait: a peer serves it.
            Overflow::After(wait) => {
                self.scheduler(req.model, coop.surplus_percent, req.engine_max_running)?
                    .acquire_within(queued, weight, typical_prompt(req), wait)
                    .await?
            }
        };
        Ok(Box::new(CoopReservation {
            caller: caller.clone(),
            ticket,
            budget: Some(budget),
            credit,
            price,
            currency,
            allowance,
            slot,
        }))
    }
}

/// The prompt's likely size in tokens, for the fair queue's charge at dispatch (it is
/// corrected to the engine's count when the request ends): the model's own count when
/// the engine gives it, else the body's bytes over four, the usual bytes per token of
/// English text. The byte bound the budget reserves overstates prompts several times,
/// and charging it would swing the turns while requests run.
fn typical_prompt(req: &AdmissionRequest<'_>) -> u64 {
    req.prompt_tokens
        .unwrap_or(req.body_bytes as u64 / BYTES_PER_TOKEN)
}

/// Bytes of text per token, typically (English, byte-level BPE tokenizers).
const BYTES_PER_TOKEN: u64 = 4;

/// What an admitted request holds until it ends.
#[derive(Debug)]
struct CoopReservation {
    caller: Caller,
    /// The caller's rate and concurrency (none for the co-op's assistant).
    ticket: Option<Ticket>,
    budget: Option<Hold>,
    credit: Option<Hold>,
    price: Price,
    currency: String,
    allowance: Option<u64>,
    /// The local engine's slot; `None` when the request runs at a peer co-op.
    slot: Option<Slot>,
}

impl Reservation for CoopReservation {
    fn settle(mut self: Box<Self>, usage: &Usage) -> Charge {
        let tokens = usage.prompt_tokens.saturating_add(usage.completion_tokens);
        if let Some(ticket) = &mut self.ticket {
            ticket.settle(tokens);
        }
        if let Some(slot) = &mut self.slot {
            slot.settle(usage.prompt_tokens, usage.completion_tokens);
        }
        if let Some(budget) = self.budget.take() {
            budget.settle(tokens);
        }
        let cost = self
            .price
            .cost_micro(usage.prompt_tokens, usage.completion_tokens);
        if let Some(credit) = self.credit.take() {
            credit.settle(cost);
        }
        tracing::debug!(caller = %self.caller.id, tokens, cost_micro = cost, "settled");
        Charge {
            cost_micro: cost,
            currency: std::mem::take(&mut self.currency),
        }
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        let Some(ticket) = &self.ticket else {
            return Vec::new();
        };
        let mut headers = ticket.headers();
        // Whether the request used the caller's floor or borrowed capacity (served
        // behind every caller's floor, and taken back first).
        headers.push(("x-synco-lane", ticket.lane().as_str().to_owned()));
        headers
    }

    fn completion_allowance(&self) -> Option<u64> {
        self.allowance
    }

    fn at_peer(&self) -> bool {
        self.slot.is_none()
    }
}
