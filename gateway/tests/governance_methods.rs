//! The governance service in process, over the database store (SQLite, and Postgres for
//! the scenario): one test per option method in which the winner's effect is applied,
//! a dot vote that splits an allocation, the refusals, and the recount of every closed
//! proposal from its published record. Time is a clock the test moves; every figure is
//! worked out by hand in the comments.

#![expect(clippy::unwrap_used, reason = "tests")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::json;
use synco_crds::{AllocationPhase, ProposalPhase};
use synco_gateway::governance::closer::Closer;
use synco_gateway::governance::db::DbStore;
use synco_gateway::governance::export::verify;
use synco_gateway::governance::store::GovernanceStore;
use synco_gateway::governance::{Governance, ProposalRequest};
use synco_policies::lifecycle::{BallotForm, Position};

const T0: i64 = 1_800_000_000;

/// A co-op of five community members (ana, ben, cleo, dan, eve) and a customer, with one
/// model of 1000 tokens/s and `bylaw` (a votingDefaults entry in flow style).
fn manifests(bylaw: &str) -> Vec<synco_crds::Manifest> {
    let mut yaml = format!(
        r#"
apiVersion: synco.coop/v1alpha1
kind: Cooperative
metadata: {{name: coop, namespace: t}}
spec:
  displayName: Test
  votingDefaults:
    - {bylaw}
  memberClasses:
    - {{name: community, tier: 0}}
  surplus:
    maxSharePercent: 30
    currency: EUR
    priceFloor: {{inputPerMillion: 10, outputPerMillion: 20}}
---
apiVersion: synco.coop/v1alpha1
kind: Customer
metadata: {{name: buyer, namespace: t}}
spec: {{displayName: Buyer, identity: buyer, billing: Invoiced}}
---
apiVersion: synco.coop/v1alpha1
kind: InferenceModel
metadata: {{name: chat, namespace: t}}
spec:
  engine: {{kind: External, url: "http://127.0.0.1:9/v1"}}
  tokensPerSecondPerReplica: 1000
---
apiVersion: synco.coop/v1alpha1
kind: Allocation
metadata: {{name: shares-v1, namespace: t}}
spec:
  version: 1
  floors: [{{memberClass: community, sharePercent: 50}}]
"#
    );
    for m in ["ana", "ben", "cleo", "dan", "eve"] {
        yaml.push_str(&format!(
            "---\napiVersion: synco.coop/v1alpha1\nkind: Member\nmetadata: {{name: {m}, namespace: t}}\n\
             spec: {{displayName: {m}, class: community, identity: {m}}}\n"
        ));
    }
    synco_crds::manifests::parse(&yaml, "test").unwrap()
}

/// The service over a fresh database, at a clock the test moves.
struct Setup {
    g: Governance,
    store: DbStore,
    closer: Closer,
    clock: Arc<AtomicI64>,
    _dir: Option<tempfile::TempDir>,
    _pg: Option<common::postgres::Postgres>,
}

impl Setup {
    async fn sqlite(bylaw: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = synco_gateway::db::open(dir.path()).await.unwrap();
        Self::with(db, bylaw, Some(dir), None).await
    }

    async fn with(
        db: sea_orm::DatabaseConnection,
        bylaw: &str,
        dir: Option<tempfile::TempDir>,
        pg: Option<common::postgres::Postgres>,
    ) -> Self {
        let store = DbStore::new(db.clone());
        assert!(store.found(&manifests(bylaw), T0).await.unwrap());
        let clock = Arc::new(AtomicI64::new(T0));
        let c = clock.clone();
        let now: synco_gateway::governance::Clock = Arc::new(move || c.load(Ordering::SeqCst));
        Self {
            g: Governance::new(Arc::new(store.clone()), db, now.clone()),
            closer: Closer::new(store.clone(), now),
            store,
            clock,
            _dir: dir,
            _pg: pg,
        }
    }

    fn at(&self, t: i64) {
        self.clock.store(t, Ordering::SeqCst);
    }

    async fn propose(&self, who: &str, body: serde_json::Value) -> String {
        let request: ProposalRequest = serde_json::from_value(body).unwrap();
        self.g.propose(who, request).await.unwrap().name
    }

