//! The admin API: what `synco-gateway books` does from a shell, over HTTP for an
//! operator's tools. Off unless the gateway is given the SHA-256 of an admin token
//! (`--admin-token-sha256`); every call carries that token as a bearer token, compared
//! by its hash in constant time. Members' and customers' keys are never admin tokens.
//!
//! - `POST /admin/v1/books/topups` `{"customer", "minor", "memo"}`: tops up a prepaid
//!   customer's credit in the open month (201 with the ledger entry);
//! - `GET /admin/v1/books/statements/{account}?month=YYYY-MM[&format=csv]`: a member's
//!   or customer's statement from the books;
//! - `GET /admin/v1/books/verify`: walks the ledger's chain (200 intact, 409 broken,
//!   with the entry that broke it).

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::admission::CallerKind;
use crate::app::{Accounts, AppState};
use crate::books::{self, BooksError, NewEntry, Verdict};
use crate::error::{ApiError, ApiJson};

/// The admin routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/books/topups", post(topup))
        .route("/admin/v1/books/statements/{account}", get(statement))
        .route("/admin/v1/books/verify", get(verify))
}

/// The 32 bytes of a SHA-256 written in hex.
///
/// # Errors
///
/// It is not 64 hex digits.
pub fn parse_sha256(hex_digest: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = hex::decode(hex_digest.trim())
        .map_err(|e| anyhow::anyhow!("--admin-token-sha256 is not hex: {e}"))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| anyhow::anyhow!("--admin-token-sha256 is a SHA-256: 64 hex digits"))
}

/// The books, for a caller holding the admin token.
pub(crate) fn admin<'s>(state: &'s AppState, headers: &HeaderMap) -> Result<&'s Accounts, ApiError> {
    let accounts = state
        .accounts
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("the admin API (this gateway serves no co-op)".to_owned()))?;
    let Some(expected) = &accounts.admin_token_sha256 else {
        return Err(ApiError::PermissionDenied(
            "The admin API is off: start the gateway with --admin-token-sha256.".to_owned(),
        ));
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::Unauthenticated("The admin API needs the admin token as a bearer token.".to_owned())
        })?;
    let given: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
    if bool::from(given.ct_eq(expected)) {
        Ok(accounts)
    } else {
        Err(ApiError::Unauthenticated(
            "That is not the admin token.".to_owned(),
        ))
    }
}

fn books_error(e: BooksError) -> ApiError {
    match e {
        BooksError::Db(e) => ApiError::Unavailable(format!("the books cannot be reached now: {e}")),
        other => ApiError::invalid_param("month", other.to_string()),
    }
}

/// A top-up.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopupRequest {
    /// The prepaid Customer.
    customer: String,
    /// Minor units (cents), positive.
    minor: i64,
    #[serde(default)]
    memo: String,
}

/// `POST /admin/v1/books/topups`
async fn topup(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<TopupRequest>,
) -> Result<Response, ApiError> {
    let accounts = admin(&state, &headers)?;
    if request.minor <= 0 {
        return Err(ApiError::invalid_param(
            "minor",
            "a top-up is a positive number of minor units (a correction takes money back)",
        ));
    }
    let coop = accounts.coop.current();
    if coop.by_name(CallerKind::Customer, &request.customer).is_none() {
        return Err(ApiError::NotFound(format!(
            "no customer named {}",
            request.customer
        )));
    }
    if !coop.prepaid_credit_minor.contains_key(&request.customer) {
        return Err(ApiError::invalid_param(
            "customer",
            format!(
                "{} is invoiced, not prepaid: it has no credit to top up",
                request.customer
            ),
        ));
    }
    let entry = NewEntry {
        period: crate::quota::month_of(jiff::Timestamp::now()),
        kind: "topup".to_owned(),
        account: request.customer,
        amount_minor: request.minor,
        quantity: 0,
        currency: coop.currency.clone(),
        memo: if request.memo.is_empty() {
            "top-up through the admin API".to_owned()
        } else {
            request.memo
        },
    };
    let posted = books::post(&accounts.db, &[entry]).await.map_err(books_error)?;
    tracing::info!(customer = %posted[0].account, minor = posted[0].amount_minor, "topped up");
    Ok((StatusCode::CREATED, Json(&posted[0])).into_response())
}

#[derive(Debug, Deserialize)]
pub struct StatementQuery {
    month: Option<String>,
    /// `json` (the default) or `csv`.
    format: Option<String>,
}

/// `GET /admin/v1/books/statements/{account}`
async fn statement(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(account): Path<String>,
    Query(q): Query<StatementQuery>,
) -> Result<Response, ApiError> {
    let accounts = admin(&state, &headers)?;
    let month = q
        .month
        .unwrap_or_else(|| crate::quota::month_of(jiff::Timestamp::now()));
    let s = books::statement(&accounts.db, &account, &month)
        .await
        .map_err(books_error)?;
    match q.format.as_deref() {
        None | Some("json") => Ok(Json(s).into_response()),
        Some("csv") => Ok((
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            books::csv(&s.entries),
        )
            .into_response()),
        Some(other) => Err(ApiError::invalid_param(
            "format",
            format!("json or csv, not {other}"),
        )),
    }
}

/// `GET /admin/v1/books/verify`
async fn verify(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let accounts = admin(&state, &headers)?;
    match books::verify(&accounts.db).await.map_err(books_error)? {
        Verdict::Intact { entries, head } => {
            Ok(Json(serde_json::json!({"intact": true, "entries": entries, "head": head})).into_response())
        }
        Verdict::Broken { id, reason } => Ok((
            StatusCode::CONFLICT,
            Json(serde_json::json!({"intact": false, "broken_at": id, "reason": reason})),
        )
            .into_response()),
    }
}
