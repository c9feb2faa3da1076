//! Linkerd's policy kinds (`policy.linkerd.io`), field for field, so a team
//! moving from Linkerd keeps its policy. `src/authz/linkerd.rs` maps them
//! onto the AuthorizationPolicy engine. Unknown fields are errors: a field we
//! skipped could be the one that narrows an authorization.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::meta::ObjectMeta;
use super::security::StrictObject;

/// A port by number or name (`IntOrString`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

/// A Kubernetes label selector.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub match_expressions: Vec<LabelExpression>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelExpression {
    pub key: String,
    /// `In`, `NotIn`, `Exists`, `DoesNotExist`.
    pub operator: String,
    #[serde(default)]
    pub values: Vec<String>,
}

impl LabelSelector {
    /// Whether `labels` match; an unknown operator matches nothing.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|e| {
                let value = labels.get(&e.key);
                match e.operator.as_str() {
                    "In" => value.is_some_and(|v| e.values.contains(v)),
                    "NotIn" => value.is_none_or(|v| !e.values.contains(v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    _ => false,
                }
            })
    }
}

/// `Server` (`v1beta1` … `v1beta3`): a port of the pods a selector picks.
pub type Server = StrictObject<ServerSpec>;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerSpec {
    #[serde(default)]
    pub pod_selector: Option<LabelSelector>,
    /// A container port number or name.
    pub port: Option<PortRef>,
    /// `unknown`, `HTTP/1`, `HTTP/2`, `gRPC`, `opaque`, `TLS`: how Linkerd's
    /// proxy reads the port; the waypoint detects the protocol itself.
    #[serde(default)]
    pub proxy_protocol: Option<String>,
    /// `v1beta3`: the policy when no authorization names the Server (default `deny`).
    #[serde(default)]
    pub access_policy: Option<String>,
}

/// `ServerAuthorization` (`v1beta1`).
pub type ServerAuthorization = StrictObject<ServerAuthorizationSpec>;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerAuthorizationSpec {
    #[serde(default)]
    pub server: ServerSelector,
    #[serde(default)]
    pub client: Client,
}

/// Which Servers: one by name, or those whose labels match.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerSelector {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub selector: Option<LabelSelector>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Client {
    #[serde(default, rename = "meshTLS")]
    pub mesh_tls: Option<MeshTls>,
    #[serde(default)]
    pub networks: Vec<Network>,
    #[serde(default)]
    pub unauthenticated: bool,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshTls {
    #[serde(default)]
    pub identities: Vec<String>,
    #[serde(default)]
    pub service_accounts: Vec<ServiceAccountRef>,
    #[serde(default, rename = "unauthenticatedTLS")]
    pub unauthenticated_tls: bool,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceAccountRef {
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
}

/// `networks[]`: a CIDR minus its exceptions.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Network {
    pub cidr: String,
    #[serde(default)]
    pub except: Vec<String>,
}

/// `AuthorizationPolicy` (`policy.linkerd.io/v1alpha1`).
pub type LinkerdAuthorizationPolicy = StrictObject<LinkerdAuthorizationPolicySpec>;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LinkerdAuthorizationPolicySpec {
    #[serde(default)]
    pub target_ref: LinkerdRef,
    #[serde(default)]
    pub required_authentication_refs: Vec<LinkerdRef>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LinkerdRef {
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
}

/// `MeshTLSAuthentication` (`v1alpha1`).
pub type MeshTlsAuthentication = StrictObject<MeshTlsAuthenticationSpec>;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshTlsAuthenticationSpec {
    #[serde(default)]
    pub identities: Vec<String>,
    #[serde(default)]
    pub identity_refs: Vec<LinkerdRef>,
}

/// `NetworkAuthentication` (`v1alpha1`).
pub type NetworkAuthentication = StrictObject<NetworkAuthenticationSpec>;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkAuthenticationSpec {
    #[serde(default)]
    pub networks: Vec<Network>,
}

/// `HTTPRoute` (`policy.linkerd.io/v1alpha1` … `v1beta3`): the Gateway API
/// schema, attached to a `Server` to split its traffic into routes that
/// AuthorizationPolicies can target.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LinkerdHttpRoute {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: super::HttpRouteSpec,
    #[serde(default)]
    pub status: Option<serde_yaml::Value>,
}