    async fn vote(&self, who: &str, name: &str, ballot: serde_json::Value) {
        let form: BallotForm = serde_json::from_value(ballot).unwrap();
        self.g.cast(who, name, form, None).await.unwrap();
    }

    /// Moves past the deadline (and the grace) and closes.
    async fn close(&self, name: &str) -> synco_gateway::governance::ProposalView {
        let p = self.g.get(name).await.unwrap();
        let closes = p.status.closes_at.unwrap().0.as_second();
        self.at(closes + 3);
        self.closer.run_once().await.unwrap();
        self.g.get(name).await.unwrap()
    }

    /// Recounts the published record and checks it matches.
    async fn recount(&self, name: &str) -> String {
        let record = self.g.record(name).await.unwrap();
        let found = verify(&record).unwrap();
        assert!(found.problems.is_empty(), "{:?}", found.problems);
        found.fingerprint
    }
}

fn model(name: &str) -> serde_json::Value {
    json!({"modelAdoption": {"name": name, "spec": {
        "engine": {"kind": "External", "url": "http://127.0.0.1:9/v1"}, "tokensPerSecondPerReplica": 100}}})
}

/// Approval between three models to adopt. ana {llama, mistral}, ben {mistral}, cleo
/// {qwen}, dan {mistral, qwen}, eve abstains: llama 1, mistral 3, qwen 2. mistral wins
/// and the InferenceModel it carries is created.
#[tokio::test]
async fn approval_adopts_the_winning_model() {
    let s =
        Setup::sqlite("{kind: ModelAdoption, method: Approval, quorumPercent: 50, votingPeriod: 1h}").await;
    let name = s
        .propose(
            "ana",
            json!({"name": "which-model", "kind": "ModelAdoption", "title": "Which model?", "options": [
                {"name": "llama", "effect": model("llama")},
                {"name": "mistral", "effect": model("mistral")},
                {"name": "qwen", "effect": model("qwen")}]}),
        )
        .await;
    s.vote("ana", &name, json!({"approvals": ["llama", "mistral"]}))
        .await;
    s.vote("ben", &name, json!({"approvals": ["mistral"]})).await;
    s.vote("cleo", &name, json!({"approvals": ["qwen"]})).await;
    s.vote("dan", &name, json!({"approvals": ["mistral", "qwen"]}))
        .await;
    s.vote("eve", &name, json!({"position": "Abstain"})).await;
    let p = s.close(&name).await;
    assert_eq!(p.status.phase, ProposalPhase::Applied);
    assert_eq!(p.status.winner.as_deref(), Some("mistral"));
    let counts: Vec<(String, String)> = p
        .status
        .tally
        .unwrap()
        .options
        .into_iter()
        .map(|o| (o.option, o.count))
        .collect();
    assert_eq!(
        counts,
        [
            ("llama".into(), "1".into()),
            ("mistral".into(), "3".into()),
            ("qwen".into(), "2".into())
        ]
    );
    assert_eq!(p.status.applied_to.as_deref(), Some("InferenceModel/mistral"));
    let models: Vec<String> = s
        .store
        .objects()
        .await
        .unwrap()
        .models
        .iter()
        .filter_map(|m| m.metadata.name.clone())
        .collect();
    assert_eq!(models, ["chat", "mistral"]);
    s.recount(&name).await;
}

fn price(input: i64, output: i64) -> serde_json::Value {
    json!({"surplusPrice": {"maxSharePercent": 30, "currency": "EUR",
        "priceFloor": {"inputPerMillion": input, "outputPerMillion": output}}})
}

