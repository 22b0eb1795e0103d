//! Common-ground statements, after DeepMind's Habermas Machine: on a proposal's
//! discussion, the assistant writes several candidate statements that most members
//! could live with; the members rank them and the `policies` Schulze tally picks one;
//! the members critique it; the assistant revises it once; and the revision can become
//! the body of a new proposal (the member reviews and submits it: nothing is created).
//!
//! The stages: `Ranking` (members rank; the convener, who started the round, closes
//! it), `Critique` (members critique the chosen statement; the convener asks for the
//! revision), `Revised`. Rankings and critiques come only from members through the
//! API or the pages: the assistant writes statements and never ranks, votes or closes.
//! Stage changes and the entries they read are serialised (a process-wide lock, and the
//! round's row locked in each transaction, for replicas sharing a Postgres database),
//! so a ranking answered 200 is always counted.

use std::collections::BTreeMap;

use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, DatabaseTransaction, EntityTrait as _, QueryFilter as _,
    QueryOrder as _, TransactionTrait as _,
};
use serde::{Deserialize, Serialize};
use synco_policies::voting::{Ballot, Choice, Method, TallyInput, TallyResult, VotingRules};
use synco_policies::weights::Voter;

use super::Governance;
use super::assistant::{Asked, Provenance, ask, conflict, model_of, unavailable};
use super::views::CommentView;
use crate::app::AppState;
use crate::db::{common_ground_entry as entry, common_ground_round as round};
use crate::error::ApiError;
use crate::openai::ChatCompletionRequest;

/// The version of the candidate and revision prompts (in every output's provenance).
pub const TEMPLATE_VERSION: &str = "common-ground-v1";

/// Candidates the assistant writes for a round.
pub const CANDIDATES: usize = 4;

/// The most completion tokens a statement may take.
pub const MAX_TOKENS: u32 = 200;

/// The longest statement kept, in characters.
pub const MAX_STATEMENT: usize = 1200;

/// The longest critique, in characters.
pub const MAX_CRITIQUE: usize = 2000;

/// Sampling temperature for the candidates (varied on purpose) and the revision.
const CANDIDATE_TEMPERATURE: f64 = 0.9;
const REVISION_TEMPERATURE: f64 = 0.3;

/// Where a round is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    Ranking,
    Critique,
    Revised,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ranking => "Ranking",
            Self::Critique => "Critique",
            Self::Revised => "Revised",
        }
    }

    fn parse(text: &str) -> Result<Self, ApiError> {
        match text {
            "Ranking" => Ok(Self::Ranking),
            "Critique" => Ok(Self::Critique),
            "Revised" => Ok(Self::Revised),
            other => Err(unavailable(format!("unknown common-ground stage {other}"))),
        }
    }
}

/// One statement the assistant wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Statement {
    /// 1-based, as members rank them.
    pub number: u32,
    pub text: String,
    pub provenance: Provenance,
}

/// A member's critique of the chosen statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Critique {
    pub member: String,
    pub body: String,
    pub created_at: String,
}

/// A round as the API and the pages show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoundView {
    pub id: i64,
    pub proposal: String,
    pub convener: String,
    pub stage: Stage,
    /// Always "AI-written": the candidates and the revision are the model's.
    pub label: String,
    pub candidates: Vec<Statement>,
    /// How many members have ranked.
    pub rankings: usize,
    /// The caller's own ranking, if any.
    pub my_ranking: Option<Vec<u32>>,
    /// The Schulze tally of the rankings, once ranking has closed.
    pub tally: Option<TallyResult>,
    /// The chosen candidate's number.
    pub chosen: Option<u32>,
    pub critiques: Vec<Critique>,
    pub revision: Option<Statement>,
    /// The statement as `POST /v1/governance/proposals` takes it (the revision, or the
    /// chosen statement), for the member to review and submit.
    pub proposal_draft: Option<serde_json::Value>,
    pub created_at: String,
}

/// Serialises this process's stage changes and entries (see the module's note).
static WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The instructions for the candidates.
const CANDIDATE_SYSTEM: &str = "You help a co-operative's members find common ground. From their \
    comments below, write one statement, of at most three sentences, that most of them could \
    accept: say what they agree on and how the disagreement could be settled. Take no side and \
    make no decision. Write only the statement.";

