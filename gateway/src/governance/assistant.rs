//! The governance assistant's cited summaries: the co-op's own model summarises a
//! proposal's discussion, every sentence citing the comments it rests on as `[c12]`.
//! [`check`] keeps only the sentences whose citations all name comments of that
//! discussion; a sentence with none, or with one that does not exist, is dropped.
//!
//! The assistant runs on the model the bylaws name (`assistant.model`), within the
//! co-op's monthly governance budget (`assistant.monthlyTokens`), in the top tier, and
//! is metered to the co-op (caller `assistant`, kind `coop`), never to a member. It
//! never casts a ballot, closes a proposal or edits a comment: it only writes summaries,
//! each labelled as AI-written with its provenance. If its engine is slow or down,
//! governance goes on and the page says no summary is available.

use std::collections::BTreeSet;

use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, DatabaseConnection, EntityTrait as _, QueryFilter as _,
    QueryOrder as _,
};
use serde::{Deserialize, Serialize};

use super::Governance;
use super::views::{CommentView, ProposalView};
use crate::admission::{Caller, CallerKind};
use crate::app::AppState;
use crate::db::assistant_output;
use crate::error::ApiError;
use crate::openai::ChatCompletionRequest;

/// The version of the summary prompt below (part of every summary's provenance).
pub const TEMPLATE_VERSION: &str = "summary-v1";

/// The caller the assistant's requests are metered to (not a valid resource name, so
/// no member can share its budget).
pub const CALLER: &str = "coop:assistant";

/// How long a summary may take before the assistant gives up (governance goes on).
pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The most completion tokens a summary may take.
pub const MAX_TOKENS: u32 = 400;

/// One sentence of a summary and the comments it cites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sentence {
    pub text: String,
    pub cites: Vec<i64>,
}

/// What the checker kept and dropped.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Checked {
    pub sentences: Vec<Sentence>,
    /// Sentences with no citation.
    pub dropped_uncited: usize,
    /// Sentences citing a comment that is not in the discussion.
    pub dropped_fabricated: usize,
}

/// Splits text into sentences: after `.`, `!` or `?` followed by white space (or a
/// citation and then white space), and at line breaks.
fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            out.push(std::mem::take(&mut current));
            i += 1;
            continue;
        }
        current.push(c);
        if matches!(c, '.' | '!' | '?') {
            // Citations written after the full stop belong to this sentence.
            let mut j = i + 1;
            loop {
                while j < chars.len() && chars[j] == ' ' {
                    j += 1;
                }
                if j < chars.len() && chars[j] == '[' {
                    let Some(end) = chars[j..].iter().position(|&c| c == ']') else {
                        break;
                    };
                    current.push(' ');
                    current.extend(&chars[j..=j + end]);
                    j += end + 1;
                } else {
                    break;
                }
            }
            if j >= chars.len() || chars[j].is_whitespace() || chars[j - 1].is_whitespace() {
                out.push(std::mem::take(&mut current));
                i = j;
                continue;
            }
        }
        i += 1;
    }
    out.push(current);
    out.into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| s.chars().any(char::is_alphanumeric))
        .collect()
}

