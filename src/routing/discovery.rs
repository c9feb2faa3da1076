//! Discovery: turns Services, EndpointSlices, Pods, Namespaces and
//! ServiceEntries into destinations ([`ServiceTarget`]) and the ready
//! endpoints of each of their ports, with the Pod facts telemetry and the
//! HBONE decision need (workload names, ambient membership).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tracing::debug;

use super::service::{ServiceKind, ServiceLabels, ServicePortTarget, ServiceTarget, TargetPort};
use crate::config::{
    EndpointSlice, IntOrString, Namespace, NamespacedName, Pod, Resources, Service, ServiceEntry,
    ServicePort, Sourced,
};
use crate::identity::Identity;
use crate::upstream::{Endpoint, Locality, WorkloadInfo};

/// EndpointSlice label naming the Service it belongs to.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Istio's ambient enrollment label (Namespace or Pod).
const DATAPLANE_MODE: &str = "istio.io/dataplane-mode";

/// A destination with the endpoints of each of its ports (parallel to
/// `target.ports`).
pub(crate) struct Discovered {
    pub target: ServiceTarget,
    pub endpoints: Vec<Vec<Endpoint>>,
}

/// Pods and Namespaces indexed for endpoint enrichment.
pub(crate) struct PodIndex<'a> {
    by_name: HashMap<(&'a str, &'a str), &'a Sourced<Pod>>,
    by_ip: HashMap<IpAddr, &'a Sourced<Pod>>,
    namespaces: HashMap<&'a str, &'a Namespace>,
    /// The mesh trust domain, for in-mesh endpoints' identities.
    trust_domain: &'a str,
}

impl<'a> PodIndex<'a> {
    pub(crate) fn new(resources: &'a Resources, trust_domain: &'a str) -> Self {
        let mut by_name = HashMap::new();
        let mut by_ip = HashMap::new();
        for pod in &resources.pods {
            by_name.insert((pod.key.namespace.as_str(), pod.key.name.as_str()), pod);
            let status = &pod.object.status;
            let ips = status
                .pod_ip
                .iter()
                .chain(status.pod_ips.iter().map(|p| &p.ip));
            for ip in ips.filter_map(|ip| ip.parse::<IpAddr>().ok()) {
                by_ip.entry(ip).or_insert(pod);
            }
        }
        let namespaces = resources
            .namespaces
            .iter()
            .map(|ns| (ns.key.name.as_str(), &ns.object))
            .collect();
        Self {
            by_name,
            by_ip,
            namespaces,
            trust_domain,
        }
    }

    /// The endpoint for `addr`, enriched from its Pod when one is known.
    fn endpoint(
        &self,
        addr: SocketAddr,
        pod: Option<&'a Sourced<Pod>>,
        zone: Option<String>,
    ) -> Endpoint {
        let pod = pod.or_else(|| self.by_ip.get(&addr.ip()).copied());
        match pod {
            Some(pod) => Endpoint {
                addr,
                pod: Some(pod.key.clone()),
                workload: self.workload(pod),
                in_mesh: self.in_mesh(pod),
                labels: pod.object.metadata.labels.clone(),
                locality: zone_locality(zone.as_deref()),
                zone,
            },
            None => Endpoint {
                addr,
                pod: None,
                workload: WorkloadInfo::unknown(),
                in_mesh: false,
                labels: BTreeMap::new(),
                locality: zone_locality(zone.as_deref()),
                zone,
            },
        }
    }

    /// The Pod's workload facts; an in-mesh Pod's principal is the identity its
    /// ztunnel presents for it (Istio: `spiffe://<td>/ns/<ns>/sa/<serviceAccountName>`).
    fn workload(&self, pod: &Sourced<Pod>) -> WorkloadInfo {
        let mut workload = workload_info(pod);
        if self.in_mesh(pod) {
            let sa = pod.object.service_account_name();
            match Identity::new(self.trust_domain, &pod.key.namespace, sa) {
                Ok(id) => workload.principal = Arc::from(id.to_string()),
                Err(e) => debug!(pod = %pod.key, error = %e, "no principal for Pod"),
            }
        }
        workload
    }

    /// Ambient membership: the Pod's own `istio.io/dataplane-mode` wins
    /// (`none` opts out), else its Namespace's.
    fn in_mesh(&self, pod: &Sourced<Pod>) -> bool {
        match pod
            .object
            .metadata
            .labels
            .get(DATAPLANE_MODE)
            .map(String::as_str)
        {
            Some("ambient") => true,
            Some("none") => false,
            _ => self
                .namespaces
                .get(pod.key.namespace.as_str())
                .and_then(|ns| ns.metadata.labels.get(DATAPLANE_MODE))
                .is_some_and(|mode| mode == "ambient"),
        }
    }
}