/// The instructions for the revision.
const REVISION_SYSTEM: &str = "You help a co-operative's members find common ground. Revise the \
    statement below so that it answers the members' critiques while keeping what they agreed \
    on, in at most three sentences. Take no side and make no decision. Write only the revised \
    statement.";

fn discussion_text(title: &str, body: &str, comments: &[CommentView]) -> String {
    let mut text = format!("Proposal: {title}\n{body}\n\nComments:\n");
    for c in comments {
        text.push_str(&format!("- {}: {}\n", c.member, c.body));
    }
    text
}

fn request(
    model: &str,
    system: &str,
    user: String,
    temperature: f64,
) -> Result<ChatCompletionRequest, ApiError> {
    serde_json::from_value(serde_json::json!({
        "model": model,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        "max_tokens": MAX_TOKENS,
        "temperature": temperature,
        "seed": 0,
    }))
    .map_err(|e| ApiError::Engine(format!("cannot build the common-ground request: {e}")))
}

/// A statement as kept: trimmed, at most [`MAX_STATEMENT`] characters, or none.
fn statement_text(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.chars().take(MAX_STATEMENT).collect())
}

fn bad(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid_param(param, message)
}

/// Checks a ranking of `candidates` statements: 1-based numbers, each at most once,
/// at least one (a partial ranking leaves the rest below every ranked one).
pub fn check_ranking(ranking: &[u32], candidates: usize) -> Result<(), ApiError> {
    if ranking.is_empty() {
        return Err(bad("ranking", "rank at least one statement, best first"));
    }
    let mut seen = std::collections::BTreeSet::new();
    for &n in ranking {
        if n == 0 || n as usize > candidates {
            return Err(bad(
                "ranking",
                format!("statement {n} does not exist; this round has statements 1 to {candidates}"),
            ));
        }
        if !seen.insert(n) {
            return Err(bad("ranking", format!("statement {n} is ranked twice")));
        }
    }
    Ok(())
}

/// The Schulze tally of `rankings` (member to candidate numbers, best first) over
/// `candidates` statements, one member one vote, ties to the lower number.
///
/// # Errors
///
/// A tally error (a ranking naming a member outside `electorate`, for one).
pub fn tally(
    candidates: usize,
    electorate: Vec<Voter>,
    rankings: &BTreeMap<String, Vec<u32>>,
) -> Result<TallyResult, ApiError> {
    let input = TallyInput {
        options: (1..=candidates).map(|n| n.to_string()).collect(),
        electorate,
        ballots: rankings
            .iter()
            .map(|(member, ranking)| {
                Ballot::new(
                    member.clone(),
                    Choice::Rank(ranking.iter().map(u32::to_string).collect()),
                )
            })
            .collect(),
        delegations: Vec::new(),
    };
    synco_policies::voting::tally(&input, &VotingRules::new(Method::Schulze))
        .map_err(|e| ApiError::Engine(format!("the rankings cannot be tallied: {e}")))
}

/// The round `id`, read inside `txn` after a no-op update of its row: the update takes
/// the write lock first (SQLite: the database's, before the transaction has read
/// anything, so a concurrent writer makes it wait rather than fail with a stale
/// snapshot; Postgres: the row's), so stage changes and entries are serialised across
/// replicas as well as within this process ([`WRITES`]).
async fn locked_round(txn: &DatabaseTransaction, id: i64) -> Result<round::Model, ApiError> {
    round::Entity::update_many()
        .col_expr(round::Column::Id, Expr::col(round::Column::Id))
        .filter(round::Column::Id.eq(id))
        .exec(txn)
        .await
        .map_err(unavailable)?;
    round::Entity::find_by_id(id)
        .one(txn)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| ApiError::NotFound(format!("common-ground round {id}")))
}

async fn latest_round(g: &Governance, proposal: &str) -> Result<Option<round::Model>, ApiError> {
    round::Entity::find()
        .filter(round::Column::Proposal.eq(proposal))
        .order_by_desc(round::Column::Id)
        .one(g.db())
        .await
        .map_err(unavailable)
}

async fn current_round(g: &Governance, proposal: &str) -> Result<round::Model, ApiError> {
    latest_round(g, proposal)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("a common-ground round on {proposal} (none started)")))
}

