//! The database store (standalone mode): the co-op's objects, proposals, ballots and
//! delegations in SQLite (the default) or Postgres.
//!
//! * The manifests folder founds the co-op on the first start ([`DbStore::found`]);
//!   after that the database is the truth and passed proposals change it.
//! * A ballot is one row; a unique index on (proposal, member) keeps it to one per
//!   member, and triggers refuse every update and delete. It is inserted by a single
//!   statement that also checks the proposal is open, so a ballot cannot slip in after
//!   the close. (A ballot racing a withdrawal by milliseconds on Postgres may be recorded
//!   against the withdrawn proposal; a withdrawn proposal is never tallied.)
//! * Whenever the co-op's objects change, the Allocation in force gets the quotas the
//!   `synco-policies` solver computes (as the operator does in cluster mode) and a
//!   version counter is bumped, so every replica reloads.

use std::collections::BTreeMap;

use async_trait::async_trait;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, SqlErr, TransactionTrait,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use synco_crds::{
    Allocation, AllocationPhase, AllocationStatus, ComputePool, Cooperative, Customer, Delegation,
    DelegationSpec, InferenceModel, Manifest, Member, Proposal, ProposalPhase, ProposalStatus,
};
use synco_policies::crd::proposal as crd_lifecycle;
use synco_policies::lifecycle::{BallotForm, CastBallot, receipt};

use super::store::{GovernanceStore, StoreError, StoredBallot};
use crate::coop::CoopObjects;
use crate::db::{ballot, coop_object, coop_version, delegation, proposal};

/// Governance state in the gateway's database.
#[derive(Debug, Clone)]
pub struct DbStore {
    pub db: DatabaseConnection,
}

fn now_text() -> String {
    jiff::Timestamp::now().to_string()
}

fn phase_text(phase: ProposalPhase) -> String {
    format!("{phase:?}")
}

fn decode<T: DeserializeOwned>(body: &str) -> Result<T, StoreError> {
    Ok(serde_json::from_str(body)?)
}

/// A row of `coop_objects` for `object` of `kind`.
fn object_row<T: Serialize>(
    kind: &str,
    name: &str,
    object: &T,
) -> Result<coop_object::ActiveModel, StoreError> {
    Ok(coop_object::ActiveModel {
        key: Set(format!("{kind}/{name}")),
        kind: Set(kind.to_owned()),
        name: Set(name.to_owned()),
        body: Set(serde_json::to_string(object)?),
        updated_at: Set(now_text()),
    })
}

/// Inserts or replaces a co-op object.
async fn put_object<C: ConnectionTrait, T: Serialize>(
    db: &C,
    kind: &str,
    name: &str,
    object: &T,
) -> Result<(), StoreError> {
    coop_object::Entity::insert(object_row(kind, name, object)?)
        .on_conflict(
            OnConflict::column(coop_object::Column::Key)
                .update_columns([coop_object::Column::Body, coop_object::Column::UpdatedAt])
                .to_owned(),
        )
        .exec(db)
        .await?;
    Ok(())
}

/// Bumps the version every replica watches.
async fn bump<C: ConnectionTrait>(db: &C) -> Result<(), StoreError> {
    let updated = coop_version::Entity::update_many()
        .col_expr(
            coop_version::Column::Version,
            Expr::col(coop_version::Column::Version).add(1),
        )
        .filter(coop_version::Column::Id.eq(1))
        .exec(db)
        .await?;
    if updated.rows_affected == 0 {
        coop_version::Entity::insert(coop_version::ActiveModel {
            id: Set(1),
            version: Set(1),
        })
        .on_conflict(
            OnConflict::column(coop_version::Column::Id)
                .value(
                    coop_version::Column::Version,
                    Expr::col((coop_version::Entity, coop_version::Column::Version)).add(1),
                )
                .to_owned(),
        )
        .exec(db)
        .await?;
    }
    Ok(())
}

impl DbStore {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// The version of the co-op's objects (bumped on every change).
    ///
    /// # Errors
    ///
    /// The database cannot be read.
    pub async fn version(&self) -> Result<i64, StoreError> {
        Ok(coop_version::Entity::find_by_id(1)
            .one(&self.db)
            .await?
            .map_or(0, |v| v.version))
    }

