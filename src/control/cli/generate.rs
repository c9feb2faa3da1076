//! `waypoint generate`: print the waypoint Gateway as YAML, cluster optional.

use clap::Args;
use tracing::debug;

use super::{ApiServerArgs, CliError};
use crate::config::source::kube::client::ApiServer;
use crate::control::gateway::{
    build_waypoint, to_yaml, TrafficType, WaypointGateway, WaypointSpec, DEFAULT_WAYPOINT_NAME,
};

/// The waypoint to generate or apply (shared by `generate` and `apply`).
#[derive(Args, Debug, Clone)]
pub struct WaypointArgs {
    /// Namespace of the waypoint (default: the kubeconfig context's, else `default`).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Name of the waypoint Gateway.
    #[arg(long, default_value = DEFAULT_WAYPOINT_NAME)]
    pub name: String,
    /// Traffic the waypoint handles (label istio.io/waypoint-for; istiod's default: service).
    #[arg(long = "for", value_enum, value_name = "TYPE")]
    pub traffic_type: Option<TrafficType>,
    /// Istio revision to label the waypoint with (istio.io/rev).
    #[arg(long, short = 'r')]
    pub revision: Option<String>,
}

impl WaypointArgs {
    /// The Gateway for `namespace` (resolved by the caller).
    pub(super) fn build(&self, namespace: &str) -> Result<WaypointGateway, CliError> {
        Ok(build_waypoint(&WaypointSpec {
            name: self.name.clone(),
            namespace: namespace.to_string(),
            traffic_type: self.traffic_type,
            revision: self.revision.clone(),
        })?)
    }
}

/// `waypoint generate [-n NS] [--name NAME] [--for TYPE] [-r REV]`.
#[derive(Args, Debug, Clone)]
pub struct WaypointGenerateArgs {
    #[command(flatten)]
    pub waypoint: WaypointArgs,
    #[command(flatten)]
    pub api_server: ApiServerArgs,
}

/// Prints the Gateway YAML. Needs no cluster: without `-n` the namespace
/// comes from the kubeconfig's context when there is a kubeconfig, else it
/// is `default`. A kubeconfig or context named on the command line must load.
pub async fn generate(args: WaypointGenerateArgs) -> Result<(), CliError> {
    let namespace = match &args.waypoint.namespace {
        Some(namespace) => namespace.clone(),
        None => match ApiServer::connect(&args.api_server.options()).await {
            Ok(api_server) => api_server.default_namespace,
            Err(e) if !args.api_server.is_explicit() => {
                debug!(error = %e, "no kubeconfig; generating for namespace default");
                "default".to_string()
            }
            Err(e) => return Err(e.into()),
        },
    };
    let gateway = args.waypoint.build(&namespace)?;
    print!("{}", to_yaml(&gateway));
    Ok(())
}
