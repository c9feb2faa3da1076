//! The HTTPRoute `CORS` filter (`HTTPCORSFilter`) → [`CorsPolicy`], as Istio
//! translates it for Envoy: an origin without `*` matches exactly, `*` alone
//! matches any origin, and a `*` inside an origin matches any characters
//! there; `maxAge` defaults to 5 seconds (the API's default); the lists are
//! sent as written.

use std::sync::Arc;

use http::HeaderValue;

use crate::config::HttpCorsFilter;
use crate::routing::error::{ErrorSink, RouteConfigError};
use crate::routing::table::cors::{list_value, CorsPolicy, OriginMatch};
use crate::routing::table::matcher::Pattern;

/// The API's default `maxAge`, in seconds.
const DEFAULT_MAX_AGE: i64 = 5;

/// Compiles `c` found at `field` (`spec.rules[0].filters[1].cors`); `None`
/// after reporting an invalid value.
pub(super) fn compile_cors(
    c: &HttpCorsFilter,
    field: &str,
    sink: &mut ErrorSink<'_>,
) -> Option<Arc<CorsPolicy>> {
    let mut ok = true;
    let mut allow_origins = Vec::new();
    for (i, origin) in c.allow_origins.iter().enumerate() {
        match origin_match(origin) {
            Ok(m) => allow_origins.push(m),
            Err(e) => {
                sink.push(format!("{field}.allowOrigins[{i}]"), e);
                ok = false;
            }
        }
    }
    let mut list = |items: &[String], name: &str, sink: &mut ErrorSink<'_>| {
        list_value(items).unwrap_or_else(|e| {
            sink.push(format!("{field}.{name}"), RouteConfigError::InvalidCors(e));
            ok = false;
            None
        })
    };
    let allow_methods = list(&c.allow_methods, "allowMethods", sink);
    let allow_headers = list(&c.allow_headers, "allowHeaders", sink);
    let expose_headers = list(&c.expose_headers, "exposeHeaders", sink);
    let max_age = match c.max_age.unwrap_or(DEFAULT_MAX_AGE) {
        n if n < 1 => {
            sink.push(
                format!("{field}.maxAge"),
                RouteConfigError::InvalidCors(format!("maxAge {n} must be at least 1")),
            );
            ok = false;
            None
        }
        n => Some(HeaderValue::from(n)),
    };
    ok.then(|| {
        Arc::new(CorsPolicy {
            allow_origins,
            allow_methods,
            allow_headers,
            expose_headers,
            max_age,
            allow_credentials: c.allow_credentials.unwrap_or(false),
            // Gateway API gives no choice: Envoy's default.
            forward_unmatched_preflights: true,
        })
    })
}

/// One `allowOrigins` entry.
fn origin_match(origin: &str) -> Result<OriginMatch, RouteConfigError> {
    if origin.is_empty() {
        return Err(RouteConfigError::InvalidCors(
            "an origin must not be empty".to_string(),
        ));
    }
    if !origin.contains('*') {
        return Ok(OriginMatch::Exact(origin.to_string()));
    }
    let pattern = regex::escape(origin).replace(r"\*", ".*");
    Pattern::new(&pattern).map(OriginMatch::Regex)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::test_support::{compile_errors, reviews, route_yaml, snapshot, Req};
    use crate::routing::RouteDecision;

    #[test]
    fn invalid_cors_filters_are_rejected_at_their_field() {
        let rules = r#"
  - filters:
    - type: CORS
      cors: {allowOrigins: [""], maxAge: 0, allowHeaders: ["bad\nvalue"]}
    backendRefs:
    - name: reviews-v1
      port: 9080
      filters: [{type: CORS, cors: {allowOrigins: ["*"]}}]"#;
        let errors = compile_errors(&route_yaml("bad", None, rules));
        let mut got: Vec<String> = errors
            .0
            .iter()
            .map(|e| e.location.field.clone().unwrap_or_default())
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                "spec.rules[0].backendRefs[0].filters[0].type",
                "spec.rules[0].filters[0].cors.allowHeaders",
                "spec.rules[0].filters[0].cors.allowOrigins[0]",
                "spec.rules[0].filters[0].cors.maxAge",
            ],
            "{errors:?}"
        );
    }

    #[test]
    fn a_cors_route_answers_preflights_with_the_default_max_age() {
        let rules = r#"
  - filters: [{type: CORS, cors: {allowOrigins: ["*"], allowMethods: ["*"]}}]
    backendRefs: [{name: reviews-v1, port: 9080}]"#;
        let snap = snapshot(&route_yaml("cors", None, rules));
        let req = Req::get("/")
            .method("OPTIONS")
            .header("origin", "http://any.test")
            .header("access-control-request-method", "DELETE");
        let RouteDecision::Respond { reply, .. } = snap.route(&reviews(&snap), &req.info(), None)
        else {
            panic!("a preflight from an allowed origin is answered");
        };
        let header = |n: &str| {
            reply
                .headers
                .iter()
                .find(|(k, _)| k.as_str() == n)
                .map(|(_, v)| v.to_str().unwrap().to_string())
        };
        assert_eq!(
            header("access-control-allow-origin").as_deref(),
            Some("http://any.test")
        );
        assert_eq!(header("access-control-allow-methods").as_deref(), Some("*"));
        assert_eq!(header("access-control-max-age").as_deref(), Some("5"));
        assert_eq!(header("access-control-allow-credentials"), None);
    }

    #[test]
    fn origins_with_wildcards_become_full_matches() {
        let any = origin_match("*").unwrap();
        let sub = origin_match("https://*.example.com").unwrap();
        let exact = origin_match("https://example.com").unwrap();
        let is = |m: &OriginMatch, o: &str| match m {
            OriginMatch::Exact(v) => v == o,
            OriginMatch::Regex(p) => p.is_match(o),
            OriginMatch::Prefix(p) => o.starts_with(p.as_str()),
        };
        assert!(is(&any, "http://anything:8080"));
        assert!(is(&sub, "https://a.example.com"));
        assert!(!is(&sub, "https://example.com"), "the dot is literal");
        assert!(
            !is(&sub, "http://a.example.com"),
            "the scheme is part of the origin"
        );
        assert!(is(&exact, "https://example.com"));
        assert!(!is(&exact, "https://example.com.evil"));
    }
}
