//! A gRPC test workload and its client: `test.Echo` with one method of each
//! kind (unary, server-, client- and bidi-streaming), served with tonic's
//! codec over hyper's h2c server without protoc (messages declared with
//! `prost`, a small `tower` service dispatching paths as generated code
//! would, as the fake CA does). It does not enforce `grpc-timeout`: it
//! reports the value it received, so tests see the proxy's deadline.
//!
//! Every reply names the backend that wrote it (field `backend` and header
//! `x-backend`), so a test can count a weighted split. A request can ask for
//! a failing status (`fail_code`, with `x-trailer` metadata in the trailers),
//! a stall until the client gives up (`stall`), and the value of one request
//! header (`echo_header`). The server can also be told to refuse its next
//! calls with a status ([`GrpcEcho::fail_next`]), and counts every call.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use http::uri::PathAndQuery;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service};
use tonic::metadata::MetadataValue;
use tonic::server::{
    ClientStreamingService, ServerStreamingService, StreamingService, UnaryService,
};
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

/// The service name.
pub const SERVICE: &str = "test.Echo";
/// `rpc Unary(EchoRequest) returns (EchoReply)`.
pub const UNARY: &str = "/test.Echo/Unary";
/// `rpc ServerStream(EchoRequest) returns (stream EchoReply)`: `replies` replies.
pub const SERVER_STREAM: &str = "/test.Echo/ServerStream";
/// `rpc ClientStream(stream EchoRequest) returns (EchoReply)`: the messages joined.
pub const CLIENT_STREAM: &str = "/test.Echo/ClientStream";
/// `rpc Bidi(stream EchoRequest) returns (stream EchoReply)`: one reply per message, as it arrives.
pub const BIDI: &str = "/test.Echo/Bidi";

/// `EchoRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoRequest {
    #[prost(string, tag = "1")]
    pub message: String,
    /// ServerStream: how many replies.
    #[prost(uint32, tag = "2")]
    pub replies: u32,
    /// Non-zero: end the call with this gRPC code (after the replies, for
    /// ServerStream), with `x-trailer: <backend>` in the trailers.
    #[prost(int32, tag = "3")]
    pub fail_code: i32,
    /// Never answer: the call waits until the client (or proxy) cancels it.
    #[prost(bool, tag = "4")]
    pub stall: bool,
    /// A request header whose value the reply carries in `header_value`.
    #[prost(string, tag = "5")]
    pub echo_header: String,
    /// ServerStream: milliseconds before each reply (a slow stream).
    #[prost(uint32, tag = "6")]
    pub interval_ms: u32,
}

/// `EchoReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoReply {
    #[prost(string, tag = "1")]
    pub message: String,
    /// The name of the server that answered.
    #[prost(string, tag = "2")]
    pub backend: String,
    /// The value of the request header `echo_header` named, if present.
    #[prost(string, tag = "3")]
    pub header_value: String,
    /// The request's `grpc-timeout` header as received, if any.
    #[prost(string, tag = "4")]
    pub grpc_timeout: String,
}

impl EchoRequest {
    /// A request carrying `message`.
    pub fn new(message: &str) -> Self {
        EchoRequest {
            message: message.to_string(),
            ..Default::default()
        }
    }
}