/// Score 0..5 between two surplus prices. ana {low 5, mid 2}, ben {low 1, mid 4}, cleo
/// {mid 5}, dan {low 3, mid 3}: low 9, mid 14. mid wins and becomes the surplus policy.
#[tokio::test]
async fn score_sets_the_winning_surplus_price() {
    let s = Setup::sqlite("{kind: SurplusPrice, method: Score, maxScore: 5, votingPeriod: 1h}").await;
    let name = s
        .propose(
            "ben",
            json!({"kind": "SurplusPrice", "title": "The surplus price", "options": [
                {"name": "low", "effect": price(10, 20)},
                {"name": "mid", "effect": price(40, 90)}]}),
        )
        .await;
    s.vote("ana", &name, json!({"scores": {"low": 5, "mid": 2}}))
        .await;
    s.vote("ben", &name, json!({"scores": {"low": 1, "mid": 4}}))
        .await;
    s.vote("cleo", &name, json!({"scores": {"mid": 5}})).await;
    s.vote("dan", &name, json!({"scores": {"low": 3, "mid": 3}}))
        .await;
    let p = s.close(&name).await;
    assert_eq!(p.status.winner.as_deref(), Some("mid"));
    assert_eq!(p.status.applied_to.as_deref(), Some("Cooperative/coop"));
    let objects = s.store.objects().await.unwrap();
    let floor = objects
        .cooperative()
        .unwrap()
        .spec
        .surplus
        .clone()
        .unwrap()
        .price_floor;
    assert_eq!((floor.input_per_million, floor.output_per_million), (40, 90));
    s.recount(&name).await;
}

fn plan(floors: serde_json::Value) -> serde_json::Value {
    json!({"allocation": {"floors": floors, "surplusCapPercent": 30}})
}

/// Ranked choice between three allocations. ana a>b, ben b>a, cleo c>b, dan c>a, eve b.
/// Round 1: a 1, b 2, c 2 of 5; nobody has more than 2.5, a goes out and ana's ballot
/// moves to b. Round 2: b 3, c 2: b wins, and its allocation is in force as shares-v2.
#[tokio::test]
async fn ranked_choice_puts_the_winning_allocation_in_force() {
    let s =
        Setup::sqlite("{kind: Allocation, method: RankedChoice, quorumPercent: 50, votingPeriod: 90s}").await;
    let name = s
        .propose(
            "cleo",
            json!({"kind": "Allocation", "title": "Shares for next term", "options": [
                {"name": "a", "effect": plan(json!([{"memberClass": "community", "sharePercent": 40}]))},
                {"name": "b", "effect": plan(json!([{"memberClass": "community", "sharePercent": 55}, {"member": "cleo", "sharePercent": 10}]))},
                {"name": "c", "effect": plan(json!([{"memberClass": "community", "sharePercent": 70}]))}]}),
        )
        .await;
    for (m, r) in [
        ("ana", json!(["a", "b"])),
        ("ben", json!(["b", "a"])),
        ("cleo", json!(["c", "b"])),
        ("dan", json!(["c", "a"])),
        ("eve", json!(["b"])),
    ] {
        s.vote(m, &name, json!({"ranking": r})).await;
    }
    let p = s.close(&name).await;
    assert_eq!(p.status.winner.as_deref(), Some("b"));
    let rounds = p.status.tally.unwrap().rounds;
    assert_eq!(rounds.len(), 2);
    assert_eq!(rounds[0].eliminated.as_deref(), Some("a"));
    assert_eq!(rounds[1].elected.as_deref(), Some("b"));
    assert_eq!(p.status.applied_to.as_deref(), Some("Allocation/shares-v2"));
    let objects = s.store.objects().await.unwrap();
    let in_force = objects.in_force().unwrap();
    assert_eq!(in_force.metadata.name.as_deref(), Some("shares-v2"));
    let status = in_force.status.clone().unwrap();
    assert_eq!(status.phase, AllocationPhase::InForce);
    // cleo: 10% of 1000 of its own plus a fifth of the community's 55%: 100 + 110.
    let cleo = status.quotas.iter().find(|q| q.name == "cleo").unwrap();
    assert_eq!(cleo.guaranteed_tokens_per_second, 210);
    let v1 = objects
        .allocations
        .iter()
        .find(|a| a.metadata.name.as_deref() == Some("shares-v1"))
        .unwrap();
    assert_eq!(v1.status.as_ref().unwrap().phase, AllocationPhase::Superseded);
    s.recount(&name).await;
}