/// An EndpointSlice `zone` as a locality: the region is unknown.
fn zone_locality(zone: Option<&str>) -> Option<Locality> {
    zone.filter(|z| !z.is_empty()).map(|z| Locality {
        region: String::new(),
        zone: z.to_string(),
    })
}

/// Istio's workload and canonical labels for a Pod.
pub(crate) fn workload_info(pod: &Sourced<Pod>) -> WorkloadInfo {
    let labels = &pod.object.metadata.labels;
    let pod_name = pod.key.name.as_str();
    // A Deployment's pod is `<deployment>-<pod-template-hash>-<suffix>`.
    let name = labels
        .get("pod-template-hash")
        .and_then(|hash| pod_name.rfind(&format!("-{hash}-")).map(|i| &pod_name[..i]))
        .unwrap_or(pod_name);
    let first = |keys: &[&str]| keys.iter().find_map(|k| labels.get(*k));
    WorkloadInfo {
        canonical_service: first(&[
            "service.istio.io/canonical-name",
            "app.kubernetes.io/name",
            "app",
        ])
        .map_or(name, String::as_str)
        .into(),
        canonical_revision: first(&[
            "service.istio.io/canonical-revision",
            "app.kubernetes.io/version",
            "version",
        ])
        .map_or("latest", String::as_str)
        .into(),
        namespace: pod.key.namespace.as_str().into(),
        name: name.into(),
        principal: Arc::from(crate::telemetry::UNKNOWN),
    }
}

/// Every Service with its ports and their ready endpoints, in load order.
pub(crate) fn services(
    resources: &Resources,
    pods: &PodIndex<'_>,
    cluster_domain: &str,
) -> Vec<Discovered> {
    let mut slices: HashMap<(&str, &str), Vec<&Sourced<EndpointSlice>>> = HashMap::new();
    for slice in &resources.endpoint_slices {
        if let Some(svc) = slice.object.metadata.labels.get(SERVICE_NAME_LABEL) {
            slices
                .entry((slice.key.namespace.as_str(), svc.as_str()))
                .or_default()
                .push(slice);
        }
    }
    resources
        .services
        .iter()
        .map(|svc| {
            let key = (svc.key.namespace.as_str(), svc.key.name.as_str());
            let slices = slices.get(&key).map(Vec::as_slice).unwrap_or_default();
            let spec = &svc.object.spec;
            let hostname = format!(
                "{}.{}.svc.{cluster_domain}",
                svc.key.name, svc.key.namespace
            );
            Discovered {
                target: ServiceTarget {
                    key: svc.key.clone(),
                    labels: ServiceLabels::new(&svc.key, &hostname),
                    hostname,
                    kind: ServiceKind::Service,
                    ports: spec.ports.iter().map(service_port).collect(),
                    addresses: cluster_ips(&svc.object),
                    index: 0,
                },
                endpoints: spec
                    .ports
                    .iter()
                    .map(|p| slice_endpoints(p, slices, pods))
                    .collect(),
            }
        })
        .collect()
}

fn cluster_ips(svc: &Service) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = Vec::new();
    let spec = &svc.spec;
    for ip in spec.cluster_ip.iter().chain(&spec.cluster_ips) {
        // "None" marks a headless Service.
        if let Ok(ip) = ip.parse::<IpAddr>() {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
    }
    ips
}

fn service_port(p: &ServicePort) -> ServicePortTarget {
    ServicePortTarget {
        number: p.port,
        name: p.name.as_deref().filter(|n| !n.is_empty()).map(Arc::from),
        app_protocol: p.app_protocol.as_deref().map(Arc::from),
        target_port: match &p.target_port {
            Some(IntOrString::Int(n)) => {
                u16::try_from(*n).map_or(TargetPort::Number(p.port), TargetPort::Number)
            }
            Some(IntOrString::String(s)) => match s.parse::<u16>() {
                Ok(n) => TargetPort::Number(n),
                Err(_) => TargetPort::Named(Arc::from(s.as_str())),
            },
            None => TargetPort::Number(p.port),
        },
    }
}

