//! Gateway API kinds (`gateway.networking.k8s.io` v1 and v1beta1): GatewayClass,
//! Gateway, HTTPRoute. Field names and defaults follow the v1.4 API reference;
//! defaults the spec defines are applied when routes are compiled, so these
//! types keep `Option` where the user may omit a field.

use serde::Deserialize;

use super::meta::ObjectMeta;

/// `GatewayClass`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClass {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: GatewayClassSpec,
    #[serde(default)]
    pub status: Option<serde_yaml::Value>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClassSpec {
    #[serde(default)]
    pub controller_name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters_ref: Option<serde_yaml::Value>,
}

/// `Gateway`: a waypoint is a Gateway of our class with an HBONE listener.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Gateway {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: GatewaySpec,
    #[serde(default)]
    pub status: Option<serde_yaml::Value>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    #[serde(default)]
    pub gateway_class_name: String,
    #[serde(default)]
    pub listeners: Vec<Listener>,
    #[serde(default)]
    pub addresses: Option<serde_yaml::Value>,
    #[serde(default)]
    pub infrastructure: Option<serde_yaml::Value>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    pub name: String,
    pub port: u16,
    /// `HBONE` for waypoints; `HTTP`, `HTTPS`, `TCP`, `TLS` otherwise.
    pub protocol: String,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub allowed_routes: Option<serde_yaml::Value>,
    #[serde(default)]
    pub tls: Option<serde_yaml::Value>,
}

/// `HTTPRoute`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRoute {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: HttpRouteSpec,
    /// Written by controllers; ignored.
    #[serde(default)]
    pub status: Option<serde_yaml::Value>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    #[serde(default)]
    pub parent_refs: Vec<ParentRef>,
    /// Ignored for Service parents, per GAMMA.
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// Defaults to one rule matching `PathPrefix /` with no backends.
    #[serde(default)]
    pub rules: Vec<HttpRouteRule>,
}

