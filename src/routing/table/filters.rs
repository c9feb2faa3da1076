//! HTTPRoute filters: header modifiers, RequestRedirect, URLRewrite and
//! RequestMirror, compiled (and validated) once, applied per request. The
//! proxy applies the resulting header edits and rewrite; this module only
//! computes them.

use std::sync::Arc;

use rand::Rng;

use super::backend::Resolve;
use super::decision::{Mirror, RequestInfo, Rewrite};
use super::endpoints::EndpointSet;
use super::error::{ErrorSink, RouteConfigError};
use super::matching::{raw_prefix_len, split_path_query};
use super::regex_rewrite::RegexRewrite;
use super::service::Destination;
use crate::config::{HttpPathModifier, HttpRequestMirrorFilter, HttpRouteFilter};

mod headers;

use headers::compile_header_modifier;
pub use headers::{HeaderEdit, HeaderModifier};

/// `path` of a redirect or rewrite.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PathModifier {
    ReplaceFullPath(String),
    ReplacePrefixMatch(String),
    /// VirtualService `rewrite.uri`: replaces the matched raw prefix
    /// (Envoy `prefix_rewrite`), or the whole path when the match was not a
    /// prefix match.
    ReplaceRawPrefix(String),
    /// VirtualService `rewrite.uriRegexRewrite`.
    RegexReplace(RegexRewrite),
}

impl PathModifier {
    /// The new path. For ReplacePrefixMatch, per the Gateway API table:
    /// `/foo/bar` with prefix `/foo` and replacement `/xyz` (or `/xyz/`)
    /// gives `/xyz/bar`; `/foo/` gives `/xyz/`; an empty or `/` replacement of
    /// `/foo` gives `/`. Trailing slashes of prefix and replacement are
    /// ignored, the request's own trailing slash is kept.
    pub(crate) fn apply(&self, path: &str, matched_prefix: Option<&str>) -> String {
        match self {
            PathModifier::ReplaceFullPath(p) => p.clone(),
            PathModifier::ReplaceRawPrefix(v) => {
                match matched_prefix.and_then(|p| raw_prefix_len(p, path, true)) {
                    Some(n) => {
                        let out = format!("{v}{}", path.get(n..).unwrap_or(""));
                        if out.is_empty() {
                            "/".to_string()
                        } else {
                            out
                        }
                    }
                    None => v.clone(),
                }
            }
            PathModifier::RegexReplace(r) => r.apply(path),
            PathModifier::ReplacePrefixMatch(replacement) => {
                let Some(prefix) = matched_prefix else {
                    return path.to_string();
                };
                let prefix = prefix.trim_end_matches('/');
                let rest = path.get(prefix.len()..).unwrap_or("");
                let out = format!("{}{rest}", replacement.trim_end_matches('/'));
                if out.is_empty() {
                    "/".to_string()
                } else {
                    out
                }
            }
        }
    }
}

/// A compiled RequestRedirect.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RedirectFilter {
    pub scheme: Option<String>,
    pub hostname: Option<String>,
    pub port: Option<u16>,
    pub path: Option<PathModifier>,
    pub status: u16,
    /// VirtualService `derivePort`; `None` keeps the Gateway API rule.
    pub derive_port: Option<DerivePort>,
}

/// VirtualService `redirect.derivePort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DerivePort {
    /// `FROM_PROTOCOL_DEFAULT`: 80 for http, 443 for https.
    ProtocolDefault,
    /// `FROM_REQUEST_PORT`: the port the request was sent to.
    RequestPort,
}

impl RedirectFilter {
    /// The `Location` value. Port, per the Gateway API: "If redirect scheme
    /// is not-empty, the redirect port MUST be the well-known port associated
    /// with the redirect scheme"; if both are empty, the listener port (for a
    /// mesh route: the Service port). The port is left out when it is the
    /// scheme's default (http 80, https 443). The query string is kept.
    pub(crate) fn location(&self, req: &RequestInfo<'_>, matched_prefix: Option<&str>) -> String {
        let (path, query) = split_path_query(req.path_and_query);
        let scheme = self.scheme.as_deref().unwrap_or(req.scheme);
        let host = self.hostname.as_deref().unwrap_or(req.host);
        let port = self.port.unwrap_or(match (self.derive_port, scheme) {
            (Some(DerivePort::RequestPort), _) => req.port,
            (Some(DerivePort::ProtocolDefault), "https") => 443,
            (Some(DerivePort::ProtocolDefault), _) => 80,
            (None, _) => match self.scheme.as_deref() {
                Some("http") => 80,
                Some("https") => 443,
                _ => req.port,
            },
        });
        let path = match &self.path {
            Some(m) => m.apply(path, matched_prefix),
            None => path.to_string(),
        };
        let mut out = String::with_capacity(scheme.len() + host.len() + path.len() + 16);
        out.push_str(scheme);
        out.push_str("://");
        if host.contains(':') && !host.starts_with('[') {
            out.push('[');
            out.push_str(host);
            out.push(']');
        } else {
            out.push_str(host);
        }
        let default_port = matches!((scheme, port), ("http", 80) | ("https", 443));
        if !default_port {
            out.push(':');
            out.push_str(&port.to_string());
        }
        out.push_str(&path);
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        out
    }
}

