//! Usage records: one per request that reached an engine, however it ended.
//!
//! Handlers hold a [`UsageGuard`] while a request runs. It collects the usage
//! figures the engine reports and, when dropped (the answer was sent, the engine
//! failed, or the caller disconnected mid-stream), settles the admission
//! reservation and hands a [`UsageRecord`] to the [`UsageSink`]. Durable metering
//! (issue 6) is another `UsageSink`.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::admission::{Caller, Charge, Endpoint, Reservation};
use crate::openai::Usage;

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The whole answer was produced.
    Completed,
    /// The caller went away (or the server shut down) before the end.
    Cancelled,
    /// The engine failed; the label is [`crate::error::ApiError::metric_label`].
    Failed(&'static str),
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::Failed(label) => label,
        }
    }
}

/// One request's usage, for metering.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UsageRecord {
    /// Unique per record (the request id comes from the caller and may repeat).
    pub record_id: String,
    pub request_id: String,
    pub caller_id: String,
    pub caller_kind: crate::admission::CallerKind,
    pub model: String,
    pub engine: &'static str,
    pub endpoint: Endpoint,
    pub usage: Usage,
    pub latency: Duration,
    pub outcome: Outcome,
    pub finished_at: jiff::Timestamp,
    /// What the caller was charged (customers; zero for members).
    pub charge: Charge,
    /// Federation: the peer co-op on the other side, and the request's cost between
    /// the two co-ops.
    pub peer: Option<PeerUse>,
}

/// The peer co-op a request was served by or for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PeerUse {
    pub peer: String,
    /// Millionths of a minor unit, at the bylaws' price for the peer.
    pub cost_micro: u64,
}

/// A place in a bounded usage buffer, taken before a request runs and given back
/// once its record is durably written: a full buffer makes new requests wait
/// (backpressure) instead of dropping records.
#[derive(Debug, Default)]
pub struct MeterSlot(pub Option<tokio::sync::OwnedSemaphorePermit>);

/// Where usage records go. `record` must not block: sinks buffer and write in the
/// background, and `flush` is awaited on shutdown. A bounded sink hands out
/// [`MeterSlot`]s: `slot` waits for room before a request is admitted.
#[async_trait]
pub trait UsageSink: Send + Sync + Debug {
    async fn slot(&self) -> Result<MeterSlot, crate::error::ApiError> {
        Ok(MeterSlot::default())
    }
    fn record(&self, record: UsageRecord, slot: MeterSlot);
    async fn flush(&self) {}
    /// Records taken but not yet written.
    fn pending(&self) -> usize {
        0
    }
}

/// Logs each record and counts tokens in the Prometheus metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogSink;

#[async_trait]
impl UsageSink for LogSink {
    fn record(&self, r: UsageRecord, _slot: MeterSlot) {
        log_record(&r);
    }
}

/// Logs a record and counts its tokens.
pub fn log_record(r: &UsageRecord) {
    count_tokens(r);
    tracing::info!(
        request_id = %r.request_id,
        caller = %r.caller_id,
        model = %r.model,
        endpoint = r.endpoint.as_str(),
        prompt_tokens = r.usage.prompt_tokens,
        completion_tokens = r.usage.completion_tokens,
        latency_ms = u64::try_from(r.latency.as_millis()).unwrap_or(u64::MAX),
        outcome = r.outcome.as_str(),
        "usage"
    );
}

/// Token counters shared by every sink.
pub fn count_tokens(r: &UsageRecord) {
    let labels = [
        ("model", r.model.clone()),
        ("endpoint", r.endpoint.as_str().to_owned()),
    ];
    metrics::counter!("synco_gateway_prompt_tokens_total", &labels).increment(r.usage.prompt_tokens);
    metrics::counter!("synco_gateway_completion_tokens_total", &labels).increment(r.usage.completion_tokens);
}

