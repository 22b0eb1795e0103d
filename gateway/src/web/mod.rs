//! The members' web pages: server-rendered HTML (askama templates in `gateway/templates/`)
//! over the same governance service the API routes call, in both modes.
//!
//! Every flow is a plain HTML form and works with JavaScript off; the little script on
//! the pages only helps (a running total of dot points and allocation shares). A member
//! signs in with an API key or a token from the co-op's identity provider, once; the
//! pages then hold a session cookie ([`session`]). Every POST carries the session's CSRF
//! token, and a POST from another origin is refused.
//!
//! | page | what |
//! |---|---|
//! | `GET /governance` | the proposals (or the sign-in form) |
//! | `POST /governance/sign-in`, `/governance/sign-out` | start or end a session |
//! | `GET /governance/proposals/{name}` | a proposal: text, discussion, ballot, result |
//! | `POST /governance/proposals/{name}/ballot`, `.../comments`, `.../withdraw` | act on it |
//! | `POST /governance/proposals/{name}/summary` | ask the assistant for a cited summary |
//! | `POST /governance/proposals/{name}/common-ground[/ranking,/choice,/critique,/revision]` | a common-ground round |
//! | `GET`, `POST /governance/new` | open a proposal (`review` shows a prefilled form) |
//! | `POST /governance/drafts`, `/governance/drafts/create` | the assistant drafts a proposal; the member opens it |
//! | `GET`, `POST /governance/delegation` | set or revoke a delegation |
//! | `GET /governance/coop` | the allocation in force, your quota and usage, the surplus |

pub mod charts;
mod effects;
mod forms;
pub mod session;
mod views;

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::admission::CallerKind;
use crate::app::AppState;
use crate::error::ApiError;
use crate::governance::{Filter, Governance};
use session::Session;

/// The pages' routes (authenticated by session, not by the API's bearer token).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/governance", get(home))
        .route("/governance/sign-in", post(sign_in))
        .route("/governance/sign-out", post(sign_out))
        .route("/governance/proposals/{name}", get(proposal))
        .route("/governance/proposals/{name}/ballot", post(ballot))
        .route("/governance/proposals/{name}/comments", post(comment))
        .route("/governance/proposals/{name}/withdraw", post(withdraw))
        .route("/governance/proposals/{name}/summary", post(summarise))
        .route("/governance/proposals/{name}/common-ground", post(cg_start))
        .route(
            "/governance/proposals/{name}/common-ground/ranking",
            post(cg_rank),
        )
        .route(
            "/governance/proposals/{name}/common-ground/choice",
            post(cg_choose),
        )
        .route(
            "/governance/proposals/{name}/common-ground/critique",
            post(cg_critique),
        )
        .route(
            "/governance/proposals/{name}/common-ground/revision",
            post(cg_revise),
        )
        .route("/governance/drafts", post(draft))
        .route("/governance/drafts/create", post(create_draft))
        .route("/governance/new", get(new_form).post(propose))
        .route("/governance/delegation", get(delegation).post(delegate))
        .route("/governance/coop", get(coop))
}

/// A page that could not be served: its status and what to tell the member.
#[derive(Debug)]
pub struct PageError {
    status: StatusCode,
    message: String,
    /// Where the member can go on from.
    back: String,
    /// A page already made for it (the sign-in page, for a member signed out).
    page: Option<Box<Response>>,
}

impl PageError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            back: "/governance".to_owned(),
            page: None,
        }
    }

    fn page(page: Response) -> Self {
        Self {
            status: page.status(),
            message: String::new(),
            back: String::new(),
            page: Some(Box::new(page)),
        }
    }

    fn back_to(mut self, back: impl Into<String>) -> Self {
        self.back = back.into();
        self
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        Self::new(e.status_code(), e.to_string())
    }
}

impl From<sea_orm::DbErr> for PageError {
    fn from(e: sea_orm::DbErr) -> Self {
        tracing::warn!(error = %e, "web session store");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Sessions cannot be read now; try again shortly.",
        )
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if let Some(page) = self.page {
            return *page;
        }
        let page = views::ErrorPage {
            status: self.status.as_u16(),
            reason: self.status.canonical_reason().unwrap_or("Error"),
            message: &self.message,
            back: &self.back,
        };
        let mut response = render(&page);
        *response.status_mut() = self.status;
        response
    }
}

