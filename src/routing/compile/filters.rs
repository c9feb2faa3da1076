//! HTTPRoute filters → [`RuleFilters`]: header modifiers, RequestRedirect,
//! URLRewrite, RequestMirror and CORS (`cors.rs`), validated once (every invalid filter is
//! reported at its field). What they compute per request is
//! `table::filters` and `table::headers`.

use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use super::cors::compile_cors;
use super::resolve::{Resolve, RouteRef};
use crate::config::{HttpHeaderFilter, HttpPathModifier, HttpRequestMirrorFilter, HttpRouteFilter};
use crate::routing::error::{ErrorSink, RouteConfigError};
use crate::routing::table::filters::{
    MirrorFilter, PathModifier, RedirectFilter, RuleFilters, UrlRewriteFilter,
};
use crate::routing::table::headers::HeaderModifier;

/// Where filters are compiled from: for field paths, the route (its
/// namespace and kind decide what a mirror backendRef may name), and
/// resolving mirror backends.
pub(crate) struct FilterCtx<'a> {
    pub route: RouteRef<'a>,
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
            "CORS" => {
                let Some(c) = &f.cors else {
                    sink.push(format!("{field}.cors"), missing("cors"));
                    continue;
                };
                if ctx.backend_level {
                    sink.push(
                        format!("{field}.type"),
                        RouteConfigError::CorsInBackendFilter,
                    );
                    continue;
                }
                out.cors = compile_cors(c, &format!("{field}.cors"), sink);
            }
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
        .resolve(&m.backend_ref, ctx.route, &backend_field, sink);
    Some(MirrorFilter {
        target,
        numerator: u32::try_from(numerator).unwrap_or(u32::MAX),
        denominator: u32::try_from(denominator).unwrap_or(u32::MAX),
    })
}

/// Compiles one RequestHeaderModifier or ResponseHeaderModifier (at
/// `field`), reporting invalid and repeated names.
fn compile_header_modifier(
    m: &HttpHeaderFilter,
    field: &str,
    sink: &mut ErrorSink<'_>,
) -> HeaderModifier {
    let mut out = HeaderModifier::default();
    for (list, entries, target) in [("set", &m.set, &mut out.set), ("add", &m.add, &mut out.add)] {
        for (i, h) in entries.iter().enumerate() {
            let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else {
                sink.push(
                    format!("{field}.{list}[{i}].name"),
                    RouteConfigError::InvalidHeaderName(h.name.clone()),
                );
                continue;
            };
            let Ok(value) = HeaderValue::from_str(&h.value) else {
                sink.push(
                    format!("{field}.{list}[{i}].value"),
                    RouteConfigError::InvalidHeaderValue(h.value.clone()),
                );
                continue;
            };
            if target.iter().any(|(n, _)| *n == name) {
                sink.push(
                    format!("{field}.{list}[{i}].name"),
                    RouteConfigError::DuplicateHeader(h.name.clone()),
                );
                continue;
            }
            target.push((name, value));
        }
    }
    for (i, h) in m.remove.iter().enumerate() {
        match HeaderName::from_bytes(h.as_bytes()) {
            Ok(name) if out.remove.contains(&name) => sink.push(
                format!("{field}.remove[{i}]"),
                RouteConfigError::DuplicateHeader(h.clone()),
            ),
            Ok(name) => out.remove.push(name),
            Err(_) => sink.push(
                format!("{field}.remove[{i}]"),
                RouteConfigError::InvalidHeaderName(h.clone()),
            ),
        }
    }
    out
}