fn candidates_of(row: &round::Model) -> Result<Vec<Statement>, ApiError> {
    serde_json::from_str(&row.candidates).map_err(unavailable)
}

fn require_stage(row: &round::Model, stage: Stage, doing: &str) -> Result<(), ApiError> {
    let now = Stage::parse(&row.stage)?;
    if now == stage {
        Ok(())
    } else {
        Err(ApiError::Conflict {
            message: format!(
                "The common-ground round on {} is at the {} stage; {doing} needs the {} stage.",
                row.proposal,
                now.as_str(),
                stage.as_str()
            ),
            code: "wrong_stage".to_owned(),
        })
    }
}

fn require_convener(row: &round::Model, member: &str, doing: &str) -> Result<(), ApiError> {
    if row.convener == member {
        Ok(())
    } else {
        Err(ApiError::PermissionDenied(format!(
            "Only {}, who started this round, can {doing}.",
            row.convener
        )))
    }
}

/// Starts a round on `proposal`'s discussion: the assistant writes [`CANDIDATES`]
/// statements (at least two must come back), and ranking opens.
///
/// # Errors
///
/// 404 for an unknown proposal; 409 without comments, without an assistant model, or
/// while a round on it is still open; 429 past the co-op's governance budget; 503 when
/// the engine fails.
pub async fn start(
    state: &AppState,
    g: &Governance,
    member: &str,
    proposal: &str,
) -> Result<RoundView, ApiError> {
    let view = g.get(proposal).await?;
    let comments = g.discussion(proposal).await?;
    let model = model_of(state)?;
    if comments.is_empty() {
        return Err(conflict(format!(
            "{proposal} has no comments to find common ground in yet."
        )));
    }
    if let Some(open) = latest_round(g, proposal).await?
        && Stage::parse(&open.stage)? != Stage::Revised
    {
        return Err(conflict(format!(
            "A common-ground round on {proposal} is already open (at the {} stage).",
            open.stage
        )));
    }
    let user = discussion_text(&view.spec.title, &view.spec.body, &comments);
    let ids: Vec<i64> = comments.iter().map(|c| c.id).collect();
    let asks = (0..CANDIDATES).map(|_| {
        let request = request(&model, CANDIDATE_SYSTEM, user.clone(), CANDIDATE_TEMPERATURE);
        async move { ask(state, request?, "common-ground statement").await }
    });
    let answers = futures::future::join_all(asks).await;
    let mut candidates = Vec::new();
    let mut last_error = None;
    for answer in answers {
        match answer {
            Ok(asked) => {
                if let Some(text) = statement_text(&asked.text) {
                    candidates.push(statement(
                        &model,
                        &asked,
                        text,
                        &ids,
                        CANDIDATE_TEMPERATURE,
                        candidates.len(),
                    ));
                }
            }
            Err(e) => last_error = Some(e),
        }
    }
    if candidates.len() < 2 {
        return Err(last_error.unwrap_or_else(|| {
            ApiError::Unavailable("The assistant wrote fewer than two statements; try again.".to_owned())
        }));
    }
    let _held = WRITES.lock().await;
    let row = round::ActiveModel {
        id: NotSet,
        proposal: Set(proposal.to_owned()),
        convener: Set(member.to_owned()),
        stage: Set(Stage::Ranking.as_str().to_owned()),
        candidates: Set(serde_json::to_string(&candidates).map_err(unavailable)?),
        tally: Set(None),
        chosen: Set(None),
        revision: Set(None),
        created_at: Set(jiff::Timestamp::now().to_string()),
    }
    .insert(g.db())
    .await
    .map_err(unavailable)?;
    view_of(g, row, member).await
}

fn statement(
    model: &str,
    asked: &Asked,
    text: String,
    comments: &[i64],
    temperature: f64,
    index: usize,
) -> Statement {
    Statement {
        number: u32::try_from(index + 1).unwrap_or(u32::MAX),
        text,
        provenance: Provenance::of(
            model.to_owned(),
            asked,
            TEMPLATE_VERSION,
            comments.to_vec(),
            (temperature, MAX_TOKENS, 0),
        ),
    }
}

