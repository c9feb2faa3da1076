//! Connecting to the API server, and saying in one line why a call failed.
//!
//! The kubeconfig is found the way kubectl and istioctl find it: an explicit
//! path, else `KUBECONFIG`, else `~/.kube/config`, else the in-cluster
//! service account.
//!
//! Used by the `--kube` source and by the control plane (`control::cli`,
//! `control::controller`), which sit above the config layer.

use std::path::PathBuf;

use thiserror::Error;

/// Where to find the Kubernetes API server (`--kubeconfig`, `--context`).
#[derive(Debug, Clone, Default)]
pub struct ApiServerOptions {
    /// A kubeconfig file; `None` follows kubectl's search order.
    pub kubeconfig: Option<PathBuf>,
    /// A context of that kubeconfig other than its current one.
    pub context: Option<String>,
}

/// Why talking to the cluster failed, in words a user acts on.
#[derive(Debug, Error)]
pub enum KubeError {
    #[error("no usable kubeconfig: {0} (set KUBECONFIG or --kubeconfig, or run in a cluster)")]
    Config(String),
    #[error("cannot reach the Kubernetes API server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("permission denied: {0}")]
    Forbidden(String),
    #[error("namespace {0} not found")]
    NamespaceNotFound(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("the API server refused the request ({code}): {message}")]
    Api { code: u16, message: String },
    #[error("{0}")]
    Other(String),
}

/// A connection to the Kubernetes API server: a client plus the address it talks to
/// (for error messages). Not an Envoy-style upstream cluster (`upstream::ClusterName`).
#[derive(Clone)]
pub struct ApiServer {
    pub client: kube::Client,
    pub url: String,
    /// The kubeconfig context's namespace (or `default`).
    pub default_namespace: String,
}

impl ApiServer {
    /// Builds a client from the kubeconfig (no request is made yet).
    pub async fn connect(options: &ApiServerOptions) -> Result<ApiServer, KubeError> {
        let kube_options = kube::config::KubeConfigOptions {
            context: options.context.clone(),
            ..Default::default()
        };
        let config = match &options.kubeconfig {
            Some(path) => {
                let kubeconfig = kube::config::Kubeconfig::read_from(path)
                    .map_err(|e| KubeError::Config(format!("{}: {e}", path.display())))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &kube_options)
                    .await
                    .map_err(|e| KubeError::Config(format!("{}: {e}", path.display())))?
            }
            None if options.context.is_some() => kube::Config::from_kubeconfig(&kube_options)
                .await
                .map_err(|e| KubeError::Config(e.to_string()))?,
            None => kube::Config::infer()
                .await
                .map_err(|e| KubeError::Config(e.to_string()))?,
        };
        let url = config.cluster_url.to_string();
        let default_namespace = config.default_namespace.clone();
        let client =
            kube::Client::try_from(config).map_err(|e| KubeError::Config(e.to_string()))?;
        Ok(ApiServer {
            client,
            url: url.trim_end_matches('/').to_string(),
            default_namespace,
        })
    }

    /// Turns a client error into one line naming what went wrong.
    pub fn describe(&self, error: kube::Error) -> KubeError {
        describe(&self.url, error)
    }
}

/// See [`ApiServer::describe`]; `url` names the API server.
pub fn describe(url: &str, error: kube::Error) -> KubeError {
    match error {
        kube::Error::Api(status) => match status.code {
            403 => KubeError::Forbidden(status.message),
            404 if status.message.starts_with("namespaces ") => {
                let ns = status.message.split('"').nth(1).unwrap_or_default();
                KubeError::NamespaceNotFound(ns.to_string())
            }
            404 => KubeError::NotFound(status.message),
            409 => KubeError::Conflict(status.message),
            code => KubeError::Api {
                code,
                message: status.message,
            },
        },
        kube::Error::HyperError(e) => KubeError::Unreachable {
            url: url.to_string(),
            reason: root_cause(&e),
        },
        kube::Error::Service(e) => KubeError::Unreachable {
            url: url.to_string(),
            reason: root_cause(e.as_ref()),
        },
        other => KubeError::Other(other.to_string()),
    }
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