/// A running `test.Echo` server; stops when dropped.
pub struct GrpcEcho {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

struct State {
    name: String,
    refusals: Mutex<VecDeque<Code>>,
    calls: watch::Sender<usize>,
}

impl GrpcEcho {
    /// Serves h2c on `bind` as `name`.
    pub async fn start(name: &str, bind: SocketAddr) -> std::io::Result<GrpcEcho> {
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            name: name.to_string(),
            refusals: Mutex::default(),
            calls: watch::Sender::new(0),
        });
        // hyper's HTTP/2 server, not tonic's transport: tonic's would enforce
        // `grpc-timeout` itself, and the tests must see the proxy's deadline.
        let (stop, mut stopped) = oneshot::channel::<()>();
        let service = EchoService(state.clone());
        let task = tokio::spawn(async move {
            loop {
                let conn = tokio::select! {
                    conn = listener.accept() => conn,
                    _ = &mut stopped => return,
                };
                let Ok((stream, _)) = conn else { continue };
                let _ = stream.set_nodelay(true);
                let service = service.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                        let mut service = service.clone();
                        async move { service.call(req.map(Body::new)).await }
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(GrpcEcho {
            addr,
            state,
            stop: Some(stop),
            task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Calls received so far (any method).
    pub fn calls(&self) -> usize {
        *self.state.calls.borrow()
    }

    /// Resolves once at least `n` calls have arrived. Callers bound the wait.
    pub async fn wait_for_calls(&self, n: usize) {
        let mut calls = self.state.calls.subscribe();
        let _ = calls.wait_for(|c| *c >= n).await;
    }

    /// Answers the next `n` calls with `code` and no message (trailers-only).
    pub fn fail_next(&self, n: usize, code: Code) {
        let mut refusals = self.state.refusals.lock().expect("not poisoned");
        refusals.extend(std::iter::repeat_n(code, n));
    }
}

impl Drop for GrpcEcho {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

impl State {
    /// Counts the call; the status it must fail with, if told to.
    fn arrive(&self) -> Result<(), Status> {
        self.calls.send_modify(|c| *c += 1);
        match self.refusals.lock().expect("not poisoned").pop_front() {
            Some(code) => Err(Status::new(code, format!("{} refused", self.name))),
            None => Ok(()),
        }
    }

    fn reply(&self, req: &EchoRequest, meta: &tonic::metadata::MetadataMap) -> EchoReply {
        let header = |name: &str| {
            meta.get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        EchoReply {
            message: req.message.clone(),
            backend: self.name.clone(),
            header_value: if req.echo_header.is_empty() {
                String::new()
            } else {
                header(&req.echo_header)
            },
            grpc_timeout: header("grpc-timeout"),
        }
    }

    /// The status a request's `fail_code` asks for, with the backend in its trailers.
    fn failure(&self, code: i32) -> Status {
        let mut status = Status::new(Code::from_i32(code), format!("{} failed", self.name));
        if let Ok(v) = MetadataValue::try_from(self.name.as_str()) {
            status.metadata_mut().insert("x-trailer", v);
        }
        status
    }

    fn respond<T>(&self, body: T) -> Response<T> {
        let mut resp = Response::new(body);
        if let Ok(v) = MetadataValue::try_from(self.name.as_str()) {
            resp.metadata_mut().insert("x-backend", v);
        }
        resp
    }
}

/// Never resolves: a stalled call ends when the caller drops it.
async fn stall() {
    futures::future::pending::<()>().await
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send>>;

#[derive(Clone)]
struct EchoService(Arc<State>);

impl Service<http::Request<Body>> for EchoService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            let codec = ProstCodec::<EchoReply, EchoRequest>::default;
            let mut grpc = tonic::server::Grpc::new(codec());
            let path = req.uri().path().to_owned();
            Ok(match path.as_str() {
                UNARY => grpc.unary(Unary(state), req).await,
                SERVER_STREAM => grpc.server_streaming(ServerStreaming(state), req).await,
                CLIENT_STREAM => grpc.client_streaming(ClientStreaming(state), req).await,
                BIDI => grpc.streaming(Bidi(state), req).await,
                _ => Status::unimplemented(path).into_http(),
            })
        })
    }
}

struct Unary(Arc<State>);

impl UnaryService<EchoRequest> for Unary {
    type Response = EchoReply;
    type Future = BoxFuture<Response<EchoReply>, Status>;

    fn call(&mut self, req: Request<EchoRequest>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            state.arrive()?;
            let body = req.get_ref();
            if body.stall {
                stall().await;
            }
            if body.fail_code != 0 {
                return Err(state.failure(body.fail_code));
            }
            Ok(state.respond(state.reply(body, req.metadata())))
        })
    }
}

struct ServerStreaming(Arc<State>);

impl ServerStreamingService<EchoRequest> for ServerStreaming {
    type Response = EchoReply;
    type ResponseStream = ReplyStream;
    type Future = BoxFuture<Response<ReplyStream>, Status>;

    fn call(&mut self, req: Request<EchoRequest>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            state.arrive()?;
            let body = req.get_ref().clone();
            let reply = state.reply(&body, req.metadata());
            let mut items: Vec<Result<EchoReply, Status>> = (0..body.replies)
                .map(|i| {
                    Ok(EchoReply {
                        message: format!("{}-{i}", body.message),
                        ..reply.clone()
                    })
                })
                .collect();
            if body.fail_code != 0 {
                items.push(Err(state.failure(body.fail_code)));
            }
            let interval = Duration::from_millis(body.interval_ms.into());
            let stream: ReplyStream =
                Box::pin(futures::stream::iter(items).then(move |item| async move {
                    tokio::time::sleep(interval).await;
                    item
                }));
            Ok(state.respond(stream))
        })
    }
}

