//! The compiled route table: the runtime types a snapshot holds per Service
//! port and the request path reads — matches, filters, backends, the route
//! policy, and rules sorted by precedence. A leaf: it knows nothing of the
//! API objects it was compiled from (that is `compile` and `istio`) nor of
//! the decision built from it (`decision`).

pub(crate) mod backend;
pub(crate) mod cors;
pub(crate) mod filters;
pub(crate) mod headers;
pub(crate) mod matcher;
pub(crate) mod regex_rewrite;
pub(crate) mod route_policy;
pub(crate) mod rule;
pub(crate) mod tcp;
