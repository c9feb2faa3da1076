//! Linkerd's policy resources mapped onto the AuthorizationPolicy engine.
//!
//! Linkerd authorizes at the destination pod's port (a `Server`); the
//! waypoint authorizes a request for a Service port before it picks a pod. So
//! a Server *covers* a Service port when it selects the Service's endpoint
//! pods on that port's target port (by number, or by the pods' container
//! port name). Each Service with a covered port gets one ALLOW policy named
//! `linkerd:<namespace>/<service>`, with a rule per authorization of each
//! covering Server, scoped to the Service port: `ServerAuthorization`s
//! (`meshTLS` identities and service accounts, `networks`,
//! `unauthenticated`) and `policy.linkerd.io` AuthorizationPolicies targeting
//! the Server or its Namespace (`requiredAuthenticationRefs` to
//! MeshTLSAuthentication, NetworkAuthentication, ServiceAccount). A Server
//! with `policy.linkerd.io` HTTPRoutes authorizes only requests that match
//! one of them: Server-wide authorizations for any route, route-targeted
//! ones for theirs. A Server
//! nobody authorizes denies (its `accessPolicy`, default `deny`), as in
//! Linkerd. Ports no Server covers follow the default inbound policy (Pod,
//! then Namespace `config.linkerd.io/default-inbound-policy` annotation, then
//! `--linkerd-default-inbound-policy`); with none, Linkerd policy leaves them
//! alone. Identities `sa.ns.serviceaccount.identity.linkerd.<domain>` become
//! principals `<trust domain>/ns/<ns>/sa/<sa>`.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{
    Action, Client, LinkerdRef, NamespacedName, Network, PortRef, Resources, Server,
};
use crate::routing::ServiceKind;

use super::compile::{Applies, Compiled};
use super::matcher::{Cidr, StrMatch};
use super::rule::{Field, OperationMatch, Rule, SourceMatch};

mod routes;

use super::{AuthzOptions, Policy, Target};
use routes::{server_routes, RouteMatch};

/// Linkerd's default `clusterNetworks`.
pub const CLUSTER_NETWORKS: [&str; 5] = [
    "10.0.0.0/8",
    "100.64.0.0/10",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fd00::/8",
];

const DEFAULT_POLICY_ANNOTATION: &str = "config.linkerd.io/default-inbound-policy";

/// Linkerd's default inbound policies.
pub const DEFAULT_POLICIES: [&str; 6] = [
    "all-unauthenticated",
    "all-authenticated",
    "cluster-authenticated",
    "cluster-unauthenticated",
    "deny",
    "audit",
];

/// One authorization as a rule's sources: alternatives (OR). `None` when it
/// allows any client.
type Sources = Option<Vec<SourceMatch>>;

/// What a pod contributes: its labels, annotations and named container ports.
struct PodInfo<'a> {
    labels: &'a BTreeMap<String, String>,
    annotations: &'a BTreeMap<String, String>,
    ports: BTreeMap<String, u16>,
}

