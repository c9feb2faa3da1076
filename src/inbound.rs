//! Inbound: how connections reach the proxy. Accept loops for the plain
//! listener (with its h2c sniff), HBONE CONNECT streams and Istio's
//! PROXY-protocol binding; who the caller is ([`Downstream`]); and L4
//! passthrough for streams that are not HTTP. Everything HTTP is handed to
//! a Pingora app (the proxy) through [`listener::serve_stream`]; this layer
//! never looks inside a request.

pub mod coalesce;
pub mod downstream;
pub mod listener;
pub mod passthrough;
pub mod proxy_protocol;
pub mod replay;
pub mod tunnel;

pub use downstream::{Caller, Downstream};
