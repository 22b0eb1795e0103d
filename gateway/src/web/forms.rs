//! HTML forms (`application/x-www-form-urlencoded`) read into the governance API's
//! requests. Field names:
//!
//! | form | fields |
//! |---|---|
//! | every POST | `csrf` |
//! | ballot | `position`; or `approve` (repeated); or `score:<option>`; or `rank<n>` (a choice per rank); or `points:<option>`; and `comment` |
//! | comment | `body`, `reply_to` |
//! | proposal | `kind`, `title`, `body`; `options` (one per line) for a question; the effect's fields (see [`super::effects`]), or `o<n>_name` and option `n`'s fields named `o<n>_…`, `option_count`, `status_quo`; `split` and `o<n>_target` for a dot-voted allocation; `more` asks for one more option |

use std::collections::BTreeMap;

use synco_crds::{ProposalKind, ProposalOption, VotingMethod};
use synco_policies::lifecycle::{BallotForm, Position};

use super::effects::{self, Layout};
use crate::coop::CoopObjects;
use crate::governance::ProposalRequest;
use crate::governance::views::ProposalView;

/// A parsed form: its fields in order (a name may repeat).
#[derive(Debug, Default)]
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(body: &[u8]) -> Self {
        Self(form_urlencoded::parse(body).into_owned().collect())
    }

    /// The first value of `name`, or "".
    pub fn one(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Whether the form has a field `name` (even an empty one).
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }

    /// Sets `name` to `value` (replacing every value it had).
    pub fn set(&mut self, name: &str, value: &str) {
        self.0.retain(|(k, _)| k != name);
        self.0.push((name.to_owned(), value.to_owned()));
    }

    /// Every value of `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The non-empty fields named `<prefix><suffix>`, as (suffix, value).
    pub fn prefixed<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.0.iter().filter_map(move |(k, v)| {
            k.strip_prefix(prefix)
                .filter(|_| !v.trim().is_empty())
                .map(|s| (s, v.trim()))
        })
    }
}

fn whole(option: &str, value: &str) -> Result<u32, String> {
    value
        .parse()
        .map_err(|_| format!("{value:?} for {option} is not a whole number"))
}

/// The ballot a ballot form sends, for `proposal`'s method.
///
/// # Errors
///
/// The form does not read as a ballot (the service checks the rest: options, ranges, totals).
pub fn ballot(proposal: &ProposalView, form: &Form) -> Result<BallotForm, String> {
    let method = proposal
        .status
        .rules
        .as_ref()
        .map(|r| r.method)
        .ok_or("this proposal is not open for voting")?;
    let position = match form.one("position") {
        "" => None,
        p => Some(
            serde_json::from_value::<Position>(serde_json::Value::String(p.to_owned()))
                .map_err(|_| format!("{p:?} is not a position"))?,
        ),
    };
    let mut ballot = BallotForm::default();
    match method {
        VotingMethod::Majority | VotingMethod::Supermajority | VotingMethod::Consent => {
            ballot.position = Some(position.ok_or("choose a position")?);
        }
        _ if position == Some(Position::Abstain) => ballot.position = position,
        VotingMethod::Approval => {
            ballot.approvals = Some(form.all("approve").map(str::to_owned).collect());
        }
        VotingMethod::Score => {
            let mut scores = BTreeMap::new();
            for (option, v) in form.prefixed("score:") {
                scores.insert(option.to_owned(), whole(option, v)?);
            }
            ballot.scores = Some(scores);
        }
        VotingMethod::RankedChoice | VotingMethod::Schulze => {
            let mut ranked: Vec<(u32, &str)> = form
                .prefixed("rank")
                .filter_map(|(n, option)| n.parse().ok().map(|n: u32| (n, option)))
                .collect();
            ranked.sort_unstable();
            let ranking: Vec<String> = ranked.into_iter().map(|(_, o)| o.to_owned()).collect();
            if ranking.is_empty() {
                return Err("rank at least one option".to_owned());
            }
            ballot.ranking = Some(ranking);
        }
        VotingMethod::DotVoting => {
            let mut points = BTreeMap::new();
            for (option, v) in form.prefixed("points:") {
                let n = whole(option, v)?;
                if n > 0 {
                    points.insert(option.to_owned(), n);
                }
            }
            ballot.points = Some(points);
        }
    }
    Ok(ballot)
}

