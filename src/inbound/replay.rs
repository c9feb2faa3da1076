//! `Replay`: keeps a copy of the bytes read from a downstream connection while a
//! request head is being read, so the request can be handed, unread, to another
//! HTTP/1.1 session.
//!
//! The HTTP/1.1 fast path (`proxy::direct`) reads a request head before it knows
//! whether it can serve it. When it cannot (a Wasm plugin, a mirror, a body, an
//! error to answer), Pingora's full proxy takes over; Pingora has no entry point
//! for a request head that was already parsed, so the fast path gives it the raw
//! bytes instead, as the "pipelined prefix" of a fresh session. Only the head read
//! is recorded: a few hundred bytes per request, and none once the fast path
//! has decided.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::BytesMut;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::{SslDigest, TlsRef, ALPN};
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The shared record of one connection's reads (see the module docs).
#[derive(Debug, Default)]
pub struct ReadLog {
    /// `Some` while recording.
    bytes: Mutex<Option<BytesMut>>,
}

impl ReadLog {
    /// Starts a new record with the bytes a session will parse before reading more
    /// (a pipelined prefix), or none.
    pub fn start(&self, already_buffered: Option<&[u8]>) {
        let mut record = BytesMut::new();
        if let Some(prefix) = already_buffered {
            record.extend_from_slice(prefix);
        }
        *self.lock() = Some(record);
    }

    /// Whether anything was read since [`ReadLog::start`].
    pub fn has_bytes(&self) -> bool {
        self.lock().as_ref().is_some_and(|b| !b.is_empty())
    }

    /// Stops recording and returns what was recorded since [`ReadLog::start`].
    pub fn take(&self) -> BytesMut {
        self.lock().take().unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<BytesMut>> {
        // A panic while holding this lock leaves valid bytes behind.
        self.bytes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A downstream stream whose reads are copied into a [`ReadLog`] while it records.
/// It wraps the boxed stream a Pingora app is handed, so it delegates through
/// the box (see the trait impls at the end).
#[derive(Debug)]
pub struct Replay<S = Stream> {
    inner: S,
    log: Arc<ReadLog>,
}

impl<S> Replay<S> {
    pub fn new(inner: S, log: Arc<ReadLog>) -> Self {
        Replay { inner, log }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            if let Some(record) = self.log.lock().as_mut() {
                record.extend_from_slice(&buf.filled()[before..]);
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for Replay {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

impl UniqueID for Replay {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Replay {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

#[async_trait]
impl Peek for Replay {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

impl GetTimingDigest for Replay {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
}

impl GetProxyDigest for Replay {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for Replay {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn records_only_between_start_and_take() {
        let log = Arc::new(ReadLog::default());
        let input: &[u8] = b"GET / HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
        let mut s = Replay::new(input, log.clone());
        let mut buf = [0u8; 18];
        s.read_exact(&mut buf).await.unwrap();
        assert!(log.take().is_empty(), "nothing is recorded before start");

        log.start(Some(b"pre"));
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        assert_eq!(&log.take()[..], b"preGET /b HTTP/1.1\r\n\r\n");
        assert!(log.take().is_empty(), "take ends the record");
    }
}
