//! The `logging` phase's work: turn a finished request's context into
//! Istio's metric labels and an access-log line.

use pingora_http::RequestHeader;
use pingora_proxy::Session;

use crate::telemetry::access_log::{format_start_time, AccessLogEntry};
use crate::telemetry::{Metrics, RequestLabels};

use super::ctx::RequestCtx;

/// What the downstream session saw of a finished request, whichever path served it.
pub struct Exchange<'a> {
    pub req: &'a RequestHeader,
    /// The status written to the client, if a response head was written.
    pub written_status: Option<u16>,
    pub body_bytes_read: usize,
    pub body_bytes_sent: usize,
    pub client_addr: Option<&'a pingora_core::protocols::l4::socket::SocketAddr>,
    pub http2: bool,
}

impl<'a> Exchange<'a> {
    /// The facts of a request served by Pingora's proxy.
    pub fn of(session: &'a Session) -> Self {
        Exchange {
            req: session.req_header(),
            written_status: session.response_written().map(|r| r.status.as_u16()),
            body_bytes_read: session.body_bytes_read(),
            body_bytes_sent: session.body_bytes_sent(),
            client_addr: session.client_addr(),
            http2: session.is_http2(),
        }
    }

    /// The facts of a request served by the HTTP/1.1 fast path.
    pub fn of_http1(session: &'a pingora_core::protocols::http::v1::server::HttpSession) -> Self {
        Exchange {
            req: session.req_header(),
            written_status: session.response_written().map(|r| r.status.as_u16()),
            body_bytes_read: session.body_bytes_read(),
            body_bytes_sent: session.body_bytes_sent(),
            client_addr: session.client_addr(),
            http2: false,
        }
    }
}

/// Records the finished request in metrics and, when enabled, the access log.
pub fn record(exchange: &Exchange, ctx: &RequestCtx, metrics: &Metrics, access_log: bool) {
    let status = exchange
        .written_status
        .or(ctx.reply.local_status)
        .unwrap_or(0);
    let labels = labels(ctx, status);
    let duration = ctx.started.elapsed();
    let req = exchange.req;
    let header_bytes = super::headers::header_block_len(req) as u64;
    let request_bytes = header_bytes + exchange.body_bytes_read as u64;
    let response_bytes = exchange.body_bytes_sent as u64;
    metrics.record_request(
        &labels,
        duration.as_secs_f64() * 1000.0,
        request_bytes,
        response_bytes,
    );
    record_live(ctx, status, duration);
    if access_log {
        let cluster = ctx.routed.plan.as_ref().map(|p| {
            format!(
                "outbound|{}||{}",
                p.backend.port.number, p.backend.service.hostname
            )
        });
        let route = ctx.routed.route.as_ref().map(|r| r.to_string());
        AccessLogEntry {
            start_time: format_start_time(ctx.start_time),
            method: req.method.as_str(),
            path: req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
            protocol: if exchange.http2 { "HTTP/2" } else { "HTTP/1.1" },
            response_code: status,
            response_flags: ctx.reply.flags,
            response_code_details: ctx.reply.details.as_deref(),
            bytes_received: exchange.body_bytes_read as u64,
            bytes_sent: response_bytes,
            duration: duration.as_millis() as u64,
            upstream_host: ctx
                .attempts
                .picked
                .as_ref()
                .map(|p| p.endpoint.addr.to_string()),
            upstream_cluster: cluster.as_deref(),
            x_request_id: Some(ctx.request_id.as_str()),
            authority: super::headers::host(req),
            route_name: route.as_deref(),
            downstream_remote_address: exchange.client_addr.map(|a| a.to_string()),
            user_agent: req
                .headers
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok()),
        }
        .write();
    }
}

/// Bumps the admin page's counters of the matched route and of the cluster
/// the request went to: relaxed atomic adds on counters the compiled config
/// already holds, so no lookup or lock per request.
fn record_live(ctx: &RequestCtx, status: u16, duration: std::time::Duration) {
    if let Some(route) = &ctx.routed.counters {
        route.record(status, duration);
    }
    if let Some(cluster) = ctx
        .routed
        .plan
        .as_ref()
        .and_then(|p| p.endpoints.counters())
    {
        cluster.record(status, duration);
    }
}

/// The `grpc-status` in `headers` (response headers of a trailers-only
/// answer, or trailers), if it is a number.
pub fn grpc_status(headers: &http::HeaderMap) -> Option<u32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn labels(ctx: &RequestCtx, status: u16) -> RequestLabels {
    let mut labels = RequestLabels {
        source: ctx.caller.labels.clone(),
        response_code: status,
        response_flags: ctx.reply.flags,
        connection_security_policy: ctx.caller.security_policy(),
        ..Default::default()
    };
    // Istio: `request_protocol` is `grpc` for gRPC calls, and
    // `grpc_response_status` the call's grpc-status (empty when none came).
    if ctx.reply.grpc {
        labels.request_protocol = "grpc";
        if let Some(code) = ctx.reply.grpc_status {
            labels.grpc_response_status = crate::telemetry::grpc_status_label(code);
        }
    }
    // The Service actually chosen (backendRef) wins over the one addressed.
    let service = ctx
        .routed
        .plan
        .as_ref()
        .map(|p| &p.backend)
        .or(ctx.routed.destination.as_ref());
    if let Some(dest) = service {
        let names = &dest.service.labels;
        labels.destination_service = names.hostname.clone();
        labels.destination_service_name = names.name.clone();
        labels.destination_service_namespace = names.namespace.clone();
    }
    if let Some(picked) = &ctx.attempts.picked {
        labels.destination = picked.endpoint.workload.destination_labels();
    }
    labels
}
