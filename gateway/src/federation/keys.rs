//! The co-op's signing key and the tokens peers present to each other.
//!
//! Each co-op has an Ed25519 key (a PKCS#8 PEM file, made by `synco-gateway federation
//! keygen`). Its public half goes into the peers' bylaws (`publicKey`, the JWK's `x`),
//! or is served as a JWKS at `/federation/jwks.json` for peers that name a `jwksUrl`.
//!
//! Every federated call carries a fresh token: EdDSA, `kid` and `iss` the caller's
//! co-op, `aud` the callee, a unique `jti`, and at most [`MAX_LIFETIME`] to live. The
//! callee keeps each `jti` until its token expires and refuses it a second time, so a
//! token copied off the wire cannot be replayed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

/// How long a peer token lives.
pub const LIFETIME_SECONDS: i64 = 60;

/// The longest lifetime a peer token may claim (so that the replay cache stays small).
pub const MAX_LIFETIME: i64 = 300;

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

/// A new key: the PKCS#8 PEM text and the public key (unpadded base64url).
pub fn generate() -> anyhow::Result<(String, String)> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| anyhow::anyhow!("cannot generate an Ed25519 key"))?;
    let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()));
    let public = public_of(pkcs8.as_ref())?;
    Ok((pem, public))
}

fn public_of(pkcs8: &[u8]) -> anyhow::Result<String> {
    let pair =
        Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| anyhow::anyhow!("not an Ed25519 PKCS#8 key: {e}"))?;
    Ok(b64().encode(pair.public_key().as_ref()))
}

/// The co-op's signing key.
#[derive(Clone)]
pub struct SigningKey {
    encoding: EncodingKey,
    /// The public key, unpadded base64url.
    pub public: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &self.public)
            .finish()
    }
}

impl SigningKey {
    /// Reads a PKCS#8 PEM file.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("cannot read the federation key {}: {e}", path.display()))?;
        Self::from_pem(&text)
            .map_err(|e| anyhow::anyhow!("the federation key {} is unusable: {e}", path.display()))
    }

    pub fn from_pem(text: &[u8]) -> anyhow::Result<Self> {
        let parsed = pem::parse(text)?;
        anyhow::ensure!(
            parsed.tag() == "PRIVATE KEY",
            "expected a PKCS#8 PRIVATE KEY, found {}",
            parsed.tag()
        );
        Ok(Self {
            public: public_of(parsed.contents())?,
            encoding: EncodingKey::from_ed_der(parsed.contents()),
        })
    }

    /// A token from co-op `issuer` to co-op `audience`, valid for [`LIFETIME_SECONDS`].
    pub fn token(&self, issuer: &str, audience: &str) -> Result<String, jsonwebtoken::errors::Error> {
        let now = jiff::Timestamp::now().as_second();
        let claims = PeerClaims {
            iss: issuer.to_owned(),
            aud: audience.to_owned(),
            iat: now,
            exp: now + LIFETIME_SECONDS,
            jti: uuid::Uuid::new_v4().simple().to_string(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(issuer.to_owned());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
    }

    /// The JWKS that publishes the public key under `kid`.
    pub fn jwks(&self, kid: &str) -> serde_json::Value {
        serde_json::json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
            "kid": kid, "x": self.public,
        }]})
    }
}

/// What a peer token says.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PeerClaims {
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

/// Why a peer token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the peer token is malformed: {0}")]
    Malformed(String),
    #[error("the peer token does not verify: {0}")]
    Invalid(String),
    #[error("the peer token claims to live {0} s, more than the {MAX_LIFETIME} s allowed")]
    TooLong(i64),
    #[error("the peer token was already used (a replay)")]
    Replayed,
}

/// The issuer a token names in its header (before it is verified: only to choose the key).
pub fn claimed_issuer(token: &str) -> Result<String, TokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
    if header.alg != Algorithm::EdDSA {
        return Err(TokenError::Malformed(format!(
            "peer tokens are signed with EdDSA, not {:?}",
            header.alg
        )));
    }
    header
        .kid
        .ok_or_else(|| TokenError::Malformed("no kid naming the peer co-op".to_owned()))
}

/// The decoding key for a public key in the bylaws (unpadded base64url).
pub fn public_key(x: &str) -> Result<DecodingKey, TokenError> {
    DecodingKey::from_ed_components(x).map_err(|e| TokenError::Invalid(format!("the bylaws' key: {e}")))
}

