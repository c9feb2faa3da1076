//! Shared test fakes, for unit tests, `tests/` and benches alike (behind the `testing`
//! feature outside `cargo test`): in-process stand-ins for what the waypoint talks to.
//! This is their one home; nothing outside it imports it except under `#[cfg(test)]`.
//!
//! - [`fake_api`]: a Kubernetes API server speaking the real wire format, for the `--kube`
//!   config source, the CLI and the controller.
//! - [`ca`]: a test mesh root ([`ca::TestCa`]) minting SPIFFE certificates and cert dirs,
//!   and a fake Istio CA ([`ca::FakeCa`]) serving it over gRPC.
//! - [`ztunnel`]: a fake destination ztunnel ([`ztunnel::FakeZtunnel`]) and the headers a
//!   source ztunnel sends with a CONNECT.
//! - [`grpc`]: a gRPC workload (`test.Echo`: unary, server-, client- and bidi-streaming
//!   methods, each reply naming its backend) and its client.
//! - [`wasm_filters`]: our proxy-wasm filters in `wasm-filters/`, built once per process.
//!
//! Not here: the echo workload (`crate::echo`), which `waypoint demo` runs as its pods and
//! so ships in every build; routing's table-test builders (`routing/test_support.rs`),
//! private to routing's unit tests; and the integration tests' own client and in-process
//! waypoint (`tests/common`).

pub mod ca;
pub mod fake_api;
pub mod grpc;
pub mod jwt;
pub mod wasm_filters;
pub mod ztunnel;
