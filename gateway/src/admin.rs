//! The admin commands: `keys create|list|revoke` and `usage export|statement|revenue`.
//! Output goes to stdout (a new key is shown there once and never again).

use std::io::Write;

use crate::admission::CallerKind;
use crate::auth::keys;
use crate::cli::{DbArgs, KeysCommand, UsageCommand};
use crate::metering::export;

async fn connect(db: &DbArgs) -> anyhow::Result<sea_orm::DatabaseConnection> {
    crate::db::connect(&crate::db::url(&db.data_dir, db.database_url.as_deref())?).await
}

fn out(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// `keys ...`
pub async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create {
            member,
            customer,
            label,
            db,
        } => {
            let (kind, name) = match (member, customer) {
                (Some(m), None) => (CallerKind::Member, m),
                (None, Some(c)) => (CallerKind::Customer, c),
                _ => anyhow::bail!("give one of --member or --customer"),
            };
            let db = connect(&db).await?;
            // A database that holds the co-op (standalone mode) says who exists; in a
            // cluster the API server does, and the key of a name that is no Member or
            // Customer there is refused at every request.
            let objects = crate::governance::store::GovernanceStore::objects(
                &crate::governance::db::DbStore::new(db.clone()),
            )
            .await?;
            if !objects.cooperatives.is_empty() {
                let exists = match kind {
                    CallerKind::Customer => objects
                        .customers
                        .iter()
                        .any(|c| c.metadata.name.as_deref() == Some(name.as_str())),
                    _ => objects
                        .members
                        .iter()
                        .any(|m| m.metadata.name.as_deref() == Some(name.as_str())),
                };
                anyhow::ensure!(
                    exists,
                    "the co-op has no {} named {name}",
                    if kind == CallerKind::Customer {
                        "customer"
                    } else {
                        "member"
                    }
                );
            }
            let new = keys::create(&db, kind, &name, &label).await?;
            tracing::info!(prefix = %new.prefix, caller = %name, "key created; it is shown once");
            out(&format!("{}\n", new.key))
        }
        KeysCommand::List { db } => {
            let db = connect(&db).await?;
            let mut text = String::from("prefix,kind,caller,label,created_at,revoked_at\n");
            for k in keys::list(&db).await? {
                text.push_str(&format!(
                    "{},{},{},{},{},{}\n",
                    k.prefix,
                    k.caller_kind,
                    k.caller,
                    k.label,
                    k.created_at,
                    k.revoked_at.unwrap_or_default()
                ));
            }
            out(&text)
        }
        KeysCommand::Revoke { prefix, db } => {
            let db = connect(&db).await?;
            anyhow::ensure!(
                keys::revoke(&db, &prefix).await?,
                "no live key with prefix {prefix}"
            );
            out(&format!("revoked {prefix}\n"))
        }
    }
}

/// `usage ...`
pub async fn usage(command: UsageCommand) -> anyhow::Result<()> {
    match command {
        UsageCommand::Export { month, db } => {
            let db = connect(&db).await?;
            out(&export::csv(&export::by_caller(&db, &month).await?))
        }
        UsageCommand::Statement { customer, month, db } => {
            let db = connect(&db).await?;
            let statement = export::statement(&db, &customer, &month).await?;
            out(&format!("{}\n", serde_json::to_string_pretty(&statement)?))
        }
        UsageCommand::Revenue { month, db } => {
            let db = connect(&db).await?;
            out(&export::csv(&export::surplus_revenue(&db, &month).await?))
        }
    }
}
