//! What a proposal changes, as the "new proposal" form shows and reads it, for every
//! kind: an allocation's floors, a bylaw change (voting rules and member classes), a
//! model to adopt, a member to admit, a surplus price.
//!
//! The page's layout follows the method the bylaws decide the kind by, as the API
//! checks it when the proposal opens:
//! - a position method (majority, supermajority, consent): one effect;
//! - an option method (approval, score, ranked choice): several options, each with an
//!   effect of its own (the winner's is applied), and optionally a "keep things as they
//!   are" option;
//! - dot voting on an allocation: floors kept beside a split, and options that name the
//!   class or member each part of the split goes to;
//! - a free-text question: options as lines of text.
//!
//! Every field is named `<prefix><key>`: the prefix is empty for the proposal's own
//! effect and `o<n>_` for option `n`. The same builders draw the fields (with the
//! co-op's current values, or what the member typed) and read them back.

use synco_crds::{
    AllocationPlan, Cooperative, Floor, FloorTarget, MemberClass, ProposalEffect, ProposalKind,
    VotingDefault, VotingMethod, VotingRules,
};

use super::forms::Form;
use crate::coop::CoopObjects;

/// The kinds of proposal, in the order the form offers them.
pub const KINDS: [ProposalKind; 7] = [
    ProposalKind::Allocation,
    ProposalKind::FreeText,
    ProposalKind::Bylaw,
    ProposalKind::ModelAdoption,
    ProposalKind::MemberAdmission,
    ProposalKind::SurplusPrice,
    ProposalKind::PatronageDistribution,
];

/// The name of a kind, as the API spells it.
#[must_use]
pub fn kind_name(kind: ProposalKind) -> &'static str {
    match kind {
        ProposalKind::Allocation => "Allocation",
        ProposalKind::Bylaw => "Bylaw",
        ProposalKind::SurplusPrice => "SurplusPrice",
        ProposalKind::ModelAdoption => "ModelAdoption",
        ProposalKind::MemberAdmission => "MemberAdmission",
        ProposalKind::FreeText => "FreeText",
        ProposalKind::PatronageDistribution => "PatronageDistribution",
    }
}

/// A kind from its name.
#[must_use]
pub fn kind_of(name: &str) -> Option<ProposalKind> {
    KINDS.into_iter().find(|k| kind_name(*k) == name)
}

const METHODS: [(VotingMethod, &str); 8] = [
    (VotingMethod::Majority, "Majority"),
    (VotingMethod::Supermajority, "Supermajority"),
    (VotingMethod::Consent, "Consent"),
    (VotingMethod::Approval, "Approval"),
    (VotingMethod::Score, "Score"),
    (VotingMethod::RankedChoice, "RankedChoice"),
    (VotingMethod::Schulze, "Schulze"),
    (VotingMethod::DotVoting, "DotVoting"),
];

/// The name of a method, as the API spells it.
#[must_use]
pub fn method_name(method: VotingMethod) -> &'static str {
    METHODS
        .iter()
        .find(|(m, _)| *m == method)
        .map_or("Majority", |(_, n)| n)
}

/// How the form lays out a proposal of one kind, given the method that decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Options as lines of text (free-text questions).
    Question,
    /// One effect, decided by a position.
    Single,
    /// Options, each with its own effect.
    Options,
    /// Dot voting splits part of capacity between options that name a class or member.
    Split,
    /// The bylaws decide this kind by a method that cannot decide it (dot voting on
    /// anything but an allocation or a question).
    Unsupported,
}

/// The layout for `kind` decided by `method`.
#[must_use]
pub fn layout(kind: ProposalKind, method: VotingMethod) -> Layout {
    match (kind, method) {
        (ProposalKind::FreeText, _) => Layout::Question,
        (_, VotingMethod::Majority | VotingMethod::Supermajority | VotingMethod::Consent) => Layout::Single,
        // The books decide a distribution's figures: members pass it or not.
        (ProposalKind::PatronageDistribution, _) => Layout::Unsupported,
        (ProposalKind::Allocation, VotingMethod::DotVoting) => Layout::Split,
        (_, VotingMethod::DotVoting) => Layout::Unsupported,
        _ => Layout::Options,
    }
}

/// One control on the form.
#[derive(Debug, Clone, Default)]
pub struct Field {
    pub id: String,
    pub name: String,
    pub label: String,
    /// `text`, `number`, `select` or `checkbox`.
    pub input: &'static str,
    pub value: String,
    /// A select's choices, as (value, label).
    pub choices: Vec<(String, String)>,
    pub checked: bool,
    pub min: String,
    pub max: String,
    pub required: bool,
    /// Counts towards an allocation's total of shares.
    pub share: bool,
}

