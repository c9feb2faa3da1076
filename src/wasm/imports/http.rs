//! HTTP imports: header maps, local responses, continue/close, outgoing HTTP
//! calls, and the gRPC calls that link but answer as "not available".

use std::time::Duration;

use bytes::Bytes;
use wasmtime::{Caller, Linker};

use crate::wasm::abi::{
    deserialize_pairs, serialize_pairs, HeaderList, MapType, Status, STREAM_HTTP_REQUEST,
    STREAM_HTTP_RESPONSE,
};
use crate::wasm::host::{
    copy_out, read_bytes, read_string, tri, write_u32, HostState, PendingHttpCall,
};
use crate::wasm::http_call::HttpCallRequest;
use crate::wasm::request::LocalResponse;

/// The map a host call addresses, if this callback has it.
fn map(st: &HostState, t: MapType) -> Option<&HeaderList> {
    match t {
        MapType::HttpCallResponseHeaders => st.http_response.as_ref().map(|r| &r.headers),
        MapType::HttpCallResponseTrailers => st.http_response.as_ref().map(|r| &r.trailers),
        _ => {
            let ex = st.exchange.as_ref()?;
            Some(match t {
                MapType::RequestHeaders => &ex.request_headers,
                MapType::RequestTrailers => &ex.request_trailers,
                MapType::ResponseHeaders => &ex.response_headers,
                _ => &ex.response_trailers,
            })
        }
    }
}

/// The map to change; marks it dirty so `filter` writes it back.
fn map_mut(st: &mut HostState, t: MapType) -> Option<&mut HeaderList> {
    let ex = st.exchange.as_mut()?;
    let (i, list) = match t {
        MapType::RequestHeaders => (0, &mut ex.request_headers),
        MapType::RequestTrailers => (1, &mut ex.request_trailers),
        MapType::ResponseHeaders => (2, &mut ex.response_headers),
        MapType::ResponseTrailers => (3, &mut ex.response_trailers),
        _ => return None,
    };
    ex.dirty[i] = true;
    Some(list)
}

fn to_list(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> HeaderList {
    pairs
        .into_iter()
        .map(|(k, v)| (String::from_utf8_lossy(&k).to_ascii_lowercase(), v))
        .collect()
}

/// Envoy joins repeated headers with `,` when one value is asked for.
fn joined_value(list: &HeaderList, key: &str) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    for (_, v) in list.iter().filter(|(k, _)| k == key) {
        match &mut out {
            None => out = Some(v.clone()),
            Some(o) => {
                o.push(b',');
                o.extend_from_slice(v);
            }
        }
    }
    out
}

pub(super) fn define(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    define_maps(linker)?;
    define_stream(linker)?;
    define_calls(linker)
}

