//! Running callbacks for [`HttpFilters`]: one guarded call into a plugin's
//! instance, the fail strategy when it fails, and the wait of a paused
//! stream for its HTTP calls or a resume.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;

use super::{append, HttpFilters, Step, StreamState, Verdict};
use crate::wasm::abi::{BufferType, ACTION_CONTINUE};
use crate::wasm::host::{CallOutcome, Exchange};
use crate::wasm::http_call::{HttpCallRequest, HttpCallResponse};
use crate::wasm::instance::{Fault, HttpCallback, Instance};
use crate::wasm::metrics::FailureReason;
use crate::wasm::request::LocalResponse;

/// Any non-zero action means "stop iteration"; used to keep a stream's
/// waiter registered while it delivers an HTTP call response.
const ACTION_PAUSE: i32 = 1;

impl HttpFilters {
    /// Runs `f` as stream `i`'s context in its pinned instance, creating
    /// the context on first use. A failure applies the plugin's failStrategy.
    pub(super) fn call(
        &mut self,
        i: usize,
        http_response: Option<HttpCallResponse>,
        f: impl FnOnce(&mut Instance, u32) -> Result<i32, Fault>,
    ) -> Step {
        let s = &self.streams[i];
        let core = Arc::clone(&s.plugin.runtime.core);
        let (slot, known_ctx, known_gen, waiter) =
            (s.slot, s.context, s.generation, s.waiter.clone());
        let mut ex = self.exchange.take();
        let mut seen: Option<(u32, u64)> = None;
        let result = core.with_instance(
            slot,
            |inst, generation| -> Result<(i32, CallOutcome, u32), Fault> {
                let ctx = match known_ctx {
                    Some(ctx) if generation == known_gen => ctx,
                    Some(_) => {
                        return Err(Fault {
                            reason: FailureReason::InstanceLost,
                            message: "the instance holding this request's context was restarted"
                                .into(),
                        })
                    }
                    None => {
                        let id = core.next_context_id();
                        seen = Some((id, generation));
                        inst.create_http_context(id)?;
                        id
                    }
                };
                seen = Some((ctx, generation));
                let (back, outcome, r) =
                    inst.with_exchange(ctx, ex.take().unwrap_or_default(), http_response, |inst| {
                        f(inst, ctx)
                    });
                ex = Some(back);
                let action = r?;
                if action != ACTION_CONTINUE {
                    inst.state().waiters.insert(ctx, waiter);
                }
                Ok((action, outcome, ctx))
            },
        );
        self.exchange = ex.or_else(|| Some(Box::default()));
        if let (None, Some((ctx, generation))) = (known_ctx, seen) {
            self.streams[i].context = Some(ctx);
            self.streams[i].generation = generation;
        }
        let fault = match result {
            Ok(Ok((action, outcome, ctx))) => {
                return Step::Ran {
                    action,
                    outcome,
                    ctx,
                }
            }
            Ok(Err(fault)) => {
                match (fault.reason, seen) {
                    (FailureReason::InstanceLost, _) => {
                        core.env.metrics.count_failure(&core.env.name, fault.reason);
                        tracing::warn!(plugin = %core.env.name, reason = fault.reason.as_str(), "wasm plugin lost this request's context");
                    }
                    (_, Some((_, generation))) => core.discard(slot, generation, &fault),
                    (_, None) => {}
                }
                fault
            }
            // Starting a replacement instance failed; already counted and logged.
            Err(fault) => fault,
        };
        self.fail(i, &fault)
    }

    /// Applies stream `i`'s failStrategy after `fault`.
    fn fail(&mut self, i: usize, fault: &Fault) -> Step {
        let s = &mut self.streams[i];
        s.pending.clear();
        if s.plugin.spec.fail_open {
            tracing::warn!(plugin = %s.plugin.spec.key, reason = fault.reason.as_str(), "FAIL_OPEN: skipping the plugin for this request");
            s.state = StreamState::Skipped;
            Step::Skip
        } else {
            s.state = StreamState::Skipped;
            Step::Stop(Verdict::Respond(LocalResponse::plugin_failed(
                &s.plugin.spec.key.to_string(),
            )))
        }
    }

    /// Takes what a callback asked for: queues its HTTP calls; a local
    /// response or a close ends the phase (whatever the callback returned).
    pub(super) fn terminal(&mut self, i: usize, outcome: &mut CallOutcome) -> Option<Verdict> {
        self.streams[i].pending.extend(outcome.http_calls.drain(..));
        if let Some(response) = outcome.local_response.take() {
            return Some(Verdict::Respond(response));
        }
        outcome.closed.then_some(Verdict::Reset)
    }

    /// Runs a headers callback for each active stream in chain order.
    pub(super) async fn headers_phase(
        &mut self,
        request: bool,
        cb: impl Fn(&Exchange) -> HttpCallback,
    ) -> Verdict {
        for i in 0..self.streams.len() {
            if self.streams[i].state != StreamState::Active {
                continue;
            }
            if let Some(v) = self.deliver_late(i).await {
                return v;
            }
            let callback = cb(self.ex());
            match self.call(i, None, |inst, ctx| inst.http_callback(ctx, callback)) {
                Step::Skip => continue,
                Step::Stop(v) => return v,
                Step::Ran {
                    action,
                    mut outcome,
                    ctx,
                } => {
                    if let Some(v) = self.terminal(i, &mut outcome) {
                        return v;
                    }
                    if action != ACTION_CONTINUE && !resumed(&outcome, ctx, request) {
                        if let Some(v) = self.wait_resumed(i, request).await {
                            return v;
                        }
                    }
                    self.streams[i].waiter = Arc::new(Notify::new());
                }
            }
        }
        Verdict::Continue
    }

