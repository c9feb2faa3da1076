//! L4 passthrough: a tunnelled connection to a TCP Service port (or one
//! whose bytes are not HTTP) is forwarded as bytes, without L7 policy — as
//! Istio's waypoint does for TCP. A TCPRoute attached to the port picks the
//! backend Service per connection (weighted; an invalid share closes the
//! connection); without one, the addressed Service's own endpoints serve.
//! The destination's AuthorizationPolicies still apply, on L4 attributes.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use crate::authz::Attributes;
use crate::routing::{DestinationPort, TcpDecision};
use crate::telemetry::{cel, Metrics, RequestLabels};
use crate::upstream::dial::{DialTarget, Dialer};
use crate::upstream::Endpoint;

use super::downstream::{Caller, ResolvedTarget};

/// True for ports Istio treats as plain TCP: `appProtocol: tcp` or a port
/// name `tcp` / `tcp-*`.
pub fn is_tcp_port(dest: &DestinationPort) -> bool {
    dest.port.is_tcp()
}

/// Forwards tunnelled bytes to endpoints.
pub struct Passthrough {
    pub dialer: Arc<Dialer>,
    pub metrics: Arc<Metrics>,
}

impl Passthrough {
    /// Copies bytes both ways between `downstream` and one endpoint of the
    /// backend the destination's TCPRoute chooses, or of the destination
    /// itself (from the snapshot the tunnel was accepted with), until either
    /// side closes; records Istio's TCP metrics for that backend.
    pub async fn forward<S>(&self, mut downstream: S, caller: &Caller, accepted: &ResolvedTarget)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let destination = &accepted.destination;
        if !self.authorized(caller, accepted) {
            // As Envoy's RBAC network filter: the connection is closed.
            return;
        }
        let snapshot = &accepted.published.snapshot;
        let (backend, endpoints) = match snapshot.route_tcp(destination, caller.namespace()) {
            TcpDecision::Forward {
                backend, endpoints, ..
            } => (backend, endpoints),
            TcpDecision::Reject { route, reason } => {
                // The Gateway API's "actively reject": the connection is closed.
                debug!(%route, %reason, service = %destination.service.key, "TCP connection refused by its TCPRoute");
                return;
            }
            TcpDecision::Gone => return,
        };
        let Some(picked) = endpoints.pick(&[]) else {
            debug!(service = %backend.service.key, "no endpoint for L4 passthrough");
            return;
        };
        let labels = self.labels(caller, &backend, &picked.endpoint);
        let target = DialTarget {
            addr: picked.endpoint.addr,
            in_mesh: picked.endpoint.in_mesh,
        };
        // Telemetry metric overrides of the backend Service, resolved at config load;
        // unconfigured, one branch (as `observe::record`).
        let telemetry = &accepted.published.telemetry;
        let overrides = if telemetry.is_inert() {
            None
        } else {
            let names = &backend.service.labels;
            telemetry
                .find(Some((&names.namespace, &names.name)))
                .metrics
                .clone()
        };
        let attrs = TcpAttributes {
            caller,
            backend: &backend,
        };
        match &overrides {
            Some(o) => self.metrics.record_tcp_open_overridden(&labels, o, &attrs),
            None => self.metrics.record_tcp_open(&labels),
        }
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
        match &overrides {
            Some(o) => self
                .metrics
                .record_tcp_close_overridden(&labels, o, &attrs, sent, received),
            None => self.metrics.record_tcp_close(&labels, sent, received),
        }
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

    /// Istio's TCP labels: the Service that served the connection (the
    /// TCPRoute's chosen backend, as Envoy reports the cluster it proxied
    /// to) and the workload of the endpoint picked, as for HTTP requests.
    fn labels(
        &self,
        caller: &Caller,
        backend: &DestinationPort,
        picked: &Endpoint,
    ) -> RequestLabels {
        let names = &backend.service.labels;
        let mut destination = picked.workload.destination_labels();
        destination.cluster = names.cluster.clone();
        RequestLabels {
            source: caller.labels.clone(),
            destination,
            destination_service: names.hostname.clone(),
            destination_service_name: names.name.clone(),
            destination_service_namespace: names.namespace.clone(),
            request_protocol: "tcp",
            connection_security_policy: caller.security_policy(),
            ..Default::default()
        }
    }
}

/// What a Telemetry tag expression can read of a TCP connection: the caller and the
/// Service; request and response attributes do not exist (their value is `unknown`).
struct TcpAttributes<'a> {
    caller: &'a Caller,
    backend: &'a DestinationPort,
}

impl cel::Attributes for TcpAttributes<'_> {
    fn attr(&self, attr: &cel::Attr) -> cel::Value<'_> {
        let names = &self.backend.service.labels;
        let text = |s: String| cel::Value::Str(s.into());
        match attr {
            cel::Attr::SourcePrincipal => self
                .caller
                .identity
                .as_ref()
                .map_or(cel::Value::Absent, |id| text(id.to_string())),
            cel::Attr::SourceAddress => self
                .caller
                .client_ip
                .as_ref()
                .map_or(cel::Value::Absent, |ip| text(ip.to_string())),
            cel::Attr::ConnectionMtls => cel::Value::Bool(self.caller.identity.is_some()),
            cel::Attr::DestinationPort => cel::Value::Int(self.backend.port.number.into()),
            cel::Attr::DestinationServiceHost => cel::Value::Str((&*names.hostname).into()),
            cel::Attr::DestinationServiceName => cel::Value::Str((&*names.name).into()),
            cel::Attr::DestinationServiceNamespace => cel::Value::Str((&*names.namespace).into()),
            _ => cel::Value::Absent,
        }
    }
}
