//! `waypoint controller`: our GatewayClass (`pingora-waypoint`) and the
//! controller that turns each Gateway of it into a running waypoint.
//!
//! Two kube-runtime controllers share one process: one accepts our
//! GatewayClass, the other reconciles Gateways of it (and is woken when a
//! class changes or an object it owns does). Every Gateway gets a
//! ServiceAccount, Deployment, Service, optionally an HPA and a PDB (all owned
//! by the Gateway, so the garbage collector removes them with it), and a
//! ClusterRoleBinding removed through our finalizer. See `desired` for the
//! shapes, `reconcile` for the passes.

pub mod desired;
pub mod gateway_api;
mod metrics;
mod names;
mod reconcile;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::source::kube::client::{ApiServer, ApiServerOptions, KubeError};
use crate::identity::istio_ca::CaAddress;
pub use desired::PodTemplateOptions;
use gateway_api::{GatewayClass, WaypointGateway};
pub use metrics::ControllerMetrics;
use metrics::ServedPath;
pub use names::{CONTROLLER_NAME, FIELD_MANAGER, FINALIZER};
use reconcile::{Context, ReconcileError};

pub const DEFAULT_CLASS: &str = "pingora-waypoint";

/// `waypoint controller` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllerArgs {
    /// The GatewayClass to serve (its spec.controllerName must be
    /// waypoint.pingora.dev/controller).
    #[arg(long, default_value = DEFAULT_CLASS)]
    pub class: String,
    /// Image of the waypoint pods.
    #[arg(long)]
    pub image: String,
    /// Istio's CA for the waypoint pods, HOST:PORT (e.g. istiod.istio-system.svc:15012).
    #[arg(long, value_name = "HOST:PORT")]
    pub ca_address: CaAddress,
    /// Kubeconfig (default: KUBECONFIG, ~/.kube/config, else in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context other than the current one.
    #[arg(long)]
    pub context: Option<String>,
    /// /healthz/ready: TCP from startup, 200 after the first sync.
    #[arg(long, default_value = "0.0.0.0:15021")]
    pub health_listen: SocketAddr,
    /// /stats/prometheus.
    #[arg(long, default_value = "0.0.0.0:15020")]
    pub metrics_listen: SocketAddr,
    /// Cluster domain used in the Gateway's status address.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
}

/// What the controller does, independent of the CLI.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    pub class: String,
    pub pod: PodTemplateOptions,
    pub health_listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub cluster_domain: String,
}

impl ControllerArgs {
    pub fn api_server_options(&self) -> ApiServerOptions {
        ApiServerOptions {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
        }
    }

    pub fn options(&self) -> ControllerOptions {
        ControllerOptions {
            class: self.class.clone(),
            pod: PodTemplateOptions {
                image: self.image.clone(),
                ca_address: self.ca_address.to_string(),
            },
            health_listen: self.health_listen,
            metrics_listen: self.metrics_listen,
            cluster_domain: self.cluster_domain.clone(),
        }
    }
}

#[derive(Debug, Error)]
pub enum ControllerError {
    #[error(transparent)]
    Kube(#[from] KubeError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the controller stopped unexpectedly")]
    Stopped,
}

/// A running controller; [`RunningController::shutdown`] stops it.
pub struct RunningController {
    pub health_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub metrics: Arc<ControllerMetrics>,
    stop: watch::Sender<bool>,
    controllers: JoinHandle<()>,
    servers: Vec<JoinHandle<()>>,
}

impl RunningController {
    /// Stops watching and reconciling (in-flight passes finish), then closes
    /// the listeners.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let _ = (&mut self.controllers).await;
        for server in self.servers.drain(..) {
            let _ = server.await;
        }
    }
}

/// Binds the health and metrics listeners, then starts the controllers on
/// the current runtime. Health turns 200 once Gateways and GatewayClasses
/// have been listed.
pub async fn start(
    api_server: ApiServer,
    options: ControllerOptions,
) -> Result<RunningController, ControllerError> {
    let bind = |addr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| ControllerError::Bind { addr, source })
    };
    let health = bind(options.health_listen).await?;
    let metrics_listener = bind(options.metrics_listen).await?;
    let local = |l: &TcpListener, fallback| l.local_addr().unwrap_or(fallback);
    let health_addr = local(&health, options.health_listen);
    let metrics_addr = local(&metrics_listener, options.metrics_listen);

    let metrics = Arc::new(ControllerMetrics::new());
    let (stop, stop_rx) = watch::channel(false);
    let servers = vec![
        tokio::spawn(metrics::serve(
            health,
            ServedPath::Health,
            metrics.clone(),
            stop_rx.clone(),
        )),
        tokio::spawn(metrics::serve(
            metrics_listener,
            ServedPath::Metrics,
            metrics.clone(),
            stop_rx.clone(),
        )),
    ];
    info!(%health_addr, %metrics_addr, class = %options.class, url = %api_server.url, "controller starting");
    let controllers = tokio::spawn(run_controllers(
        api_server,
        options,
        metrics.clone(),
        stop_rx,
    ));
    Ok(RunningController {
        health_addr,
        metrics_addr,
        metrics,
        stop,
        controllers,
        servers,
    })
}