/// A group of controls, drawn as a fieldset.
#[derive(Debug, Clone, Default)]
pub struct Group {
    pub legend: String,
    pub fields: Vec<Field>,
    /// For an allocation: the id of the total of its shares, and the total now.
    pub shares: Option<(String, u32)>,
}

/// Where the form's values come from: what the member typed, or the co-op's current
/// values.
#[derive(Clone, Copy)]
pub struct Source<'a> {
    pub objects: &'a CoopObjects,
    pub typed: Option<&'a Form>,
}

impl Source<'_> {
    /// The typed value of `name`, else `default`.
    fn value(&self, name: &str, default: impl FnOnce() -> String) -> String {
        match self.typed {
            Some(f) => f.one(name).to_owned(),
            None => default(),
        }
    }

    /// Whether a checkbox is checked: as typed, else `default`.
    fn checked(&self, name: &str, default: bool) -> bool {
        match self.typed {
            Some(f) => !f.one(name).is_empty(),
            None => default,
        }
    }

    fn coop(&self) -> Option<&Cooperative> {
        self.objects.cooperative().ok()
    }

    fn classes(&self) -> Vec<String> {
        self.coop()
            .map(|c| c.spec.member_classes.iter().map(|k| k.name.clone()).collect())
            .unwrap_or_default()
    }
}

/// Builds fields named with one prefix.
struct Builder<'a> {
    prefix: &'a str,
    source: Source<'a>,
    fields: Vec<Field>,
}

impl<'a> Builder<'a> {
    fn new(prefix: &'a str, source: Source<'a>) -> Self {
        Self {
            prefix,
            source,
            fields: Vec::new(),
        }
    }

    fn push(
        &mut self,
        id: &str,
        key: &str,
        label: impl Into<String>,
        input: &'static str,
        default: String,
    ) -> &mut Field {
        let name = format!("{}{key}", self.prefix);
        let value = self.source.value(&name, || default);
        let at = self.fields.len();
        self.fields.push(Field {
            id: format!("{}{id}", self.prefix),
            name,
            label: label.into(),
            input,
            value,
            ..Field::default()
        });
        &mut self.fields[at]
    }

    fn text(&mut self, key: &str, label: impl Into<String>, default: String) -> &mut Field {
        self.push(key, key, label, "text", default)
    }

    fn number(
        &mut self,
        key: &str,
        label: impl Into<String>,
        default: String,
        max: Option<u32>,
    ) -> &mut Field {
        let f = self.push(key, key, label, "number", default);
        f.min = "0".to_owned();
        f.max = max.map(|m| m.to_string()).unwrap_or_default();
        f
    }

    fn select(
        &mut self,
        key: &str,
        label: impl Into<String>,
        default: String,
        choices: Vec<(String, String)>,
    ) -> &mut Field {
        let f = self.push(key, key, label, "select", default);
        f.choices = choices;
        f
    }

    fn checkbox(&mut self, id: &str, key: &str, label: impl Into<String>, default: bool) -> &mut Field {
        let name = format!("{}{key}", self.prefix);
        let checked = self.source.checked(&name, default);
        let f = self.push(id, key, label, "checkbox", "on".to_owned());
        f.value = "on".to_owned();
        f.checked = checked;
        f
    }

