//! `waypoint list`: our waypoints as a table.

use clap::Args;

use super::{table, ApiServerArgs, CliError, Session};
use crate::control::gateway::{WaypointGateway, CONDITION_PROGRAMMED};

/// `waypoint list [-n NS] [-A]`.
#[derive(Args, Debug, Clone)]
pub struct WaypointListArgs {
    /// Namespace to list (default: the kubeconfig context's, else `default`).
    #[arg(long, short = 'n', conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,
    /// List waypoints in every namespace.
    #[arg(long, short = 'A')]
    pub all_namespaces: bool,
    #[command(flatten)]
    pub api_server: ApiServerArgs,
}

/// Prints NAME REVISION TRAFFIC TYPE PROGRAMMED (NAMESPACE first with -A).
pub async fn list(args: WaypointListArgs) -> Result<(), CliError> {
    let session = Session::connect(&args.api_server, args.namespace.as_deref()).await?;
    if !args.all_namespaces {
        session.ensure_namespace().await?;
    }
    let waypoints = session.list_waypoints(args.all_namespaces).await?;
    print!("{}", render(&waypoints, args.all_namespaces));
    Ok(())
}

/// The table, or "No waypoints found." (istioctl's words).
pub(super) fn render(waypoints: &[WaypointGateway], all_namespaces: bool) -> String {
    if waypoints.is_empty() {
        return "No waypoints found.\n".to_string();
    }
    let mut header = vec!["NAME", "REVISION", "TRAFFIC TYPE", "PROGRAMMED"];
    if all_namespaces {
        header.insert(0, "NAMESPACE");
    }
    let rows: Vec<Vec<String>> = waypoints
        .iter()
        .map(|gw| {
            let programmed = gw
                .condition(CONDITION_PROGRAMMED)
                .map_or("False", |c| c.status.as_str());
            let mut row = vec![
                gw.name().to_string(),
                gw.revision().to_string(),
                gw.traffic_type().to_string(),
                programmed.to_string(),
            ];
            if all_namespaces {
                row.insert(0, gw.namespace().to_string());
            }
            row
        })
        .collect();
    table::render(&header, &rows)
}
