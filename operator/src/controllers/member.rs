//! Member and Customer validation, surfaced as a `Ready` condition: an unknown class, or
//! an identity that another Member or Customer already uses.
//!
//! Of two resources with the same identity the older keeps it (then the one whose name
//! sorts first); the other is not Ready until one of them changes.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt as _;
use kube::api::Api;
use kube::runtime::controller::Action;
use synco_crds::conditions::{self, READY, reason};
use synco_crds::{Cooperative, Customer, CustomerStatus, Member, MemberStatus};

use super::{cached_arcs, cooperative};
use crate::apply;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::metrics::Measure;

/// The Member controller's name in metrics.
pub const MEMBER_CONTROLLER: &str = "member";
/// The Customer controller's name in metrics.
pub const CUSTOMER_CONTROLLER: &str = "customer";

/// Who holds an identity: kind, name, and creation time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// `Member` or `Customer`.
    pub kind: &'static str,
    /// The resource's name.
    pub name: String,
    /// When it was created.
    pub created: Option<Time>,
    /// The identity.
    pub identity: String,
}

/// The holder that keeps `identity`: the oldest, then the first by kind and name.
#[must_use]
pub fn keeper<'a>(holders: &'a [Holder], identity: &str) -> Option<&'a Holder> {
    holders
        .iter()
        .filter(|h| h.identity == identity)
        .min_by(|a, b| (&a.created, a.kind, &a.name).cmp(&(&b.created, b.kind, &b.name)))
}

/// Everyone in the namespace holding `identity`. Read from the watch caches without
/// copying them: a change to the bylaws reconciles every member, and copying every
/// member for each would be quadratic.
async fn holders(ctx: &Context, ns: &str, identity: &str) -> Result<Vec<Holder>> {
    let members = cached_arcs(ctx, ns, |c| &c.members).await?;
    let customers = cached_arcs(ctx, ns, |c| &c.customers).await?;
    Ok(members
        .iter()
        .filter(|m| m.spec.identity == identity)
        .map(|m| Holder {
            kind: "Member",
            name: m.name_any(),
            created: m.metadata.creation_timestamp.clone(),
            identity: m.spec.identity.clone(),
        })
        .chain(
            customers
                .iter()
                .filter(|c| c.spec.identity == identity)
                .map(|c| Holder {
                    kind: "Customer",
                    name: c.name_any(),
                    created: c.metadata.creation_timestamp.clone(),
                    identity: c.spec.identity.clone(),
                }),
        )
        .collect())
}

/// Why a resource's identity is not its own, if it is not.
fn duplicate(holders: &[Holder], kind: &str, name: &str, identity: &str) -> Option<String> {
    keeper(holders, identity)
        .filter(|k| !(k.kind == kind && k.name == name))
        .map(|k| format!("identity {identity:?} already belongs to {} {}", k.kind, k.name))
}

/// The Member's problems, if any: (reason, message).
#[must_use]
pub fn check_member(coop: &Cooperative, holders: &[Holder], m: &Member) -> Option<(&'static str, String)> {
    let name = m.name_any();
    if !coop.spec.member_classes.iter().any(|c| c.name == m.spec.class) {
        let known: Vec<&str> = coop.spec.member_classes.iter().map(|c| c.name.as_str()).collect();
        return Some((
            reason::UNKNOWN_CLASS,
            format!(
                "class {:?} is not one of the co-op's classes {known:?}",
                m.spec.class
            ),
        ));
    }
    if let Some(why) = duplicate(holders, "Member", &name, &m.spec.identity) {
        return Some((reason::DUPLICATE_IDENTITY, why));
    }
    None
}