    fn group(&mut self, legend: impl Into<String>) -> Group {
        Group {
            legend: legend.into(),
            fields: std::mem::take(&mut self.fields),
            shares: None,
        }
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn pairs<'s>(items: impl IntoIterator<Item = &'s str>) -> Vec<(String, String)> {
    items.into_iter().map(|s| (s.to_owned(), s.to_owned())).collect()
}

/// The fields of one effect of `kind`, named with `prefix`.
#[must_use]
pub fn groups(kind: ProposalKind, prefix: &str, source: Source<'_>) -> Vec<Group> {
    let mut groups = match kind {
        ProposalKind::Allocation => vec![allocation_group(
            prefix,
            source,
            "The new allocation: each class's guaranteed share of capacity, and the surplus that may be sold",
        )],
        ProposalKind::Bylaw => bylaw_groups(prefix, source),
        ProposalKind::ModelAdoption => model_groups(prefix, source),
        ProposalKind::MemberAdmission => member_groups(prefix, source),
        ProposalKind::SurplusPrice => surplus_groups(prefix, source),
        ProposalKind::FreeText => Vec::new(),
        ProposalKind::PatronageDistribution => patronage_groups(prefix, source),
    };
    if !prefix.is_empty() {
        // An option left empty is no option: none of its fields is required.
        for f in groups.iter_mut().flat_map(|g| g.fields.iter_mut()) {
            f.required = false;
        }
    }
    groups
}

/// An allocation's floors by class, its surplus cap and borrow limit; the allocation in
/// force fills them.
fn allocation_group(prefix: &str, source: Source<'_>, legend: &str) -> Group {
    let plan = source.objects.in_force().map(|a| &a.spec.plan);
    let mut b = Builder::new(prefix, source);
    for (i, class) in source.classes().iter().enumerate() {
        let share = plan
            .and_then(|p| {
                p.floors
                    .iter()
                    .find(|f| f.member_class.as_deref() == Some(class.as_str()))
            })
            .map(|f| f.share_percent.to_string())
            .unwrap_or_default();
        let f = b.push(
            &format!("floor-{}", i + 1),
            &format!("floor:{class}"),
            format!("Class {class} (%)"),
            "number",
            share,
        );
        f.min = "0".to_owned();
        f.max = "100".to_owned();
        f.share = true;
    }
    b.number(
        "surplus_cap",
        "Surplus that may be sold to customers (%)",
        opt(plan.and_then(|p| p.surplus_cap_percent)),
        Some(100),
    )
    .share = true;
    b.number(
        "borrow_limit",
        "Most a member may borrow above its floor (% of a model's capacity; empty for no limit)",
        opt(plan.and_then(|p| p.borrow_limit_percent)),
        Some(100),
    );
    let mut g = b.group(legend);
    let total = g
        .fields
        .iter()
        .filter(|f| f.share)
        .filter_map(|f| f.value.trim().parse::<u32>().ok())
        .sum();
    g.shares = Some((format!("{prefix}share-total"), total));
    g
}

/// A bylaw change: the voting rules for each kind, and the member classes. The bylaws
/// in force fill them; the change is what differs.
fn bylaw_groups(prefix: &str, source: Source<'_>) -> Vec<Group> {
    let coop = source.coop();
    let mut out = Vec::new();
    let mut methods = vec![(String::new(), "(not set: majority, no quorum, 7 days)".to_owned())];
    methods.extend(METHODS.iter().map(|(_, n)| ((*n).to_owned(), (*n).to_owned())));
    for kind in KINDS {
        let name = kind_name(kind);
        let rules = coop
            .and_then(|c| c.spec.voting_defaults.iter().find(|d| d.kind == kind))
            .map(|d| &d.rules);
        let mut b = Builder::new(prefix, source);
        b.select(
            &format!("rule-{name}-method"),
            format!("Method for {name}"),
            rules
                .map(|r| method_name(r.method).to_owned())
                .unwrap_or_default(),
            methods.clone(),
        );
        b.number(
            &format!("rule-{name}-quorum"),
            format!("Quorum for {name} (% of voting weight)"),
            opt(rules.and_then(|r| r.quorum_percent)),
            Some(100),
        );
        b.text(
            &format!("rule-{name}-threshold"),
            format!("Threshold for {name} (such as 2/3; empty for more than half)"),
            rules
                .and_then(|r| r.threshold)
                .map(|t| format!("{}/{}", t.numerator, t.denominator))
                .unwrap_or_default(),
        );
        b.text(
            &format!("rule-{name}-period"),
            format!("Voting period for {name} (such as 90s, 30m, 2h, 7d)"),
            opt(rules.and_then(|r| r.voting_period.clone())),
        );
        b.number(
            &format!("rule-{name}-max_score"),
            format!("Highest score for {name} (score voting)"),
            opt(rules.and_then(|r| r.max_score)),
            None,
        );
        b.number(
            &format!("rule-{name}-points"),
            format!("Points per member for {name} (dot voting)"),
            opt(rules.and_then(|r| r.points_per_member)),
            None,
        );
        out.push(b.group(format!("How {name} proposals are decided")));
    }
    let classes: Vec<&MemberClass> = coop
        .map(|c| c.spec.member_classes.iter().collect())
        .unwrap_or_default();
    for i in 0..=classes.len() {
        let class = classes.get(i);
        let n = i + 1;
        let mut b = Builder::new(prefix, source);
        b.text(
            &format!("class{n}-name"),
            format!("Class {n}: name"),
            opt(class.map(|c| c.name.clone())),
        );
        b.number(
            &format!("class{n}-tier"),
            format!("Class {n}: priority tier (0 is served first)"),
            opt(class.map(|c| c.tier)),
            None,
        );
        b.number(
            &format!("class{n}-power"),
            format!("Class {n}: fixed share of voting power (%; empty for one member, one vote)"),
            opt(class.and_then(|c| c.voting_power_percent)),
            Some(100),
        );
        b.text(
            &format!("class{n}-description"),
            format!("Class {n}: what it is for"),
            opt(class.and_then(|c| c.description.clone())),
        );
        let key = format!("class{n}-local-only");
        b.checkbox(
            &key,
            &key,
            format!("Class {n}: local only (its prompts are never sent to a peer co-op)"),
            class.is_some_and(|c| c.local_only),
        );
        let legend = if class.is_some() {
            format!("Member class {n} (empty its name to remove it)")
        } else {
            format!("Member class {n}: a new class (leave empty for none)")
        };
        out.push(b.group(legend));
    }
    out.push(patronage_rules_group(prefix, source));
    out.extend(peer_groups(prefix, source));
    out
}

/// The peer co-ops, one group each and one more for a new peer (the ones in force
/// filled in).
fn peer_groups(prefix: &str, source: Source<'_>) -> Vec<Group> {
    let peers: Vec<synco_crds::Peer> = source.coop().map(|c| c.spec.peers.clone()).unwrap_or_default();
    (0..=peers.len())
        .map(|i| {
            let peer = peers.get(i);
            let n = i + 1;
            let mut b = Builder::new(prefix, source);
            let key = |k: &str| format!("peer{n}-{k}");
            b.text(
                &key("name"),
                format!("Peer {n}: its co-op's name"),
                opt(peer.map(|p| p.name.clone())),
            );
            b.text(
                &key("url"),
                format!("Peer {n}: its gateway's URL (https://…)"),
                opt(peer.map(|p| p.url.clone())),
            );
            b.text(
                &key("public_key"),
                format!("Peer {n}: its public key (or a JWKS URL below)"),
                opt(peer.and_then(|p| p.public_key.clone())),
            );
            b.text(
                &key("jwks_url"),
                format!("Peer {n}: its JWKS URL"),
                opt(peer.and_then(|p| p.jwks_url.clone())),
            );
            b.text(
                &key("borrow"),
                format!("Peer {n}: models we may borrow from it (comma-separated)"),
                peer.map(|p| p.borrow.join(", ")).unwrap_or_default(),
            );
            b.text(
                &key("lend"),
                format!("Peer {n}: our models it may use (comma-separated)"),
                peer.map(|p| p.lend.join(", ")).unwrap_or_default(),
            );
            b.number(
                &key("max_lend"),
                format!("Peer {n}: the most of a lent model's capacity it may hold (%)"),
                opt(peer.map(|p| p.max_lend_percent)),
                Some(100),
            );
            b.number(
                &key("tier"),
                format!("Peer {n}: the tier its requests get here (after every member class)"),
                opt(peer.map(|p| p.tier)),
                None,
            );
            let price = peer.and_then(|p| p.terms.price.as_ref());
            b.select(
                &key("terms"),
                format!("Peer {n}: terms"),
                if price.is_some() { "price" } else { "reciprocal" }.to_owned(),
                vec![
                    (
                        "reciprocal".to_owned(),
                        "Reciprocity: tokens repaid in tokens".to_owned(),
                    ),
                    ("price".to_owned(), "A price per million tokens".to_owned()),
                ],
            );
            b.number(
                &key("allowance"),
                format!("Peer {n}: reciprocity: tokens it may borrow beyond what it lent, a month"),
                opt(peer
                    .and_then(|p| p.terms.reciprocal.as_ref())
                    .map(|r| r.allowance_tokens)),
                None,
            );
            b.text(
                &key("currency"),
                format!("Peer {n}: price: currency (such as EUR)"),
                opt(price.map(|p| p.currency.clone())),
            );
            b.number(
                &key("input"),
                format!("Peer {n}: price: minor units per million input tokens"),
                opt(price.map(|p| p.price.input_per_million)),
                None,
            );
            b.number(
                &key("output"),
                format!("Peer {n}: price: minor units per million output tokens"),
                opt(price.map(|p| p.price.output_per_million)),
                None,
            );
            b.group(if peer.is_some() {
                format!("Peer co-op {n} (empty its name to remove it)")
            } else {
                format!("Peer co-op {n}: a new peer (leave empty for none)")
            })
        })
        .collect()
}

/// The peers the bylaw form describes; `None` when the form has no peer fields.
fn peers_of(form: &Form, prefix: &str) -> Result<Option<Vec<synco_crds::Peer>>, String> {
    if !form.has(&format!("{prefix}peer1-name")) {
        return Ok(None);
    }
    let field = |n: usize, key: &str| form.one(&format!("{prefix}peer{n}-{key}")).trim().to_owned();
    let list = |n: usize, key: &str| -> Vec<String> {
        field(n, key)
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(ToOwned::to_owned)
            .collect()
    };
    let mut peers = Vec::new();
    for n in 1.. {
        if !form.has(&format!("{prefix}peer{n}-name")) {
            break;
        }
        let name = field(n, "name");
        if name.is_empty() {
            continue;
        }
        let number = |key: &str| maybe(form, &format!("{prefix}peer{n}-{key}"));
        let some = |s: String| (!s.is_empty()).then_some(s);
        let terms = match field(n, "terms").as_str() {
            "price" => serde_json::json!({"price": {
                "currency": field(n, "currency"),
                "inputPerMillion": number("input")?.unwrap_or(0),
                "outputPerMillion": number("output")?.unwrap_or(0),
            }}),
            _ => serde_json::json!({"reciprocal": {"allowanceTokens": number("allowance")?.unwrap_or(0)}}),
        };
        let peer = serde_json::json!({
            "name": name,
            "url": field(n, "url"),
            "publicKey": some(field(n, "public_key")),
            "jwksUrl": some(field(n, "jwks_url")),
            "borrow": list(n, "borrow"),
            "lend": list(n, "lend"),
            "maxLendPercent": number("max_lend")?.unwrap_or(0),
            "tier": number("tier")?.ok_or_else(|| format!("peer {name} needs a tier"))?,
            "terms": terms,
        });
        let peer: synco_crds::Peer = serde_json::from_value(peer).map_err(|e| format!("peer {name}: {e}"))?;
        if peer.public_key.is_some() == peer.jwks_url.is_some() {
            return Err(format!(
                "peer {}: give exactly one of its public key and its JWKS URL",
                peer.name
            ));
        }
        if !peer.url.starts_with("http://") && !peer.url.starts_with("https://") {
            return Err(format!("peer {}: its URL starts with https://", peer.name));
        }
        peers.push(peer);
    }
    Ok(Some(peers))
}

/// The bylaws' patronage rules, the ones in force filled in.
fn patronage_rules_group(prefix: &str, source: Source<'_>) -> Group {
    let now = source.coop().and_then(|c| c.spec.patronage.as_ref());
    let mut b = Builder::new(prefix, source);
    b.select(
        "patronage-basis",
        "Refunds in proportion to",
        now.map(|p| format!("{:?}", p.basis)).unwrap_or_default(),
        vec![
            (String::new(), "(not set: no patronage refunds yet)".to_owned()),
            ("Usage".to_owned(), "Usage, at the rate card".to_owned()),
            ("Contribution".to_owned(), "GPU-hours contributed".to_owned()),
            ("Mix".to_owned(), "A mix of the two".to_owned()),
        ],
    );
    b.number(
        "patronage-usage_parts",
        "Mix: parts for usage",
        opt(now.map(|p| p.usage_parts)),
        Some(100),
    );
    b.number(
        "patronage-contribution_parts",
        "Mix: parts for contribution",
        opt(now.map(|p| p.contribution_parts)),
        Some(100),
    );
    b.number(
        "patronage-cash",
        "Share of each refund paid in cash (%, at least 20)",
        opt(now.map(|p| p.cash_percent)),
        Some(100),
    );
    b.select(
        "patronage-surplus_to",
        "Income from customers goes to",
        now.map(|p| format!("{:?}", p.surplus_to)).unwrap_or_default(),
        pairs(["Pool", "Reserve"]),
    );
    b.number(
        "patronage-floor_per_gpu",
        "Floor raised per contributed GPU (points; empty for none)",
        opt(now.and_then(|p| p.floor_percent_per_gpu)),
        Some(100),
    );
    b.number(
        "patronage-max_floor",
        "Most a member's floor rises by contributing (points)",
        opt(now.and_then(|p| p.max_contribution_floor_percent)),
        Some(100),
    );
    b.group("Patronage refunds")
}

/// A model to serve: its name, weights, engine, pool, capacity and who may call it.
fn model_groups(prefix: &str, source: Source<'_>) -> Vec<Group> {
    let mut b = Builder::new(prefix, source);
    b.text(
        "model_name",
        "Name (lower-case letters, digits and -)",
        String::new(),
    )
    .required = true;
    b.text(
        "model_served_name",
        "The model id callers use (empty for the name)",
        String::new(),
    );
    b.select(
        "model_source_kind",
        "Where the weights come from",
        "hub".to_owned(),
        vec![
            ("hub".to_owned(), "A Hugging Face hub id".to_owned()),
            ("path".to_owned(), "A folder on the serving host".to_owned()),
            ("none".to_owned(), "None (an external engine)".to_owned()),
        ],
    );
    b.text(
        "model_source",
        "The hub id or folder (such as Qwen/Qwen2.5-0.5B-Instruct)",
        String::new(),
    );
    b.select(
        "model_engine",
        "Engine",
        "Mistralrs".to_owned(),
        vec![
            (
                "Mistralrs".to_owned(),
                "mistral.rs pods on a compute pool".to_owned(),
            ),
            (
                "Embedded".to_owned(),
                "mistral.rs inside the gateway (small models)".to_owned(),
            ),
            (
                "External".to_owned(),
                "An OpenAI-compatible URL (such as a peer co-op)".to_owned(),
            ),
        ],
    );
    b.text(
        "model_url",
        "External engine's base URL (https://…/v1)",
        String::new(),
    );
    let mut pools = vec![(String::new(), "(none)".to_owned())];
    pools.extend(pairs(
        source
            .objects
            .pools
            .iter()
            .filter_map(|p| p.metadata.name.as_deref()),
    ));
    b.select("model_pool", "Compute pool", String::new(), pools);
    b.number("model_replicas", "Replicas", "1".to_owned(), None);
    b.number("model_gpus", "GPUs per replica", "0".to_owned(), None);
    b.number(
        "model_tps",
        "Measured tokens per second of one replica",
        "0".to_owned(),
        None,
    );
    b.number(
        "model_concurrency",
        "Requests one replica serves at once",
        "32".to_owned(),
        None,
    );
    let weights = b.group("The model");
    let mut b = Builder::new(prefix, source);
    for (i, class) in source.classes().iter().enumerate() {
        b.checkbox(
            &format!("model_access-{}", i + 1),
            &format!("model_access:{class}"),
            format!("Class {class} may call it"),
            false,
        );
    }
    b.checkbox(
        "model_customers",
        "model_customers",
        "Customers may buy its surplus",
        false,
    );
    let access = b.group("Who may call it (no class ticked: every class)");
    vec![weights, access]
}

fn member_groups(prefix: &str, source: Source<'_>) -> Vec<Group> {
    let mut b = Builder::new(prefix, source);
    b.text(
        "member_name",
        "Name (lower-case letters, digits and -)",
        String::new(),
    )
    .required = true;
    b.text("member_display_name", "Display name", String::new())
        .required = true;
    b.select(
        "member_class",
        "Class",
        String::new(),
        pairs(source.classes().iter().map(String::as_str)),
    );
    b.text(
        "member_identity",
        "Identity (the subject of its sign-in tokens)",
        String::new(),
    )
    .required = true;
    b.select(
        "member_organisation",
        "Kind of organisation",
        "Household".to_owned(),
        [
            ("Household", "household"),
            ("WorkerCoop", "worker co-op"),
            ("School", "school"),
            ("LocalBusiness", "local business"),
            ("NonProfit", "non-profit"),
            ("Other", "other"),
        ]
        .into_iter()
        .map(|(v, l)| (v.to_owned(), l.to_owned()))
        .collect(),
    );
    b.text("member_contact", "Contact (optional)", String::new());
    vec![b.group("The member to admit")]
}

fn surplus_groups(prefix: &str, source: Source<'_>) -> Vec<Group> {
    let now = source.coop().and_then(|c| c.spec.surplus.as_ref());
    let mut b = Builder::new(prefix, source);
    b.number(
        "max_share",
        "Most of the capacity that may be sold (%)",
        opt(now.map(|s| s.max_share_percent)),
        Some(100),
    )
    .required = true;
    b.text(
        "currency",
        "Currency (ISO 4217, such as EUR)",
        opt(now.map(|s| s.currency.clone())),
    )
    .required = true;
    b.number(
        "price_input",
        "Lowest price per million input tokens (minor units, such as cents)",
        opt(now.map(|s| s.price_floor.input_per_million)),
        None,
    )
    .required = true;
    b.number(
        "price_output",
        "Lowest price per million output tokens (minor units)",
        opt(now.map(|s| s.price_floor.output_per_million)),
        None,
    )
    .required = true;
    vec![b.group("Selling surplus capacity to customers")]
}

/// The month whose refunds to distribute: the books work out the figures from its
/// entries under the bylaws' patronage rules (the proposal page shows them).
fn patronage_groups(prefix: &str, source: Source<'_>) -> Vec<Group> {
    let last_month = {
        let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
        let first = now.first_of_month();
        first
            .yesterday()
            .map(|d| format!("{:04}-{:02}", d.year(), d.month()))
            .unwrap_or_default()
    };
    let mut b = Builder::new(prefix, source);
    b.text("patronage_period", "The closed month (YYYY-MM)", last_month)
        .required = true;
    vec![b.group("Patronage refunds of a closed month, as the books work them out")]
}

/// The split fields of a dot-voted allocation: the share split, and for option `n` the
/// class or member its part goes to.
#[must_use]
pub fn split_target(prefix: &str, source: Source<'_>) -> Vec<Group> {
    let mut choices: Vec<(String, String)> = source
        .classes()
        .into_iter()
        .map(|c| (format!("class:{c}"), format!("class {c}")))
        .collect();
    choices.extend(
        source
            .objects
            .members
            .iter()
            .filter_map(|m| m.metadata.name.as_deref())
            .map(|m| (format!("member:{m}"), format!("member {m}"))),
    );
    let mut b = Builder::new(prefix, source);
    b.select("target", "Its part of the split goes to", String::new(), choices);
    vec![b.group("Who it is for")]
}

// ---- reading the fields back ----

fn whole(name: &str, value: &str) -> Result<u32, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("{value:?} for {name} is not a whole number"))
}

