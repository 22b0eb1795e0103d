//! What the governance API sends and receives. The JSON is the same in both modes: a
//! proposal is its custom resource's `spec` and `status` (camelCase, as `kubectl get
//! proposal -o json` shows them), with a few counts beside.

use serde::{Deserialize, Serialize};
use synco_crds::{
    Allocation, AllocationSplit, Proposal, ProposalEffect, ProposalKind, ProposalOption, ProposalSpec,
    ProposalStatus, Quota,
};
use synco_policies::lifecycle::BallotForm;

use crate::coop::CoopObjects;
use crate::error::ApiError;
use crate::metering::export;
use crate::quota::{MICRO, month_of};

/// A proposal as members read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProposalView {
    pub name: String,
    /// When it was proposed.
    pub created_at: Option<String>,
    pub spec: ProposalSpec,
    pub status: ProposalStatus,
    /// Ballots recorded so far (their content is published at the close).
    pub ballots_cast: u64,
    /// Comments in its discussion.
    pub comments: u64,
}

impl ProposalView {
    pub fn new(p: Proposal, ballots_cast: u64, comments: u64) -> Self {
        Self {
            name: p.metadata.name.clone().unwrap_or_default(),
            created_at: p.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()),
            spec: p.spec,
            status: p.status.unwrap_or_default(),
            ballots_cast,
            comments,
        }
    }
}

/// A new proposal, as a member sends it. The proposer is the caller; the voting rules,
/// window and electorate are the bylaws' and are not sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProposalRequest {
    /// Its name (lower-case letters, digits and `-`); made from the title when unset.
    #[serde(default)]
    pub name: Option<String>,
    pub kind: ProposalKind,
    pub title: String,
    #[serde(default)]
    pub body: String,
    /// When given, it must be the caller.
    #[serde(default)]
    pub proposer: Option<String>,
    #[serde(default)]
    pub options: Vec<ProposalOption>,
    #[serde(default)]
    pub effect: Option<ProposalEffect>,
    #[serde(default)]
    pub split: Option<AllocationSplit>,
    /// PatronageDistribution: the closed month (`YYYY-MM`) whose refunds the books work
    /// out, instead of an effect (one given must be what the books work out).
    #[serde(default)]
    pub patronage_period: Option<String>,
}

/// A ballot as a member sends it: exactly one of the ballot fields (see [`BallotForm`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BallotRequest {
    /// When given, it must be the caller: a member votes only as itself.
    #[serde(default)]
    pub member: Option<String>,
    #[serde(default)]
    pub position: Option<synco_policies::lifecycle::Position>,
    #[serde(default)]
    pub approvals: Option<Vec<String>>,
    #[serde(default)]
    pub scores: Option<std::collections::BTreeMap<String, u32>>,
    #[serde(default)]
    pub ranking: Option<Vec<String>>,
    #[serde(default)]
    pub points: Option<std::collections::BTreeMap<String, u32>>,
    /// Why the member votes so, for the record.
    #[serde(default)]
    pub comment: Option<String>,
}

impl BallotRequest {
    /// The ballot itself.
    #[must_use]
    pub fn form(&self) -> BallotForm {
        BallotForm {
            position: self.position,
            approvals: self.approvals.clone(),
            scores: self.scores.clone(),
            ranking: self.ranking.clone(),
            points: self.points.clone(),
        }
    }
}

/// The answer to a ballot: what was recorded and its receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BallotReceipt {
    pub proposal: String,
    pub member: String,
    /// Unix seconds.
    pub cast_at: i64,
    /// SHA-256 of the ballot: find it beside your ballot in the published record.
    pub receipt: String,
    pub ballot: BallotForm,
}

/// One comment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommentView {
    pub id: i64,
    pub proposal: String,
    pub member: String,
    pub reply_to: Option<i64>,
    pub body: String,
    pub created_at: String,
}

/// A new comment.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommentRequest {
    pub body: String,
    #[serde(default)]
    pub reply_to: Option<i64>,
}

/// A member's delegation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DelegationView {
    pub member: String,
    /// Whose ballot counts for this member when it does not vote.
    pub delegate: Option<String>,
    /// The members who delegate to this one.
    pub delegators: Vec<String>,
}

/// A delegation to set.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DelegationRequest {
    pub delegate: String,
}

/// The co-op as a member sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CoopView {
    pub cooperative: String,
    pub display_name: String,
    /// The allocation in force, with every caller's quota.
    pub allocation: Option<Allocation>,
    /// Earlier allocations, newest first (kept for audit).
    pub history: Vec<String>,
    /// The caller's own quota in the allocation in force.
    pub quota: Option<Quota>,
    /// The caller's usage this month.
    pub usage: UsageView,
    /// Surplus sold to customers this month.
    pub surplus: SurplusView,
    /// Surplus revenue in each of the twelve months up to this one, oldest first (a
    /// month without sales shows zero in the co-op's currency).
    #[serde(default)]
    pub revenue_by_month: Vec<MonthRevenue>,
}

/// A caller's usage in a month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageView {
    pub month: String,
    pub requests: u64,
    pub total_tokens: u64,
    pub monthly_token_budget: u64,
    pub remaining_tokens: u64,
    /// Each day of the month the caller used anything, oldest first.
    #[serde(default)]
    pub days: Vec<DayUsage>,
}