fn ready(
    problem: Option<&(&'static str, String)>,
    generation: Option<i64>,
    now: Time,
    ok_message: &str,
) -> Condition {
    match problem {
        Some((why, message)) => conditions::condition(READY, false, why, message.clone(), generation, now),
        None => conditions::condition(READY, true, reason::VALID, ok_message, generation, now),
    }
}

/// Reconciles one Member.
pub async fn reconcile_member(member: Arc<Member>, ctx: Arc<Context>) -> Result<Action> {
    let measure = Measure::start(MEMBER_CONTROLLER, &ctx.stats);
    let result = member_status(&member, &ctx).await;
    measure.done(&result);
    result
}

/// Reconciles one Customer.
pub async fn reconcile_customer(customer: Arc<Customer>, ctx: Arc<Context>) -> Result<Action> {
    let measure = Measure::start(CUSTOMER_CONTROLLER, &ctx.stats);
    let result = customer_status(&customer, &ctx).await;
    measure.done(&result);
    result
}

/// Retries after a delay that depends on the error.
pub fn error_policy<K>(_: Arc<K>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(%error, "member or customer reconcile failed");
    Action::requeue(error.requeue_after())
}

async fn member_status(member: &Member, ctx: &Context) -> Result<Action> {
    let ns = member.namespace().ok_or(Error::Unnamed("Member"))?;
    let coop = cooperative(ctx, &ns).await?;
    let holders = holders(ctx, &ns, &member.spec.identity).await?;
    let problem = check_member(&coop, &holders, member);
    let current = member.status.clone().unwrap_or_default();
    let mut status = MemberStatus {
        observed_generation: member.metadata.generation,
        conditions: current.conditions.clone(),
        tier: coop
            .spec
            .member_classes
            .iter()
            .find(|c| c.name == member.spec.class)
            .map(|c| c.tier),
    };
    let condition = ready(
        problem.as_ref(),
        member.metadata.generation,
        ctx.now_time(),
        "member in good order",
    );
    conditions::set_condition(&mut status.conditions, condition);
    let api: Api<Member> = Api::namespaced(ctx.client.clone(), &ns);
    let was_ready = conditions::is_true(&current.conditions, READY);
    if apply::status(&api, member, member.status.as_ref(), &status).await?
        && let Some((why, message)) = &problem
        && (was_ready || current.conditions.is_empty())
    {
        ctx.event(member, true, why, "Validate", message.clone()).await;
    }
    Ok(Action::requeue(ctx.settings.resync))
}

async fn customer_status(customer: &Customer, ctx: &Context) -> Result<Action> {
    let ns = customer.namespace().ok_or(Error::Unnamed("Customer"))?;
    let holders = holders(ctx, &ns, &customer.spec.identity).await?;
    let problem = duplicate(
        &holders,
        "Customer",
        &customer.name_any(),
        &customer.spec.identity,
    )
    .map(|why| (reason::DUPLICATE_IDENTITY, why));
    let current = customer.status.clone().unwrap_or_default();
    let mut status = CustomerStatus {
        observed_generation: customer.metadata.generation,
        conditions: current.conditions.clone(),
        // The gateway owns the balance; not set here.
        balance_minor: None,
    };
    let condition = ready(
        problem.as_ref(),
        customer.metadata.generation,
        ctx.now_time(),
        "customer in good order",
    );
    conditions::set_condition(&mut status.conditions, condition);
    let mut compare = current.clone();
    compare.balance_minor = None;
    let api: Api<Customer> = Api::namespaced(ctx.client.clone(), &ns);
    if apply::status(&api, customer, Some(&compare), &status).await?
        && let Some((why, message)) = &problem
    {
        ctx.event(customer, true, why, "Validate", message.clone()).await;
    }
    Ok(Action::requeue(ctx.settings.resync))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(kind: &'static str, name: &str, created: &str, identity: &str) -> Holder {
        Holder {
            kind,
            name: name.to_owned(),
            created: Some(Time(created.parse().unwrap())),
            identity: identity.to_owned(),
        }
    }

    #[test]
    fn the_oldest_keeps_an_identity() {
        let hs = vec![
            holder("Member", "b", "2026-01-02T00:00:00Z", "x"),
            holder("Member", "a", "2026-01-03T00:00:00Z", "x"),
            holder("Customer", "c", "2026-01-01T00:00:00Z", "y"),
        ];
        assert_eq!(keeper(&hs, "x").unwrap().name, "b");
        assert!(duplicate(&hs, "Member", "a", "x").unwrap().contains("Member b"));
        assert!(duplicate(&hs, "Member", "b", "x").is_none());
        assert!(duplicate(&hs, "Customer", "c", "y").is_none());
    }
}
