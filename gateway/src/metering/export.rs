//! Reading the usage records back: a caller's month, the admin's export per caller
//! and month, customers' statements and the co-op's surplus revenue.
//!
//! Money is summed as integers in millionths of a minor unit (`cost_micro`), exactly
//! as each record was charged, so a statement equals the sum of its records to the
//! unit; `*_minor` figures round that total up to whole minor units.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::db::usage_record;
use crate::quota::MICRO;

/// Totals of some usage records.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_micro: u64,
}

impl Totals {
    /// Totals from a query's sums (negative sums, which cannot happen, read as 0).
    fn from_sums(requests: i64, prompt: i64, completion: i64, cost: i64) -> Self {
        Self {
            requests: u(requests),
            prompt_tokens: u(prompt),
            completion_tokens: u(completion),
            cost_micro: u(cost),
        }
    }

    pub fn tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// One line of the export: a caller (or a customer's model) in a month.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Line {
    pub key: String,
    pub kind: String,
    pub currency: String,
    #[serde(flatten)]
    pub totals: Totals,
}

/// A customer's monthly statement.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Statement {
    pub customer: String,
    pub month: String,
    pub currency: String,
    /// Per model.
    pub lines: Vec<Line>,
    pub total: Totals,
    /// The total in whole minor units, rounded up.
    pub total_minor: u64,
}

/// `YYYY-MM` and the month after it, as the bounds of `finished_at`.
pub fn month_bounds(month: &str) -> anyhow::Result<(String, String)> {
    let (y, m) = month
        .split_once('-')
        .ok_or_else(|| anyhow::anyhow!("month must be YYYY-MM, not {month}"))?;
    let (y, m): (u32, u32) = (y.parse()?, m.parse()?);
    anyhow::ensure!((1..=12).contains(&m), "month must be YYYY-MM, not {month}");
    let next = if m == 12 {
        format!("{:04}-01", y + 1)
    } else {
        format!("{y:04}-{:02}", m + 1)
    };
    Ok((format!("{y:04}-{m:02}"), next))
}