/// A whole number, or nothing when empty.
fn maybe(form: &Form, name: &str) -> Result<Option<u32>, String> {
    match form.one(name).trim() {
        "" => Ok(None),
        v => whole(name, v).map(Some),
    }
}

fn effect_from(value: serde_json::Value) -> Result<ProposalEffect, String> {
    serde_json::from_value(value).map_err(|e| e.to_string())
}

/// The effect of `kind` the fields named with `prefix` describe.
///
/// # Errors
///
/// A field does not read, or a bylaw change changes nothing.
pub fn read(
    kind: ProposalKind,
    form: &Form,
    prefix: &str,
    coop: Option<&Cooperative>,
) -> Result<Option<ProposalEffect>, String> {
    let field = |key: &str| form.one(&format!("{prefix}{key}")).trim().to_owned();
    Ok(Some(match kind {
        // The service works the figures out from the books for the month typed.
        ProposalKind::FreeText | ProposalKind::PatronageDistribution => return Ok(None),
        ProposalKind::Allocation => {
            let mut floors = Vec::new();
            for (class, v) in form.prefixed(&format!("{prefix}floor:")) {
                let share = whole(class, v)?;
                if share > 0 {
                    floors.push(Floor {
                        member_class: Some(class.to_owned()),
                        member: None,
                        share_percent: share,
                    });
                }
            }
            ProposalEffect {
                allocation: Some(AllocationPlan {
                    floors,
                    surplus_cap_percent: maybe(form, &format!("{prefix}surplus_cap"))?,
                    borrow_limit_percent: maybe(form, &format!("{prefix}borrow_limit"))?,
                }),
                bylaw: None,
                surplus_price: None,
                model_adoption: None,
                member_admission: None,
                patronage_distribution: None,
            }
        }
        ProposalKind::MemberAdmission => {
            let mut spec = serde_json::json!({
                "displayName": field("member_display_name"),
                "class": field("member_class"),
                "identity": field("member_identity"),
            });
            if !field("member_organisation").is_empty() {
                spec["organisation"] = field("member_organisation").into();
            }
            if !field("member_contact").is_empty() {
                spec["contact"] = field("member_contact").into();
            }
            effect_from(serde_json::json!({"memberAdmission": {"name": field("member_name"), "spec": spec}}))?
        }
        ProposalKind::SurplusPrice => {
            let minor = |key: &str| -> Result<i64, String> {
                let v = field(key);
                v.parse()
                    .map_err(|_| format!("{v:?} for {key} is not a whole number of minor units"))
            };
            effect_from(serde_json::json!({"surplusPrice": {
                "maxSharePercent": whole("max_share", &field("max_share"))?,
                "currency": field("currency"),
                "priceFloor": {"inputPerMillion": minor("price_input")?, "outputPerMillion": minor("price_output")?},
            }}))?
        }
        ProposalKind::ModelAdoption => model(form, prefix)?,
        ProposalKind::Bylaw => bylaw(form, prefix, coop)?,
    }))
}

