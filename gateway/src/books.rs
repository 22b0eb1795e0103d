//! The co-op's books: an append-only ledger in integer minor units, chained by SHA-256,
//! and monthly periods that an admin closes.
//!
//! - **Entries:** customers' prepaid top-ups, costs and members' contributions of
//!   capacity are posted as they happen; at a period's close, the period's customers'
//!   charges and members' usage (valued at the rate card: the patronage that refunds
//!   are in proportion to) are posted from the metering records.
//! - **Append-only:** the database refuses updates and deletes (triggers on SQLite and
//!   Postgres). Each entry carries the hash of the entry before it and its own, so an
//!   edit made behind the triggers' back is found by [`verify`], which names the row.
//! - **Periods:** a closed period is locked: nothing more is posted to it, and a
//!   correction is a new entry in the open period.

use std::collections::BTreeMap;

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use sha2::{Digest, Sha256};

use crate::db::{contribution_sample, ledger_distribution, ledger_entry, ledger_period, usage_record};
use crate::metering::export;
use crate::quota::MICRO;

/// The hash before the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The kinds of entry.
pub const KINDS: [&str; 9] = [
    "charge",
    "topup",
    "usage",
    "contribution",
    "cost",
    "correction",
    "refund",
    "retained",
    "reserve",
];

/// An entry to post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    pub period: String,
    pub kind: String,
    pub account: String,
    pub amount_minor: i64,
    pub quantity: i64,
    pub currency: String,
    pub memo: String,
}

