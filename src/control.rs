//! The control plane, beside the data plane: what runs against a cluster rather than in
//! the request path. The istioctl-style waypoint commands ([`cli`]), the GatewayClass
//! controller that turns Gateways into running waypoints ([`controller`]), and the one
//! typed mirror of the waypoint Gateway both of them read and write ([`gateway`]).
//!
//! Connecting to the API server is the config layer's (`config::source::kube::client`),
//! shared with the `--kube` config source; nothing in the data plane imports this module.

pub mod cli;
pub mod controller;
pub mod gateway;
