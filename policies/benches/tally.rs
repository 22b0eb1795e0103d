//! Tallying 1,000,000 ballots with majority, instant-runoff and dot voting.
//!
//! Run with `cargo bench -p synco-policies --bench tally`. The inputs are built once,
//! outside the measurement; each iteration is a full `tally`, checks included.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use synco_policies::{Ballot, Choice, Delegation, Method, Share, TallyInput, Voter, VotingRules, tally};

const BALLOTS: usize = 1_000_000;
const OPTIONS: [&str; 5] = ["solar", "wind", "grid", "hydro", "battery"];

/// A small, fixed pseudo-random sequence so every run tallies the same ballots.
struct Rng(u64);

impl Rng {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

/// One million members (a few suspended), one ballot each from 95% of them, and 1% of
/// the rest delegating, with ballots made by `choice`.
fn input(mut choice: impl FnMut(&mut Rng) -> Choice) -> TallyInput {
    let mut rng = Rng(0x5eed);
    let members = BALLOTS + BALLOTS / 19;
    let electorate: Vec<Voter> = (0..members)
        .map(|i| {
            let v = Voter::new(
                format!("member-{i:07}"),
                if i % 2 == 0 { "workers" } else { "users" },
            );
            if i % 1000 == 999 { v.suspended() } else { v }
        })
        .collect();
    let ballots = (0..BALLOTS)
        .map(|i| Ballot::new(format!("member-{i:07}"), choice(&mut rng)))
        .collect();
    let delegations = (BALLOTS..members)
        .step_by(100)
        .map(|i| Delegation::new(format!("member-{i:07}"), format!("member-{:07}", i - BALLOTS)))
        .collect();
    let options = OPTIONS.iter().map(|o| (*o).to_owned()).collect();
    TallyInput {
        options,
        electorate,
        ballots,
        delegations,
    }
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("tally_1m_ballots");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10))
        .warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(BALLOTS as u64));

    let majority = input(|rng| match rng.next(10) {
        0 => Choice::Abstain,
        1..=5 => Choice::Yes,
        _ => Choice::No,
    });
    let rules = VotingRules::new(Method::Majority).with_quorum(Share::percent(50));
    group.bench_function("majority", |b| b.iter(|| tally(black_box(&majority), &rules)));
    drop(majority);

    let irv = input(|rng| {
        let mut opts = OPTIONS.to_vec();
        for i in (1..opts.len()).rev() {
            opts.swap(i, usize::try_from(rng.next(i as u64 + 1)).unwrap_or(0));
        }
        let len = usize::try_from(rng.next(5) + 1).unwrap_or(1);
        Choice::Rank(opts.into_iter().take(len).map(str::to_owned).collect())
    });
    let rules = VotingRules::new(Method::InstantRunoff);
    group.bench_function("instant_runoff", |b| b.iter(|| tally(black_box(&irv), &rules)));
    drop(irv);

    // An election of real size: 36 options, 1,000,000 rankings. Support follows a
    // Zipf-like curve and most ballots rank few options (half rank one or two), so
    // many rankings are identical and the count runs dozens of rounds.
    let many: Vec<String> = (0..36).map(|i| format!("option-{i:02}")).collect();
    let zipf: Vec<u64> = (1..=36u64).map(|k| 1_000_000 / (k + 8)).collect();
    let zipf_total: u64 = zipf.iter().sum();
    let pick = |rng: &mut Rng| {
        let mut x = rng.next(zipf_total);
        for (i, w) in zipf.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        35
    };
    let irv36 = TallyInput {
        options: many.clone(),
        ..input(|rng| {
            let len = match rng.next(100) {
                0..=29 => 1,
                30..=54 => 2,
                55..=74 => 3,
                75..=89 => 4,
                _ => 6,
            };
            let mut ranking: Vec<String> = Vec::with_capacity(len);
            while ranking.len() < len {
                let o = &many[pick(rng)];
                if !ranking.contains(o) {
                    ranking.push(o.clone());
                }
            }
            Choice::Rank(ranking)
        })
    };
    let rules = VotingRules::new(Method::InstantRunoff);
    if let Ok(r) = tally(&irv36, &rules)
        && let synco_policies::Counts::Rounds { rounds, .. } = &r.counts
    {
        eprintln!(
            "instant_runoff_36_options: {} rounds, winner {:?}",
            rounds.len(),
            r.winner
        );
    }
    group.bench_function("instant_runoff_36_options", |b| {
        b.iter(|| tally(black_box(&irv36), &rules))
    });
    drop(irv36);

    let dot = input(|rng| {
        let mut left = 10;
        let mut dots = BTreeMap::new();
        for o in OPTIONS {
            let p = rng.next(left + 1);
            left -= p;
            if p > 0 {
                dots.insert(o.to_owned(), i64::try_from(p).unwrap_or(0));
            }
        }
        Choice::Dots(dots)
    });
    let rules = VotingRules::new(Method::Dot {
        points_per_member: 10,
    });
    group.bench_function("dot", |b| b.iter(|| tally(black_box(&dot), &rules)));
    group.finish();
}

criterion_group!(tally_benches, benches);
criterion_main!(tally_benches);