fn sum(column: &str) -> sea_orm::sea_query::SimpleExpr {
    // CAST: Postgres sums BIGINT as NUMERIC.
    Expr::cust(format!("CAST(COALESCE(SUM({column}), 0) AS BIGINT)"))
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

type Row = (String, String, String, i64, i64, i64, i64);

/// Totals grouped by `group` (a column name) within a month, optionally for one caller.
async fn grouped(
    db: &DatabaseConnection,
    month: &str,
    caller: Option<&str>,
    group: usage_record::Column,
) -> anyhow::Result<Vec<Line>> {
    let (from, to) = month_bounds(month)?;
    let mut query = usage_record::Entity::find()
        .select_only()
        .column(group)
        .column(usage_record::Column::CallerKind)
        .column(usage_record::Column::Currency)
        .column_as(Expr::cust("CAST(COUNT(*) AS BIGINT)"), "requests")
        .column_as(sum("prompt_tokens"), "prompt")
        .column_as(sum("completion_tokens"), "completion")
        .column_as(sum("cost_micro"), "cost")
        .filter(usage_record::Column::FinishedAt.gte(from))
        .filter(usage_record::Column::FinishedAt.lt(to))
        .group_by(group)
        .group_by(usage_record::Column::CallerKind)
        .group_by(usage_record::Column::Currency);
    if let Some(caller) = caller {
        query = query.filter(usage_record::Column::Caller.eq(caller));
    }
    let rows: Vec<Row> = query.into_tuple().all(db).await?;
    let mut lines: Vec<Line> = rows
        .into_iter()
        .map(|(key, kind, currency, requests, prompt, completion, cost)| Line {
            key,
            kind,
            currency,
            totals: Totals::from_sums(requests, prompt, completion, cost),
        })
        .collect();
    lines.sort_by(|a, b| a.key.cmp(&b.key).then(a.currency.cmp(&b.currency)));
    Ok(lines)
}

fn total(lines: &[Line]) -> Totals {
    lines.iter().fold(Totals::default(), |mut t, l| {
        t.requests += l.totals.requests;
        t.prompt_tokens += l.totals.prompt_tokens;
        t.completion_tokens += l.totals.completion_tokens;
        t.cost_micro += l.totals.cost_micro;
        t
    })
}

/// One caller's usage in a month.
pub async fn caller_month(db: &DatabaseConnection, caller: &str, month: &str) -> anyhow::Result<Totals> {
    Ok(total(
        &grouped(db, month, Some(caller), usage_record::Column::Caller).await?,
    ))
}

/// Every caller's usage in a month (the admin export).
pub async fn by_caller(db: &DatabaseConnection, month: &str) -> anyhow::Result<Vec<Line>> {
    grouped(db, month, None, usage_record::Column::Caller).await
}

/// A customer's statement for a month.
pub async fn statement(db: &DatabaseConnection, customer: &str, month: &str) -> anyhow::Result<Statement> {
    let lines = grouped(db, month, Some(customer), usage_record::Column::Model).await?;
    let total = total(&lines);
    Ok(Statement {
        customer: customer.to_owned(),
        month: month.to_owned(),
        currency: lines
            .iter()
            .map(|l| l.currency.clone())
            .find(|c| !c.is_empty())
            .unwrap_or_default(),
        total_minor: total.cost_micro.div_ceil(MICRO),
        lines,
        total,
    })
}

/// The co-op's surplus revenue in a month: customers' charges, per currency.
pub async fn surplus_revenue(db: &DatabaseConnection, month: &str) -> anyhow::Result<Vec<Line>> {
    let lines = by_caller(db, month).await?;
    let mut per_currency: std::collections::BTreeMap<String, Totals> = Default::default();
    for l in lines.iter().filter(|l| l.kind == "customer") {
        let t = per_currency.entry(l.currency.clone()).or_default();
        t.requests += l.totals.requests;
        t.prompt_tokens += l.totals.prompt_tokens;
        t.completion_tokens += l.totals.completion_tokens;
        t.cost_micro += l.totals.cost_micro;
    }
    Ok(per_currency
        .into_iter()
        .map(|(currency, totals)| Line {
            key: "surplus".to_owned(),
            kind: "customer".to_owned(),
            currency,
            totals,
        })
        .collect())
}

/// What a caller has been charged in all, in millionths of a minor unit.
pub async fn caller_cost_ever(db: &DatabaseConnection, caller: &str) -> anyhow::Result<u64> {
    let sum: Option<i64> = usage_record::Entity::find()
        .select_only()
        .column_as(sum("cost_micro"), "cost")
        .filter(usage_record::Column::Caller.eq(caller))
        .into_tuple()
        .one(db)
        .await?;
    Ok(u(sum.unwrap_or(0)))
}

/// The first `len` characters of `finished_at` (a UTC RFC 3339 time): 10 for its day,
/// 7 for its month.
fn prefix(len: u8) -> sea_orm::sea_query::SimpleExpr {
    Expr::cust(format!("SUBSTR(finished_at, 1, {len})"))
}

/// One caller's usage on each day of a month that it used anything, oldest first.
pub async fn caller_days(
    db: &DatabaseConnection,
    caller: &str,
    month: &str,
) -> anyhow::Result<Vec<(String, Totals)>> {
    let (from, to) = month_bounds(month)?;
    let rows: Vec<(String, i64, i64, i64, i64)> = usage_record::Entity::find()
        .select_only()
        .column_as(prefix(10), "day")
        .column_as(Expr::cust("CAST(COUNT(*) AS BIGINT)"), "requests")
        .column_as(sum("prompt_tokens"), "prompt")
        .column_as(sum("completion_tokens"), "completion")
        .column_as(sum("cost_micro"), "cost")
        .filter(usage_record::Column::Caller.eq(caller))
        .filter(usage_record::Column::FinishedAt.gte(from))
        .filter(usage_record::Column::FinishedAt.lt(to))
        .group_by(prefix(10))
        .order_by_asc(prefix(10))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(day, requests, prompt, completion, cost)| {
            (day, Totals::from_sums(requests, prompt, completion, cost))
        })
        .collect())
}

