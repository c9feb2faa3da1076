//! Telemetry `tracing` → the [`TracingPolicy`] the tracer applies to one destination:
//! the merged [`TracingSettings`] laid over MeshConfig's default policy, compiled once
//! per config so a request reads its policy from its own snapshot and builds nothing.
//! Also the provider check: a Telemetry naming a tracing provider MeshConfig does not
//! define as `opentelemetry` is refused at load, not left to trace nothing.
//!
//! Not here: merging the levels (`telemetry_api`), sampling and export
//! (`telemetry::trace`).

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderName;

use crate::config::MeshConfig;
use crate::telemetry::trace::{CustomTag, ProviderExport, TracingPolicy};

use super::{TagSource, TracingSettings};

/// Checks `spec.tracing[].providers` against MeshConfig: one provider at most (Istio's
/// tracing takes a single provider), and it must be an `opentelemetry` extension
/// provider, the only tracer the waypoint exports to. The error is the reason; the
/// caller names the field.
pub(super) fn check_providers(names: &[&str], mesh: &MeshConfig) -> Result<(), String> {
    if names.len() > 1 {
        return Err(format!(
            "one tracing provider at most ({}): the waypoint reports each span once",
            names.join(", ")
        ));
    }
    for name in names {
        let Some(p) = mesh.extension_providers.iter().find(|p| p.name == *name) else {
            return Err(format!(
                "provider {name} is not defined in MeshConfig extensionProviders"
            ));
        };
        if p.opentelemetry.is_none() {
            return Err(format!(
                "provider {name} is not an opentelemetry provider: the waypoint only traces to opentelemetry"
            ));
        }
    }
    Ok(())
}

/// Checks a `customTags.*.header.name` is a valid HTTP header name.
pub(super) fn check_header_name(name: &str) -> Result<(), String> {
    HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
        .map(|_| ())
        .map_err(|_| format!("{name:?} is not a valid header name"))
}

/// The policy for one destination: `settings` (what Telemetry set) over `mesh_default`
/// (MeshConfig's provider and sampling). A field Telemetry did not set keeps the mesh's.
pub(super) fn compile_policy(
    settings: &TracingSettings,
    mesh_default: &TracingPolicy,
    exports: &HashMap<Arc<str>, Arc<ProviderExport>>,
) -> Arc<TracingPolicy> {
    let mut policy = mesh_default.clone();
    if let Some(names) = &settings.providers {
        // Checked by `check_providers`: at most one, defined in MeshConfig.
        policy.provider = names.first().map(|n| Arc::from(n.as_str()));
        policy.export = names.first().and_then(|n| exports.get(n.as_str()).cloned());
    }
    if let Some(p) = settings.random_sampling_percentage {
        policy.sampling_percent = p;
    }
    if let Some(d) = settings.disable_span_reporting {
        policy.disable_span_reporting = d;
    }
    policy.custom_tags = settings
        .custom_tags
        .iter()
        .filter_map(|(name, source)| {
            let tag = match source {
                TagSource::Literal(v) => CustomTag::Literal(Arc::from(v.as_str())),
                // Read once at load (as Envoy reads its environment at startup), so
                // from here on it is a constant.
                TagSource::Environment(v) => CustomTag::Literal(Arc::from(v.as_str())),
                TagSource::Header {
                    name: header,
                    default_value,
                } => CustomTag::Header {
                    // Checked by `check_header_name` at load.
                    name: HeaderName::from_bytes(header.as_bytes()).ok()?,
                    default: default_value.as_deref().map(Arc::from),
                },
            };
            Some((Arc::from(name.as_str()), tag))
        })
        .collect();
    Arc::new(policy)
}
