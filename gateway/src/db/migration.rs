//! Schema migrations (sea-orm-migration), the same on SQLite and Postgres.

use sea_orm_migration::prelude::*;

use super::entities::{api_key, lease, manifest, usage_record};

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
        create_from_entity(manager, manifest::Entity).await?;
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

/// The gateway's migrations, applied at start-up.
#[derive(Debug)]
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(InitialTables), Box::new(KeysLeasesBilling)]
    }
}
