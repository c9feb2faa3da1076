//! Telemetry `metrics[].overrides` in their runtime form: per standard metric, whether it
//! is recorded and which labels are removed or given a per-request value. Built once per
//! config by `telemetry_api` for each destination; the request path only reads it.
//!
//! A label family's names are fixed when the metric is registered, so an override can
//! change a label's value but not add a label: `telemetry_api` refuses new tag names.
//! REMOVE leaves the label out the Prometheus way: its value is the empty string, which
//! Prometheus stores as an absent label.

use std::borrow::Cow;

use super::cel::{Attributes, Expr, Value};
use super::labels::{HTTP_ONLY_LABELS, REQUEST_LABEL_NAMES};
use super::UNKNOWN;

/// Istio's standard metrics (`overrides[].match.metric`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    RequestCount,
    RequestDuration,
    RequestSize,
    ResponseSize,
    TcpOpenedConnections,
    TcpClosedConnections,
    TcpSentBytes,
    TcpReceivedBytes,
}

impl MetricKind {
    pub const ALL: [MetricKind; 8] = [
        MetricKind::RequestCount,
        MetricKind::RequestDuration,
        MetricKind::RequestSize,
        MetricKind::ResponseSize,
        MetricKind::TcpOpenedConnections,
        MetricKind::TcpClosedConnections,
        MetricKind::TcpSentBytes,
        MetricKind::TcpReceivedBytes,
    ];

    /// The Telemetry API's name for it.
    pub fn api_name(self) -> &'static str {
        match self {
            MetricKind::RequestCount => "REQUEST_COUNT",
            MetricKind::RequestDuration => "REQUEST_DURATION",
            MetricKind::RequestSize => "REQUEST_SIZE",
            MetricKind::ResponseSize => "RESPONSE_SIZE",
            MetricKind::TcpOpenedConnections => "TCP_OPENED_CONNECTIONS",
            MetricKind::TcpClosedConnections => "TCP_CLOSED_CONNECTIONS",
            MetricKind::TcpSentBytes => "TCP_SENT_BYTES",
            MetricKind::TcpReceivedBytes => "TCP_RECEIVED_BYTES",
        }
    }

    pub fn from_api_name(name: &str) -> Option<MetricKind> {
        MetricKind::ALL.into_iter().find(|k| k.api_name() == name)
    }

    /// TCP metrics have no `response_code` / `grpc_response_status` label.
    pub fn is_tcp(self) -> bool {
        self as usize >= MetricKind::TcpOpenedConnections as usize
    }

    /// Whether the metric carries label `name`.
    pub fn has_label(self, name: &str) -> bool {
        REQUEST_LABEL_NAMES.contains(&name) && !(self.is_tcp() && HTTP_ONLY_LABELS.contains(&name))
    }
}

/// What an override does to one label.
#[derive(Debug, Clone, PartialEq)]
pub enum TagOp {
    /// Emitted empty (Prometheus: absent).
    Remove,
    /// The expression's value per request; `unknown` when it has none (a missing header),
    /// as Istio labels what it cannot know.
    Upsert(Expr),
}

/// The overrides of one metric.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricOverride {
    pub disabled: bool,
    /// By index into the request label names; one entry per label.
    tags: Vec<(usize, TagOp)>,
}

impl MetricOverride {
    /// Sets (or replaces: a more specific level wins) what happens to label `name`.
    /// `None` if the metric family has no such label.
    pub fn set_tag(&mut self, name: &str, op: TagOp) -> Option<()> {
        let i = REQUEST_LABEL_NAMES.iter().position(|n| *n == name)?;
        match self.tags.iter_mut().find(|(j, _)| *j == i) {
            Some(entry) => entry.1 = op,
            None => self.tags.push((i, op)),
        }
        Some(())
    }

    /// Rewrites `values` (in request label order) for one request.
    pub fn apply<'a>(&'a self, values: &mut [Cow<'a, str>], attrs: &'a dyn Attributes) {
        for (i, op) in &self.tags {
            values[*i] = match op {
                TagOp::Remove => Cow::Borrowed(""),
                TagOp::Upsert(e) => match e.value(attrs) {
                    Value::Str(s) => s,
                    Value::Absent => Cow::Borrowed(UNKNOWN),
                    other => Cow::Owned(other.to_string()),
                },
            };
        }
    }
}

/// The overrides that apply to one destination, per metric.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricOverrides {
    per_metric: [MetricOverride; 8],
}

impl MetricOverrides {
    pub fn get(&self, kind: MetricKind) -> &MetricOverride {
        &self.per_metric[kind as usize]
    }

    pub fn get_mut(&mut self, kind: MetricKind) -> &mut MetricOverride {
        &mut self.per_metric[kind as usize]
    }

    /// True when nothing is overridden (the destination records as if unconfigured).
    pub fn is_noop(&self) -> bool {
        self.per_metric
            .iter()
            .all(|m| !m.disabled && m.tags.is_empty())
    }
}
