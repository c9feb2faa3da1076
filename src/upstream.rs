//! Upstream: how the waypoint reaches endpoints. [`dial`] is the one place
//! that decides plain TCP or HBONE for every upstream connection.

pub mod dial;
