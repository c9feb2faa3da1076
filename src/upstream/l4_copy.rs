//! The byte copy of an L4 passthrough connection, bounded by the cluster's
//! `tcp.maxConnectionDuration`: Istio sets it as the TCP proxy's
//! `max_downstream_connection_duration`, and Envoy closes the connection when
//! it is reached. The bytes moved so far are still reported, so Istio's TCP
//! byte counters stay true for connections cut at that age.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::debug;

/// Copies both ways between `a` and `b` until either side closes or
/// `max_age` passes; `(a → b, b → a)` bytes. At `max_age` the copy stops and
/// the caller drops (closes) both sides.
pub async fn copy_within<A, B>(
    max_age: Option<Duration>,
    a: &mut A,
    b: &mut B,
) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let Some(age) = max_age else {
        return tokio::io::copy_bidirectional(a, b).await;
    };
    let mut a = Counted { inner: a, read: 0 };
    let mut b = Counted { inner: b, read: 0 };
    match tokio::time::timeout(age, tokio::io::copy_bidirectional(&mut a, &mut b)).await {
        Ok(copied) => copied,
        Err(_) => {
            debug!(
                ?age,
                "L4 passthrough reached maxConnectionDuration; closing"
            );
            // Read from one side is as good as written to the other, but for
            // the one buffer in flight at the cut.
            Ok((a.read, b.read))
        }
    }
}

/// A stream that counts the bytes read from it.
struct Counted<'a, S: ?Sized> {
    inner: &'a mut S,
    read: u64,
}

impl<S: AsyncRead + Unpin + ?Sized> AsyncRead for Counted<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut *this.inner).poll_read(cx, buf);
        this.read += (buf.filled().len() - before) as u64;
        polled
    }
}

impl<S: AsyncWrite + Unpin + ?Sized> AsyncWrite for Counted<'_, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_copy_stops_at_max_age_and_reports_what_it_moved() {
        let (mut client, mut down) = tokio::io::duplex(64);
        let (mut up, mut server) = tokio::io::duplex(64);
        let copy = tokio::spawn(async move {
            copy_within(Some(Duration::from_secs(30)), &mut down, &mut up).await
        });
        client.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        server.read_exact(&mut got).await.unwrap();
        server.write_all(b"pong!").await.unwrap();
        let mut back = [0u8; 5];
        client.read_exact(&mut back).await.unwrap();
        // Nothing else happens: the paused clock jumps to the limit.
        let moved = copy.await.unwrap().unwrap();
        assert_eq!(moved, (4, 5));
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "the client sees the connection end");
    }

    #[tokio::test]
    async fn without_a_limit_the_copy_runs_until_a_side_closes() {
        let (mut client, mut down) = tokio::io::duplex(64);
        let (mut up, mut server) = tokio::io::duplex(64);
        let copy = tokio::spawn(async move { copy_within(None, &mut down, &mut up).await });
        client.write_all(b"abc").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        drop(server);
        assert_eq!(got, b"abc");
        assert_eq!(copy.await.unwrap().unwrap(), (3, 0));
    }
}
