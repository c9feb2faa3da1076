//! AuthorizationPolicy objects → compiled [`Policy`]s and what each applies
//! to at this waypoint. A policy with a field we cannot enforce is not
//! dropped: it becomes a rule that denies everything it targets (fail
//! closed), with the reason kept for `/config_dump` and `waypoint check`.

use std::sync::Arc;

use crate::config::{
    self, Action, AuthorizationPolicy, ConfigError, ConfigErrors, Location, ObjectRef, Sourced,
};
use crate::config::{LoadedPolicy, NamespacedName};
use crate::routing::ServiceKind;

use super::matcher::{parse_port, Cidr, HostMatch, MatcherError, PathMatch, StrMatch};
use super::rule::{Attr, ConditionMatch, Field, OperationMatch, Rule, SourceMatch, Value};
use super::{AuthzOptions, Policy, Target};

const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
const DRY_RUN: &str = "istio.io/dry-run";

/// What this waypoint makes of one policy.
#[derive(Debug, Clone, PartialEq)]
pub enum Applies {
    /// Enforced (or, rejected, denying) for these targets.
    To(Vec<Target>),
    /// Not for this waypoint, and why.
    Ignored(String),
}

/// One policy compiled, with what it applies to.
pub struct Compiled {
    pub policy: Arc<Policy>,
    pub applies: Applies,
}

/// Compiles `loaded`. `Err` only when its targets cannot be read: then
/// nobody can tell what rejecting it would leave open.
pub fn compile_policy(
    loaded: &Sourced<LoadedPolicy>,
    opts: &AuthzOptions,
) -> Result<Compiled, ConfigError> {
    let object = &loaded.object.policy;
    let spec = &object.spec;
    let key = &loaded.key;
    let located = |field: &str, reason: String| {
        ConfigError::new(
            Location {
                file: Some(loaded.origin.file.to_string()),
                document: Some(loaded.origin.document),
                object: Some(ObjectRef {
                    kind: "AuthorizationPolicy".to_string(),
                    namespace: Some(key.namespace.clone()),
                    name: key.name.clone(),
                }),
                field: Some(field.to_string()),
            },
            reason,
        )
    };
    let dry_run = object
        .metadata
        .annotations
        .get(DRY_RUN)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let applies = applies(loaded, opts, &located)?;
    let mut rejected = loaded.object.error.as_ref().map(|e| e.to_string());
    let mut rules = Vec::new();
    if rejected.is_none() {
        match compile_spec(object) {
            Ok(r) => rules = r,
            Err((field, reason)) => rejected = Some(located(&field, reason).to_string()),
        }
    }
    if rejected.is_some() {
        // Fail closed: a policy we cannot read denies everything it targets.
        rules = vec![Rule::any()];
    }
    let policy = Policy {
        name: Arc::from(format!("{}/{}", key.namespace, key.name)),
        key: key.clone(),
        action: spec.action,
        dry_run,
        rules,
        rejected,
    };
    Ok(Compiled {
        policy: Arc::new(policy),
        applies,
    })
}