fn model(form: &Form, prefix: &str) -> Result<ProposalEffect, String> {
    let field = |key: &str| form.one(&format!("{prefix}{key}")).trim().to_owned();
    let number = |key: &str, default: u32| -> Result<u32, String> {
        maybe(form, &format!("{prefix}{key}")).map(|v| v.unwrap_or(default))
    };
    let mut spec = serde_json::json!({
        "engine": {"kind": field("model_engine")},
        "replicas": number("model_replicas", 1)?,
        "gpusPerReplica": number("model_gpus", 0)?,
        "tokensPerSecondPerReplica": number("model_tps", 0)?,
        "concurrentRequestsPerReplica": number("model_concurrency", 32)?,
        "access": {
            "classes": form.prefixed(&format!("{prefix}model_access:")).map(|(c, _)| c).collect::<Vec<_>>(),
            "customers": !field("model_customers").is_empty(),
        },
    });
    match (field("model_source_kind").as_str(), field("model_source")) {
        ("none", _) => {}
        (_, s) if s.is_empty() => return Err("say where the model's weights come from".to_owned()),
        ("path", s) => spec["source"] = serde_json::json!({"path": s}),
        (_, s) => spec["source"] = serde_json::json!({"hub": s}),
    }
    for (key, to) in [("model_served_name", "servedName"), ("model_pool", "pool")] {
        if !field(key).is_empty() {
            spec[to] = field(key).into();
        }
    }
    if !field("model_url").is_empty() {
        spec["engine"]["url"] = field("model_url").into();
    }
    effect_from(serde_json::json!({"modelAdoption": {"name": field("model_name"), "spec": spec}}))
}

