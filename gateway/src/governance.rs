//! Governance over the API (cluster mode): members read the co-op's proposals and
//! cast ballots with the same key or token they call models with.
//!
//! - `GET /v1/governance/proposals`: every proposal in the co-op namespace with its
//!   window, phase and tally (as the operator last counted it).
//! - `POST /v1/governance/proposals/{name}/votes`: casts the caller's ballot. The
//!   gateway creates the Vote `<proposal>-<member>` for the authenticated member
//!   (its ServiceAccount may cast on behalf of any member; the admission policy
//!   refuses everyone else who is not that member). A ballot is final: a second one
//!   gets 409 `already_voted`; outside the voting window, 409 `voting_closed` or
//!   `voting_not_open`; an unknown proposal 404; a customer 403.
//!
//! `GET /governance` is a page for members that does the same from a browser.
//!
//! The operator counts the ballots; this module never tallies.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use serde::Deserialize;
use serde_json::json;
use synco_crds::{Position, Proposal, Vote, VoteSpec};

use crate::admission::{Caller, CallerKind};
use crate::error::{ApiError, ApiJson};

/// What the governance routes need.
#[derive(Clone)]
pub struct Governance {
    pub namespace: String,
    pub proposals: Store<Proposal>,
    pub votes: Api<Vote>,
}

impl std::fmt::Debug for Governance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Governance")
            .field("namespace", &self.namespace)
            .finish()
    }
}

/// A ballot as a member sends it: the fields of the proposal's voting method.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ballot {
    #[serde(default)]
    pub position: Option<Position>,
    #[serde(default)]
    pub approvals: Option<Vec<String>>,
    #[serde(default)]
    pub scores: Option<std::collections::BTreeMap<String, u32>>,
    #[serde(default)]
    pub ranking: Option<Vec<String>>,
    #[serde(default)]
    pub points: Option<std::collections::BTreeMap<String, u32>>,
    #[serde(default)]
    pub comment: Option<String>,
}

/// The members' page (`GET /governance`): sign in with a key, see the proposals, vote.
/// It calls the two routes below from the browser; it holds no secret itself.
pub async fn page() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("../web/governance.html"))
}

/// The routes (put behind the authentication middleware by the caller).
pub fn routes(governance: Arc<Governance>) -> Router {
    Router::new()
        .route("/v1/governance/proposals", get(list))
        .route("/v1/governance/proposals/{name}/votes", post(cast))
        .with_state(governance)
}

fn summary(p: &Proposal) -> serde_json::Value {
    let status = p.status.clone().unwrap_or_default();
    json!({
        "name": p.metadata.name,
        "kind": p.spec.kind,
        "title": p.spec.title,
        "body": p.spec.body,
        "proposer": p.spec.proposer,
        "options": p.spec.options,
        "voting_method": p.spec.voting.as_ref().map(|v| v.method),
        "opens_at": p.spec.opens_at,
        "closes_at": p.spec.closes_at,
        "phase": status.phase,
        "tally": status.tally,
        "turnout_percent": status.turnout_percent,
        "winner": status.winner,
        "counted_votes": status.counted_votes,
    })
}

async fn list(State(g): State<Arc<Governance>>) -> Json<serde_json::Value> {
    let mut proposals = g.proposals.state();
    proposals.sort_by(|a, b| b.spec.opens_at.cmp(&a.spec.opens_at));
    Json(json!({
        "object": "list",
        "data": proposals.iter().map(|p| summary(p)).collect::<Vec<_>>(),
    }))
}

async fn cast(
    State(g): State<Arc<Governance>>,
    caller: Option<Extension<Caller>>,
    Path(name): Path<String>,
    ApiJson(ballot): ApiJson<Ballot>,
) -> Result<Response, ApiError> {
    let caller = caller
        .map(|Extension(c)| c)
        .ok_or_else(|| ApiError::Unauthenticated("An API key or token is required.".to_owned()))?;
    if caller.kind != CallerKind::Member {
        return Err(ApiError::PermissionDenied(
            "Only members vote; customers buy surplus capacity.".to_owned(),
        ));
    }
    let proposal = g
        .proposals
        .get(&ObjectRef::new(&name).within(&g.namespace))
        .ok_or_else(|| ApiError::NotFound(format!("no proposal named {name}")))?;
    let now = jiff::Timestamp::now();
    if now < proposal.spec.opens_at.0 {
        return Err(ApiError::Conflict {
            message: format!("Voting on {name} opens at {}.", proposal.spec.opens_at.0),
            code: "voting_not_open".to_owned(),
        });
    }
    if now >= proposal.spec.closes_at.0 {
        return Err(ApiError::Conflict {
            message: format!("Voting on {name} closed at {}.", proposal.spec.closes_at.0),
            code: "voting_closed".to_owned(),
        });
    }
    let vote = Vote {
        metadata: ObjectMeta {
            name: Some(format!("{name}-{}", caller.id)),
            namespace: Some(g.namespace.clone()),
            ..ObjectMeta::default()
        },
        spec: VoteSpec {
            proposal: name.clone(),
            member: caller.id.clone(),
            position: ballot.position,
            approvals: ballot.approvals,
            scores: ballot.scores,
            ranking: ballot.ranking,
            points: ballot.points,
            comment: ballot.comment,
        },
        status: None,
    };
    match g.votes.create(&PostParams::default(), &vote).await {
        Ok(created) => Ok((StatusCode::CREATED, Json(created)).into_response()),
        Err(kube::Error::Api(status)) if status.code == 409 => Err(ApiError::Conflict {
            message: format!("{} has already voted on {name}; a ballot is final.", caller.id),
            code: "already_voted".to_owned(),
        }),
        // The API server's own rules (CEL on the Vote) explain what is wrong.
        Err(kube::Error::Api(status)) if status.code == 422 || status.code == 400 => {
            Err(ApiError::InvalidRequest {
                message: status.message,
                param: None,
                code: Some("invalid_ballot".to_owned()),
            })
        }
        Err(e) => Err(ApiError::BadGateway(format!("could not record the ballot: {e}"))),
    }
}