/// The SHA-256 of an entry: its fields, in order, each with its length, so that no two
/// entries hash alike by moving text from one field to the next.
fn hash(prev: &str, id: i64, e: &NewEntry, created_at: &str) -> String {
    let mut h = Sha256::new();
    for field in [
        prev,
        &id.to_string(),
        &e.period,
        &e.kind,
        &e.account,
        &e.amount_minor.to_string(),
        &e.quantity.to_string(),
        &e.currency,
        &e.memo,
        created_at,
    ] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Why the books refuse something.
#[derive(Debug, thiserror::Error)]
pub enum BooksError {
    #[error("period {0} is closed: post a correction in the open period instead")]
    Closed(String),
    #[error("period {0} is already closed")]
    AlreadyClosed(String),
    #[error("period {0} has not ended yet")]
    NotEnded(String),
    #[error("{0:?} is not a kind of entry ({kinds})", kinds = KINDS.join(", "))]
    Kind(String),
    #[error("period {0} is open: close it first, so that its usage and charges are in")]
    Open(String),
    #[error("the bylaws set no patronage rules: pass a Bylaw proposal that sets them first")]
    NoRules,
    #[error("{0}")]
    Refunds(String),
    #[error(transparent)]
    Db(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

async fn is_closed<C: ConnectionTrait>(db: &C, period: &str) -> Result<bool, sea_orm::DbErr> {
    Ok(ledger_period::Entity::find_by_id(period.to_owned())
        .one(db)
        .await?
        .is_some())
}

/// Posts entries at the end of the chain, in one transaction (Postgres locks the table
/// so that two posters never fork the chain; SQLite has one writer at a time).
///
/// # Errors
///
/// An entry's period is closed, its kind unknown, or the database fails.
pub async fn post(
    db: &DatabaseConnection,
    entries: &[NewEntry],
) -> Result<Vec<ledger_entry::Model>, BooksError> {
    let tx = db.begin().await?;
    let posted = post_in(&tx, entries).await?;
    tx.commit().await?;
    Ok(posted)
}

/// [`post`] inside the caller's transaction `tx`.
///
/// # Errors
///
/// An entry's period is closed, its kind unknown, or the database fails.
pub async fn post_in<C: ConnectionTrait>(
    tx: &C,
    entries: &[NewEntry],
) -> Result<Vec<ledger_entry::Model>, BooksError> {
    if let Some(e) = entries.iter().find(|e| !KINDS.contains(&e.kind.as_str())) {
        return Err(BooksError::Kind(e.kind.clone()));
    }
    if tx.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        tx.execute_unprepared("LOCK TABLE ledger_entries IN EXCLUSIVE MODE")
            .await?;
    }
    let mut posted = Vec::new();
    for e in entries {
        if is_closed(tx, &e.period).await? {
            return Err(BooksError::Closed(e.period.clone()));
        }
    }
    let last = ledger_entry::Entity::find()
        .order_by_desc(ledger_entry::Column::Id)
        .one(tx)
        .await?;
    let (mut prev, mut id) = last.map_or((GENESIS.to_owned(), 0), |l| (l.hash, l.id));
    let created_at = jiff::Timestamp::now().to_string();
    for e in entries {
        id += 1;
        let h = hash(&prev, id, e, &created_at);
        posted.push(ledger_entry::Model {
            id,
            period: e.period.clone(),
            kind: e.kind.clone(),
            account: e.account.clone(),
            amount_minor: e.amount_minor,
            quantity: e.quantity,
            currency: e.currency.clone(),
            memo: e.memo.clone(),
            created_at: created_at.clone(),
            prev_hash: prev.clone(),
            hash: h.clone(),
        });
        prev = h;
    }
    // In batches: a month's close posts an entry per member and customer.
    for batch in posted.chunks(1_000) {
        let rows = batch.iter().map(|m| ledger_entry::ActiveModel {
            id: Set(m.id),
            period: Set(m.period.clone()),
            kind: Set(m.kind.clone()),
            account: Set(m.account.clone()),
            amount_minor: Set(m.amount_minor),
            quantity: Set(m.quantity),
            currency: Set(m.currency.clone()),
            memo: Set(m.memo.clone()),
            created_at: Set(m.created_at.clone()),
            prev_hash: Set(m.prev_hash.clone()),
            hash: Set(m.hash.clone()),
        });
        ledger_entry::Entity::insert_many(rows).exec(tx).await?;
    }
    Ok(posted)
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every entry's hash holds and chains to the one before.
    Intact { entries: u64, head: String },
    /// The first entry that does not: its id and what is wrong.
    Broken { id: i64, reason: String },
}

/// Walks the chain from the first entry.
///
/// # Errors
///
/// The database cannot be read.
pub async fn verify(db: &DatabaseConnection) -> Result<Verdict, BooksError> {
    let mut prev = GENESIS.to_owned();
    let mut expected_id = 1;
    let mut count = 0;
    let mut after = 0;
    loop {
        let page = ledger_entry::Entity::find()
            .filter(ledger_entry::Column::Id.gt(after))
            .order_by_asc(ledger_entry::Column::Id)
            .limit(10_000)
            .all(db)
            .await?;
        if page.is_empty() {
            break;
        }
        for row in page {
            after = row.id;
            if row.id != expected_id {
                return Ok(Verdict::Broken {
                    id: row.id,
                    reason: format!("entry {expected_id} is missing before it"),
                });
            }
            if row.prev_hash != prev {
                return Ok(Verdict::Broken {
                    id: row.id,
                    reason: "it does not chain to the entry before it".to_owned(),
                });
            }
            let fields = NewEntry {
                period: row.period.clone(),
                kind: row.kind.clone(),
                account: row.account.clone(),
                amount_minor: row.amount_minor,
                quantity: row.quantity,
                currency: row.currency.clone(),
                memo: row.memo.clone(),
            };
            if hash(&prev, row.id, &fields, &row.created_at) != row.hash {
                return Ok(Verdict::Broken {
                    id: row.id,
                    reason: "its fields do not match its hash (edited after it was posted)".to_owned(),
                });
            }
            prev = row.hash;
            expected_id += 1;
            count += 1;
        }
    }
    // A closed period remembers the head it closed at: a chain cut short after it is
    // found too.
    for p in ledger_period::Entity::find().all(db).await? {
        let known = ledger_entry::Entity::find()
            .filter(ledger_entry::Column::Hash.eq(p.head_hash.clone()))
            .one(db)
            .await?;
        if known.is_none() && p.head_hash != GENESIS {
            return Ok(Verdict::Broken {
                id: expected_id,
                reason: format!(
                    "period {} closed at an entry that is no longer in the chain",
                    p.period
                ),
            });
        }
    }
    Ok(Verdict::Intact {
        entries: count,
        head: prev,
    })
}

/// What closing a period posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    pub period: String,
    pub entries: Vec<ledger_entry::Model>,
    pub head: String,
}

/// Closes `period` (`YYYY-MM`, a month that has ended): posts its customers' charges
/// and members' usage from the metering records (usage valued at `price` per model, the
/// rate card), then locks it.
///
/// # Errors
///
/// The period is open still, already closed, or the database fails.
pub async fn close(
    db: &DatabaseConnection,
    period: &str,
    price: &dyn Fn(&str) -> crate::coop::Price,
    currency: &str,
) -> Result<Closed, BooksError> {
    let (period, _) = export::month_bounds(period)?;
    if period >= crate::quota::month_of(jiff::Timestamp::now()) {
        return Err(BooksError::NotEnded(period));
    }
    if is_closed(db, &period).await? {
        return Err(BooksError::AlreadyClosed(period));
    }
    let (from, to) = export::month_bounds(&period)?;
    let rows: Vec<(String, String, String, String, i64, i64, i64)> = usage_record::Entity::find()
        .select_only()
        .column(usage_record::Column::Caller)
        .column(usage_record::Column::CallerKind)
        .column(usage_record::Column::Model)
        .column(usage_record::Column::Currency)
        .column_as(
            Expr::cust("CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT)"),
            "prompt",
        )
        .column_as(
            Expr::cust("CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT)"),
            "completion",
        )
        .column_as(Expr::cust("CAST(COALESCE(SUM(cost_micro), 0) AS BIGINT)"), "cost")
        .filter(usage_record::Column::FinishedAt.gte(from.clone()))
        .filter(usage_record::Column::FinishedAt.lt(to.clone()))
        .group_by(usage_record::Column::Caller)
        .group_by(usage_record::Column::CallerKind)
        .group_by(usage_record::Column::Model)
        .group_by(usage_record::Column::Currency)
        .into_tuple()
        .all(db)
        .await?;
    // (kind, account, currency) -> (micro units, tokens)
    let mut sums: BTreeMap<(&str, String, String), (u128, i64)> = BTreeMap::new();
    for (caller, kind, model, cur, prompt, completion, cost) in rows {
        let (p, c) = (
            u64::try_from(prompt).unwrap_or(0),
            u64::try_from(completion).unwrap_or(0),
        );
        let (entry_kind, micro, cur) = if kind == "customer" {
            ("charge", u128::try_from(cost).unwrap_or(0), cur)
        } else {
            (
                "usage",
                u128::from(price(&model).cost_micro(p, c)),
                currency.to_owned(),
            )
        };
        let sum = sums.entry((entry_kind, caller, cur)).or_default();
        sum.0 += micro;
        sum.1 = sum.1.saturating_add(prompt.saturating_add(completion));
    }
    let mut entries: Vec<NewEntry> = sums
        .into_iter()
        .map(|((kind, account, currency), (micro, tokens))| NewEntry {
            period: period.clone(),
            kind: kind.to_owned(),
            account,
            amount_minor: i64::try_from(micro.div_ceil(u128::from(MICRO))).unwrap_or(i64::MAX),
            quantity: tokens,
            currency,
            memo: format!("{kind} in {period}, from the metering records"),
        })
        .collect();
    entries.extend(contributions(db, &period, &from, &to).await?);
    let posted = post(db, &entries).await?;
    let head = match verify(db).await? {
        Verdict::Intact { head, .. } => head,
        Verdict::Broken { id, reason } => {
            return Err(BooksError::Other(anyhow::anyhow!(
                "the ledger is broken at entry {id} ({reason}): not closing"
            )));
        }
    };
    let tx = db.begin().await?;
    if is_closed(&tx, &period).await? {
        return Err(BooksError::AlreadyClosed(period));
    }
    ledger_period::Entity::insert(ledger_period::ActiveModel {
        period: Set(period.clone()),
        closed_at: Set(jiff::Timestamp::now().to_string()),
        head_hash: Set(head.clone()),
    })
    .exec(&tx)
    .await?;
    tx.commit().await?;
    Ok(Closed {
        period,
        entries: posted,
        head,
    })
}

/// The length of a contribution sample's bucket, in seconds.
pub const SAMPLE_BUCKET_SECONDS: i64 = 300;

/// Records that the contributed nodes `nodes` (name, member, GPUs) are Ready now:
/// one row per node and bucket, whichever replica writes it first.
///
/// # Errors
///
/// The database cannot be written.
pub async fn sample_contributions(
    db: &DatabaseConnection,
    now: jiff::Timestamp,
    nodes: &[(String, String, u32)],
) -> Result<usize, BooksError> {
    let bucket = now.as_second().div_euclid(SAMPLE_BUCKET_SECONDS) * SAMPLE_BUCKET_SECONDS;
    let rows: Vec<_> = nodes
        .iter()
        .filter(|(_, _, gpus)| *gpus > 0)
        .map(|(node, member, gpus)| contribution_sample::ActiveModel {
            bucket: Set(bucket),
            node: Set(node.clone()),
            member: Set(member.clone()),
            gpus: Set(i64::from(*gpus)),
            seconds: Set(SAMPLE_BUCKET_SECONDS),
        })
        .collect();
    let n = rows.len();
    if n > 0 {
        contribution_sample::Entity::insert_many(rows)
            .on_conflict_do_nothing_on([
                contribution_sample::Column::Bucket,
                contribution_sample::Column::Node,
            ])
            .exec(db)
            .await?;
    }
    Ok(n)
}

/// The period's contributions from the nodes' samples: GPU-hours per member (whole
/// hours, rounded down; the memo gives the GPU-seconds).
async fn contributions(
    db: &DatabaseConnection,
    period: &str,
    from: &str,
    to: &str,
) -> Result<Vec<NewEntry>, BooksError> {
    let second = |month: &str| -> Result<i64, BooksError> {
        let t: jiff::Timestamp = format!("{month}-01T00:00:00Z")
            .parse()
            .map_err(|e| BooksError::Other(anyhow::anyhow!("{month}: {e}")))?;
        Ok(t.as_second())
    };
    let (from, to) = (second(from)?, second(to)?);
    let rows: Vec<(String, i64)> = contribution_sample::Entity::find()
        .select_only()
        .column(contribution_sample::Column::Member)
        .column_as(
            Expr::cust("CAST(COALESCE(SUM(gpus * seconds), 0) AS BIGINT)"),
            "s",
        )
        .filter(contribution_sample::Column::Bucket.gte(from))
        .filter(contribution_sample::Column::Bucket.lt(to))
        .group_by(contribution_sample::Column::Member)
        .order_by_asc(contribution_sample::Column::Member)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(member, gpu_seconds)| NewEntry {
            period: period.to_owned(),
            kind: "contribution".to_owned(),
            account: member,
            amount_minor: 0,
            quantity: gpu_seconds / 3600,
            currency: String::new(),
            memo: format!(
                "GPU-hours of contributed nodes in {period} ({gpu_seconds} GPU-seconds seen Ready)"
            ),
        })
        .collect())
}

