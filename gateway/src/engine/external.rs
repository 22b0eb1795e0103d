//! The external engine: any OpenAI-compatible upstream (a peer co-op, a hosted API, or
//! the mistral.rs pods the operator deploys).
//!
//! Streams pass through chunk by chunk. The upstream is always asked for usage
//! (`stream_options.include_usage`) so the gateway can meter; the handler hides the
//! usage chunk from callers who did not ask for it. Connection errors (nothing was
//! sent) are retried with a short backoff; anything after the request reached the
//! upstream is not, since generation is not idempotent.

use std::time::Duration;

use async_trait::async_trait;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{ChunkStream, Engine, Reply};
use crate::error::{ApiError, ErrorBody};
use crate::openai::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, CompletionRequest, EmbeddingsRequest,
    EmbeddingsResponse, StreamOptions, TextCompletion,
};

/// How to reach an upstream.
#[derive(Debug, Clone)]
pub struct ExternalOptions {
    /// Base URL including `/v1`, such as `http://peer.example:8080/v1`.
    pub base_url: String,
    /// The model name the upstream knows; the served name when `None`.
    pub upstream_model: Option<String>,
    /// Sent as `Authorization: Bearer ...`.
    pub api_key: Option<String>,
    /// Time to establish a connection.
    pub connect_timeout: Duration,
    /// Time for a whole non-streamed answer, and the longest silence within a stream.
    pub request_timeout: Duration,
    /// Extra attempts after a connection error.
    pub retries: u32,
}

impl ExternalOptions {
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            upstream_model: None,
            api_key: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(300),
            retries: 2,
        }
    }
}

/// An OpenAI-compatible upstream.
#[derive(Debug, Clone)]
pub struct ExternalEngine {
    client: reqwest::Client,
    options: ExternalOptions,
}