/// A ranking from fields `{prefix}{statement}={position}` (a position per statement,
/// blank for unranked): the statements in order of position, best first.
///
/// # Errors
///
/// A position or statement that is not a number, or two statements at one position.
pub fn ranking_positions(form: &Form, prefix: &str) -> Result<Vec<u32>, String> {
    let mut placed: BTreeMap<u32, u32> = BTreeMap::new();
    for (statement, position) in form.prefixed(prefix) {
        if position.trim().is_empty() {
            continue;
        }
        let statement: u32 = statement
            .parse()
            .map_err(|_| format!("{statement:?} is not a statement's number"))?;
        let position: u32 = position
            .trim()
            .parse()
            .map_err(|_| format!("{position:?} is not a position"))?;
        if let Some(other) = placed.insert(position, statement) {
            return Err(format!(
                "statements {other} and {statement} are both at position {position}; give each its own"
            ));
        }
    }
    Ok(placed.into_values().collect())
}

/// The most options a proposal's form offers.
pub const MAX_OPTIONS: usize = 16;

/// How many option blocks the form shows (`option_count`, three at first).
#[must_use]
pub fn option_count(form: Option<&Form>) -> usize {
    form.and_then(|f| f.one("option_count").parse().ok())
        .unwrap_or(3)
        .clamp(2, MAX_OPTIONS)
}

/// The option a proposal with options may add: nothing changes if it wins.
pub const STATUS_QUO: &str = "Keep things as they are";

