//! HTTPRoute `matches[]` → [`CompiledMatch`]: path (Exact, PathPrefix,
//! RegularExpression), headers, query parameters and method, validated with
//! every error reported at its field. Testing a request against them is
//! `table::matcher`.

use http::{HeaderName, Method};

use crate::config::{HttpHeaderMatch, HttpPathMatch, HttpQueryParamMatch, HttpRouteMatch};
use crate::routing::error::{ErrorSink, RouteConfigError};
use crate::routing::table::matcher::{
    CompiledMatch, HeaderMatch, PathMatch, Pattern, QueryParamMatch, ValueMatch,
};

/// Compiles `matches` of one rule; an empty list is one `PathPrefix /` match.
/// `field` is the rule's path, e.g. `spec.rules[0]`.
pub(crate) fn compile_matches(
    matches: &[HttpRouteMatch],
    field: &str,
    sink: &mut ErrorSink<'_>,
) -> Vec<CompiledMatch> {
    if matches.is_empty() {
        return vec![CompiledMatch::path_only(PathMatch::Prefix("/".to_string()))];
    }
    let mut out = Vec::new();
    for (i, m) in matches.iter().enumerate() {
        let field = format!("{field}.matches[{i}]");
        let path = compile_path(m.path.as_ref(), &format!("{field}.path"), sink);
        let headers = compile_headers(&m.headers, &field, sink);
        let query_params = compile_query(&m.query_params, &field, sink);
        let method = m.method.as_deref().and_then(|method| match method {
            "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "CONNECT" | "OPTIONS" | "TRACE"
            | "PATCH" => Method::from_bytes(method.as_bytes())
                .ok()
                .map(|m| ValueMatch::Exact(m.as_str().to_string())),
            _ => {
                sink.push(
                    format!("{field}.method"),
                    RouteConfigError::InvalidMethod(method.to_string()),
                );
                None
            }
        });
        if let Some(path) = path {
            out.push(CompiledMatch {
                headers,
                query_params,
                method,
                ..CompiledMatch::path_only(path)
            });
        }
    }
    out
}

fn compile_path(
    path: Option<&HttpPathMatch>,
    field: &str,
    sink: &mut ErrorSink<'_>,
) -> Option<PathMatch> {
    let type_ = path
        .and_then(|p| p.type_.as_deref())
        .unwrap_or("PathPrefix");
    let value = path
        .and_then(|p| p.value.clone())
        .unwrap_or_else(|| "/".to_string());
    let absolute = |sink: &mut ErrorSink<'_>| {
        let ok = value.starts_with('/');
        if !ok {
            sink.push(
                format!("{field}.value"),
                RouteConfigError::PathNotAbsolute {
                    value: value.clone(),
                },
            );
        }
        ok
    };
    match type_ {
        "Exact" => absolute(sink).then(|| PathMatch::Exact(value.clone())),
        "PathPrefix" => absolute(sink).then(|| PathMatch::Prefix(value.clone())),
        "RegularExpression" => {
            compile_pattern(&value, &format!("{field}.value"), sink).map(PathMatch::Regex)
        }
        other => {
            sink.push(
                format!("{field}.type"),
                RouteConfigError::UnknownType {
                    what: "path match",
                    value: other.to_string(),
                    supported: "Exact, PathPrefix, RegularExpression",
                },
            );
            None
        }
    }
}

pub(crate) fn compile_pattern(
    value: &str,
    field: &str,
    sink: &mut ErrorSink<'_>,
) -> Option<Pattern> {
    Pattern::new(value).map_err(|e| sink.push(field, e)).ok()
}

fn compile_value(
    type_: Option<&str>,
    value: &str,
    field: &str,
    sink: &mut ErrorSink<'_>,
) -> Option<ValueMatch> {
    match type_.unwrap_or("Exact") {
        "Exact" => Some(ValueMatch::Exact(value.to_string())),
        "RegularExpression" => {
            compile_pattern(value, &format!("{field}.value"), sink).map(ValueMatch::Regex)
        }
        other => {
            sink.push(
                format!("{field}.type"),
                RouteConfigError::UnknownType {
                    what: "value match",
                    value: other.to_string(),
                    supported: "Exact, RegularExpression",
                },
            );
            None
        }
    }
}

/// Per the Gateway API: "If multiple entries specify equivalent header names,
/// only the first entry with an equivalent name MUST be considered".
pub(crate) fn compile_headers(
    headers: &[HttpHeaderMatch],
    field: &str,
    sink: &mut ErrorSink<'_>,
) -> Vec<HeaderMatch> {
    let mut out: Vec<HeaderMatch> = Vec::new();
    for (j, h) in headers.iter().enumerate() {
        let field = format!("{field}.headers[{j}]");
        let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else {
            sink.push(
                format!("{field}.name"),
                RouteConfigError::InvalidHeaderName(h.name.clone()),
            );
            continue;
        };
        let Some(value) = compile_value(h.type_.as_deref(), &h.value, &field, sink) else {
            continue;
        };
        if !out.iter().any(|m| m.name == name) {
            out.push(HeaderMatch { name, value });
        }
    }
    out
}

/// Query parameter names are case-sensitive; the first entry of a name wins,
/// as for headers.
fn compile_query(
    params: &[HttpQueryParamMatch],
    field: &str,
    sink: &mut ErrorSink<'_>,
) -> Vec<QueryParamMatch> {
    let mut out: Vec<QueryParamMatch> = Vec::new();
    for (j, q) in params.iter().enumerate() {
        let field = format!("{field}.queryParams[{j}]");
        let Some(value) = compile_value(q.type_.as_deref(), &q.value, &field, sink) else {
            continue;
        };
        if !out.iter().any(|m| m.name == q.name) {
            out.push(QueryParamMatch {
                name: q.name.clone(),
                value,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests;