/// Compiles Linkerd's resources; errors name the object and field.
pub fn compile(resources: &Resources, opts: &AuthzOptions) -> Result<Vec<Compiled>, String> {
    if resources.linkerd_servers.is_empty() && opts.linkerd_default.is_none() {
        return Ok(notes_without_servers(resources));
    }
    let pods = pods(resources);
    let mut out = notes_without_servers(resources);
    for svc in &resources.services {
        let ns = &svc.key.namespace;
        let endpoint_pods = service_pods(resources, &svc.key, &pods);
        let mut rules = Vec::new();
        let mut governed = false;
        for port in &svc.object.spec.ports {
            let targets = target_ports(resources, &svc.key, port.name.as_deref(), port.port);
            let servers: Vec<_> = resources
                .linkerd_servers
                .iter()
                .filter(|s| &s.key.namespace == ns)
                .filter(|s| covers(&s.object, &endpoint_pods, &targets))
                .collect();
            let scope = OperationMatch {
                ports: Field::of(vec![port.port]),
                ..OperationMatch::default()
            };
            // One rule per (authorization, route match): a match's headers are
            // `when` conditions, which only a whole rule can carry.
            let mut push_scoped = |sources: Sources, matches: Option<&[RouteMatch]>| match matches {
                None => rules.push(Rule {
                    from: sources.unwrap_or_default(),
                    to: vec![scope.clone()],
                    when: Vec::new(),
                }),
                Some(matches) => {
                    for (op, when) in matches {
                        let mut to = op.clone();
                        to.ports = scope.ports.clone();
                        rules.push(Rule {
                            from: sources.clone().unwrap_or_default(),
                            to: vec![to],
                            when: when.clone(),
                        });
                    }
                }
            };
            if servers.is_empty() {
                let default = endpoint_pods
                    .iter()
                    .find_map(|p| p.annotations.get(DEFAULT_POLICY_ANNOTATION))
                    .or_else(|| namespace_default(resources, ns))
                    .map(String::as_str)
                    .or(opts.linkerd_default.as_deref());
                match default {
                    Some(d) => {
                        governed = true;
                        if let Some(sources) = default_policy(d)? {
                            push_scoped(sources, None);
                        }
                    }
                    None => push_scoped(None, None),
                }
                continue;
            }
            governed = true;
            for server in servers {
                let routes = server_routes(resources, server)?;
                // With routes, a request outside all of them is not authorized.
                let all: Option<Vec<RouteMatch>> = (!routes.is_empty())
                    .then(|| routes.iter().flat_map(|(_, m)| m.iter().cloned()).collect());
                let auths = authorizations(resources, server, opts)?;
                let route_auths = route_authorizations(resources, &routes, opts)?;
                if auths.is_empty() && route_auths.is_empty() {
                    let access = server
                        .object
                        .spec
                        .access_policy
                        .as_deref()
                        .unwrap_or("deny");
                    if let Some(sources) = default_policy(access)
                        .map_err(|e| format!("Server {}: spec.accessPolicy: {e}", server.key))?
                    {
                        push_scoped(sources, all.as_deref());
                    }
                }
                for sources in auths {
                    push_scoped(sources, all.as_deref());
                }
                for (i, sources) in route_auths {
                    push_scoped(sources, Some(&routes[i].1));
                }
            }
        }
        if !governed {
            continue;
        }
        let key = NamespacedName::new(ns.clone(), format!("linkerd:{}", svc.key.name));
        out.push(Compiled {
            policy: Arc::new(Policy {
                name: Arc::from(format!("linkerd:{}", svc.key)),
                key,
                action: Action::Allow,
                dry_run: false,
                rules,
                rejected: None,
                provider: None,
            }),
            applies: Applies::To(vec![Target::Destination(
                ServiceKind::Service,
                svc.key.clone(),
            )]),
        });
    }
    Ok(out)
}

/// Linkerd AuthorizationPolicies the waypoint cannot honour, shown as
/// ignored (the Servers they meant to open stay closed).
fn notes_without_servers(resources: &Resources) -> Vec<Compiled> {
    resources
        .linkerd_authorization_policies
        .iter()
        .filter(|p| {
            let t = &p.object.spec.target_ref;
            !matches!(t.kind.as_str(), "Server" | "Namespace" | "HTTPRoute")
        })
        .map(|p| Compiled {
            policy: Arc::new(Policy {
                name: Arc::from(format!("linkerd:{}", p.key)),
                key: p.key.clone(),
                action: Action::Allow,
                dry_run: false,
                rules: Vec::new(),
                rejected: None,
                provider: None,
            }),
            applies: Applies::Ignored(format!(
                "targets {} {}: only Servers, HTTPRoutes and Namespaces can be targeted, so it grants nothing",
                p.object.spec.target_ref.kind, p.object.spec.target_ref.name
            )),
        })
        .collect()
}

fn pods(resources: &Resources) -> BTreeMap<(String, String), (Option<String>, PodInfo<'_>)> {
    resources
        .pods
        .iter()
        .map(|p| {
            let ports = p
                .object
                .spec
                .as_ref()
                .and_then(|s| s.get("containers"))
                .and_then(|c| c.as_sequence())
                .into_iter()
                .flatten()
                .flat_map(|c| {
                    c.get("ports")
                        .and_then(|p| p.as_sequence())
                        .into_iter()
                        .flatten()
                })
                .filter_map(|port| {
                    let name = port.get("name")?.as_str()?.to_string();
                    let number = port.get("containerPort")?.as_u64()?;
                    Some((name, u16::try_from(number).ok()?))
                })
                .collect();
            (
                (p.key.namespace.clone(), p.key.name.clone()),
                (
                    p.object.status.pod_ip.clone(),
                    PodInfo {
                        labels: &p.object.metadata.labels,
                        annotations: &p.object.metadata.annotations,
                        ports,
                    },
                ),
            )
        })
        .collect()
}