/// A caller's usage on one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DayUsage {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub requests: u64,
    pub tokens: u64,
    /// Tokens used in the month up to the end of this day.
    pub month_to_date: u64,
}

/// Surplus revenue in one month and currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MonthRevenue {
    /// `YYYY-MM`.
    pub month: String,
    pub currency: String,
    pub tokens_sold: u64,
    /// Customers' charges, rounded up to whole minor units.
    pub revenue_minor: u64,
}

/// Surplus sold in a month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SurplusView {
    pub month: String,
    pub currency: String,
    pub tokens_sold: u64,
    pub revenue_minor: u64,
}

/// Checks a proposal name: 1 to 63 lower-case letters, digits and `-`, starting and
/// ending with a letter or digit (a Kubernetes object name, so Votes can be named
/// `<proposal>-<member>`).
///
/// # Errors
///
/// Says what is wrong.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a proposal name: use 1 to 63 lower-case letters, digits and '-', \
             starting and ending with a letter or digit"
        ))
    }
}

/// A name for a proposal titled `title`: its words, then a random suffix.
#[must_use]
pub fn name_for(title: &str) -> String {
    let mut slug = String::new();
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
        if slug.len() >= 40 {
            break;
        }
    }
    let slug = slug.trim_end_matches('-');
    let suffix: u32 = rand::random();
    if slug.is_empty() {
        format!("proposal-{:06x}", suffix & 0xff_ffff)
    } else {
        format!("{slug}-{:06x}", suffix & 0xff_ffff)
    }
}

/// The co-op as `caller` sees it.
///
/// # Errors
///
/// The metering database cannot be read.
pub async fn coop_view(
    db: &sea_orm::DatabaseConnection,
    objects: &CoopObjects,
    caller: &str,
    month: Option<&str>,
) -> Result<CoopView, ApiError> {
    let coop = objects
        .cooperative()
        .map_err(|e| ApiError::Unavailable(format!("the co-op is not set up: {e}")))?;
    let in_force = objects.in_force().cloned();
    let mut history: Vec<&Allocation> = objects
        .allocations
        .iter()
        .filter(|a| a.metadata.name != in_force.as_ref().and_then(|f| f.metadata.name.clone()))
        .collect();
    history.sort_by_key(|a| std::cmp::Reverse(a.spec.version));
    let quota = in_force
        .as_ref()
        .and_then(|a| a.status.as_ref())
        .and_then(|s| s.quotas.iter().find(|q| q.name == caller).cloned());
    let month = match month {
        Some(m) => {
            let (m, _) =
                export::month_bounds(m).map_err(|e| ApiError::invalid_param("month", e.to_string()))?;
            m
        }
        None => month_of(jiff::Timestamp::now()),
    };
    let unavailable = |e: anyhow::Error| ApiError::Unavailable(format!("usage cannot be read now: {e}"));
    let totals = export::caller_month(db, caller, &month)
        .await
        .map_err(unavailable)?;
    let revenue = export::surplus_revenue(db, &month).await.map_err(unavailable)?;
    let budget = quota.as_ref().map_or(0, |q| q.monthly_token_budget);
    let mut so_far = 0;
    let days = export::caller_days(db, caller, &month)
        .await
        .map_err(unavailable)?
        .into_iter()
        .map(|(day, t)| {
            so_far += t.tokens();
            DayUsage {
                day,
                requests: t.requests,
                tokens: t.tokens(),
                month_to_date: so_far,
            }
        })
        .collect();
    let currency = coop
        .spec
        .surplus
        .as_ref()
        .map(|s| s.currency.clone())
        .unwrap_or_default();
    let months = export::months_to(&month, 12).map_err(unavailable)?;
    let sold = export::surplus_by_month(db, &months[0], &month)
        .await
        .map_err(unavailable)?;
    let mut revenue_by_month = Vec::new();
    for m in months {
        let mut any = false;
        for (_, line) in sold.iter().filter(|(at, _)| *at == m) {
            any = true;
            revenue_by_month.push(MonthRevenue {
                month: m.clone(),
                currency: line.currency.clone(),
                tokens_sold: line.totals.tokens(),
                revenue_minor: line.totals.cost_micro.div_ceil(MICRO),
            });
        }
        if !any {
            revenue_by_month.push(MonthRevenue {
                month: m,
                currency: currency.clone(),
                tokens_sold: 0,
                revenue_minor: 0,
            });
        }
    }
    Ok(CoopView {
        cooperative: coop.metadata.name.clone().unwrap_or_default(),
        display_name: coop.spec.display_name.clone(),
        history: history.iter().filter_map(|a| a.metadata.name.clone()).collect(),
        allocation: in_force,
        quota,
        usage: UsageView {
            month: month.clone(),
            requests: totals.requests,
            total_tokens: totals.tokens(),
            monthly_token_budget: budget,
            remaining_tokens: budget.saturating_sub(totals.tokens()),
            days,
        },
        surplus: SurplusView {
            month,
            currency,
            tokens_sold: revenue.iter().map(|l| l.totals.tokens()).sum(),
            revenue_minor: revenue
                .iter()
                .map(|l| l.totals.cost_micro)
                .sum::<u64>()
                .div_ceil(MICRO),
        },
        revenue_by_month,
    })
}
