//! The `logging` phase's work: turn a finished request's context into
//! Istio's metric labels and an access-log line.

use pingora_http::RequestHeader;
use pingora_proxy::Session;

use crate::telemetry::access_log::Record;
use crate::telemetry::trace::{SpanFacts, Tracer};
use crate::telemetry::{Metrics, RequestLabels};
use crate::telemetry_api::AccessLogPlan;

use super::ctx::RequestCtx;

/// What the downstream session saw of a finished request, whichever path served it.
pub struct Exchange<'a> {
    pub req: &'a RequestHeader,
    /// The status written to the client, if a response head was written.
    pub written_status: Option<u16>,
    pub body_bytes_read: usize,
    pub body_bytes_sent: usize,
    pub client_addr: Option<&'a pingora_core::protocols::l4::socket::SocketAddr>,
    pub server_addr: Option<&'a pingora_core::protocols::l4::socket::SocketAddr>,
    /// The response head written to the client, if one was.
    pub resp_headers: Option<&'a http::HeaderMap>,
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
            server_addr: session.server_addr(),
            resp_headers: session.response_written().map(|r| &r.headers),
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
            server_addr: session.server_addr(),
            resp_headers: session.response_written().map(|r| &r.headers),
            http2: false,
        }
    }
}

/// Records the finished request in metrics and in the access logs its destination's
/// Telemetry (or MeshConfig) configures. With no Telemetry access log or metric override
/// configured this is one branch: no lookup, no record built.
pub fn record(exchange: &Exchange, ctx: &RequestCtx, metrics: &Metrics) {
    let status = exchange
        .written_status
        .or(ctx.reply.local_status)
        .unwrap_or(0);
    let labels = labels(ctx, status);
    let duration = ctx.started.elapsed();
    let duration_ms = duration.as_secs_f64() * 1000.0;
    let req = exchange.req;
    let header_bytes = super::headers::header_block_len(req) as u64;
    let request_bytes = header_bytes + exchange.body_bytes_read as u64;
    let response_bytes = exchange.body_bytes_sent as u64;
    record_live(ctx, status, duration);
    let effective = ctx
        .published
        .as_deref()
        .filter(|p| !p.telemetry.is_inert())
        .map(|p| {
            let destination = ctx.routed.destination.as_ref().map(|d| &d.service.labels);
            p.telemetry
                .find(destination.map(|d| (&*d.namespace, &*d.name)))
        })
        .filter(|e| e.metrics.is_some() || !e.access_logs.is_empty());
    let Some(effective) = effective else {
        metrics.record_request(&labels, duration_ms, request_bytes, response_bytes);
        return;
    };
    with_record(exchange, ctx, status, duration, |record| {
        match &effective.metrics {
            // Overridden labels read the request's attributes: the record has them.
            Some(overrides) => metrics.record_request_overridden(
                &labels,
                overrides,
                record,
                duration_ms,
                request_bytes,
                response_bytes,
            ),
            None => metrics.record_request(&labels, duration_ms, request_bytes, response_bytes),
        }
        write_access_logs(record, &effective.access_logs);
    });
}

/// Writes the request's [`Record`] to each log whose filter matches.
fn write_access_logs(record: &Record, logs: &[AccessLogPlan]) {
    for log in logs {
        if log.filter.as_ref().is_none_or(|f| f.matches(record)) {
            log.sink.write(log.format.render(record));
        }
    }
}

