//! Pingora's IO bundle for `TunnelStream`, so an accepted CONNECT stream can be handed to
//! pingora-proxy as a downstream `Stream`, and an outbound one used as a virtual socket.
//!
//! What each trait reports:
//! - `Ssl`: nothing. The tunnel's TLS is below us; a digest here would turn off Pingora's
//!   h2c detection for the application bytes inside the tunnel.
//! - `Peek`: a real peek (replayed by later reads), so h2c detection works.
//! - `GetSocketDigest`: the addresses set with `set_socket_addrs` (none otherwise).
//! - `GetProxyDigest`: `user_data` set with `set_user_data` (none otherwise).
//! - `UniqueID`: a process-wide counter, in a range file descriptors do not reach.

use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::protocols::l4::virt::{VirtualSockOpt, VirtualSocket};
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType,
};
use tokio::io::AsyncWriteExt;
use tracing::debug;

use super::sniff::H2_PREFACE;
use super::stream::TunnelStream;

#[async_trait]
impl Shutdown for TunnelStream {
    async fn shutdown(&mut self) {
        if let Err(e) = AsyncWriteExt::shutdown(self).await {
            debug!(error = %e, "HBONE stream shutdown failed");
        }
    }
}

impl UniqueID for TunnelStream {
    fn id(&self) -> UniqueIDType {
        self.meta.id
    }
}

impl Ssl for TunnelStream {}

#[async_trait]
impl Peek for TunnelStream {
    /// Fills `buf` from the replay buffer; returns early (rest of `buf` untouched) when the
    /// peer ends the stream or the bytes so far cannot be the h2 preface, which is all
    /// Pingora's h2c detection needs and keeps short HTTP/1 requests from blocking here.
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        let peeked = self
            .fill_peek(buf.len(), |b| {
                let n = b.len().min(H2_PREFACE.len());
                !H2_PREFACE.starts_with(&b[..n])
            })
            .await?;
        let n = peeked.len().min(buf.len());
        buf[..n].copy_from_slice(&peeked[..n]);
        Ok(true)
    }
}

impl GetTimingDigest for TunnelStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        vec![Some(TimingDigest {
            established_ts: self.meta.established,
            ..Default::default()
        })]
    }
}

impl GetProxyDigest for TunnelStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.meta.proxy_digest.clone()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.meta.proxy_digest = Some(Arc::new(digest));
    }
}

impl GetSocketDigest for TunnelStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.meta.socket_digest.clone()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.meta.socket_digest = Some(Arc::new(digest));
    }
}

impl VirtualSocket for TunnelStream {
    /// Socket options belong to the TCP connection under the tunnel, which is shared by
    /// many streams; per-stream they are accepted and ignored.
    fn set_socket_option(&self, _opt: VirtualSockOpt) -> std::io::Result<()> {
        Ok(())
    }
}
