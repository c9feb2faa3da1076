//! Telemetry `metrics[]`: checked per resource, then merged over the levels (root
//! namespace < namespace < Gateway < Service) into the [`MetricOverrides`] of one
//! destination. Overrides of every level apply in that order, so a more specific level
//! replaces what a less specific one set for the same metric and label.

use std::sync::Arc;

use crate::config::{ConfigError, Sourced, Telemetry, TelemetrySpec};
use crate::telemetry::cel::Expr;
use crate::telemetry::overrides::{MetricKind, MetricOverrides, TagOp};

use super::mode;

/// The only metrics provider: the waypoint's own Prometheus endpoint.
const PROMETHEUS: &str = "prometheus";

/// Refuses what the waypoint would load and not enforce.
pub(super) fn validate(
    spec: &TelemetrySpec,
    located: &dyn Fn(&str, String) -> ConfigError,
) -> Result<(), ConfigError> {
    for (i, m) in spec.metrics.iter().enumerate() {
        let f = |s: &str| format!("spec.metrics[{i}].{s}");
        for (j, p) in m.providers.iter().enumerate() {
            if p.name != PROMETHEUS {
                return Err(located(
                    &f(&format!("providers[{j}].name")),
                    format!("metrics provider {:?} is not supported: the waypoint reports metrics to prometheus only (its /stats/prometheus endpoint)", p.name),
                ));
            }
        }
        if m.reporting_interval.is_some() {
            return Err(located(
                &f("reportingInterval"),
                "reportingInterval is not supported: the waypoint's metrics are read at scrape time".into(),
            ));
        }
        for (k, o) in m.overrides.iter().enumerate() {
            let f = |s: &str| f(&format!("overrides[{k}].{s}"));
            let kinds = selected(o.r#match.as_ref()).map_err(|(field, e)| located(&f(field), e))?;
            mode(o.r#match.as_ref().and_then(|m| m.mode.as_deref()))
                .map_err(|e| located(&f("match.mode"), e))?;
            for (tag, t) in &o.tag_overrides {
                let field = f(&format!("tagOverrides.{tag}"));
                if let Some(kind) = kinds.iter().find(|k| !k.has_label(tag)) {
                    return Err(located(&field, format!(
                        "{tag} is not a label of {}: adding labels is not supported (a metric's label names are fixed when it is registered); override one of Istio's standard labels",
                        kind.api_name()
                    )));
                }
                tag_op(t).map_err(|e| located(&field, e))?;
            }
        }
    }
    Ok(())
}

/// The metrics an override's `match` selects; `Err((field, reason))`.
fn selected(
    m: Option<&crate::config::MetricSelector>,
) -> Result<Vec<MetricKind>, (&'static str, String)> {
    let Some(m) = m else {
        return Ok(MetricKind::ALL.to_vec());
    };
    if let Some(custom) = &m.custom_metric {
        return Err((
            "match.customMetric",
            format!("customMetric {custom:?} is not supported: the waypoint exports Istio's standard metrics only"),
        ));
    }
    match m.metric.as_deref() {
        None | Some("ALL_METRICS") => Ok(MetricKind::ALL.to_vec()),
        Some(name) => MetricKind::from_api_name(name)
            .map(|k| vec![k])
            .ok_or_else(|| {
                let known: Vec<_> = MetricKind::ALL.iter().map(|k| k.api_name()).collect();
                (
                    "match.metric",
                    format!(
                        "unknown metric {name:?}: ALL_METRICS or one of {}",
                        known.join(", ")
                    ),
                )
            }),
    }
}

fn tag_op(t: &crate::config::TagOverride) -> Result<TagOp, String> {
    match (t.operation.as_deref(), &t.value) {
        (Some("REMOVE"), None) => Ok(TagOp::Remove),
        (Some("REMOVE"), Some(_)) => Err("value is only used with operation UPSERT".into()),
        (None | Some("UPSERT"), Some(v)) => Expr::parse_value(v)
            .map(TagOp::Upsert)
            .map_err(|e| e.to_string()),
        (None | Some("UPSERT"), None) => Err("operation UPSERT needs a value".into()),
        (Some(other), _) => Err(format!("unknown operation {other:?}: UPSERT or REMOVE")),
    }
}

/// The overrides of `levels` (least specific first, each already validated); `None`
/// when they change nothing, so the request path keeps its unconfigured cost.
pub(super) fn merge(
    levels: &[&Sourced<Telemetry>],
) -> Result<Option<Arc<MetricOverrides>>, ConfigError> {
    let mut out = MetricOverrides::default();
    for t in levels {
        for (i, m) in t.object.spec.metrics.iter().enumerate() {
            for (k, o) in m.overrides.iter().enumerate() {
                let at = |e: String| {
                    t.error_at("Telemetry", &format!("spec.metrics[{i}].overrides[{k}]"), e)
                };
                if !mode(o.r#match.as_ref().and_then(|m| m.mode.as_deref())).map_err(at)? {
                    continue;
                }
                let kinds = selected(o.r#match.as_ref()).map_err(|(_, e)| at(e))?;
                for kind in kinds {
                    let rule = out.get_mut(kind);
                    if let Some(d) = o.disabled {
                        rule.disabled = d;
                    }
                    for (tag, over) in &o.tag_overrides {
                        let op = tag_op(over).map_err(at)?;
                        rule.set_tag(tag, op).ok_or_else(|| {
                            at(format!("BUG: {tag} passed validation but is not a label"))
                        })?;
                    }
                }
            }
        }
    }
    Ok((!out.is_noop()).then(|| Arc::new(out)))
}
