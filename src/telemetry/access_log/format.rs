//! Envoy's access-log format strings, compiled once at config load: the text form
//! (`logFormat.text`, MeshConfig `accessLogFormat`) into a list of literal pieces and
//! command operators, the JSON form (`logFormat.labels`, `accessLogEncoding: JSON`) into a
//! list of (key, pieces). Rendering walks the list; nothing is parsed per request.
//!
//! Unknown operators are refused with the operator named, so a typo never logs `-` forever.

use std::fmt::Write as _;
use std::time::SystemTime;

use http::HeaderName;

use super::Record;

/// Istio's default text format (`EnvoyTextLogFormat` in Istio's pilot): Envoy's default
/// plus the details, termination, transport-failure, raw-cluster, address, SNI and route
/// operators.
pub const ISTIO_TEXT_FORMAT: &str = concat!(
    "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" ",
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% ",
    "\"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% ",
    "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" ",
    "\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% ",
    "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% ",
    "%REQUESTED_SERVER_NAME% %ROUTE_NAME%\n"
);

/// Istio's default JSON labels (`EnvoyJSONLogFormatIstio`), in its order.
pub const ISTIO_JSON_LABELS: &[(&str, &str)] = &[
    ("start_time", "%START_TIME%"),
    ("route_name", "%ROUTE_NAME%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
    ("protocol", "%PROTOCOL%"),
    ("response_code", "%RESPONSE_CODE%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("response_code_details", "%RESPONSE_CODE_DETAILS%"),
    (
        "connection_termination_details",
        "%CONNECTION_TERMINATION_DETAILS%",
    ),
    (
        "upstream_transport_failure_reason",
        "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
    ),
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
    ("duration", "%DURATION%"),
    (
        "upstream_service_time",
        "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    ),
    ("x_forwarded_for", "%REQ(X-FORWARDED-FOR)%"),
    ("user_agent", "%REQ(USER-AGENT)%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("authority", "%REQ(:AUTHORITY)%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("upstream_cluster", "%UPSTREAM_CLUSTER_RAW%"),
    ("upstream_local_address", "%UPSTREAM_LOCAL_ADDRESS%"),
    ("downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%"),
    ("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    ("requested_server_name", "%REQUESTED_SERVER_NAME%"),
];

/// Why a format string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("unknown command operator %{0}%")]
    UnknownOperator(String),
    #[error("%{0}% is not supported by the waypoint")]
    Unsupported(String),
    #[error("unterminated command operator starting at {0:?}")]
    Unterminated(String),
    #[error("{operator}: {reason}")]
    BadArgument { operator: String, reason: String },
}

/// A request header (or pseudo-header) that `%REQ(...)%` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderRef {
    Method,
    Path,
    Authority,
    Scheme,
    Named(HeaderName),
}

/// One command operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operator {
    /// `%START_TIME%`, or with a strftime format `%START_TIME(%s)%`.
    StartTime(Option<String>),
    /// `%REQ(X?Y):Z%`: header X, else Y, cut to Z characters.
    Req(HeaderRef, Option<HeaderRef>, Option<usize>),
    /// `%RESP(X?Y):Z%`.
    Resp(HeaderName, Option<HeaderName>, Option<usize>),
    ResponseCode,
    ResponseFlags,
    ResponseCodeDetails,
    BytesReceived,
    BytesSent,
    Duration,
    Protocol,
    UpstreamHost,
    UpstreamCluster,
    UpstreamRequestAttemptCount,
    DownstreamLocalAddress,
    DownstreamRemoteAddress,
    DownstreamRemoteAddressWithoutPort,
    DownstreamPeerUriSan,
    RequestedServerName,
    RouteName,
    GrpcStatus,
    /// Operators whose fact the waypoint never has: Envoy prints `-` for them too when
    /// unknown (`%CONNECTION_TERMINATION_DETAILS%`, `%UPSTREAM_TRANSPORT_FAILURE_REASON%`,
    /// `%UPSTREAM_LOCAL_ADDRESS%`), kept so Istio's default format compiles.
    AlwaysAbsent,
}

/// A compiled piece of a format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Op(Operator),
}

/// A compiled format string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextFormat(Vec<Piece>);

/// A compiled access-log format: a text line or a JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogFormat {
    Text(TextFormat),
    Json(Vec<(String, TextFormat)>),
}

