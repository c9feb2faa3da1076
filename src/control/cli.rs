//! The istioctl-style waypoint commands: `generate`, `apply`, `list`,
//! `delete`, `status` (`istioctl waypoint …` without the `waypoint`).
//!
//! Each command is a clap `Args` struct plus an async function in its own
//! file; `main.rs` only parses and runs them. This module owns what they
//! share: the cluster flags, the namespace rules, the error type, and the
//! reads every command makes (the namespace, our Gateways). Building the
//! Gateway object is `control::gateway`'s job; connecting and turning client
//! errors into one line is `config::source::kube::client`'s.

use std::path::PathBuf;

use clap::Args;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use thiserror::Error;
use tracing::debug;

use super::gateway::{GatewayError, WaypointGateway, WAYPOINT_CLASS};
use crate::config::source::kube::client::{ApiServer, ApiServerOptions, KubeError};

mod apply;
mod delete;
mod generate;
mod list;
mod status;
mod table;

pub use apply::{apply, WaypointApplyArgs};
pub use delete::{delete, WaypointDeleteArgs};
pub use generate::{generate, WaypointArgs, WaypointGenerateArgs};
pub use list::{list, WaypointListArgs};
pub use status::{status, WaypointStatusArgs};

/// Field manager of our server-side applies (shows in `managedFields`).
pub const FIELD_MANAGER: &str = "waypoint";

/// Which API server to talk to; the same flags as kubectl and istioctl.
#[derive(Args, Debug, Clone, Default)]
pub struct ApiServerArgs {
    /// Kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else in-cluster).
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use instead of the current one.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

impl ApiServerArgs {
    fn options(&self) -> ApiServerOptions {
        ApiServerOptions {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
        }
    }

    /// Whether the user named a kubeconfig or context, so failing to load
    /// it is an error even where a cluster is optional.
    fn is_explicit(&self) -> bool {
        self.kubeconfig.is_some() || self.context.is_some()
    }
}

/// Why a command failed; each renders as the one line the user sees.
#[derive(Debug, Error)]
pub enum CliError {
    #[error(transparent)]
    Kube(#[from] KubeError),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error("waypoint {namespace}/{name} not found")]
    WaypointNotFound { namespace: String, name: String },
    #[error("gateway {namespace}/{name} has class {class:?}, not {WAYPOINT_CLASS}: it is not one of our waypoints, leaving it alone")]
    NotOurs {
        namespace: String,
        name: String,
        class: String,
    },
    #[error("namespace {namespace} already uses waypoint {current} (label istio.io/use-waypoint={current}); add --overwrite to switch it to {wanted}")]
    AlreadyEnrolled {
        namespace: String,
        current: String,
        wanted: String,
    },
    #[error("timed out after {timeout} waiting for waypoint {namespace}/{name} to be programmed ({last})")]
    WaitTimeout {
        namespace: String,
        name: String,
        timeout: String,
        /// What the Gateway's status said last.
        last: String,
    },
    #[error("the API server does not serve gateway.networking.k8s.io/v1 Gateways: install the Gateway API CRDs first")]
    NoGatewayApi,
}

/// A connected client and the namespace the command works in.
struct Session {
    api_server: ApiServer,
    namespace: String,
}

impl Session {
    /// Connects; the namespace is `-n` when given, else the kubeconfig
    /// context's (`default` when it names none), as kubectl does.
    async fn connect(
        api_server: &ApiServerArgs,
        namespace: Option<&str>,
    ) -> Result<Session, CliError> {
        let api_server = ApiServer::connect(&api_server.options()).await?;
        let namespace = namespace
            .map(str::to_string)
            .unwrap_or_else(|| api_server.default_namespace.clone());
        Ok(Session {
            api_server,
            namespace,
        })
    }

    fn gateways(&self) -> Api<WaypointGateway> {
        Api::namespaced(self.api_server.client.clone(), &self.namespace)
    }

    /// The command's namespace; a missing one is [`KubeError::NamespaceNotFound`].
    async fn fetch_namespace(&self) -> Result<Namespace, CliError> {
        let namespaces: Api<Namespace> = Api::all(self.api_server.client.clone());
        namespaces.get(&self.namespace).await.map_err(|e| match e {
            kube::Error::Api(status) if status.code == 404 => {
                KubeError::NamespaceNotFound(self.namespace.clone()).into()
            }
            e => self.api_server.describe(e).into(),
        })
    }

    /// Checks the namespace exists before anything is written or listed, so
    /// a typo is "namespace x not found" rather than an empty list or a
    /// half-done apply. Users whose RBAC stops at their namespace may not
    /// read Namespace objects: then we go on without the check.
    async fn ensure_namespace(&self) -> Result<(), CliError> {
        match self.fetch_namespace().await {
            Err(CliError::Kube(KubeError::Forbidden(reason))) => {
                debug!(namespace = %self.namespace, %reason, "cannot read the namespace; not checking it exists");
                Ok(())
            }
            other => other.map(drop),
        }
    }

    /// One of our waypoints by name: missing or of another class is an error.
    async fn fetch_waypoint(&self, name: &str) -> Result<WaypointGateway, CliError> {
        let gateway =
            self.gateways()
                .get(name)
                .await
                .map_err(|e| match self.api_server.describe(e) {
                    KubeError::NotFound(_) => CliError::WaypointNotFound {
                        namespace: self.namespace.clone(),
                        name: name.to_string(),
                    },
                    e => e.into(),
                })?;
        if !gateway.is_waypoint() {
            return Err(CliError::NotOurs {
                namespace: self.namespace.clone(),
                name: name.to_string(),
                class: gateway.spec.gateway_class_name,
            });
        }
        Ok(gateway)
    }

    /// Our waypoints in the namespace, or in every namespace, sorted by
    /// namespace then name.
    async fn list_waypoints(&self, all_namespaces: bool) -> Result<Vec<WaypointGateway>, CliError> {
        let api = if all_namespaces {
            Api::all(self.api_server.client.clone())
        } else {
            self.gateways()
        };
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| self.gateway_error(e))?;
        let mut waypoints: Vec<WaypointGateway> = list
            .items
            .into_iter()
            .filter(WaypointGateway::is_waypoint)
            .collect();
        waypoints.sort_by(|a, b| (a.namespace(), a.name()).cmp(&(b.namespace(), b.name())));
        Ok(waypoints)
    }

    /// Maps an error of a call on the Gateway collection: with the namespace
    /// known to exist, a 404 there means the Gateway API CRDs are missing.
    fn gateway_error(&self, error: kube::Error) -> CliError {
        match self.api_server.describe(error) {
            KubeError::NotFound(_) => CliError::NoGatewayApi,
            e => e.into(),
        }
    }
}