/// Customers' charges in each month from `first` to `last` (`YYYY-MM`, both included)
/// that had any, per currency, oldest first: the co-op's surplus revenue by month.
pub async fn surplus_by_month(
    db: &DatabaseConnection,
    first: &str,
    last: &str,
) -> anyhow::Result<Vec<(String, Line)>> {
    let (from, _) = month_bounds(first)?;
    let (_, to) = month_bounds(last)?;
    let rows: Vec<(String, String, i64, i64, i64, i64)> = usage_record::Entity::find()
        .select_only()
        .column_as(prefix(7), "month")
        .column(usage_record::Column::Currency)
        .column_as(Expr::cust("CAST(COUNT(*) AS BIGINT)"), "requests")
        .column_as(sum("prompt_tokens"), "prompt")
        .column_as(sum("completion_tokens"), "completion")
        .column_as(sum("cost_micro"), "cost")
        .filter(usage_record::Column::CallerKind.eq("customer"))
        .filter(usage_record::Column::FinishedAt.gte(from))
        .filter(usage_record::Column::FinishedAt.lt(to))
        .group_by(prefix(7))
        .group_by(usage_record::Column::Currency)
        .order_by_asc(prefix(7))
        .order_by_asc(usage_record::Column::Currency)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(month, currency, requests, prompt, completion, cost)| {
            let line = Line {
                key: "surplus".to_owned(),
                kind: "customer".to_owned(),
                currency,
                totals: Totals::from_sums(requests, prompt, completion, cost),
            };
            (month, line)
        })
        .collect())
}

/// The `n` months up to and including `last` (`YYYY-MM`), oldest first.
///
/// # Errors
///
/// `last` is not a month.
pub fn months_to(last: &str, n: u32) -> anyhow::Result<Vec<String>> {
    let (first, _) = month_bounds(last)?;
    let (y, m) = first.split_once('-').unwrap_or_default();
    let index = y.parse::<i64>()? * 12 + m.parse::<i64>()? - 1;
    Ok((0..i64::from(n))
        .rev()
        .map(|back| {
            let i = index - back;
            format!("{:04}-{:02}", i.div_euclid(12), i.rem_euclid(12) + 1)
        })
        .collect())
}

/// Lines as CSV (header first).
pub fn csv(lines: &[Line]) -> String {
    let mut out =
        String::from("key,kind,currency,requests,prompt_tokens,completion_tokens,cost_micro,cost_minor\n");
    for l in lines {
        let t = &l.totals;
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            l.key,
            l.kind,
            l.currency,
            t.requests,
            t.prompt_tokens,
            t.completion_tokens,
            t.cost_micro,
            t.cost_micro.div_ceil(MICRO)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_have_bounds() {
        assert_eq!(
            month_bounds("2026-07").unwrap(),
            ("2026-07".into(), "2026-08".into())
        );
        assert_eq!(
            month_bounds("2026-12").unwrap(),
            ("2026-12".into(), "2027-01".into())
        );
        assert!(month_bounds("2026-13").is_err());
        assert!(month_bounds("July").is_err());
    }

    #[test]
    fn months_run_back_across_years() {
        assert_eq!(
            months_to("2026-02", 4).unwrap(),
            ["2025-11", "2025-12", "2026-01", "2026-02"]
        );
        assert_eq!(months_to("2026-12", 1).unwrap(), ["2026-12"]);
        assert!(months_to("2026-00", 2).is_err());
    }
}
