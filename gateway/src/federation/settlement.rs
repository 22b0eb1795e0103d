//! The settlement ledger between two co-ops: per peer and per month, the tokens lent
//! to it and borrowed from it, and their cost under the bylaws' price. Both co-ops
//! record every federated request with the same request id, so two ledgers can be
//! compared in total and record by record ([`records`]).

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::db::usage_record;
use crate::metering::export::month_bounds;

/// Requests and tokens one way.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Flow {
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub tokens: u64,
    /// Millionths of a minor unit, at the bylaws' price (0 under reciprocity).
    pub cost_micro: u64,
}

/// One co-op's ledger with one peer for one month.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Settlement {
    /// The co-op whose ledger this is.
    pub coop: String,
    pub peer: String,
    pub month: String,
    /// Served here for the peer.
    pub lent: Flow,
    /// Served by the peer for this co-op's members.
    pub borrowed: Flow,
    /// Tokens lent minus tokens borrowed.
    pub balance_tokens: i64,
    /// The price's currency (empty under reciprocity).
    pub currency: String,
    /// What the peer owes this co-op (negative: what this co-op owes), in millionths
    /// of a minor unit.
    pub balance_micro: i64,
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The ledger of `coop` with `peer` in `month` (`YYYY-MM`).
pub async fn settlement(
    db: &DatabaseConnection,
    coop: &str,
    peer: &str,
    month: &str,
    currency: &str,
) -> anyhow::Result<Settlement> {
    let (from, to) = month_bounds(month)?;
    let sum = |c: &str| Expr::cust(format!("CAST(COALESCE(SUM({c}), 0) AS BIGINT)"));
    let rows: Vec<(String, i64, i64, i64, i64)> = usage_record::Entity::find()
        .select_only()
        .column(usage_record::Column::CallerKind)
        .column_as(Expr::cust("CAST(COUNT(*) AS BIGINT)"), "requests")
        .column_as(sum("prompt_tokens"), "prompt")
        .column_as(sum("completion_tokens"), "completion")
        .column_as(sum("peer_cost_micro"), "cost")
        .filter(usage_record::Column::Peer.eq(peer))
        .filter(usage_record::Column::FinishedAt.gte(from))
        .filter(usage_record::Column::FinishedAt.lt(to))
        .group_by(usage_record::Column::CallerKind)
        .into_tuple()
        .all(db)
        .await?;
    let (mut lent, mut borrowed) = (Flow::default(), Flow::default());
    for (kind, requests, prompt, completion, cost) in rows {
        let flow = if kind == crate::admission::CallerKind::Peer.as_str() {
            &mut lent
        } else {
            &mut borrowed
        };
        flow.requests += u(requests);
        flow.prompt_tokens += u(prompt);
        flow.completion_tokens += u(completion);
        flow.tokens = flow.prompt_tokens + flow.completion_tokens;
        flow.cost_micro += u(cost);
    }
    Ok(Settlement {
        coop: coop.to_owned(),
        peer: peer.to_owned(),
        month: month.to_owned(),
        balance_tokens: signed(lent.tokens) - signed(borrowed.tokens),
        balance_micro: signed(lent.cost_micro) - signed(borrowed.cost_micro),
        currency: currency.to_owned(),
        lent,
        borrowed,
    })
}

/// One federated request in a ledger.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub request_id: String,
    /// `lent` or `borrowed`.
    pub direction: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_micro: u64,
}

/// Every federated request with `peer` in `month`, by request id.
pub async fn records(db: &DatabaseConnection, peer: &str, month: &str) -> anyhow::Result<Vec<Entry>> {
    let (from, to) = month_bounds(month)?;
    let rows = usage_record::Entity::find()
        .filter(usage_record::Column::Peer.eq(peer))
        .filter(usage_record::Column::FinishedAt.gte(from))
        .filter(usage_record::Column::FinishedAt.lt(to))
        .order_by_asc(usage_record::Column::RequestId)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| Entry {
            direction: if r.caller_kind == crate::admission::CallerKind::Peer.as_str() {
                "lent"
            } else {
                "borrowed"
            }
            .to_owned(),
            request_id: r.request_id,
            prompt_tokens: u(r.prompt_tokens),
            completion_tokens: u(r.completion_tokens),
            cost_micro: u(r.peer_cost_micro),
        })
        .collect())
}

/// Tokens lent to and borrowed from `peer` in `month` (for the reciprocity rule).
pub async fn balance(db: &DatabaseConnection, peer: &str, month: &str) -> anyhow::Result<(u64, u64)> {
    let s = settlement(db, "", peer, month, "").await?;
    Ok((s.lent.tokens, s.borrowed.tokens))
}
