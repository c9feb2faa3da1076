//! Istio traffic objects in the snapshot: VirtualService `http` routes
//! compile to route candidates appended after a Service's HTTPRoute
//! candidates; DestinationRules compile to clusters (policy per Service port
//! and per subset). The serde types are `config::istio_traffic`; the runtime
//! behaviour is `crate::policy` (retries, faults), `crate::upstream` (limits,
//! ejection, LB) and the proxy.

mod destination_rule;
mod duration;
mod error;
mod hosts;
mod traffic_policy;
mod virtual_service;
mod vs_local;
mod vs_match;
mod vs_policy;

pub(crate) use destination_rule::apply_destination_rules;
pub use error::IstioConfigError;
pub(crate) use hosts::HostIndex;
pub(crate) use virtual_service::{attach_virtual_services, compile_virtual_services};