/// `parentRefs[]`. For mesh routes: `group: ""` (or `core`), `kind: Service`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    /// Default `gateway.networking.k8s.io`.
    #[serde(default)]
    pub group: Option<String>,
    /// Default `Gateway`.
    #[serde(default)]
    pub kind: Option<String>,
    /// Default: the route's namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    pub name: String,
    /// For a Service parent: the Service port's name.
    #[serde(default)]
    pub section_name: Option<String>,
    /// For a Service parent: the Service port number.
    #[serde(default)]
    pub port: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteRule {
    #[serde(default)]
    pub name: Option<String>,
    /// Empty means one match of `PathPrefix /`.
    #[serde(default)]
    pub matches: Vec<HttpRouteMatch>,
    #[serde(default)]
    pub filters: Vec<HttpRouteFilter>,
    #[serde(default)]
    pub backend_refs: Vec<HttpBackendRef>,
    #[serde(default)]
    pub timeouts: Option<HttpRouteTimeouts>,
    #[serde(default)]
    pub retry: Option<HttpRouteRetry>,
    #[serde(default)]
    pub session_persistence: Option<serde_yaml::Value>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteMatch {
    /// Default `{type: PathPrefix, value: /}`.
    #[serde(default)]
    pub path: Option<HttpPathMatch>,
    #[serde(default)]
    pub headers: Vec<HttpHeaderMatch>,
    #[serde(default)]
    pub query_params: Vec<HttpQueryParamMatch>,
    #[serde(default)]
    pub method: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpPathMatch {
    /// `Exact`, `PathPrefix` (default), `RegularExpression`.
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
    /// Default `/`.
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpHeaderMatch {
    /// `Exact` (default) or `RegularExpression`.
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
    /// Case-insensitive.
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpQueryParamMatch {
    /// `Exact` (default) or `RegularExpression`.
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
    /// Case-sensitive.
    pub name: String,
    pub value: String,
}

/// `filters[]`: `type` names which of the optional members is set.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteFilter {
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default)]
    pub request_header_modifier: Option<HttpHeaderFilter>,
    #[serde(default)]
    pub response_header_modifier: Option<HttpHeaderFilter>,
    #[serde(default)]
    pub request_mirror: Option<HttpRequestMirrorFilter>,
    #[serde(default)]
    pub request_redirect: Option<HttpRequestRedirectFilter>,
    #[serde(default)]
    pub url_rewrite: Option<HttpUrlRewriteFilter>,
    #[serde(default)]
    pub extension_ref: Option<serde_yaml::Value>,
    #[serde(default)]
    pub cors: Option<HttpCorsFilter>,
}

/// `CORS` filter (`HTTPCORSFilter`; experimental in v1.3–v1.4, standard
/// from v1.5).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpCorsFilter {
    /// Origins (`scheme://host[:port]`); `*` alone allows any, a `*` inside
    /// matches any characters (`https://*.example.com`).
    #[serde(default)]
    pub allow_origins: Vec<String>,
    #[serde(default)]
    pub allow_credentials: Option<bool>,
    #[serde(default)]
    pub allow_methods: Vec<String>,
    #[serde(default)]
    pub allow_headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Seconds a preflight answer may be cached; the API's default is 5.
    #[serde(default)]
    pub max_age: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpHeaderFilter {
    #[serde(default)]
    pub set: Vec<HttpHeader>,
    #[serde(default)]
    pub add: Vec<HttpHeader>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct HttpHeader {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRequestMirrorFilter {
    pub backend_ref: BackendObjectReference,
    /// 0–100; default 100 when neither `percent` nor `fraction` is set.
    #[serde(default)]
    pub percent: Option<i64>,
    #[serde(default)]
    pub fraction: Option<Fraction>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Fraction {
    pub numerator: i64,
    /// Default 100.
    #[serde(default)]
    pub denominator: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRequestRedirectFilter {
    /// `http` or `https`; default: the request's.
    #[serde(default)]
    pub scheme: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub path: Option<HttpPathModifier>,
    #[serde(default)]
    pub port: Option<u16>,
    /// 301, 302 (default), 303, 307, 308.
    #[serde(default)]
    pub status_code: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpUrlRewriteFilter {
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub path: Option<HttpPathModifier>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpPathModifier {
    /// `ReplaceFullPath` or `ReplacePrefixMatch`.
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default)]
    pub replace_full_path: Option<String>,
    #[serde(default)]
    pub replace_prefix_match: Option<String>,
}

/// `backendRefs[]` of a rule.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(from = "HttpBackendRefFields")]
pub struct HttpBackendRef {
    /// The reference fields (`group`, `kind`, `name`, `namespace`, `port`).
    pub backend: BackendObjectReference,
    /// Default 1; 0 means "never chosen".
    pub weight: Option<i64>,
    pub filters: Vec<HttpRouteFilter>,
}

/// `backendRefs[]` as written: the reference fields sit beside `weight` and
/// `filters`. Decoded flat rather than with `#[serde(flatten)]`, which
/// would hide a misspelled field (`wieght: 3`) from the unknown-field
/// warning and silently turn a canary split into an even one.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HttpBackendRefFields {
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    weight: Option<i64>,
    #[serde(default)]
    filters: Vec<HttpRouteFilter>,
}

impl From<HttpBackendRefFields> for HttpBackendRef {
    fn from(f: HttpBackendRefFields) -> Self {
        HttpBackendRef {
            backend: BackendObjectReference {
                group: f.group,
                kind: f.kind,
                name: f.name,
                namespace: f.namespace,
                port: f.port,
            },
            weight: f.weight,
            filters: f.filters,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackendObjectReference {
    /// Default `""` (core).
    #[serde(default)]
    pub group: Option<String>,
    /// Default `Service`.
    #[serde(default)]
    pub kind: Option<String>,
    pub name: String,
    /// Default: the route's namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Required for Service backends.
    #[serde(default)]
    pub port: Option<u16>,
}

/// `timeouts`: Gateway API durations (`10s`, `500ms`, `1h`); `0s` disables.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteTimeouts {
    #[serde(default)]
    pub request: Option<String>,
    #[serde(default)]
    pub backend_request: Option<String>,
}

/// `retry` (Gateway API v1.2+ experimental, GEP-1731).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteRetry {
    #[serde(default)]
    pub codes: Vec<u16>,
    #[serde(default)]
    pub attempts: Option<i64>,
    #[serde(default)]
    pub backoff: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loader warns about every field serde_ignored reports; a field
    /// hidden behind `flatten` would never be reported.
    fn unknown_fields<T: serde::de::DeserializeOwned>(yaml: &str) -> (T, Vec<String>) {
        let value: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
        let mut ignored = Vec::new();
        let decoded = serde_ignored::deserialize(value, |p| ignored.push(p.to_string())).unwrap();
        (decoded, ignored)
    }

    #[test]
    fn a_misspelled_backend_ref_field_is_reported() {
        let (r, ignored) =
            unknown_fields::<HttpBackendRef>("{name: reviews-v2, port: 9080, wieght: 3}");
        assert_eq!(ignored, vec!["wieght".to_string()]);
        assert_eq!(r.weight, None, "the misspelled weight is not taken");
        assert_eq!(r.backend.name, "reviews-v2");
        assert_eq!(r.backend.port, Some(9080));
    }

    #[test]
    fn backend_ref_fields_sit_beside_weight_and_filters() {
        let (r, ignored) = unknown_fields::<HttpBackendRef>(
            "{group: '', kind: Service, name: a, namespace: shop, port: 80, weight: 90, filters: []}",
        );
        assert!(ignored.is_empty(), "{ignored:?}");
        assert_eq!(r.weight, Some(90));
        assert_eq!(r.backend.namespace.as_deref(), Some("shop"));
        assert_eq!(r.backend.kind.as_deref(), Some("Service"));
    }
}
