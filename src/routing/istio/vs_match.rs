//! VirtualService `match[]` → [`CompiledMatch`]. Per the Istio docs: all
//! conditions inside one match must hold (AND), any match of the list may
//! (OR), and a route without `match` matches everything. `uri.prefix` is a
//! raw string prefix (Envoy's `prefix`), header names are lower-cased, a
//! `StringMatch` with no value tests presence, and `withoutHeaders` inverts
//! (an absent header satisfies it). Matches restricted by `gateways` to
//! gateways other than `mesh` never apply to the waypoint and are dropped.

use std::collections::BTreeMap;

use http::HeaderName;

use super::error::IstioConfigError;
use crate::config::{HttpMatchRequest, StringMatch};
use crate::routing::compile::matches::compile_pattern;
use crate::routing::error::{ErrorSink, RouteConfigError};
use crate::routing::table::matcher::{
    CompiledMatch, HeaderMatch, PathMatch, QueryParamMatch, ValueMatch,
};

/// The matches of `http[i]` (`field` = `spec.http[i]`). Returns `None` when
/// every match is for other gateways (the rule does not apply here).
pub(super) fn compile_vs_matches(
    matches: &[HttpMatchRequest],
    field: &str,
    sink: &mut ErrorSink<'_>,
) -> Option<Vec<CompiledMatch>> {
    if matches.is_empty() {
        return Some(vec![CompiledMatch::path_only(PathMatch::Any)]);
    }
    let mut out = Vec::new();
    for (j, m) in matches.iter().enumerate() {
        let field = format!("{field}.match[{j}]");
        if !m.gateways.is_empty() && !m.gateways.iter().any(|g| g == "mesh") {
            continue;
        }
        if !m.source_labels.is_empty() {
            sink.push_err(
                format!("{field}.sourceLabels"),
                IstioConfigError::Unsupported {
                    what: "sourceLabels",
                },
            );
        }
        if m.source_namespace.is_some() {
            sink.push_err(
                format!("{field}.sourceNamespace"),
                IstioConfigError::Unsupported {
                    what: "sourceNamespace",
                },
            );
        }
        let path = match &m.uri {
            None => Some(PathMatch::Any),
            Some(uri) => {
                let at = format!("{field}.uri");
                string_match(uri, &at, sink).map(|v| match v {
                    ValueMatch::Exact(s) => PathMatch::Exact(s),
                    ValueMatch::Prefix(s) => PathMatch::RawPrefix(s),
                    ValueMatch::Regex(p) => PathMatch::Regex(p),
                    ValueMatch::Present => PathMatch::Any,
                })
            }
        };
        let opt = |sm: &Option<StringMatch>, name: &str, sink: &mut ErrorSink<'_>| {
            sm.as_ref()
                .and_then(|sm| string_match(sm, &format!("{field}.{name}"), sink))
        };
        let method = opt(&m.method, "method", sink);
        let authority = opt(&m.authority, "authority", sink);
        let scheme = opt(&m.scheme, "scheme", sink);
        let headers = header_matches(&m.headers, &format!("{field}.headers"), sink);
        let without_headers =
            header_matches(&m.without_headers, &format!("{field}.withoutHeaders"), sink);
        let query_params = m
            .query_params
            .iter()
            .filter_map(|(name, sm)| {
                let value = string_match(sm, &format!("{field}.queryParams.{name}"), sink)?;
                Some(QueryParamMatch {
                    name: name.clone(),
                    value,
                })
            })
            .collect();
        if let Some(path) = path {
            out.push(CompiledMatch {
                headers,
                query_params,
                method,
                ignore_uri_case: m.ignore_uri_case.unwrap_or(false),
                without_headers,
                authority,
                scheme,
                port: m.port.filter(|p| *p != 0),
                ..CompiledMatch::path_only(path)
            });
        }
    }
    (!out.is_empty()).then_some(out)
}

fn header_matches(
    headers: &BTreeMap<String, StringMatch>,
    field: &str,
    sink: &mut ErrorSink<'_>,
) -> Vec<HeaderMatch> {
    headers
        .iter()
        .filter_map(|(name, sm)| {
            let at = format!("{field}.{name}");
            let Ok(name) = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) else {
                sink.push(at, RouteConfigError::InvalidHeaderName(name.clone()));
                return None;
            };
            Some(HeaderMatch {
                name,
                value: string_match(sm, &at, sink)?,
            })
        })
        .collect()
}

/// Istio `StringMatch`: exactly one of `exact`, `prefix`, `regex` (RE2,
/// full match); none set tests presence.
fn string_match(m: &StringMatch, field: &str, sink: &mut ErrorSink<'_>) -> Option<ValueMatch> {
    match (&m.exact, &m.prefix, &m.regex) {
        (None, None, None) => Some(ValueMatch::Present),
        (Some(v), None, None) => Some(ValueMatch::Exact(v.clone())),
        (None, Some(v), None) => Some(ValueMatch::Prefix(v.clone())),
        (None, None, Some(v)) => {
            compile_pattern(v, &format!("{field}.regex"), sink).map(ValueMatch::Regex)
        }
        _ => {
            sink.push_err(field, IstioConfigError::AmbiguousStringMatch);
            None
        }
    }
}
