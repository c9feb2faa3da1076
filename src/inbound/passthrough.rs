//! L4 passthrough: a tunnelled connection to a TCP Service port (or one
//! whose bytes are not HTTP) is forwarded as bytes to one of the Service's
//! endpoints, without L7 policy — as Istio's waypoint does for TCP. The
//! destination's AuthorizationPolicies still apply, on L4 attributes.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use crate::authz::Attributes;
use crate::routing::DestinationPort;
use crate::telemetry::{Metrics, RequestLabels};
use crate::upstream::dial::{DialTarget, Dialer};

use super::downstream::{Caller, ResolvedTarget};

/// True for ports Istio treats as plain TCP: `appProtocol: tcp` or a port
/// name `tcp` / `tcp-*`.
pub fn is_tcp_port(dest: &DestinationPort) -> bool {
    let port = &dest.port;
    let app = port.app_protocol.as_deref().map(str::to_ascii_lowercase);
    if let Some(app) = app {
        return app == "tcp";
    }
    port.name
        .as_deref()
        .map(str::to_ascii_lowercase)
        .is_some_and(|n| n == "tcp" || n.starts_with("tcp-"))
}

/// Forwards tunnelled bytes to endpoints.
pub struct Passthrough {
    pub dialer: Arc<Dialer>,
    pub metrics: Arc<Metrics>,
}

impl Passthrough {
    /// Copies bytes both ways between `downstream` and one endpoint of the
    /// accepted destination (from the snapshot the tunnel was accepted
    /// with) until either side closes; records Istio's TCP metrics.
    pub async fn forward<S>(&self, mut downstream: S, caller: &Caller, accepted: &ResolvedTarget)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let destination = &accepted.destination;
        if !self.authorized(caller, accepted) {
            // As Envoy's RBAC network filter: the connection is closed.
            return;
        }
        let labels = self.labels(caller, destination);
        let Some(endpoints) = accepted.published.snapshot.endpoints(destination) else {
            return;
        };
        let Some(picked) = endpoints.pick(&[]) else {
            debug!(service = %destination.service.key, "no endpoint for L4 passthrough");
            return;
        };
        let target = DialTarget {
            addr: picked.endpoint.addr,
            in_mesh: picked.endpoint.in_mesh,
        };
        self.metrics.record_tcp_open(&labels);
        let copied = match self.dialer.connect(target, &caller.originator()).await {
            Ok(mut up) => {
                let max_age = endpoints.cluster().max_connection_duration;
                crate::upstream::l4_copy::copy_within(max_age, &mut downstream, &mut up).await
            }
            Err(e) => Err(std::io::Error::other(e)),
        };
        let (sent, received) = match copied {
            // (downstream → upstream, upstream → downstream)
            Ok((to_up, to_down)) => (to_down, to_up),
            Err(e) => {
                debug!(addr = %target.addr, error = %e, "L4 passthrough ended with an error");
                (0, 0)
            }
        };
        self.metrics.record_tcp_close(&labels, sent, received);
        drop(picked);
    }

    /// AuthorizationPolicy for a TCP connection: only L4 attributes exist, so
    /// ALLOW rules that need HTTP never match and DENY rules drop those fields.
    fn authorized(&self, caller: &Caller, accepted: &ResolvedTarget) -> bool {
        let destination = &accepted.destination;
        let Some(policies) = accepted
            .published
            .authz
            .for_destination(destination.service.kind, &destination.service.key)
        else {
            return true;
        };
        let source_ip = caller.client_ip.map(|c| c.ip());
        let decision = policies.evaluate(&Attributes {
            principal: caller.principal(),
            namespace: caller.namespace(),
            source_ip,
            remote_ip: source_ip,
            destination_ip: destination.service.addresses.first().copied(),
            destination_port: destination.port.number,
            sni: caller.sni.as_deref(),
            http: None,
            auth: None,
        });
        for r in decision.records() {
            self.metrics
                .record_authz(r.policy_name(), r.action.as_str(), r.result);
        }
        if let Some(custom) = &decision.custom {
            // No external check for raw TCP: a CUSTOM policy that applies denies
            // (fail closed) rather than being skipped.
            self.metrics
                .record_authz(custom.policy_name(), custom.action.as_str(), "denied");
            debug!(policy = custom.policy_name(), service = %destination.service.key, "TCP connection denied: CUSTOM is not checked for TCP");
            return false;
        }
        if !decision.allowed {
            debug!(details = ?decision.details(), service = %destination.service.key, "TCP connection denied by AuthorizationPolicy");
        }
        decision.allowed
    }

    fn labels(&self, caller: &Caller, destination: &DestinationPort) -> RequestLabels {
        RequestLabels {
            source: caller.labels.clone(),
            destination_service: Arc::from(destination.service.hostname.as_str()),
            destination_service_name: Arc::from(destination.service.key.name.as_str()),
            destination_service_namespace: Arc::from(destination.service.key.namespace.as_str()),
            request_protocol: "tcp",
            connection_security_policy: caller.security_policy(),
            ..Default::default()
        }
    }
}
