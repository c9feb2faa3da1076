//! Why a VirtualService or DestinationRule field is rejected. Located by
//! the caller through [`crate::routing::error::ErrorSink`].

/// A VirtualService / DestinationRule validation error.
#[derive(Debug, thiserror::Error)]
pub enum IstioConfigError {
    #[error("{what} is not supported by the waypoint")]
    Unsupported { what: &'static str },
    #[error("{what} is required")]
    Missing { what: &'static str },
    #[error("invalid duration {value:?}: {reason} (e.g. 1.5s, 100ms, 2m, 1h30m)")]
    InvalidDuration { value: String, reason: &'static str },
    #[error("duration {value:?} must be at least 1ms")]
    DurationTooShort { value: String },
    #[error("weight {0} out of range 0..=100")]
    InvalidWeight(i64),
    #[error("destination weights sum to {0}, must sum to 100")]
    WeightSum(i64),
    #[error("percentage {0} out of range 0..=100")]
    InvalidPercentage(f64),
    #[error("{0}")]
    InvalidRetryOn(String),
    #[error("retry attempts {0} must not be negative")]
    NegativeAttempts(i64),
    #[error("abort httpStatus {0} out of range 200..=599")]
    InvalidHttpStatus(i64),
    #[error(
        "unknown grpcStatus {0:?} (a gRPC code name such as UNAVAILABLE, or its number 0..=16)"
    )]
    InvalidGrpcStatus(String),
    #[error("fault abort needs httpStatus or grpcStatus (http2Error is not supported)")]
    AbortWithoutStatus,
    #[error("string match must set exactly one of exact, prefix, regex")]
    AmbiguousStringMatch,
    #[error("uri match must start with '/'")]
    UriNotAbsolute,
    #[error("redirect code {0} is not one of 301, 302, 303, 307, 308")]
    InvalidRedirectCode(u16),
    #[error("unknown derivePort {0:?} (FROM_PROTOCOL_DEFAULT or FROM_REQUEST_PORT)")]
    InvalidDerivePort(String),
    #[error("redirect sets both port and derivePort")]
    PortAndDerivePort,
    #[error("rewrite sets both uri and uriRegexRewrite")]
    UriAndRegexRewrite,
    #[error("http route needs route, redirect or directResponse")]
    NoAction,
    #[error("http route sets more than one of route, redirect and directResponse")]
    RouteAndRedirect,
    #[error("subset {subset:?} is not defined by a DestinationRule for host {host}")]
    UnknownSubset { subset: String, host: String },
    #[error("subset {0:?} is defined more than once")]
    DuplicateSubset(String),
    #[error("subset {name:?} selects none of the {endpoints} endpoints of {host}")]
    EmptySubset {
        name: String,
        host: String,
        endpoints: usize,
    },
    #[error(
        "unknown load balancer {0:?} (ROUND_ROBIN, LEAST_REQUEST, LEAST_CONN, RANDOM, UNSPECIFIED)"
    )]
    UnknownLb(String),
    #[error("consistentHash must set exactly one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName")]
    HashKeyCount,
    #[error("loadBalancer sets both simple and consistentHash")]
    SimpleAndHash,
    #[error("{field} {value} must not be negative")]
    Negative { field: &'static str, value: i64 },
    #[error("{field} {value} out of range 0..=100")]
    PercentOutOfRange { field: &'static str, value: i64 },
    #[error("{field} {value} is too large")]
    TooLarge { field: &'static str, value: i64 },
    #[error("directResponse status {0} out of range 200..=599")]
    InvalidDirectStatus(i64),
    #[error("directResponse body sets both string and bytes")]
    BodyStringAndBytes,
    #[error("directResponse body.bytes is not base64: {0}")]
    InvalidBase64(String),
    #[error("unknown unmatchedPreflights {0:?} (UNSPECIFIED, FORWARD or IGNORE)")]
    InvalidUnmatchedPreflights(String),
    #[error("{0}")]
    InvalidHeaderList(String),
}
