//! The `env` imports of proxy-wasm ABI 0.2.0/0.2.1 (spec: proxy-wasm/spec,
//! `abi-versions/v0.2.1`). Every function answers exactly the statuses the
//! spec lists, because the SDKs abort on anything else (the Rust SDK's
//! `hostcalls.rs` panics with "unexpected status"). Headers and bodies here
//! are the request's copies in [`Exchange`]; `filter` applies them to the
//! real request afterwards.

mod http;
mod state;

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Linker};

use super::abi::{log_level_name, BufferType, Status};
use super::host::{
    copy_out, read_bytes, read_string, splice, tri, window, write_bytes, write_u32, HostState,
};

/// A linker plus the names it defines, so a missing import can be named.
pub(crate) struct HostLinker {
    pub(crate) linker: Linker<HostState>,
    pub(crate) defined: HashSet<(String, String)>,
}

impl HostLinker {
    /// Builds the linker with every proxy-wasm and WASI import we provide.
    pub(crate) fn new(engine: &wasmtime::Engine) -> wasmtime::Result<HostLinker> {
        let mut linker = Linker::new(engine);
        define_core(&mut linker)?;
        http::define(&mut linker)?;
        state::define(&mut linker)?;
        super::wasi::define(&mut linker)?;
        // Listing a linker's names needs a store; a throwaway one is enough.
        let mut scratch = wasmtime::Store::new(engine, HostState::new(Default::default(), 0, 0));
        let defined = linker
            .iter(&mut scratch)
            .map(|(m, n, _)| (m.to_string(), n.to_string()))
            .collect();
        Ok(HostLinker { linker, defined })
    }

    /// The first import of `module` we do not provide, as the error text.
    pub(crate) fn missing_import(&self, module: &wasmtime::Module) -> Option<String> {
        module
            .imports()
            .find(|i| {
                !self
                    .defined
                    .contains(&(i.module().to_string(), i.name().to_string()))
            })
            .map(|i| {
                format!(
                    "module {:?} import {:?} is not provided",
                    i.module(),
                    i.name()
                )
            })
    }
}

/// The proxy-wasm log level for `proxy_get_log_level`, from tracing's filter,
/// so a plugin can skip formatting logs nobody will see.
fn current_log_level() -> i32 {
    use tracing::level_filters::LevelFilter;
    match LevelFilter::current() {
        LevelFilter::TRACE => 0,
        LevelFilter::DEBUG => 1,
        LevelFilter::INFO => 2,
        LevelFilter::WARN => 3,
        LevelFilter::ERROR => 4,
        _ => 5,
    }
}

/// Logging, time, tick, configuration buffers, lifecycle odds and ends.
fn define_core(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |mut caller: Caller<'_, HostState>,
         level: i32,
         ptr: i32,
         len: i32|
         -> wasmtime::Result<i32> {
            let msg = tri!(read_bytes(&mut caller, ptr, len));
            let msg = String::from_utf8_lossy(&msg);
            let plugin = caller.data().env.name.as_str();
            let level_name = log_level_name(level);
            match level {
                0 => tracing::trace!(%plugin, level = level_name, "{msg}"),
                1 => tracing::debug!(%plugin, level = level_name, "{msg}"),
                2 => tracing::info!(%plugin, level = level_name, "{msg}"),
                3 => tracing::warn!(%plugin, level = level_name, "{msg}"),
                _ => tracing::error!(%plugin, level = level_name, "{msg}"),
            }
            Ok(Status::Ok.into())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut caller: Caller<'_, HostState>, ret: i32| -> wasmtime::Result<i32> {
            tri!(write_u32(&mut caller, ret, current_log_level() as u32));
            Ok(Status::Ok.into())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut caller: Caller<'_, HostState>, ret: i32| -> wasmtime::Result<i32> {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            tri!(write_bytes(&mut caller, ret, &now.to_le_bytes()));
            Ok(Status::Ok.into())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut caller: Caller<'_, HostState>, period: i32| -> wasmtime::Result<i32> {
            let period = period as u32;
            caller.data_mut().tick_period =
                (period > 0).then(|| std::time::Duration::from_millis(u64::from(period)));
            Ok(Status::Ok.into())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut caller: Caller<'_, HostState>,
         kind: i32,
         start: i32,
         max: i32,
         ptr_ptr: i32,
         size_ptr: i32|
         -> wasmtime::Result<i32> {
            let (start, max) = (start as u32 as usize, max as u32 as usize);
            let st = caller.data();
            let data: Vec<u8> = match BufferType::from_raw(kind) {
                Some(BufferType::PluginConfiguration) => {
                    window(&st.env.plugin_config, start, max).to_vec()
                }
                Some(BufferType::VmConfiguration) => window(&st.env.vm_config, start, max).to_vec(),
                Some(BufferType::HttpCallResponseBody) => match &st.http_response {
                    Some(r) => window(&r.body, start, max).to_vec(),
                    None => return Ok(Status::NotFound.into()),
                },
                Some(k @ (BufferType::RequestBody | BufferType::ResponseBody)) => {
                    match &st.exchange {
                        Some(ex) if ex.body_kind == Some(k) => {
                            window(&ex.body, start, max).to_vec()
                        }
                        _ => return Ok(Status::NotFound.into()),
                    }
                }
                None => return Ok(Status::NotFound.into()),
            };
            Ok(copy_out(&mut caller, &data, ptr_ptr, size_ptr)?.into())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut caller: Caller<'_, HostState>,
         kind: i32,
         start: i32,
         size: i32,
         ptr: i32,
         len: i32|
         -> wasmtime::Result<i32> {
            let value = tri!(read_bytes(&mut caller, ptr, len));
            let kind = BufferType::from_raw(kind);
            match caller.data_mut().exchange.as_mut() {
                Some(ex) if kind.is_some() && ex.body_kind == kind => {
                    splice(
                        &mut ex.body,
                        start as u32 as usize,
                        size as u32 as usize,
                        &value,
                    );
                    Ok(Status::Ok.into())
                }
                _ => Ok(Status::NotFound.into()),
            }
        },
    )?;
    linker.func_wrap("env", "proxy_done", |_: Caller<'_, HostState>| -> i32 {
        Status::Ok.into()
    })?;
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut caller: Caller<'_, HostState>, context_id: i32| -> i32 {
            let id = context_id as u32;
            let st = caller.data_mut();
            if st.live_contexts.contains(&id) {
                st.effective_context = id;
                Status::Ok.into()
            } else {
                Status::BadArgument.into()
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_status",
        |mut caller: Caller<'_, HostState>,
         code_ptr: i32,
         ptr_ptr: i32,
         size_ptr: i32|
         -> wasmtime::Result<i32> {
            // Only gRPC callbacks carry a status, and gRPC is not implemented.
            tri!(write_u32(&mut caller, code_ptr, 0));
            Ok(copy_out(&mut caller, &[], ptr_ptr, size_ptr)?.into())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_call_foreign_function",
        |mut caller: Caller<'_, HostState>, name_ptr: i32, name_len: i32, _a: i32, _b: i32, _c: i32, _d: i32| -> wasmtime::Result<i32> {
            let name = tri!(read_string(&mut caller, name_ptr, name_len));
            tracing::debug!(plugin = %caller.data().env.name, function = %name, "foreign function not provided");
            Ok(Status::NotFound.into())
        },
    )?;
    Ok(())
}
