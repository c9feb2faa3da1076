//! The effective tracing settings of one destination Service
//! ([`TracingPolicy`]) and the table the request path looks them up in
//! ([`PolicyTable`]). MeshConfig gives the default; Telemetry resources
//! (`telemetry.istio.io`, resolved elsewhere) feed per-Service policies
//! through [`PolicyTable::with_services`]. This file only holds and finds
//! them; it does not parse either source.

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderName;

/// What tracing does for requests to one destination Service.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingPolicy {
    /// The `extensionProviders[].name` spans go to; `None`: no tracing at all
    /// (no span, no header rewritten).
    pub provider: Option<Arc<str>>,
    /// Percent of new traces sampled, 0–100 (Telemetry
    /// `randomSamplingPercentage`, MeshConfig `defaultConfig.tracing.sampling`).
    /// An incoming sampling decision wins, as in Envoy.
    pub sampling_percent: f64,
    /// Telemetry `customTags`: extra span attributes, in order.
    pub custom_tags: Vec<(Arc<str>, CustomTag)>,
    /// Telemetry `disableSpanReporting`: trace headers are still propagated
    /// (the trace continues past the waypoint) but no span is exported.
    pub disable_span_reporting: bool,
}

/// Istio's default sampling when MeshConfig sets none: 1 %.
pub const DEFAULT_SAMPLING_PERCENT: f64 = 1.0;

impl TracingPolicy {
    /// No tracing.
    pub fn off() -> Self {
        Self {
            provider: None,
            sampling_percent: 0.0,
            custom_tags: Vec::new(),
            disable_span_reporting: false,
        }
    }
}

/// A Telemetry `customTags` value.
#[derive(Debug, Clone, PartialEq)]
pub enum CustomTag {
    /// `literal.value`.
    Literal(Arc<str>),
    /// `header.name` with `header.defaultValue`: the request header's value,
    /// else the default, else no attribute.
    Header {
        name: HeaderName,
        default: Option<Arc<str>>,
    },
    /// `environment.name` with `environment.defaultValue`: read once, when the
    /// policy is built (as Envoy reads its environment at startup).
    Environment {
        name: Arc<str>,
        value: Option<Arc<str>>,
    },
}

impl CustomTag {
    /// An `environment` tag, resolved now.
    pub fn environment(name: &str, default: Option<&str>) -> Self {
        let value = std::env::var(name)
            .ok()
            .map(Arc::from)
            .or_else(|| default.map(Arc::from));
        CustomTag::Environment {
            name: Arc::from(name),
            value,
        }
    }

    /// The tag's value for a request with these headers, if any.
    pub fn value<'a>(&'a self, headers: &'a http::HeaderMap) -> Option<&'a str> {
        match self {
            CustomTag::Literal(v) => Some(v),
            CustomTag::Header { name, default } => headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .or(default.as_deref()),
            CustomTag::Environment { value, .. } => value.as_deref(),
        }
    }
}

/// The policies the request path reads: the mesh default and, per
/// destination Service hostname, what Telemetry resources resolved to.
#[derive(Debug, Clone)]
pub struct PolicyTable {
    default: Arc<TracingPolicy>,
    by_service: HashMap<Arc<str>, Arc<TracingPolicy>>,
}

impl PolicyTable {
    /// A table with only the mesh default.
    pub fn new(default: TracingPolicy) -> Self {
        Self {
            default: Arc::new(default),
            by_service: HashMap::new(),
        }
    }

    /// The same default with per-Service policies (keyed by the Service's
    /// hostname, e.g. `reviews.default.svc.cluster.local`). This is the hook
    /// Telemetry resolution feeds.
    pub fn with_services(&self, by_service: HashMap<Arc<str>, TracingPolicy>) -> Self {
        Self {
            default: self.default.clone(),
            by_service: by_service
                .into_iter()
                .map(|(k, v)| (k, Arc::new(v)))
                .collect(),
        }
    }

    /// The mesh default.
    pub fn default_policy(&self) -> &Arc<TracingPolicy> {
        &self.default
    }

    /// The policy for requests to `service` (a hostname).
    pub fn find(&self, service: &str) -> &Arc<TracingPolicy> {
        if self.by_service.is_empty() {
            return &self.default;
        }
        self.by_service.get(service).unwrap_or(&self.default)
    }

    /// True when no policy traces anything: the request path skips tracing.
    pub fn all_off(&self) -> bool {
        self.default.provider.is_none() && self.by_service.values().all(|p| p.provider.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_policy_overrides_the_mesh_default() {
        let mut default = TracingPolicy::off();
        default.provider = Some(Arc::from("otel"));
        default.sampling_percent = 1.0;
        let table = PolicyTable::new(default);
        let mut reviews = table.default_policy().as_ref().clone();
        reviews.sampling_percent = 100.0;
        let table = table.with_services(HashMap::from([(
            Arc::from("reviews.default.svc.cluster.local"),
            reviews,
        )]));
        assert_eq!(
            table
                .find("reviews.default.svc.cluster.local")
                .sampling_percent,
            100.0
        );
        assert_eq!(
            table
                .find("ratings.default.svc.cluster.local")
                .sampling_percent,
            1.0
        );
        assert!(!table.all_off());
    }

    #[test]
    fn custom_tags_read_literal_header_with_default_and_environment() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-user", "alice".parse().unwrap());
        let literal = CustomTag::Literal(Arc::from("v1"));
        let header = CustomTag::Header {
            name: HeaderName::from_static("x-user"),
            default: Some(Arc::from("nobody")),
        };
        let missing = CustomTag::Header {
            name: HeaderName::from_static("x-tenant"),
            default: Some(Arc::from("none")),
        };
        let no_default = CustomTag::Header {
            name: HeaderName::from_static("x-tenant"),
            default: None,
        };
        let env = CustomTag::environment("WAYPOINT_TRACE_TEST_UNSET_VAR", Some("fallback"));
        assert_eq!(literal.value(&headers), Some("v1"));
        assert_eq!(header.value(&headers), Some("alice"));
        assert_eq!(missing.value(&headers), Some("none"));
        assert_eq!(no_default.value(&headers), None);
        assert_eq!(env.value(&headers), Some("fallback"));
        let path = CustomTag::environment("PATH", None);
        assert!(path.value(&headers).is_some());
    }
}