/// Runs until `shutdown` resolves (the CLI passes SIGTERM/SIGINT).
pub async fn run(
    api_server: ApiServer,
    options: ControllerOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ControllerError> {
    let mut running = start(api_server, options).await?;
    tokio::select! {
        _ = shutdown => {
            running.shutdown().await;
            Ok(())
        }
        _ = &mut running.controllers => Err(ControllerError::Stopped),
    }
}

/// `waypoint controller`: connect, run until SIGTERM/SIGINT.
pub async fn main(args: ControllerArgs) -> Result<(), ControllerError> {
    let api_server = ApiServer::connect(&args.api_server_options()).await?;
    run(api_server, args.options(), crate::server::wait_for_signal()).await
}

async fn run_controllers(
    api_server: ApiServer,
    options: ControllerOptions,
    metrics: Arc<ControllerMetrics>,
    stop: watch::Receiver<bool>,
) {
    let client = api_server.client.clone();
    let stopped = || {
        let mut stop = stop.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
        .boxed()
        .shared()
    };
    let config = watcher::Config::default();
    let classes: Api<GatewayClass> = Api::all(client.clone());
    let gateways: Api<WaypointGateway> = Api::all(client.clone());

    let class_controller = Controller::new(classes.clone(), config.clone());
    let class_store = class_controller.store();
    let gateway_controller = Controller::new(gateways, config.clone());
    let gateway_store = gateway_controller.store();

    let ctx = Arc::new(Context {
        client: client.clone(),
        url: api_server.url.clone(),
        class: options.class.clone(),
        pod: options.pod.clone(),
        cluster_domain: options.cluster_domain.clone(),
        classes: class_store.clone(),
        metrics: metrics.clone(),
    });

    // Ready once both initial lists are in: from then on every reconcile sees
    // the cluster as it is, not an empty cache. The store's readiness signal
    // wakes only its most recent waiter (the controller's own runner), so we
    // look again every 100 ms instead of relying on being woken.
    let readiness = {
        let (classes, gateways, metrics) =
            (class_store.clone(), gateway_store.clone(), metrics.clone());
        tokio::spawn(async move {
            let both = || async {
                classes.wait_until_ready().await.is_ok()
                    && gateways.wait_until_ready().await.is_ok()
            };
            loop {
                match tokio::time::timeout(Duration::from_millis(100), both()).await {
                    Ok(true) => break,
                    Ok(false) => return,
                    Err(_) => continue,
                }
            }
            info!("first sync done; ready");
            metrics.set_ready();
        })
    };

    let class_run = class_controller
        .graceful_shutdown_on(stopped())
        .run(
            |class, ctx: Arc<Context>| async move {
                let result = reconcile::reconcile_class(class, ctx.clone()).await;
                ctx.metrics.reconciled("GatewayClass", result.is_ok());
                result
            },
            error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});

    // A class change (accepted, or no longer ours) re-examines its Gateways.
    let store = gateway_store.clone();
    let class_to_gateways = move |class: GatewayClass| {
        let name = class.metadata.name.unwrap_or_default();
        store
            .state()
            .into_iter()
            .filter(|g| g.spec.gateway_class_name == name)
            .map(|g| ObjectRef::from_obj(g.as_ref()))
            .collect::<Vec<_>>()
    };
    let gateway_run = gateway_controller
        .owns(Api::<ServiceAccount>::all(client.clone()), config.clone())
        .owns(Api::<Deployment>::all(client.clone()), config.clone())
        .owns(Api::<Service>::all(client.clone()), config.clone())
        .owns(
            Api::<HorizontalPodAutoscaler>::all(client.clone()),
            config.clone(),
        )
        .owns(
            Api::<PodDisruptionBudget>::all(client.clone()),
            config.clone(),
        )
        .watches(classes, config, class_to_gateways)
        .graceful_shutdown_on(stopped())
        .run(
            |gateway, ctx: Arc<Context>| async move {
                let result = reconcile::reconcile_gateway(gateway, ctx.clone()).await;
                ctx.metrics.reconciled("Gateway", result.is_ok());
                result
            },
            error_policy,
            ctx,
        )
        .for_each(|_| async {});

    futures::join!(class_run, gateway_run);
    readiness.abort();
    info!("controller stopped");
}

/// Failed passes retry after a pause (the watch also retries on any change).
fn error_policy<K>(object: Arc<K>, error: &ReconcileError, _ctx: Arc<Context>) -> Action
where
    K: kube::Resource<DynamicType = ()>,
{
    warn!(
        kind = %K::kind(&()),
        name = %object.meta().name.as_deref().unwrap_or_default(),
        namespace = %object.meta().namespace.as_deref().unwrap_or_default(),
        %error,
        "reconcile failed; retrying"
    );
    Action::requeue(Duration::from_secs(5))
}
