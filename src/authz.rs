//! Authorization: Istio's AuthorizationPolicy as a waypoint enforces it.
//!
//! `compile` turns the loaded policies into [`Policy`]s and decides which
//! traffic of this waypoint each applies to; [`AuthzTable`] holds them per
//! destination, swapped with the rest of the config; [`PolicySet::evaluate`]
//! decides one request (or TCP connection) in Istio's order: DENY, then ALLOW
//! (when any ALLOW policy applies, a request none matches is denied); AUDIT
//! and `istio.io/dry-run` policies are evaluated and recorded, never enforced.
//! With no policy configured the table is empty and a request pays one
//! `is_empty` check.

mod compile;
pub mod ext_authz;
pub mod ext_authz_proto;
pub mod jwt;
pub mod linkerd;
pub mod matcher;
pub mod path;
mod rule;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::config::{Action, ConfigErrors, MeshConfig, NamespacedName, Resources};
use crate::routing::ServiceKind;

pub use compile::Applies;
pub use ext_authz::ExtAuthzProvider;
pub use jwt::{JwtFailure, JwtProvider, RemoteKeys, RequestAuth};
pub use rule::{Attributes, HttpAttributes, Rule, TcpReading};

/// Who this waypoint is, for deciding which policies target it, and the
/// mesh's extension providers.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthzOptions {
    /// This waypoint's Gateway (`--gateway-name` in `--namespace`).
    pub gateway: NamespacedName,
    /// Its GatewayClass (`--gateway-class`).
    pub gateway_class: String,
    /// Istio's root namespace (`--root-namespace`, default `istio-system`).
    pub root_namespace: String,
    /// `--mesh-config`: the providers `CUSTOM` policies name.
    pub mesh: Arc<MeshConfig>,
    /// The mesh's trust domain: Linkerd identities and service accounts map into it.
    pub trust_domain: String,
    /// `--linkerd-default-inbound-policy`: Linkerd's cluster default, if any.
    pub linkerd_default: Option<String>,
}

impl Default for AuthzOptions {
    fn default() -> Self {
        AuthzOptions {
            gateway: NamespacedName::new("default".to_string(), "waypoint".to_string()),
            gateway_class: "pingora-waypoint".to_string(),
            root_namespace: "istio-system".to_string(),
            mesh: Arc::default(),
            trust_domain: "cluster.local".to_string(),
            linkerd_default: None,
        }
    }
}

/// What a policy applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// Every request through this waypoint (its Gateway or GatewayClass).
    AllTraffic,
    /// Requests for one Service or ServiceEntry.
    Destination(ServiceKind, NamespacedName),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::AllTraffic => f.write_str("all traffic"),
            Target::Destination(ServiceKind::Service, key) => write!(f, "Service {key}"),
            Target::Destination(ServiceKind::ServiceEntry, key) => write!(f, "ServiceEntry {key}"),
        }
    }
}

/// One compiled AuthorizationPolicy.
#[derive(Debug, PartialEq)]
pub struct Policy {
    /// `namespace/name`, as metrics and logs name it.
    pub name: Arc<str>,
    pub key: NamespacedName,
    pub action: Action,
    /// `istio.io/dry-run: "true"`: evaluated and recorded, never enforced.
    pub dry_run: bool,
    pub rules: Vec<Rule>,
    /// Why the policy could not be read as written; it then denies
    /// everything it targets.
    pub rejected: Option<String>,
    /// The external authorization service of a `CUSTOM` policy.
    pub provider: Option<Arc<ExtAuthzProvider>>,
}

impl Policy {
    /// The index of the first rule that matches.
    fn matching_rule(&self, a: &Attributes<'_>) -> Option<usize> {
        let tcp = match self.action {
            Action::Allow if self.rejected.is_none() => TcpReading::NoMatch,
            _ => TcpReading::Ignore,
        };
        self.rules.iter().position(|r| r.matches(a, tcp))
    }

