//! Budgets shared by every replica, leased from the database in slices.
//!
//! A budget (a caller's monthly tokens, or a customer's prepaid credit) is a row
//! `(account, period, total, granted)`. A replica takes a slice with one atomic
//! statement, `UPDATE ... SET granted = granted + n WHERE ... AND granted + n <= total`,
//! and serves from its slice locally. Each request *reserves* its worst case (prompt
//! estimate plus `max_tokens`) from the local slice before it runs and gives back
//! what it did not use when it ends. So:
//!
//! - the sum of all slices never exceeds the total, whatever the replicas do;
//! - a request is never admitted without its worst case reserved, so a burst cannot
//!   overspend; the only overshoot is a request that uses more than its reservation
//!   (an engine reporting more prompt tokens than the conservative estimate), which
//!   is charged, counted in `synco_gateway_budget_overshoot_tokens_total`, and bounded
//!   per request by that excess;
//! - what a crash (`kill -9`) or a replica holding an unused slice costs is the other
//!   way round: at most `replicas × slice` units the caller cannot use until the
//!   period ends (slices are given back on graceful shutdown).
//!
//! A request whose worst case does not fit while requests of the same account are
//! in flight on this replica waits (up to `wait`) for them to settle, since they
//! usually use less than they reserved; with nothing in flight it is refused at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};

use crate::db::lease;

type Key = (String, String);

/// Why a reservation failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("budget exhausted")]
    Exhausted,
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
}

#[derive(Debug, Default)]
struct Pool {
    /// Leased from the database and not reserved by a request.
    local: u64,
    /// Reserved by requests in flight.
    held: u64,
    /// The total last written to the database.
    total: Option<u64>,
}

#[derive(Debug)]
struct Inner {
    db: DatabaseConnection,
    slice: u64,
    pools: Mutex<HashMap<Key, Pool>>,
    /// One lease at a time per account, so a burst takes one slice, not one each.
    leasing: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
    /// How long a request waits for requests in flight to settle.
    wait: std::time::Duration,
    /// Woken whenever a reservation is settled or given back.
    settled: tokio::sync::Notify,
}

/// The replica's view of the shared budgets.
#[derive(Debug, Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

/// Units reserved for one request; `settle` charges what was used and gives back the rest.
#[derive(Debug)]
pub struct Hold {
    inner: Arc<Inner>,
    key: Key,
    amount: u64,
}

