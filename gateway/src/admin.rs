//! The admin commands: `keys create|list|revoke` and `usage export|statement|revenue`.
//! Output goes to stdout (a new key is shown there once and never again).

use std::io::Write;

use crate::admission::CallerKind;
use crate::auth::keys;
use crate::books::{self, NewEntry, Verdict};
use crate::cli::{AssistantCommand, BooksCommand, DbArgs, FederationCommand, KeysCommand, UsageCommand};
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

/// `assistant eval`
pub async fn assistant(command: AssistantCommand) -> anyhow::Result<()> {
    let (model, discussions) = match command {
        AssistantCommand::Eval { model, discussions } => (model, discussions),
        AssistantCommand::Bylaws { model, answers } => return draft_bylaws(&model, &answers).await,
    };
    let set = crate::governance::eval::read_set(&discussions)?;
    let name = "candidate";
    let engine = in_process(name, &model).await?;
    let mut score = crate::governance::eval::evaluate(engine.as_ref(), name, &set).await?;
    score.model = model.display().to_string();
    out(&format!(
        "model {}\n\
         discussions          {}\n\
         citation validity    {:.3} ({} sentences kept, {} citing nothing, {} citing no real comment)\n\
         schema validity      {:.3} ({} of {} drafts valid)\n\
         summary length       {:.0} characters kept, {:.0} completion tokens, on average\n{}\n",
        model.display(),
        score.discussions,
        score.citation_validity,
        score.sentences_kept,
        score.sentences_uncited,
        score.sentences_fabricated,
        score.schema_validity,
        score.drafts_valid,
        score.drafts,
        score.mean_summary_chars,
        score.mean_summary_tokens,
        serde_json::to_string(&score)?
    ))
}

/// A model folder run in this process, served as `name`.
async fn in_process(
    name: &str,
    model: &std::path::Path,
) -> anyhow::Result<std::sync::Arc<dyn crate::engine::Engine>> {
    let config = crate::config::ModelConfig {
        name: name.to_owned(),
        owned_by: "assistant".to_owned(),
        engine: crate::config::EngineConfig::Embedded {
            path: Some(model.to_owned()),
            hub: None,
            embeddings: false,
        },
    };
    let registry = crate::config::load_models(&[config], &crate::engine::EmbeddedOptions::default()).await?;
    Ok(registry.get(name).map_err(|e| anyhow::anyhow!("{e}"))?.engine)
}

/// `assistant bylaws`: the founders' answers drafted into a Cooperative manifest.
async fn draft_bylaws(model: &std::path::Path, answers: &std::path::Path) -> anyhow::Result<()> {
    use crate::governance::founding;
    let text = std::fs::read_to_string(answers)
        .map_err(|e| anyhow::anyhow!("cannot read the answers {}: {e}", answers.display()))?;
    let q = founding::Questionnaire::parse(&text)?;
    let name = "founding";
    let engine = in_process(name, model).await?;
    let digest = engine.digest();
    let reply = engine
        .chat(founding::request(name, &q)?)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let crate::engine::Reply::Full(answer) = reply else {
        anyhow::bail!("the engine streamed an answer that was asked whole");
    };
    let draft = crate::governance::assistant::answer_text(&answer);
    let coop = founding::assemble(&q, &draft)
        .map_err(|e| anyhow::anyhow!("the model's draft is not usable ({e}); its text: {draft}"))?;
    out(&format!(
        "# AI-written: drafted by the model in {} (weights {}), prompt {}, from the answers in {}.\n\
         # Review every line before founding the co-op with it; the model decides nothing.\n{}",
        model.display(),
        digest.as_deref().unwrap_or("unknown"),
        founding::TEMPLATE_VERSION,
        answers.display(),
        serde_yaml_ng::to_string(&coop)?
    ))
}