    /// Whether it acts as a DENY: DENY policies, and any policy we had to
    /// reject (fail closed).
    fn denies(&self) -> bool {
        match self.action {
            Action::Deny => true,
            // AUDIT never changes an outcome, not even when it is unreadable.
            Action::Audit => false,
            Action::Allow | Action::Custom => self.rejected.is_some(),
        }
    }
}

/// The policies that apply to one destination, grouped by how they act,
/// and the JWT rules of its RequestAuthentications.
#[derive(Debug, Default, PartialEq)]
pub struct PolicySet {
    deny: Vec<Arc<Policy>>,
    allow: Vec<Arc<Policy>>,
    /// AUDIT and dry-run policies.
    observe: Vec<Arc<Policy>>,
    /// CUSTOM policies: a match sends the request to its provider first.
    custom: Vec<Arc<Policy>>,
    jwt: Vec<Arc<JwtProvider>>,
}

impl PolicySet {
    fn add(&mut self, p: &Arc<Policy>) {
        let group = if p.dry_run || p.action == Action::Audit {
            &mut self.observe
        } else if p.action == Action::Custom && p.rejected.is_none() {
            &mut self.custom
        } else if p.denies() {
            &mut self.deny
        } else {
            &mut self.allow
        };
        if !group.iter().any(|q| Arc::ptr_eq(q, p)) {
            group.push(p.clone());
        }
    }

    fn add_jwt(&mut self, p: &Arc<JwtProvider>) {
        if !self.jwt.iter().any(|q| Arc::ptr_eq(q, p)) {
            self.jwt.push(p.clone());
        }
    }

    fn merge(&mut self, other: &PolicySet) {
        for p in other
            .deny
            .iter()
            .chain(&other.allow)
            .chain(&other.observe)
            .chain(&other.custom)
        {
            self.add(p);
        }
        for p in &other.jwt {
            self.add_jwt(p);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.deny.is_empty()
            && self.allow.is_empty()
            && self.observe.is_empty()
            && self.custom.is_empty()
            && self.jwt.is_empty()
    }

    /// RequestAuthentication: verifies the request's JWT, if it has one
    /// (see [`jwt::authenticate`]). `Ok(None)` also when no rule applies.
    pub fn authenticate(
        &self,
        req: &mut pingora_http::RequestHeader,
    ) -> Result<Option<RequestAuth>, JwtFailure> {
        if self.jwt.is_empty() {
            return Ok(None);
        }
        jwt::authenticate(&self.jwt, req)
    }

    /// Decides one request or connection. A matching CUSTOM policy is not
    /// decided here: it is named in [`Decision::custom`] for the caller to
    /// ask its provider first.
    pub fn evaluate(&self, a: &Attributes<'_>) -> Decision {
        let custom = self.custom.iter().find_map(|p| {
            p.matching_rule(a)
                .map(|rule| Record::of(p, "checked", Some(rule)))
        });
        let mut decision = self.evaluate_rbac(a);
        decision.custom = custom;
        decision
    }

    fn evaluate_rbac(&self, a: &Attributes<'_>) -> Decision {
        let mut records = Vec::new();
        for p in &self.observe {
            let rule = p.matching_rule(a);
            let result = match (p.action, rule) {
                (Action::Audit, _) if p.rejected.is_some() => continue,
                (Action::Audit, Some(_)) => "audited",
                (Action::Audit, None) => continue,
                // What enforcing it would do; an unreadable one would deny.
                _ if p.rejected.is_some() => "dry_run_denied",
                (Action::Allow, Some(_)) | (Action::Deny, None) => "dry_run_allowed",
                _ => "dry_run_denied",
            };
            records.push(Record::of(p, result, rule));
        }
        for p in &self.deny {
            if let Some(rule) = p.matching_rule(a) {
                let record = Record::of(p, "denied", Some(rule));
                return Decision::deny(record, records);
            }
        }
        if self.allow.is_empty() {
            return Decision::allow(None, records);
        }
        for p in &self.allow {
            if let Some(rule) = p.matching_rule(a) {
                return Decision::allow(Some(Record::of(p, "allowed", Some(rule))), records);
            }
        }
        let none = Record {
            policy: None,
            action: Action::Allow,
            result: "denied",
            rule: None,
        };
        Decision::deny(none, records)
    }
}

/// One line of a decision, as metrics and the access log report it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The policy that decided; `None` when no ALLOW policy matched.
    pub policy: Option<Arc<Policy>>,
    pub action: Action,
    /// `allowed`, `denied`, `audited`, `dry_run_allowed`, `dry_run_denied`.
    pub result: &'static str,
    pub rule: Option<usize>,
}

