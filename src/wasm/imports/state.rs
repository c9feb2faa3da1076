//! State imports: properties, shared data, shared queues and metrics. The
//! stores behind them live in `properties`, `shared` and `metrics`.

use wasmtime::{Caller, Linker};

use crate::wasm::abi::{MetricType, Status};
use crate::wasm::host::{
    copy_out, read_bytes, read_string, tri, write_bytes, write_u32, HostState,
};
use crate::wasm::{properties, shared};

pub(super) fn define(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    define_properties(linker)?;
    define_shared(linker)?;
    define_metrics(linker)
}

fn define_properties(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut caller: Caller<'_, HostState>,
         pp: i32,
         pl: i32,
         ptr_ptr: i32,
         size_ptr: i32|
         -> wasmtime::Result<i32> {
            let path = tri!(read_bytes(&mut caller, pp, pl));
            match properties::get(caller.data(), &path) {
                Some(value) => Ok(copy_out(&mut caller, &value, ptr_ptr, size_ptr)?.into()),
                None => Ok(Status::NotFound.into()),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut caller: Caller<'_, HostState>,
         pp: i32,
         pl: i32,
         vp: i32,
         vl: i32|
         -> wasmtime::Result<i32> {
            let path = tri!(read_bytes(&mut caller, pp, pl));
            let value = tri!(read_bytes(&mut caller, vp, vl));
            properties::set(caller.data_mut(), path, value);
            Ok(Status::Ok.into())
        },
    )?;
    Ok(())
}

fn define_shared(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut caller: Caller<'_, HostState>,
         kp: i32,
         kl: i32,
         ptr_ptr: i32,
         size_ptr: i32,
         cas_ptr: i32|
         -> wasmtime::Result<i32> {
            let key = tri!(read_string(&mut caller, kp, kl));
            let vm_id = caller.data().env.vm_id.clone();
            let Some((value, cas)) = shared::data().get(&vm_id, &key) else {
                return Ok(Status::NotFound.into());
            };
            tri!(write_u32(&mut caller, cas_ptr, cas));
            Ok(copy_out(&mut caller, &value, ptr_ptr, size_ptr)?.into())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut caller: Caller<'_, HostState>,
         kp: i32,
         kl: i32,
         vp: i32,
         vl: i32,
         cas: i32|
         -> wasmtime::Result<i32> {
            let key = tri!(read_string(&mut caller, kp, kl));
            let value = tri!(read_bytes(&mut caller, vp, vl));
            let vm_id = caller.data().env.vm_id.clone();
            Ok(match shared::data().set(&vm_id, key, value, cas as u32) {
                Ok(()) => Status::Ok.into(),
                Err(s) => s.into(),
            })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |mut caller: Caller<'_, HostState>,
         np: i32,
         nl: i32,
         id_ptr: i32|
         -> wasmtime::Result<i32> {
            let name = tri!(read_string(&mut caller, np, nl));
            let st = caller.data();
            let owner = shared::QueueOwner {
                events: st.env.events.clone(),
                slot: st.slot,
                context_id: st.effective_context,
            };
            let id = shared::queues().register(&st.env.vm_id, &name, owner);
            tri!(write_u32(&mut caller, id_ptr, id));
            Ok(Status::Ok.into())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        |mut caller: Caller<'_, HostState>,
         vp: i32,
         vl: i32,
         np: i32,
         nl: i32,
         id_ptr: i32|
         -> wasmtime::Result<i32> {
            let vm_id = tri!(read_string(&mut caller, vp, vl));
            let name = tri!(read_string(&mut caller, np, nl));
            // An empty vm_id means "my own VM", as in Envoy.
            let vm_id = if vm_id.is_empty() {
                caller.data().env.vm_id.clone()
            } else {
                vm_id
            };
            match shared::queues().resolve(&vm_id, &name) {
                Some(id) => {
                    tri!(write_u32(&mut caller, id_ptr, id));
                    Ok(Status::Ok.into())
                }
                None => Ok(Status::NotFound.into()),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |mut caller: Caller<'_, HostState>, id: i32, vp: i32, vl: i32| -> wasmtime::Result<i32> {
            let value = tri!(read_bytes(&mut caller, vp, vl));
            Ok(match shared::queues().enqueue(id as u32, value) {
                Ok(()) => Status::Ok.into(),
                Err(s) => s.into(),
            })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        |mut caller: Caller<'_, HostState>,
         id: i32,
         ptr_ptr: i32,
         size_ptr: i32|
         -> wasmtime::Result<i32> {
            match shared::queues().dequeue(id as u32) {
                Ok(value) => Ok(copy_out(&mut caller, &value, ptr_ptr, size_ptr)?.into()),
                Err(s) => Ok(s.into()),
            }
        },
    )?;
    Ok(())
}

fn define_metrics(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut caller: Caller<'_, HostState>,
         t: i32,
         np: i32,
         nl: i32,
         id_ptr: i32|
         -> wasmtime::Result<i32> {
            let Some(kind) = MetricType::from_raw(t) else {
                return Ok(Status::BadArgument.into());
            };
            let name = tri!(read_string(&mut caller, np, nl));
            let id = match caller.data().env.metrics.define(kind, &name) {
                Ok(id) => id,
                Err(s) => return Ok(s.into()),
            };
            tri!(write_u32(&mut caller, id_ptr, id));
            Ok(Status::Ok.into())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |caller: Caller<'_, HostState>, id: i32, offset: i64| -> i32 {
            match caller.data().env.metrics.increment(id as u32, offset) {
                Ok(()) => Status::Ok.into(),
                Err(s) => s.into(),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |caller: Caller<'_, HostState>, id: i32, value: i64| -> i32 {
            match caller.data().env.metrics.record(id as u32, value as u64) {
                Ok(()) => Status::Ok.into(),
                Err(s) => s.into(),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_metric",
        |mut caller: Caller<'_, HostState>, id: i32, ret: i32| -> wasmtime::Result<i32> {
            let value = match caller.data().env.metrics.get(id as u32) {
                Ok(v) => v,
                Err(s) => return Ok(s.into()),
            };
            tri!(write_bytes(&mut caller, ret, &value.to_le_bytes()));
            Ok(Status::Ok.into())
        },
    )?;
    Ok(())
}
