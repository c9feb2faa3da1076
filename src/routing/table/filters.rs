//! Compiled route filters (HTTPRoute RequestRedirect, URLRewrite,
//! RequestMirror, CORS and header modifiers; VirtualService redirect,
//! rewrite, mirror, corsPolicy, directResponse and headers) and what they compute for one request: a redirect
//! `Location`, a [`Rewrite`], sampled [`Mirror`]s. The proxy applies the
//! results; compiling API filters into these is `compile::filters` and
//! `istio::virtual_service`.

use std::sync::Arc;

use rand::Rng;

use super::cors::CorsPolicy;
use super::headers::HeaderModifier;
use super::matcher::{raw_prefix_len, split_path_query};
use super::regex_rewrite::CompiledRegexRewrite;
use crate::routing::request::RequestInfo;
use crate::routing::service::DestinationPort;
use crate::upstream::EndpointSet;

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
    RegexReplace(CompiledRegexRewrite),
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
    pub target: Result<(DestinationPort, Arc<EndpointSet>), String>,
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

/// VirtualService `directResponse`, compiled: the waypoint answers with
/// this status and body instead of forwarding.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DirectResponseFilter {
    pub status: u16,
    pub body: bytes::Bytes,
}

/// All filters of one rule or one backendRef, compiled.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RuleFilters {
    pub request_headers: Vec<Arc<HeaderModifier>>,
    pub response_headers: Vec<Arc<HeaderModifier>>,
    pub redirect: Option<RedirectFilter>,
    pub rewrite: Option<UrlRewriteFilter>,
    pub mirrors: Vec<MirrorFilter>,
    /// HTTPRoute `CORS`, VirtualService `corsPolicy` (rule level only).
    pub cors: Option<Arc<CorsPolicy>>,
    /// VirtualService `directResponse`.
    pub direct_response: Option<DirectResponseFilter>,
}

/// A URLRewrite's result for one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// New `/path?query` (query kept), when the path is rewritten.
    pub path_and_query: Option<String>,
    /// New Host/`:authority` (host name only), when rewritten.
    pub authority: Option<String>,
}

/// Where to send a copy of the request (response ignored).
#[derive(Debug, Clone, PartialEq)]
pub struct Mirror {
    pub backend: DestinationPort,
    pub endpoints: Arc<EndpointSet>,
}

#[cfg(test)]
mod tests;