/// The latest round on `proposal`, as `member` sees it.
///
/// # Errors
///
/// 404 when none was started; 503 when the database cannot be read.
pub async fn current(g: &Governance, member: &str, proposal: &str) -> Result<RoundView, ApiError> {
    let row = current_round(g, proposal).await?;
    view_of(g, row, member).await
}

/// Records `member`'s ranking (best first), replacing an earlier one.
///
/// # Errors
///
/// 400 for a bad ranking; 404 without a round; 409 once ranking has closed.
pub async fn rank(
    g: &Governance,
    member: &str,
    proposal: &str,
    ranking: Vec<u32>,
) -> Result<RoundView, ApiError> {
    let id = current_round(g, proposal).await?.id;
    let _held = WRITES.lock().await;
    let txn = g.db().begin().await.map_err(unavailable)?;
    let row = locked_round(&txn, id).await?;
    require_stage(&row, Stage::Ranking, "ranking")?;
    check_ranking(&ranking, candidates_of(&row)?.len())?;
    put_entry(
        &txn,
        id,
        "ranking",
        member,
        serde_json::to_string(&ranking).map_err(unavailable)?,
    )
    .await?;
    txn.commit().await.map_err(unavailable)?;
    view_of(g, row, member).await
}

/// Records `member`'s critique of the chosen statement, replacing an earlier one.
///
/// # Errors
///
/// 400 for an empty or too long critique; 404 without a round; 409 outside the
/// critique stage.
pub async fn critique(
    g: &Governance,
    member: &str,
    proposal: &str,
    body: &str,
) -> Result<RoundView, ApiError> {
    let body = body.trim();
    if body.is_empty() || body.chars().count() > MAX_CRITIQUE {
        return Err(bad(
            "body",
            format!("say in 1 to {MAX_CRITIQUE} characters what the statement misses"),
        ));
    }
    let id = current_round(g, proposal).await?.id;
    let _held = WRITES.lock().await;
    let txn = g.db().begin().await.map_err(unavailable)?;
    let row = locked_round(&txn, id).await?;
    require_stage(&row, Stage::Critique, "a critique")?;
    put_entry(&txn, id, "critique", member, body.to_owned()).await?;
    txn.commit().await.map_err(unavailable)?;
    view_of(g, row, member).await
}

async fn put_entry(
    txn: &DatabaseTransaction,
    id: i64,
    kind: &str,
    member: &str,
    body: String,
) -> Result<(), ApiError> {
    entry::Entity::insert(entry::ActiveModel {
        round_id: Set(id),
        kind: Set(kind.to_owned()),
        member: Set(member.to_owned()),
        body: Set(body),
        created_at: Set(jiff::Timestamp::now().to_string()),
    })
    .on_conflict(
        OnConflict::columns([entry::Column::RoundId, entry::Column::Kind, entry::Column::Member])
            .update_columns([entry::Column::Body, entry::Column::CreatedAt])
            .to_owned(),
    )
    .exec(txn)
    .await
    .map_err(unavailable)?;
    Ok(())
}

async fn entries(
    db: &impl sea_orm::ConnectionTrait,
    id: i64,
    kind: &str,
) -> Result<Vec<entry::Model>, ApiError> {
    entry::Entity::find()
        .filter(entry::Column::RoundId.eq(id))
        .filter(entry::Column::Kind.eq(kind))
        .order_by_asc(entry::Column::CreatedAt)
        .all(db)
        .await
        .map_err(unavailable)
}