    /// Runs a body callback for each active stream; see
    /// [`HttpFilters::on_request_body`].
    pub(super) async fn body_phase(
        &mut self,
        request: bool,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
    ) -> Verdict {
        let mut data = body.take().map(BytesMut::from).unwrap_or_default();
        let had_body = !data.is_empty();
        for i in 0..self.streams.len() {
            if self.streams[i].state != StreamState::Active {
                continue;
            }
            if let Some(v) = self.deliver_late(i).await {
                return v;
            }
            let s = &mut self.streams[i];
            let size = append(
                if request {
                    &mut s.request_body
                } else {
                    &mut s.response_body
                },
                data,
            );
            match self.body_call(i, request, size, end_of_stream, None) {
                Step::Skip => {}
                Step::Stop(v) => return v,
                Step::Ran {
                    action,
                    mut outcome,
                    ctx,
                } => {
                    if let Some(v) = self.terminal(i, &mut outcome) {
                        return v;
                    }
                    if action != ACTION_CONTINUE && !resumed(&outcome, ctx, request) {
                        if !self.streams[i].pending.is_empty() {
                            // Paused for an HTTP call: wait for its answer.
                            if let Some(v) = self.wait_resumed(i, request).await {
                                return v;
                            }
                        } else if !end_of_stream {
                            // StopIterationAndBuffer: keep the data, send nothing on.
                            *body = None;
                            return Verdict::Continue;
                        }
                    }
                    self.streams[i].waiter = Arc::new(Notify::new());
                }
            }
            let s = &mut self.streams[i];
            data = std::mem::take(if request {
                &mut s.request_body
            } else {
                &mut s.response_body
            });
        }
        *body = (had_body || !data.is_empty()).then(|| data.freeze());
        Verdict::Continue
    }

    /// One body callback with the stream's buffer as the body.
    pub(super) fn body_call(
        &mut self,
        i: usize,
        request: bool,
        size: usize,
        end_of_stream: bool,
        resp: Option<HttpCallResponse>,
    ) -> Step {
        let s = &mut self.streams[i];
        let (buf, kind, cb) = if request {
            (
                &mut s.request_body,
                BufferType::RequestBody,
                HttpCallback::RequestBody {
                    size,
                    end_of_stream,
                },
            )
        } else {
            (
                &mut s.response_body,
                BufferType::ResponseBody,
                HttpCallback::ResponseBody {
                    size,
                    end_of_stream,
                },
            )
        };
        let taken = std::mem::take(buf);
        let ex = self.ex();
        ex.body = taken;
        ex.body_kind = Some(kind);
        let step = self.call(i, resp, |inst, ctx| inst.http_callback(ctx, cb));
        let ex = self.ex();
        let back = std::mem::take(&mut ex.body);
        ex.body_kind = None;
        let s = &mut self.streams[i];
        *(if request {
            &mut s.request_body
        } else {
            &mut s.response_body
        }) = back;
        step
    }

    /// Sends stream `i`'s queued HTTP calls one by one, delivering each
    /// response, until the plugin resumes the stream (`None`) or ends it.
    /// With nothing in flight the stream waits for a resume from another
    /// context (a tick or queue callback), as Envoy's paused streams do.
    pub(super) async fn wait_resumed(&mut self, i: usize, request: bool) -> Option<Verdict> {
        loop {
            let Some(call) = self.streams[i].pending.pop_front() else {
                let waiter = self.streams[i].waiter.clone();
                waiter.notified().await;
                return None;
            };
            match self.deliver(i, call.token, call.request).await {
                Step::Skip => return None,
                Step::Stop(v) => return Some(v),
                Step::Ran {
                    mut outcome, ctx, ..
                } => {
                    if let Some(v) = self.terminal(i, &mut outcome) {
                        return Some(v);
                    }
                    if resumed(&outcome, ctx, request) {
                        return None;
                    }
                }
            }
        }
    }

    /// Delivers responses to calls a stream made without pausing (before
    /// its next callback, in an async phase).
    async fn deliver_late(&mut self, i: usize) -> Option<Verdict> {
        while let Some(call) = self.streams[i].pending.pop_front() {
            match self.deliver(i, call.token, call.request).await {
                Step::Skip => return None,
                Step::Stop(v) => return Some(v),
                Step::Ran { mut outcome, .. } => {
                    if let Some(v) = self.terminal(i, &mut outcome) {
                        return Some(v);
                    }
                }
            }
        }
        None
    }

    /// Sends one call (no instance lock held while it is in flight) and runs
    /// `proxy_on_http_call_response`. A failed call is delivered as a
    /// response with no headers, body or trailers, as Envoy does.
    async fn deliver(&mut self, i: usize, token: u32, request: HttpCallRequest) -> Step {
        let caller = self.ex().http_caller.clone();
        let response = match caller {
            Some(caller) => caller.call(request).await.unwrap_or_else(|e| {
                tracing::debug!(plugin = %self.streams[i].plugin.spec.key, error = %e, "wasm http call failed");
                HttpCallResponse::default()
            }),
            None => HttpCallResponse::default(),
        };
        let (h, b, t) = (
            response.headers.len(),
            response.body.len(),
            response.trailers.len(),
        );
        self.call(i, Some(response), |inst, ctx| {
            inst.http_call_response(ctx, token, h, b, t)
                .map(|()| ACTION_PAUSE)
        })
    }
}

/// Whether the callback resumed `ctx` on the given side.
fn resumed(outcome: &CallOutcome, ctx: u32, request: bool) -> bool {
    let list = if request {
        &outcome.resumed_request
    } else {
        &outcome.resumed_response
    };
    list.contains(&ctx)
}
