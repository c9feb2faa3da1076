//! Errors of HBONE outbound (connecting to a destination ztunnel).
//!
//! Inbound failures never surface as values: they end one connection or one stream and are
//! logged where they happen.

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use thiserror::Error;

/// Why an outbound HBONE stream could not be opened.
#[derive(Debug, Error)]
pub enum HboneError {
    /// TCP connect to the ztunnel failed.
    #[error("cannot connect to ztunnel {ztunnel}: {source} (maybe a NetworkPolicy is blocking HBONE port 15008)")]
    Connect {
        /// The destination ztunnel.
        ztunnel: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// A phase of connection or stream setup took too long.
    #[error("timed out after {timeout:?} during {phase} with ztunnel {ztunnel}")]
    Timeout {
        /// The destination ztunnel.
        ztunnel: SocketAddr,
        /// `"tcp connect"`, `"tls handshake"`, `"h2 handshake"` or `"CONNECT response"`.
        phase: &'static str,
        /// The limit that was hit.
        timeout: Duration,
    },
    /// The TLS handshake failed (untrusted certificate, wrong trust domain, …).
    #[error("TLS handshake with ztunnel {ztunnel} failed ({reason}): {source}")]
    Tls {
        /// The destination ztunnel.
        ztunnel: SocketAddr,
        /// A short phrase from `identity::handshake_failure_reason`.
        reason: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The server did not select ALPN `h2`.
    #[error("ztunnel {ztunnel} did not negotiate ALPN h2")]
    NoH2 {
        /// The destination ztunnel.
        ztunnel: SocketAddr,
    },
    /// An HTTP/2 connection or stream error.
    #[error("HTTP/2 error with ztunnel {ztunnel}: {source}")]
    H2 {
        /// The destination ztunnel.
        ztunnel: SocketAddr,
        /// The h2 error.
        #[source]
        source: h2::Error,
    },
    /// The ztunnel answered the CONNECT with a status other than 200.
    #[error("ztunnel {ztunnel} answered {status} to CONNECT {target}")]
    Status {
        /// The destination ztunnel.
        ztunnel: SocketAddr,
        /// The CONNECT target.
        target: SocketAddr,
        /// The status it sent.
        status: StatusCode,
    },
    /// The CONNECT request could not be built (a header value we were given is invalid).
    #[error("invalid CONNECT request to {target}: {reason}")]
    Request {
        /// The CONNECT target.
        target: SocketAddr,
        /// What was invalid.
        reason: String,
    },
}

impl HboneError {
    /// True when the failure happened before anything reached the destination workload,
    /// so retrying on another connection or endpoint is safe.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, HboneError::Request { .. })
    }
}
