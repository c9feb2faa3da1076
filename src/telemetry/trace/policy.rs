//! The effective tracing settings of one destination Service
//! ([`TracingPolicy`]). MeshConfig gives the default (`config`); Telemetry
//! resources lay theirs over it in `telemetry_api`, which compiles one per
//! Service into the published snapshot. This file only holds them; it parses
//! neither source.

use std::sync::Arc;

use http::HeaderName;

use super::export::Destination;

/// What tracing does for requests to one destination Service.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingPolicy {
    /// The `extensionProviders[].name` spans go to; `None`: no tracing at all
    /// (no span, no header rewritten).
    pub provider: Option<Arc<str>>,
    /// Where `provider`'s spans go, from the MeshConfig this policy was compiled
    /// with (a `--kube` waypoint's `istio` ConfigMap may change it at run time):
    /// the tracer starts or replaces that provider's exporter when it differs.
    pub export: Option<Arc<ProviderExport>>,
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

/// An `opentelemetry` provider's export settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderExport {
    pub destination: Destination,
    /// `maxTagLength` (default 256).
    pub max_tag_length: usize,
}

/// Istio's default sampling when MeshConfig sets none: 1 %.
pub const DEFAULT_SAMPLING_PERCENT: f64 = 1.0;

impl TracingPolicy {
    /// No tracing.
    pub fn off() -> Self {
        Self {
            provider: None,
            export: None,
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

#[cfg(test)]
mod tests {
    use super::*;

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
