//! One live instance of a plugin: its store, the exports we call, its root
//! context, and the guarded call that turns a trap, a missed epoch deadline
//! or the memory cap into a [`Fault`] instead of a stuck or crashed worker.

use std::sync::Arc;

use wasmtime::{InstancePre, Store, TypedFunc, WasmParams, WasmResults};

use super::abi::ACTION_CONTINUE;
use super::engine::{engine, ticks};
use super::host::{CallOutcome, Exchange, HostState};
use super::http_call::HttpCallResponse;
use super::metrics::FailureReason;
use super::plugin_env::{HostOptions, PluginEnv};

/// A failed callback: the instance must be discarded.
#[derive(Debug, Clone)]
pub(crate) struct Fault {
    pub(crate) reason: FailureReason,
    pub(crate) message: String,
}

macro_rules! exports {
    ($($field:ident: $name:literal => ($($p:ty),*) -> $r:ty;)*) => {
        /// Handles to the guest's callbacks; absent exports are skipped.
        struct Exports {
            $($field: Option<TypedFunc<($($p,)*), $r>>,)*
        }

        impl Exports {
            fn find(instance: &wasmtime::Instance, store: &mut Store<HostState>) -> Result<Exports, String> {
                Ok(Exports {
                    $($field: match instance.get_func(&mut *store, $name) {
                        Some(f) => Some(f.typed(&*store).map_err(|e| format!("export {}: {e}", $name))?),
                        None => None,
                    },)*
                })
            }
        }
    };
}

exports! {
    initialize: "_initialize" => () -> ();
    start: "_start" => () -> ();
    on_context_create: "proxy_on_context_create" => (i32, i32) -> ();
    on_vm_start: "proxy_on_vm_start" => (i32, i32) -> i32;
    on_configure: "proxy_on_configure" => (i32, i32) -> i32;
    on_tick: "proxy_on_tick" => (i32) -> ();
    on_queue_ready: "proxy_on_queue_ready" => (i32, i32) -> ();
    on_request_headers: "proxy_on_request_headers" => (i32, i32, i32) -> i32;
    on_request_body: "proxy_on_request_body" => (i32, i32, i32) -> i32;
    on_request_trailers: "proxy_on_request_trailers" => (i32, i32) -> i32;
    on_response_headers: "proxy_on_response_headers" => (i32, i32, i32) -> i32;
    on_response_body: "proxy_on_response_body" => (i32, i32, i32) -> i32;
    on_response_trailers: "proxy_on_response_trailers" => (i32, i32) -> i32;
    on_log: "proxy_on_log" => (i32) -> ();
    on_done: "proxy_on_done" => (i32) -> i32;
    on_delete: "proxy_on_delete" => (i32) -> ();
    on_http_call_response: "proxy_on_http_call_response" => (i32, i32, i32, i32, i32) -> ();
}

/// Which HTTP callback to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HttpCallback {
    RequestHeaders { count: usize, end_of_stream: bool },
    RequestBody { size: usize, end_of_stream: bool },
    RequestTrailers { count: usize },
    ResponseHeaders { count: usize, end_of_stream: bool },
    ResponseBody { size: usize, end_of_stream: bool },
    ResponseTrailers { count: usize },
}

/// A started plugin instance with its root context.
pub(crate) struct Instance {
    store: Store<HostState>,
    exports: Exports,
    deadline: u64,
    pub(crate) root_id: u32,
}