/// The citations in a sentence (`[c3]`, `[c3, c7]`, `[c3][c7]`), the sentence without
/// them, and whether a bracket held something that is not a citation.
fn citations(sentence: &str) -> (String, Vec<i64>, bool) {
    let mut text = String::new();
    let mut cites = Vec::new();
    let mut malformed = false;
    let mut rest = sentence;
    while let Some(start) = rest.find('[') {
        text.push_str(&rest[..start]);
        let Some(len) = rest[start..].find(']') else {
            text.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let inner = &rest[start + 1..start + len];
        for part in inner.split(',') {
            match part.trim().strip_prefix('c').and_then(|n| n.parse::<i64>().ok()) {
                Some(id) => cites.push(id),
                None => malformed = true,
            }
        }
        rest = &rest[start + len + 1..];
    }
    text.push_str(rest);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let text = text.replace(" .", ".").replace(" ,", ",");
    cites.sort_unstable();
    cites.dedup();
    (text, cites, malformed)
}

/// Keeps the sentences of `output` whose citations all name comments in `known`.
pub fn check(output: &str, known: &BTreeSet<i64>) -> Checked {
    let mut checked = Checked::default();
    for sentence in sentences(output) {
        let (text, cites, malformed) = citations(&sentence);
        if malformed || cites.iter().any(|c| !known.contains(c)) {
            checked.dropped_fabricated += 1;
        } else if cites.is_empty() {
            checked.dropped_uncited += 1;
        } else {
            checked.sentences.push(Sentence { text, cites });
        }
    }
    checked
}

/// The prompt: the instructions, then the proposal and its comments, each tagged
/// with its id.
pub fn prompt(proposal: &ProposalView, comments: &[CommentView]) -> (String, String) {
    prompt_parts(
        &proposal.name,
        &proposal.spec.title,
        &proposal.spec.body,
        comments,
    )
}

/// [`prompt`] from its parts.
pub fn prompt_parts(name: &str, title: &str, body: &str, comments: &[CommentView]) -> (String, String) {
    let system = "You summarise a co-operative's discussion of a proposal for its members. \
                  Write at most six short sentences. End every sentence with the ids of the \
                  comments it rests on, in square brackets, such as [c12] or [c12, c15]. \
                  Use only the comments below; cite no other ids; take no side and make no \
                  decision."
        .to_owned();
    let mut user = format!("Proposal {name}: {title}\n{body}\n\nComments:\n");
    for c in comments {
        let reply = c
            .reply_to
            .map(|r| format!(" (reply to c{r})"))
            .unwrap_or_default();
        user.push_str(&format!("[c{}] {}{reply}: {}\n", c.id, c.member, c.body));
    }
    (system, user)
}

/// A summary as it is stored and shown: its sentences and how they were made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub proposal: String,
    /// Always "AI-written": shown with the summary wherever it appears.
    pub label: String,
    pub sentences: Vec<Sentence>,
    pub dropped_uncited: usize,
    pub dropped_fabricated: usize,
    pub provenance: Provenance,
}

/// How a summary was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    /// The served model and where it ran (`embedded`, `external`).
    pub model: String,
    pub engine: String,
    /// The model's digest, when the engine can tell it.
    pub model_digest: Option<String>,
    pub template_version: String,
    /// The comments it was given (all of the discussion at the time).
    pub comments: Vec<i64>,
    pub temperature: f64,
    pub max_tokens: u32,
    pub seed: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// RFC 3339.
    pub created_at: String,
    /// The documents retrieval put in front of the model (`proposal/<name>`, `bylaws`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retrieved: Vec<String>,
}

impl Provenance {
    /// The provenance of `asked`, made from `template` over `comments` with these
    /// sampling parameters (temperature, max tokens, seed).
    pub fn of(
        model: String,
        asked: &Asked,
        template: &str,
        comments: Vec<i64>,
        sampling: (f64, u32, u64),
    ) -> Self {
        let (temperature, max_tokens, seed) = sampling;
        Self {
            model,
            engine: asked.engine.to_owned(),
            model_digest: asked.digest.clone(),
            template_version: template.to_owned(),
            comments,
            temperature,
            max_tokens,
            seed,
            prompt_tokens: asked.usage.prompt_tokens,
            completion_tokens: asked.usage.completion_tokens,
            created_at: jiff::Timestamp::now().to_string(),
            retrieved: Vec::new(),
        }
    }
}

pub(crate) fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("the assistant's summaries cannot be read now: {e}"))
}

pub(crate) fn conflict(message: String) -> ApiError {
    ApiError::Conflict {
        message,
        code: "assistant_unavailable".to_owned(),
    }
}