/// The entries of a period, in order.
///
/// # Errors
///
/// The database cannot be read.
pub async fn entries(db: &DatabaseConnection, period: &str) -> Result<Vec<ledger_entry::Model>, BooksError> {
    Ok(ledger_entry::Entity::find()
        .filter(ledger_entry::Column::Period.eq(period))
        .order_by_asc(ledger_entry::Column::Id)
        .all(db)
        .await?)
}

/// A customer's top-ups, all periods, in minor units.
///
/// # Errors
///
/// The database cannot be read.
pub async fn topups(db: &DatabaseConnection, customer: &str) -> Result<i64, BooksError> {
    let sum: Option<i64> = ledger_entry::Entity::find()
        .select_only()
        .column_as(
            Expr::cust("CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT)"),
            "sum",
        )
        .filter(ledger_entry::Column::Account.eq(customer))
        .filter(ledger_entry::Column::Kind.eq("topup"))
        .into_tuple()
        .one(db)
        .await?;
    Ok(sum.unwrap_or(0))
}

/// One account's figures for a month, from the ledger (a month's charges and usage are
/// posted when it closes, so an open month shows only what was posted as it happened).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Statement {
    pub account: String,
    pub period: String,
    /// Whether the month is closed (its charges and usage are in).
    pub closed: bool,
    pub currency: String,
    /// Members: usage valued at the rate card, and its tokens.
    pub usage_minor: i64,
    pub usage_tokens: i64,
    /// Members: GPU-hours contributed.
    pub contribution_gpu_hours: i64,
    /// Customers: charges, and their tokens.
    pub charges_minor: i64,
    pub charged_tokens: i64,
    /// Customers: top-ups in the month.
    pub topups_minor: i64,
    /// Corrections posted to the account in the month.
    pub corrections_minor: i64,
    /// Customers: every top-up and correction less every charge, to the end of the month.
    pub balance_minor: i64,
    /// Members: the patronage refund for this month once the members passed it (posted
    /// in the month open then, and listed last among the entries), its cash and retained
    /// parts, and the proposal.
    pub refund_minor: i64,
    pub refund_cash_minor: i64,
    pub refund_retained_minor: i64,
    pub refund_proposal: Option<String>,
    pub entries: Vec<ledger_entry::Model>,
}

