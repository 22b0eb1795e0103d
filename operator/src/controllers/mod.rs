//! One module per controller, plus lookups they share.

pub mod allocation;
pub mod effect;
pub mod member;
pub mod model;
pub mod model_objects;
pub mod pool;
pub mod proposal;
pub mod scale;

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use synco_crds::Cooperative;

use kube::runtime::reflector::Store;

use crate::context::{Caches, Context};
use crate::error::{Error, Result};

/// The Cooperative of a namespace: the one there (the first by name if, wrongly, there
/// are several).
pub async fn cooperative(ctx: &Context, namespace: &str) -> Result<Cooperative> {
    let api: Api<Cooperative> = Api::namespaced(ctx.client.clone(), namespace);
    let mut all = api.list(&ListParams::default()).await?.items;
    all.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    all.into_iter().next().ok_or_else(|| Error::Missing {
        kind: "Cooperative",
        name: String::new(),
        namespace: namespace.to_owned(),
    })
}

/// Lists every object of a kind in a namespace.
pub async fn list<K>(ctx: &Context, namespace: &str) -> Result<Vec<K>>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    Ok(api.list(&ListParams::default()).await?.items)
}

/// Every object of a kind in a namespace, from the watch cache when there is one.
pub async fn cached<K>(ctx: &Context, namespace: &str, pick: fn(&Caches) -> &Store<K>) -> Result<Vec<K>>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Ok(cached_arcs(ctx, namespace, pick)
        .await?
        .into_iter()
        .map(|o| o.as_ref().clone())
        .collect())
}

/// As [`cached`], without copying the objects out of the cache.
pub async fn cached_arcs<K>(
    ctx: &Context,
    namespace: &str,
    pick: fn(&Caches) -> &Store<K>,
) -> Result<Vec<Arc<K>>>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    match &ctx.caches {
        Some(caches) => Ok(pick(caches)
            .state()
            .into_iter()
            .filter(|o| o.meta().namespace.as_deref() == Some(namespace))
            .collect()),
        None => Ok(list(ctx, namespace).await?.into_iter().map(Arc::new).collect()),
    }
}

/// Requeues at `at` (a few milliseconds after, so that the moment has surely come), or
/// at once if it has passed.
#[must_use]
pub fn requeue_at(now: Timestamp, at: Timestamp) -> Action {
    let wait = Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO);
    Action::requeue(wait + Duration::from_millis(20))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requeue_waits_until_just_after_the_moment() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let later: Timestamp = "2026-01-01T00:00:05Z".parse().unwrap();
        assert_eq!(
            requeue_at(now, later),
            Action::requeue(Duration::from_millis(5020))
        );
        assert_eq!(requeue_at(later, now), Action::requeue(Duration::from_millis(20)));
    }
}