/// The pods behind a Service: EndpointSlice endpoints by Pod reference, else by IP.
fn service_pods<'a>(
    resources: &Resources,
    svc: &NamespacedName,
    pods: &'a BTreeMap<(String, String), (Option<String>, PodInfo<'a>)>,
) -> Vec<&'a PodInfo<'a>> {
    let mut out: Vec<&PodInfo> = Vec::new();
    for slice in slices(resources, svc) {
        for ep in &slice.endpoints {
            let by_ref = ep
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref().unwrap_or("Pod") == "Pod")
                .and_then(|r| pods.get(&(svc.namespace.clone(), r.name.clone()?)))
                .map(|(_, info)| info);
            let by_ip = || {
                pods.iter()
                    .filter(|((ns, _), _)| ns == &svc.namespace)
                    .find(|(_, (ip, _))| ip.as_ref().is_some_and(|ip| ep.addresses.contains(ip)))
                    .map(|(_, (_, info))| info)
            };
            if let Some(info) = by_ref.or_else(by_ip) {
                if !out.iter().any(|o| std::ptr::eq(*o, info)) {
                    out.push(info);
                }
            }
        }
    }
    out
}

fn slices<'a>(
    resources: &'a Resources,
    svc: &'a NamespacedName,
) -> impl Iterator<Item = &'a crate::config::EndpointSlice> + 'a {
    resources
        .endpoint_slices
        .iter()
        .filter(move |s| {
            s.key.namespace == svc.namespace
                && s.object
                    .metadata
                    .labels
                    .get("kubernetes.io/service-name")
                    .is_some_and(|n| n == &svc.name)
        })
        .map(|s| &s.object)
}

/// The target port numbers of a Service port, from its EndpointSlices.
fn target_ports(
    resources: &Resources,
    svc: &NamespacedName,
    name: Option<&str>,
    port: u16,
) -> Vec<u16> {
    let mut out: Vec<u16> = slices(resources, svc)
        .flat_map(|s| s.ports.iter())
        .filter(|p| p.name.as_deref().unwrap_or("") == name.unwrap_or(""))
        .filter_map(|p| p.port)
        .collect();
    if out.is_empty() {
        out.push(port);
    }
    out
}

/// Whether `server` selects any of `pods` on one of `targets`.
fn covers(server: &Server, pods: &[&PodInfo<'_>], targets: &[u16]) -> bool {
    let Some(selector) = &server.spec.pod_selector else {
        return false;
    };
    pods.iter().any(|pod| {
        selector.matches(pod.labels)
            && match &server.spec.port {
                Some(PortRef::Number(n)) => targets.contains(n),
                Some(PortRef::Name(name)) => {
                    pod.ports.get(name).is_some_and(|n| targets.contains(n))
                }
                None => false,
            }
    })
}

fn namespace_default<'a>(resources: &'a Resources, ns: &str) -> Option<&'a String> {
    resources
        .namespaces
        .iter()
        .find(|n| n.key.name == ns)
        .and_then(|n| n.object.metadata.annotations.get(DEFAULT_POLICY_ANNOTATION))
}

/// AuthorizationPolicies targeting one of `routes`: (route index, sources).
fn route_authorizations(
    resources: &Resources,
    routes: &[(NamespacedName, Vec<RouteMatch>)],
    opts: &AuthzOptions,
) -> Result<Vec<(usize, Sources)>, String> {
    let mut out = Vec::new();
    for (i, (key, _)) in routes.iter().enumerate() {
        for policy in resources
            .linkerd_authorization_policies
            .iter()
            .filter(|p| p.key.namespace == key.namespace)
            .filter(|p| {
                let t = &p.object.spec.target_ref;
                t.kind == "HTTPRoute" && t.name == key.name
            })
        {
            let sources = required_sources(
                resources,
                &policy.object.spec.required_authentication_refs,
                &key.namespace,
                opts,
            )
            .map_err(|e| {
                format!(
                    "AuthorizationPolicy.policy.linkerd.io {}: spec.requiredAuthenticationRefs: {e}",
                    policy.key
                )
            })?;
            out.push((i, sources));
        }
    }
    Ok(out)
}

