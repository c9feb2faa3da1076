//! The `CUSTOM` action's providers: MeshConfig `envoyExtAuthzHttp`, compiled
//! into what a check needs (where the service is, which headers go to it,
//! which of its answer's headers go on), and how a check's answer reads.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::matcher::StrMatch;
use crate::config::{ExtAuthzGrpc, ExtAuthzHttp};

/// Istio's default check timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// How a provider is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `envoyExtAuthzHttp`: an HTTP/1.1 request mirroring the client's.
    Http,
    /// `envoyExtAuthzGrpc`: `envoy.service.auth.v3.Authorization/Check`.
    Grpc,
}

/// One compiled `envoyExtAuthzHttp` or `envoyExtAuthzGrpc` provider.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtAuthzProvider {
    pub name: String,
    pub protocol: Protocol,
    /// `host:port` of the authorization service, resolved like any destination.
    pub authority: String,
    pub timeout: Duration,
    pub path_prefix: String,
    pub fail_open: bool,
    pub status_on_error: u16,
    include_headers: Vec<StrMatch>,
    additional_headers: Vec<(HeaderName, HeaderValue)>,
    to_upstream_on_allow: Vec<StrMatch>,
    to_downstream_on_deny: Vec<StrMatch>,
}

impl ExtAuthzProvider {
    pub fn compile(name: &str, http: &ExtAuthzHttp) -> Result<Self, String> {
        if http.include_request_body_in_check.is_some() {
            return Err("includeRequestBodyInCheck is not supported".to_string());
        }
        if http.include_headers_in_check.is_some() {
            return Err(
                "includeHeadersInCheck is deprecated: use includeRequestHeadersInCheck".to_string(),
            );
        }
        if http.service.is_empty() || http.port == 0 {
            return Err("service and port are required".to_string());
        }
        // `[<namespace>/]<hostname>`: the hostname is what resolves.
        let host = http.service.rsplit('/').next().unwrap_or(&http.service);
        let timeout = match &http.timeout {
            Some(t) => {
                parse_duration(t).ok_or_else(|| format!("timeout {t:?} is not a duration"))?
            }
            None => DEFAULT_TIMEOUT,
        };
        let status_on_error = match &http.status_on_error {
            Some(s) => s
                .parse::<u16>()
                .ok()
                .filter(|c| (200..=599).contains(c))
                .ok_or_else(|| format!("statusOnError {s:?} is not an HTTP status"))?,
            None => 403,
        };
        let matchers = |field: &str, values: &[String]| {
            values
                .iter()
                .map(|v| {
                    StrMatch::parse(&v.to_ascii_lowercase()).map_err(|e| format!("{field}: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let additional_headers = http
            .include_additional_headers_in_check
            .iter()
            .map(|(k, v)| {
                let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                    format!("includeAdditionalHeadersInCheck: {k:?} is not a header name")
                })?;
                let value = HeaderValue::from_str(v)
                    .map_err(|_| format!("includeAdditionalHeadersInCheck: bad value for {k}"))?;
                Ok((name, value))
            })
            .collect::<Result<_, String>>()?;
        Ok(ExtAuthzProvider {
            name: name.to_string(),
            protocol: Protocol::Http,
            authority: format!("{host}:{}", http.port),
            timeout,
            path_prefix: http.path_prefix.clone().unwrap_or_default(),
            fail_open: http.fail_open,
            status_on_error,
            include_headers: matchers(
                "includeRequestHeadersInCheck",
                &http.include_request_headers_in_check,
            )?,
            additional_headers,
            to_upstream_on_allow: matchers(
                "headersToUpstreamOnAllow",
                &http.headers_to_upstream_on_allow,
            )?,
            to_downstream_on_deny: matchers(
                "headersToDownstreamOnDeny",
                &http.headers_to_downstream_on_deny,
            )?,
        })
    }

    /// A gRPC provider: only where it is and how long to wait are configurable.
    pub fn compile_grpc(name: &str, grpc: &ExtAuthzGrpc) -> Result<Self, String> {
        if grpc.include_request_body_in_check.is_some() {
            return Err("includeRequestBodyInCheck is not supported".to_string());
        }
        let http = ExtAuthzHttp {
            service: grpc.service.clone(),
            port: grpc.port,
            timeout: grpc.timeout.clone(),
            fail_open: grpc.fail_open,
            status_on_error: grpc.status_on_error.clone(),
            ..ExtAuthzHttp::default()
        };
        Ok(ExtAuthzProvider {
            protocol: Protocol::Grpc,
            ..Self::compile(name, &http)?
        })
    }

    /// The check request's headers: `Host`, the client's headers the
    /// provider includes, and its additional ones.
    pub fn check_headers(&self, host: &str, request: &HeaderMap) -> HeaderMap {
        let mut out = HeaderMap::new();
        if let Ok(h) = HeaderValue::from_str(host) {
            out.insert(http::header::HOST, h);
        }
        for (name, value) in request {
            if name != http::header::HOST
                && self
                    .include_headers
                    .iter()
                    .any(|m| m.matches(name.as_str()))
            {
                out.append(name.clone(), value.clone());
            }
        }
        for (name, value) in &self.additional_headers {
            out.insert(name.clone(), value.clone());
        }
        out
    }

    /// Headers of an OK answer to set on the upstream request.
    pub fn upstream_on_allow<'a>(
        &'a self,
        answer: &'a HeaderMap,
    ) -> impl Iterator<Item = (&'a HeaderName, &'a HeaderValue)> + 'a {
        pick(&self.to_upstream_on_allow, answer)
    }

    /// Headers of a denial to pass to the client.
    pub fn downstream_on_deny<'a>(
        &'a self,
        answer: &'a HeaderMap,
    ) -> impl Iterator<Item = (&'a HeaderName, &'a HeaderValue)> + 'a {
        pick(&self.to_downstream_on_deny, answer)
    }
}

