//! What a wasmtime `Store` carries for one plugin instance ([`HostState`]),
//! the per-callback exchange with the request it serves, and the guest-memory
//! helpers every host call uses. The imports themselves live in `imports`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::Notify;
use wasmtime::{Caller, Memory, ResourceLimiter, StoreLimits, TypedFunc};

use super::abi::{HeaderList, Status};
use super::http_call::{HttpCallRequest, HttpCallResponse, HttpCaller};
use super::plugin_env::PluginEnv;
use super::request::{LocalResponse, RequestProps};

/// Store data of one plugin instance.
pub(crate) struct HostState {
    pub(crate) env: Arc<PluginEnv>,
    /// Which of the plugin's instances this is.
    pub(crate) slot: usize,
    pub(crate) limiter: Limiter,
    pub(crate) memory: Option<Memory>,
    /// `proxy_on_memory_allocate` or `malloc`: how we hand bytes to the guest.
    pub(crate) alloc: Option<TypedFunc<i32, i32>>,
    pub(crate) root_context_id: u32,
    /// The context the current callback runs for (changed by
    /// `proxy_set_effective_context`).
    pub(crate) effective_context: u32,
    /// Set by `proxy_set_tick_period_milliseconds`; zero disables.
    pub(crate) tick_period: Option<Duration>,
    /// The request data of the callback in progress; `None` for root callbacks.
    pub(crate) exchange: Option<Box<Exchange>>,
    /// The response being delivered to `proxy_on_http_call_response`.
    pub(crate) http_response: Option<HttpCallResponse>,
    /// What the current callback asked for.
    pub(crate) out: CallOutcome,
    /// HTTP contexts waiting for `proxy_continue_stream` from another context.
    pub(crate) waiters: HashMap<u32, Arc<Notify>>,
    /// Properties set from root contexts.
    pub(crate) root_properties: HashMap<Vec<u8>, Vec<u8>>,
    /// Root and HTTP contexts created and not yet deleted.
    pub(crate) live_contexts: HashSet<u32>,
    pub(crate) next_token: u32,
}

impl HostState {
    pub(crate) fn new(env: Arc<PluginEnv>, slot: usize, memory_cap: usize) -> Self {
        Self {
            env,
            slot,
            limiter: Limiter::new(memory_cap),
            memory: None,
            alloc: None,
            root_context_id: 0,
            effective_context: 0,
            tick_period: None,
            exchange: None,
            http_response: None,
            out: CallOutcome::default(),
            waiters: HashMap::new(),
            root_properties: HashMap::new(),
            live_contexts: HashSet::new(),
            next_token: 1,
        }
    }
}

/// One request's data while one of its callbacks runs. Moved into the store
/// for the call and back out after, so the store never borrows the request.
#[derive(Default)]
pub(crate) struct Exchange {
    pub(crate) props: Arc<RequestProps>,
    /// How `proxy_http_call` reaches upstreams for this request.
    pub(crate) http_caller: Option<Arc<dyn HttpCaller>>,
    pub(crate) request_headers: HeaderList,
    pub(crate) response_headers: HeaderList,
    pub(crate) request_trailers: HeaderList,
    pub(crate) response_trailers: HeaderList,
    /// Which maps a plugin changed, in [`super::abi::MapType`] order
    /// (request headers, request trailers, response headers, response trailers).
    pub(crate) dirty: [bool; 4],
    /// The body the current body callback sees (accumulated while paused).
    pub(crate) body: BytesMut,
    /// Which body `body` is, if a body callback is running.
    pub(crate) body_kind: Option<super::abi::BufferType>,
    pub(crate) response_code: Option<u16>,
    /// The endpoint chosen for this request, once known.
    pub(crate) upstream: Option<std::net::SocketAddr>,
    /// `proxy_set_property` values of this request (Envoy's filter state).
    pub(crate) properties: HashMap<Vec<u8>, Vec<u8>>,
}

/// The requests a callback made of the host, acted on after it returns.
#[derive(Debug, Default)]
pub(crate) struct CallOutcome {
    pub(crate) local_response: Option<LocalResponse>,
    /// Contexts that called `proxy_continue_stream` (request side).
    pub(crate) resumed_request: Vec<u32>,
    /// Contexts that called `proxy_continue_stream` (response side).
    pub(crate) resumed_response: Vec<u32>,
    pub(crate) closed: bool,
    pub(crate) http_calls: Vec<PendingHttpCall>,
}

/// A `proxy_http_call` waiting to be sent.
#[derive(Debug)]
pub(crate) struct PendingHttpCall {
    pub(crate) token: u32,
    pub(crate) request: HttpCallRequest,
}

/// The per-instance memory cap: wasmtime's [`StoreLimits`], plus a note that
/// the cap was hit so the failure is reported as `memory_limit`, not `trap`.
pub(crate) struct Limiter {
    inner: StoreLimits,
    cap: usize,
    pub(crate) hit: bool,
}