type PageResult = Result<Response, PageError>;

fn render<T: Template>(page: &T) -> Response {
    match page.render() {
        Ok(html) => {
            let mut r = Html(html).into_response();
            // Pages show a member's own data: never kept by shared caches.
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "a page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page failed to render").into_response()
        }
    }
}

/// The service and the signed-in member, from the session cookie.
struct Member {
    governance: Arc<Governance>,
    session: Session,
}

fn service(state: &AppState) -> Result<Arc<Governance>, PageError> {
    state
        .governance
        .clone()
        .ok_or_else(|| PageError::new(StatusCode::NOT_FOUND, "This gateway serves no co-op."))
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Why there is no member: no cookie (sign in), or a session that is over.
enum SignedOut {
    Never,
    Expired,
}

async fn signed_in(state: &AppState, headers: &HeaderMap) -> Result<Result<Member, SignedOut>, PageError> {
    let governance = service(state)?;
    let Some(token) = session::token_in(headers) else {
        return Ok(Err(SignedOut::Never));
    };
    let found = session::find(governance.db(), &token, now()).await?;
    let session = match found {
        Ok(s) => s,
        Err(session::Invalid::Expired) => return Ok(Err(SignedOut::Expired)),
        Err(session::Invalid::Unknown) => return Ok(Err(SignedOut::Never)),
    };
    // A member removed from the co-op since signing in is signed out.
    if let Some(accounts) = &state.accounts
        && accounts
            .coop
            .current()
            .by_name(CallerKind::Member, &session.member)
            .is_none()
    {
        return Ok(Err(SignedOut::Never));
    }
    Ok(Ok(Member { governance, session }))
}

/// The member, or the sign-in page (401) saying why.
async fn require(state: &AppState, headers: &HeaderMap) -> Result<Member, PageError> {
    match signed_in(state, headers).await {
        Ok(Ok(m)) => Ok(m),
        Ok(Err(why)) => {
            let message = match why {
                SignedOut::Never => "Sign in to take part.",
                SignedOut::Expired => "Your session has expired: sign in again.",
            };
            let mut r = render(&views::SignIn {
                message: Some(message),
            });
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            Err(PageError::page(r))
        }
        Err(e) => Err(e),
    }
}

/// Refuses a POST sent from another site (the `Origin` header, when the browser sends
/// it, must be this host).
fn same_origin(headers: &HeaderMap) -> Result<(), PageError> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h);
    if origin != "null" && origin_host.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(PageError::new(
            StatusCode::FORBIDDEN,
            "This form was sent from another site; it was refused.",
        ))
    }
}

/// The member behind a form POST: a valid session, the same origin, and the session's
/// CSRF token in the form.
async fn poster(state: &AppState, headers: &HeaderMap, form: &forms::Form) -> Result<Member, PageError> {
    same_origin(headers)?;
    let member = require(state, headers).await?;
    if !session::csrf_matches(&member.session, form.one("csrf")) {
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "The form's security token does not match your session (it may be from an old page): reload the page and try again.",
        ));
    }
    Ok(member)
}

