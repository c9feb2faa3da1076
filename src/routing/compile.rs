//! The Gateway API compiler: HTTPRoute and GRPCRoute rules → the runtime types of `table`
//! (matches, filters, backends, policy), backend references resolved against
//! the destinations being compiled, and GAMMA attachment of the rules to
//! Service ports. Istio's VirtualService / DestinationRule compile in
//! `istio`; the phases are run by `build`.

mod attach;
mod backends;
pub(crate) mod duration;
pub(crate) mod filters;
mod grpc_route;
pub(crate) mod matches;
mod resolve;
mod route;
mod route_policy;

pub(crate) use attach::{attach, RouteToAttach};
pub(crate) use grpc_route::compile_grpc_route;
pub(crate) use resolve::{KeyIndex, Resolver};
pub(crate) use route::compile_route;