/// Schulze between the same three allocations: ana and ben a>b>c, cleo and dan c>b>a,
/// eve b>a>c. Instant runoff would drop b (one first preference) and elect a (3 of 5);
/// but head to head b beats a 3 to 2 (cleo, dan, eve) and c 3 to 2 (ana, ben, eve): b is
/// the Condorcet winner, and Schulze puts its allocation in force. a beats c 3 to 2.
#[tokio::test]
async fn schulze_puts_the_condorcet_winner_in_force() {
    let s = Setup::sqlite("{kind: Allocation, method: Schulze, quorumPercent: 50, votingPeriod: 90s}").await;
    let name = s
        .propose(
            "cleo",
            json!({"kind": "Allocation", "title": "Shares for next term", "options": [
                {"name": "a", "effect": plan(json!([{"memberClass": "community", "sharePercent": 40}]))},
                {"name": "b", "effect": plan(json!([{"memberClass": "community", "sharePercent": 55}]))},
                {"name": "c", "effect": plan(json!([{"memberClass": "community", "sharePercent": 70}]))}]}),
        )
        .await;
    for (m, r) in [
        ("ana", json!(["a", "b", "c"])),
        ("ben", json!(["a", "b", "c"])),
        ("cleo", json!(["c", "b", "a"])),
        ("dan", json!(["c", "b", "a"])),
        ("eve", json!(["b", "a", "c"])),
    ] {
        s.vote(m, &name, json!({"ranking": r})).await;
    }
    let p = s.close(&name).await;
    assert_eq!(p.status.winner.as_deref(), Some("b"), "{:?}", p.status);
    let beaten: Vec<(String, String)> = p
        .status
        .tally
        .unwrap()
        .options
        .iter()
        .map(|o| (o.option.clone(), o.count.clone()))
        .collect();
    assert_eq!(
        beaten,
        [
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "2".to_owned()),
            ("c".to_owned(), "0".to_owned())
        ]
    );
    assert_eq!(p.status.applied_to.as_deref(), Some("Allocation/shares-v2"));
    let objects = s.store.objects().await.unwrap();
    let in_force = objects.in_force().unwrap();
    assert_eq!(in_force.spec.plan.floors[0].share_percent, 55);
    s.recount(&name).await;
}

/// Dot voting splits 60% of capacity, 10 points each. Points: school (cleo's floor)
/// 8 + 5 = 13, bakery (ana's) 6 + 5 = 11, commons (the community class) 4 + 10 + 2 + 10
/// = 26, of 50. Exact parts of 60: 15.6, 13.2, 31.2; whole percents 15, 13, 31 (59) and
/// the one left goes to the largest remainder, school's .6: school 16, bakery 13,
/// commons 31. The new allocation keeps the proposal's base floor (none) and surplus cap.
#[tokio::test]
async fn dot_voting_splits_an_allocation_in_whole_percents() {
    let s =
        Setup::sqlite("{kind: Allocation, method: DotVoting, pointsPerMember: 10, votingPeriod: 90s}").await;
    let name = s
        .propose(
            "dan",
            json!({"kind": "Allocation", "title": "Split 60%", "split": {"sharePercent": 60},
                "effect": {"allocation": {"floors": [], "surplusCapPercent": 25}},
                "options": [
                    {"name": "school", "floor": {"member": "cleo"}},
                    {"name": "bakery", "floor": {"member": "ana"}},
                    {"name": "commons", "floor": {"memberClass": "community"}}]}),
        )
        .await;
    s.vote("ana", &name, json!({"points": {"bakery": 6, "commons": 4}}))
        .await;
    s.vote("ben", &name, json!({"points": {"commons": 10}})).await;
    s.vote("cleo", &name, json!({"points": {"school": 8, "commons": 2}}))
        .await;
    s.vote("dan", &name, json!({"points": {"school": 5, "bakery": 5}}))
        .await;
    s.vote("eve", &name, json!({"points": {"commons": 10}})).await;
    let p = s.close(&name).await;
    assert_eq!(p.status.phase, ProposalPhase::Applied);
    let plan = p.status.decided_effect.unwrap().allocation.unwrap();
    let floors: Vec<(Option<String>, Option<String>, u32)> = plan
        .floors
        .iter()
        .map(|f| (f.member.clone(), f.member_class.clone(), f.share_percent))
        .collect();
    assert_eq!(
        floors,
        [
            (Some("cleo".into()), None, 16),
            (Some("ana".into()), None, 13),
            (None, Some("community".into()), 31)
        ]
    );
    assert_eq!(plan.surplus_cap_percent, Some(25));
    let objects = s.store.objects().await.unwrap();
    assert_eq!(objects.in_force().unwrap().spec.plan, plan);
    s.recount(&name).await;
}

