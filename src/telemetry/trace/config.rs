//! MeshConfig → tracing: the `opentelemetry` extension providers become
//! export [`Destination`]s, and `enableTracing`, `defaultProviders.tracing`
//! and `defaultConfig.tracing.sampling` the default [`TracingPolicy`]. Every
//! field inside a provider we use is enforced or refused by name.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use thiserror::Error;

use crate::config::{ExtensionProvider, MeshConfig, OpenTelemetryProvider, OtelHeader};

use super::export::{Destination, Protocol};
use super::policy::{ProviderExport, TracingPolicy, DEFAULT_SAMPLING_PERCENT};

/// A tracing setting the waypoint cannot honour.
#[derive(Debug, Error, PartialEq)]
pub enum TraceConfigError {
    #[error("{field}: not supported by the waypoint (remove it)")]
    Unsupported { field: String },
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("defaultProviders.tracing names {name}, which is not in extensionProviders")]
    UnknownProvider { name: String },
    #[error("defaultProviders.tracing names {name}, a {kind} provider: only opentelemetry is supported for tracing")]
    UnsupportedKind { name: String, kind: &'static str },
    #[error("defaultProviders.tracing: one provider at most ({names})")]
    SeveralProviders { names: String },
}

/// What MeshConfig says about tracing.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshTracing {
    /// Export settings by provider name (every `opentelemetry` provider, so a
    /// Telemetry resource may select any of them).
    pub providers: HashMap<Arc<str>, Arc<ProviderExport>>,
    pub default: TracingPolicy,
    /// `defaultConfig.meshId`, else the trust domain.
    pub mesh_id: Option<String>,
}

/// Istio's `maxTagLength` default.
pub(super) const DEFAULT_MAX_TAG_LENGTH: usize = 256;
/// OTLP export timeout when the provider sets none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads MeshConfig's tracing parts.
pub fn compile_mesh(mesh: &MeshConfig) -> Result<MeshTracing, TraceConfigError> {
    let mut providers = HashMap::new();
    for p in &mesh.extension_providers {
        if let Some(otel) = &p.opentelemetry {
            let export = ProviderExport {
                destination: destination(&p.name, otel)?,
                max_tag_length: otel
                    .max_tag_length
                    .filter(|m| *m > 0)
                    .map_or(DEFAULT_MAX_TAG_LENGTH, |m| m as usize),
            };
            providers.insert(Arc::from(p.name.as_str()), Arc::new(export));
        }
    }
    let proxy_tracing = mesh
        .default_config
        .as_ref()
        .and_then(|c| c.tracing.as_ref());
    let mut sampling = DEFAULT_SAMPLING_PERCENT;
    if let Some(t) = proxy_tracing {
        for (set, field) in [
            (t.custom_tags.is_some(), "customTags"),
            (t.max_path_tag_length.is_some(), "maxPathTagLength"),
            (t.zipkin.is_some(), "zipkin"),
            (t.datadog.is_some(), "datadog"),
            (t.lightstep.is_some(), "lightstep"),
            (t.stackdriver.is_some(), "stackdriver"),
            (t.open_census_agent.is_some(), "openCensusAgent"),
            (t.tls_settings.is_some(), "tlsSettings"),
        ] {
            if set {
                return Err(TraceConfigError::Unsupported {
                    field: format!("defaultConfig.tracing.{field}"),
                });
            }
        }
        if let Some(s) = t.sampling {
            if !(0.0..=100.0).contains(&s) {
                return Err(TraceConfigError::Invalid {
                    field: "defaultConfig.tracing.sampling".into(),
                    reason: format!("{s} is not a percentage between 0 and 100"),
                });
            }
            sampling = s;
        }
    }
    let mut default = TracingPolicy::off();
    default.sampling_percent = sampling;
    let names = mesh
        .default_providers
        .as_ref()
        .map(|d| d.tracing.as_slice())
        .unwrap_or_default();
    if names.len() > 1 {
        return Err(TraceConfigError::SeveralProviders {
            names: names.join(", "),
        });
    }
    if let Some(name) = names.first() {
        let provider = mesh
            .extension_providers
            .iter()
            .find(|p| &p.name == name)
            .ok_or_else(|| TraceConfigError::UnknownProvider { name: name.clone() })?;
        if provider.opentelemetry.is_none() {
            return Err(TraceConfigError::UnsupportedKind {
                name: name.clone(),
                kind: kind_of(provider),
            });
        }
        // Istio: `enableTracing: false` turns tracing off mesh-wide.
        if mesh.enable_tracing != Some(false) {
            default.provider = Some(Arc::from(name.as_str()));
            default.export = providers.get(name.as_str()).cloned();
        }
    }
    Ok(MeshTracing {
        providers,
        default,
        mesh_id: mesh.default_config.as_ref().and_then(|c| c.mesh_id.clone()),
    })
}