impl Instance {
    /// Instantiates `pre` as instance `slot` of the plugin `env`, runs
    /// `_initialize`/`_start`, creates the root context `root` and calls
    /// `proxy_on_vm_start` and `proxy_on_configure`, as Envoy does for each
    /// worker's VM.
    pub(crate) fn start(
        env: &Arc<PluginEnv>,
        pre: &InstancePre<HostState>,
        options: &HostOptions,
        slot: usize,
        root: u32,
    ) -> Result<Instance, Fault> {
        let env = Arc::clone(env);
        let mut store = Store::new(
            engine(),
            HostState::new(env.clone(), slot, options.memory_limit),
        );
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_trap();
        let deadline = ticks(options.callback_timeout);
        // Module start-up may do real work (static initialisers, parsing the
        // configuration): give it ten callbacks' worth of time.
        store.set_epoch_deadline(deadline * 10);
        let instance = pre
            .instantiate(&mut store)
            .map_err(|e| fault(&store, e, "instantiate"))?;
        let exports = Exports::find(&instance, &mut store).map_err(|message| Fault {
            reason: FailureReason::StartFailed,
            message,
        })?;
        let memory = instance.get_memory(&mut store, "memory");
        let alloc = instance
            .get_typed_func::<i32, i32>(&mut store, "proxy_on_memory_allocate")
            .or_else(|_| instance.get_typed_func::<i32, i32>(&mut store, "malloc"))
            .ok();
        store.data_mut().memory = memory;
        store.data_mut().alloc = alloc;
        let mut this = Instance {
            store,
            exports,
            deadline,
            root_id: 0,
        };
        // Reactors (`cdylib` for wasip1) export `_initialize`; commands `_start`.
        if let Some(f) = this.exports.initialize.clone() {
            this.invoke_slow(&f, (), "_initialize")?;
        } else if let Some(f) = this.exports.start.clone() {
            this.invoke_slow(&f, (), "_start")?;
        }
        this.root_id = root;
        this.store.data_mut().root_context_id = root;
        this.store.data_mut().live_contexts.insert(root);
        this.store.data_mut().effective_context = root;
        if let Some(f) = this.exports.on_context_create.clone() {
            this.invoke_slow(&f, (root as i32, 0), "proxy_on_context_create")?;
        }
        if let Some(f) = this.exports.on_vm_start.clone() {
            let ok = this.invoke_slow(
                &f,
                (root as i32, env.vm_config.len() as i32),
                "proxy_on_vm_start",
            )?;
            if ok == 0 {
                return Err(start_failed("proxy_on_vm_start returned false"));
            }
        }
        if let Some(f) = this.exports.on_configure.clone() {
            let ok = this.invoke_slow(
                &f,
                (root as i32, env.plugin_config.len() as i32),
                "proxy_on_configure",
            )?;
            if ok == 0 {
                return Err(start_failed("proxy_on_configure returned false"));
            }
        }
        Ok(this)
    }

    /// Start-up calls get ten deadlines; failures there are `StartFailed`
    /// unless a limit says otherwise.
    fn invoke_slow<P: WasmParams, R: WasmResults>(
        &mut self,
        f: &TypedFunc<P, R>,
        p: P,
        what: &str,
    ) -> Result<R, Fault> {
        self.store.set_epoch_deadline(self.deadline * 10);
        self.store.data_mut().limiter.hit = false;
        f.call(&mut self.store, p).map_err(|e| {
            let mut fault = fault(&self.store, e, what);
            if fault.reason == FailureReason::Trap {
                fault.reason = FailureReason::StartFailed;
            }
            fault
        })
    }

    /// Calls `f` under the callback deadline.
    fn invoke<P: WasmParams, R: WasmResults>(
        &mut self,
        f: &TypedFunc<P, R>,
        p: P,
        what: &str,
    ) -> Result<R, Fault> {
        self.store.set_epoch_deadline(self.deadline);
        self.store.data_mut().limiter.hit = false;
        f.call(&mut self.store, p)
            .map_err(|e| fault(&self.store, e, what))
    }

    /// Host state, for the service thread (tick period) and tests.
    pub(crate) fn state(&mut self) -> &mut HostState {
        self.store.data_mut()
    }

    /// Creates HTTP context `id` under the root context.
    pub(crate) fn create_http_context(&mut self, id: u32) -> Result<(), Fault> {
        self.store.data_mut().live_contexts.insert(id);
        match self.exports.on_context_create.clone() {
            Some(f) => self.invoke(
                &f,
                (id as i32, self.root_id as i32),
                "proxy_on_context_create",
            ),
            None => Ok(()),
        }
    }

    /// Runs `f` with `exchange` (and an http-call response) visible to host
    /// calls as context `ctx`; returns the exchange and what the guest asked for.
    pub(crate) fn with_exchange<R>(
        &mut self,
        ctx: u32,
        exchange: Box<Exchange>,
        http_response: Option<HttpCallResponse>,
        f: impl FnOnce(&mut Self) -> Result<R, Fault>,
    ) -> (Box<Exchange>, CallOutcome, Result<R, Fault>) {
        {
            let st = self.store.data_mut();
            st.exchange = Some(exchange);
            st.http_response = http_response;
            st.effective_context = ctx;
            st.out = CallOutcome::default();
        }
        let result = f(self);
        let st = self.store.data_mut();
        let exchange = st.exchange.take().unwrap_or_default();
        st.http_response = None;
        st.effective_context = st.root_context_id;
        (exchange, std::mem::take(&mut st.out), result)
    }