impl Record {
    fn of(p: &Arc<Policy>, result: &'static str, rule: Option<usize>) -> Self {
        Record {
            policy: Some(p.clone()),
            action: p.action,
            result,
            rule,
        }
    }

    /// The `policy` label: `namespace/name`, or `none`.
    pub fn policy_name(&self) -> &str {
        self.policy.as_ref().map(|p| &*p.name).unwrap_or("none")
    }
}

/// The outcome for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    /// The deciding policy (denials always have one; an allow has one when
    /// an ALLOW policy matched).
    pub decided_by: Option<Record>,
    /// AUDIT and dry-run results, recorded but not enforced.
    pub observed: Vec<Record>,
    /// A CUSTOM policy that matched: its provider must allow the request
    /// before `allowed` counts.
    pub custom: Option<Record>,
}

impl Decision {
    fn allow(decided_by: Option<Record>, observed: Vec<Record>) -> Self {
        Decision {
            allowed: true,
            decided_by,
            observed,
            custom: None,
        }
    }

    fn deny(decided_by: Record, observed: Vec<Record>) -> Self {
        Decision {
            allowed: false,
            decided_by: Some(decided_by),
            observed,
            custom: None,
        }
    }

    /// Envoy's `%RESPONSE_CODE_DETAILS%` for a denial, e.g.
    /// `rbac_access_denied_matched_policy[ns[shop]-policy[deny-x]-rule[0]]`.
    pub fn details(&self) -> Option<String> {
        if self.allowed {
            return None;
        }
        let record = self.decided_by.as_ref()?;
        Some(match &record.policy {
            Some(p) => format!(
                "rbac_access_denied_matched_policy[ns[{}]-policy[{}]-rule[{}]]",
                p.key.namespace,
                p.key.name,
                record.rule.unwrap_or(0)
            ),
            None => "rbac_access_denied_matched_policy[none]".to_string(),
        })
    }

    /// Every record, the deciding one first.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.decided_by.iter().chain(&self.observed)
    }
}

/// What authorization made of a request.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// A JWT was present and invalid.
    Unauthenticated(JwtFailure),
    /// The policies' decision.
    Decided(Decision),
}

impl Verdict {
    /// Whether the request may go on without asking anyone else.
    pub fn allowed(&self) -> bool {
        matches!(self, Verdict::Decided(d) if d.allowed && d.custom.is_none())
    }

    /// The CUSTOM policy whose provider must be asked first.
    pub fn custom(&self) -> Option<&Record> {
        match self {
            Verdict::Decided(d) => d.custom.as_ref(),
            Verdict::Unauthenticated(_) => None,
        }
    }
}

/// Every policy of one config, by destination.
#[derive(Debug, Default)]
pub struct AuthzTable {
    /// Policies for traffic to a destination no policy names: the
    /// Gateway- and GatewayClass-wide ones.
    all_traffic: Arc<PolicySet>,
    by_destination: HashMap<NamespacedName, Vec<(ServiceKind, Arc<PolicySet>)>>,
    /// Every policy with what it applies to, for `/config_dump` and `check`.
    pub policies: Vec<(Arc<Policy>, Applies)>,
    /// Every RequestAuthentication: its JWT rules and what they apply to.
    pub authentications: Vec<(Arc<str>, Vec<Arc<JwtProvider>>, Applies)>,
}