/// `account`'s statement for `period`.
///
/// # Errors
///
/// The month does not read, or the database cannot be read.
pub async fn statement(
    db: &DatabaseConnection,
    account: &str,
    period: &str,
) -> Result<Statement, BooksError> {
    let (period, _) = export::month_bounds(period)?;
    let all = ledger_entry::Entity::find()
        .filter(ledger_entry::Column::Account.eq(account))
        .filter(ledger_entry::Column::Period.lte(period.clone()))
        .order_by_asc(ledger_entry::Column::Id)
        .all(db)
        .await?;
    let sum = |kind: &str, f: fn(&ledger_entry::Model) -> i64| -> i64 {
        all.iter()
            .filter(|e| e.period == period && e.kind == kind)
            .map(f)
            .fold(0, i64::saturating_add)
    };
    let distribution = recorded(db, &period).await?;
    let (mut cash, mut retained) = (0i64, 0i64);
    // The month's refund entries, posted in the month open when members passed them.
    let mut refunds = Vec::new();
    if let Some(d) = &distribution {
        for e in ledger_entry::Entity::find()
            .filter(ledger_entry::Column::Account.eq(account))
            .filter(ledger_entry::Column::Id.between(d.first_id, d.last_id))
            .order_by_asc(ledger_entry::Column::Id)
            .all(db)
            .await?
        {
            match e.kind.as_str() {
                "refund" => cash = cash.saturating_add(e.amount_minor),
                "retained" => retained = retained.saturating_add(e.amount_minor),
                _ => continue,
            }
            refunds.push(e);
        }
    }
    let ever = |kind: &str| -> i64 {
        all.iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.amount_minor)
            .fold(0, i64::saturating_add)
    };
    Ok(Statement {
        account: account.to_owned(),
        closed: is_closed(db, &period).await?,
        currency: all
            .iter()
            .map(|e| e.currency.clone())
            .find(|c| !c.is_empty())
            .unwrap_or_default(),
        usage_minor: sum("usage", |e| e.amount_minor),
        usage_tokens: sum("usage", |e| e.quantity),
        contribution_gpu_hours: sum("contribution", |e| e.quantity),
        charges_minor: sum("charge", |e| e.amount_minor),
        charged_tokens: sum("charge", |e| e.quantity),
        topups_minor: sum("topup", |e| e.amount_minor),
        corrections_minor: sum("correction", |e| e.amount_minor),
        balance_minor: ever("topup")
            .saturating_add(ever("correction"))
            .saturating_sub(ever("charge")),
        refund_minor: cash.saturating_add(retained),
        refund_cash_minor: cash,
        refund_retained_minor: retained,
        refund_proposal: distribution.map(|d| d.proposal),
        entries: all
            .into_iter()
            .filter(|e| e.period == period)
            .chain(refunds)
            .collect(),
        period,
    })
}

