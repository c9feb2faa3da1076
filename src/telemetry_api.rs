//! Istio's Telemetry API for this waypoint: which Telemetry resources apply to which
//! destination Service, merged the way Istio documents it (root namespace < the
//! waypoint's namespace < `targetRefs` to our Gateway < `targetRefs` to the Service; a
//! field set at a more specific level replaces the inherited one, field by field), and
//! MeshConfig's access-log settings (`accessLogFile`, `envoyFileAccessLog` providers).
//! Compiled once per config into a [`TelemetryTable`] in the published snapshot: a
//! request looks its destination up once, nothing is resolved per request.
//!
//! Not here: the access-log writer and formats (`telemetry::access_log`), the CEL subset
//! (`telemetry::cel`), the tracing runtime (it reads the [`TracingPolicy`] compiled here, see `tracing_policy`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::config::{
    ConfigError, ConfigErrors, Location, MeshConfig, NamespacedName, Resources, Sourced, Telemetry,
};
use crate::telemetry::access_log::format::LogFormat;
use crate::telemetry::access_log::sink::{LogSink, SinkRegistry};
use crate::telemetry::cel::Expr;
use crate::telemetry::overrides::MetricOverrides;
use crate::telemetry::trace::{compile_mesh, ProviderExport, TracingPolicy};

mod metrics;
mod tracing_policy;

/// Who this waypoint is, for Telemetry targets.
#[derive(Debug, Clone)]
pub struct TelemetryOptions {
    pub root_namespace: String,
    /// The waypoint's Gateway (its namespace is the "namespace" level).
    pub gateway: NamespacedName,
    /// `--mesh-config`, unless the config holds the root namespace's `istio` ConfigMap.
    pub mesh: Arc<MeshConfig>,
    /// `--access-log`: Istio's JSON lines on stdout when nothing else configures logs.
    pub stdout_json: bool,
}

/// One access log a request is written to.
#[derive(Debug, PartialEq)]
pub struct AccessLogPlan {
    pub sink: Arc<LogSink>,
    pub format: Arc<LogFormat>,
    /// Only requests this condition matches are logged.
    pub filter: Option<Expr>,
}

/// A `customTags` entry, resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum TagSource {
    Literal(String),
    /// The environment variable's value, read once at config load.
    Environment(String),
    Header {
        name: String,
        default_value: Option<String>,
    },
}

/// The effective `tracing` of one destination. `None` fields were set nowhere: the
/// tracing runtime applies MeshConfig's defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TracingSettings {
    pub providers: Option<Vec<String>>,
    pub random_sampling_percentage: Option<f64>,
    pub disable_span_reporting: Option<bool>,
    pub custom_tags: BTreeMap<String, TagSource>,
}

/// What applies to requests for one destination.
#[derive(Debug, PartialEq)]
pub struct Effective {
    pub access_logs: Vec<AccessLogPlan>,
    pub tracing: TracingSettings,
    /// `tracing` over MeshConfig's default: what the tracer applies (read from the
    /// request's snapshot, so a reload changes it for the next request).
    pub trace_policy: Arc<TracingPolicy>,
    /// `metrics[].overrides`; `None` when nothing is overridden (the common case: the
    /// request records its metrics as if no Telemetry existed).
    pub metrics: Option<Arc<MetricOverrides>>,
}

impl Default for Effective {
    fn default() -> Self {
        Self {
            access_logs: Vec::new(),
            tracing: TracingSettings::default(),
            trace_policy: Arc::new(TracingPolicy::off()),
            metrics: None,
        }
    }
}

/// The compiled Telemetry resolution.
#[derive(Debug, Default, PartialEq)]
pub struct TelemetryTable {
    /// For destinations no Service-targeted Telemetry names.
    default: Arc<Effective>,
    /// Namespace → Service name → what its `targetRefs` Telemetry resolves to; looked up
    /// by `&str`, so a request allocates nothing to find its entry.
    by_service: HashMap<String, HashMap<String, Arc<Effective>>>,
    /// Resources that do not apply to a waypoint, with why (for `waypoint check`).
    pub ignored: Vec<(NamespacedName, String)>,
    /// Some destination's policy names a tracing provider.
    traces: bool,
}

