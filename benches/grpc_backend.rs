//! The backend of `benches/grpc-load.sh`: a minimal gRPC unary server over
//! h2c (hyper), answering every call with an empty message and
//! `grpc-status: 0` in the trailers, so the benchmark measures the proxy,
//! not a service. Usage: `grpc_backend ADDR` (e.g. `127.0.100.90:19090`).

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};

type Reply =
    StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

async fn answer(req: http::Request<Incoming>) -> Result<http::Response<Reply>, Infallible> {
    // Read the whole request message, as a unary handler does.
    let _ = req.into_body().collect().await;
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let frames = vec![
        // An empty protobuf message: uncompressed flag, length 0.
        Ok(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0]))),
        Ok(Frame::trailers(trailers)),
    ];
    let body = StreamBody::new(futures::stream::iter(frames));
    Ok(http::Response::builder()
        .header("content-type", "application/grpc")
        .body(body)
        .expect("static response"))
}

fn main() {
    let addr = std::env::args()
        .nth(1)
        .expect("usage: grpc_backend ADDR")
        .parse::<std::net::SocketAddr>()
        .expect("ADDR is ip:port");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        eprintln!("grpc_backend listening on {addr}");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), hyper::service::service_fn(answer))
                    .await;
            });
        }
    });
}
