//! `GET /v1/usage`: the calling Member's or Customer's usage this month against its quota.

use axum::extract::{Query, State};
use axum::{Extension, Json};

use crate::admission::Caller;
use crate::app::AppState;
use crate::auth::keys::kind_str as keys_kind;
use crate::error::ApiError;
use crate::metering::export;
use crate::quota::{MICRO, month_of};

#[derive(Debug, serde::Deserialize)]
pub struct UsageQuery {
    /// `YYYY-MM`; this month by default.
    month: Option<String>,
}

/// `GET /v1/usage?month=YYYY-MM`
pub async fn usage(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Query(query): Query<UsageQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (Some(accounts), Some(Extension(caller))) = (&state.accounts, caller) else {
        return Err(ApiError::NotFound(
            "/v1/usage (identity is not configured)".to_owned(),
        ));
    };
    let month = query.month.unwrap_or_else(|| month_of(jiff::Timestamp::now()));
    export::month_bounds(&month).map_err(|e| ApiError::invalid_param("month", e.to_string()))?;
    let totals = export::caller_month(&accounts.db, &caller.id, &month)
        .await
        .map_err(|e| ApiError::Unavailable(format!("usage cannot be read now: {e}")))?;
    let coop = accounts.coop.current();
    let limits = coop.limits(&caller.id);
    let credit = coop.prepaid_credit_minor.get(&caller.id).copied();
    // A prepaid customer's balance: its credit and top-ups, less all it was charged.
    let balance = match credit {
        Some(credit) => {
            let unavailable =
                |e: String| ApiError::Unavailable(format!("the balance cannot be read now: {e}"));
            let topups = crate::books::topups(&accounts.db, &caller.id)
                .await
                .map_err(|e| unavailable(e.to_string()))?;
            let spent = export::caller_cost_ever(&accounts.db, &caller.id)
                .await
                .map_err(|e| unavailable(e.to_string()))?;
            let topups = u64::try_from(topups).unwrap_or(0);
            let paid_micro = credit.saturating_add(topups).saturating_mul(MICRO);
            Some(serde_json::json!({
                "credit_minor": credit,
                "topups_minor": topups,
                "charged_micro_minor_units": spent,
                "remaining_minor": paid_micro.saturating_sub(spent) / MICRO,
            }))
        }
        None => None,
    };
    Ok(Json(serde_json::json!({
        "object": "usage",
        "caller": caller.id,
        "kind": keys_kind(caller.kind),
        "class": caller.class,
        "tier": caller.tier,
        "month": month,
        "requests": totals.requests,
        "prompt_tokens": totals.prompt_tokens,
        "completion_tokens": totals.completion_tokens,
        "total_tokens": totals.tokens(),
        "quota": {
            "monthly_token_budget": limits.monthly_budget,
            "remaining_tokens": limits.monthly_budget.saturating_sub(totals.tokens()),
            "tokens_per_second": limits.tokens_per_second,
            "floor_tokens_per_second": limits.floor_tokens_per_second,
            "concurrent_requests": limits.concurrency,
        },
        "cost": {
            "currency": coop.currency,
            "micro_minor_units": totals.cost_micro,
            "minor_units": totals.cost_micro.div_ceil(MICRO),
        },
        "prepaid_credit_minor": credit,
        "balance": balance,
    })))
}