/// The model the bylaws name for the assistant (409 when they name none).
pub(crate) fn model_of(state: &AppState) -> Result<String, ApiError> {
    let accounts = state
        .accounts
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("the assistant (this gateway serves no co-op)".to_owned()))?;
    accounts
        .coop
        .current()
        .assistant
        .clone()
        .map(|(model, _)| model)
        .ok_or_else(|| {
            conflict("The bylaws name no model for the governance assistant (`assistant.model`).".to_owned())
        })
}

/// The text of an answer's first choice.
pub fn answer_text(answer: &crate::openai::ChatCompletion) -> String {
    answer
        .choices
        .first()
        .and_then(|c| c.message["content"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// What one of the assistant's answers was, and how it came.
#[derive(Debug, Clone)]
pub struct Asked {
    pub text: String,
    pub usage: crate::openai::Usage,
    /// The engine's kind (`embedded`, `external`).
    pub engine: &'static str,
    /// The digest of the weights, when the engine knows it.
    pub digest: Option<String>,
}

/// Runs `request` as the assistant within [`TIMEOUT`]. A budget or access refusal
/// keeps its status; anything else the engine does wrong is a 503 saying no `what`
/// comes this time.
pub(crate) async fn ask(
    state: &AppState,
    request: ChatCompletionRequest,
    what: &str,
) -> Result<Asked, ApiError> {
    let digest = state
        .models
        .get(&request.model)
        .ok()
        .and_then(|m| m.engine.digest());
    let (answer, engine) =
        tokio::time::timeout(TIMEOUT, crate::routes::openai::chat_as(state, caller(), request))
            .await
            .map_err(|_| ApiError::Unavailable(format!("The assistant took too long; no {what} this time.")))?
            .map_err(|e| match e {
                e @ (ApiError::RateLimited { .. } | ApiError::PermissionDenied(_)) => e,
                e => ApiError::Unavailable(format!(
                    "The assistant is unavailable ({e}); no {what} this time."
                )),
            })?;
    Ok(Asked {
        text: answer_text(&answer),
        usage: answer.usage.unwrap_or_default(),
        engine,
        digest,
    })
}

/// The assistant as a caller: the co-op itself, in the top tier.
pub fn caller() -> Caller {
    Caller {
        id: CALLER.to_owned(),
        kind: CallerKind::Coop,
        class: None,
        tier: 0,
        weight: 1,
        local_only: true,
    }
}

/// Summarises `proposal`'s discussion now, keeps the summary and returns it.
///
/// # Errors
///
/// 404 for an unknown proposal; 409 when the bylaws name no assistant model or the
/// discussion is empty; 429 when the co-op's governance budget is spent; 503 when the
/// engine fails or takes longer than [`TIMEOUT`].
pub async fn summarise(state: &AppState, governance: &Governance, name: &str) -> Result<Summary, ApiError> {
    let proposal = governance.get(name).await?;
    let comments = governance.discussion(name).await?;
    let model = model_of(state)?;
    if comments.is_empty() {
        return Err(conflict(format!("{name} has no comments to summarise yet.")));
    }
    let (system, mut user) = prompt(&proposal, &comments);
    let retrieved = super::retrieval::retrieve(
        state,
        governance,
        &format!("{}. {}", proposal.spec.title, proposal.spec.body),
    )
    .await;
    user.push_str(&super::retrieval::context(&retrieved));
    let (seed, temperature) = (0, 0.0);
    let request = summary_request(&model, system, user)?;
    let asked = ask(state, request, "summary").await?;
    let known: BTreeSet<i64> = comments.iter().map(|c| c.id).collect();
    let checked = check(&asked.text, &known);
    let summary = Summary {
        proposal: name.to_owned(),
        label: "AI-written".to_owned(),
        sentences: checked.sentences,
        dropped_uncited: checked.dropped_uncited,
        dropped_fabricated: checked.dropped_fabricated,
        provenance: Provenance {
            retrieved: retrieved.into_iter().map(|r| r.id).collect(),
            ..Provenance::of(
                model,
                &asked,
                TEMPLATE_VERSION,
                known.into_iter().collect(),
                (temperature, MAX_TOKENS, seed),
            )
        },
    };
    let body = serde_json::to_string(&summary).map_err(unavailable)?;
    assistant_output::ActiveModel {
        id: NotSet,
        proposal: Set(name.to_owned()),
        kind: Set("summary".to_owned()),
        body: Set(body),
        created_at: Set(summary.provenance.created_at.clone()),
    }
    .insert(governance.db())
    .await
    .map_err(unavailable)?;
    Ok(summary)
}

/// The latest summary of `proposal`, if any.
///
/// # Errors
///
/// 503 when the database cannot be read.
pub async fn latest(db: &DatabaseConnection, proposal: &str) -> Result<Option<Summary>, ApiError> {
    let row = assistant_output::Entity::find()
        .filter(assistant_output::Column::Proposal.eq(proposal))
        .filter(assistant_output::Column::Kind.eq("summary"))
        .order_by_desc(assistant_output::Column::Id)
        .one(db)
        .await
        .map_err(unavailable)?;
    row.map(|r| serde_json::from_str(&r.body).map_err(unavailable))
        .transpose()
}

/// The version of the drafting prompt and schema.
pub const DRAFT_TEMPLATE_VERSION: &str = "draft-v1";

/// The drafting instructions.
pub const DRAFT_SYSTEM: &str = "Draft the co-op proposal the member asks for, as JSON: a short \
    title, a body saying what changes and why, and any floor of capacity it guarantees.";

/// The drafting request for `model`: the member's words, constrained to `schema`.
///
/// # Errors
///
/// None in practice (the request is built from known parts).
pub fn draft_request(
    model: &str,
    request: &str,
    schema: serde_json::Value,
    temperature: f64,
) -> Result<ChatCompletionRequest, ApiError> {
    serde_json::from_value(serde_json::json!({
        "model": model,
        "messages": [{"role": "system", "content": DRAFT_SYSTEM}, {"role": "user", "content": request}],
        "max_tokens": DRAFT_MAX_TOKENS,
        "temperature": temperature,
        "seed": 0,
        "response_format": {"type": "json_schema", "json_schema": {"name": "proposal", "schema": schema}},
    }))
    .map_err(|e| ApiError::Engine(format!("cannot build the drafting request: {e}")))
}

/// The summary request for `model` (temperature 0, seed 0, [`MAX_TOKENS`]).
///
/// # Errors
///
/// None in practice (the request is built from known parts).
pub fn summary_request(model: &str, system: String, user: String) -> Result<ChatCompletionRequest, ApiError> {
    serde_json::from_value(serde_json::json!({
        "model": model,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0.0,
        "seed": 0,
    }))
    .map_err(|e| ApiError::Engine(format!("cannot build the summary request: {e}")))
}

/// The most completion tokens a draft may take (the schema's bounds keep a draft far
/// shorter: it ends by construction).
pub const DRAFT_MAX_TOKENS: u32 = 400;

/// The JSON schema drafts are constrained to: a free-text question, or an allocation
/// whose floors name the co-op's own members and classes. Every string and list is
/// bounded and no free white space is allowed, so that even a model that writes noise
/// ends its draft within [`DRAFT_MAX_TOKENS`], and what it writes passes the Proposal's
/// own checks (one floor of at most 100%; the member adds more in review). The bounds
/// are tight on purpose: mistral.rs 0.8.1 panics in its KV cache
/// (`NormalCacheManager::clone_in_cache`, "shape mismatch on dim 2, 1024 <> 1536") when
/// it batches constrained sequences whose caches have grown to different sizes, which
/// long drafts from a noisy model did 7 times in 100 at 8 at a time; short drafts keep
/// every sequence in the cache's first block.
pub fn draft_schema(objects: &crate::coop::CoopObjects) -> serde_json::Value {
    let mut members: Vec<String> = objects
        .members
        .iter()
        .filter_map(|m| m.metadata.name.clone())
        .collect();
    members.sort();
    let classes: Vec<String> = objects
        .cooperative()
        .map(|c| c.spec.member_classes.iter().map(|k| k.name.clone()).collect())
        .unwrap_or_default();
    let question_options = objects.cooperative().is_ok_and(|c| {
        let rules = synco_policies::crd::proposal::bylaw_rules(c, synco_crds::ProposalKind::FreeText);
        synco_policies::crd::proposal::method(&rules).needs_options()
    });
    schema_for(&members, &classes, question_options)
}

/// The drafting schema for a co-op with these members and classes; with
/// `question_options`, a free-text question carries two or three options (the bylaws
/// decide such questions by a method that chooses between options).
pub fn schema_for(members: &[String], classes: &[String], question_options: bool) -> serde_json::Value {
    use serde_json::json;
    let text = |min: u32, max: u32| json!({"type": "string", "minLength": min, "maxLength": max});
    let share = json!({"type": "integer", "minimum": 0, "maximum": 100});
    let mut targets = Vec::new();
    if !members.is_empty() {
        targets.push(
            json!({"type": "object", "properties": {"member": {"enum": members}, "sharePercent": share},
            "required": ["member", "sharePercent"], "additionalProperties": false}),
        );
    }
    if !classes.is_empty() {
        targets.push(
            json!({"type": "object", "properties": {"memberClass": {"enum": classes}, "sharePercent": share},
            "required": ["memberClass", "sharePercent"], "additionalProperties": false}),
        );
    }
    let mut free_text = json!({"type": "object", "properties": {
            "kind": {"const": "FreeText"}, "title": text(1, 40), "body": text(0, 120)},
        "required": ["kind", "title", "body"], "additionalProperties": false});
    if question_options {
        free_text["properties"]["options"] = json!({"type": "array", "minItems": 2, "maxItems": 3,
            "items": {"type": "object", "properties": {"name": text(1, 30)},
                "required": ["name"], "additionalProperties": false}});
        free_text["required"] = json!(["kind", "title", "body", "options"]);
    }
    let mut kinds = vec![free_text];
    if !targets.is_empty() {
        kinds.push(json!({"type": "object", "properties": {
                "kind": {"const": "Allocation"}, "title": text(1, 40), "body": text(0, 120),
                "effect": {"type": "object", "properties": {"allocation": {"type": "object", "properties": {
                    "floors": {"type": "array", "minItems": 1, "maxItems": 1, "items": {"anyOf": targets}}},
                    "required": ["floors"], "additionalProperties": false}},
                    "required": ["allocation"], "additionalProperties": false}},
            "required": ["kind", "title", "body", "effect"], "additionalProperties": false}));
    }
    json!({"x-guidance": {"whitespace_flexible": false}, "anyOf": kinds})
}

/// A drafted proposal, for the member to review: nothing is created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Draft {
    /// Always "AI-written".
    pub label: String,
    /// What the member asked for.
    pub request: String,
    /// The draft as `POST /v1/governance/proposals` takes it (when it parsed).
    pub proposal: Option<serde_json::Value>,
    /// Whether it passes the Proposal's checks; else why not.
    pub valid: bool,
    pub problem: Option<String>,
    pub provenance: Provenance,
}

/// Checks a drafted proposal's JSON as the API server would check a Proposal by
/// `proposer`: it parses, and its spec passes [`synco_crds::ProposalSpec::check`].
pub fn check_draft(text: &str, proposer: &str) -> Result<serde_json::Value, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let mut spec = value.clone();
    spec["proposer"] = serde_json::Value::String(proposer.to_owned());
    let spec: synco_crds::ProposalSpec =
        serde_json::from_value(spec).map_err(|e| format!("not a proposal: {e}"))?;
    spec.check()?;
    Ok(value)
}

/// Drafts a proposal from `request` (plain words) for `member` to review.
///
/// # Errors
///
/// 400 for an empty or too long request; 409 without an assistant model; 429 when the
/// co-op's governance budget is spent; 503 when the engine fails.
pub async fn draft(
    state: &AppState,
    governance: &Governance,
    member: &str,
    request: &str,
) -> Result<Draft, ApiError> {
    let request = request.trim();
    if request.is_empty() || request.chars().count() > 2000 {
        return Err(ApiError::invalid_param(
            "request",
            "say in up to 2,000 characters what the proposal should do",
        ));
    }
    let model = model_of(state)?;
    let objects = governance.objects().await?;
    let (temperature, seed) = (0.7, 0);
    let retrieved = super::retrieval::retrieve(state, governance, request).await;
    let prompt = format!("{request}{}", super::retrieval::context(&retrieved));
    let chat = draft_request(&model, &prompt, draft_schema(&objects), temperature)?;
    let asked = ask(state, chat, "draft").await?;
    let checked = check_draft(&asked.text, member);
    Ok(Draft {
        label: "AI-written".to_owned(),
        request: request.to_owned(),
        proposal: checked.as_ref().ok().cloned(),
        valid: checked.is_ok(),
        problem: checked.err(),
        provenance: Provenance {
            retrieved: retrieved.into_iter().map(|r| r.id).collect(),
            ..Provenance::of(
                model,
                &asked,
                DRAFT_TEMPLATE_VERSION,
                Vec::new(),
                (temperature, DRAFT_MAX_TOKENS, seed),
            )
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> BTreeSet<i64> {
        [3, 7, 12].into_iter().collect()
    }

    /// Outputs written by hand: cited sentences stay (without their markers), sentences
    /// with no citation or a made-up one go.
    #[test]
    fn the_checker_keeps_only_sentences_citing_real_comments() {
        let output = "The school wants 15% during exams [c3]. \
                      The bakery worries about its morning orders [c7, c12].\n\
                      Everyone agrees. \
                      Some say the mill objects [c99]. \
                      Two members asked for a trial month. [c3][c7] \
                      A vote is expected soon [see c3]. \
                      Costs were not discussed [c]";
        let checked = check(output, &known());
        assert_eq!(
            checked.sentences,
            [
                Sentence {
                    text: "The school wants 15% during exams.".into(),
                    cites: vec![3]
                },
                Sentence {
                    text: "The bakery worries about its morning orders.".into(),
                    cites: vec![7, 12]
                },
                Sentence {
                    text: "Two members asked for a trial month.".into(),
                    cites: vec![3, 7]
                },
            ]
        );
        assert_eq!(checked.dropped_uncited, 1, "{checked:?}");
        assert_eq!(checked.dropped_fabricated, 3, "{checked:?}");
    }

    #[test]
    fn drafts_are_checked_as_proposals() {
        let ok = r#"{"kind":"Allocation","title":"Exams","body":"","effect":{"allocation":{"floors":[{"member":"school","sharePercent":15}]}}}"#;
        assert!(check_draft(ok, "ana").is_ok());
        let over = r#"{"kind":"Allocation","title":"All","body":"","effect":{"allocation":{"floors":[{"member":"a","sharePercent":90},{"member":"b","sharePercent":90}]}}}"#;
        assert!(check_draft(over, "ana").unwrap_err().contains("at most 100%"));
        assert!(check_draft(r#"{"kind":"FreeText","title":"","body":""}"#, "ana").is_err());
        assert!(check_draft("{\"kind\":", "ana").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn noise_keeps_nothing() {
        let checked = check("kj3 ]] [[ ..!? [c] zz", &known());
        assert!(checked.sentences.is_empty());
        assert!(check("", &known()).sentences.is_empty());
        let checked = check("All of it [c1, c2, c3].", &known());
        assert_eq!(checked.dropped_fabricated, 1);
    }
}