fn pick<'a>(
    matchers: &'a [StrMatch],
    headers: &'a HeaderMap,
) -> impl Iterator<Item = (&'a HeaderName, &'a HeaderValue)> + 'a {
    headers
        .iter()
        .filter(move |(name, _)| matchers.iter().any(|m| m.matches(name.as_str())))
}

/// `10s`, `500ms`, and protobuf's fractional seconds (`0.5s`).
fn parse_duration(s: &str) -> Option<Duration> {
    humantime::parse_duration(s).ok().or_else(|| {
        let secs: f64 = s.strip_suffix('s')?.parse().ok()?;
        (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_istios_provider_fields() {
        let http: ExtAuthzHttp = serde_yaml::from_str(
            "{service: foo/ext-authz.foo.svc.cluster.local, port: 8000, timeout: 0.5s, statusOnError: '503', includeRequestHeadersInCheck: [x-ext-authz, 'x-user-*'], headersToUpstreamOnAllow: [x-ext-authz-check-result], headersToDownstreamOnDeny: [x-ext-authz-check-result], includeAdditionalHeadersInCheck: {x-from: waypoint}}",
        )
        .unwrap();
        let p = ExtAuthzProvider::compile("ext", &http).unwrap();
        assert_eq!(p.authority, "ext-authz.foo.svc.cluster.local:8000");
        assert_eq!(p.timeout, Duration::from_millis(500));
        assert_eq!(p.status_on_error, 503);
        let mut req = HeaderMap::new();
        req.insert("x-ext-authz", "allow".parse().unwrap());
        req.insert("x-user-id", "7".parse().unwrap());
        req.insert("cookie", "secret".parse().unwrap());
        let sent = p.check_headers("productpage:9080", &req);
        assert_eq!(sent["host"], "productpage:9080");
        assert_eq!(sent["x-ext-authz"], "allow");
        assert_eq!(sent["x-user-id"], "7");
        assert_eq!(sent["x-from"], "waypoint");
        assert!(sent.get("cookie").is_none());

        let body: ExtAuthzHttp = serde_yaml::from_str(
            "{service: a, port: 1, includeRequestBodyInCheck: {maxRequestBytes: 10}}",
        )
        .unwrap();
        assert!(ExtAuthzProvider::compile("b", &body)
            .unwrap_err()
            .contains("includeRequestBodyInCheck"));
    }
}
