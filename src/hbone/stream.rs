//! `TunnelStream`: one HBONE CONNECT stream as a byte stream (`AsyncRead + AsyncWrite`).
//!
//! Owns HTTP/2 flow control (capacity is released as the reader consumes bytes, and writes
//! wait for send capacity), half-close (END_STREAM on shutdown, EOF on the peer's
//! END_STREAM), END_STREAM on drop, and a replay buffer for peeking. The Pingora trait
//! impls live in `pingora_io.rs`, the metadata they report in `stream_meta.rs`, and the
//! protocol sniffing in `sniff.rs`.

use std::any::Any;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use h2::{RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::stream_meta::{self, StreamMeta};

/// Largest chunk handed to h2 per write; h2 splits it into frames of the peer's
/// `max_frame_size`. Bounds how much send capacity one write reserves.
const MAX_WRITE_CHUNK: usize = 1024 * 1024;

/// An HBONE CONNECT stream (inbound or outbound) as a bidirectional byte stream.
///
/// Reads return the peer's DATA; EOF when the peer sends END_STREAM. `poll_shutdown` sends
/// END_STREAM (a half-close: reading continues). Dropping the stream without shutdown also
/// sends END_STREAM, so data already written is delivered rather than discarded by a reset.
///
/// Also implements Pingora's IO traits (see `pingora_io.rs`), so `Box::new(stream)` is a
/// `pingora_core::protocols::Stream`.
pub struct TunnelStream {
    send: SendStream<Bytes>,
    recv: RecvStream,
    /// Received bytes not yet handed to the reader (rest of a frame, or peeked bytes).
    /// Their flow-control capacity is released only when read.
    buffered: Bytes,
    recv_eof: bool,
    end_sent: bool,
    pub(crate) meta: StreamMeta,
    /// Kept alive as long as the stream (e.g. the outbound pool's stream-count slot).
    _guard: Option<Box<dyn Send + Sync>>,
}

impl TunnelStream {
    pub(crate) fn new(send: SendStream<Bytes>, recv: RecvStream) -> Self {
        TunnelStream {
            send,
            recv,
            buffered: Bytes::new(),
            recv_eof: false,
            end_sent: false,
            meta: StreamMeta::new(),
            _guard: None,
        }
    }

    /// Ties `guard` to the stream's lifetime.
    pub(crate) fn hold(&mut self, guard: Box<dyn Send + Sync>) {
        self._guard = Some(guard);
    }

    /// The HTTP/2 stream id (for logs).
    pub fn stream_id(&self) -> u32 {
        self.send.stream_id().as_u32()
    }

    /// Attaches caller data that Pingora exposes as `ProxyDigest::user_data`
    /// (`session.digest()` → `proxy_digest` → `user_data`); downcast it there.
    pub fn set_user_data(&mut self, data: Box<dyn Any + Send + Sync>) {
        self.meta.proxy_digest = Some(stream_meta::proxy_digest_with(data));
    }

    /// Sets what Pingora reports as the connection's peer (`session.client_addr()`) and
    /// local (`session.server_addr()`) addresses. Inbound streams start with the original
    /// client (or the ztunnel) as peer and the CONNECT target as local address.
    pub fn set_socket_addrs(
        &mut self,
        peer: std::net::SocketAddr,
        local: Option<std::net::SocketAddr>,
    ) {
        self.meta.socket_digest = Some(stream_meta::socket_digest(peer, local));
    }

    /// Buffers received bytes until `want` are available, the peer ends the stream, or
    /// `enough` says the bytes so far decide the question. Consumes nothing: later reads
    /// replay the buffer.
    pub(crate) async fn fill_peek(
        &mut self,
        want: usize,
        enough: impl Fn(&[u8]) -> bool,
    ) -> io::Result<&[u8]> {
        while self.buffered.len() < want && !self.recv_eof && !enough(&self.buffered) {
            match std::future::poll_fn(|cx| self.recv.poll_data(cx)).await {
                Some(Ok(data)) => {
                    if self.buffered.is_empty() {
                        self.buffered = data;
                    } else {
                        let mut joined = BytesMut::with_capacity(self.buffered.len() + data.len());
                        joined.extend_from_slice(&self.buffered);
                        joined.extend_from_slice(&data);
                        self.buffered = joined.freeze();
                    }
                }
                Some(Err(e)) => return Err(h2_to_io(e)),
                None => self.recv_eof = true,
            }
        }
        Ok(&self.buffered)
    }

    /// Hands buffered bytes to `buf` and releases their flow-control capacity.
    fn drain_buffered(&mut self, buf: &mut ReadBuf<'_>) -> io::Result<()> {
        let n = buf.remaining().min(self.buffered.len());
        buf.put_slice(&self.buffered[..n]);
        self.buffered.advance(n);
        self.recv
            .flow_control()
            .release_capacity(n)
            .map_err(h2_to_io)
    }

    fn send_end_stream(&mut self) -> Result<(), h2::Error> {
        if self.end_sent {
            return Ok(());
        }
        self.end_sent = true;
        self.send.reserve_capacity(0);
        self.send.send_data(Bytes::new(), true)
    }
}

impl TunnelStream {
    /// Between exchanges: nothing unread, both directions open. What a stream must be
    /// to be kept for another request.
    pub(crate) fn is_idle(&self) -> bool {
        self.buffered.is_empty() && !self.recv_eof && !self.end_sent
    }

    /// For a stream that sat idle: still idle, and the peer has neither ended it, reset
    /// it, nor sent anything unasked (which would mean it is not where we think it is).
    /// Never waits.
    pub(crate) fn is_reusable(&mut self) -> bool {
        if !self.is_idle() || self.recv.is_end_stream() {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        self.recv.poll_data(&mut cx).is_pending()
    }

    /// Ends our side with END_STREAM and keeps the stream until the peer ends its side
    /// too (or `DRAIN_LIMIT` passes), as ztunnel closes a tunnel. Dropping a stream the
    /// peer has not ended makes h2 reset it (RST_STREAM CANCEL), which ztunnel logs as
    /// an error on every connection.
    pub(crate) fn close_gracefully(mut self) {
        if self.send_end_stream().is_err() || self.recv_eof {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let drain = async {
                let mut sink = [0u8; 2048];
                while let Ok(n) = tokio::io::AsyncReadExt::read(&mut self, &mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(DRAIN_LIMIT, drain).await;
        });
    }
}

/// How long a closed stream waits for the peer's END_STREAM before it is reset.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Maps an h2 error to the I/O error a byte-stream user expects.
pub(crate) fn h2_to_io(e: h2::Error) -> io::Error {
    if e.is_io() {
        return e
            .into_io()
            .unwrap_or_else(|| io::Error::other("BUG: h2 io error without io"));
    }
    let kind = if e.is_reset() {
        io::ErrorKind::ConnectionReset
    } else if e.is_go_away() {
        io::ErrorKind::ConnectionAborted
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(kind, e)
}

impl AsyncRead for TunnelStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.buffered.is_empty() {
                return Poll::Ready(this.drain_buffered(buf));
            }
            if this.recv_eof || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => this.buffered = data,
                Some(Err(e)) => return Poll::Ready(Err(h2_to_io(e))),
                None => this.recv_eof = true,
            }
        }
    }
}