fn define_maps(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut caller: Caller<'_, HostState>,
         t: i32,
         ptr_ptr: i32,
         size_ptr: i32|
         -> wasmtime::Result<i32> {
            // The SDKs accept only Ok here: a map this callback lacks is empty.
            let bytes = match MapType::from_raw(t).and_then(|t| map(caller.data(), t)) {
                Some(list) if !list.is_empty() => {
                    serialize_pairs(list.iter().map(|(k, v)| (k.as_bytes(), v.as_slice())))
                }
                _ => Vec::new(),
            };
            Ok(copy_out(&mut caller, &bytes, ptr_ptr, size_ptr)?.into())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut caller: Caller<'_, HostState>, t: i32, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            let bytes = tri!(read_bytes(&mut caller, ptr, len));
            let Some(pairs) = deserialize_pairs(&bytes) else {
                return Ok(Status::BadArgument.into());
            };
            match MapType::from_raw(t).and_then(|t| map_mut(caller.data_mut(), t)) {
                Some(list) => {
                    *list = to_list(pairs);
                    Ok(Status::Ok.into())
                }
                None => Ok(Status::NotFound.into()),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut caller: Caller<'_, HostState>,
         t: i32,
         kp: i32,
         kl: i32,
         ptr_ptr: i32,
         size_ptr: i32|
         -> wasmtime::Result<i32> {
            let key = tri!(read_string(&mut caller, kp, kl)).to_ascii_lowercase();
            let value = MapType::from_raw(t)
                .and_then(|t| map(caller.data(), t))
                .and_then(|l| joined_value(l, &key));
            match value {
                Some(v) => Ok(copy_out(&mut caller, &v, ptr_ptr, size_ptr)?.into()),
                None => Ok(Status::NotFound.into()),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |mut caller: Caller<'_, HostState>,
         t: i32,
         kp: i32,
         kl: i32,
         vp: i32,
         vl: i32|
         -> wasmtime::Result<i32> {
            let key = tri!(read_string(&mut caller, kp, kl)).to_ascii_lowercase();
            let value = tri!(read_bytes(&mut caller, vp, vl));
            match MapType::from_raw(t).and_then(|t| map_mut(caller.data_mut(), t)) {
                Some(list) => {
                    // Replace keeps the first position (pseudo-headers stay first).
                    match list.iter().position(|(k, _)| *k == key) {
                        Some(at) => {
                            list[at].1 = value;
                            let mut i = 0;
                            list.retain(|(k, _)| {
                                i += 1;
                                i - 1 <= at || *k != key
                            });
                        }
                        None => list.push((key, value)),
                    }
                    Ok(Status::Ok.into())
                }
                None => Ok(Status::NotFound.into()),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |mut caller: Caller<'_, HostState>,
         t: i32,
         kp: i32,
         kl: i32,
         vp: i32,
         vl: i32|
         -> wasmtime::Result<i32> {
            let key = tri!(read_string(&mut caller, kp, kl)).to_ascii_lowercase();
            let value = tri!(read_bytes(&mut caller, vp, vl));
            match MapType::from_raw(t).and_then(|t| map_mut(caller.data_mut(), t)) {
                Some(list) => {
                    list.push((key, value));
                    Ok(Status::Ok.into())
                }
                None => Ok(Status::NotFound.into()),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut caller: Caller<'_, HostState>, t: i32, kp: i32, kl: i32| -> wasmtime::Result<i32> {
            let key = tri!(read_string(&mut caller, kp, kl)).to_ascii_lowercase();
            match MapType::from_raw(t).and_then(|t| map_mut(caller.data_mut(), t)) {
                Some(list) => {
                    list.retain(|(k, _)| *k != key);
                    Ok(Status::Ok.into())
                }
                None => Ok(Status::NotFound.into()),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_size",
        |mut caller: Caller<'_, HostState>, t: i32, size_ptr: i32| -> wasmtime::Result<i32> {
            let size = match MapType::from_raw(t).and_then(|t| map(caller.data(), t)) {
                Some(list) => {
                    serialize_pairs(list.iter().map(|(k, v)| (k.as_bytes(), v.as_slice()))).len()
                }
                None => return Ok(Status::NotFound.into()),
            };
            tri!(write_u32(&mut caller, size_ptr, size as u32));
            Ok(Status::Ok.into())
        },
    )?;
    Ok(())
}

/// Records a resume for the effective context; wakes it if it is waiting
/// outside the current callback (resumed from a tick or another context).
fn resume(st: &mut HostState, request: bool) {
    let ctx = st.effective_context;
    if let Some(waiter) = st.waiters.get(&ctx) {
        waiter.notify_one();
    }
    if request {
        st.out.resumed_request.push(ctx);
    } else {
        st.out.resumed_response.push(ctx);
    }
}

fn define_stream(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_continue_stream",
        |mut caller: Caller<'_, HostState>, stream: i32| -> i32 {
            match stream {
                STREAM_HTTP_REQUEST => resume(caller.data_mut(), true),
                STREAM_HTTP_RESPONSE => resume(caller.data_mut(), false),
                _ => return Status::BadArgument.into(),
            }
            Status::Ok.into()
        },
    )?;
    // ABI 0.1/0.2.0 names of the same operation.
    linker.func_wrap(
        "env",
        "proxy_continue_request",
        |mut caller: Caller<'_, HostState>| -> i32 {
            resume(caller.data_mut(), true);
            Status::Ok.into()
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_continue_response",
        |mut caller: Caller<'_, HostState>| -> i32 {
            resume(caller.data_mut(), false);
            Status::Ok.into()
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_close_stream",
        |mut caller: Caller<'_, HostState>, _stream: i32| -> i32 {
            caller.data_mut().out.closed = true;
            Status::Ok.into()
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_clear_route_cache",
        |_: Caller<'_, HostState>| -> i32 { Status::Ok.into() },
    )?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut caller: Caller<'_, HostState>,
         status: i32,
         dp: i32,
         dl: i32,
         bp: i32,
         bl: i32,
         hp: i32,
         hl: i32,
         _grpc_status: i32|
         -> wasmtime::Result<i32> {
            let details = tri!(read_bytes(&mut caller, dp, dl));
            let body = tri!(read_bytes(&mut caller, bp, bl));
            let headers = tri!(read_bytes(&mut caller, hp, hl));
            let Some(headers) = deserialize_pairs(&headers) else {
                return Ok(Status::BadArgument.into());
            };
            let Ok(status) = u16::try_from(status) else {
                return Ok(Status::BadArgument.into());
            };
            caller.data_mut().out.local_response = Some(LocalResponse::from_guest(
                status,
                to_list(headers),
                Bytes::from(body),
                String::from_utf8_lossy(&details).into_owned(),
            ));
            Ok(Status::Ok.into())
        },
    )?;
    Ok(())
}

fn define_calls(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut caller: Caller<'_, HostState>,
         up: i32,
         ul: i32,
         hp: i32,
         hl: i32,
         bp: i32,
         bl: i32,
         tp: i32,
         tl: i32,
         timeout_ms: i32,
         token_ptr: i32|
         -> wasmtime::Result<i32> {
            let cluster = tri!(read_string(&mut caller, up, ul));
            let headers = tri!(read_bytes(&mut caller, hp, hl));
            let body = tri!(read_bytes(&mut caller, bp, bl));
            let trailers = tri!(read_bytes(&mut caller, tp, tl));
            let (Some(headers), Some(trailers)) = (deserialize_pairs(&headers), deserialize_pairs(&trailers)) else {
                return Ok(Status::BadArgument.into());
            };
            let headers = to_list(headers);
            // Envoy rejects a call without these pseudo-headers as BadArgument.
            let has = |n: &str| headers.iter().any(|(k, _)| k == n);
            if !(has(":method") && has(":path") && has(":authority")) {
                return Ok(Status::BadArgument.into());
            }
            let st = caller.data_mut();
            // Calls need a request's caller; root contexts have none here.
            let Some(http) = st.exchange.as_ref().and_then(|ex| ex.http_caller.clone()) else {
                tracing::debug!(plugin = %st.env.name, %cluster, "http call without an http caller");
                return Ok(Status::InternalFailure.into());
            };
            if !http.knows_upstream(&cluster) {
                return Ok(Status::BadArgument.into());
            }
            let token = st.next_token;
            st.next_token = st.next_token.wrapping_add(1).max(1);
            st.out.http_calls.push(PendingHttpCall {
                token,
                request: HttpCallRequest {
                    cluster,
                    headers,
                    body: Bytes::from(body),
                    trailers: to_list(trailers),
                    timeout: Duration::from_millis(u64::from(timeout_ms as u32)),
                },
            });
            tri!(write_u32(&mut caller, token_ptr, token));
            Ok(Status::Ok.into())
        },
    )?;
    // gRPC: linked so SDK-built modules load; the SDK maps InternalFailure
    // (call/stream) and NotFound (send/cancel/close) to errors it returns.
    linker.func_wrap(
        "env",
        "proxy_grpc_call",
        |_: Caller<'_, HostState>,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32|
         -> i32 { Status::InternalFailure.into() },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_stream",
        |_: Caller<'_, HostState>,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32|
         -> i32 { Status::InternalFailure.into() },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_send",
        |_: Caller<'_, HostState>, _: i32, _: i32, _: i32, _: i32| -> i32 {
            Status::NotFound.into()
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_cancel",
        |_: Caller<'_, HostState>, _: i32| -> i32 { Status::NotFound.into() },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_close",
        |_: Caller<'_, HostState>, _: i32| -> i32 { Status::NotFound.into() },
    )?;
    Ok(())
}
