//! `waypoint apply`: server-side apply the waypoint Gateway, optionally wait
//! for the controller to program it and enroll the namespace.
//!
//! Order, as istioctl's: check the namespace (exists; enrollment allowed),
//! apply, wait, then label the namespace — so a refused enrollment changes
//! nothing, and the namespace is only pointed at a waypoint that exists.

use std::time::Duration;

use clap::Args;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::generate::WaypointArgs;
use super::{ApiServerArgs, CliError, Session, FIELD_MANAGER};
use crate::control::gateway::{
    WaypointGateway, CONDITION_PROGRAMMED, LABEL_DATAPLANE_MODE, LABEL_USE_WAYPOINT,
};

/// How often `--wait` reads the Gateway's status.
const WAIT_POLL: Duration = Duration::from_millis(500);

/// `waypoint apply [-n NS] [--name NAME] [--for TYPE] [-r REV] [--enroll-namespace]
/// [--overwrite] [--wait] [--timeout D]`.
#[derive(Args, Debug, Clone)]
pub struct WaypointApplyArgs {
    #[command(flatten)]
    pub waypoint: WaypointArgs,
    /// Label the namespace istio.io/use-waypoint=<name> so its Services use this waypoint.
    #[arg(long)]
    pub enroll_namespace: bool,
    /// With --enroll-namespace: replace the namespace's current waypoint.
    #[arg(long)]
    pub overwrite: bool,
    /// Wait until the controller reports the waypoint Programmed.
    #[arg(long, short = 'w')]
    pub wait: bool,
    /// How long --wait waits, e.g. 30s or 2m (istioctl's default: 90s).
    #[arg(long, visible_alias = "waypoint-timeout", default_value = "90s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub api_server: ApiServerArgs,
}

/// Applies the waypoint; prints one ✅ line per step done and warnings on stderr.
pub async fn apply(args: WaypointApplyArgs) -> Result<(), CliError> {
    let session = Session::connect(&args.api_server, args.waypoint.namespace.as_deref()).await?;
    let gateway = args.waypoint.build(&session.namespace)?;
    let name = gateway.name().to_string();
    let ns = session.namespace.clone();

    // Phase 1: checks, before anything is written.
    if args.enroll_namespace {
        let namespace = session.fetch_namespace().await?;
        let labels = namespace.metadata.labels.unwrap_or_default();
        if let Some(current) = labels.get(LABEL_USE_WAYPOINT) {
            if *current != name && !args.overwrite {
                return Err(CliError::AlreadyEnrolled {
                    namespace: ns,
                    current: current.clone(),
                    wanted: name,
                });
            }
        }
        if labels.get(LABEL_DATAPLANE_MODE).map(String::as_str) != Some("ambient") {
            eprintln!(
                "⚠️ warning: namespace {ns} is not in the ambient mesh (no {LABEL_DATAPLANE_MODE}=ambient label), so its traffic will not reach the waypoint; consider `kubectl label namespace {ns} {LABEL_DATAPLANE_MODE}=ambient`"
            );
        }
    } else {
        session.ensure_namespace().await?;
    }

    // Phase 2: server-side apply; forcing takes over fields another manager
    // (an earlier istioctl or kubectl apply) set, as `kubectl apply
    // --server-side --force-conflicts` would.
    let params = PatchParams::apply(FIELD_MANAGER).force();
    session
        .gateways()
        .patch(&name, &params, &Patch::Apply(&gateway))
        .await
        .map_err(|e| session.gateway_error(e))?;
    println!("✅ waypoint {ns}/{name} applied");

    // Phase 3: wait for the controller.
    if args.wait {
        wait_programmed(&session, &name, args.timeout).await?;
        println!("✅ waypoint {ns}/{name} is ready");
    }

    // Phase 4: enroll. A merge patch of the one label leaves every other
    // label (and its owner) alone.
    if args.enroll_namespace {
        let namespaces: Api<Namespace> = Api::all(session.api_server.client.clone());
        let patch = json!({"metadata": {"labels": {LABEL_USE_WAYPOINT: name}}});
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..Default::default()
        };
        namespaces
            .patch(&ns, &params, &Patch::Merge(&patch))
            .await
            .map_err(|e| session.api_server.describe(e))?;
        println!("✅ namespace {ns} labeled with \"{LABEL_USE_WAYPOINT}: {name}\"");
    }
    Ok(())
}

/// Reads the Gateway until it is Programmed (for its current generation) or
/// `timeout` passes; the timeout error quotes the last status seen.
async fn wait_programmed(session: &Session, name: &str, timeout: Duration) -> Result<(), CliError> {
    let api = session.gateways();
    let mut last: Option<WaypointGateway> = None;
    let polled = tokio::time::timeout(timeout, async {
        let mut tick = tokio::time::interval(WAIT_POLL);
        loop {
            tick.tick().await;
            let gateway = api.get(name).await.map_err(|e| session.gateway_error(e))?;
            if gateway.is_programmed() {
                return Ok::<(), CliError>(());
            }
            last = Some(gateway);
        }
    })
    .await;
    match polled {
        Ok(result) => result,
        Err(_elapsed) => Err(CliError::WaitTimeout {
            namespace: session.namespace.clone(),
            name: name.to_string(),
            timeout: humantime::format_duration(timeout).to_string(),
            last: describe_progress(last.as_ref()),
        }),
    }
}

/// The Programmed condition in words, for the timeout message.
fn describe_progress(gateway: Option<&WaypointGateway>) -> String {
    let Some(gateway) = gateway else {
        return "the API server did not answer in time".to_string();
    };
    match gateway.condition(CONDITION_PROGRAMMED) {
        // is_programmed said no: the condition is about an older spec.
        Some(c) if c.status == "True" => {
            "Programmed=True only for an older generation of the Gateway".to_string()
        }
        Some(c) if c.message.is_empty() => format!("Programmed={}, reason {}", c.status, c.reason),
        Some(c) => format!(
            "Programmed={}, reason {}: {}",
            c.status, c.reason, c.message
        ),
        None => "no Programmed condition yet: is the waypoint controller running?".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::describe_progress;
    use crate::control::gateway::{build_waypoint, Condition, GatewayStatus, WaypointSpec};

    #[test]
    fn timeout_message_says_what_the_status_lacks() {
        let mut gw = build_waypoint(&WaypointSpec {
            name: "waypoint".into(),
            namespace: "default".into(),
            traffic_type: None,
            revision: None,
        })
        .unwrap();
        assert_eq!(
            describe_progress(Some(&gw)),
            "no Programmed condition yet: is the waypoint controller running?"
        );
        gw.metadata.generation = Some(2);
        let mut condition = Condition {
            type_: "Programmed".into(),
            status: "True".into(),
            reason: "Programmed".into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: None,
        };
        gw.status = Some(GatewayStatus {
            addresses: vec![],
            conditions: vec![condition.clone()],
        });
        assert_eq!(
            describe_progress(Some(&gw)),
            "Programmed=True only for an older generation of the Gateway"
        );
        condition.status = "False".into();
        condition.reason = "Pending".into();
        gw.status.as_mut().unwrap().conditions = vec![condition];
        assert_eq!(
            describe_progress(Some(&gw)),
            "Programmed=False, reason Pending"
        );
    }
}
