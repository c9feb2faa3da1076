//! Envoy-style access logs: a finished request as a [`Record`], rendered by a format
//! compiled at config load ([`format`]) and handed to a [`sink::LogSink`], whose writer
//! thread does the file I/O off the request path.

pub mod format;
pub mod sink;

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use pingora_http::RequestHeader;

use super::cel::{Attr, Attributes, Value};
use super::ResponseFlags;
use format::HeaderRef;

/// The facts of one finished request that formats and CEL filters read.
pub struct Record<'a> {
    pub start_time: SystemTime,
    pub req: &'a RequestHeader,
    pub resp_headers: Option<&'a HeaderMap>,
    pub response_code: u16,
    pub flags: ResponseFlags,
    pub details: Option<&'a str>,
    /// Request body bytes (Envoy's `%BYTES_RECEIVED%`).
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub duration: Duration,
    pub protocol: &'static str,
    pub upstream_host: Option<std::net::SocketAddr>,
    /// `outbound|<port>||<service host>`.
    pub upstream_cluster: Option<&'a str>,
    pub route_name: Option<&'a str>,
    pub request_id: &'a str,
    pub downstream_local: Option<String>,
    pub downstream_remote: Option<String>,
    pub source_ip: Option<String>,
    pub peer_uri_san: Option<String>,
    pub sni: Option<&'a str>,
    pub attempts: usize,
    pub grpc_status: Option<u32>,
    pub destination_port: Option<u16>,
    pub destination_service: Option<(&'a str, &'a str, &'a str)>,
}

impl Record<'_> {
    fn request_header(&self, h: &HeaderRef) -> Option<&str> {
        match h {
            HeaderRef::Method => Some(self.req.method.as_str()),
            HeaderRef::Path => self.req.uri.path_and_query().map(|p| p.as_str()),
            HeaderRef::Authority => self
                .req
                .headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .or_else(|| self.req.uri.authority().map(|a| a.as_str())),
            HeaderRef::Scheme => Some(self.req.uri.scheme_str().unwrap_or("http")),
            HeaderRef::Named(n) if n == "x-request-id" && !self.request_id.is_empty() => {
                Some(self.request_id)
            }
            HeaderRef::Named(n) => self.req.headers.get(n).and_then(|v| v.to_str().ok()),
        }
    }

    fn response_header(&self, h: &http::HeaderName) -> Option<&str> {
        self.resp_headers?.get(h).and_then(|v| v.to_str().ok())
    }
}

impl Attributes for Record<'_> {
    fn attr(&self, attr: &Attr) -> Value<'_> {
        match attr {
            Attr::RequestHeader(h) => s(self.request_header(&HeaderRef::Named(h.clone()))),
            Attr::ResponseHeader(h) => s(self.response_header(h)),
            Attr::RequestHost => s(self.request_header(&HeaderRef::Authority)),
            Attr::RequestMethod => s(Some(self.req.method.as_str())),
            Attr::RequestPath => s(self.request_header(&HeaderRef::Path)),
            Attr::RequestUrlPath => s(Some(self.req.uri.path())),
            Attr::RequestScheme => s(self.request_header(&HeaderRef::Scheme)),
            Attr::RequestProtocol => s(Some(self.protocol)),
            Attr::RequestId => s(Some(self.request_id)),
            Attr::ResponseCode => Value::Int(self.response_code.into()),
            Attr::ResponseFlags => Value::Str(self.flags.to_string().into()),
            Attr::ResponseCodeDetails => s(self.details),
            Attr::ResponseGrpcStatus => self
                .grpc_status
                .map_or(Value::Absent, |c| Value::Int(c.into())),
            Attr::ConnectionMtls => Value::Bool(self.peer_uri_san.is_some()),
            Attr::ConnectionSni => s(self.sni),
            Attr::SourcePrincipal => s(self.peer_uri_san.as_deref()),
            Attr::SourceAddress => s(self.source_ip.as_deref()),
            Attr::DestinationPort => self
                .destination_port
                .map_or(Value::Absent, |p| Value::Int(p.into())),
            Attr::DestinationServiceHost => s(self.destination_service.map(|d| d.0)),
            Attr::DestinationServiceName => s(self.destination_service.map(|d| d.1)),
            Attr::DestinationServiceNamespace => s(self.destination_service.map(|d| d.2)),
            Attr::UpstreamAddress => self
                .upstream_host
                .map_or(Value::Absent, |a| Value::Str(a.to_string().into())),
        }
    }
}

fn s(v: Option<&str>) -> Value<'_> {
    v.map_or(Value::Absent, |v| Value::Str(v.into()))
}

/// RFC 3339 with milliseconds, UTC (Envoy's `%START_TIME%`).
pub fn format_start_time(t: std::time::SystemTime) -> String {
    let t: time::OffsetDateTime = t.into();
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&format).unwrap_or_default()
}
