//! Signed-in sessions of the members' pages, kept in the gateway's database (both modes
//! have one), so that every replica knows them and ending one ends it everywhere.
//!
//! The browser holds a random token in an HttpOnly, SameSite=Strict cookie scoped to
//! `/governance`; the database keeps its SHA-256. Each session has its own CSRF token,
//! which every form carries and every POST must match. The key a member signs in with is
//! checked once and never stored, in the browser or here.

use std::time::Duration;

use cookie::{Cookie, SameSite};
use rand::RngCore as _;
use sea_orm::{ActiveModelTrait as _, ColumnTrait as _, EntityTrait as _, QueryFilter as _, Set};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::db::entities::web_session;

/// The cookie's name.
pub const COOKIE: &str = "synco_session";
/// The path the cookie is sent to.
pub const COOKIE_PATH: &str = "/governance";

/// A signed-in member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub member: String,
    pub csrf: String,
    pub expires_at: i64,
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Starts a session for `member`; returns the cookie's token and the session.
///
/// # Errors
///
/// The database cannot be written.
pub async fn start(
    db: &sea_orm::DatabaseConnection,
    member: &str,
    now: i64,
    ttl: Duration,
) -> Result<(String, Session), sea_orm::DbErr> {
    let token = random_token();
    let session = Session {
        member: member.to_owned(),
        csrf: random_token(),
        expires_at: now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
    };
    web_session::ActiveModel {
        token_digest: Set(digest(&token)),
        member: Set(session.member.clone()),
        csrf: Set(session.csrf.clone()),
        created_at: Set(now),
        expires_at: Set(session.expires_at),
    }
    .insert(db)
    .await?;
    // Expired sessions are of no use to anyone: clear them as new ones start.
    web_session::Entity::delete_many()
        .filter(web_session::Column::ExpiresAt.lte(now))
        .exec(db)
        .await?;
    Ok((token, session))
}

/// Why a cookie signs nobody in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// No such session (never started, or ended).
    Unknown,
    /// It has expired.
    Expired,
}

/// The session a cookie's token names, if it is still valid at `now`.
///
/// # Errors
///
/// The database cannot be read (outer error), or the session is not valid (inner).
pub async fn find(
    db: &sea_orm::DatabaseConnection,
    token: &str,
    now: i64,
) -> Result<Result<Session, Invalid>, sea_orm::DbErr> {
    let Some(row) = web_session::Entity::find_by_id(digest(token)).one(db).await? else {
        return Ok(Err(Invalid::Unknown));
    };
    if row.expires_at <= now {
        return Ok(Err(Invalid::Expired));
    }
    Ok(Ok(Session {
        member: row.member,
        csrf: row.csrf,
        expires_at: row.expires_at,
    }))
}

/// Ends the session a cookie's token names.
///
/// # Errors
///
/// The database cannot be written.
pub async fn end(db: &sea_orm::DatabaseConnection, token: &str) -> Result<(), sea_orm::DbErr> {
    web_session::Entity::delete_by_id(digest(token)).exec(db).await?;
    Ok(())
}

/// True when a form's CSRF token is the session's (compared in constant time).
#[must_use]
pub fn csrf_matches(session: &Session, sent: &str) -> bool {
    !sent.is_empty() && bool::from(session.csrf.as_bytes().ct_eq(sent.as_bytes()))
}

/// The cookie that holds `token` for `ttl`. `Secure` when the page was reached over
/// HTTPS (behind a proxy that says so).
#[must_use]
pub fn cookie(token: &str, ttl: Duration, secure: bool) -> Cookie<'static> {
    Cookie::build((COOKIE, token.to_owned()))
        .path(COOKIE_PATH)
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .max_age(cookie::time::Duration::seconds(
            i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
        ))
        .build()
}

/// The cookie that clears the session from the browser.
#[must_use]
pub fn cleared(secure: bool) -> Cookie<'static> {
    Cookie::build((COOKIE, ""))
        .path(COOKIE_PATH)
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .max_age(cookie::time::Duration::ZERO)
        .build()
}

/// The session token in a request's `Cookie` headers.
#[must_use]
pub fn token_in(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE && !c.value().is_empty())
        .map(|c| c.value().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_http_only_strict_and_scoped() {
        let c = cookie("abc", Duration::from_secs(60), false).to_string();
        assert!(c.contains("HttpOnly"), "{c}");
        assert!(c.contains("SameSite=Strict"), "{c}");
        assert!(c.contains("Path=/governance"), "{c}");
        assert!(c.contains("Max-Age=60"), "{c}");
        assert!(!c.contains("Secure"), "{c}");
        assert!(
            cookie("abc", Duration::from_secs(60), true)
                .to_string()
                .contains("Secure")
        );
        assert!(cleared(false).to_string().contains("Max-Age=0"));
    }

    #[test]
    fn csrf_must_match_exactly() {
        let s = Session {
            member: "alice".to_owned(),
            csrf: "0123".to_owned(),
            expires_at: 0,
        };
        assert!(csrf_matches(&s, "0123"));
        assert!(!csrf_matches(&s, "0124"));
        assert!(!csrf_matches(&s, "012"));
        assert!(!csrf_matches(&s, ""));
    }

    #[test]
    fn the_token_is_read_from_any_cookie_header() {
        let mut h = axum::http::HeaderMap::new();
        h.append(
            axum::http::header::COOKIE,
            "a=1; synco_session=tok".parse().unwrap(),
        );
        assert_eq!(token_in(&h).as_deref(), Some("tok"));
        let mut h = axum::http::HeaderMap::new();
        h.append(axum::http::header::COOKIE, "synco_session=".parse().unwrap());
        assert_eq!(token_in(&h), None);
    }
}