impl PartialEq for AuthzTable {
    fn eq(&self, other: &Self) -> bool {
        self.policies == other.policies && self.authentications == other.authentications
    }
}

/// Keys fetched from `jwksUri`s, by URI; outlives reloads so a new config
/// naming the same URI keeps the keys already fetched.
#[derive(Debug, Default)]
pub struct JwksRegistry {
    by_uri: Mutex<HashMap<String, Arc<RemoteKeys>>>,
}

impl JwksRegistry {
    /// The shared entry for `uri` (empty until a fetch fills it).
    pub fn entry(&self, uri: &str) -> Arc<RemoteKeys> {
        self.by_uri
            .lock()
            .expect("jwks registry lock is never poisoned: no panics while held")
            .entry(uri.to_string())
            .or_insert_with(|| {
                Arc::new(RemoteKeys {
                    uri: uri.to_string(),
                    ..Default::default()
                })
            })
            .clone()
    }
}

impl AuthzTable {
    /// Compiles every loaded AuthorizationPolicy. Errors only for policies
    /// whose targets cannot be read.
    pub fn compile(
        resources: &Resources,
        opts: &AuthzOptions,
        jwks: &JwksRegistry,
    ) -> Result<AuthzTable, ConfigErrors> {
        // Istio's `istio` ConfigMap in the root namespace, when the config has
        // one, wins over `--mesh-config`.
        let from_config = resources
            .mesh_configs
            .iter()
            .find(|m| m.key.namespace == opts.root_namespace);
        let with_mesh;
        let opts = match from_config {
            Some(m) => {
                with_mesh = AuthzOptions {
                    mesh: Arc::new(m.object.clone()),
                    ..opts.clone()
                };
                &with_mesh
            }
            None => opts,
        };
        let compiled = compile::compile_all(&resources.authorization_policies, opts);
        let mut errors = ConfigErrors::default();
        let authn: Vec<_> = resources
            .request_authentications
            .iter()
            .filter_map(|r| {
                compile::compile_authn(r, opts, &|uri| jwks.entry(uri))
                    .map_err(|e| errors.0.push(e))
                    .ok()
            })
            .collect();
        let compiled = compiled.and_then(|mut c| {
            let linkerd = linkerd::compile(resources, opts).map_err(|e| {
                ConfigErrors(vec![crate::config::ConfigError::new(
                    crate::config::Location::default(),
                    format!("Linkerd policy: {e}"),
                )])
            })?;
            c.extend(linkerd);
            Ok(c)
        });
        let compiled = match compiled {
            Ok(c) if errors.is_empty() => c,
            Ok(_) => return Err(errors),
            Err(mut e) => {
                e.0.extend(errors.0);
                return Err(e);
            }
        };
        let mut all_traffic = PolicySet::default();
        let mut by_destination: HashMap<_, PolicySet> = HashMap::new();
        let mut place = |applies: &Applies, put: &dyn Fn(&mut PolicySet)| {
            if let Applies::To(targets) = applies {
                for t in targets {
                    match t {
                        Target::AllTraffic => put(&mut all_traffic),
                        Target::Destination(kind, key) => {
                            put(by_destination.entry((*kind, key.clone())).or_default())
                        }
                    }
                }
            }
        };
        for c in &compiled {
            place(&c.applies, &|set| set.add(&c.policy));
        }
        for a in &authn {
            place(&a.applies, &|set| {
                for p in &a.providers {
                    set.add_jwt(p);
                }
            });
        }
        // A destination's own policies, then the waypoint-wide ones.
        let mut indexed: HashMap<NamespacedName, Vec<(ServiceKind, Arc<PolicySet>)>> =
            HashMap::new();
        for ((kind, key), mut set) in by_destination {
            set.merge(&all_traffic);
            indexed.entry(key).or_default().push((kind, Arc::new(set)));
        }
        Ok(AuthzTable {
            all_traffic: Arc::new(all_traffic),
            by_destination: indexed,
            policies: compiled
                .into_iter()
                .map(|c| (c.policy, c.applies))
                .collect(),
            authentications: authn
                .into_iter()
                .map(|a| (a.name, a.providers, a.applies))
                .collect(),
        })
    }

