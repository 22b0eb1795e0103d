//! The gateway's database: SQLite (standalone default) or Postgres (cluster mode, and
//! several replicas sharing one budget), through sea-orm.
//!
//! Tables: the co-op's manifests as last loaded, the append-only usage records, API
//! keys (hashes only) and budget leases. See [`entities`] and [`migration`].

pub mod entities;
pub mod migration;

use std::path::Path;

use sea_orm::{ActiveValue::Set, ConnectOptions, Database, DatabaseConnection, EntityTrait};
use sea_orm_migration::MigratorTrait;

pub use entities::{api_key, lease, manifest, usage_record};
pub use migration::Migrator;

/// The database URL: `url` when given (`postgres://...` or `sqlite://...`), else
/// `synco.db` under `data_dir`.
pub fn url(data_dir: &Path, url: Option<&str>) -> anyhow::Result<String> {
    if let Some(url) = url {
        return Ok(url.to_owned());
    }
    std::fs::create_dir_all(data_dir)?;
    Ok(format!(
        "sqlite://{}?mode=rwc",
        data_dir.join("synco.db").display()
    ))
}

/// Connects and migrates.
pub async fn connect(url: &str) -> anyhow::Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(8)
        .connect_timeout(std::time::Duration::from_secs(5))
        .acquire_timeout(std::time::Duration::from_secs(5))
        .sqlx_logging(false)
        // Several processes (gateway, `keys` CLI) share the file: every pooled
        // connection waits for locks, and readers do not block the writer.
        .map_sqlx_sqlite_opts(|o| {
            o.busy_timeout(std::time::Duration::from_secs(5))
                .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
        });
    let db = Database::connect(options).await?;
    Migrator::up(&db, None).await?;
    tracing::info!(backend = ?db.get_database_backend(), "database ready");
    Ok(db)
}

/// Opens (creating if needed) `synco.db` under `data_dir` and migrates it.
pub async fn open(data_dir: &Path) -> anyhow::Result<DatabaseConnection> {
    connect(&url(data_dir, None)?).await
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