fn bylaw(form: &Form, prefix: &str, coop: Option<&Cooperative>) -> Result<ProposalEffect, String> {
    let field = |key: &str| form.one(&format!("{prefix}{key}")).trim().to_owned();
    let number = |key: &str| maybe(form, &format!("{prefix}{key}"));
    let mut defaults = Vec::new();
    for kind in KINDS {
        let name = kind_name(kind);
        let method = field(&format!("rule-{name}-method"));
        if method.is_empty() {
            continue;
        }
        let method = METHODS
            .iter()
            .find(|(_, n)| *n == method)
            .map(|(m, _)| *m)
            .ok_or_else(|| format!("{method:?} is not a voting method"))?;
        let threshold = match field(&format!("rule-{name}-threshold")).as_str() {
            "" => None,
            t => {
                let (n, d) = t.split_once('/').ok_or_else(|| {
                    format!("the threshold for {name} is a fraction such as 2/3, not {t:?}")
                })?;
                Some(synco_crds::Fraction {
                    numerator: whole("a threshold", n)?,
                    denominator: whole("a threshold", d)?,
                })
            }
        };
        let period = field(&format!("rule-{name}-period"));
        defaults.push(VotingDefault {
            kind,
            rules: VotingRules {
                method,
                quorum_percent: number(&format!("rule-{name}-quorum"))?,
                threshold,
                voting_period: (!period.is_empty()).then_some(period),
                max_score: number(&format!("rule-{name}-max_score"))?,
                points_per_member: number(&format!("rule-{name}-points"))?,
            },
        });
    }
    let mut classes = Vec::new();
    for n in 1.. {
        let key = format!("{prefix}class{n}-name");
        if !form.has(&key) {
            break;
        }
        let name = form.one(&key).trim().to_owned();
        if name.is_empty() {
            continue;
        }
        let description = field(&format!("class{n}-description"));
        classes.push(MemberClass {
            name,
            tier: number(&format!("class{n}-tier"))?.unwrap_or(0),
            voting_power_percent: number(&format!("class{n}-power"))?,
            description: (!description.is_empty()).then_some(description),
            local_only: !field(&format!("class{n}-local-only")).is_empty(),
        });
    }
    // The order of the rules does not matter; the order of the classes is the bylaws'.
    defaults.sort_by_key(|d| d.kind);
    let now = coop.map(|c| {
        let mut rules = c.spec.voting_defaults.clone();
        rules.sort_by_key(|d| d.kind);
        (rules, &c.spec.member_classes)
    });
    let voting_defaults = (now.as_ref().map(|n| &n.0) != Some(&defaults)).then_some(defaults);
    let member_classes = (now.as_ref().map(|n| n.1) != Some(&classes)).then_some(classes);
    let patronage = match field("patronage-basis").as_str() {
        "" => None,
        basis => {
            let rules = serde_json::json!({
                "basis": basis,
                "usageParts": number("patronage-usage_parts")?.unwrap_or(1),
                "contributionParts": number("patronage-contribution_parts")?.unwrap_or(1),
                "cashPercent": number("patronage-cash")?
                    .ok_or("the cash share of a refund is needed (20% or more)")?,
                "surplusTo": field("patronage-surplus_to"),
                "floorPercentPerGpu": number("patronage-floor_per_gpu")?,
                "maxContributionFloorPercent": number("patronage-max_floor")?,
            });
            let rules: synco_crds::PatronageBylaws =
                serde_json::from_value(rules).map_err(|e| format!("the patronage rules: {e}"))?;
            (coop.and_then(|c| c.spec.patronage.as_ref()) != Some(&rules)).then_some(rules)
        }
    };
    let peers = peers_of(form, prefix)?.filter(|peers| Some(peers) != coop.map(|c| &c.spec.peers));
    if voting_defaults.is_none() && member_classes.is_none() && patronage.is_none() && peers.is_none() {
        return Err(
            "this bylaw change changes nothing: edit the voting rules, the member classes, the patronage rules or the peers"
                .to_owned(),
        );
    }
    effect_from(serde_json::json!({"bylaw": {
        "votingDefaults": voting_defaults,
        "memberClasses": member_classes,
        "patronage": patronage,
        "peers": peers,
    }}))
}

/// The option `n`'s part of a split: the class or member its target field names.
///
/// # Errors
///
/// No target, or not one the form offers.
pub fn target(form: &Form, prefix: &str) -> Result<FloorTarget, String> {
    let v = form.one(&format!("{prefix}target")).trim();
    match v.split_once(':') {
        Some(("class", c)) if !c.is_empty() => Ok(FloorTarget {
            member_class: Some(c.to_owned()),
            member: None,
        }),
        Some(("member", m)) if !m.is_empty() => Ok(FloorTarget {
            member_class: None,
            member: Some(m.to_owned()),
        }),
        _ => Err(format!("{v:?} names neither a class nor a member")),
    }
}
