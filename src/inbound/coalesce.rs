//! `Coalesce`: write coalescing for downstream connections we accept ourselves.
//!
//! Pingora's h1 server writes a response head and its body with separate writes and
//! flushes at the end. Its own listener hands it a stream with a small write buffer, so
//! the two leave in one `sendto`; a stream built from an accepted socket
//! (`l4::Stream::from(TcpStream)`) has none, and Pingora offers no public way to add one.
//! Unbuffered, every response costs one more syscall and one more TCP segment (or one
//! more HTTP/2 DATA frame inside an HBONE tunnel). This wrapper buffers writes until a
//! flush, a shutdown, or the buffer filling up, and hands a full buffer plus the next
//! write to the kernel as one vectored write.

use std::fmt;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use async_trait::async_trait;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::tls::{SslDigest, TlsRef, ALPN};
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::debug;

/// Bytes held before a write goes through: a response head plus a 1 KiB body.
/// Allocated on the first write of a response, freed when it is flushed.
pub const COALESCE_CAPACITY: usize = 4096;

/// A downstream stream whose writes are held until flush (see the module docs).
pub struct Coalesce<S> {
    inner: S,
    buf: Vec<u8>,
}

impl<S> Coalesce<S> {
    pub fn new(inner: S) -> Self {
        Coalesce {
            inner,
            buf: Vec::new(),
        }
    }
}

impl<S: AsyncWrite + Unpin> Coalesce<S> {
    /// Writes out everything held, then (when `next` is not empty) as much of `next` as
    /// the same vectored write takes. Returns how many bytes of `next` went out.
    fn poll_drain(&mut self, cx: &mut Context<'_>, next: &[u8]) -> Poll<io::Result<usize>> {
        while !self.buf.is_empty() {
            let held = self.buf.len();
            let n = if next.is_empty() || !self.inner.is_write_vectored() {
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf))?
            } else {
                let slices = [IoSlice::new(&self.buf), IoSlice::new(next)];
                ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, &slices))?
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if n >= held {
                self.buf.clear();
                return Poll::Ready(Ok(n - held));
            }
            self.buf.drain(..n);
        }
        Poll::Ready(Ok(0))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesce<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesce<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.buf.len() + data.len() <= COALESCE_CAPACITY {
            if this.buf.capacity() == 0 {
                this.buf.reserve_exact(COALESCE_CAPACITY);
            }
            this.buf.extend_from_slice(data);
            return Poll::Ready(Ok(data.len()));
        }
        // Does not fit: out with what is held, together with (part of) `data`.
        let taken = ready!(this.poll_drain(cx, data))?;
        if taken > 0 {
            return Poll::Ready(Ok(taken));
        }
        if data.len() < COALESCE_CAPACITY {
            this.buf.extend_from_slice(data);
            return Poll::Ready(Ok(data.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_drain(cx, &[]))?;
        // A flush ends a response: an idle keep-alive connection holds no buffer (one
        // allocation per response instead of 4 KiB per open connection).
        this.buf = Vec::new();
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_drain(cx, &[]))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl<S: Shutdown + AsyncWrite + Unpin + Send> Shutdown for Coalesce<S> {
    async fn shutdown(&mut self) {
        if let Err(e) = std::future::poll_fn(|cx| self.poll_drain(cx, &[])).await {
            debug!(error = %e, "flushing before shutdown failed");
        }
        self.inner.shutdown().await;
    }
}

impl<S: UniqueID> UniqueID for Coalesce<S> {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl<S: Ssl> Ssl for Coalesce<S> {
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
impl<S: Peek + Send> Peek for Coalesce<S> {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

impl<S: GetTimingDigest> GetTimingDigest for Coalesce<S> {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
}

impl<S: GetProxyDigest> GetProxyDigest for Coalesce<S> {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl<S: GetSocketDigest> GetSocketDigest for Coalesce<S> {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

impl<S: fmt::Debug> fmt::Debug for Coalesce<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coalesce")
            .field("inner", &self.inner)
            .field("held", &self.buf.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Records each write the wrapper lets through.
    #[derive(Default)]
    struct Writes {
        calls: Vec<Vec<u8>>,
        vectored: bool,
        /// Accept at most this many bytes per call (short writes).
        limit: Option<usize>,
    }

    impl AsyncWrite for Writes {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            b: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = self.limit.unwrap_or(usize::MAX).min(b.len());
            self.calls.push(b[..n].to_vec());
            Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            let n = self.limit.unwrap_or(usize::MAX).min(all.len());
            self.calls.push(all[..n].to_vec());
            Poll::Ready(Ok(n))
        }
        fn is_write_vectored(&self) -> bool {
            self.vectored
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn joined(w: &Writes) -> Vec<u8> {
        w.calls.concat()
    }

    #[tokio::test]
    async fn a_head_and_a_small_body_leave_in_one_write_at_flush() {
        let mut s = Coalesce::new(Writes::default());
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
            .await
            .unwrap();
        s.write_all(b"hello").await.unwrap();
        assert!(s.inner.calls.is_empty(), "nothing written before flush");
        s.flush().await.unwrap();
        assert_eq!(s.inner.calls.len(), 1);
        assert!(joined(&s.inner).ends_with(b"\r\n\r\nhello"));
    }

    #[tokio::test]
    async fn a_large_body_goes_out_with_the_held_head_in_one_vectored_write() {
        let mut s = Coalesce::new(Writes {
            vectored: true,
            ..Default::default()
        });
        let body = vec![b'x'; 3 * COALESCE_CAPACITY];
        s.write_all(b"head").await.unwrap();
        s.write_all(&body).await.unwrap();
        s.flush().await.unwrap();
        assert_eq!(s.inner.calls.len(), 1, "head and body in one call");
        assert_eq!(joined(&s.inner).len(), 4 + body.len());
    }

    #[tokio::test]
    async fn short_writes_lose_and_reorder_nothing() {
        let mut s = Coalesce::new(Writes {
            vectored: true,
            limit: Some(7),
            ..Default::default()
        });
        let mut want = Vec::new();
        for i in 0..50u8 {
            let chunk = vec![i; 1 + (i as usize * 397) % (2 * COALESCE_CAPACITY)];
            s.write_all(&chunk).await.unwrap();
            want.extend_from_slice(&chunk);
        }
        s.shutdown().await.unwrap();
        assert_eq!(joined(&s.inner), want);
    }

    #[tokio::test]
    async fn without_vectored_writes_the_held_bytes_go_first() {
        let mut s = Coalesce::new(Writes::default());
        s.write_all(b"head").await.unwrap();
        let body = vec![b'y'; COALESCE_CAPACITY + 1];
        s.write_all(&body).await.unwrap();
        s.flush().await.unwrap();
        assert_eq!(s.inner.calls[0], b"head");
        assert_eq!(joined(&s.inner)[4..], body[..]);
    }
}
