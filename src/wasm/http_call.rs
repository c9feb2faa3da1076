//! `proxy_http_call`: the request a plugin dispatches, the [`HttpCaller`]
//! the proxy provides to send it, and [`exchange`], which speaks one
//! HTTP/1.1 call over a connection the caller opened. The proxy's caller
//! opens that connection with the waypoint's one dialer (HBONE to in-mesh
//! endpoints); [`HyperHttpCaller`], a plain-TCP caller resolving names with a
//! closure, exists for tests only.
//!
//! Cluster names: Istio plugins name upstreams as Envoy clusters,
//! `outbound|PORT|SUBSET|HOST` (e.g. `outbound|8080||auth.default.svc.cluster.local`);
//! plain `host:port` or `host` (port 80) are accepted too. [`parse_cluster`]
//! splits either form.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use super::abi::HeaderList;

/// A call as the plugin made it. `headers` include `:method`, `:path` and
/// `:authority` (checked before the call is accepted).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpCallRequest {
    pub cluster: String,
    pub headers: HeaderList,
    pub body: Bytes,
    pub trailers: HeaderList,
    /// The plugin's timeout for the whole call.
    pub timeout: Duration,
}

/// The response handed to `proxy_on_http_call_response`. `headers` start
/// with `:status`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpCallResponse {
    pub headers: HeaderList,
    pub body: Bytes,
    pub trailers: HeaderList,
}

/// Why a call produced no response; the plugin then sees a response with no
/// headers, body or trailers, as Envoy delivers a failed call.
#[derive(Debug, thiserror::Error)]
pub enum HttpCallError {
    #[error("no upstream for cluster {0}")]
    UnknownCluster(String),
    #[error("http call to {cluster} timed out after {timeout:?}")]
    Timeout { cluster: String, timeout: Duration },
    #[error("http call to {cluster} failed: {reason}")]
    Failed { cluster: String, reason: String },
}

/// Sends plugin HTTP calls. The proxy implements it over its own upstream
/// machinery; [`HyperHttpCaller`] is a standalone default.
#[async_trait::async_trait]
pub trait HttpCaller: Send + Sync {
    /// Whether `cluster` names an upstream. `false` makes `proxy_http_call`
    /// answer `BadArgument` at once, as Envoy does for an unknown cluster.
    fn knows_upstream(&self, cluster: &str) -> bool {
        let _ = cluster;
        true
    }

    /// Sends the call and waits for the whole response (bounded by
    /// `request.timeout`).
    async fn call(&self, request: HttpCallRequest) -> Result<HttpCallResponse, HttpCallError>;
}

/// The host and port a cluster name means; `None` port for a bare host.
pub fn parse_cluster(cluster: &str) -> (String, Option<u16>) {
    let parts: Vec<&str> = cluster.split('|').collect();
    if parts.len() == 4 {
        return (parts[3].to_string(), parts[1].parse().ok());
    }
    match cluster.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') || host.starts_with('[') => match port.parse() {
            Ok(p) => (host.trim_matches(['[', ']']).to_string(), Some(p)),
            Err(_) => (cluster.to_string(), None),
        },
        _ => (cluster.to_string(), None),
    }
}

/// Resolves a cluster name to an address.
#[cfg(any(test, feature = "testing"))]
pub type ClusterResolver = dyn Fn(&str) -> Option<std::net::SocketAddr> + Send + Sync;

/// HTTP/1.1 over a fresh TCP connection per call, to the address the
/// resolver gives (or the cluster itself when it is an `ip:port`). For
/// tests: the proxy sends calls through its dialer instead.
#[cfg(any(test, feature = "testing"))]
#[derive(Clone)]
pub struct HyperHttpCaller {
    resolve: std::sync::Arc<ClusterResolver>,
}

#[cfg(any(test, feature = "testing"))]
impl HyperHttpCaller {
    /// A caller resolving clusters with `resolve`.
    pub fn new(
        resolve: impl Fn(&str) -> Option<std::net::SocketAddr> + Send + Sync + 'static,
    ) -> Self {
        Self {
            resolve: std::sync::Arc::new(resolve),
        }
    }

    fn address(&self, cluster: &str) -> Option<std::net::SocketAddr> {
        (self.resolve)(cluster).or_else(|| cluster.parse().ok())
    }
}

#[cfg(any(test, feature = "testing"))]
#[async_trait::async_trait]
impl HttpCaller for HyperHttpCaller {
    fn knows_upstream(&self, cluster: &str) -> bool {
        self.address(cluster).is_some()
    }

    async fn call(&self, request: HttpCallRequest) -> Result<HttpCallResponse, HttpCallError> {
        let addr = self
            .address(&request.cluster)
            .ok_or_else(|| HttpCallError::UnknownCluster(request.cluster.clone()))?;
        let connect = async move {
            tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| e.to_string())
        };
        call_over(connect, request).await
    }
}

/// Opens a connection with `connect`, then sends `request` over it, all
/// within the plugin's timeout; failures become [`HttpCallError`]s.
pub async fn call_over<IO, C>(
    connect: C,
    request: HttpCallRequest,
) -> Result<HttpCallResponse, HttpCallError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    C: std::future::Future<Output = Result<IO, String>>,
{
    let cluster = request.cluster.clone();
    let timeout = request.timeout;
    let call = async { exchange(connect.await?, request).await };
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(reason)) => Err(HttpCallError::Failed { cluster, reason }),
        Err(_) => Err(HttpCallError::Timeout { cluster, timeout }),
    }
}

/// Sends `request` as HTTP/1.1 over `io` and collects the whole response.
/// The error is a reason for the log; the plugin only sees a failed call.
async fn exchange<IO>(io: IO, request: HttpCallRequest) -> Result<HttpCallResponse, String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = http::Request::builder();
    for (name, value) in &request.headers {
        builder = match name.as_str() {
            ":method" => builder.method(value.as_slice()),
            ":path" => builder.uri(value.as_slice()),
            ":authority" => builder.header(http::header::HOST, value.as_slice()),
            ":scheme" => builder,
            _ => builder.header(name.as_str(), value.as_slice()),
        };
    }
    let req = builder
        .body(Full::new(request.body))
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let response = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.map_err(|e| e.to_string())?;
    conn.abort();
    let mut headers: HeaderList =
        vec![(":status".into(), parts.status.as_str().as_bytes().to_vec())];
    headers.extend(
        parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec())),
    );
    let trailers = collected
        .trailers()
        .map(|t| {
            t.iter()
                .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
                .collect()
        })
        .unwrap_or_default();
    Ok(HttpCallResponse {
        headers,
        body: collected.to_bytes(),
        trailers,
    })
}