impl Limiter {
    fn new(cap: usize) -> Self {
        let inner = wasmtime::StoreLimitsBuilder::new()
            .memory_size(cap)
            .instances(1)
            .tables(4)
            .memories(1)
            .build();
        Self {
            inner,
            cap,
            hit: false,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            // Trapping (rather than memory.grow returning -1) makes the
            // failure immediate and attributable; a guest allocator would
            // abort on -1 anyway.
            self.hit = true;
            return Err(wasmtime::format_err!(
                "memory limit exceeded: {desired} bytes requested, cap is {} bytes",
                self.cap
            ));
        }
        self.inner.memory_growing(current, desired, maximum)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }
    fn tables(&self) -> usize {
        self.inner.tables()
    }
    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// Unwraps a host-call step (the helpers below return `wasmtime::Result<Result<T, Status>>`): a trap propagates, a status returns to the guest.
macro_rules! tri {
    ($e:expr) => {
        match $e? {
            Ok(v) => v,
            Err(s) => return Ok(i32::from(s)),
        }
    };
}
pub(crate) use tri;

/// The guest's linear memory, or a trap: a module without an exported
/// `memory` cannot exchange data with us.
fn memory(caller: &Caller<'_, HostState>) -> wasmtime::Result<Memory> {
    caller
        .data()
        .memory
        .ok_or_else(|| wasmtime::format_err!("module exports no memory"))
}

/// Reads `len` bytes at `ptr`; an out-of-bounds range is the guest's error
/// (`InvalidMemoryAccess`), not a trap.
pub(crate) fn read_bytes(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<Result<Vec<u8>, Status>> {
    let mem = memory(caller)?;
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    let data = mem.data(&caller);
    Ok(
        match ptr.checked_add(len).and_then(|end| data.get(ptr..end)) {
            Some(slice) => Ok(slice.to_vec()),
            None => Err(Status::InvalidMemoryAccess),
        },
    )
}

/// Reads a UTF-8 string argument (header names, keys).
pub(crate) fn read_string(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<Result<String, Status>> {
    Ok(read_bytes(caller, ptr, len)?
        .and_then(|b| String::from_utf8(b).map_err(|_| Status::BadArgument)))
}

/// Writes `bytes` at `ptr`.
pub(crate) fn write_bytes(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    bytes: &[u8],
) -> wasmtime::Result<Result<(), Status>> {
    let mem = memory(caller)?;
    Ok(mem
        .write(caller, ptr as u32 as usize, bytes)
        .map_err(|_| Status::InvalidMemoryAccess))
}

/// Writes a little-endian u32 (a wasm32 pointer or size) at `ptr`.
pub(crate) fn write_u32(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    v: u32,
) -> wasmtime::Result<Result<(), Status>> {
    write_bytes(caller, ptr, &v.to_le_bytes())
}

/// Hands `data` to the guest: allocates with the guest's allocator, copies,
/// and stores the pointer and size at `ptr_ptr` / `size_ptr`. Empty data is
/// returned as a null pointer, which the SDKs read as "nothing" without
/// freeing.
pub(crate) fn copy_out(
    caller: &mut Caller<'_, HostState>,
    data: &[u8],
    ptr_ptr: i32,
    size_ptr: i32,
) -> wasmtime::Result<Status> {
    let mut addr = 0u32;
    if !data.is_empty() {
        let alloc = caller.data().alloc.clone().ok_or_else(|| {
            wasmtime::format_err!("module exports neither proxy_on_memory_allocate nor malloc")
        })?;
        addr = alloc.call(&mut *caller, data.len() as i32)? as u32;
        if addr == 0 {
            return Ok(Status::InternalFailure);
        }
        if let Err(s) = write_bytes(caller, addr as i32, data)? {
            return Ok(s);
        }
    }
    if let Err(s) = write_u32(caller, ptr_ptr, addr)? {
        return Ok(s);
    }
    Ok(match write_u32(caller, size_ptr, data.len() as u32)? {
        Ok(()) => Status::Ok,
        Err(s) => s,
    })
}

/// Bytes of a body for `proxy_get_buffer_bytes` (start, max) windows.
pub(crate) fn window(data: &[u8], start: usize, max: usize) -> &[u8] {
    let start = start.min(data.len());
    let end = start.saturating_add(max).min(data.len());
    &data[start..end]
}

/// `proxy_set_buffer_bytes`: replaces `size` bytes at `start` with `value`
/// (start 0 and size ≥ length replaces everything; start ≥ length appends).
pub(crate) fn splice(buf: &mut BytesMut, start: usize, size: usize, value: &[u8]) {
    let start = start.min(buf.len());
    let end = start.saturating_add(size).min(buf.len());
    let mut out = BytesMut::with_capacity(buf.len() - (end - start) + value.len());
    out.extend_from_slice(&buf[..start]);
    out.extend_from_slice(value);
    out.extend_from_slice(&buf[end..]);
    *buf = out;
}
