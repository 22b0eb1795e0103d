//! The gateway's database: SQLite (standalone default) or Postgres (cluster mode, and
//! several replicas sharing one budget), through sea-orm.
//!
//! Tables: the append-only usage records, API keys (hashes only), budget leases, and
//! the co-op's governance in standalone mode: its objects, proposals, ballots,
//! delegations and comments (comments in cluster mode too). See [`entities`] and
//! [`migration`].

pub mod entities;
pub mod migration;

use std::path::Path;

use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use sea_orm_migration::MigratorTrait;

pub use entities::{
    api_key, assistant_output, ballot, comment, common_ground_entry, common_ground_round,
    contribution_sample, coop_object, coop_version, delegation, lease, ledger_distribution, ledger_entry,
    ledger_period, peer_token, proposal, usage_record, web_session,
};
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