    /// Every `jwksUri` the config names, to fetch.
    pub fn remote_keys(&self) -> Vec<Arc<RemoteKeys>> {
        let mut out: Vec<Arc<RemoteKeys>> = Vec::new();
        for p in self.authentications.iter().flat_map(|(_, p, _)| p) {
            if let jwt::Keys::Remote(r) = &p.keys {
                if !out.iter().any(|o| Arc::ptr_eq(o, r)) {
                    out.push(r.clone());
                }
            }
        }
        out
    }

    /// Every policy, in load order, with what it applies to and why it is
    /// ignored or rejected (`/config_dump`'s `authorization`).
    pub fn dump(&self) -> serde_json::Value {
        let policies: Vec<serde_json::Value> = self
            .policies
            .iter()
            .map(|(p, applies)| {
                let (targets, ignored) = match applies {
                    Applies::To(t) => (t.iter().map(|t| t.to_string()).collect(), None),
                    Applies::Ignored(why) => (Vec::new(), Some(why.as_str())),
                };
                serde_json::json!({
                    "name": &*p.name,
                    "action": p.action.as_str(),
                    "dry_run": p.dry_run,
                    "rules": p.rules.len(),
                    "applies_to": targets,
                    "ignored": ignored,
                    "provider": p.provider.as_ref().map(|x| serde_json::json!({
                        "name": x.name, "service": x.authority, "fail_open": x.fail_open,
                    })),
                    "rejected": p.rejected.as_ref().map(|why| {
                        format!("denies all traffic it targets: {why}")
                    }),
                })
            })
            .collect();
        let authentications: Vec<serde_json::Value> = self
            .authentications
            .iter()
            .map(|(name, providers, applies)| {
                let (targets, ignored) = match applies {
                    Applies::To(t) => (t.iter().map(|t| t.to_string()).collect(), None),
                    Applies::Ignored(why) => (Vec::new(), Some(why.as_str())),
                };
                let rules: Vec<serde_json::Value> = providers
                    .iter()
                    .map(|p| {
                        let keys = match &p.keys {
                            jwt::Keys::Inline(k) => serde_json::json!({"inline": k.len()}),
                            jwt::Keys::Remote(r) => serde_json::json!({
                                "jwks_uri": r.uri,
                                "fetched": r.keys.load().as_ref().map(|k| k.len()),
                            }),
                        };
                        serde_json::json!({"issuer": p.issuer, "audiences": p.audiences, "keys": keys})
                    })
                    .collect();
                serde_json::json!({
                    "name": &**name,
                    "jwt_rules": rules,
                    "applies_to": targets,
                    "ignored": ignored,
                })
            })
            .collect();
        serde_json::json!({ "policies": policies, "request_authentications": authentications })
    }

    /// The policies for requests to `key`; `None` when none applies.
    pub fn for_destination(&self, kind: ServiceKind, key: &NamespacedName) -> Option<&PolicySet> {
        if self.by_destination.is_empty() && self.all_traffic.is_empty() {
            return None;
        }
        let set = self
            .by_destination
            .get(key)
            .and_then(|sets| sets.iter().find(|(k, _)| *k == kind))
            .map(|(_, set)| set)
            .unwrap_or(&self.all_traffic);
        (!set.is_empty()).then_some(&**set)
    }
}

#[cfg(test)]
mod tests;
