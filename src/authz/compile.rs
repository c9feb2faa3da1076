//! AuthorizationPolicy objects → compiled [`Policy`]s and what each applies
//! to at this waypoint. A policy with a field we cannot enforce is not
//! dropped: it becomes a rule that denies everything it targets (fail
//! closed), with the reason kept for `/config_dump` and `waypoint check`.

use std::sync::Arc;

use http::HeaderName;

use crate::config::{self, Action, AuthorizationPolicy, ConfigError, ConfigErrors, Sourced};
use crate::config::{LoadedPolicy, NamespacedName, PolicyTargetReference, RequestAuthentication};
use crate::routing::ServiceKind;

use super::ext_authz::ExtAuthzProvider;
use super::jwt::{parse_jwks, JwtProvider, Keys, RemoteKeys, TokenLocation};
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
    let located = locator(loaded, "AuthorizationPolicy");
    let dry_run = object
        .metadata
        .annotations
        .get(DRY_RUN)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let applies = applies(
        Scope {
            namespace: &key.namespace,
            selector: spec.selector.is_some(),
            refs: spec.target_ref.iter().chain(&spec.target_refs).collect(),
            single_ref: spec.target_ref.is_some(),
        },
        opts,
        &located,
    )?;
    let mut rejected = loaded.object.error.as_ref().map(|e| e.to_string());
    let mut rules = Vec::new();
    let mut provider = None;
    if rejected.is_none() {
        match compile_spec(object, opts) {
            Ok((r, p)) => (rules, provider) = (r, p),
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
        provider,
    };
    Ok(Compiled {
        policy: Arc::new(policy),
        applies,
    })
}

/// Builds errors located at a field of `sourced`.
fn locator<'a, T>(
    sourced: &'a Sourced<T>,
    kind: &'static str,
) -> impl Fn(&str, String) -> ConfigError + 'a {
    move |field: &str, reason: String| sourced.error_at(kind, field, reason)
}

