//! Holds back an upgrade request's response until the request is sent.
//!
//! Pingora's HTTP/1.1 proxy runs an exchange as two halves joined in one task.
//! For a request without a body it queues the body's end for the upstream half
//! right away; the upstream half then `select!`s between that end and the
//! upstream response. When a fast upstream's `101 Switching Protocols` is
//! already readable at that point, `select!` may take the 101 first: the
//! connection switches to upgraded mode, and the body end that follows is read
//! as the client closing the upgraded stream, so the WebSocket is torn down
//! right after its handshake. (Seen on loopback about one connection in three.)
//!
//! [`UpgradeGate`] makes the order deterministic: the upstream stream reports
//! nothing readable until it has been flushed twice, once by Pingora's request
//! header write and once by its `finish_body`, which runs when the upstream
//! half has taken the body's end. An upgrade request has no body, so holding
//! the response until then delays nothing a client could see.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use async_trait::async_trait;
use pingora_core::connectors::L4Connect;
use pingora_core::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::l4::virt::{VirtualSockOpt, VirtualSocket, VirtualSocketStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Flushes that end an HTTP/1.1 upgrade request in Pingora: the header's and
/// `finish_body`'s.
const REQUEST_SENT_AFTER_FLUSHES: u8 = 2;

/// An upstream stream whose reads wait until the request has been sent.
#[derive(Debug)]
pub struct UpgradeGate<S> {
    inner: S,
    flushes: u8,
    reader: Option<Waker>,
}

impl<S> UpgradeGate<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            flushes: 0,
            reader: None,
        }
    }

    fn open(&self) -> bool {
        self.flushes >= REQUEST_SENT_AFTER_FLUSHES
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for UpgradeGate<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.open() {
            this.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for UpgradeGate<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = Pin::new(&mut this.inner).poll_flush(cx);
        if let Poll::Ready(Ok(())) = flushed {
            if !this.open() {
                this.flushes += 1;
                if this.open() {
                    if let Some(reader) = this.reader.take() {
                        reader.wake();
                    }
                }
            }
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl VirtualSocket for UpgradeGate<L4Stream> {
    /// The options were set on the stream underneath when it was connected.
    fn set_socket_option(&self, _opt: VirtualSockOpt) -> io::Result<()> {
        Ok(())
    }
}

/// Pingora's L4 connect for an upgrade request: the peer's own connect (the
/// HBONE connector, or plain TCP), its stream behind an [`UpgradeGate`].
#[derive(Debug)]
pub struct GatedConnect {
    pub inner: Option<Arc<dyn L4Connect + Send + Sync>>,
}

#[async_trait]
impl L4Connect for GatedConnect {
    async fn connect(&self, addr: &PingoraAddr) -> pingora_error::Result<L4Stream> {
        let stream = match &self.inner {
            Some(inner) => inner.connect(addr).await?,
            None => plain(addr).await?,
        };
        Ok(L4Stream::from(VirtualSocketStream::new(Box::new(
            UpgradeGate::new(stream),
        ))))
    }
}

async fn plain(addr: &PingoraAddr) -> pingora_error::Result<L4Stream> {
    use pingora_error::{ErrorType, OrErr};
    let PingoraAddr::Inet(inet) = addr else {
        return pingora_error::Error::e_explain(
            ErrorType::SocketError,
            "upgrade requests go to IP endpoints",
        );
    };
    let tcp = tokio::net::TcpStream::connect(inet)
        .await
        .or_err_with(ErrorType::ConnectError, || format!("connecting to {inet}"))?;
    let _ = tcp.set_nodelay(true);
    Ok(L4Stream::from(tcp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn nothing_is_read_before_the_request_header_and_body_end_are_flushed() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut gate = UpgradeGate::new(near);
        far.write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];

        gate.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        gate.flush().await.unwrap();
        let early = tokio::time::timeout(std::time::Duration::ZERO, gate.read(&mut buf)).await;
        assert!(
            early.is_err(),
            "the response is held after the header flush"
        );

        gate.flush().await.unwrap();
        let n = gate.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 101"));
    }
}