/// A default inbound policy as sources (`None` inside: any client); the
/// outer `None` is `deny`.
fn default_policy(name: &str) -> Result<Option<Sources>, String> {
    let authenticated = || SourceMatch {
        principals: Field::of(vec![StrMatch::Presence]),
        ..SourceMatch::default()
    };
    let cluster = |mut s: SourceMatch| -> Result<SourceMatch, String> {
        s.ip_blocks = Field::of(
            CLUSTER_NETWORKS
                .iter()
                .map(|c| Cidr::parse(c).map_err(|e| e.to_string()))
                .collect::<Result<_, _>>()?,
        );
        Ok(s)
    };
    Ok(match name {
        "all-unauthenticated" | "audit" => Some(None),
        "all-authenticated" => Some(Some(vec![authenticated()])),
        "cluster-authenticated" => Some(Some(vec![cluster(authenticated())?])),
        "cluster-unauthenticated" => Some(Some(vec![cluster(SourceMatch::default())?])),
        "deny" => None,
        other => {
            return Err(format!(
                "{other:?} is not a default inbound policy (one of {})",
                DEFAULT_POLICIES.join(", ")
            ))
        }
    })
}

/// Every authorization of `server`, as sources.
fn authorizations(
    resources: &Resources,
    server: &crate::config::Sourced<Server>,
    opts: &AuthzOptions,
) -> Result<Vec<Sources>, String> {
    let ns = &server.key.namespace;
    let mut out = Vec::new();
    for sa in resources
        .linkerd_server_authorizations
        .iter()
        .filter(|a| &a.key.namespace == ns)
    {
        let target = &sa.object.spec.server;
        let names_it = target.name.as_deref() == Some(&server.key.name)
            || target
                .selector
                .as_ref()
                .is_some_and(|s| s.matches(&server.object.metadata.labels));
        if names_it {
            out.push(
                client_sources(&sa.object.spec.client, ns, opts)
                    .map_err(|e| format!("ServerAuthorization {}: spec.client: {e}", sa.key))?,
            );
        }
    }
    for policy in resources
        .linkerd_authorization_policies
        .iter()
        .filter(|p| &p.key.namespace == ns)
    {
        let t = &policy.object.spec.target_ref;
        let names_it = (t.kind == "Server" && t.name == server.key.name)
            || (t.kind == "Namespace" && &t.name == ns);
        if names_it {
            out.push(
                required_sources(resources, &policy.object.spec.required_authentication_refs, ns, opts)
                    .map_err(|e| format!("AuthorizationPolicy.policy.linkerd.io {}: spec.requiredAuthenticationRefs: {e}", policy.key))?,
            );
        }
    }
    Ok(out)
}

fn client_sources(client: &Client, ns: &str, opts: &AuthzOptions) -> Result<Sources, String> {
    let mut principals = Vec::new();
    if let Some(tls) = &client.mesh_tls {
        if tls.unauthenticated_tls {
            return Err("meshTLS.unauthenticatedTLS has no equivalent at a waypoint (callers arrive over HBONE with an identity, or without TLS)".to_string());
        }
        for id in &tls.identities {
            principals.push(linkerd_identity(id, opts)?);
        }
        for sa in &tls.service_accounts {
            let sa_ns = sa.namespace.as_deref().unwrap_or(ns);
            principals.push(StrMatch::Exact(format!(
                "{}/ns/{sa_ns}/sa/{}",
                opts.trust_domain, sa.name
            )));
        }
        if principals.is_empty() {
            // meshTLS: {} means any authenticated client.
            principals.push(StrMatch::Presence);
        }
    } else if !client.unauthenticated {
        // Neither meshTLS nor unauthenticated: Linkerd requires an identity.
        principals.push(StrMatch::Presence);
    }
    combine(principals, &client.networks)
}