/// The patronage refunds of a closed `period` under `rules`, from its entries: each
/// member's usage at the rate card and contributed GPU-hours, the customers' charges
/// (surplus income) and the costs (`policies::patronage` decides).
///
/// # Errors
///
/// The period is open still, the rules are out of range, or the database fails.
pub async fn patronage(
    db: &DatabaseConnection,
    period: &str,
    rules: &synco_policies::patronage::PatronageRules,
) -> Result<synco_policies::patronage::Distribution, BooksError> {
    use synco_policies::patronage::{Activity, Period, distribute};
    let (period, _) = export::month_bounds(period)?;
    if !is_closed(db, &period).await? {
        return Err(BooksError::Open(period));
    }
    let mut members: BTreeMap<String, Activity> = BTreeMap::new();
    let mut input = Period::default();
    let minor = |v: i64| u64::try_from(v).unwrap_or(0);
    for e in entries(db, &period).await? {
        match e.kind.as_str() {
            "usage" | "contribution" => {
                let m = members.entry(e.account.clone()).or_insert_with(|| Activity {
                    member: e.account.clone(),
                    usage_minor: 0,
                    contribution_gpu_hours: 0,
                });
                if e.kind == "usage" {
                    m.usage_minor = m.usage_minor.saturating_add(minor(e.amount_minor));
                } else {
                    m.contribution_gpu_hours = m.contribution_gpu_hours.saturating_add(minor(e.quantity));
                }
            }
            "charge" => {
                input.surplus_income_minor = input.surplus_income_minor.saturating_add(minor(e.amount_minor))
            }
            "cost" => input.costs_minor = input.costs_minor.saturating_add(minor(e.amount_minor)),
            _ => {}
        }
    }
    input.members = members.into_values().collect();
    distribute(&input, rules).map_err(|e| BooksError::Other(anyhow::anyhow!("{e}")))
}

