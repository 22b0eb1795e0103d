//! Benchmark: the time from a proposal's close to the new quotas in the Allocation's
//! status, with 1,000 members and 1,000 votes, against the real API server.
//!
//! ```sh
//! cargo test -p synco-e2e --release --test operator_bench -- --ignored --nocapture
//! ```
//!
//! Set `SYNCO_BENCH_MEMBERS` for another size.

mod operator_support;

use std::time::{Duration, Instant};

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use operator_support::*;
use synco_crds::{Allocation, AllocationPhase, Member, ProposalPhase};
use synco_e2e::{cluster, wait_until, with_temp_ns};

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn close_to_quotas_with_a_thousand_members() -> anyhow::Result<()> {
    let n: usize = std::env::var("SYNCO_BENCH_MEMBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let cluster = cluster()?;
    let admin = &cluster.admin().await?;
    install_crds(admin).await?;
    with_temp_ns(admin, "op-bench", |ns| async move {
        let client = operator_client(cluster, admin, &ns).await?;
        coop(admin, &ns).await?;
        let members: Api<Member> = Api::namespaced(admin.clone(), &ns);
        let names: Vec<String> = (0..n).map(|i| format!("m{i:04}")).collect();
        let started = Instant::now();
        futures::stream::iter(names.iter().cloned())
            .map(|name| {
                let members = members.clone();
                async move {
                    let m: Member = serde_json::from_value(serde_json::json!({
                        "apiVersion": "synco.coop/v1alpha1", "kind": "Member",
                        "metadata": {"name": name},
                        "spec": {"displayName": name, "class": "community", "identity": name},
                    }))?;
                    members.create(&PostParams::default(), &m).await?;
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(32)
            .try_collect::<Vec<_>>()
            .await?;
        println!("created {n} members in {:?}", started.elapsed());

        let op = start(client, &ns, "op-bench", false);
        wait_until("the founding allocation in force with every member", Duration::from_secs(120), || async {
            let all = allocations(admin, &ns).await?;
            Ok(all.first().and_then(|a| a.status.as_ref()).is_some_and(|s| s.quotas.len() == n + 5 + 1))
        })
        .await?;

        // Let the operator settle (every member validated) so that the votes are not cast
        // against its start-up work.
        wait_until("every member Ready", Duration::from_secs(300), || async {
            let list = members.list(&Default::default()).await?;
            Ok(list.items.iter().filter(|m| {
                m.status.as_ref().is_some_and(|s| synco_crds::conditions::is_true(&s.conditions, "Ready"))
            }).count() >= n)
        })
        .await?;
        let window = 60 + i64::try_from(n / 10).unwrap_or(0);
        let runs: u32 = std::env::var("SYNCO_BENCH_RUNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5);
        let mut times = Vec::new();
        for run in 0..runs {
            let name = format!("bench-{run}");
            let asked = Instant::now();
            let proposal = propose(
                admin,
                &ns,
                &name,
                window,
                &format!(
                    "    kind: Allocation\n    effect:\n      allocation:\n        floors: [{{memberClass: community, sharePercent: {}}}]\n",
                    50 + run
                ),
            )
            .await?;
            println!("run {run}: proposal open {:?} after it was made (the bylaws' voting period set first)", asked.elapsed());
            let started = Instant::now();
            futures::stream::iter(names.iter().cloned().enumerate())
                .map(|(i, member)| {
                    let admin = admin.clone();
                    let ns = ns.clone();
                    let name = name.clone();
                    async move { vote(&admin, &ns, &name, &member, if i % 3 == 0 { "No" } else { "Yes" }).await.map(|_| ()) }
                })
                .buffer_unordered(32)
                .try_collect::<Vec<_>>()
                .await?;
            println!("run {run}: cast {n} votes in {:?}", started.elapsed());
            let closes = proposal
                .status
                .as_ref()
                .and_then(|s| s.closes_at.clone())
                .map(|t| t.0)
                .unwrap_or_default();
            assert!(Timestamp::now() < closes, "votes took longer than the window; raise it");

            // From the deadline until the new quotas are in the new Allocation, seen through
            // a watch (started before the deadline) rather than by polling, so that the
            // measurement does not load the API server it measures.
            let api: Api<Allocation> = Api::namespaced(admin.clone(), &ns);
            let in_force = |a: &Allocation| {
                a.spec.proposal.as_deref() == Some(name.as_str())
                    && a.status.as_ref().is_some_and(|s| s.phase == AllocationPhase::InForce && s.quotas.len() == n + 6)
            };
            let mut changes = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff().applied_objects());
            let until_close = Duration::try_from(closes.duration_since(Timestamp::now())).unwrap_or_default();
            let deadline = tokio::time::sleep(until_close);
            // Drain the watch's initial list while waiting for the deadline.
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    () = &mut deadline => break,
                    _ = changes.try_next() => {}
                }
            }
            let closed_at = Instant::now();
            let quotas_at = tokio::time::timeout(Duration::from_secs(120), async {
                while let Some(a) = changes.try_next().await? {
                    if in_force(&a) {
                        return anyhow::Ok(closed_at.elapsed());
                    }
                }
                anyhow::bail!("the watch ended")
            })
            .await
            .map_err(|_| anyhow::anyhow!("no new quotas within 120 s of the close"))??;
            let p = wait_phase(admin, &ns, &name, &[ProposalPhase::Applied], Duration::from_secs(30)).await?;
            let s = p.status.unwrap();
            println!(
                "run {run}: members={n} counted={} deadline->quotas={:.0} ms (a grace of {} ms included; yes {} no {}, turnout {}%)",
                s.counted_votes.unwrap_or(0),
                quotas_at.as_secs_f64() * 1000.0,
                synco_operator::controllers::proposal::CLOSE_GRACE.as_millis(),
                s.tally.as_ref().and_then(|t| t.yes.clone()).unwrap_or_default(),
                s.tally.as_ref().and_then(|t| t.no.clone()).unwrap_or_default(),
                s.turnout_percent.unwrap_or_default(),
            );
            times.push(quotas_at);
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "BENCH members={n} runs={runs} deadline->quotas in force: p50 {:.0} ms, max (p99 of {runs}) {:.0} ms",
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1]),
        );
        op.shutdown().await?;
        drop_rbac(admin, &ns).await;
        Ok::<_, anyhow::Error>(())
    })
    .await
}
