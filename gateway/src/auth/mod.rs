//! Identity: who is calling. Every `/v1` request needs `Authorization: Bearer ...`
//! with an API key ([`keys`]) or a JWT ([`jwt`]); the caller is resolved to a Member
//! or Customer of the co-op ([`crate::coop::Coop`]) and put in the request's
//! extensions for the handlers and admission. Anything else gets a 401 in OpenAI's shape.

pub mod jwt;
pub mod keys;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sea_orm::DatabaseConnection;

use crate::admission::Caller;
use crate::coop::CoopHandle;
use crate::error::ApiError;
use keys::KeyCheck;

/// What authentication needs.
#[derive(Debug, Clone)]
pub struct Auth {
    pub coop: CoopHandle,
    pub db: DatabaseConnection,
    pub jwt: Option<jwt::JwtVerifier>,
    /// The database's last answer per key (by the key's hash), for valid and revoked
    /// keys only (so that random keys cannot grow it): trusted for `key_ttl`, and
    /// whatever its age while the database cannot be reached, so that a database
    /// restart does not turn every caller away.
    last_known: Arc<Mutex<HashMap<String, (Instant, KeyCheck)>>>,
    key_ttl: Duration,
}

impl Auth {
    /// `key_ttl`: how long a checked key is trusted without asking the database (the
    /// longest a revocation takes to be seen).
    pub fn new(
        coop: CoopHandle,
        db: DatabaseConnection,
        jwt: Option<jwt::JwtVerifier>,
        key_ttl: Duration,
    ) -> Self {
        Self {
            coop,
            db,
            jwt,
            last_known: Arc::default(),
            key_ttl,
        }
    }

    fn remembered(&self, hash: &str) -> Option<(Instant, KeyCheck)> {
        self.last_known.lock().ok()?.get(hash).cloned()
    }

    /// The caller presenting `token`.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, ApiError> {
        if keys::is_api_key(token) {
            return self.by_key(token).await;
        }
        let Some(verifier) = &self.jwt else {
            return Err(ApiError::Unauthenticated(
                "Incorrect API key provided.".to_owned(),
            ));
        };
        let sub = verifier
            .verify(token)
            .map_err(|why| ApiError::Unauthenticated(format!("Invalid token: {why}")))?;
        self.coop
            .current()
            .by_identity(&sub)
            .cloned()
            .ok_or_else(|| ApiError::Unauthenticated(format!("No member or customer has identity {sub}.")))
    }

    async fn by_key(&self, key: &str) -> Result<Caller, ApiError> {
        let hash = keys::digest(key);
        let remembered = self.remembered(&hash);
        let fresh = remembered
            .as_ref()
            .filter(|(at, _)| at.elapsed() < self.key_ttl)
            .map(|(_, check)| check.clone());
        let check = if let Some(check) = fresh {
            check
        } else {
            match keys::check(&self.db, key).await {
                Ok(check) => {
                    if !matches!(check, KeyCheck::Unknown)
                        && let Ok(mut cache) = self.last_known.lock()
                    {
                        cache.insert(hash, (Instant::now(), check.clone()));
                    }
                    check
                }
                Err(e) => match remembered {
                    Some((_, check)) => {
                        tracing::warn!(error = %e, "database unavailable; using the key's last known state");
                        check
                    }
                    None => {
                        return Err(ApiError::Unavailable(
                            "Cannot check the API key now; try again shortly.".to_owned(),
                        ));
                    }
                },
            }
        };
        match check {
            KeyCheck::Valid { kind, caller } => self
                .coop
                .current()
                .by_name(kind, &caller)
                .cloned()
                .ok_or_else(|| {
                    ApiError::Unauthenticated(format!(
                        "The key's owner {caller} is not an active member or customer."
                    ))
                }),
            KeyCheck::Revoked => Err(ApiError::Unauthenticated(
                "This API key has been revoked.".to_owned(),
            )),
            KeyCheck::Unknown => Err(ApiError::Unauthenticated(
                "Incorrect API key provided.".to_owned(),
            )),
        }
    }
}

/// The middleware: a 401 unless the request carries a valid key or token.
pub async fn require_caller(State(auth): State<Arc<Auth>>, mut req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(token) = token else {
        return ApiError::Unauthenticated(
            "You didn't provide an API key. Send it as `Authorization: Bearer <key>`.".to_owned(),
        )
        .into_response();
    };
    match auth.authenticate(token).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}