/// Builds the request's [`Record`] (what access logs and CEL expressions read) and hands
/// it to `f`.
fn with_record(
    exchange: &Exchange,
    ctx: &RequestCtx,
    status: u16,
    duration: std::time::Duration,
    f: impl FnOnce(&Record),
) {
    // The cluster's name was built when the config was compiled.
    let cluster = ctx
        .routed
        .plan
        .as_ref()
        .map(|p| &*p.endpoints.cluster().name.0);
    let route = ctx.routed.route.as_ref().map(|r| r.to_string());
    let destination = ctx.routed.destination.as_ref();
    // A tunnelled caller's address is the one ztunnel forwarded (`forwarded: for=`).
    let remote = exchange.client_addr.map(|a| a.to_string());
    let record = Record {
        start_time: ctx.start_time,
        req: exchange.req,
        resp_headers: exchange.resp_headers,
        response_code: status,
        flags: ctx.reply.flags,
        details: ctx.reply.details.as_deref(),
        bytes_received: exchange.body_bytes_read as u64,
        bytes_sent: exchange.body_bytes_sent as u64,
        duration,
        protocol: if exchange.http2 { "HTTP/2" } else { "HTTP/1.1" },
        upstream_host: ctx.attempts.picked.as_ref().map(|p| p.endpoint.addr),
        upstream_cluster: cluster,
        route_name: route.as_deref(),
        request_id: &ctx.request_id,
        downstream_local: exchange.server_addr.map(|a| a.to_string()),
        source_ip: ctx
            .caller
            .client_ip
            .as_ref()
            .map(|ip| ip.to_string())
            .or_else(|| {
                exchange
                    .client_addr
                    .and_then(|a| a.as_inet())
                    .map(|a| a.ip().to_string())
            }),
        downstream_remote: remote,
        peer_uri_san: ctx.caller.identity.as_ref().map(|id| id.to_string()),
        sni: ctx.caller.sni.as_deref(),
        attempts: ctx.attempts.tried.len(),
        grpc_status: ctx.reply.grpc_status,
        destination_port: destination.map(|d| d.port.number),
        destination_service: destination.map(|d| {
            let l = &d.service.labels;
            (&*l.hostname, &*l.name, &*l.namespace)
        }),
    };
    f(&record);
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
    if let Some(picked) = &ctx.attempts.picked {
        labels.destination = picked.endpoint.workload.destination_labels();
    }
    if let Some(dest) = service {
        let names = &dest.service.labels;
        labels.destination_service = names.hostname.clone();
        labels.destination_service_name = names.name.clone();
        labels.destination_service_namespace = names.namespace.clone();
        // Also when no endpoint was picked (503 UH/UO): Kiali drops a sample
        // with a known service namespace and an `unknown` cluster.
        labels.destination.cluster = names.cluster.clone();
    }
    labels
}

/// Ends the request's span (if it has one) with what the request came to.
/// Called after [`record`] on both request paths.
pub fn finish_trace(exchange: &Exchange, ctx: &mut RequestCtx, tracer: Option<&Tracer>) {
    let (Some(tracer), Some(span)) = (tracer, ctx.trace.take()) else {
        return;
    };
    let status = exchange
        .written_status
        .or(ctx.reply.local_status)
        .unwrap_or(0);
    let req = exchange.req;
    let dest = ctx.routed.destination.as_ref();
    let host = super::headers::host(req).unwrap_or("");
    let path = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    // Envoy's OpenTelemetry tracer reports the upstream cluster it used, and
    // the route's decorator `<host>:<port>/*` as the operation.
    let upstream_cluster = ctx
        .routed
        .plan
        .as_ref()
        .map(|p| p.endpoints.cluster().name.to_string())
        .unwrap_or_else(|| "-".to_string());
    let service_name = dest
        .map(|d| d.service.labels.hostname.clone())
        .unwrap_or_else(|| std::sync::Arc::from(crate::telemetry::UNKNOWN));
    let operation = match dest {
        Some(d) => format!("{}:{}/*", d.service.labels.hostname, d.port.number),
        None => format!("{host}/*"),
    };
    let facts = SpanFacts {
        service_name,
        operation,
        method: req.method.as_str(),
        url: format!("http://{host}{path}"),
        protocol: if exchange.http2 { "HTTP/2" } else { "HTTP/1.1" },
        status,
        upstream_cluster,
        peer_address: exchange
            .client_addr
            .map(|a| a.to_string())
            .unwrap_or_default(),
        request_id: &ctx.request_id,
        response_flags: ctx.reply.flags.to_string(),
        request_size: exchange.body_bytes_read as u64,
        response_size: exchange.body_bytes_sent as u64,
        user_agent: req
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
    };
    tracer.finish(span, &facts);
}
