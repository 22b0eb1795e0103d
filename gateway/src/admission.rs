//! Who is calling, and whether they may: the seams identity and quotas plug into.
//!
//! - An authentication middleware (issue 6) resolves the caller and puts a [`Caller`]
//!   in the request's extensions. Without one, every request is [`Caller::anonymous`].
//! - Before a request reaches an engine, the handler asks the [`Admission`] policy in
//!   the app state. It may refuse (`ApiError::RateLimited`, `PermissionDenied`), wait
//!   (priority queueing), or admit with a [`Reservation`] of tokens.
//! - When the request ends, however it ends (done, failed, or the caller went away
//!   mid-stream), the reservation is settled with the tokens actually used.

use std::fmt::Debug;

use async_trait::async_trait;

use crate::error::ApiError;
use crate::openai::Usage;

/// What kind of party a caller is, in the co-op's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CallerKind {
    /// A voting owner (or one of its users).
    Member,
    /// An outside buyer of surplus capacity.
    Customer,
    /// No identity (standalone mode without keys).
    Anonymous,
    /// A peer co-op borrowing capacity (federation).
    Peer,
    /// The co-op itself: its governance assistant, metered to the co-op.
    Coop,
}

impl CallerKind {
    /// As it is serialised (and stored in usage records).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Customer => "customer",
            Self::Anonymous => "anonymous",
            Self::Peer => "peer",
            Self::Coop => "coop",
        }
    }
}

/// The resolved identity of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The Member's or Customer's name.
    pub id: String,
    pub kind: CallerKind,
    /// The member class (for tiers and model access).
    pub class: Option<String>,
    /// Priority tier: 0 is served first; customers come after every member class.
    pub tier: u32,
    /// Weight for fair sharing within a tier.
    pub weight: u32,
    /// Residency: its prompts are never sent to a peer co-op.
    pub local_only: bool,
}

impl Caller {
    pub fn anonymous() -> Self {
        Self {
            id: "anonymous".to_owned(),
            kind: CallerKind::Anonymous,
            class: None,
            tier: u32::MAX,
            weight: 1,
            local_only: true,
        }
    }
}

/// What the admission policy knows of a request before it runs.
#[derive(Debug, Clone)]
pub struct AdmissionRequest<'a> {
    pub request_id: &'a str,
    pub caller: &'a Caller,
    pub model: &'a str,
    pub endpoint: Endpoint,
    /// The most completion tokens the request may produce (`max_tokens` × `n`), if bounded.
    pub max_completion_tokens: Option<u64>,
    /// Size of the request body in bytes: a cheap upper bound on prompt size.
    pub body_bytes: usize,
    /// The prompt's tokens as the model's tokenizer counts them, when the engine can
    /// count before running (the embedded engine can; an external one cannot).
    pub prompt_tokens: Option<u64>,
    /// Whether the request may be served by a peer co-op instead (federation).
    pub overflow: Overflow,
    /// The most requests the model's engine runs at once, when it says.
    pub engine_max_running: Option<usize>,
}

/// Whether, and when, a request may leave for a peer co-op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// It is served here.
    Never,
    /// The model is not served here: only a peer can serve it.
    Only,
    /// It goes to a peer if no local slot is free within this time.
    After(std::time::Duration),
}

/// The API endpoint a request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ChatCompletions => "chat_completions",
            Self::Completions => "completions",
            Self::Embeddings => "embeddings",
        }
    }
}

/// What a request cost its caller, in millionths of the currency's minor unit
/// (tokens × price per million tokens is exact in these units).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Charge {
    pub cost_micro: u64,
    pub currency: String,
}

/// Tokens held for an admitted request, settled once it ends.
pub trait Reservation: Send + Sync + Debug {
    /// Called exactly once, with the tokens actually used; returns what was charged.
    fn settle(self: Box<Self>, usage: &Usage) -> Charge;
    /// Rate-limit headers for the response (`x-ratelimit-*`).
    fn headers(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    /// The completion tokens the request may produce, when the caller set no limit.
    fn completion_allowance(&self) -> Option<u64> {
        None
    }
    /// Whether the request was admitted to run at a peer co-op (no local slot).
    fn at_peer(&self) -> bool {
        false
    }
}

/// Decides whether a request may run now.
#[async_trait]
pub trait Admission: Send + Sync + Debug {
    async fn admit(&self, request: &AdmissionRequest<'_>) -> Result<Box<dyn Reservation>, ApiError>;

    /// Requests for `model` this gateway would start now for the peer co-op `peer`
    /// (free slots within the share lent to it); `None` when it does not know.
    fn room_for_peer(&self, _model: &str, _peer: &Caller) -> Option<u32> {
        None
    }
}

/// Admits everything; the default until quotas exist (issue 6).
#[derive(Debug, Clone, Copy, Default)]
pub struct AdmitAll;

#[derive(Debug)]
struct NoReservation;

impl Reservation for NoReservation {
    fn settle(self: Box<Self>, _usage: &Usage) -> Charge {
        Charge::default()
    }
}

#[async_trait]
impl Admission for AdmitAll {
    async fn admit(&self, _request: &AdmissionRequest<'_>) -> Result<Box<dyn Reservation>, ApiError> {
        Ok(Box::new(NoReservation))
    }
}
