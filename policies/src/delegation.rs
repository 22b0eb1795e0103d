//! Liquid delegation: a member who does not vote lends its weight to another member.
//!
//! Rules, in the order they are applied:
//!
//! 1. A member who votes directly (even to abstain) counts its own weight on its own
//!    ballot; its delegation, if any, is ignored.
//! 2. Otherwise its delegation chain is followed, `a → b → c → …`, to the first member on
//!    it who voted; that ballot carries `a`'s weight too.
//! 3. A chain that comes back on itself before reaching a voter is a cycle: everyone whose
//!    chain ends in it counts as not delegating (and is named in the result).
//! 4. A chain that reaches a suspended member, or someone not in the electorate, or a
//!    member who neither voted nor delegates, carries nothing.
//!
//! Example: `a → b → c`, `d → e → d`, and only `c` and `e` vote. Then `c`'s ballot carries
//! `a + b + c`, `e` votes for itself, and `d`'s delegation leads into `e`, a voter, so
//! `e` carries `d + e`. Had `e` not voted, `d` and `e` would form a cycle and carry
//! nothing.

use crate::voting::{Delegation, TallyError};
use crate::weights::{Weight, WeightTable};

/// The result of following every delegation.
#[derive(Debug, Default)]
pub(crate) struct Resolved {
    /// Weight delegated onto each voter's ballot (by electorate index).
    pub extra: Vec<Weight>,
    pub delegated_total: Weight,
    pub followed: u64,
    /// `(from, to)`: whose weight went onto whose ballot, sorted.
    pub used: Vec<(String, String)>,
    pub cycles: Vec<String>,
    pub broken: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Unvisited,
    OnPath,
    Done,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    /// Reaches this voter's ballot.
    Voter(usize),
    /// Member neither votes nor delegates.
    Nothing,
    /// Runs into a cycle.
    Cycle,
    /// Reaches someone ineligible or unknown.
    Broken,
}

