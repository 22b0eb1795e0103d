//! The in-process embedding engine: a sentence-transformers model (Qwen3-Embedding,
//! EmbeddingGemma) run by mistral.rs inside the gateway, serving `/v1/embeddings`.
//!
//! Each input goes to mistral.rs's scheduler as its own request (so inputs batch with
//! other callers' work), and the token counts mistral.rs reports come back as usage,
//! which the handler meters like any other request.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use mistralrs::core::RequestMessage;
use mistralrs::{
    Constraint, EmbeddingModelBuilder, ModelDType, NormalRequest, Request, Response, SamplingParams,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::embedded::{LoadError, load_model};
use super::{EmbeddedOptions, Engine, ModelSource, Reply};
use crate::error::ApiError;
use crate::openai::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, CompletionRequest, EmbeddingsRequest,
    EmbeddingsResponse, Prompt, TextCompletion, Usage,
};

/// Inputs one request may carry (OpenAI's limit).
pub const MAX_INPUTS: usize = 2048;

/// mistral.rs in process, serving one embedding model.
pub struct EmbeddingEngine {
    model: Arc<mistralrs::Model>,
    source: ModelSource,
    digest: Option<String>,
    /// The sequences mistral.rs runs at once; more wait in its own queue.
    max_num_seqs: usize,
}

impl std::fmt::Debug for EmbeddingEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingEngine")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// What one request's inputs are, checked.
#[derive(Debug, Clone, PartialEq)]
enum Input {
    Text(String),
    Tokens(Vec<u32>),
}

/// How the vectors go back: numbers, or base64 of little-endian f32s (what the
/// official Python client asks for by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Float,
    Base64,
}

impl EmbeddingEngine {
    /// Loads an embedding model folder (with `modules.json`) or hub id.
    pub async fn load(source: ModelSource, options: &EmbeddedOptions) -> Result<Self, LoadError> {
        let (model, digest) = load_model(
            &source,
            options,
            &["modules.json"],
            "embedding",
            |id| async move {
                let mut builder = EmbeddingModelBuilder::new(id)
                    .with_max_num_seqs(options.max_num_seqs)
                    .with_dtype(ModelDType::Auto);
                if options.force_cpu {
                    builder = builder.with_force_cpu();
                }
                builder.build().await
            },
        )
        .await?;
        Ok(Self {
            model: Arc::new(model),
            source,
            digest,
            max_num_seqs: options.max_num_seqs,
        })
    }

    async fn embed(&self, input: Input) -> Result<(Vec<f32>, u64), ApiError> {
        let messages = match input {
            Input::Text(prompt) => RequestMessage::Embedding { prompt },
            Input::Tokens(prompt) => RequestMessage::EmbeddingTokens { prompt },
        };
        let (tx, mut rx) = mpsc::channel(1);
        let request = NormalRequest {
            id: 0,
            messages,
            sampling_params: SamplingParams::deterministic(),
            response: tx,
            return_logprobs: false,
            is_streaming: false,
            suffix: None,
            constraint: Constraint::None,
            tool_choice: None,
            tools: None,
            logits_processors: None,
            return_raw_logits: false,
            web_search_options: None,
            model_id: None,
            truncate_sequence: false,
        };
        let sender = self
            .model
            .inner()
            .get_sender(None)
            .map_err(|e| ApiError::Unavailable(format!("embedding engine unavailable: {e:?}")))?;
        sender
            .send(Request::Normal(Box::new(request)))
            .await
            .map_err(|_| ApiError::Unavailable("embedding engine has stopped".to_owned()))?;
        match rx.recv().await {
            Some(Response::Embeddings {
                embeddings,
                prompt_tokens,
                ..
            }) => Ok((embeddings, prompt_tokens as u64)),
            Some(Response::ValidationError(e)) => Err(ApiError::invalid_param("input", e.to_string())),
            Some(Response::InternalError(e)) => Err(ApiError::Engine(format!("engine error: {e}"))),
            Some(_) => Err(ApiError::Engine("unexpected engine response".to_owned())),
            None => Err(ApiError::Engine("engine gave no answer".to_owned())),
        }
    }
}

/// The request's inputs, each non-empty, at most [`MAX_INPUTS`].
fn inputs(prompt: &Prompt) -> Result<Vec<Input>, ApiError> {
    let inputs: Vec<Input> = match prompt {
        Prompt::Text(text) => vec![Input::Text(text.clone())],
        Prompt::Texts(texts) => texts.iter().cloned().map(Input::Text).collect(),
        Prompt::Tokens(tokens) => vec![Input::Tokens(tokens.clone())],
        Prompt::TokenBatches(batches) => batches.iter().cloned().map(Input::Tokens).collect(),
    };
    if inputs.is_empty() {
        return Err(ApiError::invalid_param(
            "input",
            "input must hold at least one text",
        ));
    }
    if inputs.len() > MAX_INPUTS {
        return Err(ApiError::invalid_param(
            "input",
            format!(
                "input holds {} items; at most {MAX_INPUTS} are allowed",
                inputs.len()
            ),
        ));
    }
    if let Some(i) = inputs.iter().position(|input| match input {
        Input::Text(text) => text.is_empty(),
        Input::Tokens(tokens) => tokens.is_empty(),
    }) {
        return Err(ApiError::invalid_param(
            "input",
            format!("input[{i}] is empty; every input needs at least one character or token"),
        ));
    }
    Ok(inputs)
}

