//! JSON Web Tokens through `jsonwebtoken`.
//!
//! - Standalone mode: HS256 with a shared secret.
//! - Cluster mode: RS256, ES256 or EdDSA, verified against a JWKS (a file, or a URL
//!   refreshed every five minutes).
//!
//! `exp` is required; `exp`, `nbf`, `iss` and `aud` are validated (the last two when
//! configured). `alg: none` never parses (jsonwebtoken has no such algorithm). Each
//! verifier accepts only its own algorithms, and a JWKS key only the algorithm of its
//! key type, so a token signed with HS256 using a public key as the secret
//! (algorithm confusion) is refused.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};

/// Why a token was refused (sent to the caller as a 401 message).
pub type Refusal = String;

#[derive(Clone)]
enum Keys {
    Hs256(DecodingKey),
    Jwks(Arc<RwLock<JwkSet>>),
}

/// Verifies tokens and returns their `sub`.
#[derive(Clone)]
pub struct JwtVerifier {
    keys: Keys,
    issuer: Option<String>,
    audience: Option<String>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.keys {
            Keys::Hs256(_) => "HS256",
            Keys::Jwks(_) => "JWKS",
        };
        f.debug_struct("JwtVerifier")
            .field("mode", &mode)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
}

impl JwtVerifier {
    /// HS256 with a shared secret (standalone mode).
    pub fn hs256(secret: &[u8], issuer: Option<String>, audience: Option<String>) -> Self {
        Self {
            keys: Keys::Hs256(DecodingKey::from_secret(secret)),
            issuer,
            audience,
        }
    }

    /// RS256, ES256 or EdDSA keys from a JWKS document.
    pub fn jwks(set: JwkSet, issuer: Option<String>, audience: Option<String>) -> Self {
        Self {
            keys: Keys::Jwks(Arc::new(RwLock::new(set))),
            issuer,
            audience,
        }
    }

    /// Reads a JWKS file.
    pub fn jwks_file(
        path: &std::path::Path,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> anyhow::Result<Self> {
        let set: JwkSet = serde_json::from_slice(&std::fs::read(path)?)
            .map_err(|e| anyhow::anyhow!("{} is not a JWKS: {e}", path.display()))?;
        Ok(Self::jwks(set, issuer, audience))
    }

    /// Fetches a JWKS URL now and every five minutes.
    pub async fn jwks_url(
        url: String,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let set: JwkSet = client.get(&url).send().await?.error_for_status()?.json().await?;
        let verifier = Self::jwks(set, issuer, audience);
        if let Keys::Jwks(shared) = &verifier.keys {
            let shared = shared.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(300)).await;
                    let fetched = async {
                        client
                            .get(&url)
                            .send()
                            .await?
                            .error_for_status()?
                            .json::<JwkSet>()
                            .await
                    };
                    match fetched.await {
                        Ok(set) => {
                            if let Ok(mut keys) = shared.write() {
                                *keys = set;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, %url, "JWKS refresh failed; keeping the old keys")
                        }
                    }
                }
            });
        }
        Ok(verifier)
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.algorithms = vec![alg];
        v.validate_exp = true;
        v.validate_nbf = true;
        v.leeway = 30;
        v.set_required_spec_claims(&["exp", "sub"]);
        match &self.issuer {
            Some(iss) => v.set_issuer(&[iss]),
            None => v.iss = None,
        }
        match &self.audience {
            Some(aud) => v.set_audience(&[aud]),
            None => v.validate_aud = false,
        }
        v
    }

    /// The token's subject, if the token is valid.
    pub fn verify(&self, token: &str) -> Result<String, Refusal> {
        let header = decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
        let (key, alg) = match &self.keys {
            Keys::Hs256(key) => {
                if header.alg != Algorithm::HS256 {
                    return Err(format!("algorithm {:?} is not accepted", header.alg));
                }
                (key.clone(), Algorithm::HS256)
            }
            Keys::Jwks(set) => {
                if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA) {
                    return Err(format!("algorithm {:?} is not accepted", header.alg));
                }
                let set = set.read().map_err(|_| "key set unavailable".to_owned())?;
                let jwk = find_key(&set, header.kid.as_deref())?;
                if key_algorithm(jwk) != Some(header.alg) {
                    return Err("the token's algorithm does not match its key".to_owned());
                }
                let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable key: {e}"))?;
                (key, header.alg)
            }
        };
        let data = decode::<Claims>(token, &key, &self.validation(alg))
            .map_err(|e| format!("invalid token: {e}"))?;
        Ok(data.claims.sub)
    }
}

fn find_key<'a>(set: &'a JwkSet, kid: Option<&str>) -> Result<&'a Jwk, Refusal> {
    match kid {
        Some(kid) => set.find(kid).ok_or_else(|| format!("no key with id {kid}")),
        None => match set.keys.as_slice() {
            [only] => Ok(only),
            _ => Err("the token names no key id".to_owned()),
        },
    }
}

