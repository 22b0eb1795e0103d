//! Condition types, reasons and small builders shared by every status.
//!
//! Controllers set conditions through [`set_condition`], which keeps the
//! `lastTransitionTime` of a condition whose status did not change, so that a
//! reconcile that finds nothing new writes nothing new.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The resource is valid and its controller has acted on it.
pub const READY: &str = "Ready";
/// The spec was checked against the co-op's bylaws and references.
pub const ACCEPTED: &str = "Accepted";
/// A proposal's effect has been applied.
pub const APPLIED: &str = "Applied";
/// An allocation is the one in force.
pub const IN_FORCE: &str = "InForce";

/// Reasons, in CamelCase as Kubernetes expects.
pub mod reason {
    pub const VALID: &str = "Valid";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const UNKNOWN_CLASS: &str = "UnknownClass";
    pub const DUPLICATE_IDENTITY: &str = "DuplicateIdentity";
    pub const UNKNOWN_REFERENCE: &str = "UnknownReference";
    pub const RECONCILED: &str = "Reconciled";
    pub const PROGRESSING: &str = "Progressing";
    pub const DEPLOYED: &str = "Deployed";
    pub const PUBLISHED: &str = "Published";
    pub const SUPERSEDED: &str = "Superseded";
    pub const VOTING_OPEN: &str = "VotingOpen";
    pub const VOTING_CLOSED: &str = "VotingClosed";
    pub const EFFECT_APPLIED: &str = "EffectApplied";
    pub const NOTHING_TO_APPLY: &str = "NothingToApply";
}

/// The `status` strings of a condition.
pub fn status_str(ok: bool) -> &'static str {
    if ok { "True" } else { "False" }
}

/// Builds a condition observed at `generation`.
pub fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Time,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: status_str(ok).to_owned(),
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: now,
    }
}

/// Inserts or replaces the condition of the same type. The transition time is
/// kept when the status did not change, as Kubernetes API conventions ask.
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time.clone();
            }
            *old = new;
        }
        None => conditions.push(new),
    }
}

/// Finds a condition by type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// True when the condition of that type is present and `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    #[test]
    fn transition_time_kept_when_status_unchanged() {
        let mut cs = vec![condition(
            READY,
            true,
            reason::VALID,
            "ok",
            Some(1),
            at("2026-01-01T00:00:00Z"),
        )];
        set_condition(
            &mut cs,
            condition(
                READY,
                true,
                reason::VALID,
                "still ok",
                Some(2),
                at("2026-02-01T00:00:00Z"),
            ),
        );
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].last_transition_time, at("2026-01-01T00:00:00Z"));
        assert_eq!(cs[0].observed_generation, Some(2));
        assert_eq!(cs[0].message, "still ok");
    }

    #[test]
    fn transition_time_moves_when_status_flips() {
        let mut cs = vec![condition(
            READY,
            true,
            reason::VALID,
            "ok",
            Some(1),
            at("2026-01-01T00:00:00Z"),
        )];
        set_condition(
            &mut cs,
            condition(
                READY,
                false,
                reason::INVALID_SPEC,
                "bad",
                Some(2),
                at("2026-02-01T00:00:00Z"),
            ),
        );
        assert_eq!(cs[0].last_transition_time, at("2026-02-01T00:00:00Z"));
        assert!(!is_true(&cs, READY));
        set_condition(
            &mut cs,
            condition(
                ACCEPTED,
                true,
                reason::VALID,
                "",
                None,
                at("2026-02-01T00:00:00Z"),
            ),
        );
        assert_eq!(cs.len(), 2);
        assert!(is_true(&cs, ACCEPTED));
    }
}
