//! The HTTP/1.1 fast path: Pingora's h1 server and client sessions driven
//! directly, for the requests that need nothing of Pingora's full proxy loop.
//!
//! Why: `HttpProxy` costs about 2.3× the user-space CPU of the same exchange
//! driven by hand (BENCHMARKS.md, `benches/pingora_direct.rs`): a task channel
//! and two joined futures per request, a connector pool that checks every reused
//! connection with `getpeername` and spawns a watcher for every idle one, a
//! 64 KiB body buffer per response. The fast path keeps Pingora's HTTP/1.1 codec
//! (parsing, framing, keep-alive rules) and the waypoint's own phases (routing,
//! admission, retries, headers, telemetry), and drops the rest.
//!
//! Which requests: HTTP/1.1 without a body or hop-by-hop headers (other than
//! `Connection: keep-alive`), forwarded by a route with no Wasm plugin and no
//! mirror to HTTP/1.1 endpoints, plain or over HBONE (kept tunnels, as the
//! full proxy keeps them). Everything else — and every request the
//! waypoint answers itself (errors, redirects, VirtualService
//! `directResponse`, CORS preflights) — goes to
//! Pingora's proxy ([`super::Waypoint`]'s `ProxyHttp`) with its bytes replayed
//! ([`crate::inbound::replay`]), so both paths give the same answers.

mod forward;
mod pool;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use http::{header, Method, Version};
use pingora_core::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora_core::protocols::http::v1::server::HttpSession as Downstream1;
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use pingora_error::Result;
use pingora_http::RequestHeader;
use pingora_proxy::HttpProxy;
use tokio::sync::Notify;

use crate::inbound::replay::{ReadLog, Replay};
use crate::inbound::Downstream;
use crate::routing::RouteDecision;

use super::ctx::{RequestCtx, Routed};
use super::request::{destination_of, request_info, wants_h2c};
use super::{headers, Waypoint};

/// The app a listener hands an HTTP connection to: the fast path for HTTP/1.1,
/// with Pingora's proxy behind it; or Pingora's proxy alone (h2c).
pub struct Front {
    fast: Option<FastPath>,
    full: Arc<HttpProxy<Waypoint>>,
    shutting_down: AtomicBool,
    shutdown: Notify,
}

/// The fast path's own state.
struct FastPath {
    waypoint: Waypoint,
    pool: pool::IdlePool,
}

impl Front {
    /// HTTP/1.1 connections: `waypoint` serves the fast path, `full` (built
    /// over an equal `Waypoint`) everything else.
    pub fn http1(waypoint: Waypoint, full: HttpProxy<Waypoint>) -> Self {
        Front {
            fast: Some(FastPath {
                waypoint,
                pool: pool::IdlePool::default(),
            }),
            ..Front::proxy_only(full)
        }
    }

    /// Connections Pingora's proxy serves whole (h2c).
    pub fn proxy_only(full: HttpProxy<Waypoint>) -> Self {
        Front {
            fast: None,
            full: Arc::new(full),
            shutting_down: AtomicBool::new(false),
            shutdown: Notify::new(),
        }
    }

    /// Reads the next request head; `None` when the connection is over.
    async fn read_head(
        &self,
        fast: &FastPath,
        down: &mut Downstream1,
        log: &ReadLog,
    ) -> Option<Result<()>> {
        // Registered before the flag is checked, so a shutdown between the two
        // still wakes this connection.
        let shutdown = self.shutdown.notified();
        tokio::pin!(shutdown);
        shutdown.as_mut().enable();
        if self.shutting_down.load(Ordering::Acquire) {
            return None;
        }
        let limit = fast.waypoint.settings.request_headers_timeout;
        // Pingora's timer wheel, not tokio's: arming a tokio timer per request
        // costs a wake-up write (the syscall budget in tests/request_budget.rs).
        tokio::select! {
            biased;
            read = pingora::prelude::fast_timeout::fast_timeout(limit, down.read_request()) => match read {
                Ok(Ok(Some(_))) => Some(Ok(())),
                Ok(Ok(None)) => None,
                Ok(Err(e)) => Some(Err(e)),
                Err(_) => {
                    // Idle or dripping (slowloris): either way the slot goes
                    // back; only a started head counts as the limit at work.
                    if log.has_bytes() {
                        (fast.waypoint.metrics).record_downstream_limit("request_headers_timeout");
                    }
                    None
                }
            },
            _ = shutdown => None,
        }
    }
}

/// How a request left the fast path.
enum Served {
    /// Answered; the connection may carry another request.
    Done,
    /// Not for the fast path: replay it into Pingora's proxy.
    Declined,
}