impl ExternalEngine {
    pub fn new(options: ExternalOptions) -> Result<Self, ApiError> {
        let client = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .read_timeout(options.request_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| ApiError::Engine(format!("cannot build HTTP client: {e}")))?;
        Ok(Self { client, options })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.options.base_url.trim_end_matches('/'))
    }

    /// The served name to put back in answers, where the upstream was asked for its model
    /// by another name (`None`: answers pass through as they are).
    fn renamed(&self, served: &str) -> Option<String> {
        self.options
            .upstream_model
            .as_deref()
            .filter(|upstream| *upstream != served)
            .map(|_| served.to_owned())
    }

    fn upstream_model(&self, served: String) -> String {
        self.options.upstream_model.clone().unwrap_or(served)
    }

    /// Sends a POST with `extra` headers, retrying only when the connection could not
    /// be made.
    async fn post(
        &self,
        path: &str,
        body: &impl Serialize,
        stream: bool,
        extra: &[(&'static str, String)],
    ) -> Result<reqwest::Response, ApiError> {
        let url = self.url(path);
        let mut attempt = 0;
        loop {
            let mut request = self.client.post(&url).json(body);
            if !stream {
                request = request.timeout(self.options.request_timeout);
            }
            if let Some(key) = &self.options.api_key {
                request = request.bearer_auth(key);
            }
            for (name, value) in extra {
                request = request.header(*name, value);
            }
            match request.send().await {
                Ok(response) => return check_status(response).await,
                Err(e) if e.is_connect() && attempt < self.options.retries => {
                    attempt += 1;
                    let backoff = Duration::from_millis(100 * 2u64.pow(attempt));
                    tracing::warn!(%url, attempt, error = %e, "upstream connection failed; retrying");
                    tokio::time::sleep(backoff).await;
                }
                Err(e) => return Err(transport_error(&url, &e)),
            }
        }
    }

    async fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
        extra: &[(&'static str, String)],
    ) -> Result<(T, HeaderMap), ApiError> {
        let response = self.post(path, body, false, extra).await?;
        let headers = response.headers().clone();
        let answer = response
            .json::<T>()
            .await
            .map_err(|e| ApiError::BadGateway(format!("upstream sent an unreadable answer: {e}")))?;
        Ok((answer, headers))
    }

    async fn post_stream<T: DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        body: &impl Serialize,
        extra: &[(&'static str, String)],
    ) -> Result<(ChunkStream<T>, HeaderMap), ApiError> {
        let response = self.post(path, body, true, extra).await?;
        let headers = response.headers().clone();
        Ok((sse_chunks(response.bytes_stream()).boxed(), headers))
    }

    /// A chat completion sent with `extra` headers; also returns the answer's headers.
    pub async fn chat_with(
        &self,
        mut req: ChatCompletionRequest,
        extra: &[(&'static str, String)],
    ) -> Result<(Reply<ChatCompletion, ChatCompletionChunk>, HeaderMap), ApiError> {
        let served = self.renamed(&req.model);
        req.model = self.upstream_model(req.model);
        if req.is_stream() {
            req.stream_options = Some(StreamOptions { include_usage: true });
            let (chunks, headers) = self.post_stream("chat/completions", &req, extra).await?;
            let chunks = match served {
                Some(served) => chunks
                    .map(move |c| {
                        c.map(|mut c: ChatCompletionChunk| {
                            c.model.clone_from(&served);
                            c
                        })
                    })
                    .boxed(),
                None => chunks,
            };
            Ok((Reply::Stream(chunks), headers))
        } else {
            let (mut full, headers): (ChatCompletion, _) =
                self.post_json("chat/completions", &req, extra).await?;
            // The caller asked for the served name, whatever the upstream calls the model.
            if let Some(served) = served {
                full.model = served;
            }
            Ok((Reply::Full(full), headers))
        }
    }

    /// A text completion sent with `extra` headers; also returns the answer's headers.
    pub async fn completion_with(
        &self,
        mut req: CompletionRequest,
        extra: &[(&'static str, String)],
    ) -> Result<(Reply<TextCompletion, TextCompletion>, HeaderMap), ApiError> {
        let served = self.renamed(&req.model);
        req.model = self.upstream_model(req.model);
        if req.is_stream() {
            req.stream_options = Some(StreamOptions { include_usage: true });
            let (chunks, headers) = self.post_stream("completions", &req, extra).await?;
            let chunks = match served {
                Some(served) => chunks
                    .map(move |c| {
                        c.map(|mut c: TextCompletion| {
                            c.model.clone_from(&served);
                            c
                        })
                    })
                    .boxed(),
                None => chunks,
            };
            Ok((Reply::Stream(chunks), headers))
        } else {
            let (mut full, headers): (TextCompletion, _) = self.post_json("completions", &req, extra).await?;
            if let Some(served) = served {
                full.model = served;
            }
            Ok((Reply::Full(full), headers))
        }
    }
}

/// An upstream's server-sent events as chunks, up to its `[DONE]`: each event's data is
/// a chunk, an `{"error": ...}` object, or something the caller is told is unreadable.
pub fn sse_chunks<T, S, B, E>(bytes: S) -> impl futures::Stream<Item = Result<T, ApiError>> + Send
where
    T: DeserializeOwned + Send + 'static,
    S: futures::Stream<Item = Result<B, E>> + Send + 'static,
    B: AsRef<[u8]> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    bytes
        .eventsource()
        .take_while(|event| {
            let more = !matches!(event, Ok(e) if e.data.trim() == "[DONE]");
            async move { more }
        })
        .map(|event| match event {
            Ok(event) => parse_event::<T>(&event.data),
            Err(e) => Err(ApiError::BadGateway(format!("upstream stream broke: {e}"))),
        })
}

fn parse_event<T: DeserializeOwned>(data: &str) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_str(data)
        .map_err(|e| ApiError::BadGateway(format!("upstream sent an unreadable event: {e}")))?;
    if let Some(error) = value.get("error") {
        let body = serde_json::from_value::<ErrorBody>(error.clone()).unwrap_or_else(|_| ErrorBody {
            message: error.to_string(),
            kind: "server_error".to_owned(),
            param: None,
            code: None,
        });
        return Err(ApiError::Upstream { status: 502, body });
    }
    serde_json::from_value(value)
        .map_err(|e| ApiError::BadGateway(format!("upstream sent an unexpected event: {e}")))
}

async fn check_status(response: reqwest::Response) -> Result<reqwest::Response, ApiError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = response.text().await.unwrap_or_default();
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: ErrorBody,
    }
    match serde_json::from_str::<Envelope>(&text) {
        Ok(envelope) => Err(ApiError::Upstream {
            status: status.as_u16(),
            body: envelope.error,
        }),
        Err(_) if status == StatusCode::NOT_FOUND => Err(ApiError::BadGateway(format!(
            "upstream has no such endpoint ({status})"
        ))),
        Err(_) => Err(ApiError::BadGateway(format!(
            "upstream answered {status}: {}",
            text.chars().take(200).collect::<String>()
        ))),
    }
}

fn transport_error(url: &str, e: &reqwest::Error) -> ApiError {
    if e.is_timeout() {
        ApiError::Timeout(format!("upstream {url} did not answer in time"))
    } else if e.is_connect() {
        ApiError::BadGateway(format!("cannot connect to upstream {url}"))
    } else {
        ApiError::BadGateway(format!("upstream {url} failed: {e}"))
    }
}

#[async_trait]
impl Engine for ExternalEngine {
    fn kind(&self) -> &'static str {
        "external"
    }

    async fn chat(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<Reply<ChatCompletion, ChatCompletionChunk>, ApiError> {
        Ok(self.chat_with(req, &[]).await?.0)
    }

    async fn completion(
        &self,
        req: CompletionRequest,
    ) -> Result<Reply<TextCompletion, TextCompletion>, ApiError> {
        Ok(self.completion_with(req, &[]).await?.0)
    }

    async fn embeddings(&self, mut req: EmbeddingsRequest) -> Result<EmbeddingsResponse, ApiError> {
        req.model = self.upstream_model(req.model);
        Ok(self.post_json("embeddings", &req, &[]).await?.0)
    }
}