    /// Founds the co-op from `manifests` if the database holds none yet: its objects,
    /// delegations, and proposals (each opened now under the bylaws, for its proposer).
    /// Votes in the folder are not ballots (members cast their own) and are skipped.
    /// Returns whether it founded.
    ///
    /// # Errors
    ///
    /// The database cannot be written, or a founding proposal cannot be opened.
    pub async fn found(&self, manifests: &[Manifest], now: i64) -> anyhow::Result<bool> {
        if coop_object::Entity::find().count(&self.db).await? > 0 {
            tracing::info!("the database holds the co-op already; the manifests folder only founds it");
            return Ok(false);
        }
        let objects = CoopObjects::from_manifests(manifests);
        let coop = objects.cooperative()?.clone();
        let txn = self.db.begin().await?;
        for m in manifests {
            let value = m.to_value()?;
            let name = value
                .pointer("/metadata/name")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned();
            match m {
                Manifest::Proposal(_) => {}
                Manifest::Vote(v) => tracing::warn!(
                    vote = %name,
                    member = %v.spec.member,
                    "skipped: a ballot is cast by its member through the API, not founded from a file"
                ),
                Manifest::Delegation(d) => {
                    delegation::Entity::insert(delegation::ActiveModel {
                        member: Set(d.spec.member.clone()),
                        delegate: Set(d.spec.delegate.clone()),
                        set_at: Set(now_text()),
                    })
                    .exec(&txn)
                    .await?;
                }
                other => put_object(&txn, other.kind(), &name, &value).await?,
            }
        }
        for m in manifests {
            if let Manifest::Proposal(p) = m {
                let name = p.metadata.name.clone().unwrap_or_default();
                let opened = crd_lifecycle::open(&coop, &objects.members, &p.spec, now, rand::random())
                    .map_err(|e| anyhow::anyhow!("founding proposal {name}: {e}"))?;
                let mut p = (**p).clone();
                p.metadata.creation_timestamp = Some(crd_lifecycle::time(now));
                insert_proposal(&txn, p, opened).await?;
            }
        }
        bump(&txn).await?;
        txn.commit().await?;
        self.refresh_allocations().await?;
        tracing::info!(
            members = objects.members.len(),
            models = objects.models.len(),
            "co-op founded from the manifests"
        );
        Ok(true)
    }

    /// Recomputes the Allocation statuses from the objects now: the newest version is in
    /// force with the quotas the solver gives (models at their planned capacity, as no
    /// operator measures them here); earlier ones are superseded, their quotas kept.
    /// Writes only what changed.
    ///
    /// # Errors
    ///
    /// The database cannot be read or written, or the allocation cannot be solved.
    pub async fn refresh_allocations(&self) -> anyhow::Result<()> {
        let objects = self.objects().await?;
        let Some(in_force) = objects.in_force().cloned() else {
            return Ok(());
        };
        let coop = objects.cooperative()?;
        let mut models = objects.models.clone();
        for m in &mut models {
            let planned = synco_policies::crd::planned_capacity(m);
            let status = m.status.get_or_insert_with(Default::default);
            if status.capacity_tokens_per_second == 0 {
                status.capacity_tokens_per_second = planned;
            }
        }
        let figures = synco_policies::crd::figures_for(
            coop,
            &in_force,
            &objects.members,
            &objects.customers,
            &models,
            &objects.pools,
        )?;
        let in_force_name = in_force.metadata.name.clone().unwrap_or_default();
        let mut changed = false;
        for a in &objects.allocations {
            let name = a.metadata.name.clone().unwrap_or_default();
            let current = a.status.clone().unwrap_or_default();
            let status = if name == in_force_name {
                AllocationStatus {
                    phase: AllocationPhase::InForce,
                    effective_from: current
                        .effective_from
                        .clone()
                        .or_else(|| Some(crd_lifecycle::time(jiff::Timestamp::now().as_second()))),
                    superseded_by: None,
                    capacity_tokens_per_second: figures.capacity_tokens_per_second,
                    surplus_tokens_per_second: figures.surplus_tokens_per_second,
                    quotas: figures.quotas.clone(),
                    ..current.clone()
                }
            } else {
                AllocationStatus {
                    phase: AllocationPhase::Superseded,
                    superseded_by: Some(in_force_name.clone()),
                    ..current.clone()
                }
            };
            if status != current {
                let mut a = a.clone();
                a.status = Some(status);
                put_object(&self.db, "Allocation", &name, &a).await?;
                changed = true;
            }
        }
        if changed {
            bump(&self.db).await?;
        }
        Ok(())
    }

