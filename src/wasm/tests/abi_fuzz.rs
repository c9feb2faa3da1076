//! Fuzzing the host side of the ABI: a module that imports every function
//! our linker defines (proxy-wasm and WASI) and, for each request body it is
//! given, reads it as a program of calls — a function index and twelve `i32`
//! arguments each — and makes them, with whatever pointers, lengths and enum
//! values the fuzzer chose. The host must answer with statuses (or trap the
//! instance), never panic, never hang, and never touch memory outside the
//! guest's: wasmtime bounds the guest, and our accessors bound every copy.
//! Under `cargo test` the corpus is replayed and random programs run for a
//! second; `cargo bolero test` runs it longer.

use std::fmt::Write;
use std::sync::OnceLock;

use bytes::Bytes;
use wasmtime::{Extern, FuncType, ValType};

use super::*;
use crate::wasm::engine;
use crate::wasm::host::HostState;

/// `proxy_grpc_call` takes the most arguments.
const ARGS: usize = 12;
const OP_LEN: usize = 1 + 4 * ARGS;

/// Every function the linker defines, in a stable order.
fn host_functions() -> Vec<(String, String, FuncType)> {
    let linker = &engine::linker().linker;
    let mut store =
        wasmtime::Store::new(engine::engine(), HostState::new(Default::default(), 0, 0));
    let items: Vec<_> = linker
        .iter(&mut store)
        .map(|(module, name, item)| (module.to_string(), name.to_string(), item))
        .collect();
    let mut funcs: Vec<_> = items
        .into_iter()
        .filter_map(|(module, name, item)| match item {
            Extern::Func(f) => Some((module, name, f.ty(&store))),
            _ => None,
        })
        .collect();
    funcs.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    funcs
}

fn wat_type(t: &ValType) -> &'static str {
    match t {
        ValType::I32 => "i32",
        ValType::I64 => "i64",
        ValType::F32 => "f32",
        ValType::F64 => "f64",
        other => panic!("host function with a {other:?} parameter"),
    }
}

/// An argument of type `t` from the program's `i32` at `offset`.
fn load_arg(t: &ValType, offset: usize) -> String {
    let word = format!("(i32.load offset={offset} (local.get $p))");
    match t {
        ValType::I32 => word,
        ValType::I64 => format!("(i64.extend_i32_s {word})"),
        ValType::F32 => format!("(f32.convert_i32_s {word})"),
        _ => format!("(f64.convert_i32_s {word})"),
    }
}

/// The interpreter module, in WAT.
fn module_text(funcs: &[(String, String, FuncType)]) -> String {
    let get_buffer = funcs
        .iter()
        .position(|(m, n, _)| m == "env" && n == "proxy_get_buffer_bytes")
        .expect("the host defines proxy_get_buffer_bytes");
    let mut imports = String::new();
    let mut dispatch = String::new();
    for (i, (module, name, ty)) in funcs.iter().enumerate() {
        let params: Vec<_> = ty.params().collect();
        assert!(
            params.len() <= ARGS,
            "{name} takes more than {ARGS} arguments"
        );
        let sig = |prefix: &str, types: &[ValType]| {
            if types.is_empty() {
                String::new()
            } else {
                let list: Vec<_> = types.iter().map(wat_type).collect();
                format!(" ({prefix} {})", list.join(" "))
            }
        };
        let results: Vec<_> = ty.results().collect();
        writeln!(
            imports,
            r#"  (import "{module}" "{name}" (func $f{i}{}{}))"#,
            sig("param", &params),
            sig("result", &results)
        )
        .expect("writes to a String");
        let args: String = params
            .iter()
            .enumerate()
            .map(|(j, t)| load_arg(t, 1 + 4 * j))
            .collect::<Vec<_>>()
            .join(" ");
        let drops = "(drop)".repeat(results.len());
        writeln!(
            dispatch,
            "    (if (i32.eq (local.get $idx) (i32.const {i})) (then (call $f{i} {args}) {drops}))"
        )
        .expect("writes to a String");
    }
    let n = funcs.len();
    format!(
        r#"(module
{imports}
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
  (func (export "proxy_abi_version_0_2_1"))
  ;; A bump allocator over the second page that starts again when full;
  ;; a request it cannot meet gets 0, which the host must cope with too.
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $ptr i32)
    (if (i32.gt_u (local.get $n) (i32.const 32768)) (then (return (i32.const 0))))
    (if (i32.gt_u (i32.add (global.get $heap) (local.get $n)) (i32.const 131072))
      (then (global.set $heap (i32.const 65536))))
    (local.set $ptr (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $ptr))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func $call (param $p i32)
    (local $idx i32)
    (local.set $idx (i32.rem_u (i32.load8_u (local.get $p)) (i32.const {n})))
{dispatch}  )
  ;; The body is the program: fetch it, then make its calls in order.
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
    (local $p i32)
    (local $end i32)
    (if (i32.ne (call $f{get_buffer} (i32.const 0) (i32.const 0) (local.get 1) (i32.const 16) (i32.const 20)) (i32.const 0))
      (then (return (i32.const 0))))
    (local.set $p (i32.load (i32.const 16)))
    (local.set $end (i32.add (local.get $p) (i32.load (i32.const 20))))
    (block $done
      (loop $next
        (br_if $done (i32.gt_u (i32.add (local.get $p) (i32.const {OP_LEN})) (local.get $end)))
        (call $call (local.get $p))
        (local.set $p (i32.add (local.get $p) (i32.const {OP_LEN})))
        (br $next)))
    (i32.const 0))
)"#
    )
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    set: PluginSet,
    _host: Arc<WasmHost>,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let (host, _) = host();
        let wasm = wat::parse_str(module_text(&host_functions())).expect("generated WAT is valid");
        let file = write_module(dir.path(), "abi-fuzz", &wasm);
        let doc = plugin_yaml("abi-fuzz", &file, "  failStrategy: FAIL_OPEN\n");
        let set = compile(dir.path(), &[doc], &host).expect("the interpreter module loads");
        Fixture {
            runtime,
            set,
            _host: host,
            _dir: dir,
        }
    })
}

/// Any program of host calls: the request gets a verdict in bounded time.
#[test]
fn host_calls_with_arbitrary_arguments() {
    bolero::check!().for_each(|program: &[u8]| {
        let f = fixture();
        let verdict = f.runtime.block_on(async {
            let chain = f.set.chain_for(&reviews(), 9080);
            let mut filters = HttpFilters::start(chain, props(), None);
            let mut headers = HeaderMap::new();
            headers.insert("x-seed", "1".parse().expect("literal"));
            let _ = filters.on_request_headers(&mut headers, false).await;
            let mut body = Some(Bytes::copy_from_slice(program));
            let verdict = tokio::time::timeout(STEP, filters.on_request_body(&mut body, true))
                .await
                .expect("the body callback finishes");
            filters.on_log();
            verdict
        });
        // Continue, a local answer the program asked for, or (after a trap)
        // FAIL_OPEN's continue: anything but a hang or a panic is fine.
        let _ = verdict;
    });
}

#[test]
fn the_interpreter_imports_every_host_function() {
    let funcs = host_functions();
    let text = module_text(&funcs);
    assert!(funcs.len() > 40, "{} host functions", funcs.len());
    for (module, name, _) in &funcs {
        assert!(text.contains(&format!(r#""{module}" "{name}""#)), "{name}");
    }
}