/// The PatronageDistribution of a closed `period` under the bylaws' patronage rules,
/// in the co-op's currency: what a proposal to distribute it must carry.
///
/// # Errors
///
/// The bylaws set no patronage rules, the period is open, or the database fails.
pub async fn distribution(
    db: &DatabaseConnection,
    period: &str,
    coop: &synco_crds::Cooperative,
) -> Result<synco_crds::PatronageDistribution, BooksError> {
    let bylaws = coop.spec.patronage.as_ref().ok_or(BooksError::NoRules)?;
    let (period, _) = export::month_bounds(period)?;
    let d = patronage(db, &period, &synco_policies::crd::patronage::rules(bylaws)).await?;
    let currency = coop
        .spec
        .surplus
        .as_ref()
        .map(|s| s.currency.clone())
        .unwrap_or_default();
    Ok(synco_policies::crd::patronage::effect(&period, &currency, &d))
}

/// The refunds recorded for a period, if any.
///
/// # Errors
///
/// The database cannot be read.
pub async fn recorded<C: ConnectionTrait>(
    db: &C,
    period: &str,
) -> Result<Option<ledger_distribution::Model>, BooksError> {
    Ok(ledger_distribution::Entity::find_by_id(period.to_owned())
        .one(db)
        .await?)
}

/// What [`record_refunds`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Posted now, in the open month.
    Now(Vec<ledger_entry::Model>),
    /// The period's refunds were recorded before (by this proposal or another).
    Before(ledger_distribution::Model),
}

/// Records the refunds of a passed PatronageDistribution `proposal`, once per period,
/// inside the caller's transaction: for each member a `refund` entry (the cash part)
/// and a `retained` entry (its equity), and a `reserve` entry, all in the open month.
///
/// # Errors
///
/// The distribution does not add up, its period is not closed, or the database fails.
pub async fn record_refunds_in<C: ConnectionTrait>(
    tx: &C,
    proposal: &str,
    d: &synco_crds::PatronageDistribution,
) -> Result<Recorded, BooksError> {
    d.check().map_err(BooksError::Refunds)?;
    if !is_closed(tx, &d.period).await? {
        return Err(BooksError::Open(d.period.clone()));
    }
    if tx.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        // The same lock posting takes, first: two replicas record one after the other.
        tx.execute_unprepared("LOCK TABLE ledger_entries IN EXCLUSIVE MODE")
            .await?;
    }
    if let Some(before) = recorded(tx, &d.period).await? {
        return Ok(Recorded::Before(before));
    }
    let open = crate::quota::month_of(jiff::Timestamp::now());
    let memo = |what: &str| format!("patronage {what} for {} (proposal {proposal})", d.period);
    let entry = |kind: &str, account: &str, amount: i64, what: &str| NewEntry {
        period: open.clone(),
        kind: kind.to_owned(),
        account: account.to_owned(),
        amount_minor: amount,
        quantity: 0,
        currency: d.currency.clone(),
        memo: memo(what),
    };
    let mut entries = Vec::new();
    for r in &d.refunds {
        entries.push(entry("refund", &r.member, r.cash_minor, "refund paid in cash"));
        entries.push(entry(
            "retained",
            &r.member,
            r.retained_minor,
            "refund retained as equity",
        ));
    }
    entries.push(entry(
        "reserve",
        "reserve",
        d.reserve_minor,
        "surplus to the collective reserve",
    ));
    let posted = post_in(tx, &entries).await?;
    let first = posted.first().map_or(0, |e| e.id);
    let last = posted.last().map_or(0, |e| e.id);
    ledger_distribution::Entity::insert(ledger_distribution::ActiveModel {
        period: Set(d.period.clone()),
        proposal: Set(proposal.to_owned()),
        first_id: Set(first),
        last_id: Set(last),
        recorded_at: Set(jiff::Timestamp::now().to_string()),
    })
    .exec(tx)
    .await?;
    Ok(Recorded::Now(posted))
}

