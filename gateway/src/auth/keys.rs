//! API keys: `sk-synco-<prefix>-<secret>`. The secret is 32 random bytes, shown once
//! at creation; the database keeps only the public prefix (to find and name the key)
//! and the SHA-256 of the whole key. A fast hash is right here: the key is random
//! with 256 bits of entropy, so there is nothing to brute-force a slow hash would
//! protect.

use rand::RngCore;
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};
use sha2::{Digest, Sha256};

use crate::admission::CallerKind;
use crate::db::api_key;

const SCHEME: &str = "sk-synco-";

/// A key just created: `secret` is the only copy of the key.
#[derive(Debug)]
pub struct NewKey {
    pub prefix: String,
    pub key: String,
}

/// Whether `token` looks like one of our keys (rather than a JWT).
pub fn is_api_key(token: &str) -> bool {
    token.starts_with(SCHEME)
}

/// The SHA-256 of a key, in hex: what the database keeps.
pub fn digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The public prefix of a key, if it is well-formed.
pub fn prefix_of(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(SCHEME)?;
    let (prefix, secret) = rest.split_once('-')?;
    (prefix.len() == 8 && secret.len() == 64).then_some(prefix)
}

/// Equality that takes the same time wherever the inputs differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn kind_str(kind: CallerKind) -> &'static str {
    kind.as_str()
}

fn kind_of(s: &str) -> Option<CallerKind> {
    match s {
        "member" => Some(CallerKind::Member),
        "customer" => Some(CallerKind::Customer),
        _ => None,
    }
}

/// Creates a key for a Member or Customer.
pub async fn create(
    db: &DatabaseConnection,
    kind: CallerKind,
    caller: &str,
    label: &str,
) -> Result<NewKey, sea_orm::DbErr> {
    let mut rng = rand::rng();
    let mut prefix_bytes = [0u8; 4];
    rng.fill_bytes(&mut prefix_bytes);
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    let prefix = hex::encode(prefix_bytes);
    let key = format!("{SCHEME}{prefix}-{}", hex::encode(secret));
    api_key::Entity::insert(api_key::ActiveModel {
        prefix: Set(prefix.clone()),
        secret_sha256: Set(digest(&key)),
        caller: Set(caller.to_owned()),
        caller_kind: Set(kind_str(kind).to_owned()),
        label: Set(label.to_owned()),
        created_at: Set(jiff::Timestamp::now().to_string()),
        revoked_at: Set(None),
    })
    .exec(db)
    .await?;
    Ok(NewKey { prefix, key })
}

/// Every key, newest first (no secrets: there are none to show).
pub async fn list(db: &DatabaseConnection) -> Result<Vec<api_key::Model>, sea_orm::DbErr> {
    api_key::Entity::find()
        .order_by_desc(api_key::Column::CreatedAt)
        .all(db)
        .await
}

/// Revokes the key with `prefix`; false if there is no such live key.
pub async fn revoke(db: &DatabaseConnection, prefix: &str) -> Result<bool, sea_orm::DbErr> {
    let result = api_key::Entity::update_many()
        .col_expr(
            api_key::Column::RevokedAt,
            sea_orm::sea_query::Expr::value(jiff::Timestamp::now().to_string()),
        )
        .filter(api_key::Column::Prefix.eq(prefix))
        .filter(api_key::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// What a stored key says about a presented one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyCheck {
    Valid { kind: CallerKind, caller: String },
    Revoked,
    Unknown,
}

/// Looks a presented key up.
pub async fn check(db: &DatabaseConnection, key: &str) -> Result<KeyCheck, sea_orm::DbErr> {
    let Some(prefix) = prefix_of(key) else {
        return Ok(KeyCheck::Unknown);
    };
    let Some(row) = api_key::Entity::find_by_id(prefix.to_owned()).one(db).await? else {
        return Ok(KeyCheck::Unknown);
    };
    if !same(&row.secret_sha256, &digest(key)) {
        return Ok(KeyCheck::Unknown);
    }
    if row.revoked_at.is_some() {
        return Ok(KeyCheck::Revoked);
    }
    Ok(
        kind_of(&row.caller_kind).map_or(KeyCheck::Unknown, |kind| KeyCheck::Valid {
            kind,
            caller: row.caller,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_parsed_strictly() {
        let key = format!("{SCHEME}0123abcd-{}", "f".repeat(64));
        assert_eq!(prefix_of(&key), Some("0123abcd"));
        assert_eq!(prefix_of("sk-synco-0123abcd-short"), None);
        assert_eq!(prefix_of("Bearer nonsense"), None);
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
    }
}
