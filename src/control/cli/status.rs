//! `waypoint status`: what the controller reported for each waypoint.

use clap::Args;

use super::{table, ApiServerArgs, CliError, Session};
use crate::control::gateway::{
    Condition, WaypointGateway, CONDITION_ACCEPTED, CONDITION_PROGRAMMED,
};

/// `waypoint status [-n NS] [--name NAME]`.
#[derive(Args, Debug, Clone)]
pub struct WaypointStatusArgs {
    /// Namespace (default: the kubeconfig context's, else `default`).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Only this waypoint (default: every waypoint in the namespace).
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub api_server: ApiServerArgs,
}

/// Prints one row per condition of each waypoint, Accepted and Programmed first.
pub async fn status(args: WaypointStatusArgs) -> Result<(), CliError> {
    let session = Session::connect(&args.api_server, args.namespace.as_deref()).await?;
    session.ensure_namespace().await?;
    let waypoints = match &args.name {
        Some(name) => vec![session.fetch_waypoint(name).await?],
        None => session.list_waypoints(false).await?,
    };
    print!("{}", render(&waypoints));
    Ok(())
}

/// NAME STATUS TYPE REASON ADDRESSES MESSAGE; a waypoint without status gets
/// one row saying so.
pub(super) fn render(waypoints: &[WaypointGateway]) -> String {
    if waypoints.is_empty() {
        return "No waypoints found.\n".to_string();
    }
    let mut rows = Vec::new();
    for gw in waypoints {
        let addresses = addresses(gw);
        let mut conditions: Vec<&Condition> = gw.conditions().iter().collect();
        conditions.sort_by_key(|c| match c.type_.as_str() {
            CONDITION_ACCEPTED => 0,
            CONDITION_PROGRAMMED => 1,
            _ => 2,
        });
        if conditions.is_empty() {
            rows.push(vec![
                gw.name().to_string(),
                "-".to_string(),
                "-".to_string(),
                "-".to_string(),
                addresses.clone(),
                "no status yet: is the waypoint controller running?".to_string(),
            ]);
        }
        for c in conditions {
            rows.push(vec![
                gw.name().to_string(),
                c.status.clone(),
                c.type_.clone(),
                or_dash(&c.reason),
                addresses.clone(),
                c.message.clone(),
            ]);
        }
    }
    table::render(
        &["NAME", "STATUS", "TYPE", "REASON", "ADDRESSES", "MESSAGE"],
        &rows,
    )
}

fn addresses(gw: &WaypointGateway) -> String {
    let values: Vec<&str> = gw
        .status
        .iter()
        .flat_map(|s| &s.addresses)
        .map(|a| a.value.as_str())
        .collect();
    if values.is_empty() {
        "-".to_string()
    } else {
        values.join(",")
    }
}

fn or_dash(s: &str) -> String {
    if s.is_empty() { "-" } else { s }.to_string()
}
