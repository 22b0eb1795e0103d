//! The one error type of the HTTP API, and the JSON extractor whose rejection is that error.
//!
//! Every failure a caller can see has OpenAI's shape,
//! `{"error": {"message", "type", "param", "code"}}`, so that OpenAI clients raise their own
//! exception types (`NotFoundError`, `BadRequestError`, ...) for it.

use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// What went wrong, in OpenAI's vocabulary. The variant decides the status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or asks for something impossible (400).
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
        code: Option<String>,
    },
    /// The caller could not be identified (401). Used by the auth layer.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller may not do this (403). Used by the admission layer.
    #[error("{0}")]
    PermissionDenied(String),
    /// The caller may not do this, with a more precise code (403).
    #[error("{message}")]
    Forbidden { message: String, code: String },
    /// No model by that name is served (404 `model_not_found`).
    #[error("The model `{0}` does not exist or you do not have access to it.")]
    ModelNotFound(String),
    /// No such route (404).
    #[error("Unknown request URL: {0}")]
    NotFound(String),
    /// The request conflicts with what exists (409), such as a second ballot.
    #[error("{message}")]
    Conflict { message: String, code: String },
    /// The body is larger than the gateway accepts (413).
    #[error("Request body too large: at most {limit} bytes are accepted")]
    PayloadTooLarge { limit: usize },
    /// The body is not JSON (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Quota or rate limits (429). Used by the admission layer.
    #[error("{message}")]
    RateLimited {
        message: String,
        code: String,
        /// Seconds after which a retry may succeed, sent as `Retry-After`.
        retry_after: Option<u64>,
        /// `x-ratelimit-*` headers: the limit that was hit, what is left and when it resets.
        headers: Vec<(&'static str, String)>,
    },
    /// The engine failed while serving (500).
    #[error("{0}")]
    Engine(String),
    /// The upstream engine answered badly or not at all (502).
    #[error("{0}")]
    BadGateway(String),
    /// The model is not ready, or the gateway is shutting down (503).
    #[error("{0}")]
    Unavailable(String),
    /// The model exists but has no replica ready yet (scaling from zero), and the
    /// request's wait in the waiting room ran out (503, with `Retry-After`).
    #[error("{message}")]
    NoCapacityYet { message: String, retry_after: u64 },
    /// The upstream did not answer in time (504).
    #[error("{0}")]
    Timeout(String),
    /// An error status passed through verbatim from an OpenAI-compatible upstream.
    #[error("{}", .body.message)]
    Upstream { status: u16, body: ErrorBody },
}

/// The inner object of OpenAI's error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ErrorBody {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub param: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
}

/// `{"error": {...}}`, as sent in a response body or in an SSE event.
#[derive(Debug, Serialize)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

impl ApiError {
    /// A 400 with a message.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidRequest {
            message: message.into(),
            param: None,
            code: None,
        }
    }

    /// A 400 naming the offending parameter.
    pub fn invalid_param(param: &str, message: impl Into<String>) -> Self {
        Self::InvalidRequest {
            message: message.into(),
            param: Some(param.to_owned()),
            code: None,
        }
    }

    /// The HTTP status this error is sent with.
    pub fn status_code(&self) -> StatusCode {
        match self {
            Self::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::PermissionDenied(_) | Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::ModelNotFound(_) | Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Engine(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::Unavailable(_) | Self::NoCapacityYet { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Upstream { status, .. } => StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY),
        }
    }

    /// A short label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::InvalidRequest { .. } => "invalid_request",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::PermissionDenied(_) | Self::Forbidden { .. } => "permission_denied",
            Self::ModelNotFound(_) => "model_not_found",
            Self::NotFound(_) => "not_found",
            Self::Conflict { .. } => "conflict",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::RateLimited { .. } => "rate_limited",
            Self::Engine(_) => "engine_error",
            Self::BadGateway(_) => "bad_gateway",
            Self::Unavailable(_) => "unavailable",
            Self::NoCapacityYet { .. } => "no_capacity_yet",
            Self::Timeout(_) => "timeout",
            Self::Upstream { .. } => "upstream_error",
        }
    }

    /// The OpenAI error object.
    pub fn body(&self) -> ErrorBody {
        let (kind, param, code) = match self {
            Self::InvalidRequest { param, code, .. } => {
                ("invalid_request_error", param.clone(), code.clone())
            }
            Self::Unauthenticated(_) => ("invalid_request_error", None, Some("invalid_api_key".into())),
            Self::PermissionDenied(_) => ("invalid_request_error", None, Some("permission_denied".into())),
            Self::Forbidden { code, .. } => ("invalid_request_error", None, Some(code.clone())),
            Self::ModelNotFound(_) => (
                "invalid_request_error",
                Some("model".into()),
                Some("model_not_found".into()),
            ),
            Self::NotFound(_) => ("invalid_request_error", None, Some("unknown_url".into())),
            Self::Conflict { code, .. } => ("invalid_request_error", None, Some(code.clone())),
            Self::PayloadTooLarge { .. } => ("invalid_request_error", None, Some("request_too_large".into())),
            Self::UnsupportedMediaType(_) => (
                "invalid_request_error",
                None,
                Some("unsupported_media_type".into()),
            ),
            Self::RateLimited { code, .. } if code == "insufficient_quota" => {
                ("insufficient_quota", None, Some(code.clone()))
            }
            Self::RateLimited { code, .. } => ("rate_limit_error", None, Some(code.clone())),
            Self::Engine(_) => ("server_error", None, Some("engine_error".into())),
            Self::BadGateway(_) => ("server_error", None, Some("bad_gateway".into())),
            Self::Unavailable(_) => ("server_error", None, Some("unavailable".into())),
            Self::NoCapacityYet { .. } => (
                "server_error",
                Some("model".into()),
                Some("no_capacity_yet".into()),
            ),
            Self::Timeout(_) => ("server_error", None, Some("timeout".into())),
            Self::Upstream { body, .. } => return body.clone(),
        };
        ErrorBody {
            message: self.to_string(),
            kind: kind.to_owned(),
            param,
            code,
        }
    }

    /// The JSON text of `{"error": {...}}`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&ErrorEnvelope { error: self.body() }).unwrap_or_else(|_| {
            r#"{"error":{"message":"internal error","type":"server_error","param":null,"code":null}}"#
                .to_owned()
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::warn!(error = %self, status = status.as_u16(), "request failed");
        } else {
            tracing::debug!(error = %self, status = status.as_u16(), "request refused");
        }
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            self.to_json(),
        )
            .into_response();
        if let Self::NoCapacityYet { retry_after, .. } = &self
            && let Ok(value) = header::HeaderValue::from_str(&retry_after.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if let Self::RateLimited {
            retry_after, headers, ..
        } = &self
        {
            if let Some(seconds) = retry_after
                && let Ok(value) = header::HeaderValue::from_str(&seconds.to_string())
            {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            for (name, value) in headers {
                if let Ok(value) = header::HeaderValue::from_str(value) {
                    response.headers_mut().insert(*name, value);
                }
            }
        }
        // Handlers' error responses are seen by the metrics layer through this extension.
        response.extensions_mut().insert(ErrorLabel(self.metric_label()));
        response
    }
}

