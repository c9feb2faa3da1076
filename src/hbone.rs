//! HBONE: HTTP/2 CONNECT over mutual TLS, as ztunnel speaks it (see `hbone-notes.md`).
//!
//! Inbound ([`serve_inbound`]): terminates HBONE on port 15008 and hands each accepted
//! CONNECT stream to a [`ConnectHandler`] as a [`TunnelStream`], which is also a Pingora
//! downstream `Stream`. Outbound ([`HbonePool`], [`HboneConnector`]): opens CONNECT streams
//! to destination ztunnels over pooled connections, usable as Pingora's `custom_l4`.
//! [`proxy_protocol`] reads the PROXY v2 header of the "sandwich" binding.
//!
//! Certificates and peer verification live in `identity`; what happens inside a tunnel
//! (HTTP parsing, routing) lives in the proxy.

mod connector;
mod error;
mod h2_config;
mod headers;
mod inbound;
mod keepalive;
mod pingora_io;
mod pool;
pub mod proxy_protocol;
mod request;
mod sniff;
mod stream;
mod stream_meta;
mod target;

#[cfg(test)]
mod tests;

pub use connector::HboneConnector;
pub use error::HboneError;
pub use h2_config::H2Settings;
pub use headers::{Baggage, Forwarded, OutboundHeaders};
pub use inbound::{serve_inbound, InboundConfig};
pub use keepalive::{LeaseRef, OutboundTunnel, TunnelKeepalive, TunnelKey, TunnelLease};
pub use pool::{HbonePool, PoolConfig};
pub use request::{ConnectHandler, TunnelRequest};
pub use sniff::Sniffed;
pub use stream::TunnelStream;
pub use target::{ConnectTarget, TargetParseError};
