//! A new co-op's bylaws drafted from a short questionnaire: the founders name the co-op
//! and its member classes and say in plain words how they want to decide and what they
//! may sell; the co-op's model (run in process, as `synco-gateway assistant bylaws`)
//! drafts the tiers, the voting rules for every kind of proposal and the surplus share,
//! constrained to a JSON schema so that the output parses by construction; the draft
//! is assembled into a Cooperative manifest for the founders to review. The names and
//! the currency stay the founders' own: the model fills in only what the schema asks.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use synco_crds::{ProposalKind, VotingMethod};

use crate::openai::ChatCompletionRequest;

/// The version of the bylaws prompt and schema.
pub const TEMPLATE_VERSION: &str = "bylaws-v1";

/// The most completion tokens the draft may take: its schema bounds it (about 650
/// characters for three classes; a byte-level tokenizer, as the tiny model's, spends a
/// token on each).
pub const MAX_TOKENS: u32 = 1000;

/// The founders' answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Questionnaire {
    /// The co-op's resource name (its namespace too): lower-case letters, digits, `-`.
    pub name: String,
    pub display_name: String,
    /// The member classes: a name each, and who is in it.
    pub classes: Vec<ClassAnswer>,
    /// How the members want to decide, in plain words.
    pub decisions: String,
    /// What may be sold to outside customers, in plain words.
    #[serde(default)]
    pub surplus: String,
    /// The currency surplus is sold in (ISO 4217).
    #[serde(default = "eur")]
    pub currency: String,
}

fn eur() -> String {
    "EUR".to_owned()
}

/// One member class, as the founders name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClassAnswer {
    pub name: String,
    /// Who is in it, in plain words.
    pub who: String,
}

/// The kinds of proposal the bylaws set rules for, in the draft's order.
const KINDS: [(ProposalKind, &str); 7] = [
    (ProposalKind::Allocation, "Allocation"),
    (ProposalKind::Bylaw, "Bylaw"),
    (ProposalKind::FreeText, "FreeText"),
    (ProposalKind::MemberAdmission, "MemberAdmission"),
    (ProposalKind::ModelAdoption, "ModelAdoption"),
    (ProposalKind::SurplusPrice, "SurplusPrice"),
    (ProposalKind::PatronageDistribution, "PatronageDistribution"),
];

/// The methods a kind may be decided by in a draft: yes/no methods for every kind
/// (each decides any proposal with one effect), and for free-text questions the
/// methods that choose between options too.
fn methods(kind: ProposalKind) -> Vec<&'static str> {
    let mut m = vec!["Majority", "Supermajority", "Consent"];
    if kind == ProposalKind::FreeText {
        m.extend(["Approval", "Schulze"]);
    }
    m
}

fn method_of(name: &str) -> Option<VotingMethod> {
    Some(match name {
        "Majority" => VotingMethod::Majority,
        "Supermajority" => VotingMethod::Supermajority,
        "Consent" => VotingMethod::Consent,
        "Approval" => VotingMethod::Approval,
        "Schulze" => VotingMethod::Schulze,
        _ => return None,
    })
}

impl Questionnaire {
    /// Reads answers from YAML (or JSON).
    ///
    /// # Errors
    ///
    /// The text does not read, or an answer is missing or not usable as a name.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let q: Self =
            serde_yaml_ng::from_str(text).map_err(|e| anyhow::anyhow!("the answers do not read: {e}"))?;
        q.check()?;
        Ok(q)
    }

    fn check(&self) -> anyhow::Result<()> {
        let name_ok = |n: &str| {
            !n.is_empty()
                && n.len() <= 63
                && n.starts_with(|c: char| c.is_ascii_lowercase())
                && n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        anyhow::ensure!(
            name_ok(&self.name),
            "name {:?}: lower-case letters, digits and '-', starting with a letter",
            self.name
        );
        anyhow::ensure!(
            !self.display_name.trim().is_empty(),
            "displayName: say what the co-op is called"
        );
        anyhow::ensure!(
            (1..=8).contains(&self.classes.len()),
            "classes: one to eight member classes"
        );
        let mut seen = std::collections::BTreeSet::new();
        for c in &self.classes {
            anyhow::ensure!(name_ok(&c.name), "class {:?}: a name like `schools`", c.name);
            anyhow::ensure!(seen.insert(&c.name), "class {:?} is named twice", c.name);
        }
        anyhow::ensure!(
            !self.decisions.trim().is_empty(),
            "decisions: say how the members want to decide"
        );
        anyhow::ensure!(
            self.currency.len() == 3 && self.currency.chars().all(|c| c.is_ascii_uppercase()),
            "currency {:?}: a three-letter code such as EUR",
            self.currency
        );
        Ok(())
    }
}

