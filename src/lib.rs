//! waypoint: a Pingora-based L7 waypoint proxy for Istio-ambient-style meshes.
//!
//! The layers, the request path and the module map are described in
//! `ARCHITECTURE.md`; `main.rs` only parses the command line and calls into
//! these modules.

pub mod addr;
pub mod admin;
pub mod authz;
pub mod check;
pub mod config;
pub mod control;
pub mod demo;
pub mod echo;
pub mod hbone;
pub mod identity;
pub mod inbound;
pub mod overload;
pub mod policy;
pub mod proxy;
pub mod routing;
pub mod server;
pub mod settings;
pub mod store;
pub mod telemetry;
pub mod telemetry_api;
#[cfg(any(test, feature = "testing"))]
pub mod test_helpers;
pub mod upstream;
pub mod wasm;
