//! What a plugin sees of the request it runs for ([`RequestProps`], read by
//! `proxy_get_property`) and the answer it can give instead of the upstream's
//! ([`LocalResponse`], from `proxy_send_local_response` or a fail-closed plugin).
//!
//! Plain data below `host` and `filter`: the store's per-request state carries these,
//! and the per-request driver hands them to the proxy.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};

use super::abi::HeaderList;
use crate::config::NamespacedName;

/// What the proxy knows about a request when its chain starts; read by
/// `proxy_get_property`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestProps {
    /// `x-request-id`.
    pub request_id: String,
    pub method: String,
    /// `http` or `https`.
    pub scheme: String,
    /// Host (and port) the client asked for.
    pub authority: String,
    /// Path and query.
    pub path: String,
    /// `HTTP/1.1`, `HTTP/2`.
    pub protocol: String,
    /// The client's address.
    pub source: Option<SocketAddr>,
    /// The caller's SPIFFE id (`spiffe://td/ns/NS/sa/SA`) when it came over mTLS.
    pub source_principal: Option<String>,
    /// The original destination (Service VIP or pod) and port.
    pub destination: Option<SocketAddr>,
    pub destination_service: Option<NamespacedName>,
}

/// A response a plugin produced instead of the upstream's.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalResponse {
    pub status: u16,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    /// The plugin's "details" string (Envoy's response code details).
    pub details: String,
}

impl LocalResponse {
    pub(crate) fn from_guest(
        status: u16,
        headers: HeaderList,
        body: Bytes,
        details: String,
    ) -> Self {
        let headers = headers
            .into_iter()
            .filter_map(|(k, v)| {
                Some((
                    HeaderName::from_bytes(k.as_bytes()).ok()?,
                    HeaderValue::from_bytes(&v).ok()?,
                ))
            })
            .collect();
        Self {
            status,
            headers,
            body,
            details,
        }
    }

    /// FAIL_CLOSE's answer: Istio returns 500 when a fail-closed plugin
    /// cannot run.
    pub(crate) fn plugin_failed(plugin: &str) -> Self {
        Self {
            status: 500,
            headers: vec![(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain"),
            )],
            body: Bytes::from(format!("wasm plugin {plugin} failed\n")),
            details: "wasm_fail_close".into(),
        }
    }
}