/// Verifies a token from `issuer` to `audience` with `key`, and remembers its `jti` in
/// `seen` (a second use is a replay).
pub fn verify(
    token: &str,
    issuer: &str,
    audience: &str,
    key: &DecodingKey,
    seen: &Replays,
) -> Result<PeerClaims, TokenError> {
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.leeway = 5;
    let claims = jsonwebtoken::decode::<PeerClaims>(token, key, &validation)
        .map_err(|e| TokenError::Invalid(e.to_string()))?
        .claims;
    let lifetime = claims.exp - claims.iat;
    if lifetime > MAX_LIFETIME {
        return Err(TokenError::TooLong(lifetime));
    }
    seen.first_use(issuer, &claims.jti, claims.exp)?;
    Ok(claims)
}

/// The `jti`s seen, kept until their tokens expire.
#[derive(Debug, Default)]
pub struct Replays {
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    ids: HashMap<(String, String), i64>,
    /// The second of the last sweep of expired ids.
    swept: i64,
}

impl Replays {
    fn first_use(&self, issuer: &str, jti: &str, exp: i64) -> Result<(), TokenError> {
        let mut seen = self.seen.lock().map_err(|_| TokenError::Replayed)?;
        let now = jiff::Timestamp::now().as_second();
        if now > seen.swept {
            // Once a second: expired tokens are refused by their `exp` (beyond the
            // leeway), so their ids need not be kept.
            seen.swept = now;
            seen.ids.retain(|_, exp| *exp + 10 >= now);
        }
        match seen.ids.entry((issuer.to_owned(), jti.to_owned())) {
            std::collections::hash_map::Entry::Occupied(_) => Err(TokenError::Replayed),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(exp);
                Ok(())
            }
        }
    }

    /// Token ids held now.
    pub fn len(&self) -> usize {
        self.seen.lock().map_or(0, |s| s.ids.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_once_and_only_with_its_key_issuer_and_audience() {
        let (pem, public) = generate().unwrap();
        let key = SigningKey::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(key.public, public);
        let (_, other_public) = generate().unwrap();
        let seen = Replays::default();
        let token = key.token("riverside", "hillside").unwrap();
        assert_eq!(claimed_issuer(&token).unwrap(), "riverside");
        let decoding = public_key(&public).unwrap();
        // Another co-op's key, the wrong audience or issuer: refused.
        let wrong = public_key(&other_public).unwrap();
        assert!(matches!(
            verify(&token, "riverside", "hillside", &wrong, &seen),
            Err(TokenError::Invalid(_))
        ));
        assert!(verify(&token, "riverside", "valley", &decoding, &seen).is_err());
        assert!(verify(&token, "valley", "hillside", &decoding, &seen).is_err());
        let claims = verify(&token, "riverside", "hillside", &decoding, &seen).unwrap();
        assert_eq!(claims.aud, "hillside");
        assert_eq!(
            verify(&token, "riverside", "hillside", &decoding, &seen).unwrap_err(),
            TokenError::Replayed
        );
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn long_lived_and_non_eddsa_tokens_are_refused() {
        let (pem, public) = generate().unwrap();
        let parsed = pem::parse(pem.as_bytes()).unwrap();
        let encoding = EncodingKey::from_ed_der(parsed.contents());
        let now = jiff::Timestamp::now().as_second();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("riverside".to_owned());
        let claims = PeerClaims {
            iss: "riverside".to_owned(),
            aud: "hillside".to_owned(),
            iat: now,
            exp: now + 3600,
            jti: "x".to_owned(),
        };
        let long = jsonwebtoken::encode(&header, &claims, &encoding).unwrap();
        let seen = Replays::default();
        assert_eq!(
            verify(
                &long,
                "riverside",
                "hillside",
                &public_key(&public).unwrap(),
                &seen
            )
            .unwrap_err(),
            TokenError::TooLong(3600)
        );
        let mut hs = Header::new(Algorithm::HS256);
        hs.kid = Some("riverside".to_owned());
        let hs = jsonwebtoken::encode(&hs, &claims, &EncodingKey::from_secret(public.as_bytes())).unwrap();
        assert!(matches!(claimed_issuer(&hs), Err(TokenError::Malformed(_))));
    }
}
