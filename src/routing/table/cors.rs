//! Cross-origin resource sharing, as Envoy's CORS filter applies a route's
//! policy (HTTPRoute `CORS` filter, VirtualService `corsPolicy`; compiled by
//! `compile::filters` and `istio::vs_local`):
//!
//! - a request without `Origin`, or whose origin no `allowOrigins` entry
//!   matches, is not a CORS request: nothing is added; a non-matching
//!   preflight is forwarded, unless the policy says not to
//!   (`unmatchedPreflights: IGNORE`), when the waypoint answers 200 with no
//!   `access-control-*` header;
//! - a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
//!   from an allowed origin is answered by the waypoint: 200 with
//!   `access-control-allow-origin` (the request's origin),
//!   `-allow-credentials: true` when allowed, `-allow-methods`,
//!   `-allow-headers` and `-max-age` as configured;
//! - any other request from an allowed origin is forwarded, and its response
//!   gets `access-control-allow-origin`, `-allow-credentials` and
//!   `-expose-headers`.

use std::sync::Arc;

use http::header::{ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_ORIGIN};
use http::{HeaderName, HeaderValue, Method};

use super::headers::HeaderModifier;
use super::matcher::Pattern;
use crate::routing::request::RequestInfo;

/// One `allowOrigins` entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OriginMatch {
    /// The whole origin (`https://example.com`), compared as written.
    Exact(String),
    /// The origin starts with this.
    Prefix(String),
    /// The whole origin matches (Istio `regex`; a Gateway API `*` wildcard).
    Regex(Pattern),
}

impl OriginMatch {
    fn is_match(&self, origin: &str) -> bool {
        match self {
            OriginMatch::Exact(v) => v == origin,
            OriginMatch::Prefix(p) => origin.starts_with(p.as_str()),
            OriginMatch::Regex(r) => r.is_match(origin),
        }
    }
}

/// A route's CORS policy, compiled.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CorsPolicy {
    pub allow_origins: Vec<OriginMatch>,
    /// `access-control-allow-methods` of a preflight answer (joined with `,`).
    pub allow_methods: Option<HeaderValue>,
    /// `access-control-allow-headers` of a preflight answer.
    pub allow_headers: Option<HeaderValue>,
    /// `access-control-expose-headers` of an allowed response.
    pub expose_headers: Option<HeaderValue>,
    /// `access-control-max-age` (seconds) of a preflight answer.
    pub max_age: Option<HeaderValue>,
    pub allow_credentials: bool,
    /// Envoy's `forward_not_matching_preflights` (default true; Istio
    /// `unmatchedPreflights: IGNORE` turns it off).
    pub forward_unmatched_preflights: bool,
}

/// What the policy makes of one request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CorsOutcome {
    /// Not a CORS request (or not an allowed one): forward as usual.
    Pass,
    /// A preflight the waypoint answers: 200 with these headers.
    Preflight(Vec<(HeaderName, HeaderValue)>),
    /// An allowed request: forward, and edit the response with this.
    Allowed(Arc<HeaderModifier>),
}

impl CorsPolicy {
    /// Applies the policy to `req` (see the module docs).
    pub(crate) fn evaluate(&self, req: &RequestInfo<'_>) -> CorsOutcome {
        let Some(origin) = req.headers.get(http::header::ORIGIN) else {
            return CorsOutcome::Pass;
        };
        let Ok(origin_text) = origin.to_str() else {
            return CorsOutcome::Pass;
        };
        if origin_text.is_empty() {
            return CorsOutcome::Pass;
        }
        let allowed = self.allow_origins.iter().any(|m| m.is_match(origin_text));
        let preflight = req.method == Method::OPTIONS.as_str()
            && req
                .headers
                .get(http::header::ACCESS_CONTROL_REQUEST_METHOD)
                .is_some_and(|m| !m.is_empty());
        match (allowed, preflight) {
            (false, true) if !self.forward_unmatched_preflights => {
                CorsOutcome::Preflight(Vec::new())
            }
            (false, _) => CorsOutcome::Pass,
            (true, true) => CorsOutcome::Preflight(self.preflight_headers(origin)),
            (true, false) => CorsOutcome::Allowed(Arc::new(self.response_headers(origin))),
        }
    }

    fn preflight_headers(&self, origin: &HeaderValue) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = vec![(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone())];
        if self.allow_credentials {
            out.push((
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ));
        }
        let optional = [
            (
                http::header::ACCESS_CONTROL_ALLOW_METHODS,
                &self.allow_methods,
            ),
            (
                http::header::ACCESS_CONTROL_ALLOW_HEADERS,
                &self.allow_headers,
            ),
            (http::header::ACCESS_CONTROL_MAX_AGE, &self.max_age),
        ];
        for (name, value) in optional {
            if let Some(v) = value {
                out.push((name, v.clone()));
            }
        }
        out
    }

    fn response_headers(&self, origin: &HeaderValue) -> HeaderModifier {
        let mut set = vec![(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone())];
        if self.allow_credentials {
            set.push((
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ));
        }
        if let Some(v) = &self.expose_headers {
            set.push((http::header::ACCESS_CONTROL_EXPOSE_HEADERS, v.clone()));
        }
        HeaderModifier {
            set,
            ..HeaderModifier::default()
        }
    }
}

/// A list header value (`GET,POST`), or `None` for an empty list; an invalid
/// value is named in the error.
pub(crate) fn list_value(items: &[String]) -> Result<Option<HeaderValue>, String> {
    if items.is_empty() {
        return Ok(None);
    }
    let joined = items.join(",");
    HeaderValue::from_str(&joined)
        .map(Some)
        .map_err(|_| format!("{joined:?} is not a valid header value"))
}

#[cfg(test)]
mod tests;
