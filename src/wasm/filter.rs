//! The per-request API the proxy calls from its Pingora phases: one
//! [`HttpFilters`] per request runs the request's plugin chain in order.
//!
//! Phase by phase (see `wasm.rs` for the proxy's side):
//! `on_request_headers` (async: a plugin may pause on an HTTP call) →
//! `on_request_body` per chunk (async) → `set_upstream` → `on_response_headers`
//! (async) → `on_response_body` per chunk (sync, as Pingora's
//! `response_body_filter` is) → `on_log` (or drop) ends every context.
//!
//! Semantics follow Envoy's wasm filter: Pause from a headers callback stops
//! the request until the plugin resumes it (after its HTTP call answers, or
//! from another context); Pause from a body callback buffers, and the next
//! call sees the accumulated body; after `proxy_send_local_response` the
//! callback's return value is ignored and the local response is the answer.

mod headers;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;

pub use headers::HeaderAccess;

use super::abi::ACTION_CONTINUE;
use super::host::{CallOutcome, Exchange, PendingHttpCall};
use super::http_call::HttpCaller;
use super::instance::HttpCallback;
use super::plugin_set::Plugin;
use super::request::{LocalResponse, RequestProps};

/// What the proxy does after a phase.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Go on with the (possibly modified) request or response.
    Continue,
    /// Answer with this response and stop proxying.
    Respond(LocalResponse),
    /// A plugin closed the stream (`proxy_close_stream`): reset it.
    Reset,
}

/// The request line as the plugins left it (they may rewrite `:path`,
/// `:authority`, `:method`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestLine {
    pub method: String,
    pub scheme: String,
    pub authority: String,
    pub path: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamState {
    Active,
    /// FAIL_OPEN after a failure: the plugin is skipped for this request.
    Skipped,
}

/// One plugin's part of a request.
struct Stream {
    plugin: Arc<Plugin>,
    slot: usize,
    generation: u64,
    context: Option<u32>,
    state: StreamState,
    request_body: BytesMut,
    response_body: BytesMut,
    pending: VecDeque<PendingHttpCall>,
    waiter: Arc<Notify>,
}

/// How one callback ended.
enum Step {
    Ran {
        action: i32,
        outcome: CallOutcome,
        ctx: u32,
    },
    /// The plugin failed and is skipped (FAIL_OPEN).
    Skip,
    /// The plugin failed and the request must end with this verdict (FAIL_CLOSE).
    Stop(Verdict),
}

/// A request's plugin chain in progress. Dropping it ends every context
/// (`proxy_on_log`, `proxy_on_done`, `proxy_on_delete`) if `on_log` did not.
pub struct HttpFilters {
    streams: Vec<Stream>,
    exchange: Option<Box<Exchange>>,
    finished: bool,
}

impl HttpFilters {
    /// Starts the chain for one request: each plugin's HTTP context is
    /// created on its first callback, in the instance picked here.
    pub fn start(
        chain: Arc<[Arc<Plugin>]>,
        props: RequestProps,
        caller: Option<Arc<dyn HttpCaller>>,
    ) -> HttpFilters {
        let streams = chain
            .iter()
            .map(|plugin| Stream {
                slot: plugin.runtime.core.pick_slot(),
                plugin: Arc::clone(plugin),
                generation: 0,
                context: None,
                state: StreamState::Active,
                request_body: BytesMut::new(),
                response_body: BytesMut::new(),
                pending: VecDeque::new(),
                waiter: Arc::new(Notify::new()),
            })
            .collect();
        let line: Vec<(&str, &[u8])> = vec![
            (":method", props.method.as_bytes()),
            (":scheme", props.scheme.as_bytes()),
            (":authority", props.authority.as_bytes()),
            (":path", props.path.as_bytes()),
        ];
        let request_headers = line
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect();
        let exchange = Exchange {
            props: Arc::new(props),
            http_caller: caller,
            request_headers,
            ..Default::default()
        };
        HttpFilters {
            streams,
            exchange: Some(Box::new(exchange)),
            finished: false,
        }
    }