/// One source per network (any), each with the principals (all).
fn combine(principals: Vec<StrMatch>, networks: &[Network]) -> Result<Sources, String> {
    let base = SourceMatch {
        principals: Field::of(principals),
        ..SourceMatch::default()
    };
    if networks.is_empty() {
        return Ok((base != SourceMatch::default()).then(|| vec![base]));
    }
    networks
        .iter()
        .map(|n| {
            let cidr = |c: &str| Cidr::parse(c).map_err(|e| e.to_string());
            let mut s = base.clone();
            s.ip_blocks = Field::of(vec![cidr(&n.cidr)?]);
            s.ip_blocks.none = n.except.iter().map(|c| cidr(c)).collect::<Result<_, _>>()?;
            Ok(s)
        })
        .collect::<Result<Vec<_>, String>>()
        .map(Some)
}

fn required_sources(
    resources: &Resources,
    refs: &[LinkerdRef],
    ns: &str,
    opts: &AuthzOptions,
) -> Result<Sources, String> {
    let mut principals: Option<Vec<StrMatch>> = None;
    let mut networks: Option<Vec<Network>> = None;
    for r in refs {
        let ref_ns = r.namespace.as_deref().unwrap_or(ns);
        let key = NamespacedName::new(ref_ns.to_string(), r.name.clone());
        let ids = match r.kind.as_str() {
            "MeshTLSAuthentication" => {
                let m = resources
                    .linkerd_mesh_tls_authentications
                    .iter()
                    .find(|m| m.key == key)
                    .ok_or_else(|| format!("MeshTLSAuthentication {key} not found"))?;
                let mut ids = m
                    .object
                    .spec
                    .identities
                    .iter()
                    .map(|i| linkerd_identity(i, opts))
                    .collect::<Result<Vec<_>, _>>()?;
                for id_ref in &m.object.spec.identity_refs {
                    ids.push(service_account(id_ref, ref_ns, opts)?);
                }
                Some(ids)
            }
            "ServiceAccount" => Some(vec![service_account(r, ns, opts)?]),
            "NetworkAuthentication" => {
                let n = resources
                    .linkerd_network_authentications
                    .iter()
                    .find(|n| n.key == key)
                    .ok_or_else(|| format!("NetworkAuthentication {key} not found"))?;
                if networks.replace(n.object.spec.networks.clone()).is_some() {
                    return Err("more than one NetworkAuthentication is not supported".to_string());
                }
                None
            }
            other => return Err(format!("unsupported kind {other}")),
        };
        if let Some(ids) = ids {
            if principals.replace(ids).is_some() {
                return Err("more than one identity reference (MeshTLSAuthentication, ServiceAccount) is not supported".to_string());
            }
        }
    }
    combine(
        principals.unwrap_or_default(),
        &networks.unwrap_or_default(),
    )
}

fn service_account(r: &LinkerdRef, ns: &str, opts: &AuthzOptions) -> Result<StrMatch, String> {
    if r.kind != "ServiceAccount" {
        return Err(format!(
            "identityRefs kind {} is not supported (use ServiceAccount)",
            r.kind
        ));
    }
    let sa_ns = r.namespace.as_deref().unwrap_or(ns);
    Ok(StrMatch::Exact(format!(
        "{}/ns/{sa_ns}/sa/{}",
        opts.trust_domain, r.name
    )))
}

/// `sa.ns.serviceaccount.identity.linkerd.<domain>` (or `*` in place of `sa`,
/// or `*` alone) as a principal of this mesh.
fn linkerd_identity(id: &str, opts: &AuthzOptions) -> Result<StrMatch, String> {
    if id == "*" {
        return Ok(StrMatch::Presence);
    }
    let mut parts = id.splitn(6, '.');
    let (Some(sa), Some(ns), Some("serviceaccount"), Some("identity"), Some("linkerd"), Some(_)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(format!(
            "identity {id:?} is not of the form <sa>.<ns>.serviceaccount.identity.linkerd.<domain>"
        ));
    };
    let td = &opts.trust_domain;
    Ok(match sa {
        "*" => StrMatch::Prefix(format!("{td}/ns/{ns}/sa/")),
        sa => StrMatch::Exact(format!("{td}/ns/{ns}/sa/{sa}")),
    })
}