    /// Open proposals whose deadline (plus `grace_seconds`) has passed at `now`.
    ///
    /// # Errors
    ///
    /// The database cannot be read.
    pub async fn due(&self, now: i64, grace_seconds: i64) -> Result<Vec<Proposal>, StoreError> {
        proposal::Entity::find()
            .filter(proposal::Column::Phase.eq(phase_text(ProposalPhase::Open)))
            .filter(proposal::Column::ClosesAt.lte(now - grace_seconds))
            .order_by_asc(proposal::Column::ClosesAt)
            .all(&self.db)
            .await?
            .iter()
            .map(|row| decode(&row.body))
            .collect()
    }

    /// Passed proposals whose effect is not applied yet.
    ///
    /// # Errors
    ///
    /// The database cannot be read.
    pub async fn passed(&self) -> Result<Vec<Proposal>, StoreError> {
        proposal::Entity::find()
            .filter(proposal::Column::Phase.eq(phase_text(ProposalPhase::Passed)))
            .all(&self.db)
            .await?
            .iter()
            .map(|row| decode(&row.body))
            .collect()
    }

    /// The earliest deadline of an open proposal.
    ///
    /// # Errors
    ///
    /// The database cannot be read.
    pub async fn next_deadline(&self) -> Result<Option<i64>, StoreError> {
        Ok(proposal::Entity::find()
            .filter(proposal::Column::Phase.eq(phase_text(ProposalPhase::Open)))
            .order_by_asc(proposal::Column::ClosesAt)
            .one(&self.db)
            .await?
            .and_then(|row| row.closes_at))
    }

    /// Moves `name` from `from` to `status`: written only if it is still in `from`, so
    /// that of two replicas closing at once exactly one does. Returns whether it wrote.
    ///
    /// # Errors
    ///
    /// The database cannot be written.
    pub async fn advance<C: ConnectionTrait>(
        db: &C,
        p: &Proposal,
        from: ProposalPhase,
        status: ProposalStatus,
    ) -> Result<bool, StoreError> {
        let name = p.metadata.name.clone().unwrap_or_default();
        let mut p = p.clone();
        let phase = status.phase;
        p.status = Some(status);
        let updated = proposal::Entity::update_many()
            .col_expr(proposal::Column::Phase, Expr::value(phase_text(phase)))
            .col_expr(proposal::Column::Body, Expr::value(serde_json::to_string(&p)?))
            .filter(proposal::Column::Name.eq(&name))
            .filter(proposal::Column::Phase.eq(phase_text(from)))
            .exec(db)
            .await?;
        Ok(updated.rows_affected == 1)
    }

    /// Applies `change` and marks `p` Applied with `status`, in one transaction, only if
    /// it is still Passed: the effect happens exactly once.
    ///
    /// # Errors
    ///
    /// The database cannot be written.
    pub async fn apply(
        &self,
        p: &Proposal,
        change: Option<synco_policies::crd::effect::Change>,
        status: ProposalStatus,
    ) -> anyhow::Result<bool> {
        use synco_policies::crd::effect::Change;
        let txn = self.db.begin().await?;
        if !Self::advance(&txn, p, ProposalPhase::Passed, status).await? {
            return Ok(false);
        }
        match change {
            None => {}
            Some(Change::Allocation(a)) => {
                put_object(
                    &txn,
                    "Allocation",
                    a.metadata.name.as_deref().unwrap_or_default(),
                    &a,
                )
                .await?;
            }
            Some(Change::Cooperative(spec)) => {
                let objects = self.objects().await?;
                let mut coop = objects.cooperative()?.clone();
                coop.spec = *spec;
                put_object(
                    &txn,
                    "Cooperative",
                    coop.metadata.name.as_deref().unwrap_or_default(),
                    &coop,
                )
                .await?;
            }
            Some(Change::Model(m)) => {
                put_object(
                    &txn,
                    "InferenceModel",
                    m.metadata.name.as_deref().unwrap_or_default(),
                    &m,
                )
                .await?;
            }
            Some(Change::Member(m)) => {
                put_object(&txn, "Member", m.metadata.name.as_deref().unwrap_or_default(), &m).await?;
            }
            Some(Change::Refunds(d)) => {
                // The books share this database: the refunds and the proposal's
                // Applied phase are written together, or neither is.
                let name = p.metadata.name.as_deref().unwrap_or_default();
                if let crate::books::Recorded::Before(before) =
                    crate::books::record_refunds_in(&txn, name, &d).await?
                {
                    tracing::warn!(
                        proposal = %name,
                        period = %d.period,
                        recorded_by = %before.proposal,
                        "the period's refunds were recorded before; not recording them twice"
                    );
                }
            }
        }
        bump(&txn).await?;
        txn.commit().await?;
        self.refresh_allocations().await?;
        Ok(true)
    }

