//! The Gateway API compiler: HTTPRoute rules → the runtime types of `table`
//! (matches, filters, backends, policy), backend references resolved against
//! the destinations being compiled, and GAMMA attachment of the rules to
//! Service ports. Istio's VirtualService / DestinationRule compile in
//! `istio`; the phases are run by `build`.

mod attach;
mod backends;
mod cors;
pub(crate) mod duration;
pub(crate) mod filters;
pub(crate) mod matches;
mod resolve;
mod route;
mod route_policy;

pub(crate) use attach::attach;
pub(crate) use resolve::{KeyIndex, Resolver};
pub(crate) use route::compile_route;
