//! The patronage scenario, run in standalone mode on SQLite and Postgres (`books.rs`)
//! and against the real control plane with the operator (`governance_cluster.rs`).
//!
//! The co-op of `scenario.rs`, with patronage bylaws: refunds in proportion to 3 parts
//! usage to 1 part contribution, 40% in cash, customers' income to the pool; a
//! PatronageDistribution passes by majority with a quorum of half.
//!
//! Last month (seeded as the metering and the node sampler write it):
//!
//! | | usage at the rate card | contributed GPU-hours |
//! |---|---|---|
//! | ana | 600k in + 300k out: 6 + 6 = 12 | 10 (one GPU, 120 five-minute samples) |
//! | ben | 1M in: 10 | |
//! | cleo | 200k in + 100k out: 2 + 2 = 4 | |
//! | dan | | 30 (one GPU, 360 samples) |
//!
//! The buyer was charged 7.5 + 2 = 9.5 cents, posted as 10; the month's costs are 6.
//! The pool: 26 of members' usage less 6 of costs, plus 10 from the buyer: **30**.
//!
//! Weights (3 x usage share + 1 x contribution share, over 4 x 26 x 40 = 4160): ana 3 x
//! 12 x 40 + 10 x 26 = 1700, ben 1200, cleo 480, dan 30 x 26 = 780. 30 x w / 4160: ana
//! 12 r 1080, ben 8 r 2720, cleo 3 r 1920, dan 5 r 2600; 28 handed out, the two units
//! left go to the largest remainders, ben and dan: **ana 12, ben 9, cleo 3, dan 6**.
//! Cash at 40%, rounded up: ana 4.8 -> 5 (7 retained), ben 3.6 -> 4 (5), cleo 1.2 -> 2
//! (1), dan 2.4 -> 3 (3).

#![allow(dead_code, reason = "each test binary uses a different part of the harness")]
#![allow(clippy::unwrap_used, clippy::panic, reason = "test harness")]

use std::time::Duration;

use sea_orm::{DatabaseConnection, EntityTrait};
use serde_json::{Value, json};

use super::coop as c;
use super::scenario::{self, Env, call};

/// The scenario's co-op with patronage bylaws; voting periods of `period`.
pub fn manifests(ns: &str, period: &str, source: &str) -> String {
    scenario::manifests(ns, period, source)
        .replacen(
            "  memberClasses:\n",
            &format!(
                "    - {{kind: PatronageDistribution, method: Majority, quorumPercent: 50, votingPeriod: {period}}}\n\
                 \x20 patronage: {{basis: Mix, usageParts: 3, contributionParts: 1, cashPercent: 40, surplusTo: Pool}}\n\
                 \x20 memberClasses:\n"
            ),
            1,
        )
}

/// `YYYY-MM` of last month.
pub fn last_month() -> String {
    let today = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC).date();
    let last = today
        .first_of_month()
        .checked_sub(jiff::Span::new().months(1))
        .unwrap();
    format!("{:04}-{:02}", last.year(), last.month())
}

/// Seeds last month: usage records, the buyer's charges, samples of two contributed
/// nodes, and the month's costs.
pub async fn seed(db: &DatabaseConnection) {
    let last = last_month();
    let at = |day: u32| format!("{last}-{day:02}T10:00:00Z");
    synco_gateway::db::usage_record::Entity::insert_many([
        c::usage_record("ana", "member", &at(3), 400_000, 100_000, 0),
        c::usage_record("ana", "member", &at(20), 200_000, 200_000, 0),
        c::usage_record("ben", "member", &at(9), 1_000_000, 0, 0),
        c::usage_record("cleo", "member", &at(14), 200_000, 100_000, 0),
        c::usage_record("buyer", "customer", &at(11), 350_000, 200_000, 7_500_000),
        c::usage_record("buyer", "customer", &at(12), 200_000, 0, 2_000_000),
    ])
    .exec(db)
    .await
    .unwrap();
    let start: jiff::Timestamp = format!("{last}-02T00:00:00Z").parse().unwrap();
    let bucket = synco_gateway::books::SAMPLE_BUCKET_SECONDS;
    let samples = |node: &str, member: &str, count: i64| {
        (0..count)
            .map(|i| {
                use sea_orm::ActiveValue::Set;
                synco_gateway::db::contribution_sample::ActiveModel {
                    bucket: Set(start.as_second() + i * bucket),
                    node: Set(node.to_owned()),
                    member: Set(member.to_owned()),
                    gpus: Set(1),
                    seconds: Set(bucket),
                }
            })
            .collect::<Vec<_>>()
    };
    for rows in [samples("gpu-ana", "ana", 120), samples("gpu-dan", "dan", 360)] {
        synco_gateway::db::contribution_sample::Entity::insert_many(rows)
            .exec(db)
            .await
            .unwrap();
    }
    synco_gateway::books::post(
        db,
        &[synco_gateway::books::NewEntry {
            period: last.clone(),
            kind: "cost".into(),
            account: "coop".into(),
            amount_minor: 6,
            quantity: 0,
            currency: "EUR".into(),
            memo: "power".into(),
        }],
    )
    .await
    .unwrap();
}

/// The JSON a command printed first (its log follows).
fn first_json(out: &str) -> Value {
    serde_json::Deserializer::from_str(out)
        .into_iter::<Value>()
        .next()
        .unwrap()
        .unwrap()
}

/// The refunds worked out by hand (see the module's notes).
pub fn by_hand() -> Value {
    json!([
        {"member": "ana", "refundMinor": 12, "cashMinor": 5, "retainedMinor": 7},
        {"member": "ben", "refundMinor": 9, "cashMinor": 4, "retainedMinor": 5},
        {"member": "cleo", "refundMinor": 3, "cashMinor": 2, "retainedMinor": 1},
        {"member": "dan", "refundMinor": 6, "cashMinor": 3, "retainedMinor": 3},
    ])
}

