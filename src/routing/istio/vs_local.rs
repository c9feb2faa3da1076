//! VirtualService `directResponse` and `corsPolicy` → their compiled forms
//! (`table::filters::DirectResponseFilter`, `table::cors::CorsPolicy`), which
//! the route decision turns into a local answer or response headers.

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::HeaderValue;

use super::duration::parse_istio_duration;
use super::error::IstioConfigError;
use crate::config::{CorsPolicy as VsCorsPolicy, HttpDirectResponse};
use crate::routing::error::ErrorSink;
use crate::routing::table::cors::{list_value, CorsPolicy, OriginMatch};
use crate::routing::table::filters::DirectResponseFilter;
use crate::routing::table::matcher::Pattern;

#[cfg(test)]
mod tests;

/// `directResponse`: `status` is required (200–599); `body.string` is sent
/// as written, `body.bytes` decoded from base64.
pub(super) fn compile_direct_response(
    d: &HttpDirectResponse,
    field: &str,
    sink: &mut ErrorSink<'_>,
) -> Option<DirectResponseFilter> {
    let field = format!("{field}.directResponse");
    let status = match d.status {
        None => {
            sink.push_err(
                format!("{field}.status"),
                IstioConfigError::Missing { what: "status" },
            );
            return None;
        }
        Some(s) if !(200..=599).contains(&s) => {
            sink.push_err(
                format!("{field}.status"),
                IstioConfigError::InvalidDirectStatus(s),
            );
            return None;
        }
        Some(s) => u16::try_from(s).ok()?,
    };
    let body = match d.body.as_ref().map(|b| (&b.string, &b.bytes)) {
        None | Some((None, None)) => Bytes::new(),
        Some((Some(text), None)) => Bytes::from(text.clone()),
        Some((None, Some(encoded))) => {
            match base64::engine::general_purpose::STANDARD.decode(encoded.trim()) {
                Ok(raw) => Bytes::from(raw),
                Err(e) => {
                    sink.push_err(
                        format!("{field}.body.bytes"),
                        IstioConfigError::InvalidBase64(e.to_string()),
                    );
                    return None;
                }
            }
        }
        Some((Some(_), Some(_))) => {
            sink.push_err(
                format!("{field}.body"),
                IstioConfigError::BodyStringAndBytes,
            );
            return None;
        }
    };
    Some(DirectResponseFilter { status, body })
}

/// `corsPolicy`, as Istio translates it to Envoy's CORS policy.
pub(super) fn compile_cors_policy(
    c: &VsCorsPolicy,
    field: &str,
    sink: &mut ErrorSink<'_>,
) -> Option<Arc<CorsPolicy>> {
    let field = format!("{field}.corsPolicy");
    let mut ok = true;
    // The deprecated `allowOrigin` entries are exact matches.
    let mut allow_origins: Vec<OriginMatch> = c
        .allow_origin
        .iter()
        .map(|o| OriginMatch::Exact(o.clone()))
        .collect();
    for (i, m) in c.allow_origins.iter().enumerate() {
        let at = format!("{field}.allowOrigins[{i}]");
        match (&m.exact, &m.prefix, &m.regex) {
            (Some(v), None, None) => allow_origins.push(OriginMatch::Exact(v.clone())),
            (None, Some(v), None) => allow_origins.push(OriginMatch::Prefix(v.clone())),
            (None, None, Some(v)) => match Pattern::new(v) {
                Ok(p) => allow_origins.push(OriginMatch::Regex(p)),
                Err(e) => {
                    sink.push_err(format!("{at}.regex"), e);
                    ok = false;
                }
            },
            _ => {
                sink.push_err(at, IstioConfigError::AmbiguousStringMatch);
                ok = false;
            }
        }
    }
    let mut list = |items: &[String], name: &str, sink: &mut ErrorSink<'_>| {
        list_value(items).unwrap_or_else(|e| {
            sink.push_err(
                format!("{field}.{name}"),
                IstioConfigError::InvalidHeaderList(e),
            );
            ok = false;
            None
        })
    };
    let allow_methods = list(&c.allow_methods, "allowMethods", sink);
    let allow_headers = list(&c.allow_headers, "allowHeaders", sink);
    let expose_headers = list(&c.expose_headers, "exposeHeaders", sink);
    let max_age = match c.max_age.as_deref().map(parse_istio_duration) {
        None => None,
        Some(Ok(d)) => Some(HeaderValue::from(d.as_secs())),
        Some(Err(e)) => {
            sink.push_err(format!("{field}.maxAge"), e);
            ok = false;
            None
        }
    };
    let forward_unmatched_preflights = match c.unmatched_preflights.as_deref() {
        None | Some("UNSPECIFIED") | Some("FORWARD") => true,
        Some("IGNORE") => false,
        Some(other) => {
            sink.push_err(
                format!("{field}.unmatchedPreflights"),
                IstioConfigError::InvalidUnmatchedPreflights(other.to_string()),
            );
            ok = false;
            true
        }
    };
    ok.then(|| {
        Arc::new(CorsPolicy {
            allow_origins,
            allow_methods,
            allow_headers,
            expose_headers,
            max_age,
            allow_credentials: c.allow_credentials.unwrap_or(false),
            forward_unmatched_preflights,
        })
    })
}