/// [`record_refunds_in`] in a transaction of its own.
///
/// # Errors
///
/// As [`record_refunds_in`].
pub async fn record_refunds(
    db: &DatabaseConnection,
    proposal: &str,
    d: &synco_crds::PatronageDistribution,
) -> Result<Recorded, BooksError> {
    let tx = db.begin().await?;
    let recorded = record_refunds_in(&tx, proposal, d).await?;
    tx.commit().await?;
    Ok(recorded)
}

/// Records every Applied PatronageDistribution's refunds that are not in the books yet
/// (in cluster mode the operator applies the proposal and the books, in this database,
/// follow; in standalone mode they were recorded with the Applied phase and this finds
/// nothing to do). Returns the proposals whose refunds it recorded.
///
/// # Errors
///
/// The store or the database cannot be read.
pub async fn record_applied(
    db: &DatabaseConnection,
    store: &dyn crate::governance::GovernanceStore,
) -> anyhow::Result<Vec<String>> {
    let mut done = Vec::new();
    for p in store.proposals().await? {
        let Some(status) = &p.status else { continue };
        if p.spec.kind != synco_crds::ProposalKind::PatronageDistribution
            || status.phase != synco_crds::ProposalPhase::Applied
        {
            continue;
        }
        let Some(d) = status
            .decided_effect
            .as_ref()
            .and_then(|e| e.patronage_distribution.as_ref())
        else {
            continue;
        };
        if recorded(db, &d.period).await?.is_some() {
            continue;
        }
        let name = p.metadata.name.clone().unwrap_or_default();
        match record_refunds(db, &name, d).await {
            Ok(Recorded::Now(entries)) => {
                tracing::info!(proposal = %name, period = %d.period, entries = entries.len(), "patronage refunds recorded");
                done.push(name);
            }
            Ok(Recorded::Before(_)) => {}
            Err(e) => {
                tracing::error!(proposal = %name, period = %d.period, error = %e, "cannot record the refunds")
            }
        }
    }
    Ok(done)
}

/// Keeps the books up with the co-op: records passed refunds and samples contributed
/// nodes every `every`, until `stop`.
pub async fn keep(
    db: DatabaseConnection,
    store: std::sync::Arc<dyn crate::governance::GovernanceStore>,
    every: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        if let Err(e) = record_applied(&db, store.as_ref()).await {
            tracing::warn!(error = %e, "cannot look for passed refunds; retrying");
        }
        match store.objects().await {
            Ok(objects) => {
                let nodes = synco_policies::crd::allocation::contributed_nodes(&objects.pools);
                if let Err(e) = sample_contributions(&db, jiff::Timestamp::now(), &nodes).await {
                    tracing::warn!(error = %e, "cannot sample the contributed nodes; retrying");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the co-op's pools; retrying"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// Entries as CSV (header first).
#[must_use]
pub fn csv(entries: &[ledger_entry::Model]) -> String {
    let mut out =
        String::from("id,period,kind,account,amount_minor,quantity,currency,memo,created_at,hash\n");
    for e in entries {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},\"{}\",{},{}\n",
            e.id,
            e.period,
            e.kind,
            e.account,
            e.amount_minor,
            e.quantity,
            e.currency,
            e.memo.replace('"', "\"\""),
            e.created_at,
            e.hash
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_cannot_borrow_from_the_next() {
        let e = |account: &str, memo: &str| NewEntry {
            period: "2026-11".into(),
            kind: "cost".into(),
            account: account.into(),
            amount_minor: 1,
            quantity: 0,
            currency: "EUR".into(),
            memo: memo.into(),
        };
        assert_ne!(
            hash(GENESIS, 1, &e("coopx", "y"), "t"),
            hash(GENESIS, 1, &e("coop", "xy"), "t")
        );
        assert_eq!(hash(GENESIS, 1, &e("a", "b"), "t").len(), 64);
    }
}