    /// Writes one of the co-op's objects as it is (an administrator's act, as `kubectl
    /// apply` is in a cluster), and lets every replica reload.
    ///
    /// # Errors
    ///
    /// The database cannot be written.
    pub async fn put<T: Serialize + Sync>(&self, kind: &str, name: &str, object: &T) -> anyhow::Result<()> {
        put_object(&self.db, kind, name, object).await?;
        bump(&self.db).await?;
        self.refresh_allocations().await
    }

    /// Changes a member's standing (an administrator's act, as `kubectl edit member` is in
    /// a cluster). Returns whether the member exists.
    ///
    /// # Errors
    ///
    /// The database cannot be written.
    pub async fn set_standing(&self, member: &str, standing: synco_crds::Standing) -> anyhow::Result<bool> {
        let objects = self.objects().await?;
        let Some(mut m) = objects
            .members
            .into_iter()
            .find(|m| m.metadata.name.as_deref() == Some(member))
        else {
            return Ok(false);
        };
        m.spec.standing = standing;
        put_object(&self.db, "Member", member, &m).await?;
        bump(&self.db).await?;
        self.refresh_allocations().await?;
        Ok(true)
    }
}

async fn insert_proposal<C: ConnectionTrait>(
    db: &C,
    mut p: Proposal,
    opened: ProposalStatus,
) -> Result<Proposal, StoreError> {
    let name = p.metadata.name.clone().unwrap_or_default();
    let closes_at = opened.closes_at.as_ref().map(|t| t.0.as_second());
    let phase = opened.phase;
    p.status = Some(opened);
    let inserted = proposal::Entity::insert(proposal::ActiveModel {
        name: Set(name.clone()),
        phase: Set(phase_text(phase)),
        closes_at: Set(closes_at),
        body: Set(serde_json::to_string(&p)?),
        created_at: Set(now_text()),
    })
    .exec(db)
    .await;
    match inserted {
        Ok(_) => Ok(p),
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            Err(StoreError::Exists(name))
        }
        Err(e) => Err(e.into()),
    }
}

fn stored(row: ballot::Model) -> Result<StoredBallot, StoreError> {
    Ok(StoredBallot {
        cast: CastBallot {
            member: row.member,
            cast_at: row.cast_at,
            ballot: decode(&row.ballot)?,
        },
        comment: row.comment,
    })
}

#[async_trait]
impl GovernanceStore for DbStore {
    async fn objects(&self) -> Result<CoopObjects, StoreError> {
        let mut out = CoopObjects::default();
        for row in coop_object::Entity::find()
            .order_by_asc(coop_object::Column::Key)
            .all(&self.db)
            .await?
        {
            match row.kind.as_str() {
                "Cooperative" => out.cooperatives.push(decode::<Cooperative>(&row.body)?),
                "Member" => out.members.push(decode::<Member>(&row.body)?),
                "Customer" => out.customers.push(decode::<Customer>(&row.body)?),
                "ComputePool" => out.pools.push(decode::<ComputePool>(&row.body)?),
                "InferenceModel" => out.models.push(decode::<InferenceModel>(&row.body)?),
                "Allocation" => out.allocations.push(decode::<Allocation>(&row.body)?),
                other => tracing::warn!(kind = other, "unknown object kind in the database"),
            }
        }
        Ok(out)
    }

    async fn proposals(&self) -> Result<Vec<Proposal>, StoreError> {
        proposal::Entity::find()
            .all(&self.db)
            .await?
            .iter()
            .map(|row| decode(&row.body))
            .collect()
    }

    async fn proposal(&self, name: &str) -> Result<Option<Proposal>, StoreError> {
        proposal::Entity::find_by_id(name)
            .one(&self.db)
            .await?
            .map(|row| decode(&row.body))
            .transpose()
    }

    async fn create_proposal(
        &self,
        proposal: Proposal,
        opened: ProposalStatus,
    ) -> Result<Proposal, StoreError> {
        insert_proposal(&self.db, proposal, opened).await
    }

