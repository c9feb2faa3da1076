//! One reconcile pass for a GatewayClass or a Gateway: read what is, apply
//! what should be, write status. Every write is idempotent (server-side apply,
//! status written only when it changes), so a pass can be repeated at any time
//! and the status writes it causes settle after one more pass.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;
use thiserror::Error;
use tracing::{info, warn};

use super::desired::{self, DesiredError, DesiredObjects, PodTemplateOptions};
use super::gateway_api::{
    now_rfc3339, set_condition, Condition, GatewayClass, GatewayStatus, GatewayStatusAddress,
    WaypointGateway,
};
use super::metrics::ControllerMetrics;
use super::names::{CONTROLLER_NAME, FIELD_MANAGER, FINALIZER};
use crate::config::source::kube::client::{describe, KubeError};

/// How often a settled object is looked at again, to repair drift nobody told us about.
const RESYNC: Duration = Duration::from_secs(600);

/// What every reconcile pass shares.
pub struct Context {
    pub client: kube::Client,
    /// The API server, for error messages.
    pub url: String,
    /// The GatewayClass name this controller serves.
    pub class: String,
    pub pod: PodTemplateOptions,
    pub cluster_domain: String,
    /// GatewayClasses as last seen by their watch.
    pub classes: Store<GatewayClass>,
    pub metrics: Arc<ControllerMetrics>,
}

#[derive(Debug, Error)]
pub enum ReconcileError {
    #[error("{0}")]
    Kube(#[from] KubeError),
    #[error("invalid Gateway: {0}")]
    Invalid(#[from] DesiredError),
}

impl Context {
    fn kube(&self, error: kube::Error) -> ReconcileError {
        ReconcileError::Kube(describe(&self.url, error))
    }

    /// Is `name` a GatewayClass this controller serves?
    fn is_ours(&self, class: &str) -> bool {
        class == self.class
            && self
                .classes
                .get(&ObjectRef::new(class))
                .is_some_and(|c| c.spec.controller_name == CONTROLLER_NAME)
    }
}

/// Accepts our GatewayClass: condition Accepted=True for its generation.
pub async fn reconcile_class(
    class: Arc<GatewayClass>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let name = class.name_any();
    if name != ctx.class || class.spec.controller_name != CONTROLLER_NAME {
        return Ok(Action::await_change());
    }
    let mut wanted = Condition::new(
        "Accepted",
        true,
        "Accepted",
        "handled by the pingora waypoint controller",
    );
    wanted.observed_generation = class.metadata.generation;
    let mut conditions = class
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let before = conditions.clone();
    set_condition(&mut conditions, wanted, &now_rfc3339());
    if conditions != before {
        let api: Api<GatewayClass> = Api::all(ctx.client.clone());
        let patch = json!({"status": {"conditions": conditions}});
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| ctx.kube(e))?;
        info!(class = %name, "GatewayClass accepted");
    }
    Ok(Action::requeue(RESYNC))
}

/// Turns one Gateway into its objects and status; on deletion, removes the
/// cluster-scoped binding and lets the garbage collector take the rest.
pub async fn reconcile_gateway(
    gateway: Arc<WaypointGateway>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let ns = gateway.namespace().to_string();
    let name = gateway.name_any();
    let has_finalizer = gateway.finalizers().iter().any(|f| f == FINALIZER);
    let ours = ctx.is_ours(&gateway.spec.gateway_class_name);

    if gateway.metadata.deletion_timestamp.is_some() || !ours {
        if has_finalizer {
            // Deleted, or moved to a class that is not ours: undo what we made.
            release(&gateway, &ctx, !ours).await?;
            info!(gateway = %format!("{ns}/{name}"), "cleaned up");
        }
        return Ok(Action::await_change());
    }
    if !has_finalizer {
        add_finalizer(&gateway, &ctx).await?;
    }
    let outcome = match desired::build(&gateway, &ctx.pod) {
        Ok(objects) => apply_all(&ns, objects, &ctx).await,
        Err(e) => Err(e.into()),
    };
    match outcome {
        Ok(service) => {
            write_gateway_status(&gateway, &ctx, Ok(&service)).await?;
            Ok(Action::requeue(RESYNC))
        }
        Err(e) => {
            // Say why on the Gateway too; the error itself drives the retry.
            if let Err(status_error) = write_gateway_status(&gateway, &ctx, Err(&e)).await {
                warn!(error = %status_error, "cannot write the Gateway's status");
            }
            Err(e)
        }
    }
}

/// Applies every object; returns the Service as the API server has it.
async fn apply_all(
    ns: &str,
    objects: DesiredObjects,
    ctx: &Context,
) -> Result<Service, ReconcileError> {
    let client = &ctx.client;
    apply(
        ctx,
        Api::<ServiceAccount>::namespaced(client.clone(), ns),
        &objects.service_account,
    )
    .await?;
    apply(
        ctx,
        Api::<ClusterRoleBinding>::all(client.clone()),
        &objects.cluster_role_binding,
    )
    .await?;
    apply(
        ctx,
        Api::<Deployment>::namespaced(client.clone(), ns),
        &objects.deployment,
    )
    .await?;
    let service = apply(
        ctx,
        Api::<Service>::namespaced(client.clone(), ns),
        &objects.service,
    )
    .await?;
    let name = objects.deployment.name_any();
    let hpa = Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), ns);
    match &objects.autoscaler {
        Some(desired) => drop(apply(ctx, hpa, desired).await?),
        None => delete_if_present(ctx, hpa, &name).await?,
    }
    let pdb = Api::<PodDisruptionBudget>::namespaced(client.clone(), ns);
    match &objects.disruption_budget {
        Some(desired) => drop(apply(ctx, pdb, desired).await?),
        None => delete_if_present(ctx, pdb, &name).await?,
    }
    Ok(service)
}