impl Ledger {
    /// `slice`: units leased at a time (the larger, the fewer database round trips,
    /// the more a crashed replica strands).
    /// `wait`: how long a request waits for requests in flight to settle.
    pub fn new(db: DatabaseConnection, slice: u64, wait: std::time::Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                slice: slice.max(1),
                pools: Mutex::default(),
                leasing: Mutex::default(),
                wait,
                settled: tokio::sync::Notify::new(),
            }),
        }
    }

    /// The database the budgets are kept in.
    #[must_use]
    pub fn db(&self) -> &DatabaseConnection {
        &self.inner.db
    }

    fn take_local(&self, key: &Key, need: u64) -> bool {
        let Ok(mut pools) = self.inner.pools.lock() else {
            return false;
        };
        let pool = pools.entry(key.clone()).or_default();
        if pool.local >= need {
            pool.local -= need;
            pool.held += need;
            true
        } else {
            false
        }
    }

    /// Reserves `need` units of `account`'s budget for `period` (whose total is `total`).
    pub async fn reserve(
        &self,
        account: &str,
        period: &str,
        total: u64,
        need: u64,
    ) -> Result<Hold, LedgerError> {
        let key = (account.to_owned(), period.to_owned());
        // Made only once the units are taken: dropping a Hold gives its units back.
        let hold = || Hold {
            inner: self.inner.clone(),
            key: key.clone(),
            amount: need,
        };
        if self.take_local(&key, need) {
            return Ok(hold());
        }
        let lock = {
            let Ok(mut leasing) = self.inner.leasing.lock() else {
                return Err(LedgerError::Exhausted);
            };
            leasing.entry(key.clone()).or_default().clone()
        };
        let deadline = tokio::time::Instant::now() + self.inner.wait;
        let Ok(_leasing) = tokio::time::timeout_at(deadline, lock.lock()).await else {
            return Err(LedgerError::Exhausted);
        };
        loop {
            // Registered before looking, so that a settle in between is not missed.
            let settled = self.inner.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            if self.take_local(&key, need) {
                return Ok(hold());
            }
            self.ensure_total(&key, total).await?;
            let local = self.pool_local(&key);
            let shortfall = need.saturating_sub(local);
            // A whole slice if there is one, else exactly what this request lacks.
            let leased = if self.lease(&key, self.inner.slice.max(shortfall)).await? {
                self.inner.slice.max(shortfall)
            } else if self.lease(&key, shortfall).await? {
                shortfall
            } else if self.pool_held(&key) > 0 {
                // Requests in flight here may give some back: wait for one to settle.
                if tokio::time::timeout_at(deadline, settled).await.is_err() {
                    return Err(LedgerError::Exhausted);
                }
                continue;
            } else {
                return Err(LedgerError::Exhausted);
            };
            if let Ok(mut pools) = self.inner.pools.lock() {
                pools.entry(key.clone()).or_default().local += leased;
            }
        }
    }

    fn pool_held(&self, key: &Key) -> u64 {
        self.inner
            .pools
            .lock()
            .ok()
            .and_then(|p| p.get(key).map(|p| p.held))
            .unwrap_or(0)
    }

    fn pool_local(&self, key: &Key) -> u64 {
        self.inner
            .pools
            .lock()
            .ok()
            .and_then(|p| p.get(key).map(|p| p.local))
            .unwrap_or(0)
    }

    /// Writes the budget's total (once per process and whenever it changes).
    async fn ensure_total(&self, key: &Key, total: u64) -> Result<(), LedgerError> {
        let known = self
            .inner
            .pools
            .lock()
            .ok()
            .and_then(|p| p.get(key).and_then(|p| p.total));
        if known == Some(total) {
            return Ok(());
        }
        lease::Entity::insert(lease::ActiveModel {
            account: Set(key.0.clone()),
            period: Set(key.1.clone()),
            total: Set(i64::try_from(total).unwrap_or(i64::MAX)),
            granted: Set(0),
        })
        .on_conflict(
            OnConflict::columns([lease::Column::Account, lease::Column::Period])
                .update_column(lease::Column::Total)
                .to_owned(),
        )
        .exec_without_returning(&self.inner.db)
        .await?;
        if let Ok(mut pools) = self.inner.pools.lock() {
            pools.entry(key.clone()).or_default().total = Some(total);
        }
        Ok(())
    }

    /// The atomic lease: true if `n` units were granted.
    async fn lease(&self, key: &Key, n: u64) -> Result<bool, LedgerError> {
        if n == 0 {
            return Ok(true);
        }
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let result = lease::Entity::update_many()
            .col_expr(
                lease::Column::Granted,
                sea_orm::ExprTrait::add(Expr::col(lease::Column::Granted), n),
            )
            .filter(lease::Column::Account.eq(key.0.as_str()))
            .filter(lease::Column::Period.eq(key.1.as_str()))
            .filter(sea_orm::ExprTrait::lte(
                sea_orm::ExprTrait::add(Expr::col(lease::Column::Granted), n),
                Expr::col(lease::Column::Total),
            ))
            .exec(&self.inner.db)
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// Gives every unused slice back to the database (graceful shutdown).
    pub async fn release_all(&self) {
        let pools: Vec<(Key, u64)> = match self.inner.pools.lock() {
            Ok(mut pools) => pools
                .iter_mut()
                .filter(|(_, p)| p.local > 0)
                .map(|(k, p)| (k.clone(), std::mem::take(&mut p.local)))
                .collect(),
            Err(_) => return,
        };
        for ((account, period), local) in pools {
            let n = i64::try_from(local).unwrap_or(i64::MAX);
            let result = lease::Entity::update_many()
                .col_expr(
                    lease::Column::Granted,
                    sea_orm::ExprTrait::sub(Expr::col(lease::Column::Granted), n),
                )
                .filter(lease::Column::Account.eq(account.as_str()))
                .filter(lease::Column::Period.eq(period.as_str()))
                .exec(&self.inner.db)
                .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, %account, %period, units = local, "could not give an unused budget slice back");
            }
        }
    }
}