/// Which traffic of this waypoint a policy is for, as Istio decides it for
/// waypoints: `targetRefs` to this Gateway, a Service or a ServiceEntry, or
/// from the root namespace to this waypoint's GatewayClass. `selector` and
/// namespace-wide policies are for ztunnel and sidecars.
fn applies(
    loaded: &Sourced<LoadedPolicy>,
    opts: &AuthzOptions,
    located: &dyn Fn(&str, String) -> ConfigError,
) -> Result<Applies, ConfigError> {
    let spec = &loaded.object.policy.spec;
    let ns = &loaded.key.namespace;
    let refs: Vec<_> = spec.target_ref.iter().chain(&spec.target_refs).collect();
    let field = |i: usize| {
        if spec.target_ref.is_some() {
            "spec.targetRef".to_string()
        } else {
            format!("spec.targetRefs[{i}]")
        }
    };
    if spec.selector.is_some() && !refs.is_empty() {
        return Err(located(
            "spec.selector",
            "only one of selector and targetRefs may be set".to_string(),
        ));
    }
    if spec.selector.is_some() {
        return Ok(Applies::Ignored(
            "has a selector: enforced by ztunnel or sidecars, not by a waypoint".to_string(),
        ));
    }
    if refs.is_empty() {
        return Ok(Applies::Ignored(
            "has neither selector nor targetRefs: a namespace-wide policy, enforced by ztunnel"
                .to_string(),
        ));
    }
    let mut targets = Vec::new();
    let mut elsewhere = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        if r.namespace
            .as_deref()
            .is_some_and(|n| !n.is_empty() && n != ns)
        {
            return Err(located(
                &format!("{}.namespace", field(i)),
                format!("must be the policy's namespace {ns}"),
            ));
        }
        let named = NamespacedName::new(ns.clone(), r.name.clone());
        match (r.group.as_str(), r.kind.as_str()) {
            (GATEWAY_GROUP, "Gateway") => {
                if named == opts.gateway {
                    targets.push(Target::AllTraffic);
                } else {
                    elsewhere.push(format!("Gateway {named}"));
                }
            }
            (GATEWAY_GROUP, "GatewayClass") => {
                if ns != &opts.root_namespace {
                    return Err(located(
                        &field(i),
                        format!(
                            "a GatewayClass may only be targeted from the root namespace {}",
                            opts.root_namespace
                        ),
                    ));
                }
                if r.name == opts.gateway_class {
                    targets.push(Target::AllTraffic);
                } else {
                    elsewhere.push(format!("GatewayClass {}", r.name));
                }
            }
            ("" | "core", "Service") => {
                targets.push(Target::Destination(ServiceKind::Service, named));
            }
            ("networking.istio.io", "ServiceEntry") => {
                targets.push(Target::Destination(ServiceKind::ServiceEntry, named));
            }
            (group, kind) => {
                return Err(located(
                    &field(i),
                    format!(
                        "unsupported target {group}/{kind}: a waypoint policy targets its Gateway, \
                         a Service, a ServiceEntry or (root namespace) its GatewayClass"
                    ),
                ))
            }
        }
    }
    if targets.is_empty() {
        return Ok(Applies::Ignored(format!(
            "targets {}, not this waypoint",
            elsewhere.join(", ")
        )));
    }
    Ok(Applies::To(targets))
}

type Invalid = (String, String);

fn compile_spec(object: &AuthorizationPolicy) -> Result<Vec<Rule>, Invalid> {
    let spec = &object.spec;
    match (spec.action, &spec.provider) {
        (Action::Custom, _) => {
            return Err((
                "spec.action".to_string(),
                "CUSTOM (external authorization) is not supported by this waypoint yet".to_string(),
            ))
        }
        (_, Some(_)) => {
            return Err((
                "spec.provider".to_string(),
                "provider is only valid with action CUSTOM".to_string(),
            ))
        }
        _ => {}
    }
    spec.rules
        .iter()
        .enumerate()
        .map(|(i, r)| compile_rule(r, &format!("spec.rules[{i}]")))
        .collect()
}

fn compile_rule(rule: &config::Rule, at: &str) -> Result<Rule, Invalid> {
    let mut out = Rule::default();
    for (i, from) in rule.from.iter().enumerate() {
        let at = format!("{at}.from[{i}].source");
        let Some(s) = &from.source else {
            return Err((at, "must be set".to_string()));
        };
        let m = SourceMatch {
            principals: field(
                &s.principals,
                &s.not_principals,
                &at,
                "principals",
                StrMatch::parse,
            )?,
            request_principals: field(
                &s.request_principals,
                &s.not_request_principals,
                &at,
                "requestPrincipals",
                StrMatch::parse,
            )?,
            namespaces: field(
                &s.namespaces,
                &s.not_namespaces,
                &at,
                "namespaces",
                StrMatch::parse,
            )?,
            ip_blocks: field(&s.ip_blocks, &s.not_ip_blocks, &at, "ipBlocks", Cidr::parse)?,
            remote_ip_blocks: field(
                &s.remote_ip_blocks,
                &s.not_remote_ip_blocks,
                &at,
                "remoteIpBlocks",
                Cidr::parse,
            )?,
        };
        if m == SourceMatch::default() {
            return Err((at, "must not be empty".to_string()));
        }
        out.from.push(m);
    }
    for (i, to) in rule.to.iter().enumerate() {
        let at = format!("{at}.to[{i}].operation");
        let Some(o) = &to.operation else {
            return Err((at, "must be set".to_string()));
        };
        let m = OperationMatch {
            hosts: field(&o.hosts, &o.not_hosts, &at, "hosts", HostMatch::parse)?,
            ports: field(&o.ports, &o.not_ports, &at, "ports", parse_port)?,
            methods: field(&o.methods, &o.not_methods, &at, "methods", StrMatch::parse)?,
            paths: field(&o.paths, &o.not_paths, &at, "paths", PathMatch::parse)?,
        };
        if m == OperationMatch::default() {
            return Err((at, "must not be empty".to_string()));
        }
        out.to.push(m);
    }
    for (i, c) in rule.when.iter().enumerate() {
        let at = format!("{at}.when[{i}]");
        out.when.push(condition(c, &at)?);
    }
    Ok(out)
}

