//! proxy-wasm extension filters on wasmtime: an ABI 0.2.1 host (0.2.0
//! modules load too), Istio's WasmPlugin compiled into ordered plugin
//! chains, and the per-request [`HttpFilters`] the proxy drives from its
//! phases. Pingora types stay out of this module: headers come in through
//! [`HeaderAccess`] (on top of `routing::HeaderEdit`), bodies as `Bytes`.
//!
//! How the proxy uses it:
//! - at startup: `let host = WasmHost::new(&registry, HostOptions { .. })`;
//! - on each config load: `compile_plugins(&resources, dir, &host)?` (off the
//!   request path), stored next to the routing snapshot (`PluginSet: PartialEq`,
//!   so an unchanged reload is a no-op);
//! - `request_filter`: `set.chain_for(&service, port)`; if non-empty,
//!   `HttpFilters::start(chain, props, Some(caller))` into the CTX, then
//!   `on_request_headers(&mut req, eos).await`, apply `request_line()`;
//!   `Verdict::Respond` → write the local response, `Reset` → error;
//! - `request_body_filter`: `on_request_body(&mut body, eos).await`;
//! - `upstream_peer`: `set_upstream(addr)`;
//! - `response_filter`: `on_response_headers(status, &mut resp, eos).await`,
//!   apply `response_status()`;
//! - `response_body_filter`: `on_response_body(&mut body, eos)`;
//! - `logging`: `on_log()` (dropping the filters does the same).

mod abi;
mod engine;
mod error;
mod filter;
mod host;
mod http_call;
mod imports;
mod instance;
mod load;
mod metrics;
mod plugin;
mod plugin_env;
mod plugin_set;
mod properties;
mod request;
mod shared;
mod wasi;

pub use error::WasmError;
pub use filter::{HeaderAccess, HttpFilters, RequestLine, Verdict};
#[cfg(any(test, feature = "testing"))]
pub use http_call::HyperHttpCaller;
pub use http_call::{
    call_over, parse_cluster, HttpCallError, HttpCallRequest, HttpCallResponse, HttpCaller,
};
pub use metrics::{FailureReason, WasmMetrics};
pub use plugin_env::HostOptions;
pub use plugin_set::{compile_plugins, Plugin, PluginSet, WasmHost};
pub use request::{LocalResponse, RequestProps};

#[cfg(test)]
mod tests;