/// Ready endpoints of Service port `port` from its EndpointSlices: the slice
/// port with the same name (unnamed matches unnamed) gives the target port;
/// `conditions.ready: false` is excluded, nil means ready.
fn slice_endpoints(
    port: &ServicePort,
    slices: &[&Sourced<EndpointSlice>],
    pods: &PodIndex<'_>,
) -> Vec<Endpoint> {
    let want = port.name.as_deref().unwrap_or("");
    let mut out = Vec::new();
    for slice in slices {
        let Some(number) = slice
            .object
            .ports
            .iter()
            .find(|p| p.name.as_deref().unwrap_or("") == want)
            .and_then(|p| p.port)
        else {
            continue;
        };
        for ep in &slice.object.endpoints {
            if ep.conditions.ready == Some(false) {
                continue;
            }
            let pod = ep
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .and_then(|r| {
                    let ns = r.namespace.as_deref().unwrap_or(&slice.key.namespace);
                    pods.by_name.get(&(ns, r.name.as_deref()?)).copied()
                });
            for address in &ep.addresses {
                match address.parse::<IpAddr>() {
                    Ok(ip) => {
                        out.push(pods.endpoint(SocketAddr::new(ip, number), pod, ep.zone.clone()))
                    }
                    Err(_) => {
                        debug!(slice = %slice.key, %address, "skipping non-IP endpoint address")
                    }
                }
            }
        }
    }
    out
}

/// One destination per host of every ServiceEntry, in load order. Static
/// `endpoints` only: a WorkloadEntry's port is `ports[<port name>]`, else the
/// port's `targetPort`, else its number. ServiceEntry endpoints are never
/// treated as in-mesh.
pub(crate) fn service_entries(resources: &Resources) -> Vec<Discovered> {
    let mut out = Vec::new();
    for se in &resources.service_entries {
        let spec = &se.object.spec;
        let ports: Vec<ServicePortTarget> = spec.ports.iter().map(se_port).collect();
        let endpoints: Vec<Vec<Endpoint>> =
            spec.ports.iter().map(|p| se_endpoints(se, p)).collect();
        let addresses: Vec<IpAddr> = spec.addresses.iter().filter_map(|a| parse_vip(a)).collect();
        for host in &spec.hosts {
            let hostname = host.to_ascii_lowercase();
            out.push(Discovered {
                target: ServiceTarget {
                    key: se.key.clone(),
                    labels: ServiceLabels::new(&se.key, &hostname),
                    hostname,
                    kind: ServiceKind::ServiceEntry,
                    ports: ports.clone(),
                    addresses: addresses.clone(),
                    index: 0,
                },
                endpoints: endpoints.clone(),
            });
        }
    }
    out
}

/// A VIP as an address; a CIDR only when it names a single host.
fn parse_vip(addr: &str) -> Option<IpAddr> {
    match addr.split_once('/') {
        None => addr.parse().ok(),
        Some((ip, bits)) => {
            let ip: IpAddr = ip.parse().ok()?;
            let full = if ip.is_ipv4() { "32" } else { "128" };
            (bits == full).then_some(ip)
        }
    }
}

fn se_port(p: &crate::config::ServiceEntryPort) -> ServicePortTarget {
    ServicePortTarget {
        number: p.number,
        name: p.name.as_deref().filter(|n| !n.is_empty()).map(Arc::from),
        app_protocol: p
            .protocol
            .as_deref()
            .map(|s| Arc::from(s.to_ascii_lowercase())),
        target_port: TargetPort::Number(p.target_port.unwrap_or(p.number)),
    }
}

fn se_endpoints(
    se: &Sourced<ServiceEntry>,
    port: &crate::config::ServiceEntryPort,
) -> Vec<Endpoint> {
    let mut out = Vec::new();
    for we in &se.object.spec.endpoints {
        let Some(ip) = we.address.as_deref().and_then(|a| a.parse::<IpAddr>().ok()) else {
            debug!(service_entry = %se.key, address = ?we.address, "skipping non-IP ServiceEntry endpoint");
            continue;
        };
        let number = port
            .name
            .as_deref()
            .and_then(|name| we.ports.get(name).copied())
            .or(port.target_port)
            .unwrap_or(port.number);
        out.push(Endpoint {
            addr: SocketAddr::new(ip, number),
            pod: None,
            workload: WorkloadInfo::unknown(),
            in_mesh: false,
            labels: we.labels.clone(),
            zone: None,
            locality: we.locality.as_deref().and_then(|l| l.parse().ok()),
        });
    }
    out
}

/// The Service key a Service-kind reference names (default namespace `ns`).
pub(crate) fn key_in(ns: &str, namespace: Option<&str>, name: &str) -> NamespacedName {
    NamespacedName::new(namespace.filter(|n| !n.is_empty()).unwrap_or(ns), name)
}

#[cfg(test)]
mod tests;