impl TelemetryTable {
    /// What applies to requests for the Service `namespace/name` (`None`: no destination
    /// resolved).
    pub fn find(&self, service: Option<(&str, &str)>) -> &Effective {
        service
            .and_then(|(ns, name)| self.by_service.get(ns)?.get(name))
            .unwrap_or(&self.default)
    }

    /// True when no destination is traced: the request path starts no span.
    pub fn traces_nothing(&self) -> bool {
        !self.traces
    }

    /// True when no request has anything to log: the logging phase skips building a record.
    pub fn logs_nothing(&self) -> bool {
        self.default.access_logs.is_empty() && self.by_service.is_empty()
    }

    /// True when no destination has access logs or metric overrides: the logging phase
    /// records metrics the unconfigured way without looking its destination up.
    pub fn is_inert(&self) -> bool {
        self.logs_nothing() && self.default.metrics.is_none()
    }

    /// Resolves every Telemetry resource and MeshConfig's access-log settings.
    pub fn compile(
        resources: &Resources,
        opts: &TelemetryOptions,
        sinks: &SinkRegistry,
    ) -> Result<TelemetryTable, ConfigErrors> {
        let mesh = resources
            .mesh_configs
            .iter()
            .find(|m| m.key.namespace == opts.root_namespace)
            .map(|m| Arc::new(m.object.clone()))
            .unwrap_or_else(|| opts.mesh.clone());
        // MeshConfig's own tracing errors are reported where it is loaded; here an
        // unusable MeshConfig just means "no default tracing".
        let mesh_tracing = compile_mesh(&mesh).ok();
        let exports = mesh_tracing
            .as_ref()
            .map(|m| m.providers.clone())
            .unwrap_or_default();
        let mesh_trace = mesh_tracing
            .map(|m| m.default)
            .unwrap_or_else(TracingPolicy::off);
        let mut errors = Vec::new();
        let mut table = TelemetryTable::default();
        // The levels, least specific first.
        let mut root = Vec::new();
        let mut namespace = Vec::new();
        let mut gateway = Vec::new();
        let mut services: BTreeMap<NamespacedName, Vec<&Sourced<Telemetry>>> = BTreeMap::new();
        for t in &resources.telemetries {
            let spec = &t.object.spec;
            let located = locator(t);
            if let Err(e) = validate(t, &mesh) {
                errors.push(e);
                continue;
            }
            let refs: Vec<_> = spec.target_ref.iter().chain(&spec.target_refs).collect();
            if spec.selector.is_some() {
                if !refs.is_empty() {
                    errors.push(located(
                        "spec.selector",
                        "only one of selector and targetRefs may be set".into(),
                    ));
                    continue;
                }
                table.ignored.push((
                    t.key.clone(),
                    "has a selector: applies to sidecars, not to a waypoint".into(),
                ));
                continue;
            }
            if refs.is_empty() {
                if t.key.namespace == opts.root_namespace {
                    root.push(t);
                } else if t.key.namespace == opts.gateway.namespace {
                    namespace.push(t);
                } else {
                    table.ignored.push((
                        t.key.clone(),
                        format!(
                            "a namespace-wide resource of namespace {}, not the waypoint's ({})",
                            t.key.namespace, opts.gateway.namespace
                        ),
                    ));
                }
                continue;
            }
            for (i, r) in refs.iter().enumerate() {
                let ns = r
                    .namespace
                    .clone()
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| t.key.namespace.clone());
                match (r.group.as_str(), r.kind.as_str()) {
                    ("gateway.networking.k8s.io", "Gateway") => {
                        if ns == opts.gateway.namespace && r.name == opts.gateway.name {
                            gateway.push(t);
                        }
                    }
                    ("" | "core", "Service") => services
                        .entry(NamespacedName::new(ns, r.name.clone()))
                        .or_default()
                        .push(t),
                    _ => errors.push(located(
                        &format!("spec.targetRefs[{i}]"),
                        format!("targetRef kind {}/{} is not supported: target our Gateway or a Service", r.group, r.kind),
                    )),
                }
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let base: Vec<&Sourced<Telemetry>> =
            root.into_iter().chain(namespace).chain(gateway).collect();
        table.default = Arc::new(
            resolve(&base, &mesh, (&mesh_trace, &exports), opts, sinks)
                .map_err(|e| ConfigErrors(vec![e]))?,
        );
        for (svc, targeted) in services {
            let levels: Vec<_> = base.iter().copied().chain(targeted).collect();
            let eff = resolve(&levels, &mesh, (&mesh_trace, &exports), opts, sinks)
                .map_err(|e| ConfigErrors(vec![e]))?;
            table
                .by_service
                .entry(svc.namespace)
                .or_default()
                .insert(svc.name, Arc::new(eff));
        }
        table.traces = std::iter::once(&table.default)
            .chain(table.by_service.values().flat_map(|m| m.values()))
            .any(|e| e.trace_policy.provider.is_some());
        Ok(table)
    }
}

fn locator<T>(sourced: &Sourced<T>) -> impl Fn(&str, String) -> ConfigError + '_ {
    move |field: &str, reason: String| sourced.error_at("Telemetry", field, reason)
}