/// `values` and `notValues` of one field, each parsed by `parse`.
fn field<T>(
    any: &[String],
    none: &[String],
    at: &str,
    name: &str,
    parse: impl Fn(&str) -> Result<T, MatcherError>,
) -> Result<Field<T>, Invalid> {
    let not_name = format!("not{}{}", name[..1].to_ascii_uppercase(), &name[1..]);
    let list = |values: &[String], name: &str| {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| parse(v).map_err(|e| (format!("{at}.{name}[{i}]"), e.to_string())))
            .collect::<Result<Vec<T>, Invalid>>()
    };
    Ok(Field {
        any: list(any, name)?,
        none: list(none, &not_name)?,
    })
}

/// A `when` entry: its key decides how its values are read.
fn condition(c: &config::Condition, at: &str) -> Result<ConditionMatch, Invalid> {
    let key = c.key.as_str();
    let bad_key = |why: &str| (format!("{at}.key"), format!("{key:?}: {why}"));
    if c.values.is_empty() && c.not_values.is_empty() {
        return Err((
            at.to_string(),
            "one of values and notValues must be set".to_string(),
        ));
    }
    let (attr, kind) = if let Some(name) = key
        .strip_prefix("request.headers[")
        .and_then(|k| k.strip_suffix(']'))
    {
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| bad_key("not a valid header name"))?;
        (Attr::Header(name), Kind::Str)
    } else {
        match key {
            "source.ip" => (Attr::SourceIp, Kind::Ip),
            "remote.ip" => (Attr::RemoteIp, Kind::Ip),
            "source.namespace" => (Attr::SourceNamespace, Kind::Str),
            "source.principal" => (Attr::SourcePrincipal, Kind::Str),
            "destination.ip" => (Attr::DestinationIp, Kind::Ip),
            "destination.port" => (Attr::DestinationPort, Kind::Port),
            "connection.sni" => (Attr::Sni, Kind::Str),
            "request.auth.principal" | "request.auth.audiences" | "request.auth.presenter" => {
                (Attr::RequestAuth, Kind::Str)
            }
            k if k.starts_with("request.auth.claims[") && k.ends_with(']') => {
                (Attr::RequestAuth, Kind::Str)
            }
            _ => return Err(bad_key("unsupported condition key")),
        }
    };
    let parse = |v: &str| -> Result<Value, MatcherError> {
        Ok(match kind {
            Kind::Str => Value::Str(StrMatch::parse(v)?),
            Kind::Ip => Value::Ip(Cidr::parse(v)?),
            Kind::Port => Value::Port(parse_port(v)?),
        })
    };
    let values = field(&c.values, &c.not_values, at, "values", parse)?;
    Ok(ConditionMatch { attr, values })
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Ip,
    Port,
}

/// Compiles every loaded policy; errors only for unreadable targets.
pub fn compile_all(
    policies: &[Sourced<LoadedPolicy>],
    opts: &AuthzOptions,
) -> Result<Vec<Compiled>, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let mut out = Vec::new();
    for p in policies {
        match compile_policy(p, opts) {
            Ok(c) => out.push(c),
            Err(e) => errors.0.push(e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}
