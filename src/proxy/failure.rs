//! Every error a client can see, mapped in one place to its status, Envoy
//! response flag and body, following Envoy's conventions (404 NR, 500 for an
//! invalid backend, 503 UH/UF, 504 UT, 431 for oversized headers); and the
//! one classifier of Pingora's errors ([`classify`]), which says both what
//! the client sees and how the retry policy reads the failed attempt.

use pingora_error::{Error, ErrorSource, ErrorType};

use crate::authz::JwtFailure;
use crate::policy::retry::AttemptFailure;
use crate::policy::Abort;
use crate::telemetry::ResponseFlags;

/// Why the waypoint answered a request itself instead of the backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("no Service or ServiceEntry serves host {0}")]
    UnknownDestination(String),
    #[error("no route matched")]
    NoRoute,
    #[error("invalid backend: {0}")]
    InvalidBackend(String),
    #[error("no healthy upstream")]
    NoHealthyUpstream,
    #[error("upstream connect failure")]
    ConnectFailure,
    #[error("upstream request timeout")]
    UpstreamTimeout,
    #[error("upstream reset before response")]
    UpstreamReset,
    #[error("request header fields too large")]
    HeadersTooLarge,
    #[error("bad request")]
    BadRequest,
    #[error("upstream overflow (circuit breaker)")]
    Overflow,
    /// Shed by the overload manager (in-flight requests or memory above threshold).
    #[error("envoy overloaded")]
    Overloaded,
    #[error("fault filter abort")]
    FaultAbort(Abort),
    /// An AuthorizationPolicy denied the request; `grpc` for gRPC callers,
    /// who get Envoy's trailers-only PERMISSION_DENIED.
    #[error("RBAC: access denied")]
    Denied { grpc: bool },
    /// A RequestAuthentication refused the request's JWT: 401 (gRPC:
    /// UNAUTHENTICATED) with Envoy's message.
    #[error("{reason}")]
    Unauthenticated { reason: JwtFailure, grpc: bool },
    /// The external authorization service (a CUSTOM policy's provider) said
    /// no, or could not be asked: its status, body and the headers its
    /// provider passes to the client.
    #[error("denied by the external authorization service")]
    ExternalDenied {
        status: u16,
        body: String,
        headers: Vec<(String, String)>,
    },
    #[error("internal error")]
    Internal,
}

impl Failure {
    /// HTTP status the client receives.
    pub fn status(&self) -> u16 {
        match self {
            Failure::UnknownDestination(_) | Failure::NoRoute => 404,
            Failure::InvalidBackend(_) | Failure::Internal => 500,
            Failure::NoHealthyUpstream | Failure::ConnectFailure | Failure::UpstreamReset => 503,
            Failure::UpstreamTimeout => 504,
            Failure::HeadersTooLarge => 431,
            Failure::BadRequest => 400,
            Failure::Overflow | Failure::Overloaded => 503,
            Failure::FaultAbort(Abort::Http(code)) => *code,
            // gRPC aborts are HTTP 200 with a grpc-status (trailers-only).
            Failure::FaultAbort(Abort::Grpc(_)) => 200,
            Failure::Denied { grpc: false } => 403,
            Failure::Denied { grpc: true } => 200,
            Failure::Unauthenticated { grpc: false, .. } => 401,
            Failure::Unauthenticated { grpc: true, .. } => 200,
            Failure::ExternalDenied { status, .. } => *status,
        }
    }

