//! Validation errors found while compiling HTTPRoutes, and the sink that turns
//! them into located [`ConfigError`]s (file, document, object, field path).
//! Dangling references (a parent or backend Service that does not exist) are
//! not errors: Gateway API reports those in route status and answers 500.

use crate::config::{ConfigError, ConfigErrors, Location, ObjectRef, Origin};

/// Why a field of an HTTPRoute is rejected.
#[derive(Debug, thiserror::Error)]
pub enum RouteConfigError {
    #[error("invalid regular expression {pattern:?}: {source}")]
    InvalidRegex {
        pattern: String,
        #[source]
        source: Box<regex::Error>,
    },
    #[error("path {value:?} must start with '/'")]
    PathNotAbsolute { value: String },
    #[error("unsupported {what} type {value:?} (supported: {supported})")]
    UnknownType {
        what: &'static str,
        value: String,
        supported: &'static str,
    },
    #[error("unsupported filter {0} (ExtensionRef is not implemented)")]
    UnsupportedFilter(String),
    #[error("CORS applies to a whole rule: not allowed in backendRefs filters")]
    CorsInBackendFilter,
    #[error("{0}")]
    InvalidCors(String),
    #[error("filter {filter} appears more than once in one rule")]
    DuplicateFilter { filter: String },
    #[error("filter type {filter} requires field {field}")]
    MissingFilterConfig { filter: String, field: &'static str },
    #[error("RequestRedirect is not allowed in backendRefs filters")]
    RedirectInBackendFilter,
    #[error("RequestRedirect and URLRewrite cannot be used in the same rule")]
    RedirectWithRewrite,
    #[error("RequestRedirect cannot be used together with backendRefs")]
    RedirectWithBackends,
    #[error("weight {0} out of range 0..=1000000")]
    InvalidWeight(i64),
    #[error("redirect statusCode {0} not one of 301, 302, 303, 307, 308")]
    InvalidStatusCode(u16),
    #[error("redirect scheme {0:?} must be http or https")]
    InvalidScheme(String),
    #[error("path modifier of type {type_} requires {required} and must not set {forbidden}")]
    PathModifierMismatch {
        type_: String,
        required: &'static str,
        forbidden: &'static str,
    },
    #[error("ReplacePrefixMatch requires every match of the rule to be a PathPrefix match (found {found})")]
    PrefixRewriteWithoutPrefixMatch { found: &'static str },
    #[error("mirror percent {0} out of range 0..=100")]
    InvalidPercent(i64),
    #[error("mirror fraction {numerator}/{denominator} invalid: need denominator > 0 and 0 <= numerator <= denominator")]
    InvalidFraction { numerator: i64, denominator: i64 },
    #[error("mirror sets both percent and fraction")]
    PercentAndFraction,
    #[error("invalid duration {value:?}: {reason} (Gateway API format, e.g. 10s, 500ms, 1h30m)")]
    InvalidDuration { value: String, reason: &'static str },
    #[error("backendRequest timeout {backend} exceeds request timeout {request}")]
    BackendTimeoutExceedsRequest { backend: String, request: String },
    #[error("port is required for a {kind} backend")]
    MissingBackendPort { kind: String },
    #[error("invalid header name {0:?}")]
    InvalidHeaderName(String),
    #[error("invalid header value {0:?}")]
    InvalidHeaderValue(String),
    #[error("header {0:?} listed more than once")]
    DuplicateHeader(String),
    #[error("invalid method {0:?}")]
    InvalidMethod(String),
    #[error("retry code {0} out of range 400..=599")]
    InvalidRetryCode(u16),
    #[error("retry attempts {0} must not be negative")]
    InvalidAttempts(i64),
    #[error("a TCPRoute needs exactly one rule, found {0} (Gateway API: minItems 1, maxItems 1; a connection has nothing a second rule could match on)")]
    TcpRouteRuleCount(usize),
    #[error("{0} backendRefs, at most 16 allowed")]
    TooManyBackends(usize),
    #[error("filter {0} is not a GRPCRoute filter (supported: RequestHeaderModifier, ResponseHeaderModifier, RequestMirror)")]
    NotAGrpcRouteFilter(String),
    #[error("an Exact gRPC method match needs service or method")]
    EmptyGrpcMethodMatch,
    #[error("invalid gRPC {what} name {value:?}")]
    InvalidGrpcName { what: &'static str, value: String },
    #[error("{0} is not supported")]
    UnsupportedField(&'static str),
}

/// Collects errors for one object, filling in its location.
pub(crate) struct ErrorSink<'a> {
    origin: &'a Origin,
    object: ObjectRef,
    errors: &'a mut ConfigErrors,
}

impl<'a> ErrorSink<'a> {
    pub(crate) fn new(origin: &'a Origin, object: ObjectRef, errors: &'a mut ConfigErrors) -> Self {
        Self {
            origin,
            object,
            errors,
        }
    }

    /// Records `err` at the dotted `field` path of this object.
    pub(crate) fn push(&mut self, field: impl Into<String>, err: RouteConfigError) {
        self.push_err(field, err);
    }

    /// Records any error (another module's enum) at `field`.
    pub(crate) fn push_err(&mut self, field: impl Into<String>, err: impl std::fmt::Display) {
        self.errors.push(ConfigError::new(
            Location {
                file: Some(self.origin.file.to_string()),
                document: Some(self.origin.document),
                object: Some(self.object.clone()),
                field: Some(field.into()),
            },
            err.to_string(),
        ));
    }
}