fn kind_of(p: &ExtensionProvider) -> &'static str {
    if p.zipkin.is_some() {
        "zipkin"
    } else if p.envoy_ext_authz_http.is_some() || p.envoy_ext_authz_grpc.is_some() {
        "external authorization"
    } else {
        "unsupported"
    }
}

fn destination(name: &str, p: &OpenTelemetryProvider) -> Result<Destination, TraceConfigError> {
    let at = |field: &str| format!("extensionProviders[{name}].opentelemetry.{field}");
    if p.dynatrace_sampler.is_some() {
        return Err(TraceConfigError::Unsupported {
            field: at("dynatraceSampler"),
        });
    }
    if p.service.is_empty() || p.port == 0 {
        return Err(TraceConfigError::Invalid {
            field: at("service"),
            reason: "service and port are required".into(),
        });
    }
    // `[<namespace>/]<hostname>`: the namespace only scopes the lookup in Istio.
    let host = p.service.rsplit('/').next().unwrap_or(&p.service);
    let mut resource = Vec::new();
    if let Some(d) = &p.resource_detectors {
        if d.dynatrace.is_some() {
            return Err(TraceConfigError::Unsupported {
                field: at("resourceDetectors.dynatrace"),
            });
        }
        if d.environment.is_some() {
            resource = environment_resource();
        }
    }
    let (protocol, endpoint, timeout, headers) = match (&p.http, &p.grpc) {
        (Some(_), Some(_)) => {
            return Err(TraceConfigError::Invalid {
                field: at("http"),
                reason: "http and grpc are exclusive".into(),
            })
        }
        (Some(h), None) => {
            let path = h.path.as_deref().unwrap_or("/v1/traces");
            let path = if path.starts_with('/') {
                path.to_string()
            } else {
                format!("/{path}")
            };
            (
                Protocol::HttpProtobuf,
                format!("http://{host}:{}{path}", p.port),
                timeout(h.timeout.as_deref(), &at("http.timeout"))?,
                headers(&h.headers, &at("http.headers"))?,
            )
        }
        (None, g) => (
            Protocol::Grpc,
            format!("http://{host}:{}", p.port),
            timeout(
                g.as_ref().and_then(|g| g.timeout.as_deref()),
                &at("grpc.timeout"),
            )?,
            headers(
                g.as_ref()
                    .map(|g| g.initial_metadata.as_slice())
                    .unwrap_or_default(),
                &at("grpc.initialMetadata"),
            )?,
        ),
    };
    Ok(Destination {
        endpoint,
        protocol,
        timeout,
        headers,
        resource,
    })
}

fn timeout(value: Option<&str>, field: &str) -> Result<Duration, TraceConfigError> {
    match value {
        None => Ok(DEFAULT_TIMEOUT),
        Some(v) => humantime::parse_duration(v).map_err(|e| TraceConfigError::Invalid {
            field: field.to_string(),
            reason: format!("{v}: {e}"),
        }),
    }
}

fn headers(list: &[OtelHeader], field: &str) -> Result<Vec<(String, String)>, TraceConfigError> {
    list.iter()
        .map(|h| {
            let value = match (&h.value, &h.env_name) {
                (Some(v), None) => v.clone(),
                // Istio reads `envName` from the proxy's environment.
                (None, Some(env)) => std::env::var(env).unwrap_or_default(),
                _ => {
                    return Err(TraceConfigError::Invalid {
                        field: format!("{field}[{}]", h.name),
                        reason: "exactly one of value and envName".into(),
                    })
                }
            };
            if http::HeaderName::from_bytes(h.name.as_bytes()).is_err()
                || http::HeaderValue::from_str(&value).is_err()
            {
                return Err(TraceConfigError::Invalid {
                    field: format!("{field}[{}]", h.name),
                    reason: "not a valid header".into(),
                });
            }
            Ok((h.name.to_ascii_lowercase(), value))
        })
        .collect()
}

