//! Durable usage metering: batched background writes with a bounded buffer.
//!
//! - **Backpressure, not loss.** The buffer holds at most `capacity` records. Each
//!   request takes a [`MeterSlot`] before it is admitted and the slot is freed only
//!   once its record is committed. When the buffer is full, new requests wait for a
//!   slot (up to `slot_wait`, then 503): nothing is ever dropped.
//! - **Retries.** A failed batch is retried with backoff until it is written, so a
//!   database restart delays records but loses none. Inserts are idempotent (unique
//!   `record_id`, `ON CONFLICT DO NOTHING`), so a retry after an ambiguous failure
//!   (the commit happened, the answer was lost) writes nothing twice.
//! - **Shutdown.** `flush` waits until every buffered record is written; the server
//!   gives it `--usage-flush-seconds`, then exits with an error that says how many
//!   records it could not write (a database that is down never hangs a shutdown).
//! - **`kill -9` bound.** Records live only in memory until committed, so a `kill -9`
//!   loses at most `capacity` records (the buffer), plus nothing for requests still
//!   running (they have no record yet, and their budget was already leased in the
//!   database, so the loss cannot let anyone overspend).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::error::ApiError;
use crate::usage::{MeterSlot, UsageRecord, UsageSink, log_record};

enum Message {
    Record(Box<UsageRecord>, MeterSlot),
    Flush(oneshot::Sender<()>),
}

/// Options of the [`DbUsageSink`].
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// Records buffered at most (the `kill -9` bound).
    pub capacity: usize,
    /// How long a request waits for room in a full buffer before a 503.
    pub slot_wait: Duration,
    /// How long a record waits for others to join its batch: the oldest record of a
    /// batch is written at most this long after it arrived.
    pub linger: Duration,
    /// Records written at most per insert. Under load, whatever arrived while the last
    /// batch was being written goes in the next one, up to this size: the load sets
    /// the batch size, and the commits per second stay few.
    pub batch: usize,
}

impl Default for SinkOptions {
    fn default() -> Self {
        Self {
            capacity: 1024,
            slot_wait: Duration::from_secs(30),
            linger: Duration::from_millis(100),
            batch: 512,
        }
    }
}

/// Writes usage records to the database (SQLite or Postgres) in the background.
#[derive(Debug, Clone)]
pub struct DbUsageSink {
    tx: mpsc::UnboundedSender<Message>,
    slots: Arc<Semaphore>,
    options: SinkOptions,
    written: Arc<AtomicU64>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Message")
    }
}

impl DbUsageSink {
    pub fn start(db: DatabaseConnection, options: SinkOptions) -> Self {
        // Unbounded channel, bounded by the slots: every record holds one.
        let (tx, rx) = mpsc::unbounded_channel();
        let written = Arc::new(AtomicU64::new(0));
        tokio::spawn(write_loop(db, rx, options.clone(), written.clone()));
        Self {
            tx,
            slots: Arc::new(Semaphore::new(options.capacity)),
            options,
            written,
        }
    }

    /// Records buffered and not yet committed.
    pub fn pending(&self) -> usize {
        self.options.capacity - self.slots.available_permits()
    }

    /// Records committed since start.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
}

async fn write_loop(
    db: DatabaseConnection,
    mut rx: mpsc::UnboundedReceiver<Message>,
    options: SinkOptions,
    written: Arc<AtomicU64>,
) {
    let most = options.batch.max(1);
    let mut batch: Vec<(UsageRecord, MeterSlot)> = Vec::new();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    // When the batch's oldest record has lingered long enough.
    let mut due: Option<tokio::time::Instant> = None;
    loop {
        let message = match due {
            None => rx.recv().await,
            Some(at) => match tokio::time::timeout_at(at, rx.recv()).await {
                Ok(m) => m,
                Err(_) => {
                    write_with_retry(&db, &mut batch, &written).await;
                    due = None;
                    for done in waiting.drain(..) {
                        let _ = done.send(());
                    }
                    continue;
                }
            },
        };
        let mut take = |message: Message, batch: &mut Vec<_>, waiting: &mut Vec<_>| match message {
            Message::Record(r, slot) => {
                if batch.is_empty() {
                    due = Some(tokio::time::Instant::now() + options.linger);
                }
                batch.push((*r, slot));
            }
            Message::Flush(done) => waiting.push(done),
        };
        match message {
            Some(m) => take(m, &mut batch, &mut waiting),
            None => {
                write_with_retry(&db, &mut batch, &written).await;
                return;
            }
        }
        // Whatever else is queued joins this batch.
        while batch.len() < most {
            match rx.try_recv() {
                Ok(m) => take(m, &mut batch, &mut waiting),
                Err(_) => break,
            }
        }
        // A flush is answered once everything queued before it is written.
        if batch.len() >= most || (!waiting.is_empty() && rx.is_empty()) {
            write_with_retry(&db, &mut batch, &written).await;
            due = None;
            if rx.is_empty() {
                for done in waiting.drain(..) {
                    let _ = done.send(());
                }
            }
        }
    }
}