/// A compiled URLRewrite.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UrlRewriteFilter {
    pub hostname: Option<String>,
    pub path: Option<PathModifier>,
}

impl UrlRewriteFilter {
    /// The rewrite for this request; the query string is kept.
    pub(crate) fn rewrite(&self, req: &RequestInfo<'_>, matched_prefix: Option<&str>) -> Rewrite {
        let path_and_query = self.path.as_ref().map(|m| {
            let (path, query) = split_path_query(req.path_and_query);
            let mut out = m.apply(path, matched_prefix);
            if let Some(q) = query {
                out.push('?');
                out.push_str(q);
            }
            out
        });
        Rewrite {
            path_and_query,
            authority: self.hostname.clone(),
        }
    }
}

/// A compiled RequestMirror. A backend that does not resolve is kept (and
/// skipped per request) so the route still serves, as Gateway API asks for
/// unresolved references outside `backendRefs`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MirrorFilter {
    pub target: Result<(Destination, Arc<EndpointSet>), String>,
    pub numerator: u32,
    pub denominator: u32,
}

impl MirrorFilter {
    /// Whether this request is mirrored, and where.
    pub(crate) fn sample(&self) -> Option<Mirror> {
        let (backend, endpoints) = self.target.as_ref().ok()?;
        let hit = self.numerator >= self.denominator
            || (self.numerator > 0
                && rand::rng().random_range(0..self.denominator) < self.numerator);
        hit.then(|| Mirror {
            backend: backend.clone(),
            endpoints: endpoints.clone(),
        })
    }
}

/// All filters of one rule or one backendRef, compiled.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RuleFilters {
    pub request_headers: Vec<Arc<HeaderModifier>>,
    pub response_headers: Vec<Arc<HeaderModifier>>,
    pub redirect: Option<RedirectFilter>,
    pub rewrite: Option<UrlRewriteFilter>,
    pub mirrors: Vec<MirrorFilter>,
}

/// Where filters are compiled from: for field paths, the route namespace,
/// and resolving mirror backends.
pub(crate) struct FilterCtx<'a> {
    pub route_ns: &'a str,
    pub resolver: &'a dyn Resolve,
    /// RequestRedirect is rejected in backendRef filters.
    pub backend_level: bool,
}

/// Compiles `filters` found at `field` (`spec.rules[0]` or
/// `spec.rules[0].backendRefs[1]`), reporting every invalid one.
pub(crate) fn compile_filters(
    filters: &[HttpRouteFilter],
    field: &str,
    ctx: &FilterCtx<'_>,
    sink: &mut ErrorSink<'_>,
) -> RuleFilters {
    let mut out = RuleFilters::default();
    let mut seen: Vec<&str> = Vec::new();
    for (i, f) in filters.iter().enumerate() {
        let field = format!("{field}.filters[{i}]");
        // "RequestMirror" may repeat; every other core filter at most once.
        if f.type_ != "RequestMirror" && seen.contains(&f.type_.as_str()) {
            sink.push(
                format!("{field}.type"),
                RouteConfigError::DuplicateFilter {
                    filter: f.type_.clone(),
                },
            );
            continue;
        }
        seen.push(&f.type_);
        let missing = |member: &'static str| RouteConfigError::MissingFilterConfig {
            filter: f.type_.clone(),
            field: member,
        };
        match f.type_.as_str() {
            "RequestHeaderModifier" => match &f.request_header_modifier {
                Some(m) => {
                    let m =
                        compile_header_modifier(m, &format!("{field}.requestHeaderModifier"), sink);
                    out.request_headers.push(Arc::new(m));
                }
                None => sink.push(
                    format!("{field}.requestHeaderModifier"),
                    missing("requestHeaderModifier"),
                ),
            },
            "ResponseHeaderModifier" => match &f.response_header_modifier {
                Some(m) => {
                    let m = compile_header_modifier(
                        m,
                        &format!("{field}.responseHeaderModifier"),
                        sink,
                    );
                    out.response_headers.push(Arc::new(m));
                }
                None => sink.push(
                    format!("{field}.responseHeaderModifier"),
                    missing("responseHeaderModifier"),
                ),
            },
            "RequestRedirect" => {
                let Some(r) = &f.request_redirect else {
                    sink.push(
                        format!("{field}.requestRedirect"),
                        missing("requestRedirect"),
                    );
                    continue;
                };
                if ctx.backend_level {
                    sink.push(
                        format!("{field}.type"),
                        RouteConfigError::RedirectInBackendFilter,
                    );
                    continue;
                }
                let field = format!("{field}.requestRedirect");
                let status = r.status_code.unwrap_or(302);
                if ![301, 302, 303, 307, 308].contains(&status) {
                    sink.push(
                        format!("{field}.statusCode"),
                        RouteConfigError::InvalidStatusCode(status),
                    );
                }
                if let Some(s) = r
                    .scheme
                    .as_deref()
                    .filter(|s| *s != "http" && *s != "https")
                {
                    sink.push(
                        format!("{field}.scheme"),
                        RouteConfigError::InvalidScheme(s.to_string()),
                    );
                }
                out.redirect = Some(RedirectFilter {
                    scheme: r.scheme.clone(),
                    hostname: r.hostname.clone(),
                    port: r.port,
                    path: r
                        .path
                        .as_ref()
                        .and_then(|p| compile_path_modifier(p, &format!("{field}.path"), sink)),
                    status,
                    derive_port: None,
                });
            }
            "URLRewrite" => {
                let Some(r) = &f.url_rewrite else {
                    sink.push(format!("{field}.urlRewrite"), missing("urlRewrite"));
                    continue;
                };
                let field = format!("{field}.urlRewrite");
                out.rewrite = Some(UrlRewriteFilter {
                    hostname: r.hostname.clone(),
                    path: r
                        .path
                        .as_ref()
                        .and_then(|p| compile_path_modifier(p, &format!("{field}.path"), sink)),
                });
            }
            "RequestMirror" => match &f.request_mirror {
                Some(m) => {
                    if let Some(m) = compile_mirror(m, &format!("{field}.requestMirror"), ctx, sink)
                    {
                        out.mirrors.push(m);
                    }
                }
                None => sink.push(format!("{field}.requestMirror"), missing("requestMirror")),
            },
            other => sink.push(
                format!("{field}.type"),
                RouteConfigError::UnsupportedFilter(other.to_string()),
            ),
        }
    }
    out
}