/// Marks a response as an error of a given kind, for metrics.
#[derive(Debug, Clone, Copy)]
pub struct ErrorLabel(pub &'static str);

/// A JSON body extractor whose every rejection is an [`ApiError`].
///
/// Unlike `axum::Json`, a missing field is a 400 (as OpenAI answers), and the
/// body limit gives an OpenAI-shaped 413.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json_content_type(req.headers()) {
            return Err(ApiError::UnsupportedMediaType(
                "Expected request with `Content-Type: application/json`".to_owned(),
            ));
        }
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map_or(DEFAULT_BODY_LIMIT, |l| l.0);
        // A declared length over the limit is refused before a byte of the body is read.
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit as u64) {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| bytes_rejection(&rejection, limit))?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// The default body limit, 4 MiB: far above any chat request a person writes, far below
/// what could exhaust memory under concurrency.
pub const DEFAULT_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// The configured body limit, placed in request extensions by the router so that the
/// 413 message can state it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

fn bytes_rejection(rejection: &BytesRejection, limit: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge { limit }
    } else {
        ApiError::invalid(format!("Could not read the request body: {rejection}"))
    }
}

fn is_json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses a JSON body, turning serde's errors into OpenAI's wording.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| json_error(&e))
}

fn json_error(e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::InvalidRequest {
            message: format!(
                "We could not parse the JSON body of your request ({e}). \
                 The body must be a single valid JSON object."
            ),
            param: None,
            code: Some("invalid_json".to_owned()),
        },
        Category::Data => {
            let text = e.to_string();
            if let Some(field) = between(&text, "missing field `", "`") {
                ApiError::InvalidRequest {
                    message: format!("Missing required parameter: '{field}'."),
                    param: Some(field.to_owned()),
                    code: Some("missing_required_parameter".to_owned()),
                }
            } else {
                ApiError::InvalidRequest {
                    message: format!("Invalid request body: {text}"),
                    param: None,
                    code: Some("invalid_value".to_owned()),
                }
            }
        }
    }
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

/// The answer for a route that does not exist.
pub async fn fallback(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(uri.path().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Need {
        #[expect(dead_code, reason = "only its presence is tested")]
        model: String,
    }

    #[test]
    fn missing_field_names_the_param() {
        let err = parse_json::<Need>(b"{}").unwrap_err();
        assert_eq!(err.status_code(), StatusCode::BAD_REQUEST);
        assert_eq!(err.body().param.as_deref(), Some("model"));
    }

    #[test]
    fn truncated_json_is_400() {
        let err = parse_json::<Need>(br#"{"model": "x"#).unwrap_err();
        assert_eq!(err.status_code(), StatusCode::BAD_REQUEST);
        assert_eq!(err.body().code.as_deref(), Some("invalid_json"));
    }

    #[test]
    fn model_not_found_has_openai_code() {
        let body = ApiError::ModelNotFound("nope".into()).body();
        assert_eq!(body.code.as_deref(), Some("model_not_found"));
        assert_eq!(body.kind, "invalid_request_error");
    }
}