/// `federation ...`
pub async fn federation(command: FederationCommand) -> anyhow::Result<()> {
    use crate::federation::{keys as signing, settlement};
    match command {
        FederationCommand::Keygen { out: path } => {
            anyhow::ensure!(!path.exists(), "{} exists; not overwriting a key", path.display());
            let (pem, public) = signing::generate()?;
            let mut file = std::fs::OpenOptions::new();
            file.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
            file.open(&path)?.write_all(pem.as_bytes())?;
            out(&format!("{public}\n"))
        }
        FederationCommand::PublicKey { key } => {
            out(&format!("{}\n", signing::SigningKey::read(&key)?.public))
        }
        FederationCommand::Settlement {
            peer,
            month,
            db: args,
        } => {
            let db = connect(&args).await?;
            let coop = crate::coop::Coop::from_objects(&objects_of(&args, &db).await?, &Default::default())?;
            let currency = coop
                .peers
                .get(&peer)
                .and_then(|p| p.terms.price.as_ref())
                .map(|p| p.currency.clone())
                .unwrap_or_default();
            let ledger = settlement::settlement(&db, &coop.name, &peer, &month, &currency).await?;
            out(&format!("{}\n", serde_json::to_string_pretty(&ledger)?))
        }
        FederationCommand::Records { peer, month, db } => {
            let db = connect(&db).await?;
            let mut text = String::new();
            for entry in settlement::records(&db, &peer, &month).await? {
                text.push_str(&serde_json::to_string(&entry)?);
                text.push('\n');
            }
            out(&text)
        }
    }
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
            let (args, db) = (db.clone(), connect(&db).await?);
            ensure_exists(&objects_of(&args, &db).await?, kind, &name)?;
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

/// The co-op's objects: from the API server in cluster mode (`--namespace`), else
/// as the database holds them (standalone mode).
async fn objects_of(
    args: &DbArgs,
    db: &sea_orm::DatabaseConnection,
) -> anyhow::Result<crate::coop::CoopObjects> {
    if let Some(ns) = &args.namespace {
        return crate::cluster::list_objects(ns).await;
    }
    Ok(
        crate::governance::store::GovernanceStore::objects(&crate::governance::db::DbStore::new(db.clone()))
            .await?,
    )
}

/// An entry in the open period (this month).
fn entry(
    kind: &str,
    account: &str,
    amount_minor: i64,
    quantity: i64,
    currency: &str,
    memo: String,
) -> NewEntry {
    NewEntry {
        period: crate::quota::month_of(jiff::Timestamp::now()),
        kind: kind.to_owned(),
        account: account.to_owned(),
        amount_minor,
        quantity,
        currency: currency.to_owned(),
        memo,
    }
}

/// `books ...`
pub async fn books(command: BooksCommand) -> anyhow::Result<()> {
    let (db, posting) = match command {
        BooksCommand::Topup {
            customer,
            minor,
            memo,
            db,
        } => {
            let (args, db) = (db.clone(), connect(&db).await?);
            let objects = objects_of(&args, &db).await?;
            ensure_exists(&objects, CallerKind::Customer, &customer)?;
            let currency = currency(&objects);
            let e = entry("topup", &customer, i64::from(minor), 0, &currency, memo);
            (db, e)
        }
        BooksCommand::Cost { minor, memo, db } => {
            let (args, db) = (db.clone(), connect(&db).await?);
            let currency = currency(&objects_of(&args, &db).await?);
            let e = entry("cost", "coop", i64::from(minor), 0, &currency, memo);
            (db, e)
        }
        BooksCommand::Contribution {
            member,
            gpu_hours,
            memo,
            db,
        } => {
            let (args, db) = (db.clone(), connect(&db).await?);
            let objects = objects_of(&args, &db).await?;
            ensure_exists(&objects, CallerKind::Member, &member)?;
            let e = entry("contribution", &member, 0, i64::from(gpu_hours), "", memo);
            (db, e)
        }
        BooksCommand::Correction {
            account,
            minor,
            memo,
            db,
        } => {
            let (args, db) = (db.clone(), connect(&db).await?);
            let currency = currency(&objects_of(&args, &db).await?);
            let e = entry("correction", &account, i64::from(minor), 0, &currency, memo);
            (db, e)
        }
        BooksCommand::Close { month, db } => {
            let (args, db) = (db.clone(), connect(&db).await?);
            let objects = objects_of(&args, &db).await?;
            let coop = crate::coop::Coop::from_objects(&objects, &crate::coop::CoopOptions::default())?;
            let closed = books::close(&db, &month, &|model| coop.price(model), &coop.currency).await?;
            out(&books::csv(&closed.entries))?;
            return out(&format!("closed {} at {}\n", closed.period, closed.head));
        }
        BooksCommand::Statement {
            account,
            month,
            csv,
            db,
        } => {
            let db = connect(&db).await?;
            let statement = books::statement(&db, &account, &month).await?;
            return if csv {
                out(&books::csv(&statement.entries))
            } else {
                out(&format!("{}\n", serde_json::to_string_pretty(&statement)?))
            };
        }
        BooksCommand::Patronage {
            month,
            basis,
            cash_percent,
            surplus_to,
            db,
        } => {
            use synco_policies::patronage::{Basis, PatronageRules, SurplusTo};
            let (args, db) = (db.clone(), connect(&db).await?);
            if basis.is_none() && cash_percent.is_none() && surplus_to.is_none() {
                let objects = objects_of(&args, &db).await?;
                let d = books::distribution(&db, &month, objects.cooperative()?).await?;
                return out(&format!("{}\n", serde_json::to_string_pretty(&d)?));
            }
            let basis = basis.unwrap_or_else(|| "usage".to_owned());
            let basis = match basis.split(':').collect::<Vec<_>>()[..] {
                ["usage"] => Basis::Usage,
                ["contribution"] => Basis::Contribution,
                ["mix", u, c] => Basis::Mix {
                    usage: u.parse()?,
                    contribution: c.parse()?,
                },
                _ => anyhow::bail!("--basis is usage, contribution or mix:U:C, not {basis}"),
            };
            let surplus_to = match surplus_to.as_deref().unwrap_or("reserve") {
                "pool" => SurplusTo::Pool,
                "reserve" => SurplusTo::Reserve,
                other => anyhow::bail!("--surplus-to is pool or reserve, not {other}"),
            };
            let rules = PatronageRules {
                basis,
                cash_percent: cash_percent.unwrap_or(synco_policies::patronage::MIN_CASH_PERCENT),
                surplus_to,
            };
            let d = books::patronage(&db, &month, &rules).await?;
            return out(&format!("{}\n", serde_json::to_string_pretty(&d)?));
        }
        BooksCommand::Entries { month, db } => {
            let db = connect(&db).await?;
            return out(&books::csv(&books::entries(&db, &month).await?));
        }
        BooksCommand::Verify { db } => {
            let db = connect(&db).await?;
            return match books::verify(&db).await? {
                Verdict::Intact { entries, head } => {
                    out(&format!("intact: {entries} entries, head {head}\n"))
                }
                Verdict::Broken { id, reason } => {
                    anyhow::bail!("the ledger is broken at entry {id}: {reason}")
                }
            };
        }
    };
    let posted = books::post(&db, &[posting]).await?;
    out(&books::csv(&posted))
}

fn currency(objects: &crate::coop::CoopObjects) -> String {
    objects
        .cooperative()
        .ok()
        .and_then(|c| c.spec.surplus.as_ref())
        .map(|s| s.currency.clone())
        .unwrap_or_default()
}

/// Refuses a name that is no Member (or Customer) of the co-op, when the database holds
/// the co-op (standalone mode); in a cluster the API server does, and a key or entry for
/// a name that is not there is refused at every request.
fn ensure_exists(objects: &crate::coop::CoopObjects, kind: CallerKind, name: &str) -> anyhow::Result<()> {
    if objects.cooperatives.is_empty() {
        return Ok(());
    }
    let named = |n: &Option<String>| n.as_deref() == Some(name);
    let (exists, what) = match kind {
        CallerKind::Customer => (
            objects.customers.iter().any(|c| named(&c.metadata.name)),
            "customer",
        ),
        _ => (objects.members.iter().any(|m| named(&m.metadata.name)), "member"),
    };
    anyhow::ensure!(exists, "the co-op has no {what} named {name}");
    Ok(())
}