/// `OTEL_RESOURCE_ATTRIBUTES` (`k=v,k2=v2`), as the OpenTelemetry
/// environment detector reads it; `service.name` there is ignored, as the
/// waypoint names spans after the destination Service.
fn environment_resource() -> Vec<KeyValue> {
    let raw = std::env::var("OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default();
    raw.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .filter(|(k, _)| !k.is_empty() && *k != "service.name")
        .map(|(k, v)| KeyValue::new(k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(yaml: &str) -> Result<MeshTracing, TraceConfigError> {
        compile_mesh(&MeshConfig::parse(yaml).unwrap())
    }

    #[test]
    fn default_provider_and_sampling_from_meshconfig() {
        let t = compile(
            "enableTracing: true\ndefaultConfig: {tracing: {sampling: 25}}\ndefaultProviders: {tracing: [otel]}\nextensionProviders:\n- name: otel\n  opentelemetry: {service: observability/otel-collector.observability.svc.cluster.local, port: 4317, resource_detectors: {environment: {}}}\n- name: otel-http\n  opentelemetry: {service: tempo.tempo.svc.cluster.local, port: 4318, http: {path: /otlp/v1/traces, timeout: 2s, headers: [{name: X-Scope-OrgID, value: team-a}]}}\n",
        )
        .unwrap();
        assert_eq!(t.default.provider.as_deref(), Some("otel"));
        assert_eq!(t.default.sampling_percent, 25.0);
        assert_eq!(t.default.export, Some(t.providers["otel"].clone()));
        let grpc = &t.providers["otel"].destination;
        assert_eq!(grpc.protocol, Protocol::Grpc);
        assert_eq!(
            grpc.endpoint,
            "http://otel-collector.observability.svc.cluster.local:4317"
        );
        let http = &t.providers["otel-http"].destination;
        assert_eq!(http.protocol, Protocol::HttpProtobuf);
        assert_eq!(
            http.endpoint,
            "http://tempo.tempo.svc.cluster.local:4318/otlp/v1/traces"
        );
        assert_eq!(http.timeout, Duration::from_secs(2));
        assert_eq!(
            http.headers,
            vec![("x-scope-orgid".into(), "team-a".into())]
        );
    }

    #[test]
    fn tracing_is_off_without_a_default_provider_or_when_disabled() {
        let providers =
            "extensionProviders:\n- name: otel\n  opentelemetry: {service: c, port: 4317}\n";
        let t = compile(providers).unwrap();
        assert_eq!(t.default.provider, None);
        assert_eq!(t.default.sampling_percent, DEFAULT_SAMPLING_PERCENT);
        let off = compile(&format!(
            "enableTracing: false\ndefaultProviders: {{tracing: [otel]}}\n{providers}"
        ))
        .unwrap();
        assert_eq!(off.default.provider, None);
    }

    #[test]
    fn refuses_what_it_does_not_enforce_by_field_name() {
        for (yaml, needle) in [
            ("extensionProviders:\n- name: o\n  opentelemetry: {service: c, port: 1, dynatraceSampler: {}}\n", "opentelemetry.dynatraceSampler"),
            ("extensionProviders:\n- name: o\n  opentelemetry: {service: c, port: 1, resource_detectors: {dynatrace: {}}}\n", "resourceDetectors.dynatrace"),
            ("extensionProviders:\n- name: o\n  opentelemetry: {service: c, port: 1, http: {path: /x, timeout: soon}}\n", "http.timeout"),
            ("defaultConfig: {tracing: {zipkin: {address: z:9411}}}\n", "defaultConfig.tracing.zipkin"),
            ("defaultConfig: {tracing: {sampling: 150}}\n", "defaultConfig.tracing.sampling"),
            ("defaultProviders: {tracing: [z]}\nextensionProviders:\n- name: z\n  zipkin: {service: z, port: 9411}\n", "zipkin"),
            ("defaultProviders: {tracing: [nope]}\n", "nope"),
        ] {
            let err = compile(yaml).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle} not in {err}");
        }
        let typo = MeshConfig::parse(
            "extensionProviders:\n- name: o\n  opentelemetry: {service: c, port: 1, http: {pathh: /x}}\n",
        )
        .unwrap_err();
        assert!(typo.contains("pathh"), "{typo}");
    }
}
