//! Routing: compiles loaded [`config::Resources`](crate::config::Resources)
//! into an immutable [`Snapshot`] and answers, per request, "which Service,
//! which route, which backend, which endpoint set".
//!
//! Layers, lowest first (a file only uses files in its own or a lower layer):
//! - leaves: `error`, `options`, `route_name`, `route_status` (the
//!   `ResolvedRefs` verdict per route), `request`, `service` (the
//!   destinations), and `table/` (the compiled runtime types: matches,
//!   filters, backends, route policy, rules and route tables);
//! - `snapshot` (the compiled state and its destination lookups);
//! - `decision` (`Snapshot::route`: GAMMA producer vs consumer routes, match
//!   precedence, filters, weighted backend choice), `tcp` (`Snapshot::route_tcp`:
//!   the TCPRoute backend of one connection) and `dump` (`/config_dump`);
//! - the compilers: `discovery/` (Services, EndpointSlices, Pods,
//!   ServiceEntries → destinations and endpoints), `compile/` (Gateway API
//!   HTTPRoute, TCPRoute, ReferenceGrant), `istio/` (VirtualService, DestinationRule);
//! - `build` (`Snapshot::compile`: runs the compilers in order).
//!
//! It holds no Pingora types: the proxy adapts a [`RouteDecision`] into its
//! own vocabulary. Endpoint sets and their load-balancing state are
//! `crate::upstream`'s; authorization, retries and connection pools live
//! elsewhere. This file only declares modules and re-exports.

mod build;
mod compile;
mod decision;
mod discovery;
mod dump;
mod error;
mod istio;
mod options;
mod request;
mod route_name;
mod route_status;
mod service;
mod snapshot;
mod table;
pub(crate) use table::matcher::percent_decode;
mod tcp;
#[cfg(test)]
mod test_support;

pub use compile::duration::parse_duration;
pub use decision::{ForwardPlan, LocalReply, RouteDecision};
pub use error::RouteConfigError;
pub use istio::IstioConfigError;
pub use options::CompileOptions;
pub use request::RequestInfo;
pub use route_name::{RouteKind, RouteName};
pub use route_status::{RefReason, RouteStatus, UnresolvedRef};
pub use service::{DestinationPort, ServiceKind, ServicePortTarget, ServiceTarget, TargetPort};
pub use snapshot::{Attachment, Snapshot};
pub use table::filters::{Mirror, Rewrite};
pub use table::headers::{HeaderEdit, HeaderModifier};
pub use table::matcher::{
    CompiledMatch, HeaderMatch, PathMatch, Pattern, QueryParamMatch, ValueMatch,
};
pub use table::route_policy::RoutePolicy;
pub use tcp::TcpDecision;

#[cfg(test)]
mod tests;
