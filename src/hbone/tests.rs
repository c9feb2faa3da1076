//! HBONE tests over real loopback sockets with `rcgen` certificates.

mod inbound;
mod outbound;
mod support;
mod units;