/// Every refusal the service makes, each with its code.
#[tokio::test]
async fn refusals_are_clear_and_change_nothing() {
    let s = Setup::sqlite("{kind: Allocation, method: Majority, quorumPercent: 50, votingPeriod: 60s}").await;
    let effect = plan(json!([{"memberClass": "community", "sharePercent": 60}]));
    let name = s
        .propose(
            "ana",
            json!({"name": "more", "kind": "Allocation", "title": "More", "effect": effect}),
        )
        .await;
    let code =
        |e: synco_gateway::error::ApiError| (e.status_code().as_u16(), e.body().code.unwrap_or_default());
    let yes = || BallotForm::position(Position::Yes);
    // A proposal in someone else's name.
    let request: ProposalRequest = serde_json::from_value(
        json!({"kind": "Allocation", "title": "x", "proposer": "ben", "effect": effect}),
    )
    .unwrap();
    assert_eq!(code(s.g.propose("ana", request).await.unwrap_err()).0, 403);
    // The proposer cannot set the rules: there is no such field.
    assert!(
        serde_json::from_value::<ProposalRequest>(
            json!({"kind": "Allocation", "title": "x", "effect": effect, "voting": {"method": "Consent"}})
        )
        .is_err()
    );
    // A proposal that does not fit the bylaws (options under majority).
    let request: ProposalRequest = serde_json::from_value(
        json!({"kind": "Allocation", "title": "x", "options": [{"name": "a"}, {"name": "b"}]}),
    )
    .unwrap();
    assert_eq!(
        code(s.g.propose("ana", request).await.unwrap_err()),
        (400, "invalid_proposal".into())
    );
    // A name in use.
    let request: ProposalRequest =
        serde_json::from_value(json!({"name": "more", "kind": "Allocation", "title": "x", "effect": effect}))
            .unwrap();
    assert_eq!(
        code(s.g.propose("ben", request).await.unwrap_err()),
        (409, "proposal_exists".into())
    );

    s.g.cast("ben", &name, yes(), None).await.unwrap();
    // A second ballot.
    assert_eq!(
        code(
            s.g.cast("ben", &name, BallotForm::position(Position::No), None)
                .await
                .unwrap_err()
        ),
        (409, "already_voted".into())
    );
    // A ballot that does not fit the method.
    let ranking = BallotForm {
        ranking: Some(vec!["a".into()]),
        ..BallotForm::default()
    };
    assert_eq!(
        code(s.g.cast("cleo", &name, ranking, None).await.unwrap_err()),
        (400, "invalid_ballot".into())
    );
    // Someone who is not in the electorate (a customer's name, an unknown one).
    assert_eq!(
        code(s.g.cast("buyer", &name, yes(), None).await.unwrap_err()),
        (403, "not_in_electorate".into())
    );
    // A member admitted during the vote is not in its electorate.
    let mut frank = s.store.objects().await.unwrap().members[0].clone();
    frank.metadata.name = Some("frank".into());
    frank.spec.identity = "frank".into();
    s.store.put("Member", "frank", &frank).await.unwrap();
    assert_eq!(
        code(s.g.cast("frank", &name, yes(), None).await.unwrap_err()),
        (403, "not_in_electorate".into())
    );
    // Withdrawing: not the proposer's, then with a ballot cast.
    assert_eq!(code(s.g.withdraw("ben", &name).await.unwrap_err()).0, 403);
    assert_eq!(
        code(s.g.withdraw("ana", &name).await.unwrap_err()),
        (409, "has_ballots".into())
    );
    // A late ballot.
    s.at(T0 + 60);
    assert_eq!(
        code(s.g.cast("cleo", &name, yes(), None).await.unwrap_err()),
        (409, "voting_closed".into())
    );
    // Nothing closes early: at the deadline, before the grace, the closer leaves it open.
    s.at(T0 + 60);
    assert!(s.closer.run_once().await.unwrap().is_empty());
    assert_eq!(s.g.get(&name).await.unwrap().status.phase, ProposalPhase::Open);
    // The ballots table refuses updates and deletes.
    use sea_orm::ConnectionTrait;
    for sql in ["UPDATE ballots SET ballot = '{}'", "DELETE FROM ballots"] {
        let refused = s.store.db.execute_unprepared(sql).await;
        assert!(refused.is_err(), "{sql} was allowed");
    }
    assert_eq!(s.store.ballots(&name).await.unwrap().len(), 1);
    // Withdrawing before any ballot works, and then nobody can vote.
    s.at(T0 + 100);
    let quiet = s
        .propose(
            "ben",
            json!({"kind": "Allocation", "title": "Quiet", "effect": effect}),
        )
        .await;
    let w = s.g.withdraw("ben", &quiet).await.unwrap();
    assert_eq!(w.status.phase, ProposalPhase::Withdrawn);
    assert_eq!(
        code(s.g.cast("ana", &quiet, yes(), None).await.unwrap_err()),
        (409, "withdrawn".into())
    );
}

