//! Every error a client can see, mapped in one place to its status, Envoy
//! response flag and body, following Envoy's conventions (404 NR, 500 for an
//! invalid backend, 503 UH/UF, 504 UT, 431 for oversized headers).

use pingora_error::{Error, ErrorType};

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
    #[error("fault filter abort")]
    FaultAbort(Abort),
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
            Failure::Overflow => 503,
            Failure::FaultAbort(Abort::Http(code)) => *code,
            // gRPC aborts are HTTP 200 with a grpc-status (trailers-only).
            Failure::FaultAbort(Abort::Grpc(_)) => 200,
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
            Failure::FaultAbort(_) => ResponseFlags::FI,
            Failure::InvalidBackend(_) | Failure::Internal => ResponseFlags::NONE,
        }
    }

    /// Body text, worded as Envoy words it where users grep for it.
    pub fn body(&self) -> String {
        match self {
            Failure::NoHealthyUpstream => "no healthy upstream".to_string(),
            Failure::ConnectFailure => {
                "upstream connect error or disconnect/reset before headers. reset reason: connection failure".to_string()
            }
            Failure::UpstreamReset => {
                "upstream connect error or disconnect/reset before headers. reset reason: connection termination".to_string()
            }
            Failure::UpstreamTimeout => "upstream request timeout".to_string(),
            other => other.to_string(),
        }
    }

    /// `Content-Type` of the local response.
    pub fn content_type(&self) -> &'static str {
        match self {
            Failure::FaultAbort(Abort::Grpc(_)) => "application/grpc",
            _ => "text/plain",
        }
    }

    /// Headers Envoy adds to this answer: `x-envoy-overloaded` on overflow,
    /// `grpc-status` on a gRPC abort.
    pub fn extra_headers(&self) -> Vec<(&'static str, String)> {
        match self {
            Failure::Overflow => vec![("x-envoy-overloaded", "true".to_string())],
            Failure::FaultAbort(Abort::Grpc(code)) => vec![("grpc-status", code.to_string())],
            _ => Vec::new(),
        }
    }

    /// Classifies an error Pingora reports while proxying. `None` means the
    /// downstream went away and there is nobody to answer.
    pub fn from_proxy_error(e: &Error) -> Option<Failure> {
        use ErrorType::*;
        Some(match e.etype() {
            ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError
            | ConnectProxyFailure | TLSHandshakeFailure | TLSHandshakeTimedout | SocketError
            | BindError => Failure::ConnectFailure,
            ReadTimedout | WriteTimedout => Failure::UpstreamTimeout,
            HTTPStatus(503) => Failure::NoHealthyUpstream,
            HTTPStatus(504) => Failure::UpstreamTimeout,
            InvalidHTTPHeader | H1Error | InvalidH2 | H2Error
                if e.esource() == &pingora_error::ErrorSource::Downstream =>
            {
                Failure::BadRequest
            }
            ConnectionClosed | ReadError | WriteError | H2Error | InvalidH2 | InvalidHTTPHeader
            | H1Error => {
                if e.esource() == &pingora_error::ErrorSource::Downstream {
                    return None;
                }
                Failure::UpstreamReset
            }
            _ => Failure::Internal,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_error::ErrorSource;

    #[test]
    fn each_failure_maps_to_envoys_status_and_flag() {
        let rows: &[(Failure, u16, &str)] = &[
            (Failure::UnknownDestination("x".into()), 404, "NR"),
            (Failure::NoRoute, 404, "NR"),
            (Failure::InvalidBackend("missing".into()), 500, "-"),
            (Failure::NoHealthyUpstream, 503, "UH"),
            (Failure::ConnectFailure, 503, "UF"),
            (Failure::UpstreamTimeout, 504, "UT"),
            (Failure::UpstreamReset, 503, "UC"),
            (Failure::HeadersTooLarge, 431, "DPE"),
            (Failure::BadRequest, 400, "DPE"),
            (Failure::Internal, 500, "-"),
            (Failure::Overflow, 503, "UO"),
            (Failure::FaultAbort(Abort::Http(418)), 418, "FI"),
            (Failure::FaultAbort(Abort::Grpc(14)), 200, "FI"),
        ];
        for (f, status, flag) in rows {
            assert_eq!(f.status(), *status, "{f:?}");
            assert_eq!(f.flags().to_string(), *flag, "{f:?}");
        }
    }

    #[test]
    fn pingora_errors_are_classified() {
        let e = Error::new(ErrorType::ConnectRefused);
        assert_eq!(Failure::from_proxy_error(&e), Some(Failure::ConnectFailure));
        let mut e = Error::new(ErrorType::ReadTimedout);
        e.esource = ErrorSource::Upstream;
        assert_eq!(
            Failure::from_proxy_error(&e),
            Some(Failure::UpstreamTimeout)
        );
        let mut e = Error::new(ErrorType::ConnectionClosed);
        e.esource = ErrorSource::Downstream;
        assert_eq!(Failure::from_proxy_error(&e), None);
        let mut e = Error::new(ErrorType::ConnectionClosed);
        e.esource = ErrorSource::Upstream;
        assert_eq!(Failure::from_proxy_error(&e), Some(Failure::UpstreamReset));
        let mut e = Error::new(ErrorType::InvalidHTTPHeader);
        e.esource = ErrorSource::Downstream;
        assert_eq!(Failure::from_proxy_error(&e), Some(Failure::BadRequest));
    }
}
