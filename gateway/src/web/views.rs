//! What each page shows, prepared for its template (askama escapes every value it
//! writes into HTML; only the server-drawn SVG charts are written as they are).

use askama::Template;
use synco_crds::{ProposalPhase, VotingMethod};

use super::charts;
use super::forms::Form;
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
    pub ranks: Vec<usize>,
    pub max_score: u32,
    pub points: u32,
    pub quorum: String,
    pub ballots: u64,
    pub electorate: usize,
    pub in_electorate: bool,
    pub can_withdraw: bool,
    pub effect: String,
    pub comments: Vec<Comment>,
    pub receipt: Option<String>,
    pub outcome: Option<Outcome>,
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
            Some(VotingMethod::RankedChoice) => "ranking",
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
            comments: threaded(comments),
            receipt: receipt.filter(|r| r.len() == 64 && r.bytes().all(|b| b.is_ascii_hexdigit())),
            outcome: decided.then(|| outcome(p, &options)),
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

/// The kinds of proposal the page's form opens.
const KINDS: [&str; 4] = ["Allocation", "FreeText", "MemberAdmission", "SurplusPrice"];

#[derive(Template)]
#[template(path = "new.html")]
pub struct NewProposal {
    pub shell: Shell,
    pub kind: String,
    /// Each kind the form offers, and whether it is the one chosen.
    pub kinds: Vec<(&'static str, bool)>,
    pub classes: Vec<(String, String)>,
    pub surplus_cap: String,
    pub borrow_limit: String,
    pub title: String,
    pub body: String,
    pub options: String,
    pub error: Option<String>,
}

impl NewProposal {
    pub fn new(
        session: &Session,
        kind: Option<&str>,
        coop: &CoopView,
        objects: &CoopObjects,
        error: Option<String>,
    ) -> Self {
        let plan = coop.allocation.as_ref().map(|a| &a.spec.plan);
        let classes = objects
            .cooperative()
            .map(|c| {
                c.spec
                    .member_classes
                    .iter()
                    .map(|k| {
                        let share = plan
                            .and_then(|p| {
                                p.floors
                                    .iter()
                                    .find(|f| f.member_class.as_deref() == Some(k.name.as_str()))
                            })
                            .map(|f| f.share_percent.to_string())
                            .unwrap_or_default();
                        (k.name.clone(), share)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let kind = match kind {
            Some(k) if KINDS.contains(&k) => k.to_owned(),
            _ => "Allocation".to_owned(),
        };
        Self {
            shell: Shell::of(session),
            kinds: ["Allocation", "FreeText"]
                .into_iter()
                .map(|k| (k, k == kind.as_str()))
                .collect(),
            classes,
            surplus_cap: plan
                .and_then(|p| p.surplus_cap_percent)
                .map(|v| v.to_string())
                .unwrap_or_default(),
            borrow_limit: plan
                .and_then(|p| p.borrow_limit_percent)
                .map(|v| v.to_string())
                .unwrap_or_default(),
            title: String::new(),
            body: String::new(),
            options: String::new(),
            error,
            kind,
        }
    }

    /// Keeps what the member typed, to show the form again.
    pub fn keep(&mut self, form: &Form) {
        self.title = form.one("title").to_owned();
        self.body = form.one("body").to_owned();
        self.options = form.one("options").to_owned();
        self.surplus_cap = form.one("surplus_cap").to_owned();
        self.borrow_limit = form.one("borrow_limit").to_owned();
        for (class, share) in &mut self.classes {
            *share = form.one(&format!("floor:{class}")).to_owned();
        }
    }

    /// The shares typed so far, added up (the page shows it; the server checks it).
    pub fn total(&self) -> u32 {
        self.classes
            .iter()
            .filter_map(|(_, s)| s.parse::<u32>().ok())
            .chain(self.surplus_cap.parse::<u32>().ok())
            .sum()
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
    pub currency: String,
    pub tokens_sold: u64,
    pub revenue: String,
    pub history: Vec<String>,
}

impl CoopPage {
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
            usage_svg: charts::usage(coop.usage.monthly_token_budget, coop.usage.total_tokens),
            currency: coop.surplus.currency.clone(),
            tokens_sold: coop.surplus.tokens_sold,
            revenue: format!("{}.{:02}", minor / 100, minor % 100),
            history: coop.history.clone(),
        }
    }
}