/// Which traffic of this waypoint a policy is for, as Istio decides it for
/// waypoints: `targetRefs` to this Gateway, a Service or a ServiceEntry, or
/// from the root namespace to this waypoint's GatewayClass. `selector` and
/// namespace-wide policies are for ztunnel and sidecars.
fn applies(
    scope: Scope<'_>,
    opts: &AuthzOptions,
    located: &dyn Fn(&str, String) -> ConfigError,
) -> Result<Applies, ConfigError> {
    let Scope {
        namespace: ns,
        selector,
        refs,
        single_ref,
    } = scope;
    let field = |i: usize| {
        if single_ref {
            "spec.targetRef".to_string()
        } else {
            format!("spec.targetRefs[{i}]")
        }
    };
    if selector && !refs.is_empty() {
        return Err(located(
            "spec.selector",
            "only one of selector and targetRefs may be set".to_string(),
        ));
    }
    if selector {
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
        let named = NamespacedName::new(ns.to_string(), r.name.clone());
        match (r.group.as_str(), r.kind.as_str()) {
            (GATEWAY_GROUP, "Gateway") => {
                if named == opts.gateway {
                    targets.push(Target::AllTraffic);
                } else {
                    elsewhere.push(format!("Gateway {named}"));
                }
            }
            (GATEWAY_GROUP, "GatewayClass") => {
                if ns != opts.root_namespace {
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

/// Where a policy object says it applies.
struct Scope<'a> {
    namespace: &'a str,
    selector: bool,
    refs: Vec<&'a PolicyTargetReference>,
    /// Written as the deprecated single `targetRef`.
    single_ref: bool,
}

type Invalid = (String, String);

fn compile_spec(
    object: &AuthorizationPolicy,
    opts: &AuthzOptions,
) -> Result<(Vec<Rule>, Option<Arc<ExtAuthzProvider>>), Invalid> {
    let spec = &object.spec;
    let provider = match (spec.action, &spec.provider) {
        (Action::Custom, p) => Some(custom_provider(p.as_ref().map(|p| p.name.as_str()), opts)?),
        (_, Some(_)) => {
            return Err((
                "spec.provider".to_string(),
                "provider is only valid with action CUSTOM".to_string(),
            ))
        }
        _ => None,
    };
    let rules = spec
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| compile_rule(r, &format!("spec.rules[{i}]")))
        .collect::<Result<_, _>>()?;
    Ok((rules, provider))
}

/// The MeshConfig extension provider a CUSTOM policy names.
fn custom_provider(
    name: Option<&str>,
    opts: &AuthzOptions,
) -> Result<Arc<ExtAuthzProvider>, Invalid> {
    let field = "spec.provider.name".to_string();
    let name = name
        .filter(|n| !n.is_empty())
        .ok_or((field.clone(), "is required with action CUSTOM".to_string()))?;
    let Some(p) = opts
        .mesh
        .extension_providers
        .iter()
        .find(|p| p.name == name)
    else {
        return Err((
            field,
            format!("no extension provider {name:?} in the mesh config (--mesh-config)"),
        ));
    };
    match (&p.envoy_ext_authz_http, &p.envoy_ext_authz_grpc) {
        (Some(http), _) => ExtAuthzProvider::compile(name, http)
            .map(Arc::new)
            .map_err(|e| (field, format!("provider {name}: {e}"))),
        (None, Some(grpc)) => ExtAuthzProvider::compile_grpc(name, grpc)
            .map(Arc::new)
            .map_err(|e| (field, format!("provider {name}: {e}"))),
        (None, None) => Err((
            field,
            format!("provider {name} is not an external authorization provider"),
        )),
    }
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
            "request.auth.principal" => (Attr::AuthPrincipal, Kind::Str),
            "request.auth.audiences" => (Attr::AuthAudiences, Kind::Str),
            "request.auth.presenter" => (Attr::AuthPresenter, Kind::Str),
            k if k.starts_with("request.auth.claims[") => {
                let path = claim_path(&k["request.auth.claims".len()..]).ok_or_else(|| {
                    bad_key("claims are written request.auth.claims[name][nested]")
                })?;
                (Attr::AuthClaim(path), Kind::Str)
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

/// `[a][b]` → `["a", "b"]`.
fn claim_path(mut rest: &str) -> Option<Vec<String>> {
    let mut path = Vec::new();
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let end = inner.find(']')?;
        if end == 0 {
            return None;
        }
        path.push(inner[..end].to_string());
        rest = &inner[end + 1..];
    }
    (!path.is_empty()).then_some(path)
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

/// One RequestAuthentication compiled: its JWT rules and what they apply to.
pub struct CompiledAuthn {
    pub name: Arc<str>,
    pub providers: Vec<Arc<JwtProvider>>,
    pub applies: Applies,
}

/// Compiles a RequestAuthentication; its errors reject the config (a rule
/// that cannot verify tokens must not let them through unverified).
pub fn compile_authn(
    sourced: &Sourced<RequestAuthentication>,
    opts: &AuthzOptions,
    remote: &dyn Fn(&str) -> Arc<RemoteKeys>,
) -> Result<CompiledAuthn, ConfigError> {
    let spec = &sourced.object.spec;
    let located = locator(sourced, "RequestAuthentication");
    let applies = applies(
        Scope {
            namespace: &sourced.key.namespace,
            selector: spec.selector.is_some(),
            refs: spec.target_ref.iter().chain(&spec.target_refs).collect(),
            single_ref: spec.target_ref.is_some(),
        },
        opts,
        &located,
    )?;
    let name: Arc<str> = Arc::from(sourced.key.to_string());
    let mut providers = Vec::new();
    for (i, rule) in spec.jwt_rules.iter().enumerate() {
        let at = |f: &str| format!("spec.jwtRules[{i}].{f}");
        if rule.issuer.is_empty() {
            return Err(located(&at("issuer"), "is required".to_string()));
        }
        let keys = match (&rule.jwks, &rule.jwks_uri) {
            (Some(text), _) => Keys::Inline(parse_jwks(text).map_err(|e| located(&at("jwks"), e))?),
            (None, Some(uri)) => {
                if !uri.starts_with("http://") {
                    return Err(located(
                        &at("jwksUri"),
                        format!("{uri}: only http:// through the mesh is supported (TLS origination is not); use jwks inline"),
                    ));
                }
                uri.parse::<http::Uri>()
                    .ok()
                    .filter(|u| u.authority().is_some())
                    .ok_or_else(|| located(&at("jwksUri"), format!("{uri:?} is not a URL")))?;
                Keys::Remote(remote(uri))
            }
            (None, None) => {
                return Err(located(
                    &at("jwks"),
                    "one of jwks and jwksUri is required".to_string(),
                ))
            }
        };
        if let Some(t) = &rule.timeout {
            humantime::parse_duration(t).map_err(|e| located(&at("timeout"), e.to_string()))?;
        }
        let header = |field: String, name: &str| {
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| located(&field, format!("{name:?} is not a header name")))
        };
        let mut locations = Vec::new();
        for (j, h) in rule.from_headers.iter().enumerate() {
            locations.push(TokenLocation::Header {
                name: header(at(&format!("fromHeaders[{j}].name")), &h.name)?,
                prefix: h.prefix.clone().unwrap_or_default(),
            });
        }
        locations.extend(rule.from_params.iter().cloned().map(TokenLocation::Param));
        locations.extend(rule.from_cookies.iter().cloned().map(TokenLocation::Cookie));
        if locations.is_empty() {
            locations = TokenLocation::defaults();
        }
        let output_payload_to_header = rule
            .output_payload_to_header
            .as_deref()
            .map(|h| header(at("outputPayloadToHeader"), h))
            .transpose()?;
        let output_claim_to_headers = rule
            .output_claim_to_headers
            .iter()
            .enumerate()
            .map(|(j, c)| {
                if c.claim.is_empty() {
                    return Err(located(
                        &at(&format!("outputClaimToHeaders[{j}].claim")),
                        "is required".to_string(),
                    ));
                }
                Ok((
                    header(at(&format!("outputClaimToHeaders[{j}].header")), &c.header)?,
                    c.claim.split('.').map(str::to_string).collect(),
                ))
            })
            .collect::<Result<_, _>>()?;
        providers.push(Arc::new(JwtProvider {
            name: name.clone(),
            issuer: rule.issuer.clone(),
            audiences: rule.audiences.clone(),
            keys,
            locations,
            forward_original_token: rule.forward_original_token,
            output_payload_to_header,
            output_claim_to_headers,
        }));
    }
    Ok(CompiledAuthn {
        name,
        providers,
        applies,
    })
}