/// Checks what can be checked per resource: expressions, modes, providers, refused fields.
fn validate(t: &Sourced<Telemetry>, mesh: &MeshConfig) -> Result<(), ConfigError> {
    let located = locator(t);
    let spec = &t.object.spec;
    for (i, tr) in spec.tracing.iter().enumerate() {
        let f = |s: &str| format!("spec.tracing[{i}].{s}");
        mode(tr.r#match.as_ref().and_then(|m| m.mode.as_deref()))
            .map_err(|e| located(&f("match.mode"), e))?;
        if let Some(p) = tr.random_sampling_percentage {
            if !(0.0..=100.0).contains(&p) {
                return Err(located(
                    &f("randomSamplingPercentage"),
                    format!("{p} is not between 0 and 100"),
                ));
            }
        }
        if tr.use_request_id_for_trace_sampling.is_some() || tr.enable_istio_tags.is_some() {
            return Err(located(&f("useRequestIdForTraceSampling"), "useRequestIdForTraceSampling and enableIstioTags are not supported by the waypoint".into()));
        }
        let providers: Vec<&str> = tr.providers.iter().map(|p| p.name.as_str()).collect();
        tracing_policy::check_providers(&providers, mesh)
            .map_err(|e| located(&f("providers"), e))?;
        for (name, tag) in &tr.custom_tags {
            if let Some(h) = &tag.header {
                tracing_policy::check_header_name(&h.name)
                    .map_err(|e| located(&f(&format!("customTags.{name}.header.name")), e))?;
            }
            let set = [
                tag.literal.is_some(),
                tag.environment.is_some(),
                tag.header.is_some(),
            ];
            if set.iter().filter(|s| **s).count() != 1 {
                return Err(located(
                    &f(&format!("customTags.{name}")),
                    "exactly one of literal, environment and header must be set".into(),
                ));
            }
        }
    }
    for (i, al) in spec.access_logging.iter().enumerate() {
        let f = |s: &str| format!("spec.accessLogging[{i}].{s}");
        mode(al.r#match.as_ref().and_then(|m| m.mode.as_deref()))
            .map_err(|e| located(&f("match.mode"), e))?;
        if let Some(filter) = &al.filter {
            Expr::parse_condition(&filter.expression)
                .map_err(|e| located(&f("filter.expression"), e.to_string()))?;
        }
        for (j, p) in al.providers.iter().enumerate() {
            access_log_provider(&p.name, mesh)
                .map_err(|e| located(&f(&format!("providers[{j}].name")), e))?;
        }
    }
    metrics::validate(spec, &located)
}

/// Whether `match.mode` applies to a waypoint. Istio treats a waypoint's reporting as
/// server-side (its metrics say `reporter="waypoint"` and it serves the destination), so
/// `CLIENT`-only entries do not apply.
pub(crate) fn mode(m: Option<&str>) -> Result<bool, String> {
    match m {
        None | Some("CLIENT_AND_SERVER") | Some("SERVER") => Ok(true),
        Some("CLIENT") => Ok(false),
        Some(other) => Err(format!(
            "unknown mode {other:?}: CLIENT_AND_SERVER, SERVER or CLIENT"
        )),
    }
}

/// Where a named access-log provider writes and in what format.
fn access_log_provider(name: &str, mesh: &MeshConfig) -> Result<(String, LogFormat), String> {
    if let Some(p) = mesh.extension_providers.iter().find(|p| p.name == name) {
        if p.envoy_otel_als.is_some() || p.envoy_http_als.is_some() || p.envoy_tcp_als.is_some() {
            return Err(format!("provider {name}: envoyOtelAls/envoyHttpAls/envoyTcpAls access logs are not supported by the waypoint; use envoyFileAccessLog"));
        }
        let Some(file) = &p.envoy_file_access_log else {
            return Err(format!(
                "provider {name} is not an access-log provider (envoyFileAccessLog)"
            ));
        };
        if file.path.is_empty() {
            return Err(format!(
                "provider {name}: envoyFileAccessLog.path is required"
            ));
        }
        let format = match &file.log_format {
            None => LogFormat::istio_text(),
            Some(f) => match (&f.text, &f.labels) {
                (Some(_), Some(_)) => {
                    return Err(format!(
                        "provider {name}: logFormat takes text or labels, not both"
                    ))
                }
                (Some(text), None) => LogFormat::Text(
                    crate::telemetry::access_log::format::TextFormat::compile(text)
                        .map_err(|e| format!("provider {name}: logFormat.text: {e}"))?,
                ),
                (None, Some(labels)) => {
                    LogFormat::json(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                        .map_err(|e| format!("provider {name}: logFormat.labels: {e}"))?
                }
                (None, None) => LogFormat::istio_text(),
            },
        };
        return Ok((file.path.clone(), format));
    }
    if name == "envoy" {
        return mesh_file_log(mesh)
            .map(|o| o.unwrap_or_else(|| ("/dev/stdout".to_string(), LogFormat::istio_text())));
    }
    Err(format!(
        "provider {name} is not defined in MeshConfig extensionProviders"
    ))
}

/// The built-in `envoy` provider: MeshConfig `accessLogFile` / `Encoding` / `Format`.
fn mesh_file_log(mesh: &MeshConfig) -> Result<Option<(String, LogFormat)>, String> {
    let Some(path) = mesh.access_log_file.as_deref().filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let json = match mesh.access_log_encoding.as_deref() {
        None | Some("TEXT") => false,
        Some("JSON") => true,
        Some(other) => return Err(format!("accessLogEncoding {other:?}: TEXT or JSON")),
    };
    let format = match (
        mesh.access_log_format.as_deref().filter(|f| !f.is_empty()),
        json,
    ) {
        (None, false) => LogFormat::istio_text(),
        (None, true) => LogFormat::istio_json(),
        (Some(f), false) => LogFormat::Text(
            crate::telemetry::access_log::format::TextFormat::compile(f)
                .map_err(|e| format!("accessLogFormat: {e}"))?,
        ),
        // JSON with a format: the format is a JSON object of labels, as Istio reads it.
        (Some(f), true) => {
            let labels: BTreeMap<String, String> = serde_json::from_str(f).map_err(|e| {
                format!("accessLogFormat: JSON encoding needs a JSON object of strings: {e}")
            })?;
            LogFormat::json(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .map_err(|e| format!("accessLogFormat: {e}"))?
        }
    };
    Ok(Some((path.to_string(), format)))
}

/// The access-logging state while merging levels.
#[derive(Default)]
struct LoggingMerge {
    seen: bool,
    providers: Option<Vec<String>>,
    disabled: Option<bool>,
    filter: Option<String>,
}

/// Merges `levels` (least specific first) field by field.
fn resolve(
    levels: &[&Sourced<Telemetry>],
    mesh: &MeshConfig,
    (mesh_trace, exports): (&TracingPolicy, &HashMap<Arc<str>, Arc<ProviderExport>>),
    opts: &TelemetryOptions,
    sinks: &SinkRegistry,
) -> Result<Effective, ConfigError> {
    let mut tracing = TracingSettings::default();
    let mut logging = LoggingMerge::default();
    for t in levels {
        let spec = &t.object.spec;
        for tr in spec
            .tracing
            .iter()
            .filter(|tr| mode(tr.r#match.as_ref().and_then(|m| m.mode.as_deref())) == Ok(true))
        {
            if !tr.providers.is_empty() {
                tracing.providers = Some(tr.providers.iter().map(|p| p.name.clone()).collect());
            }
            if tr.random_sampling_percentage.is_some() {
                tracing.random_sampling_percentage = tr.random_sampling_percentage;
            }
            if tr.disable_span_reporting.is_some() {
                tracing.disable_span_reporting = tr.disable_span_reporting;
            }
            for (name, tag) in &tr.custom_tags {
                let source = if let Some(l) = &tag.literal {
                    TagSource::Literal(l.value.clone())
                } else if let Some(e) = &tag.environment {
                    TagSource::Environment(
                        std::env::var(&e.name)
                            .ok()
                            .or_else(|| e.default_value.clone())
                            .unwrap_or_default(),
                    )
                } else if let Some(h) = &tag.header {
                    TagSource::Header {
                        name: h.name.to_ascii_lowercase(),
                        default_value: h.default_value.clone(),
                    }
                } else {
                    continue;
                };
                tracing.custom_tags.insert(name.clone(), source);
            }
        }
        for al in spec
            .access_logging
            .iter()
            .filter(|al| mode(al.r#match.as_ref().and_then(|m| m.mode.as_deref())) == Ok(true))
        {
            logging.seen = true;
            if !al.providers.is_empty() {
                logging.providers = Some(al.providers.iter().map(|p| p.name.clone()).collect());
            }
            if al.disabled.is_some() {
                logging.disabled = al.disabled;
            }
            if let Some(f) = &al.filter {
                logging.filter = Some(f.expression.clone());
            }
        }
    }
    let mesh_error = |reason: String| {
        ConfigError::new(
            Location {
                field: Some("MeshConfig".into()),
                ..Default::default()
            },
            reason,
        )
    };
    let mut access_logs = Vec::new();
    if logging.seen {
        if logging.disabled != Some(true) {
            let names = logging
                .providers
                .clone()
                .or_else(|| {
                    mesh.default_providers
                        .as_ref()
                        .map(|d| d.access_logging.clone())
                        .filter(|d| !d.is_empty())
                })
                .unwrap_or_else(|| vec!["envoy".to_string()]);
            let filter = logging
                .filter
                .as_deref()
                .map(Expr::parse_condition)
                .transpose()
                .map_err(|e| mesh_error(e.to_string()))?;
            for name in names {
                let (path, format) = access_log_provider(&name, mesh).map_err(mesh_error)?;
                access_logs.push(plan(sinks, &path, format, filter.clone())?);
            }
        }
    } else if let Some((path, format)) = mesh_file_log(mesh).map_err(mesh_error)? {
        access_logs.push(plan(sinks, &path, format, None)?);
    } else if let Some(names) = mesh
        .default_providers
        .as_ref()
        .map(|d| &d.access_logging)
        .filter(|d| !d.is_empty())
    {
        for name in names {
            let (path, format) = access_log_provider(name, mesh)
                .map_err(|e| mesh_error(format!("defaultProviders.accessLogging: {e}")))?;
            access_logs.push(plan(sinks, &path, format, None)?);
        }
    } else if opts.stdout_json {
        access_logs.push(plan(sinks, "/dev/stdout", LogFormat::istio_json(), None)?);
    }
    Ok(Effective {
        access_logs,
        trace_policy: tracing_policy::compile_policy(&tracing, mesh_trace, exports),
        tracing,
        metrics: metrics::merge(levels)?,
    })
}

fn plan(
    sinks: &SinkRegistry,
    path: &str,
    format: LogFormat,
    filter: Option<Expr>,
) -> Result<AccessLogPlan, ConfigError> {
    let sink = sinks
        .open(path)
        .map_err(|e| ConfigError::new(Location::default(), e.to_string()))?;
    Ok(AccessLogPlan {
        sink,
        format: Arc::new(format),
        filter,
    })
}

#[cfg(test)]
mod tests;