/// Collects one request's usage while it runs and reports it exactly once.
#[derive(Debug)]
pub struct UsageGuard {
    request_id: String,
    caller: Caller,
    model: String,
    engine: &'static str,
    endpoint: Endpoint,
    started: Instant,
    usage: Usage,
    /// Usage figures came from the engine (rather than being counted here).
    reported: bool,
    outcome: Option<Outcome>,
    reservation: Option<Box<dyn Reservation>>,
    slot: MeterSlot,
    sink: Arc<dyn UsageSink>,
    /// Federation: the peer on the other side and its price.
    peer: Option<(String, crate::coop::Price)>,
}

impl UsageGuard {
    #[expect(
        clippy::too_many_arguments,
        reason = "one field per argument; built once per request"
    )]
    pub fn new(
        request_id: String,
        caller: Caller,
        model: String,
        engine: &'static str,
        endpoint: Endpoint,
        started: Instant,
        reservation: Box<dyn Reservation>,
        sink: Arc<dyn UsageSink>,
    ) -> Self {
        Self {
            request_id,
            caller,
            model,
            engine,
            endpoint,
            started,
            usage: Usage::default(),
            reported: false,
            outcome: None,
            reservation: Some(reservation),
            slot: MeterSlot::default(),
            sink,
            peer: None,
        }
    }

    /// The request was served by (or for) the peer co-op `peer`, at `price`.
    pub fn set_peer(&mut self, peer: String, price: crate::coop::Price) {
        self.peer = Some((peer, price));
    }

    /// Adds usage the engine reported. Several reports (one per choice) add their
    /// completion tokens; the prompt is counted once.
    pub fn add_reported(&mut self, usage: Usage) {
        if !self.reported {
            self.usage = Usage::default();
            self.reported = true;
        }
        self.usage.prompt_tokens = self.usage.prompt_tokens.max(usage.prompt_tokens);
        self.usage.completion_tokens += usage.completion_tokens;
        self.usage.total_tokens = self.usage.prompt_tokens + self.usage.completion_tokens;
    }

    /// Counts generated pieces when the engine has not (yet) reported usage, so a
    /// cancelled stream is still charged for what it produced.
    pub fn count_generated(&mut self, pieces: u64) {
        if !self.reported {
            self.usage.completion_tokens += pieces;
            self.usage.total_tokens = self.usage.prompt_tokens + self.usage.completion_tokens;
        }
    }

    /// The usage buffer slot this request's record will use.
    pub fn set_slot(&mut self, slot: MeterSlot) {
        self.slot = slot;
    }

    pub fn usage(&self) -> Usage {
        self.usage
    }

    pub fn finish(&mut self, outcome: Outcome) {
        self.outcome.get_or_insert(outcome);
    }
}

impl Drop for UsageGuard {
    fn drop(&mut self) {
        let outcome = self.outcome.take().unwrap_or(Outcome::Cancelled);
        let charge = self
            .reservation
            .take()
            .map(|reservation| reservation.settle(&self.usage))
            .unwrap_or_default();
        metrics::counter!(
            "synco_gateway_engine_requests_total",
            "model" => self.model.clone(),
            "engine" => self.engine,
            "outcome" => outcome.as_str()
        )
        .increment(1);
        self.sink.record(
            UsageRecord {
                record_id: uuid::Uuid::new_v4().simple().to_string(),
                request_id: std::mem::take(&mut self.request_id),
                caller_id: std::mem::take(&mut self.caller.id),
                caller_kind: self.caller.kind,
                model: std::mem::take(&mut self.model),
                engine: self.engine,
                endpoint: self.endpoint,
                usage: self.usage,
                latency: self.started.elapsed(),
                outcome,
                finished_at: jiff::Timestamp::now(),
                charge,
                peer: self.peer.take().map(|(peer, price)| PeerUse {
                    peer,
                    cost_micro: price.cost_micro(self.usage.prompt_tokens, self.usage.completion_tokens),
                }),
            },
            std::mem::take(&mut self.slot),
        );
    }
}