    /// Whether the chain has any plugin (the proxy may skip every call if not).
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Runs `proxy_on_request_headers` through the chain; writes the plugins'
    /// header changes into `headers` (pseudo-header changes show in
    /// [`HttpFilters::request_line`]).
    pub async fn on_request_headers(
        &mut self,
        headers: &mut impl HeaderAccess,
        end_of_stream: bool,
    ) -> Verdict {
        let line = self.request_line();
        let pseudo: [(&str, &[u8]); 4] = [
            (":method", line.method.as_bytes()),
            (":scheme", line.scheme.as_bytes()),
            (":authority", line.authority.as_bytes()),
            (":path", line.path.as_bytes()),
        ];
        self.ex().request_headers = headers::snapshot(&pseudo, headers);
        let verdict = self
            .headers_phase(true, |ex| HttpCallback::RequestHeaders {
                count: ex.request_headers.len(),
                end_of_stream,
            })
            .await;
        if self.ex().dirty[0] {
            headers::write_back(&self.ex().request_headers, headers);
            self.ex().dirty[0] = false;
        }
        verdict
    }

    /// Runs `proxy_on_request_body` for one chunk. A plugin that pauses
    /// before the end of the stream keeps the chunk: `body` becomes `None`
    /// and the next call presents the accumulated body.
    pub async fn on_request_body(
        &mut self,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
    ) -> Verdict {
        self.body_phase(true, body, end_of_stream).await
    }

    /// Runs `proxy_on_request_trailers`, writing changes back into `trailers`.
    pub async fn on_request_trailers(&mut self, trailers: &mut impl HeaderAccess) -> Verdict {
        self.ex().request_trailers = headers::snapshot(&[], trailers);
        let verdict = self
            .headers_phase(true, |ex| HttpCallback::RequestTrailers {
                count: ex.request_trailers.len(),
            })
            .await;
        if self.ex().dirty[1] {
            headers::write_back(&self.ex().request_trailers, trailers);
            self.ex().dirty[1] = false;
        }
        verdict
    }

    /// Runs `proxy_on_response_trailers`, writing changes back into `trailers`.
    pub async fn on_response_trailers(&mut self, trailers: &mut impl HeaderAccess) -> Verdict {
        self.ex().response_trailers = headers::snapshot(&[], trailers);
        let verdict = self
            .headers_phase(false, |ex| HttpCallback::ResponseTrailers {
                count: ex.response_trailers.len(),
            })
            .await;
        if self.ex().dirty[3] {
            headers::write_back(&self.ex().response_trailers, trailers);
            self.ex().dirty[3] = false;
        }
        verdict
    }

    /// Tells the plugins (`upstream.address`) which endpoint was chosen.
    pub fn set_upstream(&mut self, addr: SocketAddr) {
        self.ex().upstream = Some(addr);
    }

    /// Runs `proxy_on_response_headers`; `status` is shown as `:status`.
    /// A changed `:status` shows in [`HttpFilters::response_status`].
    pub async fn on_response_headers(
        &mut self,
        status: u16,
        headers: &mut impl HeaderAccess,
        end_of_stream: bool,
    ) -> Verdict {
        let code = status.to_string();
        self.ex().response_code = Some(status);
        self.ex().response_headers = headers::snapshot(&[(":status", code.as_bytes())], headers);
        let verdict = self
            .headers_phase(false, |ex| HttpCallback::ResponseHeaders {
                count: ex.response_headers.len(),
                end_of_stream,
            })
            .await;
        if self.ex().dirty[2] {
            headers::write_back(&self.ex().response_headers, headers);
            self.ex().dirty[2] = false;
        }
        verdict
    }

