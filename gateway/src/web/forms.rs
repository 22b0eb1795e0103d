//! HTML forms (`application/x-www-form-urlencoded`) read into the governance API's
//! requests. Field names:
//!
//! | form | fields |
//! |---|---|
//! | every POST | `csrf` |
//! | ballot | `position`; or `approve` (repeated); or `score:<option>`; or `rank<n>` (a choice per rank); or `points:<option>`; and `comment` |
//! | comment | `body`, `reply_to` |
//! | proposal | `kind`, `title`, `body`, `options` (one per line), `floor:<class>`, `surplus_cap`, `borrow_limit` |

use std::collections::BTreeMap;

use synco_crds::{AllocationPlan, Floor, ProposalEffect, ProposalKind, ProposalOption, VotingMethod};
use synco_policies::lifecycle::{BallotForm, Position};

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
        VotingMethod::RankedChoice => {
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

/// The proposal a "new proposal" form sends.
///
/// # Errors
///
/// A field does not read (the service checks the proposal against the bylaws).
pub fn proposal(form: &Form) -> Result<ProposalRequest, String> {
    let kind: ProposalKind = serde_json::from_value(serde_json::Value::String(form.one("kind").to_owned()))
        .map_err(|_| format!("{:?} is not a kind of proposal", form.one("kind")))?;
    let options: Vec<ProposalOption> = form
        .one("options")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|name| ProposalOption {
            name: name.to_owned(),
            effect: None,
            floor: None,
        })
        .collect();
    let percent = |name: &str| -> Result<Option<u32>, String> {
        match form.one(name).trim() {
            "" => Ok(None),
            v => whole(name, v).map(Some),
        }
    };
    let effect = match kind {
        ProposalKind::MemberAdmission => Some(member_admission(form)?),
        ProposalKind::SurplusPrice => Some(surplus_price(form)?),
        _ => allocation(kind, form, &percent)?,
    };
    Ok(ProposalRequest {
        name: None,
        kind,
        title: form.one("title").trim().to_owned(),
        body: form.one("body").trim().to_owned(),
        proposer: None,
        options,
        effect,
        split: None,
    })
}

/// An allocation proposal's new plan (nothing for other kinds).
fn allocation(
    kind: ProposalKind,
    form: &Form,
    percent: &dyn Fn(&str) -> Result<Option<u32>, String>,
) -> Result<Option<ProposalEffect>, String> {
    Ok(if kind == ProposalKind::Allocation {
        let mut floors = Vec::new();
        for (class, v) in form.prefixed("floor:") {
            let share = whole(class, v)?;
            if share > 0 {
                floors.push(Floor {
                    member_class: Some(class.to_owned()),
                    member: None,
                    share_percent: share,
                });
            }
        }
        Some(ProposalEffect {
            allocation: Some(AllocationPlan {
                floors,
                surplus_cap_percent: percent("surplus_cap")?,
                borrow_limit_percent: percent("borrow_limit")?,
            }),
            bylaw: None,
            surplus_price: None,
            model_adoption: None,
            member_admission: None,
        })
    } else {
        None
    })
}

/// The effect as the API reads it, from a few named fields (the CRD's defaults fill
/// the rest, as they do for a manifest).
fn effect_from(value: serde_json::Value) -> Result<ProposalEffect, String> {
    serde_json::from_value(value).map_err(|e| e.to_string())
}

/// A member admission: the new member's name, display name, class, identity and kind
/// of organisation.
fn member_admission(form: &Form) -> Result<ProposalEffect, String> {
    let field = |n: &str| form.one(n).trim().to_owned();
    let mut spec = serde_json::json!({
        "displayName": field("member_display_name"),
        "class": field("member_class"),
        "identity": field("member_identity"),
    });
    if !field("member_organisation").is_empty() {
        spec["organisation"] = serde_json::Value::String(field("member_organisation"));
    }
    if !field("member_contact").is_empty() {
        spec["contact"] = serde_json::Value::String(field("member_contact"));
    }
    effect_from(serde_json::json!({"memberAdmission": {"name": field("member_name"), "spec": spec}}))
}

/// A surplus price: the most that may be sold, the currency and the floor price per
/// million tokens (in the currency's minor units).
fn surplus_price(form: &Form) -> Result<ProposalEffect, String> {
    let minor = |n: &str| -> Result<i64, String> {
        let v = form.one(n).trim();
        v.parse()
            .map_err(|_| format!("{v:?} for {n} is not a whole number of minor units"))
    };
    effect_from(serde_json::json!({"surplusPrice": {
        "maxSharePercent": whole("max_share", form.one("max_share").trim())?,
        "currency": form.one("currency").trim(),
        "priceFloor": {"inputPerMillion": minor("price_input")?, "outputPerMillion": minor("price_output")?},
    }}))
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

    #[test]
    fn an_allocation_form_becomes_floors() {
        let f = Form::parse(
            b"kind=Allocation&title=More+for+schools&floor%3Acommunity=50&floor%3Abusiness=0&surplus_cap=20",
        );
        let r = proposal(&f).unwrap();
        let plan = r.effect.unwrap().allocation.unwrap();
        assert_eq!(plan.floors.len(), 1);
        assert_eq!(plan.floors[0].share_percent, 50);
        assert_eq!(plan.surplus_cap_percent, Some(20));
        assert!(proposal(&Form::parse(b"kind=Nonsense")).is_err());
        assert!(proposal(&Form::parse(b"kind=Allocation&floor%3Aa=lots")).is_err());
    }

    #[test]
    fn member_admission_and_surplus_price_forms_become_effects() {
        let r = proposal(&Form::parse(
            b"kind=MemberAdmission&title=Admit&member_name=mill&member_display_name=The+Mill&member_class=community&member_identity=mill&member_organisation=WorkerCoop",
        ))
        .unwrap();
        let admitted = r.effect.unwrap().member_admission.unwrap();
        assert_eq!(
            (admitted.name.as_str(), admitted.spec.class.as_str()),
            ("mill", "community")
        );
        assert_eq!(admitted.spec.voting_weight, 1, "the CRD's default");
        assert!(proposal(&Form::parse(b"kind=MemberAdmission&member_organisation=Castle")).is_err());
        let r = proposal(&Form::parse(
            b"kind=SurplusPrice&max_share=25&currency=EUR&price_input=12&price_output=30",
        ))
        .unwrap();
        let price = r.effect.unwrap().surplus_price.unwrap();
        assert_eq!(
            (price.max_share_percent, price.price_floor.output_per_million),
            (25, 30)
        );
        assert!(
            proposal(&Form::parse(
                b"kind=SurplusPrice&max_share=25&currency=EUR&price_input=x"
            ))
            .is_err()
        );
    }
}