async fn apply<K>(ctx: &Context, api: Api<K>, object: &K) -> Result<K, ReconcileError>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let applied = api
        .patch(&object.name_any(), &params, &Patch::Apply(object))
        .await
        .map_err(|e| ctx.kube(e))?;
    ctx.metrics.applied(K::kind(&()).as_ref());
    Ok(applied)
}

async fn delete_if_present<K>(ctx: &Context, api: Api<K>, name: &str) -> Result<(), ReconcileError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {
            info!(kind = %K::kind(&()), name, "deleted, no longer asked for");
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(ctx.kube(e)),
    }
}

/// Adds our finalizer, guarded by the resourceVersion we read so another
/// writer's finalizer list is never overwritten.
async fn add_finalizer(gateway: &WaypointGateway, ctx: &Context) -> Result<(), ReconcileError> {
    let mut finalizers = gateway.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    patch_finalizers(gateway, ctx, finalizers).await
}

async fn patch_finalizers(
    gateway: &WaypointGateway,
    ctx: &Context,
    finalizers: Vec<String>,
) -> Result<(), ReconcileError> {
    let api: Api<WaypointGateway> = Api::namespaced(ctx.client.clone(), gateway.namespace());
    let patch = json!({"metadata": {
        "finalizers": finalizers,
        "resourceVersion": gateway.resource_version(),
    }});
    api.patch(
        &gateway.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(|e| ctx.kube(e))?;
    Ok(())
}

/// Deletes the ClusterRoleBinding (ownerReferences cannot tie a cluster-scoped
/// object to a namespaced Gateway), then drops the finalizer. When the Gateway
/// stays but left our class, the owned objects go too; when it is deleted,
/// the garbage collector removes them.
async fn release(
    gateway: &WaypointGateway,
    ctx: &Context,
    keep_gateway: bool,
) -> Result<(), ReconcileError> {
    let ns = gateway.namespace().to_string();
    let name = gateway.name_any();
    let crb = Api::<ClusterRoleBinding>::all(ctx.client.clone());
    delete_if_present(ctx, crb, &desired::cluster_role_binding_name(&ns, &name)).await?;
    if keep_gateway {
        let client = &ctx.client;
        delete_if_present(
            ctx,
            Api::<Deployment>::namespaced(client.clone(), &ns),
            &name,
        )
        .await?;
        delete_if_present(ctx, Api::<Service>::namespaced(client.clone(), &ns), &name).await?;
        delete_if_present(
            ctx,
            Api::<ServiceAccount>::namespaced(client.clone(), &ns),
            &name,
        )
        .await?;
        delete_if_present(
            ctx,
            Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), &ns),
            &name,
        )
        .await?;
        delete_if_present(
            ctx,
            Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns),
            &name,
        )
        .await?;
    }
    let finalizers = gateway
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    patch_finalizers(gateway, ctx, finalizers).await
}

/// Writes addresses and the Accepted/Programmed conditions, only when they
/// differ from what the Gateway already says.
async fn write_gateway_status(
    gateway: &WaypointGateway,
    ctx: &Context,
    outcome: Result<&Service, &ReconcileError>,
) -> Result<(), ReconcileError> {
    let current = gateway.status.clone().unwrap_or_default();
    let wanted = gateway_status(gateway, &ctx.cluster_domain, outcome, &now_rfc3339());
    if wanted == current {
        return Ok(());
    }
    let api: Api<WaypointGateway> = Api::namespaced(ctx.client.clone(), gateway.namespace());
    let patch = json!({"status": wanted});
    api.patch_status(
        &gateway.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(|e| ctx.kube(e))?;
    Ok(())
}

/// The status a Gateway should carry after a pass (pure; `now` stamps flips).
pub fn gateway_status(
    gateway: &WaypointGateway,
    cluster_domain: &str,
    outcome: Result<&Service, &ReconcileError>,
    now: &str,
) -> GatewayStatus {
    let mut status = gateway.status.clone().unwrap_or_default();
    let generation = gateway.metadata.generation;
    let ns = gateway.namespace().to_string();
    let name = gateway.name_any();
    let with_generation = |mut c: Condition| {
        c.observed_generation = generation;
        c
    };
    let (accepted, programmed) = match outcome {
        Ok(service) => {
            let mut addresses = vec![GatewayStatusAddress {
                type_: Some("Hostname".into()),
                value: desired::service_hostname(&ns, &name, cluster_domain),
            }];
            let cluster_ip = service.spec.as_ref().and_then(|s| s.cluster_ip.clone());
            if let Some(ip) = cluster_ip.filter(|ip| !ip.is_empty() && ip != "None") {
                addresses.push(GatewayStatusAddress {
                    type_: Some("IPAddress".into()),
                    value: ip,
                });
            }
            status.addresses = addresses;
            (
                Condition::new("Accepted", true, "Accepted", "resources are being managed"),
                Condition::new("Programmed", true, "Programmed", "resources applied"),
            )
        }
        Err(ReconcileError::Invalid(e)) => (
            Condition::new("Accepted", false, "Invalid", e.to_string()),
            Condition::new("Programmed", false, "Invalid", e.to_string()),
        ),
        Err(e) => (
            Condition::new("Accepted", true, "Accepted", "resources are being managed"),
            Condition::new(
                "Programmed",
                false,
                "Pending",
                format!("applying failed: {e}"),
            ),
        ),
    };
    set_condition(&mut status.conditions, with_generation(accepted), now);
    set_condition(&mut status.conditions, with_generation(programmed), now);
    status
}