/// The only algorithm a key may verify, from its type (and its `alg` if stated).
fn key_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
        AlgorithmParameters::OctetKey(_) => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(by_type),
        Some(stated) => (format!("{stated:?}") == format!("{by_type:?}")).then_some(by_type),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    fn now() -> i64 {
        jiff::Timestamp::now().as_second()
    }

    fn token(secret: &[u8], claims: &serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    #[test]
    fn hs256_checks_signature_time_issuer_and_audience() {
        let v = JwtVerifier::hs256(b"secret", Some("synco".into()), Some("gateway".into()));
        let good =
            serde_json::json!({"sub": "bakery-coop", "exp": now() + 600, "iss": "synco", "aud": "gateway"});
        assert_eq!(v.verify(&token(b"secret", &good)).unwrap(), "bakery-coop");
        assert!(v.verify(&token(b"forged", &good)).is_err());
        let mut expired = good.clone();
        expired["exp"] = (now() - 3600).into();
        assert!(v.verify(&token(b"secret", &expired)).is_err());
        let mut early = good.clone();
        early["nbf"] = (now() + 3600).into();
        assert!(v.verify(&token(b"secret", &early)).is_err());
        let mut aud = good.clone();
        aud["aud"] = "elsewhere".into();
        assert!(v.verify(&token(b"secret", &aud)).is_err());
        let mut iss = good.clone();
        iss["iss"] = "mallory".into();
        assert!(v.verify(&token(b"secret", &iss)).is_err());
        let mut no_exp = good;
        no_exp.as_object_mut().unwrap().remove("exp");
        assert!(v.verify(&token(b"secret", &no_exp)).is_err());
    }

    #[test]
    fn alg_none_and_confusion_are_refused() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let v = JwtVerifier::hs256(b"secret", None, None);
        let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let claims = b64.encode(format!(r#"{{"sub":"bakery-coop","exp":{}}}"#, now() + 600));
        assert!(v.verify(&format!("{header}.{claims}.")).is_err());

        // A JWKS verifier refuses HS256 outright, whatever secret signed it.
        let set: JwkSet = serde_json::from_value(serde_json::json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519", "kid": "k1",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        }]}))
        .unwrap();
        let jwks = JwtVerifier::jwks(set, None, None);
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        let confused = encode(
            &header,
            &serde_json::json!({"sub": "bakery-coop", "exp": now() + 600}),
            &EncodingKey::from_secret(b"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"),
        )
        .unwrap();
        assert!(jwks.verify(&confused).unwrap_err().contains("not accepted"));
    }

    /// Keys generated now, one per JWKS algorithm: (kid, algorithm, signing key, JWK).
    fn generated_keys() -> Vec<(&'static str, Algorithm, EncodingKey, serde_json::Value)> {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::{self, KeyPair};
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let rng = SystemRandom::new();
        let jwk_of =
            |key: &EncodingKey, alg| serde_json::to_value(Jwk::from_encoding_key(key, alg).unwrap()).unwrap();

        let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let rsa_pkcs8 = rsa.as_der().unwrap();
        let rsa_pkcs1 = pkcs8::PrivateKeyInfo::try_from(rsa_pkcs8.as_ref())
            .unwrap()
            .private_key
            .to_vec();
        let rsa = EncodingKey::from_rsa_der(&rsa_pkcs1);

        let ec = signature::EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap();
        let ec = EncodingKey::from_ec_der(ec.as_ref());

        let ed_pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let ed_public = signature::Ed25519KeyPair::from_pkcs8(ed_pkcs8.as_ref()).unwrap();
        let ed_jwk = serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "x": b64.encode(ed_public.public_key().as_ref())
        });
        let ed = EncodingKey::from_ed_der(ed_pkcs8.as_ref());

        let mut out = vec![
            ("rsa", Algorithm::RS256, jwk_of(&rsa, Algorithm::RS256), rsa),
            ("ec", Algorithm::ES256, jwk_of(&ec, Algorithm::ES256), ec),
            ("ed", Algorithm::EdDSA, ed_jwk, ed),
        ]
        .into_iter()
        .map(|(kid, alg, mut jwk, key)| {
            jwk["kid"] = kid.into();
            (kid, alg, key, jwk)
        })
        .collect::<Vec<_>>();
        out.sort_by_key(|k| k.0);
        out
    }

    fn signed(kid: &str, alg: Algorithm, key: &EncodingKey, claims: &serde_json::Value) -> String {
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        encode(&header, claims, key).unwrap()
    }

    #[test]
    fn rs256_es256_and_eddsa_tokens_verify_against_a_jwks() {
        let keys = generated_keys();
        let set: JwkSet = serde_json::from_value(
            serde_json::json!({"keys": keys.iter().map(|k| k.3.clone()).collect::<Vec<_>>()}),
        )
        .unwrap();
        let v = JwtVerifier::jwks(set, Some("idp".into()), Some("synco".into()));
        let good = serde_json::json!({"sub": "school-sub", "exp": now() + 600, "iss": "idp", "aud": "synco"});
        for (kid, alg, key, _) in &keys {
            assert_eq!(
                v.verify(&signed(kid, *alg, key, &good)).unwrap(),
                "school-sub",
                "{alg:?}"
            );
            let mut expired = good.clone();
            expired["exp"] = (now() - 3600).into();
            assert!(
                v.verify(&signed(kid, *alg, key, &expired)).is_err(),
                "{alg:?} expired"
            );
            let mut aud = good.clone();
            aud["aud"] = "elsewhere".into();
            assert!(
                v.verify(&signed(kid, *alg, key, &aud)).is_err(),
                "{alg:?} audience"
            );
            assert!(
                v.verify(&signed("nobody", *alg, key, &good)).is_err(),
                "{alg:?} unknown kid"
            );
        }
        // Signed by one key but naming another key's id: the signature does not match.
        let (ec_kid, rsa) = (keys[0].0, &keys[2]);
        assert_eq!(ec_kid, "ec");
        assert!(v.verify(&signed(ec_kid, rsa.1, &rsa.2, &good)).is_err());
        // HS256 with the RSA key's public JWK text as the secret (algorithm confusion).
        let confused = signed(
            "rsa",
            Algorithm::HS256,
            &EncodingKey::from_secret(rsa.3.to_string().as_bytes()),
            &good,
        );
        assert!(v.verify(&confused).is_err());
    }
}