impl Hold {
    /// Charges `used` units and returns the rest of the reservation to the local slice.
    pub fn settle(mut self, used: u64) {
        let amount = std::mem::take(&mut self.amount);
        {
            let Ok(mut pools) = self.inner.pools.lock() else {
                return;
            };
            let pool = pools.entry(self.key.clone()).or_default();
            pool.held = pool.held.saturating_sub(amount);
            if used <= amount {
                pool.local += amount - used;
            } else {
                // Used more than reserved: take it from the slice if there is some; what
                // is left is overshoot.
                let excess = used - amount;
                let covered = excess.min(pool.local);
                pool.local -= covered;
                if excess > covered {
                    metrics::counter!("synco_gateway_budget_overshoot_tokens_total")
                        .increment(excess - covered);
                    tracing::warn!(account = %self.key.0, units = excess - covered, "used more than reserved");
                }
            }
        }
        self.inner.settled.notify_waiters();
    }
}

impl Drop for Hold {
    /// A reservation never settled (the request was refused later on) is given back whole.
    fn drop(&mut self) {
        if self.amount == 0 {
            return;
        }
        if let Ok(mut pools) = self.inner.pools.lock() {
            let pool = pools.entry(self.key.clone()).or_default();
            pool.held = pool.held.saturating_sub(self.amount);
            pool.local += self.amount;
        }
        self.inner.settled.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn ledger(slice: u64) -> Ledger {
        let db = crate::db::connect("sqlite::memory:").await.unwrap();
        Ledger::new(db, slice, std::time::Duration::from_millis(200))
    }

    #[tokio::test]
    async fn a_refused_reservation_gives_nothing_back() {
        let ledger = ledger(10).await;
        let first = ledger.reserve("tokens:a", "2026-11", 100, 60).await.unwrap();
        assert!(matches!(
            ledger.reserve("tokens:a", "2026-11", 100, 60).await,
            Err(LedgerError::Exhausted)
        ));
        first.settle(60);
        // 40 left, whatever was refused before.
        assert!(ledger.reserve("tokens:a", "2026-11", 100, 41).await.is_err());
        ledger
            .reserve("tokens:a", "2026-11", 100, 40)
            .await
            .unwrap()
            .settle(40);
        assert!(ledger.reserve("tokens:a", "2026-11", 100, 1).await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_reservations_never_use_more_than_the_total() {
        let ledger = ledger(25).await;
        let tasks: Vec<_> = (0..300)
            .map(|i| {
                let ledger = ledger.clone();
                tokio::spawn(async move {
                    let need = 5 + i % 20;
                    match ledger.reserve("tokens:b", "2026-11", 1000, need).await {
                        Ok(hold) => {
                            tokio::task::yield_now().await;
                            // Uses up to what it reserved.
                            let used = need - i % 3;
                            hold.settle(used);
                            used
                        }
                        Err(_) => 0,
                    }
                })
            })
            .collect();
        let mut used = 0;
        for t in tasks {
            used += t.await.unwrap();
        }
        assert!(used <= 1000, "used {used}");
        assert!(used > 900, "the budget was not used up: {used}");
    }

    #[tokio::test]
    async fn a_request_that_does_not_fit_waits_for_one_in_flight_to_settle() {
        let ledger = ledger(100).await;
        let first = ledger.reserve("tokens:w", "p", 100, 80).await.unwrap();
        let waiting = {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                ledger
                    .reserve("tokens:w", "p", 100, 50)
                    .await
                    .map(|h| h.settle(50))
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "refused while a request was in flight");
        // The first used 30 of its 80: 70 are free, the waiting request fits.
        first.settle(30);
        waiting.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn dropping_an_unsettled_hold_returns_it_and_release_all_returns_slices() {
        let ledger = ledger(50).await;
        drop(ledger.reserve("tokens:c", "p", 100, 30).await.unwrap());
        ledger.reserve("tokens:c", "p", 100, 100).await.unwrap().settle(0);
        ledger.release_all().await;
        let row = lease::Entity::find()
            .one(&ledger.inner.db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.granted, 0, "{row:?}");
    }
}