/// Follows the delegations. `voted[i]` says whether electorate member `i` cast a counted
/// ballot.
pub(crate) fn resolve(
    table: &WeightTable<'_>,
    voted: &[bool],
    delegations: &[Delegation],
) -> Result<Resolved, TallyError> {
    let n = table.voters.len();
    // `None` inside: delegates to someone not in the electorate.
    let mut next: Vec<Option<Option<usize>>> = vec![None; n];
    for d in delegations {
        let from = *table
            .index
            .get(d.from.as_str())
            .ok_or_else(|| TallyError::UnknownMember(d.from.clone()))?;
        // `from` comes from the index, so it is in range.
        let slot = &mut next[from];
        if slot.is_some() {
            return Err(TallyError::DuplicateDelegation(d.from.clone()));
        }
        *slot = Some(table.index.get(d.to.as_str()).copied());
    }
    if delegations.is_empty() {
        return Ok(Resolved {
            extra: vec![0; n],
            ..Resolved::default()
        });
    }

    let has_voted = |i: usize| voted.get(i).copied().unwrap_or(false);
    let mut state = vec![State::Unvisited; n];
    let mut end = vec![End::Nothing; n];
    let mut path = Vec::new();
    for start in 0..n {
        if state.get(start) != Some(&State::Unvisited) {
            continue;
        }
        path.clear();
        let mut cur = Some(start);
        let found = loop {
            let Some(c) = cur else { break End::Broken };
            if !table.is_eligible(c) {
                break End::Broken;
            }
            if has_voted(c) {
                break End::Voter(c);
            }
            match state.get(c) {
                Some(State::Done) => break end.get(c).copied().unwrap_or(End::Nothing),
                Some(State::OnPath) => break End::Cycle,
                _ => {}
            }
            if let Some(s) = state.get_mut(c) {
                *s = State::OnPath;
            }
            path.push(c);
            match next.get(c).copied().flatten() {
                Some(target) => cur = target,
                None => break End::Nothing,
            }
        };
        for p in &path {
            if let (Some(s), Some(e)) = (state.get_mut(*p), end.get_mut(*p)) {
                *s = State::Done;
                *e = found;
            }
        }
    }

    let mut out = Resolved {
        extra: vec![0; n],
        ..Resolved::default()
    };
    for (i, e) in end.iter().enumerate() {
        // Members who did not start a chain (no delegation) are not reported.
        let delegates = next.get(i).is_some_and(Option::is_some);
        if !delegates || has_voted(i) || !table.is_eligible(i) {
            continue;
        }
        let name = || table.voters.get(i).map(|v| v.id.clone()).unwrap_or_default();
        match e {
            End::Voter(v) => {
                let w = table.weight.get(i).copied().unwrap_or(0);
                let slot = &mut out.extra[*v];
                *slot = slot.checked_add(w).ok_or(TallyError::WeightOverflow)?;
                out.delegated_total = out
                    .delegated_total
                    .checked_add(w)
                    .ok_or(TallyError::WeightOverflow)?;
                out.followed += 1;
                let to = table.voters.get(*v).map(|t| t.id.clone()).unwrap_or_default();
                out.used.push((name(), to));
            }
            End::Cycle => out.cycles.push(name()),
            End::Broken => out.broken.push(name()),
            End::Nothing => {}
        }
    }
    out.used.sort_unstable();
    out.cycles.sort_unstable();
    out.broken.sort_unstable();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::{Voter, Weighting, weigh};

    fn run(names: &[&str], voted: &[&str], delegations: &[(&str, &str)]) -> Resolved {
        let voters: Vec<Voter> = names.iter().map(|n| Voter::new(*n, "c")).collect();
        let table = weigh(&voters, &Weighting::PerMember).unwrap();
        let voted: Vec<bool> = names.iter().map(|n| voted.contains(n)).collect();
        let ds: Vec<Delegation> = delegations.iter().map(|(f, t)| Delegation::new(*f, *t)).collect();
        resolve(&table, &voted, &ds).unwrap()
    }

    #[test]
    fn chains_are_followed_to_the_first_voter() {
        let r = run(
            &["a", "b", "c", "d", "e"],
            &["c", "e"],
            &[("a", "b"), ("b", "c"), ("d", "e"), ("e", "d")],
        );
        assert_eq!(r.extra, vec![0, 0, 2000, 0, 1000]);
        assert_eq!(r.delegated_total, 3000);
        assert_eq!(r.followed, 3);
        assert!(r.cycles.is_empty());
    }

    #[test]
    fn cycles_count_as_no_delegation() {
        let r = run(
            &["a", "b", "c", "x"],
            &["x"],
            &[("a", "b"), ("b", "c"), ("c", "b")],
        );
        assert_eq!(r.extra, vec![0; 4]);
        assert_eq!(r.cycles, vec!["a", "b", "c"]);
        let r = run(&["a"], &[], &[("a", "a")]);
        assert_eq!(r.cycles, vec!["a"]);
    }

    #[test]
    fn direct_vote_overrides_delegation() {
        let r = run(&["a", "b"], &["a", "b"], &[("a", "b")]);
        assert_eq!(r.extra, vec![0, 0]);
        assert_eq!(r.followed, 0);
    }

    #[test]
    fn suspended_or_unknown_delegates_break_the_chain() {
        let voters = vec![
            Voter::new("a", "c"),
            Voter::new("b", "c").suspended(),
            Voter::new("c", "c"),
        ];
        let table = weigh(&voters, &Weighting::PerMember).unwrap();
        let ds = vec![Delegation::new("a", "b"), Delegation::new("b", "c")];
        let r = resolve(&table, &[false, false, true], &ds).unwrap();
        assert_eq!(r.extra, vec![0, 0, 0]);
        assert_eq!(r.broken, vec!["a"]);
        let r = resolve(&table, &[false, false, true], &[Delegation::new("a", "gone")]).unwrap();
        assert_eq!(r.broken, vec!["a"]);
        assert_eq!(
            resolve(&table, &[false; 3], &[Delegation::new("nobody", "a")]).unwrap_err(),
            TallyError::UnknownMember("nobody".into())
        );
        assert_eq!(
            resolve(
                &table,
                &[false; 3],
                &[Delegation::new("a", "c"), Delegation::new("a", "b")]
            )
            .unwrap_err(),
            TallyError::DuplicateDelegation("a".into())
        );
    }
}