/// Closes ranking (the convener only): the Schulze tally of the rankings picks the
/// statement the members critique next.
///
/// # Errors
///
/// 403 for anyone but the convener; 409 outside the ranking stage or with no ranking.
pub async fn choose(g: &Governance, member: &str, proposal: &str) -> Result<RoundView, ApiError> {
    let id = current_round(g, proposal).await?.id;
    let objects = g.objects().await?;
    let electorate: Vec<Voter> = objects
        .members
        .iter()
        .filter_map(|m| Some(Voter::new(m.metadata.name.clone()?, m.spec.class.clone())))
        .collect();
    let _held = WRITES.lock().await;
    let txn = g.db().begin().await.map_err(unavailable)?;
    let row = locked_round(&txn, id).await?;
    require_convener(&row, member, "close the ranking")?;
    require_stage(&row, Stage::Ranking, "closing the ranking")?;
    let rankings: BTreeMap<String, Vec<u32>> = entries(&txn, id, "ranking")
        .await?
        .into_iter()
        .map(|e| Ok((e.member, serde_json::from_str(&e.body).map_err(unavailable)?)))
        .collect::<Result<_, ApiError>>()?;
    if rankings.is_empty() {
        return Err(conflict("No member has ranked the statements yet.".to_owned()));
    }
    let result = tally(candidates_of(&row)?.len(), electorate, &rankings)?;
    let chosen: i32 = result
        .winner
        .as_deref()
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| ApiError::Engine(format!("the Schulze tally chose no statement: {}", result.rule)))?;
    let mut active: round::ActiveModel = row.into();
    active.stage = Set(Stage::Critique.as_str().to_owned());
    active.tally = Set(Some(serde_json::to_string(&result).map_err(unavailable)?));
    active.chosen = Set(Some(chosen));
    let row = active.update(&txn).await.map_err(unavailable)?;
    txn.commit().await.map_err(unavailable)?;
    view_of(g, row, member).await
}

/// Asks the assistant for the one revision of the chosen statement, given the
/// critiques (the convener only). If the engine fails, the round stays at the
/// critique stage and can be asked again.
///
/// # Errors
///
/// 403 for anyone but the convener; 409 outside the critique stage or with no
/// critique; 429 past the co-op's budget; 503 when the engine fails.
pub async fn revise(
    state: &AppState,
    g: &Governance,
    member: &str,
    proposal: &str,
) -> Result<RoundView, ApiError> {
    let row = current_round(g, proposal).await?;
    require_convener(&row, member, "ask for the revision")?;
    require_stage(&row, Stage::Critique, "the revision")?;
    let critiques = entries(g.db(), row.id, "critique").await?;
    if critiques.is_empty() {
        return Err(conflict(
            "No member has critiqued the chosen statement yet.".to_owned(),
        ));
    }
    let model = model_of(state)?;
    let chosen = chosen_statement(&row)?;
    let mut user = format!("Statement:\n{}\n\nCritiques:\n", chosen.text);
    for c in &critiques {
        user.push_str(&format!("- {}: {}\n", c.member, c.body));
    }
    let asked = ask(
        state,
        request(&model, REVISION_SYSTEM, user, REVISION_TEMPERATURE)?,
        "revision",
    )
    .await?;
    let text = statement_text(&asked.text)
        .ok_or_else(|| ApiError::Unavailable("The assistant's revision was empty; try again.".to_owned()))?;
    let revision = statement(
        &model,
        &asked,
        text,
        &chosen.provenance.comments,
        REVISION_TEMPERATURE,
        chosen.number as usize - 1,
    );
    let _held = WRITES.lock().await;
    let txn = g.db().begin().await.map_err(unavailable)?;
    let row = locked_round(&txn, row.id).await?;
    require_stage(&row, Stage::Critique, "the revision")?;
    let mut active: round::ActiveModel = row.into();
    active.stage = Set(Stage::Revised.as_str().to_owned());
    active.revision = Set(Some(serde_json::to_string(&revision).map_err(unavailable)?));
    let row = active.update(&txn).await.map_err(unavailable)?;
    txn.commit().await.map_err(unavailable)?;
    view_of(g, row, member).await
}

fn chosen_statement(row: &round::Model) -> Result<Statement, ApiError> {
    let number = row
        .chosen
        .ok_or_else(|| conflict("No statement has been chosen yet.".to_owned()))?;
    candidates_of(row)?
        .into_iter()
        .find(|c| i64::from(c.number) == i64::from(number))
        .ok_or_else(|| unavailable(format!("the chosen statement {number} is missing")))
}

