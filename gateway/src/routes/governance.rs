//! The members' governance API, the same in both modes (see `crate::governance`).
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/governance/proposals?phase=Open` | proposals, newest first |
//! | `POST /v1/governance/proposals` | open one (the proposer is the caller) |
//! | `GET /v1/governance/proposals/{name}` | one, with its result and audit |
//! | `DELETE /v1/governance/proposals/{name}` | withdraw it (its proposer, before any ballot) |
//! | `GET`, `POST /v1/governance/proposals/{name}/comments` | the discussion; comment or reply |
//! | `POST /v1/governance/proposals/{name}/votes` | cast a ballot; the answer has its receipt |
//! | `GET`, `POST /v1/governance/proposals/{name}/summary` | the assistant's cited summary; ask for one |
//! | `GET`, `POST /v1/governance/proposals/{name}/common-ground` | the common-ground round; start one (the assistant writes candidate statements) |
//! | `POST /v1/governance/proposals/{name}/common-ground/rankings` | rank the statements, best first |
//! | `POST /v1/governance/proposals/{name}/common-ground/choice` | close the ranking: Schulze picks a statement (the convener) |
//! | `POST /v1/governance/proposals/{name}/common-ground/critiques` | critique the chosen statement |
//! | `POST /v1/governance/proposals/{name}/common-ground/revision` | the assistant revises it once (the convener) |
//! | `POST /v1/governance/drafts` | the assistant drafts a proposal from plain words (nothing is created) |
//! | `GET /v1/governance/proposals/{name}/record` | the published ballots and record, after the close |
//! | `GET`, `PUT`, `DELETE /v1/governance/delegation` | your delegation, and who delegates to you |
//! | `GET /v1/governance/coop` | the allocation in force, your quota and usage, the surplus sold |
//!
//! Members only: a customer gets 403, a request without a key 401.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;
use synco_crds::ProposalPhase;

use crate::admission::{Caller, CallerKind};
use crate::app::AppState;
use crate::error::{ApiError, ApiJson};
use crate::governance::views::{BallotRequest, CommentRequest, DelegationRequest};
use crate::governance::{Filter, Governance, ProposalRequest, common_ground};

/// The governance service and the calling member, or why not.
fn member(
    state: &AppState,
    caller: Option<Extension<Caller>>,
) -> Result<(Arc<Governance>, String), ApiError> {
    let governance = state
        .governance
        .clone()
        .ok_or_else(|| ApiError::NotFound("/v1/governance (this gateway serves no co-op)".to_owned()))?;
    let caller = caller
        .map(|Extension(c)| c)
        .ok_or_else(|| ApiError::Unauthenticated("An API key or token is required.".to_owned()))?;
    match caller.kind {
        CallerKind::Member => Ok((governance, caller.id)),
        CallerKind::Customer => Err(ApiError::PermissionDenied(
            "Only members take part in governance; customers buy surplus capacity.".to_owned(),
        )),
        CallerKind::Peer | CallerKind::Coop => Err(ApiError::PermissionDenied(
            "Peer co-ops borrow capacity; they do not take part in this co-op's governance.".to_owned(),
        )),
        CallerKind::Anonymous => Err(ApiError::Unauthenticated(
            "An API key or token is required.".to_owned(),
        )),
    }
}

fn list<T: serde::Serialize>(data: Vec<T>) -> Json<serde_json::Value> {
    Json(json!({"object": "list", "data": data}))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// Only proposals in this phase (`Open`, `Applied`, ...).
    phase: Option<String>,
}

/// `GET /v1/governance/proposals`
pub async fn proposals(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (g, _) = member(&state, caller)?;
    let phase = q
        .phase
        .map(|p| {
            serde_json::from_value::<ProposalPhase>(serde_json::Value::String(p.clone())).map_err(|_| {
                ApiError::invalid_param(
                    "phase",
                    format!(
                        "{p:?} is not a phase: Draft, Open, Passed, Rejected, NoQuorum, Applied, Withdrawn or Invalid"
                    ),
                )
            })
        })
        .transpose()?;
    Ok(list(g.list(Filter { phase }).await?))
}

/// `POST /v1/governance/proposals`
pub async fn propose(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    ApiJson(request): ApiJson<ProposalRequest>,
) -> Result<Response, ApiError> {
    let (g, me) = member(&state, caller)?;
    let view = g.propose(&me, request).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// `GET /v1/governance/proposals/{name}`
pub async fn proposal(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let (g, _) = member(&state, caller)?;
    Ok(Json(g.get(&name).await?).into_response())
}

/// `DELETE /v1/governance/proposals/{name}`
pub async fn withdraw(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let (g, me) = member(&state, caller)?;
    Ok(Json(g.withdraw(&me, &name).await?).into_response())
}

/// `GET /v1/governance/proposals/{name}/comments`
pub async fn comments(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (g, _) = member(&state, caller)?;
    Ok(list(g.discussion(&name).await?))
}

/// `POST /v1/governance/proposals/{name}/comments`
pub async fn comment(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<CommentRequest>,
) -> Result<Response, ApiError> {
    let (g, me) = member(&state, caller)?;
    let view = g.comment(&me, &name, &request.body, request.reply_to).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// `GET /v1/governance/proposals/{name}/summary`: the assistant's latest summary of
/// the discussion, labelled AI-written, with its provenance (404 when there is none).
pub async fn summary(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(name): Path<String>,
) -> Result<Json<crate::governance::assistant::Summary>, ApiError> {
    let (g, _) = member(&state, caller)?;
    g.get(&name).await?;
    crate::governance::assistant::latest(g.db(), &name)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("a summary of {name} (no summary available)")))
}

/// `POST /v1/governance/proposals/{name}/summary`: asks the assistant for a summary
/// now (201 with it).
pub async fn summarise(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let (g, _) = member(&state, caller)?;
    let summary = crate::governance::assistant::summarise(&state, &g, &name).await?;
    Ok((StatusCode::CREATED, Json(summary)).into_response())
}

/// `GET /v1/governance/proposals/{name}/common-ground`: the latest round.
pub async fn common_ground(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(name): Path<String>,
) -> Result<Json<common_ground::RoundView>, ApiError> {
    let (g, me) = member(&state, caller)?;
    Ok(Json(common_ground::current(&g, &me, &name).await?))
}

/// `POST /v1/governance/proposals/{name}/common-ground`: starts a round (201).
pub async fn start_common_ground(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let (g, me) = member(&state, caller)?;
    let round = common_ground::start(&state, &g, &me, &name).await?;
    Ok((StatusCode::CREATED, Json(round)).into_response())
}

/// A ranking of a round's statements.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankingRequest {
    /// Statement numbers, best first.
    ranking: Vec<u32>,
}

/// `POST /v1/governance/proposals/{name}/common-ground/rankings`
pub async fn rank_common_ground(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<RankingRequest>,
) -> Result<Json<common_ground::RoundView>, ApiError> {
    let (g, me) = member(&state, caller)?;
    Ok(Json(common_ground::rank(&g, &me, &name, request.ranking).await?))
}

/// `POST /v1/governance/proposals/{name}/common-ground/choice`
pub async fn choose_common_ground(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(name): Path<String>,
) -> Result<Json<common_ground::RoundView>, ApiError> {
    let (g, me) = member(&state, caller)?;
    Ok(Json(common_ground::choose(&g, &me, &name).await?))
}

/// A critique of the chosen statement.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CritiqueRequest {
    body: String,
}

/// `POST /v1/governance/proposals/{name}/common-ground/critiques`
pub async fn critique_common_ground(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<CritiqueRequest>,
) -> Result<Json<common_ground::RoundView>, ApiError> {
    let (g, me) = member(&state, caller)?;
    Ok(Json(
        common_ground::critique(&g, &me, &name, &request.body).await?,
    ))
}

/// `POST /v1/governance/proposals/{name}/common-ground/revision`
pub async fn revise_common_ground(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(name): Path<String>,
) -> Result<Json<common_ground::RoundView>, ApiError> {
    let (g, me) = member(&state, caller)?;
    Ok(Json(common_ground::revise(&state, &g, &me, &name).await?))
}

/// A drafting request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DraftRequest {
    /// What the proposal should do, in plain words.
    request: String,
}

/// `POST /v1/governance/drafts`: the assistant drafts a proposal from plain words, for
/// the member to review (nothing is created; `POST /v1/governance/proposals` creates it).
pub async fn draft(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    ApiJson(request): ApiJson<DraftRequest>,
) -> Result<Json<crate::governance::assistant::Draft>, ApiError> {
    let (g, me) = member(&state, caller)?;
    Ok(Json(
        crate::governance::assistant::draft(&state, &g, &me, &request.request).await?,
    ))
}

/// `POST /v1/governance/proposals/{name}/votes`
pub async fn vote(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<BallotRequest>,
) -> Result<Response, ApiError> {
    let (g, me) = member(&state, caller)?;
    if let Some(other) = request.member.as_deref().filter(|m| *m != me) {
        return Err(ApiError::PermissionDenied(format!(
            "You are {me}: you may cast your own ballot only, not {other}'s."
        )));
    }
    let receipt = g.cast(&me, &name, request.form(), request.comment).await?;
    Ok((StatusCode::CREATED, Json(receipt)).into_response())
}

/// `GET /v1/governance/proposals/{name}/record`
pub async fn record(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let (g, _) = member(&state, caller)?;
    Ok(Json(g.record(&name).await?).into_response())
}

/// `GET /v1/governance/delegation`
pub async fn delegation(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
) -> Result<Response, ApiError> {
    let (g, me) = member(&state, caller)?;
    Ok(Json(g.delegation(&me).await?).into_response())
}

/// `PUT /v1/governance/delegation`
pub async fn delegate(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    ApiJson(request): ApiJson<DelegationRequest>,
) -> Result<Response, ApiError> {
    let (g, me) = member(&state, caller)?;
    Ok(Json(g.delegate(&me, &request.delegate).await?).into_response())
}

/// `DELETE /v1/governance/delegation`
pub async fn revoke(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
) -> Result<Response, ApiError> {
    let (g, me) = member(&state, caller)?;
    Ok(Json(g.revoke(&me).await?).into_response())
}

#[derive(Debug, Deserialize)]
pub struct CoopQuery {
    /// `YYYY-MM`: the month whose usage is shown (this month by default).
    month: Option<String>,
}

/// `GET /v1/governance/coop?month=YYYY-MM`
pub async fn coop(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Query(q): Query<CoopQuery>,
) -> Result<Response, ApiError> {
    let (g, me) = member(&state, caller)?;
    Ok(Json(g.coop(&me, q.month.as_deref()).await?).into_response())
}