/// The proposal a "new proposal" form sends. The layout (one effect, options with
/// effects, a split, or a question) follows the method the bylaws decide the kind by.
///
/// # Errors
///
/// A field does not read (the service checks the proposal against the bylaws).
pub fn proposal(form: &Form, objects: &CoopObjects) -> Result<ProposalRequest, String> {
    let kind = effects::kind_of(form.one("kind"))
        .ok_or_else(|| format!("{:?} is not a kind of proposal", form.one("kind")))?;
    let coop = objects.cooperative().ok();
    let method = coop.map_or(VotingMethod::Majority, |c| {
        synco_policies::crd::proposal::bylaw_rules(c, kind).method
    });
    let mut options = Vec::new();
    let mut effect = None;
    let mut split = None;
    let option = |name: &str| ProposalOption {
        name: name.to_owned(),
        effect: None,
        floor: None,
    };
    let named = |n: usize| {
        let p = format!("o{n}_");
        let name = form.one(&format!("{p}name")).trim().to_owned();
        (p, name)
    };
    match effects::layout(kind, method) {
        Layout::Question => {
            options.extend(
                form.one("options")
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(option),
            );
        }
        Layout::Single => effect = effects::read(kind, form, "", coop)?,
        Layout::Options => {
            for n in 1..=option_count(Some(form)) {
                let (p, name) = named(n);
                if !name.is_empty() {
                    options.push(ProposalOption {
                        effect: effects::read(kind, form, &p, coop)?,
                        ..option(&name)
                    });
                }
            }
            if !form.one("status_quo").is_empty() {
                options.push(option(STATUS_QUO));
            }
        }
        Layout::Split => {
            effect = effects::read(kind, form, "", coop)?;
            split = Some(synco_crds::AllocationSplit {
                share_percent: whole("split", form.one("split").trim())?,
            });
            for n in 1..=option_count(Some(form)) {
                let (p, name) = named(n);
                if !name.is_empty() {
                    options.push(ProposalOption {
                        floor: Some(effects::target(form, &p)?),
                        ..option(&name)
                    });
                }
            }
        }
        Layout::Unsupported => {
            return Err(format!(
                "the bylaws decide {} proposals by {}, which cannot decide them; change the bylaws first",
                effects::kind_name(kind),
                effects::method_name(method)
            ));
        }
    }
    Ok(ProposalRequest {
        name: None,
        kind,
        title: form.one("title").trim().to_owned(),
        body: form.one("body").trim().to_owned(),
        proposer: None,
        options,
        effect,
        split,
        patronage_period: (kind == ProposalKind::PatronageDistribution)
            .then(|| form.one("patronage_period").trim().to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_and_prefixed_fields_are_read() {
        let f = Form::parse(b"csrf=x&approve=a&approve=b+c&score%3Agrid=3&score%3Asolar=&rank2=b&rank1=a");
        assert_eq!(f.one("csrf"), "x");
        assert_eq!(f.one("missing"), "");
        assert_eq!(f.all("approve").collect::<Vec<_>>(), ["a", "b c"]);
        assert_eq!(f.prefixed("score:").collect::<Vec<_>>(), [("grid", "3")]);
    }

    fn open_by(method: VotingMethod) -> ProposalView {
        let status = synco_crds::ProposalStatus {
            rules: Some(synco_crds::VotingRules {
                method,
                quorum_percent: None,
                threshold: None,
                voting_period: None,
                max_score: None,
                points_per_member: None,
            }),
            ..synco_crds::ProposalStatus::default()
        };
        ProposalView {
            name: "p".to_owned(),
            created_at: None,
            spec: serde_json::from_value(
                serde_json::json!({"kind": "FreeText", "title": "t", "proposer": "ana"}),
            )
            .unwrap(),
            status,
            ballots_cast: 0,
            comments: 0,
        }
    }

    #[test]
    fn every_method_has_its_ballot_form() {
        let read = |m, body: &[u8]| ballot(&open_by(m), &Form::parse(body));
        let b = read(VotingMethod::Consent, b"position=StandAside").unwrap();
        assert_eq!(b.position, Some(Position::StandAside));
        assert!(read(VotingMethod::Majority, b"").is_err(), "a position is needed");
        let b = read(VotingMethod::Approval, b"approve=grid&approve=wind").unwrap();
        assert_eq!(b.approvals.unwrap(), ["grid", "wind"]);
        let b = read(VotingMethod::Score, b"score%3Agrid=4&score%3Awind=0").unwrap();
        assert_eq!(
            b.scores.unwrap().into_iter().collect::<Vec<_>>(),
            [("grid".to_owned(), 4), ("wind".to_owned(), 0)]
        );
        assert!(read(VotingMethod::Score, b"score%3Agrid=four").is_err());
        let b = read(VotingMethod::RankedChoice, b"rank2=grid&rank1=solar&rank3=").unwrap();
        assert_eq!(
            b.ranking.unwrap(),
            ["solar", "grid"],
            "ranked by the choice's number, blanks left out"
        );
        assert!(read(VotingMethod::RankedChoice, b"rank1=").is_err());
        let form = Form::parse(b"rank-1=2&rank-2=&rank-3=1&rank-4=3");
        assert_eq!(ranking_positions(&form, "rank-").unwrap(), vec![3, 1, 4]);
        let form = Form::parse(b"rank-1=1&rank-2=1");
        assert!(
            ranking_positions(&form, "rank-")
                .unwrap_err()
                .contains("both at position 1")
        );
        assert!(ranking_positions(&Form::parse(b"rank-x=1"), "rank-").is_err());
        let b = read(
            VotingMethod::DotVoting,
            b"points%3Agrid=7&points%3Awind=0&points%3Asolar=3",
        )
        .unwrap();
        assert_eq!(b.points.unwrap().len(), 2, "options given no points are left out");
        let b = read(VotingMethod::DotVoting, b"position=Abstain&points%3Agrid=7").unwrap();
        assert_eq!(
            (b.position, b.points),
            (Some(Position::Abstain), None),
            "abstaining wins over points"
        );
    }

    /// The example co-op (`crds/examples`): allocations by majority, bylaws by a 2/3
    /// supermajority, admissions by consent, model adoptions by approval; `method`
    /// replaces the allocations' method.
    fn coop(allocation_method: &str) -> CoopObjects {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/examples");
        let mut manifests = synco_crds::manifests::load_dir(&dir).unwrap();
        for m in &mut manifests {
            if let synco_crds::Manifest::Cooperative(c) = m {
                c.spec.voting_defaults[0].rules.method =
                    serde_json::from_value(serde_json::Value::String(allocation_method.to_owned())).unwrap();
            }
        }
        CoopObjects::from_manifests(&manifests)
    }

    #[test]
    fn an_allocation_form_becomes_floors() {
        let objects = coop("Majority");
        let f = Form::parse(
            b"kind=Allocation&title=More+for+schools&floor%3Acommunity=50&floor%3Abusiness=0&surplus_cap=20",
        );
        let r = proposal(&f, &objects).unwrap();
        let plan = r.effect.unwrap().allocation.unwrap();
        assert_eq!(plan.floors.len(), 1);
        assert_eq!(plan.floors[0].share_percent, 50);
        assert_eq!(plan.surplus_cap_percent, Some(20));
        assert!(proposal(&Form::parse(b"kind=Nonsense"), &objects).is_err());
        assert!(proposal(&Form::parse(b"kind=Allocation&floor%3Aa=lots"), &objects).is_err());
    }

    #[test]
    fn ranked_allocations_carry_a_plan_per_option_and_dot_votes_a_split() {
        let objects = coop("RankedChoice");
        let r = proposal(
            &Form::parse(
                b"kind=Allocation&title=Winter&option_count=3&o1_name=Schools&o1_floor%3Acommunity=60&o1_surplus_cap=10\
                  &o2_name=Shops&o2_floor%3Abusiness=40&o3_name=&o3_floor%3Acommunity=5&status_quo=on",
            ),
            &objects,
        )
        .unwrap();
        assert!(r.effect.is_none(), "the options carry the effects");
        let names: Vec<&str> = r.options.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(
            names,
            ["Schools", "Shops", STATUS_QUO],
            "an option left unnamed is none"
        );
        let plan = r.options[0].effect.as_ref().unwrap().allocation.as_ref().unwrap();
        assert_eq!(
            (plan.floors[0].share_percent, plan.surplus_cap_percent),
            (60, Some(10))
        );
        assert!(r.options[2].effect.is_none());

        let objects = coop("DotVoting");
        let r = proposal(
            &Form::parse(
                b"kind=Allocation&title=Split&floor%3Acommunity=40&split=30&o1_name=Schools&o1_target=class%3Acommunity\
                  &o2_name=The+bakery&o2_target=member%3Abakery-coop",
            ),
            &objects,
        )
        .unwrap();
        assert_eq!(r.split.unwrap().share_percent, 30);
        assert_eq!(
            r.options[1].floor.as_ref().unwrap().member.as_deref(),
            Some("bakery-coop")
        );
        assert_eq!(r.effect.unwrap().allocation.unwrap().floors[0].share_percent, 40);
        assert!(
            proposal(
                &Form::parse(b"kind=Allocation&split=30&o1_name=x&o1_target=nobody"),
                &objects
            )
            .is_err()
        );
    }

    #[test]
    fn model_adoptions_are_options_and_bylaw_changes_only_what_differs() {
        let objects = coop("Majority");
        // Model adoptions are decided by approval in the example co-op.
        let r = proposal(
            &Form::parse(
                b"kind=ModelAdoption&title=A+second+model&o1_name=Qwen&o1_model_name=qwen&o1_model_source_kind=hub\
                  &o1_model_source=Qwen%2FQwen2.5-0.5B-Instruct&o1_model_engine=Mistralrs&o1_model_pool=gpus\
                  &o1_model_replicas=2&o1_model_access%3Acommunity=on&o1_model_customers=on\
                  &o2_name=Peer&o2_model_name=peer&o2_model_source_kind=none&o2_model_engine=External\
                  &o2_model_url=https%3A%2F%2Fpeer.example%2Fv1",
            ),
            &objects,
        )
        .unwrap();
        let qwen = r.options[0]
            .effect
            .as_ref()
            .unwrap()
            .model_adoption
            .as_ref()
            .unwrap();
        assert_eq!(qwen.name, "qwen");
        assert_eq!(qwen.spec.replicas, 2);
        assert_eq!(qwen.spec.access.classes, ["community"]);
        assert!(qwen.spec.access.customers);
        assert_eq!(
            qwen.spec.source.as_ref().unwrap().hub.as_deref(),
            Some("Qwen/Qwen2.5-0.5B-Instruct")
        );
        let peer = r.options[1]
            .effect
            .as_ref()
            .unwrap()
            .model_adoption
            .as_ref()
            .unwrap();
        assert!(peer.spec.source.is_none());
        assert_eq!(peer.spec.engine.url.as_deref(), Some("https://peer.example/v1"));
        assert!(
            proposal(
                &Form::parse(b"kind=ModelAdoption&o1_name=x&o1_model_name=x&o1_model_engine=Mistralrs"),
                &objects
            )
            .is_err(),
            "a model needs weights"
        );

        // The bylaws as they are, with one change: admissions need a 60% quorum.
        let rows = |admission_quorum: &str| bylaw_rows(&objects, admission_quorum);
        let unchanged = proposal(&Form::parse(rows("").as_bytes()), &objects);
        assert!(unchanged.unwrap_err().contains("changes nothing"));
        let r = proposal(&Form::parse(rows("60").as_bytes()), &objects).unwrap();
        let change = r.effect.unwrap().bylaw.unwrap();
        assert!(change.member_classes.is_none(), "the classes are as they were");
        let rules = change.voting_defaults.unwrap();
        let admission = rules
            .iter()
            .find(|d| d.kind == synco_crds::ProposalKind::MemberAdmission)
            .unwrap();
        assert_eq!(admission.rules.quorum_percent, Some(60));
        assert_eq!(
            rules.len(),
            objects.cooperative().unwrap().spec.voting_defaults.len()
        );
    }

    /// The bylaws' form as it is filled in, with admissions' quorum set to `admission_quorum`.
    fn bylaw_rows(objects: &CoopObjects, admission_quorum: &str) -> String {
        let mut body = String::from("kind=Bylaw&title=Quorum");
        let coop = objects.cooperative().unwrap();
        for d in &coop.spec.voting_defaults {
            let k = effects::kind_name(d.kind);
            let r = &d.rules;
            body += &format!("&rule-{k}-method={}", effects::method_name(r.method));
            let quorum = if d.kind == synco_crds::ProposalKind::MemberAdmission {
                admission_quorum.to_owned()
            } else {
                r.quorum_percent.map(|q| q.to_string()).unwrap_or_default()
            };
            body += &format!("&rule-{k}-quorum={quorum}");
            if let Some(t) = r.threshold {
                body += &format!("&rule-{k}-threshold={}%2F{}", t.numerator, t.denominator);
            }
            body += &format!("&rule-{k}-period={}", r.voting_period.clone().unwrap_or_default());
        }
        for (i, c) in coop.spec.member_classes.iter().enumerate() {
            let n = i + 1;
            body += &format!("&class{n}-name={}&class{n}-tier={}", c.name, c.tier);
            body += &format!(
                "&class{n}-description={}",
                form_urlencoded::byte_serialize(c.description.clone().unwrap_or_default().as_bytes())
                    .collect::<String>()
            );
        }
        body += &format!("&class{}-name=", coop.spec.member_classes.len() + 1);
        body
    }

    #[test]
    fn the_bylaw_form_changes_the_patronage_rules_alone() {
        let objects = coop("Majority");
        let coop = objects.cooperative().unwrap();
        let now = coop.spec.patronage.clone().unwrap();
        let with = |cash: u32| {
            format!(
                "{}&patronage-basis=Mix&patronage-usage_parts=3&patronage-contribution_parts=1&patronage-cash={cash}\
                 &patronage-surplus_to=Pool&patronage-floor_per_gpu=2&patronage-max_floor=10",
                bylaw_rows(
                    &objects,
                    &coop
                        .spec
                        .voting_defaults
                        .iter()
                        .find(|d| d.kind == synco_crds::ProposalKind::MemberAdmission)
                        .and_then(|d| d.rules.quorum_percent)
                        .map(|q| q.to_string())
                        .unwrap_or_default()
                )
            )
        };
        let same = proposal(&Form::parse(with(now.cash_percent).as_bytes()), &objects);
        assert!(same.unwrap_err().contains("changes nothing"));
        let r = proposal(&Form::parse(with(60).as_bytes()), &objects).unwrap();
        let change = r.effect.clone().unwrap().bylaw.unwrap();
        assert!(change.voting_defaults.is_none() && change.member_classes.is_none());
        assert_eq!(change.patronage.unwrap().cash_percent, 60);
        // Under 20% in cash is refused when the proposal is checked.
        let low = proposal(&Form::parse(with(10).as_bytes()), &objects).unwrap();
        let spec = synco_crds::ProposalSpec {
            kind: low.kind,
            title: "Less cash".into(),
            body: String::new(),
            proposer: "bakery-coop".into(),
            options: low.options,
            effect: low.effect,
            split: low.split,
        };
        assert!(spec.check().unwrap_err().contains("20% to 100%"));
    }

    /// A peer's fields as the bylaw form sends them.
    fn peer_row(n: usize, p: &synco_crds::Peer) -> String {
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let mut row = format!(
            "&peer{n}-name={}&peer{n}-url={}&peer{n}-public_key={}&peer{n}-jwks_url={}\
             &peer{n}-borrow={}&peer{n}-lend={}&peer{n}-max_lend={}&peer{n}-tier={}",
            p.name,
            enc(&p.url),
            p.public_key.clone().unwrap_or_default(),
            enc(&p.jwks_url.clone().unwrap_or_default()),
            enc(&p.borrow.join(", ")),
            enc(&p.lend.join(", ")),
            p.max_lend_percent,
            p.tier
        );
        match (&p.terms.price, &p.terms.reciprocal) {
            (Some(price), _) => {
                row += &format!(
                    "&peer{n}-terms=price&peer{n}-currency={}&peer{n}-input={}&peer{n}-output={}",
                    price.currency, price.price.input_per_million, price.price.output_per_million
                );
            }
            (None, Some(r)) => {
                row += &format!(
                    "&peer{n}-terms=reciprocal&peer{n}-allowance={}",
                    r.allowance_tokens
                )
            }
            (None, None) => {}
        }
        row
    }

    /// The bylaw form adds, keeps and removes peer co-ops (a Bylaw proposal is how the
    /// federation changes), and refuses a peer with two keys.
    #[test]
    fn the_bylaw_form_adds_and_removes_peers() {
        let objects = coop("Majority");
        let coop = objects.cooperative().unwrap();
        let hillside = coop.spec.peers[0].clone();
        let rows = bylaw_rows(&objects, "");
        let html_fields: Vec<String> = effects::groups(
            synco_crds::ProposalKind::Bylaw,
            "",
            effects::Source {
                objects: &objects,
                typed: None,
            },
        )
        .into_iter()
        .flat_map(|g| g.fields.into_iter().map(|f| f.name))
        .collect();
        assert!(html_fields.iter().any(|f| f == "peer1-public_key"));
        assert!(
            html_fields.iter().any(|f| f == "peer2-name"),
            "a row for a new peer"
        );
        // Kept as it is: nothing changes.
        let same = format!("{rows}{}&peer2-name=", peer_row(1, &hillside));
        assert!(
            proposal(&Form::parse(same.as_bytes()), &objects)
                .unwrap_err()
                .contains("changes nothing")
        );
        // A second peer, priced.
        let mut valley = hillside.clone();
        valley.name = "valley".into();
        valley.public_key = None;
        valley.jwks_url = Some("https://gateway.valley.example/federation/jwks.json".into());
        valley.terms = serde_json::from_value(
            serde_json::json!({"price": {"currency": "EUR", "inputPerMillion": 100, "outputPerMillion": 300}}),
        )
        .unwrap();
        let added = format!("{rows}{}{}", peer_row(1, &hillside), peer_row(2, &valley));
        let r = proposal(&Form::parse(added.as_bytes()), &objects).unwrap();
        let change = r.effect.unwrap().bylaw.unwrap();
        assert!(change.member_classes.is_none() && change.patronage.is_none());
        assert_eq!(change.peers.unwrap(), [hillside.clone(), valley.clone()]);
        // hillside removed (its name emptied).
        let removed = format!("{rows}&peer1-name={}", peer_row(2, &valley));
        let change = proposal(&Form::parse(removed.as_bytes()), &objects)
            .unwrap()
            .effect
            .unwrap()
            .bylaw
            .unwrap();
        assert_eq!(change.peers.unwrap(), [valley.clone()]);
        // Two keys: refused with a clear message.
        let mut two_keys = hillside.clone();
        two_keys.jwks_url = Some("https://x.example/jwks".into());
        let both = format!("{rows}{}", peer_row(1, &two_keys));
        assert!(
            proposal(&Form::parse(both.as_bytes()), &objects)
                .unwrap_err()
                .contains("exactly one of its public key and its JWKS URL")
        );
    }

    #[test]
    fn member_admission_and_surplus_price_forms_become_effects() {
        let objects = coop("Majority");
        let r = proposal(
            &Form::parse(
                b"kind=MemberAdmission&title=Admit&member_name=mill&member_display_name=The+Mill&member_class=community&member_identity=mill&member_organisation=WorkerCoop",
            ),
            &objects,
        )
        .unwrap();
        let admitted = r.effect.unwrap().member_admission.unwrap();
        assert_eq!(
            (admitted.name.as_str(), admitted.spec.class.as_str()),
            ("mill", "community")
        );
        assert_eq!(admitted.spec.voting_weight, 1, "the CRD's default");
        assert!(
            proposal(
                &Form::parse(b"kind=MemberAdmission&member_organisation=Castle"),
                &objects
            )
            .is_err()
        );
        let r = proposal(
            &Form::parse(b"kind=SurplusPrice&max_share=25&currency=EUR&price_input=12&price_output=30"),
            &objects,
        )
        .unwrap();
        let price = r.effect.unwrap().surplus_price.unwrap();
        assert_eq!(
            (price.max_share_percent, price.price_floor.output_per_million),
            (25, 30)
        );
        assert!(
            proposal(
                &Form::parse(b"kind=SurplusPrice&max_share=25&currency=EUR&price_input=x"),
                &objects
            )
            .is_err()
        );
    }
}