async fn view_of(g: &Governance, row: round::Model, member: &str) -> Result<RoundView, ApiError> {
    let candidates = candidates_of(&row)?;
    let rankings = entries(g.db(), row.id, "ranking").await?;
    let critiques = entries(g.db(), row.id, "critique").await?;
    let my_ranking = rankings
        .iter()
        .find(|e| e.member == member)
        .map(|e| serde_json::from_str(&e.body).map_err(unavailable))
        .transpose()?;
    let tally = row
        .tally
        .as_deref()
        .map(|t| serde_json::from_str(t).map_err(unavailable))
        .transpose()?;
    let revision: Option<Statement> = row
        .revision
        .as_deref()
        .map(|r| serde_json::from_str(r).map_err(unavailable))
        .transpose()?;
    let title = g
        .get(&row.proposal)
        .await
        .map(|p| p.spec.title)
        .unwrap_or_default();
    let final_text = match (&revision, row.chosen) {
        (Some(r), _) => Some(r.text.clone()),
        (None, Some(_)) => Some(chosen_statement(&row)?.text),
        (None, None) => None,
    };
    let needs_options = g.objects().await.ok().and_then(|o| {
        let coop = o.cooperative().ok()?;
        let rules = synco_policies::crd::proposal::bylaw_rules(coop, synco_crds::ProposalKind::FreeText);
        Some(synco_policies::crd::proposal::method(&rules).needs_options())
    });
    let proposal_draft = final_text.map(|body| {
        let title: String = format!("Common ground: {title}").chars().take(200).collect();
        let mut draft = serde_json::json!({"kind": "FreeText", "title": title, "body": body});
        // Where the bylaws decide free-text proposals between options, the statement
        // is put as adopting it or discussing on.
        if needs_options == Some(true) {
            draft["options"] = serde_json::json!([{"name": "adopt"}, {"name": "keep-discussing"}]);
        }
        draft
    });
    Ok(RoundView {
        id: row.id,
        proposal: row.proposal.clone(),
        convener: row.convener.clone(),
        stage: Stage::parse(&row.stage)?,
        label: "AI-written".to_owned(),
        candidates,
        rankings: rankings.len(),
        my_ranking,
        tally,
        chosen: row.chosen.and_then(|c| u32::try_from(c).ok()),
        critiques: critiques
            .into_iter()
            .map(|c| Critique {
                member: c.member,
                body: c.body,
                created_at: c.created_at,
            })
            .collect(),
        revision,
        proposal_draft,
        created_at: row.created_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voters(names: &[&str]) -> Vec<Voter> {
        names.iter().map(|n| Voter::new(*n, "community")).collect()
    }

    #[test]
    fn rankings_are_checked() {
        assert!(check_ranking(&[2, 1, 3], 4).is_ok());
        assert!(check_ranking(&[4], 4).is_ok());
        assert!(check_ranking(&[], 4).is_err());
        assert!(
            check_ranking(&[5], 4)
                .unwrap_err()
                .to_string()
                .contains("does not exist")
        );
        assert!(check_ranking(&[0], 4).is_err());
        assert!(
            check_ranking(&[1, 2, 1], 4)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
    }

    /// Five members over three statements: 2 rank 1>2>3, 2 rank 3>2>1, 1 ranks 2>3>1.
    /// Plurality of first choices ties 1 and 3; 2 beats 1 (3 to 2) and 3 (3 to 2), so
    /// the Condorcet winner, statement 2, is chosen.
    #[test]
    fn schulze_picks_the_statement_that_beats_every_other() {
        let rankings: BTreeMap<String, Vec<u32>> = [
            ("ana", vec![1, 2, 3]),
            ("ben", vec![1, 2, 3]),
            ("cleo", vec![3, 2, 1]),
            ("dan", vec![3, 2, 1]),
            ("eve", vec![2, 3, 1]),
        ]
        .into_iter()
        .map(|(m, r)| (m.to_owned(), r))
        .collect();
        let result = tally(3, voters(&["ana", "ben", "cleo", "dan", "eve", "fay"]), &rankings).unwrap();
        assert_eq!(result.winner.as_deref(), Some("2"), "{result:?}");
        assert_eq!(result.method, "schulze");
    }

    #[test]
    fn a_ranking_from_outside_the_co_op_is_refused() {
        let rankings: BTreeMap<String, Vec<u32>> = [("mallory".to_owned(), vec![1])].into_iter().collect();
        assert!(tally(2, voters(&["ana"]), &rankings).is_err());
    }

    #[test]
    fn statements_are_trimmed_and_bounded() {
        assert_eq!(statement_text("  We agree.  "), Some("We agree.".to_owned()));
        assert_eq!(statement_text(" \n "), None);
        assert_eq!(statement_text(&"x".repeat(5000)).unwrap().len(), MAX_STATEMENT);
    }
}