/// Per the Gateway API CEL rules: `replaceFullPath` must be set exactly when
/// type is ReplaceFullPath, `replacePrefixMatch` exactly when it is
/// ReplacePrefixMatch.
fn compile_path_modifier(
    p: &HttpPathModifier,
    field: &str,
    sink: &mut ErrorSink<'_>,
) -> Option<PathModifier> {
    let mismatch = |required, forbidden| RouteConfigError::PathModifierMismatch {
        type_: p.type_.clone(),
        required,
        forbidden,
    };
    match p.type_.as_str() {
        "ReplaceFullPath" => match (&p.replace_full_path, &p.replace_prefix_match) {
            (Some(v), None) => Some(PathModifier::ReplaceFullPath(v.clone())),
            _ => {
                sink.push(field, mismatch("replaceFullPath", "replacePrefixMatch"));
                None
            }
        },
        "ReplacePrefixMatch" => match (&p.replace_prefix_match, &p.replace_full_path) {
            (Some(v), None) => Some(PathModifier::ReplacePrefixMatch(v.clone())),
            _ => {
                sink.push(field, mismatch("replacePrefixMatch", "replaceFullPath"));
                None
            }
        },
        other => {
            sink.push(
                format!("{field}.type"),
                RouteConfigError::UnknownType {
                    what: "path modifier",
                    value: other.to_string(),
                    supported: "ReplaceFullPath, ReplacePrefixMatch",
                },
            );
            None
        }
    }
}

/// Per the Gateway API: "Only one of Fraction or Percent may be specified. If
/// neither field is specified, 100% of requests will be mirrored."
fn compile_mirror(
    m: &HttpRequestMirrorFilter,
    field: &str,
    ctx: &FilterCtx<'_>,
    sink: &mut ErrorSink<'_>,
) -> Option<MirrorFilter> {
    let (numerator, denominator) = match (m.percent, &m.fraction) {
        (Some(_), Some(_)) => {
            sink.push(field, RouteConfigError::PercentAndFraction);
            return None;
        }
        (Some(p), None) if !(0..=100).contains(&p) => {
            sink.push(
                format!("{field}.percent"),
                RouteConfigError::InvalidPercent(p),
            );
            return None;
        }
        (Some(p), None) => (p, 100),
        (None, Some(f)) => {
            let d = f.denominator.unwrap_or(100);
            if d <= 0 || f.numerator < 0 || f.numerator > d {
                sink.push(
                    format!("{field}.fraction"),
                    RouteConfigError::InvalidFraction {
                        numerator: f.numerator,
                        denominator: d,
                    },
                );
                return None;
            }
            (f.numerator, d)
        }
        (None, None) => (100, 100),
    };
    let backend_field = format!("{field}.backendRef");
    let target = ctx
        .resolver
        .resolve(&m.backend_ref, ctx.route_ns, &backend_field, sink);
    Some(MirrorFilter {
        target,
        numerator: u32::try_from(numerator).unwrap_or(u32::MAX),
        denominator: u32::try_from(denominator).unwrap_or(u32::MAX),
    })
}

#[cfg(test)]
mod tests;
