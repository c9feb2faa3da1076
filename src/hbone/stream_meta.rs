//! What Pingora asks of a tunnel stream besides bytes: a unique id, when it was
//! established, and the socket and proxy digests it reports.
//!
//! Owns the values and how they are built; `stream.rs` carries them in each `TunnelStream`
//! and `pingora_io.rs` hands them to Pingora. Kept below both so neither imports the other.

use std::any::Any;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use pingora_core::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::SocketDigest;
use pingora_http::ResponseHeader;

/// What Pingora asks of a downstream connection besides bytes.
pub(crate) struct StreamMeta {
    pub(crate) id: i32,
    pub(crate) established: SystemTime,
    pub(crate) socket_digest: Option<Arc<SocketDigest>>,
    pub(crate) proxy_digest: Option<Arc<ProxyDigest>>,
}

impl StreamMeta {
    /// A fresh id, established now, no digests yet.
    pub(crate) fn new() -> Self {
        StreamMeta {
            id: next_stream_id(),
            established: SystemTime::now(),
            socket_digest: None,
            proxy_digest: None,
        }
    }
}

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// Ids live in `[2^30, 2^31)`, far above any file descriptor, so they never collide with
/// real sockets' ids; the counter wraps within that range.
fn next_stream_id() -> i32 {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed) & 0x3FFF_FFFF;
    (0x4000_0000 | n) as i32
}

/// A proxy digest that carries `data` as `user_data` (the response header is unused).
pub(crate) fn proxy_digest_with(data: Box<dyn Any + Send + Sync>) -> Arc<ProxyDigest> {
    let response = ResponseHeader::build(200, None).expect("200 is a valid status");
    Arc::new(ProxyDigest::new(Box::new(response), Some(data)))
}

/// A socket digest reporting `peer` and `local` (also as the original destination).
pub(crate) fn socket_digest(
    peer: std::net::SocketAddr,
    local: Option<std::net::SocketAddr>,
) -> Arc<SocketDigest> {
    // No file descriptor backs a tunnel stream; -1 makes fd-based queries fail softly.
    let digest = SocketDigest::from_raw_fd(-1);
    let _ = digest.peer_addr.set(Some(PingoraAddr::Inet(peer)));
    let _ = digest.local_addr.set(local.map(PingoraAddr::Inet));
    let _ = digest.original_dst.set(local.map(PingoraAddr::Inet));
    Arc::new(digest)
}