/// The scenario, after [`seed`]: the month closes (`books` runs `synco-gateway books`
/// as an administrator of this mode), ana proposes its distribution, members vote, and
/// once it is Applied the refunds are in the books and on the statements.
pub async fn run(env: &dyn Env, books: &(dyn Fn(&[&str]) -> (bool, String) + Sync), period: u64) {
    let last = last_month();
    let propose = |body: Value| async move {
        call(env, "POST", "/v1/governance/proposals", Some("ana"), Some(body)).await
    };
    let request = json!({"name": "refunds", "kind": "PatronageDistribution",
        "title": format!("Patronage refunds for {last}"), "patronagePeriod": last});

    // The gateway listens before it has read the co-op (in a cluster, through its
    // informers): wait until it knows ana, as a member on her phone would see it.
    let started = std::time::Instant::now();
    loop {
        let coop = call(env, "GET", "/v1/governance/coop", Some("ana"), None).await;
        if coop.status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the gateway never knew ana: {} {}\n{}",
            coop.status,
            coop.body,
            env.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Not before the month is closed.
    let open = propose(request.clone()).await;
    assert_eq!(open.status, 400, "{}", open.body);
    assert!(
        open.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("close it first"),
        "{}",
        open.body
    );
    let (ok, out) = books(&["close", "--month", &last]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!(",{last},contribution,ana,0,10,,")), "{out}");
    assert!(out.contains(&format!(",{last},contribution,dan,0,30,,")), "{out}");
    let (ok, out) = books(&["patronage", "--month", &last]);
    assert!(ok, "{out}");
    let worked = first_json(&out);
    assert_eq!(worked["refunds"], by_hand(), "{worked}");

    // Refunds that are not the books' are refused; so is a distribution with no month.
    let mut forged = worked.clone();
    forged["refunds"][0]["refundMinor"] = json!(13);
    forged["refunds"][0]["retainedMinor"] = json!(8);
    forged["refunds"][1]["refundMinor"] = json!(8);
    forged["refunds"][1]["retainedMinor"] = json!(4);
    let refused = propose(json!({"kind": "PatronageDistribution", "title": "More for ana",
        "effect": {"patronageDistribution": forged}}))
    .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not what the books work out"),
        "{}",
        refused.body
    );
    let nameless = propose(json!({"kind": "PatronageDistribution", "title": "Refunds"})).await;
    assert_eq!(nameless.status, 400, "{}", nameless.body);

    // ana proposes the month by name; the effect is the books'.
    let made = propose(request.clone()).await;
    assert_eq!(made.status, 201, "{}", made.body);
    assert_eq!(
        made.body["spec"]["effect"]["patronageDistribution"]["refunds"],
        by_hand(),
        "{}",
        made.body
    );
    assert_eq!(
        made.body["spec"]["effect"]["patronageDistribution"]["poolMinor"],
        30
    );
    for (who, position) in [("ana", "Yes"), ("ben", "Yes"), ("cleo", "No"), ("fay", "Yes")] {
        let a = call(
            env,
            "POST",
            "/v1/governance/proposals/refunds/votes",
            Some(who),
            Some(json!({"position": position})),
        )
        .await;
        assert_eq!(a.status, 201, "{who}: {} {}", a.body, env.log());
    }
    let applied = scenario::wait_phase(env, "refunds", "Applied", Duration::from_secs(period + 60)).await;
    assert_eq!(
        applied["status"]["appliedTo"],
        format!("Ledger/{last}"),
        "{applied}"
    );

    // The refunds reach the books (in cluster mode once the gateway sees it Applied).
    let statement = |member: &str| -> Value {
        let (ok, out) = books(&["statement", "--account", member, "--month", &last]);
        assert!(ok, "{out}");
        first_json(&out)
    };
    let started = std::time::Instant::now();
    while statement("ana")["refund_proposal"].is_null() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the refunds were not recorded: {}",
            env.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for line in by_hand().as_array().unwrap() {
        let member = line["member"].as_str().unwrap();
        let s = statement(member);
        assert_eq!(
            (
                &s["refund_minor"],
                &s["refund_cash_minor"],
                &s["refund_retained_minor"]
            ),
            (&line["refundMinor"], &line["cashMinor"], &line["retainedMinor"]),
            "{member}: {s}"
        );
        assert_eq!(s["refund_proposal"], "refunds");
    }
    assert_eq!(statement("fay")["refund_minor"], 0);
    let (ok, csv) = books(&["statement", "--account", "ana", "--month", &last, "--csv"]);
    let now = c::month();
    assert!(ok && csv.contains(&format!(",{last},usage,ana,12,")), "{csv}");
    assert!(csv.contains(&format!(",{now},refund,ana,5,0,EUR,")), "{csv}");
    assert!(csv.contains(&format!(",{now},retained,ana,7,0,EUR,")), "{csv}");
    let (ok, entries) = books(&["entries", "--month", &now]);
    assert!(ok, "{entries}");
    assert!(entries.contains(",refund,ana,5,0,EUR,"), "{entries}");
    assert!(entries.contains(",retained,ana,7,0,EUR,"), "{entries}");
    assert!(entries.contains(",reserve,reserve,0,0,EUR,"), "{entries}");
    let (ok, out) = books(&["verify"]);
    assert!(ok && out.contains("intact"), "{out}");

    // A month's refunds are recorded once: a second distribution is refused.
    let again = propose(json!({"name": "refunds-again", "kind": "PatronageDistribution",
        "title": "Again", "patronagePeriod": last}))
    .await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert_eq!(again.code(), "already_distributed", "{}", again.body);
}
