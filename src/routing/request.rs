//! The request as routing sees it: method, path, headers, scheme, host and
//! Service port, borrowed from whatever the proxy holds. Matchers, filters
//! and the decision read only this, so they are tested without Pingora.

/// What routing needs to know about a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// `/path?query` as received.
    pub path_and_query: &'a str,
    pub headers: &'a http::HeaderMap,
    /// `http` (mesh traffic inside HBONE is plaintext HTTP).
    pub scheme: &'a str,
    /// Host header (or authority) without the port.
    pub host: &'a str,
    /// Destination port (the Service port).
    pub port: u16,
}