impl LogFormat {
    /// Istio's default text line.
    pub fn istio_text() -> LogFormat {
        LogFormat::Text(TextFormat::compile(ISTIO_TEXT_FORMAT).expect("Istio's format compiles"))
    }

    /// Istio's default JSON object.
    pub fn istio_json() -> LogFormat {
        LogFormat::json(ISTIO_JSON_LABELS.iter().map(|(k, v)| (*k, *v)))
            .expect("Istio's labels compile")
    }

    /// A JSON object of `labels` (key → format string).
    pub fn json<'a>(
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<LogFormat, FormatError> {
        labels
            .into_iter()
            .map(|(k, v)| Ok((k.to_string(), TextFormat::compile(v)?)))
            .collect::<Result<_, _>>()
            .map(LogFormat::Json)
    }

    /// The line for `record`, ending in a newline.
    pub fn render(&self, record: &Record) -> String {
        let mut out = String::with_capacity(256);
        match self {
            LogFormat::Text(t) => {
                t.render_into(record, &mut out);
                if !out.ends_with('\n') {
                    out.push('\n');
                }
            }
            LogFormat::Json(fields) => {
                let mut map = serde_json::Map::with_capacity(fields.len());
                for (key, f) in fields {
                    map.insert(key.clone(), f.json_value(record));
                }
                out = serde_json::Value::Object(map).to_string();
                out.push('\n');
            }
        }
        out
    }
}

impl TextFormat {
    /// Compiles `text`, refusing unknown operators.
    pub fn compile(text: &str) -> Result<TextFormat, FormatError> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(start) = rest.find('%') {
            literal.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            // `%%` is Envoy's escaped percent sign.
            if let Some(tail) = after.strip_prefix('%') {
                literal.push('%');
                rest = tail;
                continue;
            }
            let (op, tail) = split_operator(after)?;
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
            }
            pieces.push(Piece::Op(parse_operator(op)?));
            rest = tail;
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(TextFormat(pieces))
    }

    fn render_into(&self, record: &Record, out: &mut String) {
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Op(op) => {
                    if !render_op(op, record, out) {
                        out.push('-');
                    }
                }
            }
        }
    }

    /// A JSON label's value: one operator alone keeps its type (numbers stay numbers,
    /// unknown is `null`), as Envoy's JSON formatter does; anything else is a string.
    fn json_value(&self, record: &Record) -> serde_json::Value {
        let mut s = String::new();
        if let [Piece::Op(op)] = self.0.as_slice() {
            if !render_op(op, record, &mut s) {
                return serde_json::Value::Null;
            }
            if op.is_numeric() {
                if let Ok(n) = s.parse::<u64>() {
                    return n.into();
                }
            }
            return s.into();
        }
        self.render_into(record, &mut s);
        s.into()
    }
}

impl Operator {
    fn is_numeric(&self) -> bool {
        matches!(
            self,
            Operator::ResponseCode
                | Operator::BytesReceived
                | Operator::BytesSent
                | Operator::Duration
                | Operator::UpstreamRequestAttemptCount
        )
    }
}

/// Splits `NAME(ARGS):LEN%rest` into the operator text and what follows its closing `%`.
fn split_operator(after: &str) -> Result<(&str, &str), FormatError> {
    // The argument may hold `%` (a strftime format), so the operator ends at the first
    // `%` after its closing parenthesis, if it has one.
    let body_end = match (after.find('('), after.find('%')) {
        (Some(open), Some(pct)) if open < pct => after[open..]
            .find(')')
            .map(|close| open + close)
            .and_then(|close| after[close..].find('%').map(|p| close + p)),
        (_, pct) => pct,
    };
    match body_end {
        Some(end) => Ok((&after[..end], &after[end + 1..])),
        None => Err(FormatError::Unterminated(after.chars().take(30).collect())),
    }
}