#[async_trait]
impl ServerApp for Front {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let Some(fast) = &self.fast else {
            return self.full.process_new(stream, shutdown).await;
        };
        let log = Arc::new(ReadLog::default());
        let mut stream: Stream = Box::new(Replay::new(stream, log.clone()));
        let mut carried: Option<HttpPersistentSettings> = None;
        loop {
            let mut session = ServerSession::new_http1(stream);
            session.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });
            if let Some(settings) = carried.take() {
                settings.apply_to_session(&mut session);
            }
            let ServerSession::H1(mut down) = session else {
                return None;
            };
            // Neither path enables pipelining, so no request starts buffered.
            log.start(None);
            let served = match self.read_head(fast, &mut down, &log).await? {
                Ok(()) => match fast.waypoint.plan_fast(&mut down) {
                    Some(ctx) => {
                        drop(log.take());
                        fast.waypoint.serve_fast(&mut down, ctx, &fast.pool).await;
                        Served::Done
                    }
                    None => Served::Declined,
                },
                // Malformed or oversized: Pingora's proxy answers it (400).
                Err(_) => Served::Declined,
            };
            match served {
                Served::Done => match down.reuse().await {
                    Ok(Some(next)) => stream = next.into_parts().0,
                    _ => return None,
                },
                Served::Declined => {
                    let head = log.take();
                    let mut session = ServerSession::new_http1(down.into_inner());
                    session.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });
                    if let ServerSession::H1(s) = &mut session {
                        s.set_pipelined_prefix(head);
                    }
                    let reused = self.full.process_new_http(session, shutdown).await?;
                    let (next, settings) = reused.consume();
                    stream = next;
                    carried = settings;
                }
            }
        }
    }

    async fn cleanup(&self) {
        self.shutting_down.store(true, Ordering::Release);
        self.shutdown.notify_waiters();
        self.full.cleanup().await;
    }
}

/// Request headers that ask something of the hop (RFC 9110 §7.6.1; the set
/// Pingora's proxy strips) or of the body; a request with any of them takes
/// Pingora's proxy, which sanitises them. `Connection: keep-alive` alone is
/// allowed (and not forwarded).
const HOP_HEADERS: [&str; 10] = [
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
    "expect",
    "proxy-authorization",
    "proxy-authenticate",
];

/// True for a request the fast path forwards as it is (see the module docs).
fn plain_request(req: &RequestHeader) -> bool {
    let connection_ok = req
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .all(|v| v.as_bytes().eq_ignore_ascii_case(b"keep-alive"));
    let host_ok = req
        .headers
        .get(header::HOST)
        .is_some_and(|h| !h.as_bytes().contains(&b'@'));
    req.version == Version::HTTP_11
        && req.method != Method::CONNECT
        && req.uri.authority().is_none()
        && host_ok
        && connection_ok
        && !HOP_HEADERS.iter().any(|h| req.headers.contains_key(*h))
}

impl Waypoint {
    /// The request's context when the fast path can serve it: pinned
    /// config, caller, destination and a forward plan. `None` sends the request
    /// to Pingora's proxy, which then does all of this itself.
    fn plan_fast(&self, down: &mut Downstream1) -> Option<RequestCtx> {
        if !down.is_body_empty() || !plain_request(down.req_header()) {
            return None;
        }
        if headers::headers_too_large(
            down.req_header(),
            self.settings.max_request_headers_bytes,
            self.settings.max_request_headers_count,
        ) {
            return None;
        }
        // Shed by the full proxy, which answers and counts it.
        let admitted = self.overload.try_admit_request().ok()?;
        let published = self.store.load();
        let snapshot = &published.snapshot;
        let downstream = Downstream::of_connection(Some(down.digest()), down.client_addr());
        let destination =
            destination_of(snapshot, downstream.target.as_ref(), down.req_header()).ok()?;
        if !published
            .plugins
            .chain_for(&destination.service.key, destination.port.number)
            .is_empty()
        {
            return None;
        }
        // A denial, or a CUSTOM check (async), goes to the full proxy, which
        // decides (and records) again.
        let authz = Self::authorize(
            &published,
            &destination,
            down.req_header_mut(),
            &downstream.caller,
            downstream.target.as_ref(),
        );
        if authz.as_ref().is_some_and(|v| !v.allowed()) {
            return None;
        }
        let req = down.req_header();
        let (host, _) = headers::split_port(headers::host(req).unwrap_or(""));
        let info = request_info(req, host, destination.port.number);
        let RouteDecision::Forward(plan) =
            snapshot.route(&destination, &info, downstream.caller.namespace())
        else {
            return None;
        };
        if !plan.mirrors.is_empty() || wants_h2c(&plan) {
            return None;
        }
        let trace = self.start_trace(req, &published, Some(&destination), &downstream.caller);
        Some(RequestCtx {
            trace,
            request_id: headers::request_id(req),
            caller: downstream.caller,
            published: Some(published),
            routed: Routed {
                destination: Some(destination),
                route: plan.route.clone(),
                counters: plan.counters.clone(),
                plan: Some(plan),
            },
            authz,
            admitted,
            ..RequestCtx::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/a", None).unwrap();
        for (k, v) in raw {
            req.append_header(k.to_string(), *v).unwrap();
        }
        req
    }

    #[test]
    fn plain_requests_are_http11_origin_form_without_hop_headers() {
        assert!(plain_request(&head(&[("host", "a")])));
        assert!(plain_request(&head(&[
            ("host", "a"),
            ("connection", "Keep-Alive")
        ])));
        assert!(!plain_request(&head(&[])), "no Host");
        assert!(!plain_request(&head(&[("host", "u@a")])), "userinfo");
        assert!(!plain_request(&head(&[
            ("host", "a"),
            ("connection", "close")
        ])));
        assert!(!plain_request(&head(&[
            ("host", "a"),
            ("upgrade", "websocket")
        ])));
        assert!(!plain_request(&head(&[("host", "a"), ("te", "trailers")])));
        let mut old = head(&[("host", "a")]);
        old.set_version(Version::HTTP_10);
        assert!(!plain_request(&old), "HTTP/1.0 keep-alive rules differ");
    }
}