/// The schema the draft is constrained to: a tier per class (by the founders' names),
/// a rule per kind (method, quorum, voting days), and the surplus share. Every number
/// is bounded and no free white space is allowed, so the draft ends and parses.
pub fn schema(q: &Questionnaire) -> Value {
    let int = |min: u32, max: u32| json!({"type": "integer", "minimum": min, "maximum": max});
    let tiers: serde_json::Map<String, Value> =
        q.classes.iter().map(|c| (c.name.clone(), int(0, 3))).collect();
    let class_names: Vec<&str> = q.classes.iter().map(|c| c.name.as_str()).collect();
    let rules: serde_json::Map<String, Value> = KINDS
        .iter()
        .map(|(kind, name)| {
            (
                (*name).to_owned(),
                json!({"type": "object", "properties": {
                    "method": {"enum": methods(*kind)},
                    "quorumPercent": int(0, 100),
                    "votingDays": int(1, 30)},
                "required": ["method", "quorumPercent", "votingDays"], "additionalProperties": false}),
            )
        })
        .collect();
    let kind_names: Vec<&str> = KINDS.iter().map(|(_, n)| *n).collect();
    json!({
        "x-guidance": {"whitespace_flexible": false},
        "type": "object",
        "properties": {
            "tiers": {"type": "object", "properties": tiers, "required": class_names, "additionalProperties": false},
            "rules": {"type": "object", "properties": rules, "required": kind_names, "additionalProperties": false},
            "surplusPercent": int(0, 100)
        },
        "required": ["tiers", "rules", "surplusPercent"],
        "additionalProperties": false
    })
}

/// The drafting request for `model`.
///
/// # Errors
///
/// None in practice (the request is built from known parts).
pub fn request(model: &str, q: &Questionnaire) -> anyhow::Result<ChatCompletionRequest> {
    let system = "Draft a new co-operative's bylaws from its founders' answers, as JSON: a priority \
                  tier for each member class (0 is served first), the voting rule for each kind of \
                  proposal (method, quorum as a percent of members, voting period in days), and the \
                  percent of capacity that may be sold to outside customers.";
    let mut user = format!("Co-op: {}\nMember classes:\n", q.display_name);
    for c in &q.classes {
        user.push_str(&format!("- {}: {}\n", c.name, c.who));
    }
    user.push_str(&format!(
        "How we decide: {}\nWhat we may sell: {}\n",
        q.decisions.trim(),
        q.surplus.trim()
    ));
    Ok(serde_json::from_value(json!({
        "model": model,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0.7,
        "seed": 0,
        "response_format": {"type": "json_schema", "json_schema": {"name": "bylaws", "schema": schema(q)}},
    }))?)
}