/// Writes `batch`, retrying with backoff until the database takes it.
async fn write_with_retry(
    db: &DatabaseConnection,
    batch: &mut Vec<(UsageRecord, MeterSlot)>,
    written: &AtomicU64,
) {
    if batch.is_empty() {
        return;
    }
    let mut backoff = Duration::from_millis(50);
    let mut attempt = 0u32;
    loop {
        match insert(db, batch).await {
            Ok(()) => break,
            Err(e) => {
                attempt += 1;
                metrics::counter!("synco_gateway_usage_write_retries_total").increment(1);
                if attempt == 1 || attempt.is_multiple_of(20) {
                    tracing::error!(error = %e, records = batch.len(), attempt, "usage write failed; retrying");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    if attempt > 0 {
        tracing::info!(
            records = batch.len(),
            attempts = attempt + 1,
            "usage written after retries"
        );
    }
    written.fetch_add(batch.len() as u64, Ordering::Relaxed);
    // Dropping the slots makes room in the buffer.
    batch.clear();
}

/// The columns written, in order, with their SQL types (for Postgres's record type).
const COLUMNS: [(&str, &str); 15] = [
    ("request_id", "text"),
    ("caller", "text"),
    ("caller_kind", "text"),
    ("model", "text"),
    ("endpoint", "text"),
    ("prompt_tokens", "bigint"),
    ("completion_tokens", "bigint"),
    ("latency_ms", "bigint"),
    ("outcome", "text"),
    ("finished_at", "text"),
    ("record_id", "text"),
    ("cost_micro", "bigint"),
    ("currency", "text"),
    ("peer", "text"),
    ("peer_cost_micro", "bigint"),
];

/// The insert, one statement whatever the batch's size: the batch is bound as one JSON
/// array that the database unpacks into rows. A multi-row `VALUES` list binds 13 values
/// a row (the old 64-row batches, 832) and its text changes with the row count, so each
/// batch size was parsed, planned and prepared anew on each pooled connection; one JSON
/// value is encoded once and the statement is prepared once per connection. Measured in
/// the README's Hardening section (Postgres under streaming load).
fn insert_sql(backend: DbBackend) -> String {
    let names = COLUMNS.map(|(name, _)| name).join(", ");
    match backend {
        DbBackend::Postgres => {
            let typed = COLUMNS.map(|(name, kind)| format!("{name} {kind}")).join(", ");
            format!(
                "INSERT INTO usage_records ({names}) SELECT {names} \
                 FROM jsonb_to_recordset($1::jsonb) AS r({typed}) \
                 ON CONFLICT (record_id) DO NOTHING"
            )
        }
        // SQLite (the only other backend built).
        _ => {
            let values = COLUMNS
                .map(|(name, _)| format!("json_extract(value, '$.{name}')"))
                .join(", ");
            // `WHERE true` tells SQLite's parser that ON CONFLICT is the upsert clause.
            format!(
                "INSERT INTO usage_records ({names}) SELECT {values} FROM json_each(?) \
                 WHERE true ON CONFLICT (record_id) DO NOTHING"
            )
        }
    }
}

async fn insert(db: &DatabaseConnection, batch: &[(UsageRecord, MeterSlot)]) -> Result<(), sea_orm::DbErr> {
    let rows: Vec<Row<'_>> = batch.iter().map(|(r, _)| Row::of(r)).collect();
    let json = serde_json::to_string(&rows).map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?;
    let backend = db.get_database_backend();
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        insert_sql(backend),
        [json.into()],
    ))
    .await
    .map(|_| ())
}

/// A usage record as a row of `usage_records`.
#[derive(serde::Serialize)]
struct Row<'a> {
    request_id: &'a str,
    caller: &'a str,
    caller_kind: &'static str,
    model: &'a str,
    endpoint: &'static str,
    prompt_tokens: i64,
    completion_tokens: i64,
    latency_ms: i64,
    outcome: &'static str,
    finished_at: String,
    record_id: &'a str,
    cost_micro: i64,
    currency: &'a str,
    peer: Option<&'a str>,
    peer_cost_micro: i64,
}

impl<'a> Row<'a> {
    fn of(r: &'a UsageRecord) -> Self {
        Self {
            request_id: &r.request_id,
            caller: &r.caller_id,
            caller_kind: r.caller_kind.as_str(),
            model: &r.model,
            endpoint: r.endpoint.as_str(),
            prompt_tokens: saturating_i64(r.usage.prompt_tokens),
            completion_tokens: saturating_i64(r.usage.completion_tokens),
            latency_ms: saturating_i64(r.latency.as_millis()),
            outcome: r.outcome.as_str(),
            finished_at: r.finished_at.to_string(),
            record_id: &r.record_id,
            cost_micro: saturating_i64(r.charge.cost_micro),
            currency: &r.charge.currency,
            peer: r.peer.as_ref().map(|p| p.peer.as_str()),
            peer_cost_micro: r.peer.as_ref().map_or(0, |p| saturating_i64(p.cost_micro)),
        }
    }
}

pub(crate) fn saturating_i64<T: TryInto<i64>>(value: T) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

#[async_trait]
impl UsageSink for DbUsageSink {
    async fn slot(&self) -> Result<MeterSlot, ApiError> {
        match tokio::time::timeout(self.options.slot_wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(MeterSlot(Some(permit))),
            _ => Err(ApiError::Unavailable(
                "usage metering is backed up (database unavailable?); try again shortly".to_owned(),
            )),
        }
    }

    fn record(&self, record: UsageRecord, slot: MeterSlot) {
        log_record(&record);
        if self.tx.send(Message::Record(Box::new(record), slot)).is_err() {
            tracing::error!("usage writer stopped; record not written");
        }
    }

    fn pending(&self) -> usize {
        DbUsageSink::pending(self)
    }

    async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).is_ok() {
            let _ = wait.await;
        }
        tracing::info!(
            written = self.written(),
            pending = self.pending(),
            "usage flushed"
        );
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{EntityTrait, QueryOrder};

    use super::*;
    use crate::admission::{CallerKind, Charge, Endpoint};
    use crate::db::usage_record;
    use crate::openai::Usage;
    use crate::usage::Outcome;

    fn record(id: &str, kind: CallerKind, outcome: Outcome) -> UsageRecord {
        UsageRecord {
            record_id: id.to_owned(),
            request_id: format!("req-{id}"),
            caller_id: "ana's \"shop\"".to_owned(),
            caller_kind: kind,
            model: "open-chat".to_owned(),
            engine: "external",
            endpoint: Endpoint::Embeddings,
            usage: Usage::new(7, 0),
            latency: Duration::from_millis(1234),
            outcome,
            finished_at: jiff::Timestamp::from_second(1_764_547_200).unwrap(),
            charge: Charge {
                cost_micro: u64::MAX,
                currency: "EUR".to_owned(),
            },
            peer: (kind == CallerKind::Peer).then(|| crate::usage::PeerUse {
                peer: "hillside".to_owned(),
                cost_micro: 42,
            }),
        }
    }

    /// Every field arrives as it was, whatever the batch's size, and a record written
    /// twice (a retry after an ambiguous failure) is stored once.
    #[tokio::test]
    async fn batches_of_any_size_are_written_field_for_field_and_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::open(dir.path()).await.unwrap();
        let sink = DbUsageSink::start(db.clone(), SinkOptions::default());
        let kinds = [
            CallerKind::Member,
            CallerKind::Customer,
            CallerKind::Anonymous,
            CallerKind::Peer,
        ];
        let outcomes = [
            Outcome::Completed,
            Outcome::Cancelled,
            Outcome::Failed("engine_error"),
        ];
        for n in 0..700 {
            let slot = sink.slot().await.unwrap();
            sink.record(
                record(&format!("r{n:04}"), kinds[n % 4], outcomes[n % 3].clone()),
                slot,
            );
        }
        sink.flush().await;
        let slot = sink.slot().await.unwrap();
        sink.record(record("r0001", CallerKind::Customer, Outcome::Cancelled), slot);
        sink.flush().await;
        let rows = usage_record::Entity::find()
            .order_by_asc(usage_record::Column::RecordId)
            .all(&db)
            .await
            .unwrap();
        assert_eq!(rows.len(), 700);
        let r = &rows[1];
        assert_eq!(r.record_id.as_deref(), Some("r0001"));
        assert_eq!(r.request_id, "req-r0001");
        assert_eq!(r.caller, "ana's \"shop\"");
        assert_eq!(r.caller_kind, "customer");
        assert_eq!(r.model, "open-chat");
        assert_eq!(r.endpoint, "embeddings");
        assert_eq!((r.prompt_tokens, r.completion_tokens), (7, 0));
        assert_eq!(r.latency_ms, 1234);
        assert_eq!(r.outcome, "cancelled");
        assert_eq!(r.finished_at, "2025-12-01T00:00:00Z");
        assert_eq!(r.cost_micro, i64::MAX);
        assert_eq!(r.currency, "EUR");
        assert_eq!(rows[2].caller_kind, "anonymous");
        assert_eq!(rows[3].caller_kind, "peer");
        assert_eq!(rows[3].peer.as_deref(), Some("hillside"));
        assert_eq!(rows[3].peer_cost_micro, 42);
        assert_eq!((rows[2].peer.as_deref(), rows[2].peer_cost_micro), (None, 0));
        assert_eq!(rows[2].outcome, "engine_error");
        assert_eq!(rows[0].caller_kind, "member");
        assert_eq!(sink.pending(), 0);
    }

    #[test]
    fn caller_kinds_are_stored_as_they_serialise() {
        for kind in [CallerKind::Member, CallerKind::Customer, CallerKind::Anonymous] {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
    }
}
