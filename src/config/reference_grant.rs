//! Gateway API `ReferenceGrant` (`gateway.networking.k8s.io/v1beta1`, also
//! `v1alpha2` and `v1`): the owner of a namespace lets routes of a given
//! kind in another namespace reference its objects. Routing checks
//! cross-namespace `backendRefs` against these (`routing::compile::grants`).

use serde::Deserialize;

use super::meta::ObjectMeta;

/// `ReferenceGrant`. It has no status.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrant {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ReferenceGrantSpec,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrantSpec {
    /// Who may refer; entries are ORed.
    #[serde(default)]
    pub from: Vec<ReferenceGrantFrom>,
    /// What they may refer to, in the grant's own namespace; entries are ORed.
    #[serde(default)]
    pub to: Vec<ReferenceGrantTo>,
}

/// `from[]`: a kind in a namespace (`HTTPRoute` in `frontend`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrantFrom {
    /// `gateway.networking.k8s.io` for routes; empty is the core group.
    pub group: String,
    pub kind: String,
    pub namespace: String,
}

/// `to[]`: a kind in the grant's namespace, optionally one object.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrantTo {
    /// Empty (or `core`) for Services.
    pub group: String,
    pub kind: String,
    /// Default: every object of the kind in the grant's namespace.
    #[serde(default)]
    pub name: Option<String>,
}
