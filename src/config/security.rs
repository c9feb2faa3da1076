//! Istio security kinds: `security.istio.io/v1` (and `v1beta1`)
//! AuthorizationPolicy, field for field as the API writes it. `src/authz`
//! decides which policies apply and compiles them; here we only parse.
//!
//! Unlike the traffic kinds, every struct here refuses unknown fields: a field
//! we would skip could be the one that narrows an ALLOW or widens a DENY, so
//! a policy we do not fully understand is rejected (and fails closed), never
//! half-applied.

use std::collections::BTreeMap;

use serde::Deserialize;

pub use super::extensions::PolicyTargetReference;

use super::meta::ObjectMeta;

/// An object of a security kind, read strictly: its `spec` type and every
/// struct under it refuse unknown fields, and so does the object itself.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StrictObject<S: Default> {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: S,
    /// Server-populated; ignored.
    #[serde(default)]
    pub status: Option<serde_yaml::Value>,
}

/// `security.istio.io/v1` AuthorizationPolicy.
pub type AuthorizationPolicy = StrictObject<AuthorizationPolicySpec>;

/// `spec` of an AuthorizationPolicy.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationPolicySpec {
    /// Workload selector: the policy is for ztunnel and sidecars, and a
    /// waypoint ignores it (as Istio's waypoints do).
    #[serde(default)]
    pub selector: Option<WorkloadSelector>,
    /// Deprecated single form of `targetRefs`.
    #[serde(default)]
    pub target_ref: Option<PolicyTargetReference>,
    /// The waypoint's Gateway (all its traffic), a Service or a ServiceEntry
    /// (traffic to it), or — in the root namespace — the waypoint's
    /// GatewayClass.
    #[serde(default)]
    pub target_refs: Vec<PolicyTargetReference>,
    /// Absent or empty: an ALLOW policy matches nothing (denies everything it
    /// applies to); `[{}]` matches everything.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Default `ALLOW`.
    #[serde(default)]
    pub action: Action,
    /// The extension provider of a `CUSTOM` policy.
    #[serde(default)]
    pub provider: Option<ExtensionProviderRef>,
}

/// `spec.selector`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// `spec.action`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    #[default]
    #[serde(rename = "ALLOW")]
    Allow,
    #[serde(rename = "DENY")]
    Deny,
    #[serde(rename = "AUDIT")]
    Audit,
    #[serde(rename = "CUSTOM")]
    Custom,
}

impl Action {
    /// As the API writes it (and the metrics label it).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "ALLOW",
            Action::Deny => "DENY",
            Action::Audit => "AUDIT",
            Action::Custom => "CUSTOM",
        }
    }
}

/// `spec.provider`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtensionProviderRef {
    #[serde(default)]
    pub name: String,
}

/// `spec.rules[]`: matches when every part present matches.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Any one of them (OR); absent: any source.
    #[serde(default)]
    pub from: Vec<RuleFrom>,
    /// Any one of them (OR); absent: any operation.
    #[serde(default)]
    pub to: Vec<RuleTo>,
    /// All of them (AND).
    #[serde(default)]
    pub when: Vec<Condition>,
}

/// `rules[].from[]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleFrom {
    #[serde(default)]
    pub source: Option<Source>,
}

/// `rules[].from[].source`: every field set must match (AND); within a
/// field, any value (OR); a `not…` field matches when none of its values do.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    #[serde(default)]
    pub principals: Vec<String>,
    #[serde(default)]
    pub not_principals: Vec<String>,
    #[serde(default)]
    pub request_principals: Vec<String>,
    #[serde(default)]
    pub not_request_principals: Vec<String>,
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub not_namespaces: Vec<String>,
    #[serde(default)]
    pub ip_blocks: Vec<String>,
    #[serde(default)]
    pub not_ip_blocks: Vec<String>,
    #[serde(default)]
    pub remote_ip_blocks: Vec<String>,
    #[serde(default)]
    pub not_remote_ip_blocks: Vec<String>,
}

/// `rules[].to[]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleTo {
    #[serde(default)]
    pub operation: Option<Operation>,
}

/// `rules[].to[].operation`, with the same AND/OR/`not…` rules as [`Source`].
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Operation {
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub not_hosts: Vec<String>,
    #[serde(default)]
    pub ports: Vec<String>,
    #[serde(default)]
    pub not_ports: Vec<String>,
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub not_methods: Vec<String>,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub not_paths: Vec<String>,
}

