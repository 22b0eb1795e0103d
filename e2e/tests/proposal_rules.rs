//! The schema rules of a Proposal are enforced twice: by the API server (the CRD's
//! schema and CEL) in cluster mode, and by `ProposalSpec::check` in the gateway's
//! database store in standalone mode. For each spec here the two must agree: both
//! accept it, or both refuse it.

use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use synco_crds::{Proposal, ProposalSpec};
use synco_e2e::{apply_crds, cluster, with_temp_ns};

fn specs() -> Vec<(&'static str, Value)> {
    let plan = |share: u32| json!({"allocation": {"floors": [{"memberClass": "c", "sharePercent": share}]}});
    vec![
        (
            "a yes/no allocation",
            json!({"kind": "Allocation", "title": "t", "proposer": "p", "effect": plan(40)}),
        ),
        (
            "options with effects",
            json!({"kind": "Allocation", "title": "t", "proposer": "p",
            "options": [{"name": "a", "effect": plan(10)}, {"name": "b"}]}),
        ),
        (
            "a split with floors",
            json!({"kind": "Allocation", "title": "t", "proposer": "p", "split": {"sharePercent": 60},
            "options": [{"name": "a", "floor": {"member": "m"}}, {"name": "b", "floor": {"memberClass": "c"}}]}),
        ),
        (
            "a free-text question",
            json!({"kind": "FreeText", "title": "t", "proposer": "p"}),
        ),
        (
            "an empty title",
            json!({"kind": "FreeText", "title": "", "proposer": "p"}),
        ),
        (
            "a free-text effect",
            json!({"kind": "FreeText", "title": "t", "proposer": "p", "effect": plan(10)}),
        ),
        (
            "a free-text option effect",
            json!({"kind": "FreeText", "title": "t", "proposer": "p",
            "options": [{"name": "a", "effect": plan(10)}]}),
        ),
        (
            "the wrong effect",
            json!({"kind": "Bylaw", "title": "t", "proposer": "p", "effect": plan(10)}),
        ),
        (
            "a wrong option effect",
            json!({"kind": "SurplusPrice", "title": "t", "proposer": "p",
            "options": [{"name": "a", "effect": plan(10)}]}),
        ),
        (
            "duplicate options",
            json!({"kind": "FreeText", "title": "t", "proposer": "p",
            "options": [{"name": "a"}, {"name": "a"}]}),
        ),
        (
            "an effect and a floor",
            json!({"kind": "Allocation", "title": "t", "proposer": "p",
            "options": [{"name": "a", "effect": plan(10), "floor": {"member": "m"}}]}),
        ),
        (
            "a floor naming both",
            json!({"kind": "Allocation", "title": "t", "proposer": "p",
            "options": [{"name": "a", "floor": {"member": "m", "memberClass": "c"}}]}),
        ),
        (
            "a split of a bylaw",
            json!({"kind": "Bylaw", "title": "t", "proposer": "p", "split": {"sharePercent": 10},
            "effect": {"bylaw": {}}}),
        ),
        (
            "a split of nothing",
            json!({"kind": "Allocation", "title": "t", "proposer": "p", "split": {"sharePercent": 0}}),
        ),
        (
            "floors over 100%",
            json!({"kind": "Allocation", "title": "t", "proposer": "p",
            "effect": {"allocation": {"floors": [{"memberClass": "c", "sharePercent": 70}, {"member": "m", "sharePercent": 40}]}}}),
        ),
        (
            "a floor with neither",
            json!({"kind": "Allocation", "title": "t", "proposer": "p",
            "effect": {"allocation": {"floors": [{"sharePercent": 10}]}}}),
        ),
        (
            "a price under the floor",
            json!({"kind": "SurplusPrice", "title": "t", "proposer": "p",
            "effect": {"surplusPrice": {"maxSharePercent": 10, "currency": "EUR",
                "priceFloor": {"inputPerMillion": 10, "outputPerMillion": 10},
                "rateCard": [{"model": "x", "inputPerMillion": 5, "outputPerMillion": 20}]}}}),
        ),
    ]
}

#[tokio::test]
async fn the_gateway_and_the_api_server_accept_the_same_proposals() -> anyhow::Result<()> {
    let cluster = cluster()?;
    let admin = cluster.admin().await?;
    apply_crds(&admin).await?;
    with_temp_ns(&admin.clone(), "proposal-rules", |ns| async move {
        let api: Api<Proposal> = Api::namespaced(admin.clone(), &ns);
        let dry = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        let mut disagreements = Vec::new();
        for (i, (what, spec)) in specs().into_iter().enumerate() {
            let parsed: ProposalSpec = serde_json::from_value(spec)?;
            let ours = parsed.check();
            let theirs = api.create(&dry, &Proposal::new(&format!("p{i}"), parsed)).await;
            if ours.is_ok() != theirs.is_ok() {
                disagreements.push(format!("{what}: gateway {ours:?}, API server {:?}", theirs.err()));
            }
        }
        anyhow::ensure!(disagreements.is_empty(), "{disagreements:#?}");
        Ok::<_, anyhow::Error>(())
    })
    .await
}
