//! The co-op's books (`synco-gateway books`), on SQLite and Postgres: top-ups, costs and
//! contributions posted as they happen; a month's close posts the customers' charges
//! and the members' usage valued at the rate card from the metering records, then
//! locks the month; the database refuses edits, and an edit made behind its back is
//! found by `books verify`, which names the row.

#![expect(clippy::unwrap_used, reason = "tests")]

mod common;

use std::process::Command;

use common::coop::{self as c};
use common::postgres::Postgres;
use sea_orm::{ConnectionTrait, EntityTrait};

/// `synco-gateway books ...`: whether it succeeded, and its output (stdout, then the
/// log and errors on stderr).
fn books(args: &[&str], dir: &std::path::Path, url: Option<&str>) -> (bool, String) {
    let mut all = vec!["books"];
    all.extend_from_slice(args);
    all.extend(["--data-dir", dir.to_str().unwrap()]);
    if let Some(url) = url {
        all.extend(["--database-url", url]);
    }
    let out = Command::new(common::binary()).args(&all).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

async fn the_books(url: Option<&str>) {
    let m = tempfile::tempdir().unwrap();
    std::fs::write(
        m.path().join("coop.yaml"),
        common::scenario::manifests("commons", "1h", "{hub: Qwen/Qwen2.5-0.5B-Instruct}"),
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    // The gateway founds the co-op in the database (the rate card: 10 and 20 EUR cents
    // per million input and output tokens of `tiny`).
    let mut gw = c::standalone(m.path(), data.path(), url, &[]);
    assert!(gw.terminate().success());
    let db = synco_gateway::db::connect(&synco_gateway::db::url(data.path(), url).unwrap())
        .await
        .unwrap();
    let today = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC).date();
    let last = today
        .first_of_month()
        .checked_sub(jiff::Span::new().months(1))
        .unwrap();
    let last = format!("{:04}-{:02}", last.year(), last.month());
    let now = c::month();
    synco_gateway::db::usage_record::Entity::insert_many([
        // ana: 600k in, 300k out: 6 + 6 = 12 cents at the rate card.
        c::usage_record(
            "ana",
            "member",
            &format!("{last}-03T10:00:00Z"),
            400_000,
            100_000,
            0,
        ),
        c::usage_record(
            "ana",
            "member",
            &format!("{last}-20T10:00:00Z"),
            200_000,
            200_000,
            0,
        ),
        // ben: 1M in: 10 cents.
        c::usage_record("ben", "member", &format!("{last}-09T10:00:00Z"), 1_000_000, 0, 0),
        // The buyer was charged 7.5 and 2 cents: 9.5, rounded up to 10.
        c::usage_record(
            "buyer",
            "customer",
            &format!("{last}-11T10:00:00Z"),
            350_000,
            200_000,
            7_500_000,
        ),
        c::usage_record(
            "buyer",
            "customer",
            &format!("{last}-12T10:00:00Z"),
            200_000,
            0,
            2_000_000,
        ),
        // This month's usage is not last month's.
        c::usage_record("ana", "member", &format!("{now}-01T00:00:00Z"), 999_999, 0, 0),
    ])
    .exec(&db)
    .await
    .unwrap();

    let dir = data.path();
    let (ok, out) = books(&["topup", "--customer", "buyer", "--minor", "500"], dir, url);
    assert!(
        ok && out.contains(&format!(",{now},topup,buyer,500,0,EUR,")),
        "{out}"
    );
    let (ok, out) = books(&["topup", "--customer", "nobody", "--minor", "5"], dir, url);
    assert!(!ok && out.contains("no customer named nobody"), "{out}");
    let (ok, out) = books(&["cost", "--minor", "300", "--memo", "power, November"], dir, url);
    assert!(ok && out.contains(",cost,coop,300,"), "{out}");
    let (ok, out) = books(
        &["contribution", "--member", "ana", "--gpu-hours", "24"],
        dir,
        url,
    );
    assert!(ok && out.contains(",contribution,ana,0,24,"), "{out}");

    // The month closes once: its charges and usage are posted from the records.
    let (ok, out) = books(&["close", "--month", &now], dir, url);
    assert!(!ok && out.contains("has not ended"), "{out}");
    let (ok, out) = books(&["close", "--month", &last], dir, url);
    assert!(ok, "{out}");
    for line in [
        format!(",{last},charge,buyer,10,750000,EUR,"),
        format!(",{last},usage,ana,12,900000,EUR,"),
        format!(",{last},usage,ben,10,1000000,EUR,"),
        format!("closed {last} at "),
    ] {
        assert!(out.contains(&line), "{line} is not in\n{out}");
    }
    let (ok, out) = books(&["close", "--month", &last], dir, url);
    assert!(!ok && out.contains("already closed"), "{out}");
    let (_, entries) = books(&["entries", "--month", &last], dir, url);
    let rows = entries
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .count();
    assert_eq!(rows, 3, "three entries:\n{entries}");

    // Nothing more is posted to a closed month.
    let late = synco_gateway::books::NewEntry {
        period: last.clone(),
        kind: "correction".into(),
        account: "buyer".into(),
        amount_minor: -1,
        quantity: 0,
        currency: "EUR".into(),
        memo: "late".into(),
    };
    let refused = synco_gateway::books::post(&db, &[late]).await.unwrap_err();
    assert!(refused.to_string().contains("is closed"), "{refused}");
    // A correction goes in the open month.
    let (ok, out) = books(
        &[
            "correction",
            "--account",
            "buyer",
            "--minor",
            "-1",
            "--memo",
            "rounding",
        ],
        dir,
        url,
    );
    assert!(
        ok && out.contains(&format!(",{now},correction,buyer,-1,")),
        "{out}"
    );
    let (ok, out) = books(&["verify"], dir, url);
    assert!(ok && out.contains("intact: 7 entries"), "{out}");

    // Statements: the buyer's charges last month; this month its top-up and the
    // correction, and a balance of 500 - 1 - 10; ana's usage and contribution.
    let statement = |account: &str, month: &str| -> serde_json::Value {
        let out = std::process::Command::new(common::binary())
            .args(["books", "statement", "--account", account, "--month", month])
            .args(c::db_args(dir, url))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let buyer = statement("buyer", &last);
    assert_eq!(
        (
            &buyer["closed"],
            &buyer["charges_minor"],
            &buyer["charged_tokens"],
            &buyer["balance_minor"]
        ),
        (
            &serde_json::json!(true),
            &serde_json::json!(10),
            &serde_json::json!(750_000),
            &serde_json::json!(-10)
        ),
        "{buyer}"
    );
    let buyer = statement("buyer", &now);
    assert_eq!(
        (
            &buyer["closed"],
            &buyer["topups_minor"],
            &buyer["corrections_minor"],
            &buyer["balance_minor"]
        ),
        (
            &serde_json::json!(false),
            &serde_json::json!(500),
            &serde_json::json!(-1),
            &serde_json::json!(489)
        ),
        "{buyer}"
    );
    let ana = statement("ana", &last);
    assert_eq!(
        (&ana["usage_minor"], &ana["usage_tokens"]),
        (&serde_json::json!(12), &serde_json::json!(900_000)),
        "{ana}"
    );
    assert_eq!(statement("ana", &now)["contribution_gpu_hours"], 24);

    // Patronage for last month, by usage, customers' income to the pool, 30% in cash:
    // ana 12 and ben 10 at the rate card, the buyer's 10: a pool of 32. 32 x 12/22 =
    // 17 remainder 10, 32 x 10/22 = 14 remainder 12: the unit left goes to ben. Cash
    // rounded up: 5.1 -> 6 and 4.5 -> 5.
    let out = std::process::Command::new(common::binary())
        .args([
            "books",
            "patronage",
            "--month",
            &last,
            "--basis",
            "usage",
            "--cash-percent",
            "30",
        ])
        .args(["--surplus-to", "pool"])
        .args(c::db_args(dir, url))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["poolMinor"], 32, "{d}");
    assert_eq!(
        d["refunds"],
        serde_json::json!([
            {"member": "ana", "refundMinor": 17, "cashMinor": 6, "retainedMinor": 11},
            {"member": "ben", "refundMinor": 15, "cashMinor": 5, "retainedMinor": 10},
        ]),
        "{d}"
    );
    let (ok, out) = books(&["patronage", "--month", &now, "--basis", "usage"], dir, url);
    assert!(!ok && out.contains("close it first"), "{out}");
    // With no rules given, the bylaws' (this co-op's set none).
    let (ok, out) = books(&["patronage", "--month", &last], dir, url);
    assert!(!ok && out.contains("the bylaws set no patronage rules"), "{out}");
    let (ok, out) = books(&["patronage", "--month", &last, "--cash-percent", "10"], dir, url);
    assert!(!ok && out.contains("20% to 100%"), "{out}");
    let (ok, csv) = books(
        &["statement", "--account", "ana", "--month", &last, "--csv"],
        dir,
        url,
    );
    assert!(
        ok && csv.contains(&format!(",{last},usage,ana,12,900000,EUR,")),
        "{csv}"
    );

    // The database refuses an edit; one made behind its back is found and named.
    let edit = "UPDATE ledger_entries SET amount_minor = 11 WHERE id = 5";
    let refused = db.execute_unprepared(edit).await.unwrap_err();
    assert!(refused.to_string().contains("append-only"), "{refused}");
    let drop = if url.is_some() {
        "DROP TRIGGER ledger_append_only ON ledger_entries"
    } else {
        "DROP TRIGGER ledger_never_updated"
    };
    db.execute_unprepared(drop).await.unwrap();
    db.execute_unprepared(edit).await.unwrap();
    let (ok, out) = books(&["verify"], dir, url);
    assert!(
        !ok && out.contains("broken at entry 5") && out.contains("edited"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn books_close_a_month_lock_it_and_find_an_edit_sqlite() {
    the_books(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn books_close_a_month_lock_it_and_find_an_edit_postgres() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    the_books(Some(&pg.url())).await;
}

/// `cargo test --workspace --test books -- --ignored --nocapture`: closing a
/// month of 10 million usage records by 10,000 members and 100 customers on Postgres
/// (goal: under 10 s), and verifying the chain it leaves.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark: minutes to load the records"]
async fn books_close_bench_postgres() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    let records: u64 = std::env::var("SYNCO_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let db = synco_gateway::db::connect(&pg.url()).await.unwrap();
    let last = "2026-10";
    let load = std::time::Instant::now();
    db.execute_unprepared(&format!(
        "INSERT INTO usage_records (request_id, caller, caller_kind, model, endpoint, prompt_tokens, \
         completion_tokens, latency_ms, outcome, finished_at, record_id, cost_micro, currency) \
         SELECT 'r' || g, CASE WHEN g % 101 = 0 THEN 'c' || (g % 100) ELSE 'm' || (g % 10000) END, \
                CASE WHEN g % 101 = 0 THEN 'customer' ELSE 'member' END, 'tiny', 'chat_completions', 100, 50, 10, \
                'completed', '{last}-' || lpad(((g % 28) + 1)::text, 2, '0') || 'T12:00:00Z', 'rec' || g, \
                CASE WHEN g % 101 = 0 THEN 2000 ELSE 0 END, CASE WHEN g % 101 = 0 THEN 'EUR' ELSE '' END \
         FROM generate_series(1, {records}) g"
    ))
    .await
    .unwrap();
    db.execute_unprepared("ANALYZE usage_records").await.unwrap();
    println!(
        "loaded {records} usage records in {:.1} s",
        load.elapsed().as_secs_f64()
    );
    let price = |_: &str| synco_gateway::coop::Price {
        input_per_million: 10,
        output_per_million: 20,
    };
    let start = std::time::Instant::now();
    let closed = synco_gateway::books::close(&db, last, &price, "EUR")
        .await
        .unwrap();
    let took = start.elapsed();
    println!(
        "closed {last}: {} entries from {records} records in {:.2} s (goal < 10 s)",
        closed.entries.len(),
        took.as_secs_f64()
    );
    let start = std::time::Instant::now();
    let verdict = synco_gateway::books::verify(&db).await.unwrap();
    println!(
        "verified the chain in {:.2} s: {verdict:?}",
        start.elapsed().as_secs_f64()
    );
    if records >= 1_000_000 {
        // 10,000 members' usage and 100 customers' charges.
        assert_eq!(closed.entries.len(), 10_100);
    }
}

/// The patronage scenario (`common/patronage.rs`) in standalone mode: a month closed,
/// its distribution proposed, voted and recorded, each refund as worked out by hand.
async fn patronage(url: Option<&str>) {
    let m = tempfile::tempdir().unwrap();
    let period = 6;
    std::fs::write(
        m.path().join("coop.yaml"),
        common::patronage::manifests(
            "commons",
            &format!("{period}s"),
            "{hub: Qwen/Qwen2.5-0.5B-Instruct}",
        ),
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut founding = c::standalone(m.path(), data.path(), url, &[]);
    assert!(founding.terminate().success());
    let db = synco_gateway::db::connect(&synco_gateway::db::url(data.path(), url).unwrap())
        .await
        .unwrap();
    common::patronage::seed(&db).await;
    let gateway = c::standalone(m.path(), data.path(), url, &[]);
    let env = Standalone { gateway };
    let dir = data.path().to_owned();
    let url = url.map(str::to_owned);
    common::patronage::run(&env, &|args| books(args, &dir, url.as_deref()), period).await;
    if url.is_none() {
        pages(&env.gateway);
    }
}

/// The same in the members' pages (Chromium): ana's statement shows
/// her refund, the proposal its table of refunds, and proposing the month again from
/// the form says it was distributed already.
fn pages(gw: &common::Gateway) {
    use common::browser::{accessible, axe_source, browser, html, member_tab, open, submit, text, type_in};
    let last = common::patronage::last_month();
    let browser = browser();
    let axe = axe_source();
    let tab = member_tab(&browser, gw, "ana", true);
    open(&tab, &gw.url(&format!("/governance/coop?month={last}")));
    assert_eq!(
        text(&tab, "#refund"),
        "0.12 EUR: 0.05 in cash, 0.07 retained as your equity (passed in refunds)"
    );
    accessible(&tab, &axe, "coop with a refund");
    open(&tab, &gw.url("/governance/proposals/refunds"));
    let table = html(&tab, "#refunds");
    for row in [
        "<td>ana</td><td>0.12</td><td>0.05</td><td>0.07</td>",
        "<td>dan</td><td>0.06</td>",
    ] {
        assert!(table.contains(row), "{row} is not in {table}");
    }
    accessible(&tab, &axe, "a distribution");
    open(&tab, &gw.url("/governance/new?kind=PatronageDistribution"));
    assert_eq!(
        tab.find_element("#patronage_period")
            .unwrap()
            .get_attribute_value("value")
            .unwrap()
            .as_deref(),
        Some(last.as_str()),
        "the form offers last month"
    );
    accessible(&tab, &axe, "a distribution's form");
    type_in(&tab, "#title", "Refunds again");
    submit(&tab, "#propose", "#message");
    assert!(
        text(&tab, "#message").contains(&format!("the refunds for {last} were recorded already")),
        "{}",
        text(&tab, "#message")
    );
}

struct Standalone {
    gateway: common::Gateway,
}

#[async_trait::async_trait]
impl common::scenario::Env for Standalone {
    fn url(&self, path: &str) -> String {
        self.gateway.url(path)
    }
    fn token(&self, who: &str) -> String {
        c::token(c::SECRET, &c::claims(who))
    }
    async fn suspend(&self, _member: &str) {
        unreachable!("the patronage scenario suspends nobody")
    }
    fn log(&self) -> String {
        self.gateway.log()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn members_vote_a_months_patronage_refunds_into_the_books_sqlite() {
    patronage(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn members_vote_a_months_patronage_refunds_into_the_books_postgres() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    patronage(Some(&pg.url())).await;
}

/// Contribution earns capacity (standalone: a ComputePool's status lists the nodes): the
/// bylaws give 10 points of floor per contributed GPU, so ana's one GPU lifts her rate
/// from 4 to 4 + 10% of 50 = 9 tokens/s, a bucket of 540 tokens a minute against ben's
/// 240; and the books sample her node for the month's contributions.
#[tokio::test(flavor = "multi_thread")]
async fn a_contributed_node_raises_its_members_limit_and_is_sampled_for_the_books() {
    let m = tempfile::tempdir().unwrap();
    let yaml = common::patronage::manifests("commons", "1h", "{hub: Qwen/Qwen2.5-0.5B-Instruct}").replacen(
        "surplusTo: Pool}",
        "surplusTo: Pool, floorPercentPerGpu: 10}",
        1,
    ) + "---\napiVersion: synco.coop/v1alpha1\nkind: ComputePool\nmetadata: {name: gpus, namespace: commons}\n\
           spec: {}\nstatus: {nodes: [{name: gpu-ana, gpus: 1, ready: true, contributedBy: ana}, \
           {name: gpu-off, gpus: 4, ready: false, contributedBy: ben}]}\n";
    std::fs::write(m.path().join("coop.yaml"), yaml).unwrap();
    let data = tempfile::tempdir().unwrap();
    let gateway = c::standalone(m.path(), data.path(), None, &[]);
    let limit = |who: &'static str| {
        let url = gateway.url("/v1/chat/completions");
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .bearer_auth(c::token(c::SECRET, &c::claims(who)))
                .json(&serde_json::json!({"model": "tiny", "max_tokens": 1,
                    "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.headers()["x-ratelimit-limit-tokens"]
                .to_str()
                .unwrap()
                .to_owned()
        }
    };
    assert_eq!(limit("ana").await, "540", "{}", gateway.log());
    assert_eq!(
        limit("ben").await,
        "240",
        "a node that is not Ready raises nothing"
    );

    let db = synco_gateway::db::connect(&synco_gateway::db::url(data.path(), None).unwrap())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let samples = loop {
        let rows = synco_gateway::db::contribution_sample::Entity::find()
            .all(&db)
            .await
            .unwrap();
        if !rows.is_empty() || started.elapsed() > std::time::Duration::from_secs(30) {
            break rows;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let seen: Vec<_> = samples
        .iter()
        .map(|s| (s.node.as_str(), s.member.as_str(), s.gpus))
        .collect();
    assert_eq!(seen, [("gpu-ana", "ana", 1)], "{}", gateway.log());
    // A second replica sampling the same bucket writes nothing more.
    let at = jiff::Timestamp::from_second(samples[0].bucket).unwrap();
    synco_gateway::books::sample_contributions(&db, at, &[("gpu-ana".into(), "ana".into(), 1)])
        .await
        .unwrap();
    let rows = synco_gateway::db::contribution_sample::Entity::find()
        .all(&db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
}

/// The admin API (`/admin/v1/books/...`), on for the token whose SHA-256 the gateway
/// was given: a top-up counts in the customer's balance at once, the statement shows it
/// (JSON and CSV) and the chain checks; bad tokens, unknown or invoiced customers, bad
/// amounts and malformed JSON are refused with the reason.
#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_tops_up_a_prepaid_customer_and_reads_the_books() {
    use sha2::Digest;
    let m = tempfile::tempdir().unwrap();
    let yaml = common::scenario::manifests("commons", "1h", "{hub: Qwen/Qwen2.5-0.5B-Instruct}")
        + "---\napiVersion: synco.coop/v1alpha1\nkind: Customer\nmetadata: {name: prepaid, namespace: commons}\n\
           spec: {displayName: Prepaid, identity: prepaid, billing: Prepaid, prepaidCreditMinor: 100}\n";
    std::fs::write(m.path().join("coop.yaml"), yaml).unwrap();
    let data = tempfile::tempdir().unwrap();
    let sha = hex::encode(sha2::Sha256::digest(b"the-admin-token"));
    let gw = c::standalone(m.path(), data.path(), None, &["--admin-token-sha256", &sha]);
    let client = reqwest::Client::new();
    let admin = |method: reqwest::Method, path: &str, token: Option<&str>| {
        let mut r = client.request(method, gw.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r
    };
    let topup = |body: serde_json::Value, token: &'static str| {
        admin(reqwest::Method::POST, "/admin/v1/books/topups", Some(token))
            .json(&body)
            .send()
    };
    let token = "the-admin-token";
    // Tokens: none, wrong, and a member's are all refused.
    let none = admin(reqwest::Method::GET, "/admin/v1/books/verify", None)
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
    let wrong = topup(serde_json::json!({"customer": "prepaid", "minor": 5}), "guess")
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let member = c::token(c::SECRET, &c::claims("ana"));
    let as_member = admin(reqwest::Method::GET, "/admin/v1/books/verify", Some(&member))
        .send()
        .await
        .unwrap();
    assert_eq!(as_member.status(), 401);
    // Bad requests.
    for (body, status, says) in [
        (
            serde_json::json!({"customer": "nobody", "minor": 5}),
            404,
            "no customer named nobody",
        ),
        (
            serde_json::json!({"customer": "buyer", "minor": 5}),
            400,
            "invoiced, not prepaid",
        ),
        (
            serde_json::json!({"customer": "prepaid", "minor": 0}),
            400,
            "positive number",
        ),
        (
            serde_json::json!({"customer": "prepaid", "minor": 5, "cents": 1}),
            400,
            "cents",
        ),
    ] {
        let r = topup(body.clone(), token).await.unwrap();
        assert_eq!(r.status(), status, "{body}");
        let e: serde_json::Value = r.json().await.unwrap();
        assert!(
            e["error"]["message"].as_str().unwrap().contains(says),
            "{body}: {e}"
        );
    }
    let malformed = admin(reqwest::Method::POST, "/admin/v1/books/topups", Some(token))
        .header("content-type", "application/json")
        .body("{\"customer\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);

    // A top-up of 2.50.
    let r = topup(
        serde_json::json!({"customer": "prepaid", "minor": 250, "memo": "invoice 7"}),
        token,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let entry: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (&entry["kind"], &entry["amount_minor"]),
        (&"topup".into(), &250.into()),
        "{entry}"
    );
    // The customer sees 1.00 of credit and 2.50 of top-up.
    let usage: serde_json::Value = client
        .get(gw.url("/v1/usage"))
        .bearer_auth(c::token(c::SECRET, &c::claims("prepaid")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(usage["balance"]["remaining_minor"], 350, "{usage}");
    let month = c::month();
    let statement: serde_json::Value = admin(
        reqwest::Method::GET,
        &format!("/admin/v1/books/statements/prepaid?month={month}"),
        Some(token),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        (&statement["topups_minor"], &statement["balance_minor"]),
        (&250.into(), &250.into()),
        "{statement}"
    );
    let csv = admin(
        reqwest::Method::GET,
        &format!("/admin/v1/books/statements/prepaid?month={month}&format=csv"),
        Some(token),
    )
    .send()
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(
        csv.contains(&format!(",{month},topup,prepaid,250,0,EUR,\"invoice 7\",")),
        "{csv}"
    );
    let bad_month = admin(
        reqwest::Method::GET,
        "/admin/v1/books/statements/prepaid?month=2026-13",
        Some(token),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(bad_month.status(), 400);
    let verified: serde_json::Value = admin(reqwest::Method::GET, "/admin/v1/books/verify", Some(token))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&verified["intact"], &verified["entries"]),
        (&true.into(), &1.into())
    );
}
