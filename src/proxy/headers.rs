//! Header plumbing between Pingora's header types and routing's
//! [`HeaderEdit`], plus the forwarding headers every proxied request gets.

use crate::addr::ClientIp;
use http::{HeaderName, HeaderValue};
use pingora_http::{RequestHeader, ResponseHeader};

use crate::routing::HeaderEdit;

// Pingora keeps a case map beside the `http` header map, so edits must go
// through its own insert/remove methods rather than the inner `HeaderMap`.
macro_rules! pingora_header_edit {
    ($ty:ty) => {
        impl HeaderEdit for $ty {
            fn get_all(&self, name: &HeaderName) -> Vec<Vec<u8>> {
                self.headers
                    .get_all(name)
                    .iter()
                    .map(|v| v.as_bytes().to_vec())
                    .collect()
            }
            fn set(&mut self, name: HeaderName, value: HeaderValue) {
                // Cannot fail: name and value are already valid header types.
                let _ = self.insert_header(name, value);
            }
            fn remove(&mut self, name: &HeaderName) {
                self.remove_header(name);
            }
        }
    };
}

pingora_header_edit!(RequestHeader);
pingora_header_edit!(ResponseHeader);

macro_rules! pingora_header_access {
    ($ty:ty) => {
        impl crate::wasm::HeaderAccess for $ty {
            fn visit_headers(&self, f: &mut dyn FnMut(&str, &[u8])) {
                for (k, v) in self.headers.iter() {
                    f(k.as_str(), v.as_bytes());
                }
            }
            fn append_header(&mut self, name: HeaderName, value: HeaderValue) {
                // Cannot fail: name and value are already valid header types.
                let _ = <$ty>::append_header(self, name, value);
            }
        }
    };
}

pingora_header_access!(RequestHeader);
pingora_header_access!(ResponseHeader);

/// Adds `x-forwarded-for` (appending the client), `x-forwarded-proto` and
/// `x-request-id` when absent, as Envoy does at the edge of the mesh.
pub fn add_forwarding_headers(
    req: &mut RequestHeader,
    client_ip: Option<ClientIp>,
    request_id: &str,
) {
    if let Some(ip) = client_ip {
        let value = match req
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(existing) if !existing.is_empty() => format!("{existing}, {ip}"),
            _ => ip.to_string(),
        };
        let _ = req.insert_header("x-forwarded-for", value);
    }
    if !req.headers.contains_key("x-forwarded-proto") {
        let _ = req.insert_header("x-forwarded-proto", "http");
    }
    if !req.headers.contains_key("x-request-id") {
        let _ = req.insert_header("x-request-id", request_id);
    }
}

/// Adds Envoy's `x-forwarded-client-cert` (`By=<own>;URI=<peer>`), replacing
/// any the client sent: only the waypoint can vouch for the peer.
pub fn add_client_cert(
    req: &mut RequestHeader,
    own: &crate::identity::Identity,
    peer: &crate::identity::Identity,
) {
    let _ = req.insert_header("x-forwarded-client-cert", format!("By={own};URI={peer}"));
}

/// The request's `x-request-id`, or a fresh UUID v4 when it has none.
pub fn request_id(req: &RequestHeader) -> String {
    req.headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The Host the client asked for: `Host`, or `:authority` on HTTP/2.
pub fn host(req: &RequestHeader) -> Option<&str> {
    req.headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
}

/// A Host value split into its name and numeric port (`reviews:9080` →
/// (`reviews`, `Some("9080")`)); a value without a numeric port is all name.
pub fn split_port(host: &str) -> (&str, Option<&str>) {
    match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            (name, Some(port))
        }
        _ => (host, None),
    }
}

/// Whether the request's headers pass the limits Envoy sets by default
/// (`max_request_headers_kb`, `max_headers_count`): past either, 431.
pub fn headers_too_large(req: &RequestHeader, max_bytes: usize, max_count: usize) -> bool {
    req.headers.len() > max_count || header_block_len(req) > max_bytes
}

/// Bytes in the request's header block, as sent on HTTP/1.1.
pub fn header_block_len(req: &RequestHeader) -> usize {
    let target = req.uri.path_and_query().map_or(1, |p| p.as_str().len());
    let line = req.method.as_str().len() + target + 12;
    line + req
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarding_headers_are_added_once() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("x-forwarded-for", "10.0.0.1").unwrap();
        add_forwarding_headers(&mut req, Some(ClientIp([127, 0, 0, 9].into())), "id-1");
        assert_eq!(req.headers["x-forwarded-for"], "10.0.0.1, 127.0.0.9");
        assert_eq!(req.headers["x-forwarded-proto"], "http");
        assert_eq!(req.headers["x-request-id"], "id-1");
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("x-request-id", "keep").unwrap();
        assert_eq!(request_id(&req), "keep");
    }

    #[test]
    fn host_ports_split_only_when_numeric() {
        let rows = [
            ("reviews:9080", ("reviews", Some("9080"))),
            ("reviews", ("reviews", None)),
            ("reviews:", ("reviews:", None)),
            ("reviews:http", ("reviews:http", None)),
            ("[fd00::1]:80", ("[fd00::1]", Some("80"))),
        ];
        for (host, want) in rows {
            assert_eq!(split_port(host), want, "{host}");
        }
    }

    #[test]
    fn a_missing_request_id_becomes_a_fresh_v4_uuid() {
        let req = RequestHeader::build("GET", b"/", None).unwrap();
        let (a, b) = (request_id(&req), request_id(&req));
        let id = uuid::Uuid::parse_str(&a).expect("a UUID");
        assert_eq!(id.get_version(), Some(uuid::Version::Random));
        assert_ne!(a, b);
    }
}