    /// Envoy response flag recorded in metrics and the access log.
    pub fn flags(&self) -> ResponseFlags {
        match self {
            Failure::UnknownDestination(_) | Failure::NoRoute => ResponseFlags::NR,
            Failure::NoHealthyUpstream => ResponseFlags::UH,
            Failure::ConnectFailure => ResponseFlags::UF,
            Failure::UpstreamTimeout => ResponseFlags::UT,
            Failure::UpstreamReset => ResponseFlags::UC,
            Failure::BadRequest | Failure::HeadersTooLarge => ResponseFlags::DPE,
            Failure::Overflow => ResponseFlags::UO,
            Failure::Overloaded => ResponseFlags::OM,
            Failure::FaultAbort(_) => ResponseFlags::FI,
            Failure::ExternalDenied { .. } => ResponseFlags::UAEX,
            // Envoy sets no flag for an RBAC denial; response_code_details names it.
            Failure::InvalidBackend(_)
            | Failure::Internal
            | Failure::Denied { .. }
            | Failure::Unauthenticated { .. } => ResponseFlags::NONE,
        }
    }

    /// Body text, worded as Envoy words it where users grep for it.
    pub fn body(&self) -> String {
        if self.is_grpc() {
            // Trailers-only: everything is in the headers.
            return String::new();
        }
        self.message()
    }

    /// The answer's text: the HTTP body, or a gRPC answer's `grpc-message`.
    pub fn message(&self) -> String {
        match self {
            Failure::NoHealthyUpstream => "no healthy upstream".to_string(),
            Failure::ConnectFailure => {
                "upstream connect error or disconnect/reset before headers. reset reason: connection failure".to_string()
            }
            Failure::UpstreamReset => {
                "upstream connect error or disconnect/reset before headers. reset reason: connection termination".to_string()
            }
            Failure::UpstreamTimeout => "upstream request timeout".to_string(),
            Failure::ExternalDenied { body, .. } => body.clone(),
            other => other.to_string(),
        }
    }

    /// True for the answers that are gRPC whatever the request said: a
    /// `grpcStatus` fault abort, and the denials already built for gRPC callers.
    pub fn is_grpc(&self) -> bool {
        matches!(
            self,
            Failure::FaultAbort(Abort::Grpc(_))
                | Failure::Denied { grpc: true }
                | Failure::Unauthenticated { grpc: true, .. }
        )
    }

    /// The HTTP status of this answer to a gRPC caller (`grpc`) or not:
    /// gRPC answers are trailers-only, always 200.
    pub fn status_for(&self, grpc: bool) -> u16 {
        if grpc || self.is_grpc() {
            200
        } else {
            self.status()
        }
    }

    /// The `grpc-status` a gRPC caller gets. Envoy's local replies map the
    /// HTTP status with gRPC's table ([`http_to_grpc_status`]), except where
    /// the answer names its own code: a timeout is DEADLINE_EXCEEDED (4), as
    /// Envoy's router answers gRPC requests since
    /// `grpc_timeout_returns_deadline_exceeded`, an RBAC denial
    /// PERMISSION_DENIED (7), a refused JWT UNAUTHENTICATED (16), a fault
    /// abort its `grpcStatus`.
    pub fn grpc_status(&self) -> u32 {
        match self {
            Failure::UpstreamTimeout => 4,
            Failure::FaultAbort(Abort::Grpc(code)) => *code,
            Failure::Denied { .. } => 7,
            Failure::Unauthenticated { .. } => 16,
            other => http_to_grpc_status(other.status()),
        }
    }

    /// `Content-Type` of the local response.
    pub fn content_type(&self) -> &'static str {
        if self.is_grpc() {
            "application/grpc"
        } else {
            "text/plain"
        }
    }

    /// Headers Envoy adds to this answer: `x-envoy-overloaded` on overflow and overload,
    /// `www-authenticate` on a refused JWT, the provider's on an external
    /// denial. A gRPC answer's `grpc-status`/`grpc-message` are added by the
    /// local reply ([`Self::grpc_status`], [`Self::message`]).
    pub fn extra_headers(&self) -> Vec<(String, String)> {
        let fixed = |pairs: &[(&str, String)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<Vec<_>>()
        };
        match self {
            Failure::ExternalDenied { headers, .. } => headers.clone(),
            other => fixed(&other.fixed_headers()),
        }
    }

    fn fixed_headers(&self) -> Vec<(&'static str, String)> {
        match self {
            Failure::Overflow | Failure::Overloaded => {
                vec![("x-envoy-overloaded", "true".to_string())]
            }
            Failure::Unauthenticated { grpc: false, .. } => vec![(
                "www-authenticate",
                "Bearer realm=\"waypoint\", error=\"invalid_token\"".to_string(),
            )],
            _ => Vec::new(),
        }
    }

    /// Classifies an error Pingora reports while proxying. `None` means the
    /// downstream went away and there is nobody to answer. See [`classify`].
    pub fn from_proxy_error(e: &Error) -> Option<Failure> {
        classify(e).failure
    }
}

