//! Standalone mode's state in SQLite, through sea-orm.
//!
//! Two tables for now: the co-op's manifests as last loaded (so the governance API
//! can read them), and an append-only usage record per request. Usage is written by
//! [`SqliteUsageSink`]: handlers never wait for the database; a background task
//! writes in batches and [`UsageSink::flush`] drains it on shutdown. Issue 6 adds
//! the quota and billing tables and Postgres for cluster mode.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use sea_orm::{ActiveValue::Set, ConnectOptions, Database, DatabaseConnection, EntityTrait};
use sea_orm_migration::prelude::*;
use tokio::sync::{mpsc, oneshot};

use crate::usage::{LogSink, UsageRecord, UsageSink};

pub mod manifest {
    use sea_orm::entity::prelude::*;

    /// One co-op object (Cooperative, Member, ...) as read from the manifests folder.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "manifests")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub kind: String,
        pub name: String,
        #[sea_orm(column_type = "Text")]
        pub body: String,
        pub loaded_at: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod usage_record {
    use sea_orm::entity::prelude::*;

    /// One request's usage. Append-only.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "usage_records")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub request_id: String,
        pub caller: String,
        pub caller_kind: String,
        pub model: String,
        pub endpoint: String,
        pub prompt_tokens: i64,
        pub completion_tokens: i64,
        pub latency_ms: i64,
        pub outcome: String,
        pub finished_at: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

struct InitialTables;

impl MigrationName for InitialTables {
    fn name(&self) -> &str {
        "m20260701_000001_initial_tables"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for InitialTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let schema = sea_orm::Schema::new(manager.get_database_backend());
        manager
            .create_table(
                schema
                    .create_table_from_entity(manifest::Entity)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                schema
                    .create_table_from_entity(usage_record::Entity)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }
}

/// The gateway's migrations, applied at start-up.
#[derive(Debug)]
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(InitialTables)]
    }
}

/// Opens (creating if needed) `synco.db` under `data_dir` and migrates it.
pub async fn open(data_dir: &Path) -> anyhow::Result<DatabaseConnection> {
    std::fs::create_dir_all(data_dir)?;
    let path = data_dir.join("synco.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut options = ConnectOptions::new(url);
    options.max_connections(4).sqlx_logging(false);
    let db = Database::connect(options).await?;
    Migrator::up(&db, None).await?;
    tracing::info!(path = %path.display(), "database ready");
    Ok(db)
}

/// Replaces the stored manifests with those just loaded.
pub async fn store_manifests(
    db: &DatabaseConnection,
    manifests: &[(String, String, serde_json::Value)],
) -> anyhow::Result<()> {
    use sea_orm::TransactionTrait;
    let now = jiff::Timestamp::now().to_string();
    let txn = db.begin().await?;
    manifest::Entity::delete_many().exec(&txn).await?;
    for (kind, name, body) in manifests {
        manifest::Entity::insert(manifest::ActiveModel {
            key: Set(format!("{kind}/{name}")),
            kind: Set(kind.clone()),
            name: Set(name.clone()),
            body: Set(body.to_string()),
            loaded_at: Set(now.clone()),
        })
        .exec(&txn)
        .await?;
    }
    txn.commit().await?;
    Ok(())
}

enum Message {
    Record(Box<UsageRecord>),
    Flush(oneshot::Sender<()>),
}

/// Writes usage records to SQLite in the background, in batches.
#[derive(Debug, Clone)]
pub struct SqliteUsageSink {
    tx: mpsc::Sender<Message>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Message")
    }
}

/// Records buffered before `record` starts dropping them (with a warning). Issue 6
/// replaces this best-effort buffer with reservations that make loss bounded.
const BUFFER: usize = 4096;

impl SqliteUsageSink {
    pub fn start(db: DatabaseConnection) -> Self {
        let (tx, rx) = mpsc::channel(BUFFER);
        tokio::spawn(write_loop(db, rx));
        Self { tx }
    }
}

async fn write_loop(db: DatabaseConnection, mut rx: mpsc::Receiver<Message>) {
    let mut batch = Vec::new();
    loop {
        let message = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await;
        let timed_out = message.is_err();
        let mut flushed = None;
        match message {
            Ok(Some(Message::Record(r))) => batch.push(*r),
            Ok(Some(Message::Flush(done))) => flushed = Some(done),
            Ok(None) => {
                write_batch(&db, &mut batch).await;
                return;
            }
            Err(_) => {}
        }
        if batch.len() >= 64 || flushed.is_some() || timed_out {
            write_batch(&db, &mut batch).await;
        }
        if let Some(done) = flushed {
            let _ = done.send(());
        }
    }
}

async fn write_batch(db: &DatabaseConnection, batch: &mut Vec<UsageRecord>) {
    if batch.is_empty() {
        return;
    }
    let rows = batch.drain(..).map(|r| usage_record::ActiveModel {
        id: sea_orm::ActiveValue::NotSet,
        request_id: Set(r.request_id),
        caller: Set(r.caller_id),
        caller_kind: Set(serde_json::to_value(r.caller_kind)
            .ok()
            .and_then(|v| v.as_str().map(ToOwned::to_owned))
            .unwrap_or_default()),
        model: Set(r.model),
        endpoint: Set(r.endpoint.as_str().to_owned()),
        prompt_tokens: Set(saturating_i64(r.usage.prompt_tokens)),
        completion_tokens: Set(saturating_i64(r.usage.completion_tokens)),
        latency_ms: Set(saturating_i64(r.latency.as_millis())),
        outcome: Set(r.outcome.as_str().to_owned()),
        finished_at: Set(r.finished_at.to_string()),
    });
    if let Err(e) = usage_record::Entity::insert_many(rows).exec(db).await {
        tracing::error!(error = %e, "could not write usage records");
    }
}

fn saturating_i64<T: TryInto<i64>>(value: T) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

#[async_trait]
impl UsageSink for SqliteUsageSink {
    fn record(&self, record: UsageRecord) {
        LogSink.record(record.clone());
        if let Err(e) = self.tx.try_send(Message::Record(Box::new(record))) {
            tracing::error!(error = %e, "usage buffer full; record dropped");
        }
    }

    async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}