    async fn ballots(&self, proposal: &str) -> Result<Vec<StoredBallot>, StoreError> {
        ballot::Entity::find()
            .filter(ballot::Column::Proposal.eq(proposal))
            .order_by_asc(ballot::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(stored)
            .collect()
    }

    async fn record_ballot(
        &self,
        proposal_name: &str,
        member: &str,
        form: &BallotForm,
        comment: Option<&str>,
        now: i64,
    ) -> Result<CastBallot, StoreError> {
        let cast = CastBallot {
            member: member.to_owned(),
            cast_at: now,
            ballot: form.clone(),
        };
        let receipt = receipt(proposal_name, &cast);
        // One statement: the ballot goes in only while the proposal is open.
        let open = Query::select()
            .exprs([
                Expr::val(proposal_name),
                Expr::val(member),
                Expr::val(now),
                Expr::val(serde_json::to_string(form)?),
                Expr::val(comment.map(ToOwned::to_owned)),
                Expr::val(receipt),
            ])
            .from(proposal::Entity)
            .and_where(Expr::col(proposal::Column::Name).eq(proposal_name))
            .and_where(Expr::col(proposal::Column::Phase).eq(phase_text(ProposalPhase::Open)))
            .to_owned();
        let insert = Query::insert()
            .into_table(ballot::Entity)
            .columns([
                ballot::Column::Proposal,
                ballot::Column::Member,
                ballot::Column::CastAt,
                ballot::Column::Ballot,
                ballot::Column::Comment,
                ballot::Column::Receipt,
            ])
            .select_from(open)
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
            .to_owned();
        match self.db.execute(&insert).await {
            Ok(done) if done.rows_affected() == 1 => Ok(cast),
            Ok(_) => Err(StoreError::Refused(format!(
                "voting on {proposal_name} is not open"
            ))),
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                Err(StoreError::AlreadyVoted)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn withdraw(&self, p: &Proposal, _by: &str) -> Result<Proposal, StoreError> {
        let name = p.metadata.name.clone().unwrap_or_default();
        let mut status = p.status.clone().unwrap_or_default();
        status.phase = ProposalPhase::Withdrawn;
        status.decided_at = Some(crd_lifecycle::time(jiff::Timestamp::now().as_second()));
        let mut withdrawn = p.clone();
        withdrawn.status = Some(status);
        let no_ballots = Query::select()
            .expr(Expr::val(1))
            .from(ballot::Entity)
            .and_where(Expr::col(ballot::Column::Proposal).eq(name.as_str()))
            .to_owned();
        let updated = proposal::Entity::update_many()
            .col_expr(
                proposal::Column::Phase,
                Expr::value(phase_text(ProposalPhase::Withdrawn)),
            )
            .col_expr(
                proposal::Column::Body,
                Expr::value(serde_json::to_string(&withdrawn)?),
            )
            .filter(proposal::Column::Name.eq(&name))
            .filter(proposal::Column::Phase.eq(phase_text(ProposalPhase::Open)))
            .filter(Expr::exists(no_ballots).not())
            .exec(&self.db)
            .await?;
        if updated.rows_affected == 1 {
            Ok(withdrawn)
        } else {
            Err(StoreError::Refused(format!(
                "{name} can no longer be withdrawn: a ballot was cast or it closed"
            )))
        }
    }

    async fn delegations(&self) -> Result<Vec<Delegation>, StoreError> {
        Ok(delegation::Entity::find()
            .order_by_asc(delegation::Column::Member)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|d| {
                Delegation::new(
                    &d.member,
                    DelegationSpec {
                        member: d.member.clone(),
                        delegate: d.delegate,
                    },
                )
            })
            .collect())
    }

    async fn set_delegation(&self, member: &str, delegate: &str) -> Result<(), StoreError> {
        delegation::Entity::insert(delegation::ActiveModel {
            member: Set(member.to_owned()),
            delegate: Set(delegate.to_owned()),
            set_at: Set(now_text()),
        })
        .on_conflict(
            OnConflict::column(delegation::Column::Member)
                .update_columns([delegation::Column::Delegate, delegation::Column::SetAt])
                .to_owned(),
        )
        .exec(&self.db)
        .await?;
        Ok(())
    }

    async fn revoke_delegation(&self, member: &str) -> Result<bool, StoreError> {
        let deleted = delegation::Entity::delete_by_id(member).exec(&self.db).await?;
        Ok(deleted.rows_affected > 0)
    }
}

/// Ballot counts per proposal (for lists), in one query.
///
/// # Errors
///
/// The database cannot be read.
pub async fn ballot_counts(db: &DatabaseConnection) -> Result<BTreeMap<String, u64>, StoreError> {
    let mut out = BTreeMap::new();
    for row in ballot::Entity::find().all(db).await? {
        *out.entry(row.proposal).or_insert(0) += 1;
    }
    Ok(out)
}
