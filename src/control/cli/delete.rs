//! `waypoint delete`: remove waypoints by name, or all of ours in a namespace.

use clap::Args;
use kube::api::DeleteParams;

use super::{ApiServerArgs, CliError, Session};

/// `waypoint delete NAME… | --all [-n NS]`.
#[derive(Args, Debug, Clone)]
pub struct WaypointDeleteArgs {
    /// Waypoints to delete.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub names: Vec<String>,
    /// Delete every waypoint (Gateway of class pingora-waypoint) in the namespace.
    #[arg(long)]
    pub all: bool,
    /// Namespace (default: the kubeconfig context's, else `default`).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub api_server: ApiServerArgs,
}

/// Deletes only Gateways of our class. Every named one is checked before
/// any is deleted, so a typo or a foreign Gateway deletes nothing.
pub async fn delete(args: WaypointDeleteArgs) -> Result<(), CliError> {
    let session = Session::connect(&args.api_server, args.namespace.as_deref()).await?;
    session.ensure_namespace().await?;
    let names: Vec<String> = if args.all {
        let waypoints = session.list_waypoints(false).await?;
        if waypoints.is_empty() {
            println!("No waypoints found.");
            return Ok(());
        }
        waypoints.iter().map(|gw| gw.name().to_string()).collect()
    } else {
        for name in &args.names {
            session.fetch_waypoint(name).await?;
        }
        args.names.clone()
    };

    let api = session.gateways();
    for name in &names {
        api.delete(name, &DeleteParams::default())
            .await
            .map_err(|e| session.api_server.describe(e))?;
        println!("✅ waypoint {}/{name} deleted", session.namespace);
    }
    Ok(())
}
