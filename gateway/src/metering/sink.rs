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
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, DatabaseConnection, EntityTrait};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::db::usage_record;
use crate::error::ApiError;
use crate::usage::{MeterSlot, UsageRecord, UsageSink, log_record};

/// Records written per insert.
const BATCH: usize = 64;

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
    /// How long a batch waits for more records before it is written.
    pub linger: Duration,
}

impl Default for SinkOptions {
    fn default() -> Self {
        Self {
            capacity: 1024,
            slot_wait: Duration::from_secs(30),
            linger: Duration::from_millis(100),
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
        tokio::spawn(write_loop(db, rx, options.linger, written.clone()));
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
    linger: Duration,
    written: Arc<AtomicU64>,
) {
    let mut batch: Vec<(UsageRecord, MeterSlot)> = Vec::new();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        let message = if batch.is_empty() && waiting.is_empty() {
            rx.recv().await
        } else {
            match tokio::time::timeout(linger, rx.recv()).await {
                Ok(m) => m,
                Err(_) => {
                    write_with_retry(&db, &mut batch, &written).await;
                    for done in waiting.drain(..) {
                        let _ = done.send(());
                    }
                    continue;
                }
            }
        };
        match message {
            Some(Message::Record(r, slot)) => batch.push((*r, slot)),
            Some(Message::Flush(done)) => waiting.push(done),
            None => {
                write_with_retry(&db, &mut batch, &written).await;
                return;
            }
        }
        // Everything already queued joins this batch before a flush is answered.
        if batch.len() >= BATCH || (!waiting.is_empty() && rx.is_empty()) {
            write_with_retry(&db, &mut batch, &written).await;
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

async fn insert(db: &DatabaseConnection, batch: &[(UsageRecord, MeterSlot)]) -> Result<(), sea_orm::DbErr> {
    let rows = batch.iter().map(|(r, _)| row(r));
    usage_record::Entity::insert_many(rows)
        .on_conflict(
            OnConflict::column(usage_record::Column::RecordId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await
        .map(|_| ())
}

fn row(r: &UsageRecord) -> usage_record::ActiveModel {
    usage_record::ActiveModel {
        id: sea_orm::ActiveValue::NotSet,
        request_id: Set(r.request_id.clone()),
        caller: Set(r.caller_id.clone()),
        caller_kind: Set(serde_json::to_value(r.caller_kind)
            .ok()
            .and_then(|v| v.as_str().map(ToOwned::to_owned))
            .unwrap_or_default()),
        model: Set(r.model.clone()),
        endpoint: Set(r.endpoint.as_str().to_owned()),
        prompt_tokens: Set(saturating_i64(r.usage.prompt_tokens)),
        completion_tokens: Set(saturating_i64(r.usage.completion_tokens)),
        latency_ms: Set(saturating_i64(r.latency.as_millis())),
        outcome: Set(r.outcome.as_str().to_owned()),
        finished_at: Set(r.finished_at.to_string()),
        record_id: Set(Some(r.record_id.clone())),
        cost_micro: Set(saturating_i64(r.charge.cost_micro)),
        currency: Set(r.charge.currency.clone()),
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
