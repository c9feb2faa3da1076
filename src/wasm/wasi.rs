//! The handful of WASI preview1 imports (`wasi_snapshot_preview1`) that
//! modules built for `wasm32-wasip1` declare: stdout/stderr to our log,
//! clocks, random, environment from `vmConfig.env`, `proc_exit`. There is no
//! filesystem: every other descriptor is `EBADF`, opening paths is
//! `ENOTCAPABLE`, as in a sandbox with no preopened directories. Errno values
//! are WASI's (`wasi-libc`'s `__WASI_ERRNO_*`).

use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngCore;
use wasmtime::{Caller, Linker};

use super::host::{read_bytes, write_bytes, write_u32, HostState};

const WASI: &str = "wasi_snapshot_preview1";
const SUCCESS: i32 = 0;
const EBADF: i32 = 8;
const EFAULT: i32 = 21;
const EINVAL: i32 = 28;
const ESPIPE: i32 = 70;
const ENOTCAPABLE: i32 = 76;
const ENOTSUP: i32 = 58;

/// Maps a guest memory fault to `EFAULT`, a trap to a trap.
macro_rules! wasi_try {
    ($e:expr) => {
        match $e? {
            Ok(v) => v,
            Err(_) => return Ok(EFAULT),
        }
    };
}

/// `NAME=value\0` strings of the plugin's environment.
fn environ(st: &HostState) -> Vec<Vec<u8>> {
    st.env
        .env
        .iter()
        .map(|(k, v)| {
            let mut e = format!("{k}={v}").into_bytes();
            e.push(0);
            e
        })
        .collect()
}

/// Reads a list of `(ptr, len)` iovecs.
fn gather(
    caller: &mut Caller<'_, HostState>,
    iovs: i32,
    count: i32,
) -> wasmtime::Result<Result<Vec<u8>, ()>> {
    let mut out = Vec::new();
    for i in 0..count.max(0) {
        let Ok(iov) = read_bytes(caller, iovs + i * 8, 8)? else {
            return Ok(Err(()));
        };
        let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
        let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
        let Ok(bytes) = read_bytes(caller, ptr, len)? else {
            return Ok(Err(()));
        };
        out.extend_from_slice(&bytes);
    }
    Ok(Ok(out))
}