    /// Runs `proxy_on_response_body` for one chunk (synchronously: Pingora's
    /// response body filter cannot await). A pause buffers as for requests;
    /// HTTP calls dispatched here are delivered at the next async phase or
    /// dropped at the end of the request.
    pub fn on_response_body(&mut self, body: &mut Option<Bytes>, end_of_stream: bool) -> Verdict {
        let mut data = body.take().map(BytesMut::from).unwrap_or_default();
        let had_body = !data.is_empty();
        for i in 0..self.streams.len() {
            let s = &mut self.streams[i];
            if s.state != StreamState::Active {
                continue;
            }
            let buffered = append(&mut s.response_body, data);
            let step = self.body_call(i, false, buffered, end_of_stream, None);
            match step {
                Step::Skip => {
                    data = std::mem::take(&mut self.streams[i].response_body);
                    continue;
                }
                Step::Stop(v) => return v,
                Step::Ran {
                    action,
                    mut outcome,
                    ..
                } => {
                    if let Some(v) = self.terminal(i, &mut outcome) {
                        return v;
                    }
                    if action != ACTION_CONTINUE && !end_of_stream {
                        *body = None;
                        return Verdict::Continue;
                    }
                    data = std::mem::take(&mut self.streams[i].response_body);
                }
            }
        }
        *body = (had_body || !data.is_empty()).then(|| data.freeze());
        Verdict::Continue
    }

    /// The request line after the plugins.
    pub fn request_line(&self) -> RequestLine {
        let ex = self.exchange.as_deref();
        let get = |name: &str, fallback: &str| -> String {
            ex.and_then(|ex| headers::pseudo(&ex.request_headers, name))
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_else(|| fallback.to_string())
        };
        let props = ex.map(|ex| ex.props.clone()).unwrap_or_default();
        RequestLine {
            method: get(":method", &props.method),
            scheme: get(":scheme", &props.scheme),
            authority: get(":authority", &props.authority),
            path: get(":path", &props.path),
        }
    }

    /// The response status after the plugins (`None` before the response).
    pub fn response_status(&self) -> Option<u16> {
        let ex = self.exchange.as_deref()?;
        headers::pseudo(&ex.response_headers, ":status")
            .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
            .or(ex.response_code)
    }

    /// Ends every plugin context: `proxy_on_log`, `proxy_on_done`,
    /// `proxy_on_delete`. Call from Pingora's `logging` phase; idempotent.
    pub fn on_log(&mut self) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        for i in 0..self.streams.len() {
            let s = &self.streams[i];
            let Some(ctx) = s.context else { continue };
            let core = &s.plugin.runtime.core;
            let (slot, generation) = (s.slot, s.generation);
            let mut ex = self.exchange.take();
            let result = core.with_instance(slot, |inst, current| {
                if current != generation {
                    return (None, Ok(()));
                }
                let (back, _, r) =
                    inst.with_exchange(ctx, ex.take().unwrap_or_default(), None, |inst| {
                        inst.finish_context(ctx, true)
                    });
                (Some(back), r)
            });
            // An instance that failed to restart already counted its failure.
            if let Ok((back, r)) = result {
                if back.is_some() {
                    self.exchange = back;
                }
                if let Err(fault) = r {
                    core.discard(slot, generation, &fault);
                }
            }
            if self.exchange.is_none() {
                self.exchange = ex.or_else(|| Some(Box::default()));
            }
        }
    }

    fn ex(&mut self) -> &mut Exchange {
        self.exchange.get_or_insert_with(Box::default)
    }
}

impl Drop for HttpFilters {
    fn drop(&mut self) {
        self.on_log();
    }
}

/// Appends `data` to a stream's buffer without copying when it is empty.
fn append(buf: &mut BytesMut, data: BytesMut) -> usize {
    if buf.is_empty() {
        *buf = data;
    } else {
        buf.extend_from_slice(&data);
    }
    buf.len()
}

mod drive;