/// The scenario with comments, a delegation and a suspended member on Postgres, closed,
/// recounted, and a changed ballot changing the fingerprint.
#[tokio::test]
async fn the_record_recounts_on_postgres_and_a_changed_ballot_changes_the_fingerprint() {
    let Some(pg) = common::postgres::Postgres::start() else {
        return;
    };
    let db = synco_gateway::db::connect(&pg.url()).await.unwrap();
    let s = Setup::with(
        db,
        "{kind: FreeText, method: Majority, quorumPercent: 50, votingPeriod: 60s}",
        None,
        Some(pg),
    )
    .await;
    let name = s
        .propose("ana", json!({"kind": "FreeText", "title": "Open on Sundays?"}))
        .await;
    let first =
        s.g.comment("ben", &name, "Only for the repair café.", None)
            .await
            .unwrap();
    s.g.comment("ana", &name, "Agreed.", Some(first.id))
        .await
        .unwrap();
    assert_eq!(s.g.discussion(&name).await.unwrap().len(), 2);
    s.g.delegate("dan", "ana").await.unwrap();
    assert_eq!(s.g.delegation("ana").await.unwrap().delegators, ["dan"]);
    s.vote("ana", &name, json!({"position": "Yes"})).await;
    s.vote("ben", &name, json!({"position": "No"})).await;
    s.vote("eve", &name, json!({"position": "No"})).await;
    // eve is suspended before the close: her ballot is set aside. Eligible: ana, ben,
    // cleo, dan (4). Counted: ana Yes carrying dan (2), ben No (1): passed, turnout 75%.
    s.store
        .set_standing("eve", synco_crds::Standing::Suspended)
        .await
        .unwrap();
    let p = s.close(&name).await;
    assert_eq!(p.status.phase, ProposalPhase::Applied);
    let tally = p.status.tally.clone().unwrap();
    assert_eq!(
        (tally.yes.as_deref(), tally.no.as_deref()),
        (Some("2"), Some("1"))
    );
    assert_eq!(p.status.turnout_percent.as_deref(), Some("75"));
    assert_eq!(p.status.delegations_used[0].from, "dan");
    assert!(p.status.ignored_votes[0].reason.starts_with("Suspended"));
    let fingerprint = s.recount(&name).await;
    assert_eq!(p.status.fingerprint.as_deref(), Some(fingerprint.as_str()));
    // Reinstating eve or revoking dan's delegation later does not change the record.
    s.store
        .set_standing("eve", synco_crds::Standing::Active)
        .await
        .unwrap();
    s.g.revoke("dan").await.unwrap();
    assert_eq!(s.recount(&name).await, fingerprint);
    // One changed ballot: the recount no longer matches.
    let mut record = s.g.record(&name).await.unwrap();
    record.record.ballots[1].ballot = BallotForm::position(Position::Yes);
    let found = verify(&record).unwrap();
    assert_ne!(found.fingerprint, fingerprint);
    assert!(!found.problems.is_empty());
}