pub(crate) fn define(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        WASI,
        "fd_write",
        |mut caller: Caller<'_, HostState>,
         fd: i32,
         iovs: i32,
         count: i32,
         nwritten: i32|
         -> wasmtime::Result<i32> {
            if !(1..=2).contains(&fd) {
                return Ok(EBADF);
            }
            let bytes = wasi_try!(gather(&mut caller, iovs, count));
            let text = String::from_utf8_lossy(&bytes);
            let plugin = caller.data().env.name.as_str();
            for line in text.lines().filter(|l| !l.is_empty()) {
                if fd == 1 {
                    tracing::info!(%plugin, stream = "stdout", "{line}");
                } else {
                    tracing::warn!(%plugin, stream = "stderr", "{line}");
                }
            }
            wasi_try!(write_u32(&mut caller, nwritten, bytes.len() as u32));
            Ok(SUCCESS)
        },
    )?;
    linker.func_wrap(
        WASI,
        "fd_read",
        |mut caller: Caller<'_, HostState>,
         fd: i32,
         _iovs: i32,
         _count: i32,
         nread: i32|
         -> wasmtime::Result<i32> {
            if fd != 0 {
                return Ok(EBADF);
            }
            // stdin is always at end of file.
            wasi_try!(write_u32(&mut caller, nread, 0));
            Ok(SUCCESS)
        },
    )?;
    linker.func_wrap(
        WASI,
        "fd_close",
        |_: Caller<'_, HostState>, _fd: i32| -> i32 { EBADF },
    )?;
    linker.func_wrap(
        WASI,
        "fd_seek",
        |_: Caller<'_, HostState>, fd: i32, _off: i64, _whence: i32, _ret: i32| -> i32 {
            if (0..=2).contains(&fd) {
                ESPIPE
            } else {
                EBADF
            }
        },
    )?;
    linker.func_wrap(
        WASI,
        "fd_tell",
        |_: Caller<'_, HostState>, fd: i32, _ret: i32| -> i32 {
            if (0..=2).contains(&fd) {
                ESPIPE
            } else {
                EBADF
            }
        },
    )?;
    linker.func_wrap(
        WASI,
        "fd_sync",
        |_: Caller<'_, HostState>, _fd: i32| -> i32 { SUCCESS },
    )?;
    linker.func_wrap(
        WASI,
        "fd_fdstat_get",
        |mut caller: Caller<'_, HostState>, fd: i32, ret: i32| -> wasmtime::Result<i32> {
            if !(0..=2).contains(&fd) {
                return Ok(EBADF);
            }
            // fdstat: filetype u8 (2 = character device), pad, flags u16, pad,
            // rights_base u64, rights_inheriting u64.
            let mut stat = [0u8; 24];
            stat[0] = 2;
            stat[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
            wasi_try!(write_bytes(&mut caller, ret, &stat));
            Ok(SUCCESS)
        },
    )?;
    linker.func_wrap(
        WASI,
        "fd_fdstat_set_flags",
        |_: Caller<'_, HostState>, _fd: i32, _flags: i32| -> i32 { ENOTSUP },
    )?;
    linker.func_wrap(
        WASI,
        "fd_prestat_get",
        |_: Caller<'_, HostState>, _fd: i32, _ret: i32| -> i32 { EBADF },
    )?;
    linker.func_wrap(
        WASI,
        "fd_prestat_dir_name",
        |_: Caller<'_, HostState>, _fd: i32, _p: i32, _l: i32| -> i32 { EBADF },
    )?;
    linker.func_wrap(
        WASI,
        "fd_filestat_get",
        |_: Caller<'_, HostState>, _fd: i32, _ret: i32| -> i32 { EBADF },
    )?;
    linker.func_wrap(
        WASI,
        "path_open",
        |_: Caller<'_, HostState>,
         _fd: i32,
         _df: i32,
         _p: i32,
         _l: i32,
         _of: i32,
         _rb: i64,
         _ri: i64,
         _ff: i32,
         _ret: i32|
         -> i32 { ENOTCAPABLE },
    )?;
    linker.func_wrap(
        WASI,
        "path_filestat_get",
        |_: Caller<'_, HostState>, _fd: i32, _f: i32, _p: i32, _l: i32, _r: i32| -> i32 {
            ENOTCAPABLE
        },
    )?;
    linker.func_wrap(
        WASI,
        "poll_oneoff",
        |_: Caller<'_, HostState>, _i: i32, _o: i32, _n: i32, _r: i32| -> i32 { ENOTSUP },
    )?;
    linker.func_wrap(WASI, "sched_yield", |_: Caller<'_, HostState>| -> i32 {
        SUCCESS
    })?;
    linker.func_wrap(
        WASI,
        "args_sizes_get",
        |mut caller: Caller<'_, HostState>, argc: i32, size: i32| -> wasmtime::Result<i32> {
            wasi_try!(write_u32(&mut caller, argc, 0));
            wasi_try!(write_u32(&mut caller, size, 0));
            Ok(SUCCESS)
        },
    )?;
    linker.func_wrap(
        WASI,
        "args_get",
        |_: Caller<'_, HostState>, _argv: i32, _buf: i32| -> i32 { SUCCESS },
    )?;
    linker.func_wrap(
        WASI,
        "environ_sizes_get",
        |mut caller: Caller<'_, HostState>, count: i32, size: i32| -> wasmtime::Result<i32> {
            let env = environ(caller.data());
            let total: usize = env.iter().map(Vec::len).sum();
            wasi_try!(write_u32(&mut caller, count, env.len() as u32));
            wasi_try!(write_u32(&mut caller, size, total as u32));
            Ok(SUCCESS)
        },
    )?;
    linker.func_wrap(
        WASI,
        "environ_get",
        |mut caller: Caller<'_, HostState>, ptrs: i32, buf: i32| -> wasmtime::Result<i32> {
            let env = environ(caller.data());
            let mut at = buf;
            for (i, e) in env.iter().enumerate() {
                wasi_try!(write_u32(&mut caller, ptrs + 4 * i as i32, at as u32));
                wasi_try!(write_bytes(&mut caller, at, e));
                at += e.len() as i32;
            }
            Ok(SUCCESS)
        },
    )?;
    linker.func_wrap(
        WASI,
        "clock_res_get",
        |mut caller: Caller<'_, HostState>, _id: i32, ret: i32| -> wasmtime::Result<i32> {
            wasi_try!(write_bytes(&mut caller, ret, &1_000u64.to_le_bytes()));
            Ok(SUCCESS)
        },
    )?;
    linker.func_wrap(
        WASI,
        "clock_time_get",
        |mut caller: Caller<'_, HostState>,
         id: i32,
         _precision: i64,
         ret: i32|
         -> wasmtime::Result<i32> {
            let nanos = match id {
                // REALTIME, and MONOTONIC / CPU-time clocks from the same source:
                // plugins only need them to be non-decreasing in practice.
                0..=3 => SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0),
                _ => return Ok(EINVAL),
            };
            wasi_try!(write_bytes(&mut caller, ret, &nanos.to_le_bytes()));
            Ok(SUCCESS)
        },
    )?;
    linker.func_wrap(
        WASI,
        "random_get",
        |mut caller: Caller<'_, HostState>, buf: i32, len: i32| -> wasmtime::Result<i32> {
            let mut bytes = vec![0u8; len.max(0) as usize];
            rand::rng().fill_bytes(&mut bytes);
            wasi_try!(write_bytes(&mut caller, buf, &bytes));
            Ok(SUCCESS)
        },
    )?;
    linker.func_wrap(
        WASI,
        "proc_exit",
        |caller: Caller<'_, HostState>, code: i32| -> wasmtime::Result<()> {
            // Exiting ends this instance; the host treats it like a trap.
            Err(wasmtime::format_err!(
                "plugin {} called proc_exit({code})",
                caller.data().env.name
            ))
        },
    )?;
    Ok(())
}
