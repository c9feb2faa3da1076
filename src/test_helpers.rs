//! Shared test fakes, for unit tests, `tests/` and benches alike (behind the `testing`
//! feature outside `cargo test`): in-process stand-ins for what the waypoint talks to.
//!
//! - [`fake_api`]: a Kubernetes API server speaking the real wire format, for the `--kube`
//!   config source, the CLI and the controller.

pub mod fake_api;