fn parse_operator(op: &str) -> Result<Operator, FormatError> {
    let (name, arg, len) = match op.find('(') {
        Some(open) => {
            let close = op.rfind(')').ok_or_else(|| FormatError::BadArgument {
                operator: op.to_string(),
                reason: "missing )".to_string(),
            })?;
            let len = match op[close + 1..].strip_prefix(':') {
                Some(n) => Some(n.parse::<usize>().map_err(|_| FormatError::BadArgument {
                    operator: op.to_string(),
                    reason: format!("length {n:?} is not a number"),
                })?),
                None if op[close + 1..].is_empty() => None,
                None => return Err(FormatError::UnknownOperator(op.to_string())),
            };
            (&op[..open], Some(&op[open + 1..close]), len)
        }
        None => (op, None, None),
    };
    let no_arg = |o: Operator| match arg {
        None => Ok(o),
        Some(_) => Err(FormatError::BadArgument {
            operator: name.to_string(),
            reason: "takes no argument".to_string(),
        }),
    };
    Ok(match name {
        "START_TIME" => Operator::StartTime(arg.filter(|a| !a.is_empty()).map(str::to_string)),
        "REQ" => {
            let (main, alt) = header_pair(op, arg)?;
            Operator::Req(
                req_header(op, main)?,
                alt.map(|a| req_header(op, a)).transpose()?,
                len,
            )
        }
        "RESP" => {
            let (main, alt) = header_pair(op, arg)?;
            Operator::Resp(
                header_name(op, main)?,
                alt.map(|a| header_name(op, a)).transpose()?,
                len,
            )
        }
        "TRAILER" | "RESPONSE_TRAILER" => return Err(FormatError::Unsupported(op.to_string())),
        "RESPONSE_CODE" => no_arg(Operator::ResponseCode)?,
        "RESPONSE_FLAGS" => no_arg(Operator::ResponseFlags)?,
        "RESPONSE_CODE_DETAILS" => no_arg(Operator::ResponseCodeDetails)?,
        "BYTES_RECEIVED" => no_arg(Operator::BytesReceived)?,
        "BYTES_SENT" => no_arg(Operator::BytesSent)?,
        "DURATION" => no_arg(Operator::Duration)?,
        "PROTOCOL" => no_arg(Operator::Protocol)?,
        "UPSTREAM_HOST" => no_arg(Operator::UpstreamHost)?,
        "UPSTREAM_CLUSTER" | "UPSTREAM_CLUSTER_RAW" => no_arg(Operator::UpstreamCluster)?,
        "UPSTREAM_REQUEST_ATTEMPT_COUNT" => no_arg(Operator::UpstreamRequestAttemptCount)?,
        "DOWNSTREAM_LOCAL_ADDRESS" => no_arg(Operator::DownstreamLocalAddress)?,
        "DOWNSTREAM_REMOTE_ADDRESS" => no_arg(Operator::DownstreamRemoteAddress)?,
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => {
            no_arg(Operator::DownstreamRemoteAddressWithoutPort)?
        }
        "DOWNSTREAM_PEER_URI_SAN" => no_arg(Operator::DownstreamPeerUriSan)?,
        "REQUESTED_SERVER_NAME" => no_arg(Operator::RequestedServerName)?,
        "ROUTE_NAME" => no_arg(Operator::RouteName)?,
        "GRPC_STATUS" | "GRPC_STATUS_NUMBER" => no_arg(Operator::GrpcStatus)?,
        "CONNECTION_TERMINATION_DETAILS"
        | "UPSTREAM_TRANSPORT_FAILURE_REASON"
        | "UPSTREAM_LOCAL_ADDRESS" => no_arg(Operator::AlwaysAbsent)?,
        _ => return Err(FormatError::UnknownOperator(op.to_string())),
    })
}

fn header_pair<'a>(
    op: &str,
    arg: Option<&'a str>,
) -> Result<(&'a str, Option<&'a str>), FormatError> {
    let arg = arg
        .filter(|a| !a.is_empty())
        .ok_or_else(|| FormatError::BadArgument {
            operator: op.to_string(),
            reason: "needs a header name".to_string(),
        })?;
    Ok(match arg.split_once('?') {
        Some((a, b)) => (a, Some(b)),
        None => (arg, None),
    })
}

fn req_header(op: &str, name: &str) -> Result<HeaderRef, FormatError> {
    Ok(match name.to_ascii_lowercase().as_str() {
        ":method" => HeaderRef::Method,
        ":path" => HeaderRef::Path,
        ":authority" | "host" => HeaderRef::Authority,
        ":scheme" => HeaderRef::Scheme,
        _ => HeaderRef::Named(header_name(op, name)?),
    })
}

fn header_name(op: &str, name: &str) -> Result<HeaderName, FormatError> {
    HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).map_err(|_| {
        FormatError::BadArgument {
            operator: op.to_string(),
            reason: format!("{name:?} is not a header name"),
        }
    })
}