/// The Cooperative manifest from the founders' answers and the model's draft.
///
/// # Errors
///
/// The draft does not parse, or misses a class or a kind (a model ignoring the schema).
pub fn assemble(q: &Questionnaire, draft: &str) -> Result<synco_crds::Cooperative, String> {
    let d: Value = serde_json::from_str(draft).map_err(|e| format!("the draft is not JSON: {e}"))?;
    let number = |v: &Value, what: &str, max: u64| {
        v.as_u64()
            .filter(|n| *n <= max)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("{what} is not a whole number up to {max}"))
    };
    let mut classes = Vec::new();
    for c in &q.classes {
        classes.push(synco_crds::MemberClass {
            name: c.name.clone(),
            tier: number(&d["tiers"][&c.name], &format!("the tier of {}", c.name), 3)?,
            voting_power_percent: None,
            description: Some(c.who.clone()),
            local_only: false,
        });
    }
    let mut defaults = Vec::new();
    for (kind, name) in KINDS {
        let rule = &d["rules"][name];
        let method = rule["method"]
            .as_str()
            .filter(|m| methods(kind).contains(m))
            .and_then(method_of)
            .ok_or_else(|| format!("the method for {name} is missing or not allowed"))?;
        defaults.push(synco_crds::VotingDefault {
            kind,
            rules: synco_crds::VotingRules {
                method,
                quorum_percent: Some(number(
                    &rule["quorumPercent"],
                    &format!("the quorum for {name}"),
                    100,
                )?),
                threshold: None,
                voting_period: Some(format!(
                    "{}d",
                    number(&rule["votingDays"], &format!("the voting days for {name}"), 30)?.max(1)
                )),
                max_score: None,
                points_per_member: None,
            },
        });
    }
    let surplus = number(&d["surplusPercent"], "the surplus percent", 100)?;
    let spec: synco_crds::CooperativeSpec = serde_json::from_value(json!({
        "displayName": q.display_name,
        "votingDefaults": defaults,
        "memberClasses": classes,
    }))
    .map_err(|e| format!("the bylaws do not read: {e}"))?;
    let mut spec = spec;
    if surplus > 0 {
        spec.surplus = Some(
            serde_json::from_value(json!({
                "maxSharePercent": surplus,
                "currency": q.currency,
                "priceFloor": {"inputPerMillion": 0, "outputPerMillion": 0},
            }))
            .map_err(|e| format!("the surplus policy does not read: {e}"))?,
        );
    }
    let mut coop = synco_crds::Cooperative::new(&q.name, spec);
    coop.metadata.namespace = Some(q.name.clone());
    Ok(coop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers() -> Questionnaire {
        Questionnaire::parse(
            "name: hillside\ndisplayName: Hillside Compute\nclasses:\n  - {name: schools, who: the valley's schools}\n  \
             - {name: shops, who: local businesses}\ndecisions: most things by majority, bylaws by two thirds\n\
             surplus: up to a fifth, to universities\n",
        )
        .unwrap()
    }

    #[test]
    fn bad_answers_are_refused_with_the_reason() {
        assert!(Questionnaire::parse("name: Hill Side\n").is_err());
        let twice =
            "name: h\ndisplayName: H\nclasses: [{name: a, who: x}, {name: a, who: y}]\ndecisions: d\n";
        assert!(
            Questionnaire::parse(twice)
                .unwrap_err()
                .to_string()
                .contains("named twice")
        );
        assert!(Questionnaire::parse("name: h\ndisplayName: H\nclasses: []\ndecisions: d\n").is_err());
        assert!(Questionnaire::parse("name: h\nextra: 1\n").is_err());
    }

    /// A draft written by hand becomes a Cooperative with the founders' names.
    #[test]
    fn a_draft_is_assembled_into_the_founders_cooperative() {
        let q = answers();
        let mut rules = serde_json::Map::new();
        for (_, name) in KINDS {
            rules.insert(
                name.to_owned(),
                json!({"method": "Majority", "quorumPercent": 20, "votingDays": 7}),
            );
        }
        rules["Bylaw"] = json!({"method": "Supermajority", "quorumPercent": 50, "votingDays": 14});
        let draft = json!({"tiers": {"schools": 0, "shops": 1}, "rules": rules, "surplusPercent": 20});
        let coop = assemble(&q, &draft.to_string()).unwrap();
        assert_eq!(coop.metadata.name.as_deref(), Some("hillside"));
        assert_eq!(coop.spec.member_classes[1].tier, 1);
        let bylaw = coop
            .spec
            .voting_defaults
            .iter()
            .find(|d| d.kind == ProposalKind::Bylaw)
            .unwrap();
        assert_eq!(bylaw.rules.method, VotingMethod::Supermajority);
        assert_eq!(bylaw.rules.voting_period.as_deref(), Some("14d"));
        assert_eq!(coop.spec.surplus.unwrap().max_share_percent, 20);
        let bad = json!({"tiers": {"schools": 0}, "rules": rules, "surplusPercent": 20});
        assert!(
            assemble(&q, &bad.to_string())
                .unwrap_err()
                .contains("tier of shops")
        );
        let mut approval = rules.clone();
        approval["Allocation"] = json!({"method": "Approval", "quorumPercent": 0, "votingDays": 1});
        let bad = json!({"tiers": {"schools": 0, "shops": 1}, "rules": approval, "surplusPercent": 0});
        assert!(assemble(&q, &bad.to_string()).unwrap_err().contains("Allocation"));
    }

    #[test]
    fn the_schema_names_every_class_and_kind() {
        let s = schema(&answers());
        assert_eq!(s["properties"]["tiers"]["required"], json!(["schools", "shops"]));
        assert_eq!(s["properties"]["rules"]["required"].as_array().unwrap().len(), 7);
        assert_eq!(
            s["properties"]["rules"]["properties"]["FreeText"]["properties"]["method"]["enum"]
                .as_array()
                .unwrap()
                .len(),
            5
        );
    }
}