impl AsyncWrite for TunnelStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.end_sent {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after shutdown of HBONE stream",
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let want = buf.len().min(MAX_WRITE_CHUNK);
        // `poll_capacity` only wakes on an *increase*, so use capacity already assigned first.
        let mut available = this.send.capacity();
        while available == 0 {
            this.send.reserve_capacity(want);
            available = match ready!(this.send.poll_capacity(cx)) {
                Some(Ok(n)) => n,
                Some(Err(e)) => return Poll::Ready(Err(h2_to_io(e))),
                None => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "HBONE stream closed by peer",
                    )))
                }
            };
        }
        let n = available.min(want);
        this.send
            .send_data(Bytes::copy_from_slice(&buf[..n]), false)
            .map_err(h2_to_io)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // h2's connection task writes queued frames; there is nothing to flush per stream.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.send_end_stream().map_err(h2_to_io))
    }
}

impl Drop for TunnelStream {
    fn drop(&mut self) {
        // Without END_STREAM, h2 resets the stream and discards queued data; the peer would
        // see a reset instead of the response we already wrote.
        let _ = self.send_end_stream();
    }
}

impl fmt::Debug for TunnelStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunnelStream")
            .field("stream_id", &self.stream_id())
            .field("buffered", &self.buffered.len())
            .field("recv_eof", &self.recv_eof)
            .field("end_sent", &self.end_sent)
            .finish_non_exhaustive()
    }
}
