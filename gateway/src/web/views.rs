//! What each page shows, prepared for its template (askama escapes every value it
//! writes into HTML; only the server-drawn SVG charts are written as they are).

use askama::Template;
use synco_crds::{ProposalKind, ProposalPhase, VotingMethod};

use super::charts;
use super::effects::{self, Field, Group, Layout, Source};
use super::forms::{self, Form};
use super::session::Session;
use crate::coop::CoopObjects;
use crate::governance::views::{CommentView, CoopView, DelegationView, ProposalView};

/// What every signed-in page has: who, and the token its forms carry.
#[derive(Debug)]
pub struct Shell {
    pub member: String,
    pub csrf: String,
}

impl Shell {
    fn of(session: &Session) -> Self {
        Self {
            member: session.member.clone(),
            csrf: session.csrf.clone(),
        }
    }
}

fn phase(p: ProposalPhase) -> String {
    format!("{p:?}")
}

fn method_name(m: VotingMethod) -> &'static str {
    match m {
        VotingMethod::Majority => "Majority",
        VotingMethod::Supermajority => "Supermajority",
        VotingMethod::Consent => "Consent",
        VotingMethod::Approval => "Approval",
        VotingMethod::Score => "Score",
        VotingMethod::RankedChoice => "Ranked choice (instant runoff)",
        VotingMethod::Schulze => "Ranked choice (Schulze: strongest paths)",
        VotingMethod::DotVoting => "Dot voting",
    }
}

