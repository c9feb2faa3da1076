//! Kubernetes integration: the istioctl-style CLI, the GatewayClass
//! controller, and the API-server config source.

pub mod cli;
pub mod client;
pub mod controller;
pub mod gateway;
pub mod source;

#[cfg(any(test, feature = "testing"))]
pub mod testing;
