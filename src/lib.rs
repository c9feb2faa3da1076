//! waypoint: a Pingora-based L7 waypoint proxy for Istio-ambient-style meshes.
//!
//! The request path and module map are described in `design.md`; `main.rs`
//! only parses the command line and calls into these modules.

pub mod config;
pub mod hbone;
pub mod identity;
