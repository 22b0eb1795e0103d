//! Retrieval for the assistant: the co-op's past decisions and its bylaws, embedded
//! with the embedding model the bylaws name (`assistant.embeddingModel`), and the few
//! nearest a draft's request or a discussion put in front of the model, each named by
//! its id (`proposal/<name>`, `bylaws`) so the output's provenance lists what it was
//! given.
//!
//! Embeddings run as the assistant (caller `coop:assistant`), through admission and
//! metering, within the co-op's governance budget. A document's vector is kept in this
//! process, keyed by the model and the text's digest, so only new or changed documents
//! and the query are embedded on each call. Retrieval is an aid: when no embedding
//! model is named, or it fails, the assistant works without it (and says so in the
//! log), and governance never waits on it.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use synco_crds::ProposalPhase;

use super::{Filter, Governance};
use crate::app::AppState;
use crate::error::ApiError;
use crate::openai::{EmbeddingsRequest, Prompt};

/// Documents put in front of the model at most.
pub const TOP: usize = 3;

/// The most characters of a document shown to the model.
pub const SNIPPET: usize = 240;

/// The most past decisions searched (the newest).
pub const CORPUS: usize = 200;

/// Vectors kept in this process before the cache starts afresh.
const CACHE_LIMIT: usize = 10_000;

/// A document retrieved for a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retrieved {
    /// `proposal/<name>` or `bylaws`.
    pub id: String,
    pub text: String,
    /// Cosine similarity to the query.
    pub score: f32,
}

static VECTORS: LazyLock<Mutex<HashMap<String, Vec<f32>>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

fn cache_key(model: &str, text: &str) -> String {
    format!("{model}:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

fn snippet(text: &str) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    text.chars().take(SNIPPET).collect()
}

/// The documents: the bylaws, and the newest decided proposals with their outcome.
async fn corpus(g: &Governance) -> Result<Vec<(String, String)>, ApiError> {
    let mut docs = Vec::new();
    let objects = g.objects().await?;
    if let Ok(coop) = objects.cooperative() {
        let classes: Vec<String> = coop
            .spec
            .member_classes
            .iter()
            .map(|c| format!("{} (tier {})", c.name, c.tier))
            .collect();
        let rules: Vec<String> = coop
            .spec
            .voting_defaults
            .iter()
            .map(|d| format!("{:?} by {:?}", d.kind, d.rules.method))
            .collect();
        docs.push((
            "bylaws".to_owned(),
            snippet(&format!(
                "Bylaws of {}: member classes {}; {}.",
                coop.spec.display_name,
                classes.join(", "),
                rules.join(", ")
            )),
        ));
    }
    let decided = g.list(Filter::default()).await?.into_iter().filter(|p| {
        matches!(
            p.status.phase,
            ProposalPhase::Applied
                | ProposalPhase::Passed
                | ProposalPhase::Rejected
                | ProposalPhase::NoQuorum
        )
    });
    for p in decided.take(CORPUS) {
        docs.push((
            format!("proposal/{}", p.name),
            snippet(&format!(
                "{}: {} ({:?})",
                p.spec.title, p.spec.body, p.status.phase
            )),
        ));
    }
    Ok(docs)
}

/// Embeds `texts` with `model` as the assistant, in one request.
async fn embed(state: &AppState, model: &str, texts: Vec<String>) -> Result<Vec<Vec<f32>>, ApiError> {
    let request = EmbeddingsRequest {
        model: model.to_owned(),
        input: Prompt::Texts(texts),
        encoding_format: Some("float".to_owned()),
        dimensions: None,
        extra: serde_json::Map::new(),
    };
    let answer = crate::routes::openai::embed_as(state, super::assistant::caller(), request).await?;
    answer
        .data
        .iter()
        .map(|d| {
            d["embedding"]
                .as_array()
                .map(|v| v.iter().filter_map(|x| x.as_f64().map(|x| x as f32)).collect())
                .ok_or_else(|| ApiError::Engine("an embedding without a vector".to_owned()))
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let n = norm(a) * norm(b);
    if n > 0.0 { dot / n } else { 0.0 }
}

/// The [`TOP`] documents nearest `query`, best first; none when the bylaws name no
/// embedding model or retrieval fails (the assistant goes on without it).
pub async fn retrieve(state: &AppState, g: &Governance, query: &str) -> Vec<Retrieved> {
    let Some(model) = state
        .accounts
        .as_ref()
        .and_then(|a| a.coop.current().assistant_embedding.clone())
    else {
        return Vec::new();
    };
    match nearest(state, g, &model, query).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, %model, "retrieval failed; the assistant goes on without it");
            Vec::new()
        }
    }
}

async fn nearest(
    state: &AppState,
    g: &Governance,
    model: &str,
    query: &str,
) -> Result<Vec<Retrieved>, ApiError> {
    let docs = corpus(g).await?;
    if docs.is_empty() {
        return Ok(Vec::new());
    }
    let known: Vec<Option<Vec<f32>>> = {
        let cache = VECTORS
            .lock()
            .map_err(|_| ApiError::Engine("retrieval cache poisoned".to_owned()))?;
        docs.iter()
            .map(|(_, text)| cache.get(&cache_key(model, text)).cloned())
            .collect()
    };
    let mut texts = vec![snippet(query)];
    texts.extend(
        docs.iter()
            .zip(&known)
            .filter(|(_, v)| v.is_none())
            .map(|((_, text), _)| text.clone()),
    );
    let mut vectors = embed(state, model, texts).await?.into_iter();
    let query_vector = vectors
        .next()
        .ok_or_else(|| ApiError::Engine("no vector for the query".to_owned()))?;
    let mut scored = Vec::with_capacity(docs.len());
    {
        let mut cache = VECTORS
            .lock()
            .map_err(|_| ApiError::Engine("retrieval cache poisoned".to_owned()))?;
        if cache.len() > CACHE_LIMIT {
            cache.clear();
        }
        for ((id, text), known) in docs.into_iter().zip(known) {
            let vector = match known {
                Some(v) => v,
                None => {
                    let v = vectors
                        .next()
                        .ok_or_else(|| ApiError::Engine("fewer vectors than documents".to_owned()))?;
                    cache.insert(cache_key(model, &text), v.clone());
                    v
                }
            };
            scored.push(Retrieved {
                score: cosine(&query_vector, &vector),
                id,
                text,
            });
        }
    }
    scored.sort_by(|a, b| b.score.total_cmp(&a.score));
    scored.truncate(TOP);
    Ok(scored)
}

/// The documents as the model reads them, after the request.
pub fn context(retrieved: &[Retrieved]) -> String {
    if retrieved.is_empty() {
        return String::new();
    }
    let mut text = "\n\nFor reference, the co-op's bylaws and past decisions nearest to this:\n".to_owned();
    for r in retrieved {
        text.push_str(&format!("- [{}] {}\n", r.id, r.text));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_of_unit_vectors() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[0.0, 1.0]).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }

    #[test]
    fn snippets_are_one_line_and_bounded() {
        assert_eq!(snippet("a\n\n b   c"), "a b c");
        assert_eq!(snippet(&"x".repeat(1000)).len(), SNIPPET);
        let r = Retrieved {
            id: "proposal/exams".into(),
            text: "Exams".into(),
            score: 0.5,
        };
        assert!(context(&[r]).contains("- [proposal/exams] Exams"));
        assert_eq!(context(&[]), "");
    }
}