fn secure(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

fn set_cookie(mut response: Response, cookie: &cookie::Cookie<'_>) -> Response {
    if let Ok(v) = HeaderValue::from_str(&cookie.to_string()) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

#[derive(Debug, Deserialize)]
struct HomeQuery {
    phase: Option<String>,
}

/// `GET /governance`: the proposals, or the sign-in form.
async fn home(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<HomeQuery>) -> PageResult {
    let member = match signed_in(&state, &headers).await? {
        Ok(m) => m,
        Err(SignedOut::Never) => return Ok(render(&views::SignIn { message: None })),
        Err(SignedOut::Expired) => {
            let mut r = render(&views::SignIn {
                message: Some("Your session has expired: sign in again."),
            });
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            return Ok(r);
        }
    };
    let phase = q
        .phase
        .filter(|p| !p.is_empty())
        .map(|p| serde_json::from_value(serde_json::Value::String(p.clone())))
        .transpose()
        .map_err(|_| PageError::new(StatusCode::BAD_REQUEST, "That is not a phase."))?;
    let all = member.governance.list(Filter { phase }).await?;
    Ok(render(&views::Proposals::new(&member.session, &all)))
}

/// `POST /governance/sign-in`: a key or identity token, once; then the session cookie.
async fn sign_in(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> PageResult {
    same_origin(&headers)?;
    let form = forms::Form::parse(&body);
    let governance = service(&state)?;
    let accounts = state
        .accounts
        .as_ref()
        .ok_or_else(|| PageError::new(StatusCode::NOT_FOUND, "This gateway serves no co-op."))?;
    let key = form.one("key").trim();
    let refuse = |status: StatusCode, message: &'static str| {
        let mut r = render(&views::SignIn {
            message: Some(message),
        });
        *r.status_mut() = status;
        Ok(r)
    };
    if key.is_empty() {
        return refuse(StatusCode::BAD_REQUEST, "Paste your API key or sign-in token.");
    }
    let caller = match accounts.auth.authenticate(key).await {
        Ok(c) => c,
        Err(ApiError::Unavailable(_)) => {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "Keys cannot be checked now; try again shortly.",
            );
        }
        Err(_) => return refuse(StatusCode::UNAUTHORIZED, "That key or token is not valid."),
    };
    if caller.kind != CallerKind::Member {
        return refuse(
            StatusCode::FORBIDDEN,
            "Only members take part in governance; customers buy surplus capacity through the API.",
        );
    }
    let ttl = state.settings.session_ttl;
    let (token, _) = session::start(governance.db(), &caller.id, now(), ttl).await?;
    Ok(set_cookie(
        see_other("/governance"),
        &session::cookie(&token, ttl, secure(&headers)),
    ))
}

/// `POST /governance/sign-out`: ends the session everywhere.
async fn sign_out(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> PageResult {
    let form = forms::Form::parse(&body);
    let member = poster(&state, &headers, &form).await?;
    if let Some(token) = session::token_in(&headers) {
        session::end(member.governance.db(), &token).await?;
    }
    Ok(set_cookie(
        see_other("/governance"),
        &session::cleared(secure(&headers)),
    ))
}

#[derive(Debug, Deserialize)]
struct ProposalQuery {
    receipt: Option<String>,
}

/// `GET /governance/proposals/{name}`
async fn proposal(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<ProposalQuery>,
) -> PageResult {
    let member = require(&state, &headers).await?;
    let g = &member.governance;
    let view = g.get(&name).await?;
    let comments = g.discussion(&name).await?;
    let mut page = views::ProposalPage::new(&member.session, &view, comments, q.receipt);
    // Governance goes on without the assistant: a summary that cannot be read is none.
    page.summary = crate::governance::assistant::latest(g.db(), &name)
        .await
        .ok()
        .flatten();
    page.assistant = has_assistant(&state);
    page.common_ground = crate::governance::common_ground::current(g, &member.session.member, &name)
        .await
        .ok();
    Ok(render(&page))
}

/// Whether the bylaws name a model for the assistant.
fn has_assistant(state: &AppState) -> bool {
    state
        .accounts
        .as_ref()
        .is_some_and(|a| a.coop.current().assistant.is_some())
}

/// What a common-ground form does.
enum CgStep {
    Start,
    Rank,
    Choose,
    Critique,
    Revise,
}

/// Runs one common-ground step for the posting member, then back to the section.
async fn cg_step(
    state: &AppState,
    headers: &HeaderMap,
    name: &str,
    body: &Bytes,
    step: CgStep,
) -> PageResult {
    use crate::governance::common_ground as cg;
    let form = forms::Form::parse(body);
    let member = poster(state, headers, &form).await?;
    let back = format!("/governance/proposals/{name}");
    let (g, me) = (&member.governance, member.session.member.as_str());
    let done = match step {
        CgStep::Start => cg::start(state, g, me, name).await,
        CgStep::Rank => {
            let ranking = forms::ranking_positions(&form, "rank-")
                .map_err(|m| PageError::new(StatusCode::BAD_REQUEST, m).back_to(&back))?;
            cg::rank(g, me, name, ranking).await
        }
        CgStep::Choose => cg::choose(g, me, name).await,
        CgStep::Critique => cg::critique(g, me, name, form.one("body")).await,
        CgStep::Revise => cg::revise(state, g, me, name).await,
    };
    done.map_err(|e| PageError::from(e).back_to(&back))?;
    Ok(see_other(&format!("{back}#common-ground")))
}

async fn cg_start(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> PageResult {
    cg_step(&s, &h, &name, &body, CgStep::Start).await
}

async fn cg_rank(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> PageResult {
    cg_step(&s, &h, &name, &body, CgStep::Rank).await
}

async fn cg_choose(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> PageResult {
    cg_step(&s, &h, &name, &body, CgStep::Choose).await
}

async fn cg_critique(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> PageResult {
    cg_step(&s, &h, &name, &body, CgStep::Critique).await
}

async fn cg_revise(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> PageResult {
    cg_step(&s, &h, &name, &body, CgStep::Revise).await
}

/// `POST /governance/drafts`: the assistant drafts a proposal from the member's words;
/// the page shows it for review (nothing is created).
async fn draft(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> PageResult {
    let form = forms::Form::parse(&body);
    let member = poster(&state, &headers, &form).await?;
    let drafted = crate::governance::assistant::draft(
        &state,
        &member.governance,
        &member.session.member,
        form.one("request"),
    )
    .await
    .map_err(|e| PageError::from(e).back_to("/governance/new"))?;
    Ok(render(&views::DraftPage::new(&member.session, drafted)))
}

/// `POST /governance/drafts/create`: opens the reviewed draft as the member's proposal.
async fn create_draft(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> PageResult {
    let form = forms::Form::parse(&body);
    let member = poster(&state, &headers, &form).await?;
    let request: crate::governance::ProposalRequest =
        serde_json::from_str(form.one("proposal")).map_err(|e| {
            PageError::new(
                StatusCode::BAD_REQUEST,
                format!("The draft does not read as a proposal: {e}"),
            )
            .back_to("/governance/new")
        })?;
    let made = member
        .governance
        .propose(&member.session.member, request)
        .await
        .map_err(|e| PageError::from(e).back_to("/governance/new"))?;
    Ok(see_other(&format!("/governance/proposals/{}", made.name)))
}

/// `POST /governance/proposals/{name}/summary`: asks the assistant for a summary.
async fn summarise(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> PageResult {
    let form = forms::Form::parse(&body);
    let member = poster(&state, &headers, &form).await?;
    let back = format!("/governance/proposals/{name}");
    crate::governance::assistant::summarise(&state, &member.governance, &name)
        .await
        .map_err(|e| PageError::from(e).back_to(&back))?;
    Ok(see_other(&format!("{back}#summary")))
}

/// `POST /governance/proposals/{name}/ballot`
async fn ballot(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> PageResult {
    let form = forms::Form::parse(&body);
    let member = poster(&state, &headers, &form).await?;
    let back = format!("/governance/proposals/{name}");
    let g = &member.governance;
    let view = g.get(&name).await?;
    let ballot =
        forms::ballot(&view, &form).map_err(|m| PageError::new(StatusCode::BAD_REQUEST, m).back_to(&back))?;
    let comment = Some(form.one("comment").trim().to_owned()).filter(|c| !c.is_empty());
    let receipt = g
        .cast(&member.session.member, &name, ballot, comment)
        .await
        .map_err(|e| PageError::from(e).back_to(&back))?;
    Ok(see_other(&format!("{back}?receipt={}", receipt.receipt)))
}

/// `POST /governance/proposals/{name}/comments`
async fn comment(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> PageResult {
    let form = forms::Form::parse(&body);
    let member = poster(&state, &headers, &form).await?;
    let back = format!("/governance/proposals/{name}");
    let reply_to = match form.one("reply_to").trim() {
        "" => None,
        id => Some(id.parse::<i64>().map_err(|_| {
            PageError::new(StatusCode::BAD_REQUEST, "That is not a comment to reply to.").back_to(&back)
        })?),
    };
    let made = member
        .governance
        .comment(&member.session.member, &name, form.one("body"), reply_to)
        .await
        .map_err(|e| PageError::from(e).back_to(&back))?;
    Ok(see_other(&format!("{back}#comment-{}", made.id)))
}

/// `POST /governance/proposals/{name}/withdraw`
async fn withdraw(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> PageResult {
    let form = forms::Form::parse(&body);
    let member = poster(&state, &headers, &form).await?;
    let back = format!("/governance/proposals/{name}");
    member
        .governance
        .withdraw(&member.session.member, &name)
        .await
        .map_err(|e| PageError::from(e).back_to(&back))?;
    Ok(see_other(&back))
}

#[derive(Debug, Deserialize)]
struct NewQuery {
    kind: Option<String>,
}

/// `GET /governance/new`
async fn new_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<NewQuery>,
) -> PageResult {
    let member = require(&state, &headers).await?;
    let objects = member.governance.objects().await?;
    let mut page = views::NewProposal::new(&member.session, q.kind.as_deref(), &objects, None, None);
    page.assistant = has_assistant(&state);
    Ok(render(&page))
}

/// `POST /governance/new`: opens the proposal; or, with `more`, shows the form again
/// with one more option (so that a member without JavaScript can add options).
async fn propose(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> PageResult {
    let mut form = forms::Form::parse(&body);
    let member = poster(&state, &headers, &form).await?;
    let g = &member.governance;
    let objects = g.objects().await?;
    let page = |form: &forms::Form, error: Option<String>| {
        views::NewProposal::new(
            &member.session,
            Some(form.one("kind")),
            &objects,
            Some(form),
            error,
        )
    };
    // A prefilled form (a common-ground statement) is shown for review, not opened.
    if !form.one("review").is_empty() {
        form.set("review", "");
        let mut page = page(&form, None);
        page.assistant = has_assistant(&state);
        return Ok(render(&page));
    }
    if !form.one("more").is_empty() {
        let more = forms::option_count(Some(&form)) + 1;
        form.set("option_count", &more.to_string());
        return Ok(render(&page(&form, None)));
    }
    let made = match forms::proposal(&form, &objects) {
        Ok(request) => g.propose(&member.session.member, request).await,
        Err(m) => Err(ApiError::invalid_param("proposal", m)),
    };
    match made {
        Ok(view) => Ok(see_other(&format!("/governance/proposals/{}", view.name))),
        Err(e) => {
            // The form again, with what was typed and what is wrong.
            let mut r = render(&page(&form, Some(e.to_string())));
            *r.status_mut() = e.status_code();
            Ok(r)
        }
    }
}

/// `GET /governance/delegation`
async fn delegation(State(state): State<AppState>, headers: HeaderMap) -> PageResult {
    let member = require(&state, &headers).await?;
    let mine = member.governance.delegation(&member.session.member).await?;
    let objects = member.governance.objects().await?;
    Ok(render(&views::DelegationPage::new(
        &member.session,
        &mine,
        &objects,
    )))
}

/// `POST /governance/delegation`: `action=set` with `delegate`, or `action=revoke`.
async fn delegate(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> PageResult {
    let form = forms::Form::parse(&body);
    let member = poster(&state, &headers, &form).await?;
    let me = &member.session.member;
    let back = "/governance/delegation";
    match form.one("action") {
        "revoke" => member.governance.revoke(me).await,
        _ => member.governance.delegate(me, form.one("delegate").trim()).await,
    }
    .map_err(|e| PageError::from(e).back_to(back))?;
    Ok(see_other(back))
}

#[derive(Debug, Deserialize)]
struct MonthQuery {
    month: Option<String>,
}

/// `GET /governance/coop?month=YYYY-MM`
async fn coop(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<MonthQuery>) -> PageResult {
    let member = require(&state, &headers).await?;
    let view = member
        .governance
        .coop(
            &member.session.member,
            q.month.as_deref().filter(|m| !m.is_empty()),
        )
        .await?;
    // The member's statement in the books, when the books can be read (the page shows
    // the rest without it).
    let statement =
        crate::books::statement(member.governance.db(), &member.session.member, &view.usage.month)
            .await
            .map_err(|e| tracing::warn!(error = %e, "the books cannot be read for the co-op page"))
            .ok();
    let mut page = views::CoopPage::new(&member.session, &view);
    page.statement = statement;
    Ok(render(&page))
}