fn time(t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> String {
    t.map(|t| t.0.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

#[derive(Template)]
#[template(path = "sign_in.html")]
pub struct SignIn {
    pub message: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub status: u16,
    pub reason: &'a str,
    pub message: &'a str,
    pub back: &'a str,
}

/// One line of the proposals page.
#[derive(Debug)]
pub struct Row {
    pub name: String,
    pub title: String,
    pub kind: String,
    pub phase: String,
    pub closes: String,
    pub turnout: String,
    pub quorum: String,
}

#[derive(Template)]
#[template(path = "proposals.html")]
pub struct Proposals {
    pub shell: Shell,
    pub rows: Vec<Row>,
}

impl Proposals {
    pub fn new(session: &Session, all: &[ProposalView]) -> Self {
        let rows = all
            .iter()
            .map(|p| Row {
                name: p.name.clone(),
                title: p.spec.title.clone(),
                kind: format!("{:?}", p.spec.kind),
                phase: phase(p.status.phase),
                closes: time(p.status.closes_at.as_ref()),
                turnout: p
                    .status
                    .turnout_percent
                    .clone()
                    .map(|t| format!("{t}%"))
                    .unwrap_or_else(|| {
                        let electorate = p.status.electorate.len();
                        if electorate == 0 {
                            String::new()
                        } else {
                            format!("{} of {electorate} ballots", p.ballots_cast)
                        }
                    }),
                quorum: p
                    .status
                    .rules
                    .as_ref()
                    .and_then(|r| r.quorum_percent)
                    .map(|q| format!("{q}%"))
                    .unwrap_or_default(),
            })
            .collect();
        Self {
            shell: Shell::of(session),
            rows,
        }
    }
}

/// A comment, indented under the one it replies to.
#[derive(Debug)]
pub struct Comment {
    pub id: i64,
    pub member: String,
    pub body: String,
    pub at: String,
    pub depth: usize,
    pub reply_to: Option<i64>,
}

/// One count of the result.
#[derive(Debug)]
pub struct Count {
    pub label: String,
    pub count: String,
    pub share: String,
}

/// One instant-runoff round, as a table row.
#[derive(Debug)]
pub struct RoundRow {
    pub number: usize,
    pub counts: String,
    pub exhausted: String,
    pub outcome: String,
}

/// A decided proposal's result.
#[derive(Debug)]
pub struct Outcome {
    pub counts: Vec<Count>,
    pub turnout: String,
    pub quorum: String,
    pub quorum_met: bool,
    pub rule: String,
    pub winner: String,
    pub blocked_by: Vec<String>,
    pub stood_aside: Vec<String>,
    pub set_aside: Vec<(String, String)>,
    pub delegations: Vec<(String, String)>,
    pub ties: Vec<String>,
    pub fingerprint: String,
    pub rounds: Vec<RoundRow>,
    pub rounds_svg: Option<String>,
    pub applied_to: String,
}

#[derive(Template)]
#[template(path = "proposal.html")]
pub struct ProposalPage {
    pub shell: Shell,
    pub name: String,
    pub title: String,
    pub body: String,
    pub kind: String,
    pub proposer: String,
    pub phase: String,
    pub method: String,
    /// `position`, `consent`, `approval`, `score`, `ranking` or `points`.
    pub ballot: &'static str,
    pub open: bool,
    pub opens: String,
    pub closes: String,
    pub options: Vec<String>,
    /// Each option and what it changes if it wins (or the part of a split it names).
    pub option_changes: Vec<(String, String)>,
    pub ranks: Vec<usize>,
    pub max_score: u32,
    pub points: u32,
    pub quorum: String,
    pub ballots: u64,
    pub electorate: usize,
    pub in_electorate: bool,
    pub can_withdraw: bool,
    pub effect: String,
    /// A PatronageDistribution's refunds.
    pub distribution: Option<synco_crds::PatronageDistribution>,
    pub comments: Vec<Comment>,
    pub receipt: Option<String>,
    pub outcome: Option<Outcome>,
    /// The assistant's latest summary of the discussion (AI-written, cited).
    pub summary: Option<crate::governance::assistant::Summary>,
    /// Whether the bylaws name an assistant model (then members may ask for a summary).
    pub assistant: bool,
    /// The latest common-ground round on the discussion.
    pub common_ground: Option<crate::governance::common_ground::RoundView>,
}

fn threaded(comments: Vec<CommentView>) -> Vec<Comment> {
    fn walk(all: &[CommentView], parent: Option<i64>, depth: usize, out: &mut Vec<Comment>) {
        for c in all.iter().filter(|c| c.reply_to == parent) {
            out.push(Comment {
                id: c.id,
                member: c.member.clone(),
                body: c.body.clone(),
                at: c.created_at.clone(),
                depth: depth.min(4),
                reply_to: c.reply_to,
            });
            walk(all, Some(c.id), depth + 1, out);
        }
    }
    let mut out = Vec::with_capacity(comments.len());
    walk(&comments, None, 0, &mut out);
    out
}

impl ProposalPage {
    /// Signed minor units as a sum with two decimals.
    pub fn money_of(&self, minor: &i64) -> String {
        signed_money(*minor)
    }

    pub fn new(
        session: &Session,
        p: &ProposalView,
        comments: Vec<CommentView>,
        receipt: Option<String>,
    ) -> Self {
        let rules = p.status.rules.as_ref();
        let method = rules.map(|r| r.method);
        let ballot = match method {
            Some(VotingMethod::Consent) => "consent",
            Some(VotingMethod::Approval) => "approval",
            Some(VotingMethod::Score) => "score",
            Some(VotingMethod::RankedChoice | VotingMethod::Schulze) => "ranking",
            Some(VotingMethod::DotVoting) => "points",
            _ => "position",
        };
        let options: Vec<String> = p.spec.options.iter().map(|o| o.name.clone()).collect();
        let open = p.status.phase == ProposalPhase::Open;
        let decided = matches!(
            p.status.phase,
            ProposalPhase::Passed
                | ProposalPhase::Rejected
                | ProposalPhase::NoQuorum
                | ProposalPhase::Applied
        );
        let me = &session.member;
        Self {
            shell: Shell::of(session),
            name: p.name.clone(),
            title: p.spec.title.clone(),
            body: p.spec.body.clone(),
            kind: format!("{:?}", p.spec.kind),
            proposer: p.spec.proposer.clone(),
            phase: phase(p.status.phase),
            method: method.map(method_name).unwrap_or_default().to_owned(),
            ballot,
            open,
            opens: time(p.status.opens_at.as_ref()),
            closes: time(p.status.closes_at.as_ref()),
            ranks: (1..=options.len()).collect(),
            option_changes: p
                .spec
                .options
                .iter()
                .map(|o| {
                    let change = match (&o.effect, &o.floor) {
                        (Some(e), _) => serde_yaml_ng::to_string(e).unwrap_or_default(),
                        (None, Some(f)) => match (&f.member_class, &f.member) {
                            (Some(c), _) => format!("its part of the split goes to class {c}"),
                            (None, Some(m)) => format!("its part of the split goes to member {m}"),
                            (None, None) => String::new(),
                        },
                        (None, None) => String::new(),
                    };
                    (o.name.clone(), change)
                })
                .collect(),
            options: options.clone(),
            max_score: rules
                .and_then(|r| r.max_score)
                .unwrap_or(synco_policies::crd::proposal::DEFAULT_MAX_SCORE),
            points: rules
                .and_then(|r| r.points_per_member)
                .unwrap_or(synco_policies::crd::proposal::DEFAULT_POINTS_PER_MEMBER),
            quorum: rules
                .and_then(|r| r.quorum_percent)
                .map(|q| format!("{q}%"))
                .unwrap_or_default(),
            ballots: p.ballots_cast,
            electorate: p.status.electorate.len(),
            in_electorate: p.status.electorate.iter().any(|e| &e.member == me),
            can_withdraw: open && &p.spec.proposer == me && p.ballots_cast == 0,
            effect: p
                .spec
                .effect
                .as_ref()
                .and_then(|e| serde_yaml_ng::to_string(e).ok())
                .unwrap_or_default(),
            distribution: p
                .spec
                .effect
                .as_ref()
                .and_then(|e| e.patronage_distribution.clone()),
            comments: threaded(comments),
            receipt: receipt.filter(|r| r.len() == 64 && r.bytes().all(|b| b.is_ascii_hexdigit())),
            outcome: decided.then(|| outcome(p, &options)),
            summary: None,
            assistant: false,
            common_ground: None,
        }
    }

    /// The positions a member may give a common-ground statement (1 to the count).
    pub fn cg_positions(&self) -> Vec<usize> {
        (1..=self.common_ground.as_ref().map_or(0, |r| r.candidates.len())).collect()
    }

    /// The position the member gave statement `number`, or 0 when unranked.
    pub fn cg_position_of(&self, number: &u32) -> usize {
        self.common_ground
            .as_ref()
            .and_then(|r| r.my_ranking.as_ref())
            .and_then(|ranking| ranking.iter().position(|n| n == number))
            .map_or(0, |i| i + 1)
    }

    /// Whether statement `number` is the one the members' ranking chose.
    pub fn cg_chosen(&self, number: &u32) -> bool {
        self.common_ground.as_ref().and_then(|r| r.chosen) == Some(*number)
    }

    /// The common-ground round's stage, or "" without a round.
    pub fn cg_stage(&self) -> &'static str {
        use crate::governance::common_ground::Stage;
        match self.common_ground.as_ref().map(|r| r.stage) {
            None => "",
            Some(Stage::Ranking) => "Ranking",
            Some(Stage::Critique) => "Critique",
            Some(Stage::Revised) => "Revised",
        }
    }

    /// Whether the member started the common-ground round (and so moves it on).
    pub fn cg_convener(&self) -> bool {
        self.common_ground
            .as_ref()
            .is_some_and(|r| r.convener == self.shell.member)
    }

    /// The common-ground draft's options, one per line (for the new-proposal form).
    pub fn cg_draft_options(&self) -> String {
        self.common_ground
            .as_ref()
            .and_then(|r| r.proposal_draft.as_ref())
            .and_then(|d| d["options"].as_array())
            .map(|o| {
                o.iter()
                    .filter_map(|o| o["name"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }

    /// A text field of the common-ground draft.
    pub fn cg_draft(&self, field: &str) -> String {
        self.common_ground
            .as_ref()
            .and_then(|r| r.proposal_draft.as_ref())
            .and_then(|d| d[field].as_str())
            .unwrap_or_default()
            .to_owned()
    }
}

/// A proposal the assistant drafted, for the member to review before creating it.
#[derive(Template)]
#[template(path = "draft.html")]
pub struct DraftPage {
    pub shell: Shell,
    pub draft: crate::governance::assistant::Draft,
    /// The drafted proposal as YAML, to read.
    pub readable: String,
    /// The drafted proposal as JSON, sent back when the member creates it.
    pub json: String,
}

impl DraftPage {
    pub fn new(session: &Session, draft: crate::governance::assistant::Draft) -> Self {
        let (readable, json) = draft
            .proposal
            .as_ref()
            .map(|p| {
                (
                    serde_yaml_ng::to_string(p).unwrap_or_default(),
                    serde_json::to_string(p).unwrap_or_default(),
                )
            })
            .unwrap_or_default();
        Self {
            shell: Shell::of(session),
            draft,
            readable,
            json,
        }
    }
}

fn outcome(p: &ProposalView, options: &[String]) -> Outcome {
    let s = &p.status;
    let tally = s.tally.clone().unwrap_or_default();
    let mut counts = Vec::new();
    for (label, v) in [
        ("Yes", &tally.yes),
        ("No", &tally.no),
        ("Abstain", &tally.abstain),
        ("Block", &tally.block),
        ("Stand aside", &tally.stand_aside),
    ] {
        if let Some(v) = v {
            counts.push(Count {
                label: label.to_owned(),
                count: v.clone(),
                share: String::new(),
            });
        }
    }
    counts.extend(tally.options.iter().map(|o| {
        Count {
            label: o.option.clone(),
            count: o.count.clone(),
            share: o
                .share_percent
                .clone()
                .map(|s| format!("{s}%"))
                .unwrap_or_default(),
        }
    }));
    let rounds = tally
        .rounds
        .iter()
        .enumerate()
        .map(|(i, r)| RoundRow {
            number: i + 1,
            counts: r
                .counts
                .iter()
                .map(|c| format!("{} {}", c.option, c.count))
                .collect::<Vec<_>>()
                .join(", "),
            exhausted: r.exhausted.clone().unwrap_or_default(),
            outcome: match (&r.elected, &r.eliminated) {
                (Some(e), _) => format!("{e} elected"),
                (None, Some(e)) => format!("{e} eliminated"),
                _ => String::new(),
            },
        })
        .collect();
    Outcome {
        counts,
        turnout: s
            .turnout_percent
            .clone()
            .map(|t| format!("{t}%"))
            .unwrap_or_default(),
        quorum: s
            .rules
            .as_ref()
            .and_then(|r| r.quorum_percent)
            .map(|q| format!("{q}%"))
            .unwrap_or_default(),
        quorum_met: s.quorum_met.unwrap_or(false),
        rule: s.rule.clone().unwrap_or_default(),
        winner: s.winner.clone().unwrap_or_default(),
        blocked_by: tally.blocked_by.clone(),
        stood_aside: tally.stood_aside.clone(),
        set_aside: s
            .ignored_votes
            .iter()
            .map(|v| (v.member.clone(), v.reason.clone()))
            .collect(),
        delegations: s
            .delegations_used
            .iter()
            .map(|d| (d.from.clone(), d.to.clone()))
            .collect(),
        ties: s
            .ties
            .iter()
            .map(|t| {
                let round = t.round.map(|r| format!("round {r}: ")).unwrap_or_default();
                format!("{round}{} tied; {}", t.tied.join(", "), t.resolution)
            })
            .collect(),
        fingerprint: s.fingerprint.clone().unwrap_or_default(),
        rounds_svg: charts::rounds(options, &tally.rounds),
        rounds,
        applied_to: s.applied_to.clone().unwrap_or_default(),
    }
}

/// One option of a proposal being written: its name and what it changes.
pub struct OptionBlock {
    pub n: usize,
    pub name: Field,
    pub groups: Vec<Group>,
}

#[derive(Template)]
#[template(path = "new.html")]
pub struct NewProposal {
    pub shell: Shell,
    pub kind: String,
    /// Each kind the form offers, and whether it is the one chosen.
    pub kinds: Vec<(&'static str, bool)>,
    /// The method the bylaws decide the kind by.
    pub method: &'static str,
    /// `question`, `single`, `options`, `split` or `unsupported` (see [`Layout`]).
    pub layout: &'static str,
    pub title: String,
    pub body: String,
    /// A question's options, one per line.
    pub options: String,
    /// The proposal's own effect (one effect, or the floors kept beside a split).
    pub effect: Vec<Group>,
    pub option_blocks: Vec<OptionBlock>,
    pub option_count: usize,
    pub more_allowed: bool,
    pub status_quo: bool,
    pub split: String,
    pub error: Option<String>,
    /// Whether the bylaws name an assistant model (then the form offers drafting).
    pub assistant: bool,
}

impl NewProposal {
    /// The form for `kind`, filled with the co-op's current values, or with what the
    /// member typed (`typed`) when it is shown again.
    pub fn new(
        session: &Session,
        kind: Option<&str>,
        objects: &CoopObjects,
        typed: Option<&Form>,
        error: Option<String>,
    ) -> Self {
        let kind = kind
            .and_then(effects::kind_of)
            .unwrap_or(ProposalKind::Allocation);
        let method = objects.cooperative().map_or(VotingMethod::Majority, |c| {
            synco_policies::crd::proposal::bylaw_rules(c, kind).method
        });
        let layout = effects::layout(kind, method);
        let source = Source { objects, typed };
        let option_count = forms::option_count(typed);
        let option_blocks = match layout {
            Layout::Options | Layout::Split => (1..=option_count)
                .map(|n| {
                    let prefix = format!("o{n}_");
                    let name = format!("{prefix}name");
                    OptionBlock {
                        n,
                        name: Field {
                            id: name.clone(),
                            value: typed.map(|f| f.one(&name).to_owned()).unwrap_or_default(),
                            name,
                            label: format!("Option {n}: its name (leave empty for no option {n})"),
                            input: "text",
                            ..Field::default()
                        },
                        groups: if layout == Layout::Split {
                            effects::split_target(&prefix, source)
                        } else {
                            effects::groups(kind, &prefix, source)
                        },
                    }
                })
                .collect(),
            _ => Vec::new(),
        };
        let typed_one = |name: &str| typed.map(|f| f.one(name).to_owned()).unwrap_or_default();
        Self {
            shell: Shell::of(session),
            kind: effects::kind_name(kind).to_owned(),
            kinds: effects::KINDS
                .into_iter()
                .map(|k| (effects::kind_name(k), k == kind))
                .collect(),
            method: effects::method_name(method),
            layout: match layout {
                Layout::Question => "question",
                Layout::Single => "single",
                Layout::Options => "options",
                Layout::Split => "split",
                Layout::Unsupported => "unsupported",
            },
            title: typed_one("title"),
            body: typed_one("body"),
            options: typed_one("options"),
            effect: match layout {
                Layout::Single | Layout::Split => effects::groups(kind, "", source),
                _ => Vec::new(),
            },
            option_blocks,
            more_allowed: option_count < forms::MAX_OPTIONS,
            option_count,
            status_quo: typed.is_some_and(|f| !f.one("status_quo").is_empty()),
            split: typed_one("split"),
            error,
            assistant: false,
        }
    }
}

#[derive(Template)]
#[template(path = "delegation.html")]
pub struct DelegationPage {
    pub shell: Shell,
    pub delegate: Option<String>,
    pub delegators: Vec<String>,
    pub members: Vec<String>,
}

impl DelegationPage {
    pub fn new(session: &Session, mine: &DelegationView, objects: &CoopObjects) -> Self {
        Self {
            shell: Shell::of(session),
            delegate: mine.delegate.clone(),
            delegators: mine.delegators.clone(),
            members: objects
                .members
                .iter()
                .filter_map(|m| m.metadata.name.clone())
                .filter(|m| m != &session.member)
                .collect(),
        }
    }
}

#[derive(Template)]
#[template(path = "coop.html")]
pub struct CoopPage {
    pub shell: Shell,
    pub display_name: String,
    pub allocation: String,
    pub shares: Vec<(String, u32)>,
    pub allocation_svg: Option<String>,
    pub quotas: Vec<(String, String, u64, u64, u32)>,
    pub budget: u64,
    pub used: u64,
    pub remaining: u64,
    pub requests: u64,
    pub month: String,
    pub usage_svg: Option<String>,
    /// Each day the member used anything: (day, requests, tokens, month to date).
    pub days: Vec<(String, u64, u64, u64)>,
    pub previous_month: String,
    pub next_month: Option<String>,
    /// Surplus revenue by month: (month, currency, tokens sold, revenue).
    pub revenue_by_month: Vec<(String, String, u64, String)>,
    pub revenue_svg: Option<String>,
    /// The member's statement for the month, from the books.
    pub statement: Option<crate::books::Statement>,
    pub currency: String,
    pub tokens_sold: u64,
    pub revenue: String,
    pub history: Vec<String>,
}

/// Minor units as a sum with two decimals.
fn money(minor: u64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

/// Signed minor units as a sum with two decimals.
fn signed_money(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    format!("{sign}{}", money(minor.unsigned_abs()))
}

impl CoopPage {
    /// Signed minor units as a sum with two decimals.
    pub fn money_of(&self, minor: &i64) -> String {
        signed_money(*minor)
    }

    pub fn new(session: &Session, coop: &CoopView) -> Self {
        let plan = coop.allocation.as_ref().map(|a| &a.spec.plan);
        let mut shares: Vec<(String, u32)> = plan
            .map(|p| {
                p.floors
                    .iter()
                    .map(|f| {
                        let who = f
                            .member_class
                            .as_ref()
                            .map(|c| format!("class {c}"))
                            .or_else(|| f.member.as_ref().map(|m| format!("member {m}")))
                            .unwrap_or_default();
                        (who, f.share_percent)
                    })
                    .collect()
            })
            .unwrap_or_default();
        if let Some(cap) = plan.and_then(|p| p.surplus_cap_percent) {
            shares.push(("surplus (most sold)".to_owned(), cap));
        }
        let quotas = coop
            .allocation
            .as_ref()
            .and_then(|a| a.status.as_ref())
            .map(|s| {
                s.quotas
                    .iter()
                    .map(|q| {
                        (
                            q.name.clone(),
                            format!("{:?}", q.kind),
                            q.guaranteed_tokens_per_second,
                            q.monthly_token_budget,
                            q.max_concurrent_requests,
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let minor = coop.surplus.revenue_minor;
        Self {
            shell: Shell::of(session),
            display_name: coop.display_name.clone(),
            allocation: coop
                .allocation
                .as_ref()
                .and_then(|a| a.metadata.name.clone())
                .unwrap_or_default(),
            allocation_svg: charts::allocation(&shares),
            shares,
            quotas,
            budget: coop.usage.monthly_token_budget,
            used: coop.usage.total_tokens,
            remaining: coop.usage.remaining_tokens,
            requests: coop.usage.requests,
            month: coop.usage.month.clone(),
            usage_svg: charts::usage(
                coop.usage.monthly_token_budget,
                &coop
                    .usage
                    .days
                    .iter()
                    .map(|d| (d.day.clone(), d.month_to_date))
                    .collect::<Vec<_>>(),
            ),
            days: coop
                .usage
                .days
                .iter()
                .map(|d| (d.day.clone(), d.requests, d.tokens, d.month_to_date))
                .collect(),
            previous_month: crate::metering::export::months_to(&coop.usage.month, 2)
                .ok()
                .and_then(|m| m.into_iter().next())
                .unwrap_or_default(),
            next_month: crate::metering::export::month_bounds(&coop.usage.month)
                .ok()
                .map(|(_, next)| next)
                .filter(|_| coop.usage.month < crate::quota::month_of(jiff::Timestamp::now())),
            revenue_svg: charts::revenue(
                &coop.surplus.currency,
                &coop
                    .revenue_by_month
                    .iter()
                    .filter(|r| r.currency == coop.surplus.currency)
                    .map(|r| (r.month.clone(), r.revenue_minor))
                    .collect::<Vec<_>>(),
            ),
            revenue_by_month: coop
                .revenue_by_month
                .iter()
                .map(|r| {
                    (
                        r.month.clone(),
                        r.currency.clone(),
                        r.tokens_sold,
                        money(r.revenue_minor),
                    )
                })
                .collect(),
            currency: coop.surplus.currency.clone(),
            tokens_sold: coop.surplus.tokens_sold,
            revenue: money(minor),
            statement: None,
            history: coop.history.clone(),
        }
    }
}