    /// One HTTP callback; returns the guest's action (0 = continue).
    pub(crate) fn http_callback(&mut self, ctx: u32, cb: HttpCallback) -> Result<i32, Fault> {
        let ctx = ctx as i32;
        let b = |v: bool| i32::from(v);
        let e = &self.exports;
        let (f, p, name) = match cb {
            HttpCallback::RequestHeaders {
                count,
                end_of_stream,
            } => (
                e.on_request_headers.clone(),
                (ctx, count as i32, b(end_of_stream)),
                "proxy_on_request_headers",
            ),
            HttpCallback::RequestBody {
                size,
                end_of_stream,
            } => (
                e.on_request_body.clone(),
                (ctx, size as i32, b(end_of_stream)),
                "proxy_on_request_body",
            ),
            HttpCallback::ResponseHeaders {
                count,
                end_of_stream,
            } => (
                e.on_response_headers.clone(),
                (ctx, count as i32, b(end_of_stream)),
                "proxy_on_response_headers",
            ),
            HttpCallback::ResponseBody {
                size,
                end_of_stream,
            } => (
                e.on_response_body.clone(),
                (ctx, size as i32, b(end_of_stream)),
                "proxy_on_response_body",
            ),
            HttpCallback::RequestTrailers { count } => {
                return match e.on_request_trailers.clone() {
                    Some(f) => self.invoke(&f, (ctx, count as i32), "proxy_on_request_trailers"),
                    None => Ok(ACTION_CONTINUE),
                }
            }
            HttpCallback::ResponseTrailers { count } => {
                return match e.on_response_trailers.clone() {
                    Some(f) => self.invoke(&f, (ctx, count as i32), "proxy_on_response_trailers"),
                    None => Ok(ACTION_CONTINUE),
                }
            }
        };
        match f {
            Some(f) => self.invoke(&f, p, name),
            None => Ok(ACTION_CONTINUE),
        }
    }

    /// `proxy_on_http_call_response` for the context that made the call.
    pub(crate) fn http_call_response(
        &mut self,
        ctx: u32,
        token: u32,
        headers: usize,
        body: usize,
        trailers: usize,
    ) -> Result<(), Fault> {
        match self.exports.on_http_call_response.clone() {
            Some(f) => self.invoke(
                &f,
                (
                    ctx as i32,
                    token as i32,
                    headers as i32,
                    body as i32,
                    trailers as i32,
                ),
                "proxy_on_http_call_response",
            ),
            None => Ok(()),
        }
    }

    /// `proxy_on_log`, `proxy_on_done`, `proxy_on_delete` for a finished
    /// HTTP context, in Envoy's order.
    pub(crate) fn finish_context(&mut self, ctx: u32, log: bool) -> Result<(), Fault> {
        let c = ctx as i32;
        if log {
            if let Some(f) = self.exports.on_log.clone() {
                self.invoke(&f, (c,), "proxy_on_log")?;
            }
        }
        if let Some(f) = self.exports.on_done.clone() {
            self.invoke(&f, (c,), "proxy_on_done")?;
        }
        if let Some(f) = self.exports.on_delete.clone() {
            self.invoke(&f, (c,), "proxy_on_delete")?;
        }
        let st = self.store.data_mut();
        st.live_contexts.remove(&ctx);
        st.waiters.remove(&ctx);
        Ok(())
    }

    /// `proxy_on_tick` on the root context.
    pub(crate) fn tick(&mut self) -> Result<CallOutcome, Fault> {
        let root = self.root_id;
        self.store.data_mut().out = CallOutcome::default();
        if let Some(f) = self.exports.on_tick.clone() {
            self.invoke(&f, (root as i32,), "proxy_on_tick")?;
        }
        Ok(std::mem::take(&mut self.store.data_mut().out))
    }

    /// `proxy_on_queue_ready` on the registering context.
    pub(crate) fn queue_ready(&mut self, ctx: u32, queue: u32) -> Result<CallOutcome, Fault> {
        self.store.data_mut().out = CallOutcome::default();
        self.store.data_mut().effective_context = ctx;
        if let Some(f) = self.exports.on_queue_ready.clone() {
            self.invoke(&f, (ctx as i32, queue as i32), "proxy_on_queue_ready")?;
        }
        self.store.data_mut().effective_context = self.root_id;
        Ok(std::mem::take(&mut self.store.data_mut().out))
    }
}

fn start_failed(message: &str) -> Fault {
    Fault {
        reason: FailureReason::StartFailed,
        message: message.to_string(),
    }
}

/// Classifies a call error: the limiter's flag means the memory cap, an
/// `Interrupt` trap the epoch deadline, anything else a trap.
fn fault(store: &Store<HostState>, e: wasmtime::Error, what: &str) -> Fault {
    let reason = if store.data().limiter.hit {
        FailureReason::MemoryLimit
    } else if matches!(
        e.downcast_ref::<wasmtime::Trap>(),
        Some(wasmtime::Trap::Interrupt)
    ) {
        FailureReason::Timeout
    } else {
        FailureReason::Trap
    };
    Fault {
        reason,
        message: format!("{what}: {e:#}"),
    }
}
