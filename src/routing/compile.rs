//! The Gateway API compiler: HTTPRoute and GRPCRoute rules and TCPRoutes →
//! the runtime types of `table` (matches, filters, backends, policy), backend
//! references resolved against the destinations being compiled (cross-namespace
//! ones checked against ReferenceGrants), and GAMMA attachment of the routes to
//! Service ports. Istio's VirtualService / DestinationRule compile in
//! `istio`; the phases are run by `build`.

mod attach;
mod backends;
mod cors;
pub(crate) mod duration;
pub(crate) mod filters;
mod grants;
mod grpc_route;
pub(crate) mod matches;
mod resolve;
mod route;
mod route_policy;
mod tcp_route;

pub(crate) use attach::{attach, RouteToAttach};
pub(crate) use grants::ReferenceGrants;
pub(crate) use grpc_route::compile_grpc_route;
pub(crate) use resolve::{KeyIndex, Resolver};
pub(crate) use route::compile_route;
pub(crate) use tcp_route::compile_tcp_route;