/// Appends `op`'s value for `r`; false when the fact is unknown (Envoy's `-`).
fn render_op(op: &Operator, r: &Record, out: &mut String) -> bool {
    let before = out.len();
    let known = match op {
        Operator::StartTime(None) => {
            out.push_str(&super::format_start_time(r.start_time));
            true
        }
        Operator::StartTime(Some(f)) => strftime(r.start_time, f, out),
        Operator::Req(main, alt, len) => {
            let v = r
                .request_header(main)
                .or_else(|| alt.as_ref().and_then(|a| r.request_header(a)));
            push_cut(out, v, *len)
        }
        Operator::Resp(main, alt, len) => {
            let v = r
                .response_header(main)
                .or_else(|| alt.as_ref().and_then(|a| r.response_header(a)));
            push_cut(out, v, *len)
        }
        Operator::ResponseCode => write!(out, "{}", r.response_code).is_ok(),
        Operator::ResponseFlags => write!(out, "{}", r.flags).is_ok(),
        Operator::ResponseCodeDetails => push_opt(out, r.details.or(Some("via_upstream"))),
        Operator::BytesReceived => write!(out, "{}", r.bytes_received).is_ok(),
        Operator::BytesSent => write!(out, "{}", r.bytes_sent).is_ok(),
        Operator::Duration => write!(out, "{}", r.duration.as_millis()).is_ok(),
        Operator::Protocol => push_opt(out, Some(r.protocol)),
        Operator::UpstreamHost => r.upstream_host.is_some_and(|a| write!(out, "{a}").is_ok()),
        Operator::UpstreamCluster => push_opt(out, r.upstream_cluster),
        Operator::UpstreamRequestAttemptCount => write!(out, "{}", r.attempts).is_ok(),
        Operator::DownstreamLocalAddress => push_opt(out, r.downstream_local.as_deref()),
        Operator::DownstreamRemoteAddress => push_opt(out, r.downstream_remote.as_deref()),
        Operator::DownstreamRemoteAddressWithoutPort => push_opt(out, r.source_ip.as_deref()),
        Operator::DownstreamPeerUriSan => push_opt(out, r.peer_uri_san.as_deref()),
        Operator::RequestedServerName => push_opt(out, r.sni),
        Operator::RouteName => push_opt(out, r.route_name),
        Operator::GrpcStatus => r.grpc_status.is_some_and(|c| write!(out, "{c}").is_ok()),
        Operator::AlwaysAbsent => false,
    };
    known && out.len() > before
}

fn push_opt(out: &mut String, v: Option<&str>) -> bool {
    match v {
        Some(v) if !v.is_empty() => {
            out.push_str(v);
            true
        }
        _ => false,
    }
}

fn push_cut(out: &mut String, v: Option<&str>, len: Option<usize>) -> bool {
    match (v, len) {
        (Some(v), Some(n)) => push_opt(
            out,
            Some(v.char_indices().nth(n).map_or(v, |(i, _)| &v[..i])),
        ),
        (v, None) => push_opt(out, v),
        (None, _) => false,
    }
}

/// `%START_TIME(fmt)%`: the strftime subset Envoy's users write (`%Y %m %d %H %M %S %s %z
/// %3f %6f %9f`, and `%%`).
fn strftime(t: SystemTime, f: &str, out: &mut String) -> bool {
    let dt: time::OffsetDateTime = t.into();
    let mut chars = f.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let _ = match chars.next() {
            Some('Y') => write!(out, "{:04}", dt.year()),
            Some('m') => write!(out, "{:02}", u8::from(dt.month())),
            Some('d') => write!(out, "{:02}", dt.day()),
            Some('H') => write!(out, "{:02}", dt.hour()),
            Some('M') => write!(out, "{:02}", dt.minute()),
            Some('S') => write!(out, "{:02}", dt.second()),
            Some('s') => write!(out, "{}", dt.unix_timestamp()),
            Some('z') => write!(out, "+0000"),
            Some('%') => write!(out, "%"),
            Some(d @ ('3' | '6' | '9')) if chars.peek() == Some(&'f') => {
                chars.next();
                let digits = d.to_digit(10).unwrap_or(3);
                let frac = dt.nanosecond() / 10u32.pow(9 - digits);
                write!(out, "{frac:0width$}", width = digits as usize)
            }
            Some(other) => write!(out, "%{other}"),
            None => write!(out, "%"),
        };
    }
    true
}

#[cfg(test)]
mod tests;