/// gRPC's HTTP → gRPC status table (grpc/grpc `http-grpc-status-mapping.md`),
/// which Envoy's local replies to gRPC requests use: 400 INTERNAL, 401
/// UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 UNIMPLEMENTED, 429/502/503/504
/// UNAVAILABLE, anything else UNKNOWN.
pub fn http_to_grpc_status(status: u16) -> u32 {
    match status {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    }
}

/// True when `req` is a gRPC call (`content-type: application/grpc`, `+proto`, …):
/// answers the waypoint writes to it are gRPC trailers-only replies.
pub fn is_grpc_request(req: &pingora_http::RequestHeader) -> bool {
    req.headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// How one error Pingora reports reads to the waypoint: what the client is
/// told and how the route's retry policy judges the attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// The answer; `None` when the downstream went away and nobody is left
    /// to answer (the proxy flags DC).
    pub failure: Option<Failure>,
    /// The attempt failure `retryOn` is matched against.
    pub attempt: AttemptFailure,
}

/// The one mapping from a Pingora error (its [`ErrorType`] and, for
/// protocol and I/O errors, its [`ErrorSource`]) to the client's answer
/// and the retry policy's view. Pingora's own retry flag is not read: the
/// route's policy decides retries.
pub fn classify(e: &Error) -> Classified {
    use AttemptFailure as A;
    use ErrorType::*;
    let downstream = e.esource() == &ErrorSource::Downstream;
    let (failure, attempt) = match e.etype() {
        // Connecting (TCP, HBONE CONNECT, TLS) failed: 503 UF, retried on
        // `connect-failure` (Istio's default).
        ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError | ConnectProxyFailure
        | TLSHandshakeFailure | TLSHandshakeTimedout => {
            (Some(Failure::ConnectFailure), A::ConnectFailure)
        }
        // Our own socket could not be set up: answered as a connect failure,
        // but retried only as a reset (`reset`, `5xx`).
        SocketError | BindError => (Some(Failure::ConnectFailure), A::Reset),
        // The per-try (read/write) timeout fired: 504 UT.
        ReadTimedout | WriteTimedout => (Some(Failure::UpstreamTimeout), A::PerTryTimeout),
        // `upstream_peer`'s 503/504, and statuses raised to be retried.
        HTTPStatus(503) => (Some(Failure::NoHealthyUpstream), A::Status(503)),
        HTTPStatus(504) => (Some(Failure::UpstreamTimeout), A::Status(504)),
        HTTPStatus(code) => (Some(Failure::Internal), A::Status(*code)),
        // The client sent something that is not HTTP: 400 DPE.
        InvalidHTTPHeader | H1Error | InvalidH2 | H2Error if downstream => {
            (Some(Failure::BadRequest), A::Reset)
        }
        // The client went away.
        ConnectionClosed | ReadError | WriteError if downstream => (None, A::Reset),
        // The upstream closed, reset or broke HTTP before answering: 503 UC.
        ConnectionClosed | ReadError | WriteError | H2Error | InvalidH2 | InvalidHTTPHeader
        | H1Error => (Some(Failure::UpstreamReset), A::Reset),
        _ => (Some(Failure::Internal), A::Reset),
    };
    Classified { failure, attempt }
}

#[cfg(test)]
mod tests;
