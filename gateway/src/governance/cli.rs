//! `synco-gateway governance ...`: the same operations as the members' API, for
//! administrators and scripts. Acting `--as` a member goes through the same service (and
//! so the same checks) as that member's own API calls. Output is JSON on stdout.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use synco_policies::lifecycle::{BallotForm, Position};

use super::closer::Closer;
use super::db::DbStore;
use super::export::{PublishedRecord, verify};
use super::{Filter, Governance, ProposalRequest, system_clock};
use crate::cli::{GovernanceArgs, GovernanceCommand};

fn print(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

fn pairs(what: &str, items: &[String]) -> anyhow::Result<BTreeMap<String, u32>> {
    items
        .iter()
        .map(|item| {
            let (option, n) = item
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--{what} wants option=number, not {item}"))?;
            Ok((option.to_owned(), n.parse()?))
        })
        .collect()
}

fn position(text: &str) -> anyhow::Result<Position> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).map_err(|_| {
        anyhow::anyhow!("--position is one of Yes, No, Abstain, Block or StandAside, not {text}")
    })
}

/// The service over the store the arguments name.
async fn service(args: &GovernanceArgs) -> anyhow::Result<(Governance, Option<DbStore>)> {
    let db = crate::db::connect(&crate::db::url(
        &args.db.data_dir,
        args.db.database_url.as_deref(),
    )?)
    .await?;
    match &args.db.namespace {
        None => {
            let store = DbStore::new(db.clone());
            Ok((
                Governance::new(Arc::new(store.clone()), db, system_clock()),
                Some(store),
            ))
        }
        Some(ns) => {
            let (client, watched) = crate::cluster::listed(ns).await?;
            let store = super::kube::KubeStore {
                namespace: ns.clone(),
                client,
                watched,
            };
            Ok((Governance::new(Arc::new(store), db, system_clock()), None))
        }
    }
}

fn standalone_only(store: Option<DbStore>) -> anyhow::Result<DbStore> {
    store.ok_or_else(|| {
        anyhow::anyhow!("in a cluster the operator closes proposals and members are edited with kubectl")
    })
}

/// Runs one governance command.
///
/// # Errors
///
/// The store cannot be reached, or the operation is refused (the message says why).
pub async fn run(args: GovernanceArgs) -> anyhow::Result<()> {
    if let GovernanceCommand::Verify { file } = &args.command {
        let text = std::fs::read_to_string(file)?;
        let published: PublishedRecord = serde_json::from_str(&text)?;
        let found = verify(&published)?;
        print(&found)?;
        anyhow::ensure!(
            found.problems.is_empty(),
            "the recount does not match the record: {}",
            found.problems.join("; ")
        );
        return Ok(());
    }
    let (g, store) = service(&args).await?;
    match args.command {
        GovernanceCommand::Verify { .. } => Ok(()),
        GovernanceCommand::List { phase } => {
            let phase = phase
                .map(|p| serde_json::from_value(serde_json::Value::String(p)))
                .transpose()?;
            print(&g.list(Filter { phase }).await?)
        }
        GovernanceCommand::Show { name } => print(&g.get(&name).await?),
        GovernanceCommand::Propose { member, file } => {
            let text = std::fs::read_to_string(&file)?;
            let request: ProposalRequest =
                serde_yaml_ng::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            print(&g.propose(&member, request).await?)
        }
        GovernanceCommand::Vote {
            name,
            member,
            position: p,
            approve,
            rank,
            score,
            points,
            comment,
        } => {
            let form = BallotForm {
                position: p.as_deref().map(position).transpose()?,
                approvals: approve,
                ranking: rank,
                scores: score.as_deref().map(|s| pairs("score", s)).transpose()?,
                points: points.as_deref().map(|s| pairs("points", s)).transpose()?,
            };
            print(&g.cast(&member, &name, form, comment).await?)
        }
        GovernanceCommand::Comment {
            name,
            member,
            text,
            reply_to,
        } => print(&g.comment(&member, &name, &text, reply_to).await?),
        GovernanceCommand::Withdraw { name, member } => print(&g.withdraw(&member, &name).await?),
        GovernanceCommand::Delegate { member, to, revoke } => match (to, revoke) {
            (Some(to), false) => print(&g.delegate(&member, &to).await?),
            _ => print(&g.revoke(&member).await?),
        },
        GovernanceCommand::Export { name, out } => {
            let record = g.record(&name).await?;
            match out {
                Some(path) => {
                    std::fs::write(&path, serde_json::to_vec_pretty(&record)?)?;
                    Ok(())
                }
                None => print(&record),
            }
        }
        GovernanceCommand::CloseDue => {
            let store = standalone_only(store)?;
            let decided = Closer::new(store, system_clock()).run_once().await?;
            print(&decided)
        }
        GovernanceCommand::Suspend { member } | GovernanceCommand::Reinstate { member }
            if store.is_none() =>
        {
            anyhow::bail!("edit Member {member} with kubectl in a cluster")
        }
        GovernanceCommand::Suspend { member } => {
            let store = standalone_only(store)?;
            anyhow::ensure!(
                store
                    .set_standing(&member, synco_crds::Standing::Suspended)
                    .await?,
                "no member {member}"
            );
            print(&serde_json::json!({"member": member, "standing": "Suspended"}))
        }
        GovernanceCommand::Reinstate { member } => {
            let store = standalone_only(store)?;
            anyhow::ensure!(
                store.set_standing(&member, synco_crds::Standing::Active).await?,
                "no member {member}"
            );
            print(&serde_json::json!({"member": member, "standing": "Active"}))
        }
    }
}