struct ClientStreaming(Arc<State>);

impl ClientStreamingService<EchoRequest> for ClientStreaming {
    type Response = EchoReply;
    type Future = BoxFuture<Response<EchoReply>, Status>;

    fn call(&mut self, req: Request<Streaming<EchoRequest>>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            state.arrive()?;
            let meta = req.metadata().clone();
            let mut stream = req.into_inner();
            let mut joined = Vec::new();
            let mut last = EchoRequest::default();
            while let Some(msg) = stream.message().await? {
                joined.push(msg.message.clone());
                last = msg;
            }
            let reply = EchoReply {
                message: joined.join(","),
                ..state.reply(&last, &meta)
            };
            Ok(state.respond(reply))
        })
    }
}

struct Bidi(Arc<State>);

impl StreamingService<EchoRequest> for Bidi {
    type Response = EchoReply;
    type ResponseStream = ReplyStream;
    type Future = BoxFuture<Response<ReplyStream>, Status>;

    fn call(&mut self, req: Request<Streaming<EchoRequest>>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            state.arrive()?;
            let meta = req.metadata().clone();
            let replier = state.clone();
            // One reply per message, written as soon as it is read: a
            // proxy that buffered the request stream would deadlock the
            // client, which waits for each reply before sending more.
            let stream: ReplyStream = Box::pin(
                req.into_inner()
                    .map(move |msg| msg.map(|m| replier.reply(&m, &meta))),
            );
            Ok(state.respond(stream))
        })
    }
}

/// A `test.Echo` client over one channel.
#[derive(Clone)]
pub struct EchoClient {
    grpc: tonic::client::Grpc<Channel>,
}

fn path(p: &'static str) -> PathAndQuery {
    PathAndQuery::from_static(p)
}

impl EchoClient {
    /// A client over `channel` (its origin sets `:authority`).
    pub fn new(channel: Channel) -> Self {
        EchoClient {
            grpc: tonic::client::Grpc::new(channel),
        }
    }

    /// Connects over h2c to `addr` with `:authority` `authority`.
    pub async fn connect(
        addr: SocketAddr,
        authority: &str,
    ) -> Result<Self, tonic::transport::Error> {
        let origin: http::Uri = format!("http://{authority}")
            .parse()
            .expect("authority is a valid URI host");
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .origin(origin)
            .connect()
            .await?;
        Ok(Self::new(channel))
    }

    async fn ready(&mut self) -> Result<(), Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("channel not ready: {e}")))
    }

    /// `Unary`.
    pub async fn unary(
        &mut self,
        req: Request<EchoRequest>,
    ) -> Result<Response<EchoReply>, Status> {
        self.ready().await?;
        self.grpc
            .unary(req, path(UNARY), ProstCodec::default())
            .await
    }

    /// `ServerStream`.
    pub async fn server_stream(
        &mut self,
        req: Request<EchoRequest>,
    ) -> Result<Response<Streaming<EchoReply>>, Status> {
        self.ready().await?;
        self.grpc
            .server_streaming(req, path(SERVER_STREAM), ProstCodec::default())
            .await
    }

    /// `ClientStream`.
    pub async fn client_stream<S>(&mut self, req: Request<S>) -> Result<Response<EchoReply>, Status>
    where
        S: Stream<Item = EchoRequest> + Send + 'static,
    {
        self.ready().await?;
        self.grpc
            .client_streaming(req, path(CLIENT_STREAM), ProstCodec::default())
            .await
    }

    /// `Bidi`.
    pub async fn bidi<S>(
        &mut self,
        req: Request<S>,
    ) -> Result<Response<Streaming<EchoReply>>, Status>
    where
        S: Stream<Item = EchoRequest> + Send + 'static,
    {
        self.ready().await?;
        self.grpc
            .streaming(req, path(BIDI), ProstCodec::default())
            .await
    }
}
