//! The metadata headers ztunnel puts on a CONNECT: `baggage` (who the source workload is),
//! `forwarded` (the original client address), `traceparent` (W3C trace context).
//!
//! Parsing is lenient: a malformed header never fails the tunnel, it just yields less
//! metadata. Printing produces the same shape ztunnel sends.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// The source workload as described by ztunnel's `baggage` header.
///
/// Keys are the OpenTelemetry resource names ztunnel uses; only non-empty keys are sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Baggage {
    /// `k8s.cluster.name`
    pub cluster_name: Option<String>,
    /// `k8s.namespace.name`
    pub namespace: Option<String>,
    /// `k8s.deployment.name`
    pub deployment: Option<String>,
    /// `k8s.statefulset.name`
    pub statefulset: Option<String>,
    /// `k8s.daemonset.name`
    pub daemonset: Option<String>,
    /// `k8s.cronjob.name`
    pub cronjob: Option<String>,
    /// `k8s.job.name`
    pub job: Option<String>,
    /// `k8s.pod.name`
    pub pod: Option<String>,
    /// `service.name` (the canonical service)
    pub service_name: Option<String>,
    /// `service.version` (the canonical revision)
    pub service_version: Option<String>,
}

impl Baggage {
    /// The workload name: the first of deployment, statefulset, daemonset, cronjob, job, pod.
    pub fn workload_name(&self) -> Option<&str> {
        [
            &self.deployment,
            &self.statefulset,
            &self.daemonset,
            &self.cronjob,
            &self.job,
            &self.pod,
        ]
        .into_iter()
        .find_map(|v| v.as_deref())
    }

    /// True when no key is set.
    pub fn is_empty(&self) -> bool {
        *self == Baggage::default()
    }

    fn fields(&self) -> [(&'static str, &Option<String>); 10] {
        [
            ("k8s.cluster.name", &self.cluster_name),
            ("k8s.namespace.name", &self.namespace),
            ("k8s.deployment.name", &self.deployment),
            ("k8s.statefulset.name", &self.statefulset),
            ("k8s.daemonset.name", &self.daemonset),
            ("k8s.cronjob.name", &self.cronjob),
            ("k8s.job.name", &self.job),
            ("k8s.pod.name", &self.pod),
            ("service.name", &self.service_name),
            ("service.version", &self.service_version),
        ]
    }

    /// Parses a `baggage` header value (W3C baggage: `k=v;props,k=v`); unknown keys and
    /// malformed members are skipped.
    pub fn parse(value: &str) -> Baggage {
        let mut b = Baggage::default();
        for member in value.split(',') {
            let kv = member.split(';').next().unwrap_or_default();
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let v = v.trim();
            if v.is_empty() {
                continue;
            }
            let slot = match k.trim() {
                "k8s.cluster.name" => &mut b.cluster_name,
                "k8s.namespace.name" => &mut b.namespace,
                "k8s.deployment.name" => &mut b.deployment,
                "k8s.statefulset.name" => &mut b.statefulset,
                "k8s.daemonset.name" => &mut b.daemonset,
                "k8s.cronjob.name" => &mut b.cronjob,
                "k8s.job.name" => &mut b.job,
                "k8s.pod.name" => &mut b.pod,
                "service.name" => &mut b.service_name,
                "service.version" => &mut b.service_version,
                _ => continue,
            };
            *slot = Some(v.to_owned());
        }
        b
    }
}

impl fmt::Display for Baggage {
    /// The header value ztunnel would send: set keys only, in a fixed order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (k, v) in self.fields() {
            if let Some(v) = v {
                if !first {
                    f.write_str(",")?;
                }
                first = false;
                write!(f, "{k}={v}")?;
            }
        }
        Ok(())
    }
}

/// The first element of an RFC 7239 `forwarded` header: the original client and host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forwarded {
    /// `for=`: the original client IP, when it is an address (not `unknown`/obfuscated).
    pub for_ip: Option<IpAddr>,
    /// The port of `for=`, when given.
    pub for_port: Option<u16>,
    /// `host=`: the host the client asked for.
    pub host: Option<String>,
}

impl Forwarded {
    /// A `for="ip:port";host=…` value as ztunnel sends it.
    pub fn new(client: SocketAddr, host: Option<String>) -> Self {
        Forwarded {
            for_ip: Some(client.ip()),
            for_port: Some(client.port()),
            host,
        }
    }
}

/// Parses a `for=` node: `1.2.3.4`, `1.2.3.4:80`, `[::1]`, `[::1]:80` (quotes removed).
fn parse_node(node: &str) -> (Option<IpAddr>, Option<u16>) {
    if let Ok(sa) = node.parse::<SocketAddr>() {
        return (Some(sa.ip()), Some(sa.port()));
    }
    if let Some(inner) = node.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return (inner.parse().ok(), None);
    }
    (node.parse().ok(), None)
}

impl FromStr for Forwarded {
    type Err = std::convert::Infallible;

    /// Lenient: unknown parameters are ignored, malformed ones leave their field empty.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let mut out = Forwarded::default();
        // Only the first element (the hop nearest the original client) matters to us.
        let first = value.split(',').next().unwrap_or_default();
        for pair in first.split(';') {
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            match k.trim().to_ascii_lowercase().as_str() {
                "for" => (out.for_ip, out.for_port) = parse_node(v),
                "host" if !v.is_empty() => out.host = Some(v.to_owned()),
                _ => {}
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Forwarded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if let Some(ip) = self.for_ip {
            match (ip, self.for_port) {
                (IpAddr::V4(ip), Some(p)) => write!(f, "for=\"{ip}:{p}\"")?,
                (IpAddr::V6(ip), Some(p)) => write!(f, "for=\"[{ip}]:{p}\"")?,
                (IpAddr::V4(ip), None) => write!(f, "for={ip}")?,
                (IpAddr::V6(ip), None) => write!(f, "for=\"[{ip}]\"")?,
            }
            sep = ";";
        }
        if let Some(host) = &self.host {
            write!(f, "{sep}host={host}")?;
        }
        Ok(())
    }
}

/// Metadata to send on an outbound CONNECT; every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundHeaders {
    /// Sent as `baggage` when set and non-empty.
    pub baggage: Option<Baggage>,
    /// Sent as `forwarded`.
    pub forwarded: Option<Forwarded>,
    /// Sent as `traceparent` as is.
    pub traceparent: Option<String>,
}