fn encoding(format: Option<&str>) -> Result<Encoding, ApiError> {
    match format {
        None | Some("float") => Ok(Encoding::Float),
        Some("base64") => Ok(Encoding::Base64),
        Some(other) => Err(ApiError::invalid_param(
            "encoding_format",
            format!("encoding_format `{other}` is not supported; use `float` or `base64`"),
        )),
    }
}

/// Shortens a unit vector to its first `dimensions` components and renormalises it,
/// as Matryoshka-trained models (Qwen3-Embedding) are meant to be shortened.
fn shorten(mut vector: Vec<f32>, dimensions: Option<u32>) -> Result<Vec<f32>, ApiError> {
    let Some(wanted) = dimensions else {
        return Ok(vector);
    };
    let wanted = wanted as usize;
    if wanted == 0 || wanted > vector.len() {
        return Err(ApiError::invalid_param(
            "dimensions",
            format!("dimensions must be between 1 and {} for this model", vector.len()),
        ));
    }
    vector.truncate(wanted);
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|x| *x /= norm);
    }
    Ok(vector)
}

fn encode(vector: &[f32], encoding: Encoding) -> Value {
    match encoding {
        Encoding::Float => json!(vector),
        Encoding::Base64 => {
            let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
    }
}

fn not_a_chat_model(model: &str) -> ApiError {
    ApiError::invalid_param(
        "model",
        format!("The model `{model}` is an embedding model; it serves /v1/embeddings only."),
    )
}

#[async_trait]
impl Engine for EmbeddingEngine {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn max_running(&self) -> Option<usize> {
        Some(self.max_num_seqs)
    }

    fn digest(&self) -> Option<String> {
        self.digest.clone()
    }

    async fn chat(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<Reply<ChatCompletion, ChatCompletionChunk>, ApiError> {
        Err(not_a_chat_model(&req.model))
    }

    async fn completion(
        &self,
        req: CompletionRequest,
    ) -> Result<Reply<TextCompletion, TextCompletion>, ApiError> {
        Err(not_a_chat_model(&req.model))
    }

    async fn embeddings(&self, req: EmbeddingsRequest) -> Result<EmbeddingsResponse, ApiError> {
        let inputs = inputs(&req.input)?;
        let encoding = encoding(req.encoding_format.as_deref())?;
        let answers = futures::future::join_all(inputs.into_iter().map(|input| self.embed(input))).await;
        let mut data = Vec::with_capacity(answers.len());
        let mut prompt_tokens = 0;
        for (index, answer) in answers.into_iter().enumerate() {
            let (vector, tokens) = answer?;
            let vector = shorten(vector, req.dimensions)?;
            prompt_tokens += tokens;
            data.push(json!({"object": "embedding", "index": index, "embedding": encode(&vector, encoding)}));
        }
        Ok(EmbeddingsResponse {
            object: "list".to_owned(),
            data,
            model: req.model,
            usage: Usage {
                prompt_tokens,
                completion_tokens: 0,
                total_tokens: prompt_tokens,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_oversized_inputs_are_refused() {
        assert!(inputs(&Prompt::Texts(vec![])).is_err());
        let e = inputs(&Prompt::Texts(vec!["a".into(), String::new()])).unwrap_err();
        assert!(e.to_string().contains("input[1] is empty"), "{e}");
        assert!(inputs(&Prompt::Texts(vec!["a".into(); MAX_INPUTS + 1])).is_err());
        assert_eq!(
            inputs(&Prompt::TokenBatches(vec![vec![1, 2], vec![3]])).unwrap(),
            vec![Input::Tokens(vec![1, 2]), Input::Tokens(vec![3])]
        );
    }

    #[test]
    fn shortened_vectors_are_unit_length_and_bounded() {
        let v = shorten(vec![0.6, 0.0, 0.8], Some(2)).unwrap();
        assert_eq!(v, vec![1.0, 0.0]);
        assert!(shorten(vec![1.0], Some(2)).is_err());
        assert!(shorten(vec![1.0], Some(0)).is_err());
        assert_eq!(shorten(vec![0.6, 0.8], None).unwrap(), vec![0.6, 0.8]);
    }

    #[test]
    fn base64_is_little_endian_f32() {
        let Value::String(text) = encode(&[1.0, -2.5], Encoding::Base64) else {
            panic!("not a string")
        };
        let bytes = base64::engine::general_purpose::STANDARD.decode(text).unwrap();
        let back: Vec<f32> = bytes
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(back, vec![1.0, -2.5]);
        assert!(encoding(Some("int8")).is_err());
    }
}