/// `rules[].when[]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default)]
    pub not_values: Vec<String>,
}

/// An AuthorizationPolicy as loaded. When part of it could not be read the
/// policy keeps only what the loader could read of its targets and action,
/// and `error` says why: `src/authz` then makes it deny the traffic it
/// targets instead of rejecting the whole config.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadedPolicy {
    pub policy: AuthorizationPolicy,
    pub error: Option<super::ConfigError>,
}

impl LoadedPolicy {
    /// The targets and action of a policy that failed to parse, read leniently
    /// from the raw object; `None` when even those cannot be read.
    pub fn shell(raw: &serde_yaml::Value) -> Option<AuthorizationPolicy> {
        let metadata: ObjectMeta =
            serde_yaml::from_value(raw.get("metadata").cloned().unwrap_or_default()).ok()?;
        let spec = raw.get("spec");
        let field = |name: &str| spec.and_then(|s| s.get(name)).cloned();
        let parse = |name: &str| -> Option<Option<serde_yaml::Value>> {
            Some(field(name).filter(|v| !v.is_null()))
        };
        let target_ref = match parse("targetRef")? {
            Some(v) => Some(serde_yaml::from_value(v).ok()?),
            None => None,
        };
        let target_refs = match parse("targetRefs")? {
            Some(v) => serde_yaml::from_value(v).ok()?,
            None => Vec::new(),
        };
        let selector = parse("selector")?.map(|_| WorkloadSelector::default());
        let action = match parse("action")? {
            Some(v) => serde_yaml::from_value(v).ok()?,
            None => Action::default(),
        };
        Some(AuthorizationPolicy {
            metadata,
            spec: AuthorizationPolicySpec {
                selector,
                target_ref,
                target_refs,
                action,
                ..Default::default()
            },
            ..Default::default()
        })
    }
}

/// `security.istio.io/v1` RequestAuthentication: which JWTs a request may
/// carry. A present but invalid token is refused (401); a request without one
/// goes on without a request principal, and AuthorizationPolicies decide.
pub type RequestAuthentication = StrictObject<RequestAuthenticationSpec>;

/// `spec` of a RequestAuthentication.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestAuthenticationSpec {
    /// For ztunnel and sidecars: a waypoint ignores the object.
    #[serde(default)]
    pub selector: Option<WorkloadSelector>,
    #[serde(default)]
    pub target_ref: Option<PolicyTargetReference>,
    /// The same targets as an AuthorizationPolicy's.
    #[serde(default)]
    pub target_refs: Vec<PolicyTargetReference>,
    #[serde(default)]
    pub jwt_rules: Vec<JwtRule>,
}

/// `spec.jwtRules[]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtRule {
    /// The token's `iss`; required.
    #[serde(default)]
    pub issuer: String,
    /// Accepted `aud` values; empty: any (Istio: the service's hostname is not implied).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Where to fetch the JSON Web Key Set (`http://` through the mesh).
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// The JSON Web Key Set, inline; wins over `jwksUri`.
    #[serde(default)]
    pub jwks: Option<String>,
    /// Default (with `fromParams` and `fromCookies` empty too):
    /// `Authorization: Bearer <token>` and the `access_token` query parameter.
    #[serde(default)]
    pub from_headers: Vec<JwtHeader>,
    #[serde(default)]
    pub from_params: Vec<String>,
    #[serde(default)]
    pub from_cookies: Vec<String>,
    /// A header to carry the verified payload (base64url JSON) upstream.
    #[serde(default)]
    pub output_payload_to_header: Option<String>,
    /// Keep the token in the request (default: it is removed).
    #[serde(default)]
    pub forward_original_token: bool,
    #[serde(default)]
    pub output_claim_to_headers: Vec<ClaimToHeader>,
    /// Timeout of a `jwksUri` fetch (default 5 s).
    #[serde(default)]
    pub timeout: Option<String>,
}

/// `jwtRules[].fromHeaders[]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtHeader {
    #[serde(default)]
    pub name: String,
    /// Stripped before the token, e.g. `Bearer `.
    #[serde(default)]
    pub prefix: Option<String>,
}

/// `jwtRules[].outputClaimToHeaders[]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimToHeader {
    #[serde(default)]
    pub header: String,
    /// A top-level claim, or a nested one as `a.b`.
    #[serde(default)]
    pub claim: String,
}
