//! Schema migrations (sea-orm-migration), the same on SQLite and Postgres.

use sea_orm_migration::prelude::*;

use super::entities::{
    api_key, assistant_output, ballot, comment, common_ground_entry, common_ground_round,
    contribution_sample, coop_object, coop_version, delegation, lease, ledger_distribution, ledger_entry,
    ledger_period, peer_token, proposal, usage_record, web_session,
};

/// Creates an entity's table as sea-orm derives it, unless it exists.
async fn create_from_entity<E: sea_orm::EntityTrait>(
    manager: &SchemaManager<'_>,
    entity: E,
) -> Result<(), DbErr> {
    let schema = sea_orm::Schema::new(manager.get_database_backend());
    manager
        .create_table(schema.create_table_from_entity(entity).if_not_exists().to_owned())
        .await
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
        // This migration also made a `manifests` table, which nothing read; the
        // governance migration drops it from databases that have it.
        create_from_entity(manager, usage_record::Entity).await
    }
}

/// Keys, budget leases, and the columns that make usage writes idempotent and billable.
struct KeysLeasesBilling;

impl MigrationName for KeysLeasesBilling {
    fn name(&self) -> &str {
        "m20260702_000001_keys_leases_billing"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for KeysLeasesBilling {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // A database created by the first version of the first migration lacks the
        // new usage columns; one created since has them (the table is built from the entity).
        if !manager.has_column("usage_records", "record_id").await? {
            let t = Alias::new("usage_records");
            for column in [
                ColumnDef::new(Alias::new("record_id")).string().null().to_owned(),
                ColumnDef::new(Alias::new("cost_micro"))
                    .big_integer()
                    .not_null()
                    .default(0)
                    .to_owned(),
                ColumnDef::new(Alias::new("currency"))
                    .string()
                    .not_null()
                    .default("")
                    .to_owned(),
            ] {
                let mut column = column;
                manager
                    .alter_table(Table::alter().table(t.clone()).add_column(&mut column).to_owned())
                    .await?;
            }
            manager
                .create_index(
                    Index::create()
                        .name("usage_records_record_id")
                        .table(t)
                        .col(Alias::new("record_id"))
                        .unique()
                        .if_not_exists()
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("usage_records_caller_time")
                    .table(Alias::new("usage_records"))
                    .col(Alias::new("caller"))
                    .col(Alias::new("finished_at"))
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        create_from_entity(manager, api_key::Entity).await?;
        create_from_entity(manager, lease::Entity).await
    }
}

/// The co-op's objects as the database holds them in standalone mode, proposals,
/// ballots (one per member and proposal, never updated or deleted), delegations and
/// comments.
struct Governance;

impl MigrationName for Governance {
    fn name(&self) -> &str {
        "m20261201_000001_governance"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Governance {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(Alias::new("manifests"))
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        create_from_entity(manager, coop_object::Entity).await?;
        create_from_entity(manager, proposal::Entity).await?;
        create_from_entity(manager, ballot::Entity).await?;
        create_from_entity(manager, delegation::Entity).await?;
        create_from_entity(manager, comment::Entity).await?;
        create_from_entity(manager, coop_version::Entity).await?;
        manager
            .create_index(
                Index::create()
                    .name("ballots_one_per_member")
                    .table(Alias::new("ballots"))
                    .col(Alias::new("proposal"))
                    .col(Alias::new("member"))
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("comments_by_proposal")
                    .table(Alias::new("comments"))
                    .col(Alias::new("proposal"))
                    .col(Alias::new("id"))
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        let statements: &[&str] = match manager.get_database_backend() {
            sea_orm::DatabaseBackend::Sqlite => &[
                "CREATE TRIGGER IF NOT EXISTS ballots_never_updated BEFORE UPDATE ON ballots \
                 BEGIN SELECT RAISE(ABORT, 'a ballot is final: ballots are never updated'); END",
                "CREATE TRIGGER IF NOT EXISTS ballots_never_deleted BEFORE DELETE ON ballots \
                 BEGIN SELECT RAISE(ABORT, 'ballots are never deleted'); END",
                "CREATE TRIGGER IF NOT EXISTS comments_never_updated BEFORE UPDATE ON comments \
                 BEGIN SELECT RAISE(ABORT, 'comments are the record of the deliberation: never edited'); END",
            ],
            _ => &[
                "CREATE OR REPLACE FUNCTION synco_refuse_change() RETURNS trigger AS $$ \
                 BEGIN RAISE EXCEPTION '% rows are never updated or deleted: a ballot is final, \
                 a comment is the record', TG_TABLE_NAME; END; $$ LANGUAGE plpgsql",
                "DROP TRIGGER IF EXISTS ballots_are_final ON ballots",
                "CREATE TRIGGER ballots_are_final BEFORE UPDATE OR DELETE ON ballots \
                 FOR EACH ROW EXECUTE FUNCTION synco_refuse_change()",
                "DROP TRIGGER IF EXISTS comments_are_the_record ON comments",
                "CREATE TRIGGER comments_are_the_record BEFORE UPDATE ON comments \
                 FOR EACH ROW EXECUTE FUNCTION synco_refuse_change()",
            ],
        };
        for sql in statements {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}

/// The members' signed-in web sessions.
struct WebSessions;

impl MigrationName for WebSessions {
    fn name(&self) -> &str {
        "m20261202_000001_web_sessions"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for WebSessions {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_from_entity(manager, web_session::Entity).await
    }
}

/// The co-op's books: the append-only ledger and its closed periods.
struct Ledger;

impl MigrationName for Ledger {
    fn name(&self) -> &str {
        "m20261203_000001_ledger"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Ledger {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_from_entity(manager, ledger_entry::Entity).await?;
        create_from_entity(manager, ledger_period::Entity).await?;
        let db = manager.get_connection();
        let statements: &[&str] = match manager.get_database_backend() {
            sea_orm::DatabaseBackend::Sqlite => &[
                "CREATE TRIGGER IF NOT EXISTS ledger_never_updated BEFORE UPDATE ON ledger_entries \
                 BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: post a correction instead'); END",
                "CREATE TRIGGER IF NOT EXISTS ledger_never_deleted BEFORE DELETE ON ledger_entries \
                 BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: post a correction instead'); END",
            ],
            _ => &[
                "CREATE OR REPLACE FUNCTION synco_ledger_append_only() RETURNS trigger AS $$ \
                 BEGIN RAISE EXCEPTION 'the ledger is append-only: post a correction instead'; END; \
                 $$ LANGUAGE plpgsql",
                "DROP TRIGGER IF EXISTS ledger_append_only ON ledger_entries",
                "CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE ON ledger_entries \
                 FOR EACH ROW EXECUTE FUNCTION synco_ledger_append_only()",
            ],
        };
        for sql in statements {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}

/// Patronage refunds recorded once per period, and contributed nodes' samples.
struct Patronage;

impl MigrationName for Patronage {
    fn name(&self) -> &str {
        "m20261204_000001_patronage"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Patronage {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_from_entity(manager, ledger_distribution::Entity).await?;
        create_from_entity(manager, contribution_sample::Entity).await
    }
}

/// Federation: which peer co-op a record was served by (borrowed) or for (lent), and
/// what it costs between the two co-ops.
struct Federation;

impl MigrationName for Federation {
    fn name(&self) -> &str {
        "m20261205_000001_federation"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Federation {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Databases created since have the columns (the table is built from the entity).
        if !manager.has_column("usage_records", "peer").await? {
            let t = Alias::new("usage_records");
            for mut column in [
                ColumnDef::new(Alias::new("peer")).string().null().to_owned(),
                ColumnDef::new(Alias::new("peer_cost_micro"))
                    .big_integer()
                    .not_null()
                    .default(0)
                    .to_owned(),
            ] {
                manager
                    .alter_table(Table::alter().table(t.clone()).add_column(&mut column).to_owned())
                    .await?;
            }
        }
        manager
            .create_index(
                Index::create()
                    .name("usage_records_peer_time")
                    .table(Alias::new("usage_records"))
                    .col(Alias::new("peer"))
                    .col(Alias::new("finished_at"))
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }
}

/// The governance assistant's outputs, and federation's replay check shared by the
/// gateway's replicas.
struct Assistant;

impl MigrationName for Assistant {
    fn name(&self) -> &str {
        "m20261206_000001_assistant"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Assistant {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_from_entity(manager, assistant_output::Entity).await?;
        // Federation's replay check shared by the replicas (see `federation::keys`).
        create_from_entity(manager, peer_token::Entity).await
    }
}

/// The assistant's common-ground rounds.
struct CommonGround;

impl MigrationName for CommonGround {
    fn name(&self) -> &str {
        "m20261207_000001_common_ground"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CommonGround {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_from_entity(manager, common_ground_round::Entity).await?;
        create_from_entity(manager, common_ground_entry::Entity).await
    }
}

/// The gateway's migrations, applied at start-up.
#[derive(Debug)]
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(InitialTables),
            Box::new(KeysLeasesBilling),
            Box::new(Governance),
            Box::new(WebSessions),
            Box::new(Ledger),
            Box::new(Patronage),
            Box::new(Federation),
            Box::new(Assistant),
            Box::new(CommonGround),
        ]
    }
}
