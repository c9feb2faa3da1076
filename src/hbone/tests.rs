//! HBONE tests over real loopback sockets with `rcgen` certificates.

mod fuzz;
mod inbound;
mod keepalive;
mod outbound;
mod pingora;
mod support;
mod units;
