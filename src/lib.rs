//! waypoint: a Pingora-based L7 waypoint proxy for Istio-ambient-style meshes.
//!
//! The request path and module map are described in `design.md`; `main.rs`
//! only parses the command line and calls into these modules.

pub mod admin;
pub mod check;
pub mod config;
pub mod demo;
pub mod echo;
pub mod hbone;
pub mod identity;
pub mod kube;
pub mod policy;
pub mod proxy;
pub mod routing;
pub mod server;
pub mod settings;
pub mod store;
pub mod telemetry;
pub mod upstream;
pub mod wasm;
