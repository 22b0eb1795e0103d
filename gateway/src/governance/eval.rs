//! `synco-gateway assistant eval`: scores a model as the governance assistant on a fixed
//! set of discussions kept in the repository (`gateway/assistant-eval/*.json`), so a
//! co-op can judge a model before it adopts one: how many of its summary sentences cite
//! real comments (citation validity), how many of its drafts are valid proposals (schema
//! validity), and how long its summaries are.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::assistant::{self, check, check_draft, schema_for};
use super::views::CommentView;
use crate::engine::{Engine, Reply};

/// One discussion of the set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Discussion {
    pub name: String,
    pub title: String,
    pub body: String,
    /// The co-op's members and classes, for the drafting schema.
    pub members: Vec<String>,
    pub classes: Vec<String>,
    pub comments: Vec<EvalComment>,
    /// Plain requests to draft proposals from.
    pub requests: Vec<String>,
}

/// A comment of a discussion.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalComment {
    pub id: i64,
    pub member: String,
    #[serde(default)]
    pub reply_to: Option<i64>,
    pub body: String,
}

/// A model's scores on the set.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Score {
    pub model: String,
    pub discussions: usize,
    /// Summary sentences kept (all their citations real) and dropped.
    pub sentences_kept: usize,
    pub sentences_uncited: usize,
    pub sentences_fabricated: usize,
    /// Kept over all sentences (0 when there were none).
    pub citation_validity: f64,
    pub drafts: usize,
    pub drafts_valid: usize,
    /// Valid drafts over drafts.
    pub schema_validity: f64,
    /// Characters of the kept summary, on average.
    pub mean_summary_chars: f64,
    /// Completion tokens of a summary, on average.
    pub mean_summary_tokens: f64,
}

/// Reads the set from `dir` (every `*.json`, by name).
///
/// # Errors
///
/// A file that cannot be read or is not a discussion.
pub fn read_set(dir: &Path) -> anyhow::Result<Vec<Discussion>> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p)?;
            serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
        })
        .collect()
}

fn text_of(reply: Reply<crate::openai::ChatCompletion, crate::openai::ChatCompletionChunk>) -> (String, u64) {
    match reply {
        Reply::Full(done) => (
            assistant::answer_text(&done),
            done.usage.map_or(0, |u| u.completion_tokens),
        ),
        Reply::Stream(_) => (String::new(), 0),
    }
}

/// Scores `engine` (serving `model`) on `set`.
///
/// # Errors
///
/// The engine fails.
pub async fn evaluate(engine: &dyn Engine, model: &str, set: &[Discussion]) -> anyhow::Result<Score> {
    let mut score = Score {
        model: model.to_owned(),
        discussions: set.len(),
        ..Score::default()
    };
    let (mut chars, mut tokens) = (0usize, 0u64);
    for d in set {
        let comments: Vec<CommentView> = d
            .comments
            .iter()
            .map(|c| CommentView {
                id: c.id,
                proposal: d.name.clone(),
                member: c.member.clone(),
                reply_to: c.reply_to,
                body: c.body.clone(),
                created_at: String::new(),
            })
            .collect();
        let (system, user) = assistant::prompt_parts(&d.name, &d.title, &d.body, &comments);
        let request = assistant::summary_request(model, system, user)?;
        let (text, completion) = text_of(engine.chat(request).await?);
        let known: BTreeSet<i64> = d.comments.iter().map(|c| c.id).collect();
        let checked = check(&text, &known);
        score.sentences_kept += checked.sentences.len();
        score.sentences_uncited += checked.dropped_uncited;
        score.sentences_fabricated += checked.dropped_fabricated;
        chars += checked
            .sentences
            .iter()
            .map(|s| s.text.chars().count())
            .sum::<usize>();
        tokens += completion;
        let schema = schema_for(&d.members, &d.classes, false);
        for r in &d.requests {
            let request = assistant::draft_request(model, r, schema.clone(), 0.7)?;
            let (text, _) = text_of(engine.chat(request).await?);
            score.drafts += 1;
            score.drafts_valid += usize::from(check_draft(&text, "evaluator").is_ok());
        }
    }
    let sentences = score.sentences_kept + score.sentences_uncited + score.sentences_fabricated;
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    score.citation_validity = ratio(score.sentences_kept, sentences);
    score.schema_validity = ratio(score.drafts_valid, score.drafts);
    score.mean_summary_chars = ratio(chars, set.len());
    score.mean_summary_tokens = ratio(usize::try_from(tokens).unwrap_or(usize::MAX), set.len());
    Ok(score)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The set in the repository reads, and its comments are unique per discussion.
    #[test]
    fn the_set_in_the_repository_reads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assistant-eval");
        let set = read_set(&dir).unwrap();
        assert!(set.len() >= 3);
        for d in &set {
            let ids: BTreeSet<i64> = d.comments.iter().map(|c| c.id).collect();
            assert_eq!(ids.len(), d.comments.len(), "{}", d.name);
            assert!(!d.requests.is_empty(), "{}", d.name);
        }
    }
}
