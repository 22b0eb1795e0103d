//! Deterministic tie-breaking between options.
//!
//! Ties between *yes* and *no* always keep the status quo: the proposal is rejected.
//! Ties between options (approval, score, instant-runoff eliminations, the last
//! point of a dot-voting split) are settled by a fixed priority order that does not depend
//! on the ballots, so anyone can re-derive it from the proposal alone:
//!
//! * [`TieBreak::FirstListed`]: the option listed first in the proposal wins the tie
//!   (and, in instant-runoff, the one listed last is eliminated first).
//! * [`TieBreak::Seeded`]: the options are shuffled once by a published seed (for example
//!   derived from the proposal's UID), so that being listed first is no advantage. The
//!   shuffle uses FNV-1a and SplitMix64, which are fixed, portable functions.

use serde::{Deserialize, Serialize};

/// How ties between options are broken. The rule is stated in every result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TieBreak {
    /// The option listed first in the proposal wins a tie.
    #[default]
    FirstListed,
    /// A fixed shuffle of the options, from a published seed, decides.
    Seeded {
        /// The seed.
        seed: u64,
    },
}

impl TieBreak {
    /// The priority of each option: `priority[i]` is the rank of option `i`, and a lower
    /// rank wins a tie.
    #[must_use]
    pub fn priority(&self, options: &[String]) -> Vec<usize> {
        match self {
            TieBreak::FirstListed => (0..options.len()).collect(),
            TieBreak::Seeded { seed } => {
                let mut keyed: Vec<(u64, usize)> = options
                    .iter()
                    .enumerate()
                    .map(|(i, o)| (splitmix64(seed ^ fnv1a(o.as_bytes())), i))
                    .collect();
                keyed.sort_unstable();
                let mut priority = vec![0; options.len()];
                for (rank, (_, i)) in keyed.into_iter().enumerate() {
                    if let Some(slot) = priority.get_mut(i) {
                        *slot = rank;
                    }
                }
                priority
            }
        }
    }

    /// The rule in words, for the result.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            TieBreak::FirstListed => {
                "a tie between yes and no keeps the status quo (rejected); a tie between options goes to the \
                 option listed first"
                    .to_owned()
            }
            TieBreak::Seeded { seed } => format!(
                "a tie between yes and no keeps the status quo (rejected); a tie between options goes to the \
                 option that comes first when the options are ordered by splitmix64({seed} ^ fnv1a(name))"
            ),
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_listed_is_list_order() {
        let options = vec!["b".to_owned(), "a".to_owned()];
        assert_eq!(TieBreak::FirstListed.priority(&options), vec![0, 1]);
    }

    #[test]
    fn seeded_order_is_a_fixed_permutation() {
        let options: Vec<String> = (0..8).map(|i| format!("option-{i}")).collect();
        let p = TieBreak::Seeded { seed: 42 }.priority(&options);
        // Pinned: a change to the shuffle would change recorded outcomes.
        assert_eq!(p, TieBreak::Seeded { seed: 42 }.priority(&options));
        let mut sorted = p.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..8).collect::<Vec<_>>());
        assert_ne!(
            p,
            TieBreak::Seeded { seed: 43 }.priority(&options),
            "the seed matters"
        );
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
    }
}
