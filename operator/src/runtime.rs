//! Wiring: every controller with its watches, and the metrics server.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::core::NamespaceResourceScope;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, ObjectRef, reflector};
use kube::runtime::watcher::{self, watcher};
use kube::{Resource, ResourceExt as _};
use synco_crds::{Allocation, ComputePool, Cooperative, Customer, InferenceModel, Member, Proposal, Vote};
use tokio_util::sync::CancellationToken;

use crate::context::{Caches, Context};
use crate::controllers::{allocation, member, model, pool, proposal};

fn api<K>(ctx: &Context) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    match &ctx.settings.namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    }
}

/// Runs every controller until `stop` is cancelled, then waits for in-flight reconciles.
pub async fn run_controllers(mut ctx: Context, stop: CancellationToken) {
    let wc = watcher::Config::default;
    let (members, members_writer) = reflector::store();
    let (customers, customers_writer) = reflector::store();
    let (models, models_writer) = reflector::store();
    let reflect = |stream: futures::stream::BoxStream<'static, ()>| {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = stream.for_each(|_| async {}) => {}
                () = stop.cancelled() => {}
            }
        })
    };
    let caches = [
        reflect(
            reflector(members_writer, watcher(api::<Member>(&ctx), wc()))
                .default_backoff()
                .map(|_| ())
                .boxed(),
        ),
        reflect(
            reflector(customers_writer, watcher(api::<Customer>(&ctx), wc()))
                .default_backoff()
                .map(|_| ())
                .boxed(),
        ),
        reflect(
            reflector(models_writer, watcher(api::<InferenceModel>(&ctx), wc()))
                .default_backoff()
                .map(|_| ())
                .boxed(),
        ),
    ];
    let ready = async {
        members.wait_until_ready().await.is_ok()
            && customers.wait_until_ready().await.is_ok()
            && models.wait_until_ready().await.is_ok()
    };
    tokio::select! {
        ok = ready => if !ok { return },
        () = stop.cancelled() => return,
    }
    ctx.caches = Some(Arc::new(Caches {
        members,
        customers,
        models,
    }));
    let shared = Arc::new(ctx.clone());
    let drain = |s: CancellationToken| async move { s.cancelled().await };

    let proposals = Controller::new(api::<Proposal>(&ctx), wc())
        .watches(api::<Vote>(&ctx), wc(), |v: Vote| {
            v.namespace()
                .map(|ns| ObjectRef::<Proposal>::new(&v.spec.proposal).within(&ns))
        })
        .graceful_shutdown_on(drain(stop.clone()))
        .run(proposal::reconcile, proposal::error_policy, shared.clone())
        .for_each(|_| async {});

    let allocations = Controller::new(api::<Allocation>(&ctx), wc());
    let store = allocations.store();
    let (s1, s2, s3, s4, s5) = (store.clone(), store.clone(), store.clone(), store.clone(), store);
    let allocations = allocations
        .watches(api::<Member>(&ctx), wc(), move |m: Member| {
            allocation::in_force_ref(&s1, m.namespace())
        })
        .watches(api::<Customer>(&ctx), wc(), move |c: Customer| {
            allocation::in_force_ref(&s2, c.namespace())
        })
        .watches(api::<InferenceModel>(&ctx), wc(), move |m: InferenceModel| {
            allocation::in_force_ref(&s3, m.namespace())
        })
        .watches(api::<Cooperative>(&ctx), wc(), move |c: Cooperative| {
            allocation::in_force_ref(&s4, c.namespace())
        })
        // Contributed nodes raise their members' floors when the bylaws say so.
        .watches(api::<ComputePool>(&ctx), wc(), move |p: ComputePool| {
            allocation::in_force_ref(&s5, p.namespace())
        })
        .graceful_shutdown_on(drain(stop.clone()))
        .run(allocation::reconcile, allocation::error_policy, shared.clone())
        .for_each(|_| async {});

    let pools = Controller::new(api::<ComputePool>(&ctx), wc());
    let pool_store = pools.store();
    let pools = pools
        .watches(Api::<Node>::all(ctx.client.clone()), wc(), move |_: Node| {
            pool_store
                .state()
                .iter()
                .map(|p| ObjectRef::from_obj(p.as_ref()))
                .collect::<Vec<_>>()
        })
        .watches(api::<InferenceModel>(&ctx), wc(), |m: InferenceModel| {
            let ns = m.namespace()?;
            m.spec.pool.map(|p| ObjectRef::<ComputePool>::new(&p).within(&ns))
        })
        .graceful_shutdown_on(drain(stop.clone()))
        .run(pool::reconcile, pool::error_policy, shared.clone())
        .for_each(|_| async {});

    let models = Controller::new(api::<InferenceModel>(&ctx), wc());
    let model_store = models.store();
    let scaling_store = models.store();
    let models = models
        .owns(api::<Deployment>(&ctx), wc())
        .watches(api::<ComputePool>(&ctx), wc(), move |p: ComputePool| {
            let (ns, name) = (p.namespace(), p.name_any());
            model_store
                .state()
                .iter()
                .filter(|m| m.namespace() == ns && m.spec.pool.as_deref() == Some(name.as_str()))
                .map(|m| ObjectRef::from_obj(m.as_ref()))
                .collect::<Vec<_>>()
        })
        // The gateways' demand: a model that scales is looked at whenever it changes.
        .watches(
            api::<Lease>(&ctx),
            wc().labels(synco_crds::demand::DEMAND_LABEL),
            move |l: Lease| {
                let ns = l.namespace();
                scaling_store
                    .state()
                    .iter()
                    .filter(|m| m.namespace() == ns && m.spec.scaling().is_some())
                    .map(|m| ObjectRef::from_obj(m.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(drain(stop.clone()))
        .run(model::reconcile, model::error_policy, shared.clone())
        .for_each(|_| async {});

    let members = Controller::new(api::<Member>(&ctx), wc());
    let member_store = members.store();
    let members = members
        .watches(api::<Cooperative>(&ctx), wc(), move |c: Cooperative| {
            let ns = c.namespace();
            member_store
                .state()
                .iter()
                .filter(|m| m.namespace() == ns)
                .map(|m| ObjectRef::from_obj(m.as_ref()))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(drain(stop.clone()))
        .run(member::reconcile_member, member::error_policy, shared.clone())
        .for_each(|_| async {});

    let customers = Controller::new(api::<Customer>(&ctx), wc())
        .graceful_shutdown_on(drain(stop.clone()))
        .run(member::reconcile_customer, member::error_policy, shared)
        .for_each(|_| async {});

    tokio::join!(proposals, allocations, pools, models, members, customers);
    for cache in caches {
        let _ = cache.await;
    }
    tracing::info!("controllers stopped");
}

/// Binds `addr` for listening; with `reuse_port`, other sockets of the same user may bind
/// it too (`SO_REUSEPORT`) and the kernel spreads connections over them.
pub fn bind(addr: SocketAddr, reuse_port: bool) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(reuse_port)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Serves `/metrics` (Prometheus text) and `/healthz` on `addr` until `stop`.
pub async fn serve_metrics(
    addr: SocketAddr,
    reuse_port: bool,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let handle = crate::metrics::prometheus();
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                async move { handle.map(|h| h.render()).unwrap_or_default() }
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    let listener = bind(addr, reuse_port)?;
    tracing::info!(%addr, reuse_port, "serving /metrics");
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::bind;

    #[tokio::test]
    async fn a_port_is_shared_only_when_both_ask() {
        let first = bind("127.0.0.1:0".parse().unwrap(), true).unwrap();
        let addr = first.local_addr().unwrap();
        // A rolling update on one node's network: the new replica binds beside the old.
        let second = bind(addr, true).unwrap();
        assert_eq!(second.local_addr().unwrap(), addr);
        // Without the option the port stays the first one's.
        let refused = bind(addr, false).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::AddrInUse);
        let alone = bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let taken = bind(alone.local_addr().unwrap(), true).unwrap_err();
        assert_eq!(taken.kind(), std::io::ErrorKind::AddrInUse);
    }
}
