//! Identity, quotas, priority, metering and billing, end to end against the real
//! binary, on SQLite and on a throwaway PostgreSQL (see `common/postgres.rs`).

#![expect(clippy::unwrap_used, clippy::panic, reason = "tests")]

mod common;

use std::path::Path;
use std::time::Duration;

use common::coop::{self as c, CoopSpec};
use common::postgres::Postgres;
use common::{Gateway, tiny_model};
use serde_json::Value;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

async fn post(
    gateway: &Gateway,
    auth: Option<&str>,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = client().post(gateway.url("/v1/chat/completions")).json(body);
    if let Some(auth) = auth {
        req = req.bearer_auth(auth);
    }
    let response = req.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

/// An OpenAI-shaped error with this status and code.
fn assert_error(got: &(u16, reqwest::header::HeaderMap, Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "{}", got.2);
    let error = &got.2["error"];
    assert!(
        error["message"].is_string() && error["type"].is_string(),
        "{}",
        got.2
    );
    assert_eq!(error["code"], code, "{}", got.2);
}

struct Db {
    pg: Option<Postgres>,
    data: tempfile::TempDir,
}

impl Db {
    fn sqlite() -> Self {
        Self {
            pg: None,
            data: tempfile::tempdir().unwrap(),
        }
    }

    fn postgres() -> Option<Self> {
        Some(Self {
            pg: Some(Postgres::start()?),
            data: tempfile::tempdir().unwrap(),
        })
    }

    fn url(&self) -> Option<String> {
        self.pg.as_ref().map(Postgres::url)
    }

    fn dir(&self) -> &Path {
        self.data.path()
    }

    async fn connect(&self) -> sea_orm::DatabaseConnection {
        let url = synco_gateway::db::url(self.dir(), self.url().as_deref()).unwrap();
        synco_gateway::db::connect(&url).await.unwrap()
    }

    async fn records(&self) -> Vec<synco_gateway::db::usage_record::Model> {
        use sea_orm::EntityTrait;
        synco_gateway::db::usage_record::Entity::find()
            .all(&self.connect().await)
            .await
            .unwrap()
    }
}

fn manifests(spec: &CoopSpec<'_>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    c::write_manifests(dir.path(), spec);
    dir
}

async fn mock(latency_ms: u64) -> String {
    let addr = synco_gateway::mock_upstream::start_with_latency(Duration::from_millis(latency_ms))
        .await
        .unwrap();
    format!("{{kind: External, url: \"http://{addr}/v1\"}}")
}

// ---------------------------------------------------------------------------------
// Identity, access and budget.

async fn identity_access_and_budget(db: Db) {
    let _ = tiny_model();
    let m = manifests(&CoopSpec::default());
    let url = db.url();
    let gateway = c::standalone(
        m.path(),
        db.dir(),
        url.as_deref(),
        &["--token-budget", "school=400"],
    );
    let key = c::create_key(&["--member", "bakery"], db.dir(), url.as_deref());
    let customer = c::create_key(&["--customer", "buyer"], db.dir(), url.as_deref());
    let revoked = c::create_key(&["--member", "bakery"], db.dir(), url.as_deref());
    let prefix = revoked
        .strip_prefix("sk-synco-")
        .unwrap()
        .split('-')
        .next()
        .unwrap()
        .to_owned();
    c::admin(&["keys", "revoke", &prefix], db.dir(), url.as_deref());
    let listed = c::admin(&["keys", "list"], db.dir(), url.as_deref());
    assert!(listed.contains(&prefix) && !listed.contains(&revoked), "{listed}");
    // No key for a member the co-op does not have.
    let refused = std::process::Command::new(common::binary())
        .args(["keys", "create", "--member", "nobody"])
        .args(c::db_args(db.dir(), url.as_deref()))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no member named nobody"));

    let body = c::chat("open-chat", 2);
    assert_error(&post(&gateway, None, &body).await, 401, "invalid_api_key");
    let forged = c::token("another-secret-of-at-least-32-bytes!!", &c::claims("bakery-sub"));
    assert_error(
        &post(&gateway, Some(&forged), &body).await,
        401,
        "invalid_api_key",
    );
    let mut expired = c::claims("bakery-sub");
    expired["exp"] = (c::now() - 3600).into();
    assert_error(
        &post(&gateway, Some(&c::token(c::SECRET, &expired)), &body).await,
        401,
        "invalid_api_key",
    );
    let mut audience = c::claims("bakery-sub");
    audience["aud"] = "somebody-else".into();
    assert_error(
        &post(&gateway, Some(&c::token(c::SECRET, &audience)), &body).await,
        401,
        "invalid_api_key",
    );
    let none = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(c::claims("bakery-sub").to_string())
        )
    };
    assert_error(&post(&gateway, Some(&none), &body).await, 401, "invalid_api_key");
    assert_error(
        &post(&gateway, Some(&revoked), &body).await,
        401,
        "invalid_api_key",
    );
    assert_error(
        &post(&gateway, Some("sk-synco-nonsense"), &body).await,
        401,
        "invalid_api_key",
    );

    let good = c::token(c::SECRET, &c::claims("bakery-sub"));
    let ok = post(&gateway, Some(&good), &body).await;
    assert_eq!(ok.0, 200, "{}", ok.2);
    let ok = post(&gateway, Some(&key), &body).await;
    assert_eq!(ok.0, 200, "{}", ok.2);
    for header in [
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-tokens",
    ] {
        assert!(ok.1.contains_key(header), "{header} missing: {:?}", ok.1);
    }

    // A customer cannot use a members-only model, but may use an open one.
    assert_error(
        &post(&gateway, Some(&customer), &c::chat("members-chat", 2)).await,
        403,
        "permission_denied",
    );
    let ok = post(&gateway, Some(&customer), &body).await;
    assert_eq!(ok.0, 200, "{}", ok.2);

    // The school's budget is 400 tokens: served, then refused with insufficient_quota.
    let school = c::token(c::SECRET, &c::claims("school-sub"));
    let mut served = 0;
    let refused = loop {
        let got = post(&gateway, Some(&school), &body).await;
        if got.0 == 200 {
            served += 1;
            assert!(served < 200, "the budget is never enforced");
            continue;
        }
        break got;
    };
    assert!(served >= 1);
    assert_error(&refused, 429, "insufficient_quota");
    assert_eq!(refused.2["error"]["type"], "insufficient_quota");

    let usage: Value = client()
        .get(gateway.url("/v1/usage"))
        .bearer_auth(&school)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(usage["caller"], "school", "{usage}");
    assert_eq!(usage["quota"]["monthly_token_budget"], 400, "{usage}");
    let used = usage["total_tokens"].as_u64().unwrap();
    assert!(used <= 400, "{usage}");
    drop(gateway);
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_access_and_budget_sqlite() {
    identity_access_and_budget(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_access_and_budget_postgres() {
    let Some(db) = Db::postgres() else { return };
    identity_access_and_budget(db).await;
}

// ---------------------------------------------------------------------------------
// 200 concurrent requests from one caller against a budget of N.

const N: u64 = 1000;

async fn concurrent_budget(db: Db) {
    let engine = mock(20).await;
    let m = manifests(&CoopSpec {
        open_engine: &engine,
        ..CoopSpec::default()
    });
    let url = db.url();
    let budget = format!("bakery={N}");
    let mut gateway = c::standalone(
        m.path(),
        db.dir(),
        url.as_deref(),
        &[
            "--token-budget",
            &budget,
            "--engine-slots",
            "16",
            "--budget-slice",
            "250",
        ],
    );
    let key = c::create_key(&["--member", "bakery"], db.dir(), url.as_deref());
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let url = gateway.url("/v1/chat/completions");
            let key = key.clone();
            tokio::spawn(async move {
                let r = client()
                    .post(url)
                    .bearer_auth(key)
                    .json(&c::chat("open-chat", 4))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                (status, r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut served = 0u64;
    let mut refused = 0u64;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            200 => served += 1,
            429 => {
                assert_eq!(body["error"]["code"], "insufficient_quota", "{body}");
                refused += 1;
            }
            other => panic!("unclean answer {other}: {body}"),
        }
    }
    assert_eq!(served + refused, 200);
    assert!(gateway.terminate().success());
    let records = db.records().await;
    assert_eq!(records.len() as u64, served, "one record per served request");
    let charged: i64 = records
        .iter()
        .map(|r| r.prompt_tokens + r.completion_tokens)
        .sum();
    // The stated bound: with max_tokens set and the prompt reserved at its byte size,
    // nothing can be used beyond a reservation, so the overshoot bound is 0.
    assert!(charged as u64 <= N, "charged {charged} > budget {N}");
    assert!(refused > 0, "the budget was never reached (served {served})");
    eprintln!("served {served}, refused {refused}, charged {charged} of {N}");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_requests_stay_within_budget_sqlite() {
    concurrent_budget(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_requests_stay_within_budget_postgres() {
    let Some(db) = Db::postgres() else { return };
    concurrent_budget(db).await;
}

// ---------------------------------------------------------------------------------
// Prepaid credit and the statement.

async fn prepaid_credit(db: Db) {
    let engine = mock(0).await;
    let m = manifests(&CoopSpec {
        open_engine: &engine,
        prepaid_credit_minor: 30,
        ..CoopSpec::default()
    });
    let url = db.url();
    let mut gateway = c::standalone(m.path(), db.dir(), url.as_deref(), &[]);
    let key = c::create_key(&["--customer", "buyer"], db.dir(), url.as_deref());
    let mut served = 0;
    let refused = loop {
        let got = post(&gateway, Some(&key), &c::chat("open-chat", 4)).await;
        if got.0 != 200 {
            break got;
        }
        served += 1;
        assert!(served < 100, "credit never runs out");
    };
    assert_error(&refused, 429, "insufficient_quota");
    assert!(served >= 3, "served {served}");
    // A top-up in the books lets the customer go on, while the gateway runs.
    let posted = c::admin(
        &["books", "topup", "--customer", "buyer", "--minor", "20"],
        db.dir(),
        url.as_deref(),
    );
    assert!(posted.contains(",topup,buyer,20,"), "{posted}");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut topped = 0;
    loop {
        let got = post(&gateway, Some(&key), &c::chat("open-chat", 4)).await;
        if got.0 == 200 {
            topped += 1;
        } else if topped > 0 {
            assert_error(&got, 429, "insufficient_quota");
            break;
        } else {
            assert!(
                std::time::Instant::now() < deadline,
                "the top-up never counted: {}",
                got.2
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(topped < 100, "credit never runs out");
    }
    assert!(topped >= 2, "20 more minor units served {topped}");
    served += topped;
    assert!(gateway.terminate().success());

    let records = db.records().await;
    assert_eq!(records.len(), served);
    // 5 prompt tokens at 100 000 and 4 completion at 300 000 per million minor units.
    for r in &records {
        assert_eq!(
            r.cost_micro,
            r.prompt_tokens * 100_000 + r.completion_tokens * 300_000,
            "{r:?}"
        );
        assert_eq!(r.currency, "EUR");
    }
    let spent: i64 = records.iter().map(|r| r.cost_micro).sum();
    assert!(spent <= 50 * 1_000_000, "spent {spent} of 30 + 20 minor units");
    // The balance the customer reads is the credit and the top-up, less every charge.
    let gateway = c::standalone(m.path(), db.dir(), url.as_deref(), &[]);
    let usage: Value = client()
        .get(gateway.url("/v1/usage"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let balance = &usage["balance"];
    assert_eq!(
        (balance["credit_minor"].as_i64(), balance["topups_minor"].as_i64()),
        (Some(30), Some(20)),
        "{usage}"
    );
    assert_eq!(
        balance["charged_micro_minor_units"].as_i64(),
        Some(spent),
        "{usage}"
    );
    assert_eq!(
        balance["remaining_minor"].as_i64(),
        Some((50 * 1_000_000 - spent) / 1_000_000),
        "{usage}"
    );
    let statement: Value = serde_json::from_str(&c::admin(
        &[
            "usage",
            "statement",
            "--customer",
            "buyer",
            "--month",
            &c::month(),
        ],
        db.dir(),
        url.as_deref(),
    ))
    .unwrap();
    assert_eq!(
        statement["total"]["cost_micro"].as_i64().unwrap(),
        spent,
        "{statement}"
    );
    assert_eq!(statement["total"]["requests"].as_u64().unwrap(), served as u64);
    assert_eq!(statement["currency"], "EUR");
    let revenue = c::admin(
        &["usage", "revenue", "--month", &c::month()],
        db.dir(),
        url.as_deref(),
    );
    assert!(
        revenue.contains(&format!(",EUR,{served},")) && revenue.contains(&format!(",{spent},")),
        "{revenue}"
    );
    let export = c::admin(
        &["usage", "export", "--month", &c::month()],
        db.dir(),
        url.as_deref(),
    );
    assert!(
        export.lines().any(|l| l.starts_with("buyer,customer,EUR,")),
        "{export}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn prepaid_customer_is_served_until_credit_is_spent_sqlite() {
    prepaid_credit(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn prepaid_customer_is_served_until_credit_is_spent_postgres() {
    let Some(db) = Db::postgres() else { return };
    prepaid_credit(db).await;
}

// ---------------------------------------------------------------------------------
// JWTs from an identity provider's JWKS URL (cluster mode's way), ES256.

#[tokio::test(flavor = "multi_thread")]
async fn tokens_verify_against_a_jwks_url_and_hs256_is_then_refused() {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, jwk::Jwk};

    let engine = mock(0).await;
    let m = manifests(&CoopSpec {
        open_engine: &engine,
        ..CoopSpec::default()
    });
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
    let key = EncodingKey::from_ec_der(pkcs8.as_ref());
    let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap()).unwrap();
    jwk["kid"] = "idp-1".into();
    let jwks = serde_json::json!({"keys": [jwk]});
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                let jwks = jwks.clone();
                async move { axum::Json(jwks) }
            }),
        );
        axum::serve(listener, app).await.unwrap();
    });

    let data = tempfile::tempdir().unwrap();
    let args: Vec<String> = [
        "standalone",
        "--manifests",
        &m.path().display().to_string(),
        "--data-dir",
        &data.path().display().to_string(),
        "--jwks-url",
        &jwks_url,
        "--jwt-issuer",
        c::ISSUER,
        "--jwt-audience",
        c::AUDIENCE,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let gateway = Gateway::start(tempfile::tempdir().unwrap(), &args);
    let body = c::chat("open-chat", 2);

    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("idp-1".into());
    let good = encode(&header, &c::claims("bakery-sub"), &key).unwrap();
    let ok = post(&gateway, Some(&good), &body).await;
    assert_eq!(ok.0, 200, "{}", ok.2);
    let mut expired = c::claims("bakery-sub");
    expired["exp"] = (c::now() - 3600).into();
    let expired = encode(&header, &expired, &key).unwrap();
    assert_error(
        &post(&gateway, Some(&expired), &body).await,
        401,
        "invalid_api_key",
    );
    // Not a member's identity: a valid signature is not enough.
    let stranger = encode(&header, &c::claims("nobody-sub"), &key).unwrap();
    assert_error(
        &post(&gateway, Some(&stranger), &body).await,
        401,
        "invalid_api_key",
    );
    // A gateway on a JWKS takes no HS256 token, even one signed with the JWKS text.
    let confused = c::token(
        &serde_json::to_string(&jwk_text(&jwks_url).await).unwrap(),
        &c::claims("bakery-sub"),
    );
    assert_error(
        &post(&gateway, Some(&confused), &body).await,
        401,
        "invalid_api_key",
    );
}

async fn jwk_text(url: &str) -> Value {
    client().get(url).send().await.unwrap().json().await.unwrap()
}

// ---------------------------------------------------------------------------------
// The embedded engine counts the prompt with the model's tokenizer before admission.

#[tokio::test(flavor = "multi_thread")]
async fn an_embedded_models_prompt_is_counted_with_its_tokenizer_before_admission() {
    let _ = tiny_model();
    let m = manifests(&CoopSpec::default());
    let db = Db::sqlite();
    // "hi" in the tiny model's template: <|begin_of_text|><|user|> h i <|end|><|assistant|>
    // = 6 tokens; with max_tokens 2 the worst case is exactly 8. The body is ~90 bytes,
    // so a byte bound would refuse this request.
    let gateway = c::standalone(m.path(), db.dir(), None, &["--token-budget", "bakery=8"]);
    let key = c::create_key(&["--member", "bakery"], db.dir(), None);
    let ok = post(&gateway, Some(&key), &c::chat("open-chat", 2)).await;
    assert_eq!(ok.0, 200, "{}", ok.2);
    assert_eq!(ok.2["usage"]["prompt_tokens"], 6, "{}", ok.2);
    // The budget cannot hold another worst case.
    assert_error(
        &post(&gateway, Some(&key), &c::chat("open-chat", 2)).await,
        429,
        "insufficient_quota",
    );
}
