//! HBONE fakes for unit tests, `tests/` and benches: a fake destination ztunnel and the
//! request headers a source ztunnel sends. The HBONE client side needs no fake: our own
//! [`HbonePool`](crate::hbone::HbonePool) speaks ztunnel's wire and serves as the source ztunnel.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::hbone::{
    serve_inbound, Baggage, ConnectHandler, Forwarded, InboundConfig, OutboundHeaders,
    TunnelRequest, TunnelStream,
};
use crate::identity::IdentityStore;

/// A fake destination ztunnel: accepts every CONNECT, records who asked for what, and
/// forwards the stream's bytes to the `:authority` (where the destination pod listens, as a
/// real ztunnel delivers to the pod's port).
///
/// ```ignore
/// let fake = Arc::new(FakeZtunnel::default());
/// tokio::spawn(fake.serve(listener, &ztunnel_identity, "cluster.local", stop_rx));
/// ```
pub struct FakeZtunnel {
    seen: Mutex<Vec<(String, String)>>,
    ended: Mutex<Vec<StreamEnd>>,
    /// How many streams have ended; wakes `wait_ended`.
    ended_count: watch::Sender<usize>,
}

impl Default for FakeZtunnel {
    fn default() -> Self {
        FakeZtunnel {
            seen: Mutex::default(),
            ended: Mutex::default(),
            ended_count: watch::Sender::new(0),
        }
    }
}

/// How a forwarded CONNECT stream ended, as the destination saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// Both sides sent END_STREAM.
    Clean,
    /// The caller reset the stream (RST_STREAM).
    Reset,
    /// Anything else went wrong (the pod, the connection).
    Failed,
}

impl FakeZtunnel {
    /// Serves HBONE on `listener` with `identity`'s certificate, accepting peers of
    /// `trust_domain`, until `shutdown` becomes `true` (or its sender is dropped).
    pub fn serve(
        self: &Arc<Self>,
        listener: TcpListener,
        identity: &IdentityStore,
        trust_domain: &str,
        shutdown: watch::Receiver<bool>,
    ) -> impl Future<Output = ()> + Send + 'static {
        serve_inbound(
            listener,
            identity.server_config(trust_domain),
            InboundConfig::default(),
            self.clone(),
            shutdown,
        )
    }

    /// How each forwarded stream ended so far, in order of ending.
    pub fn ended(&self) -> Vec<StreamEnd> {
        self.ended.lock().expect("fake ztunnel lock").clone()
    }

    /// Waits until `n` forwarded streams have ended (unbounded: wrap it in a timeout).
    pub async fn wait_ended(&self, n: usize) -> Vec<StreamEnd> {
        let mut count = self.ended_count.subscribe();
        let _ = count.wait_for(|c| *c >= n).await;
        self.ended()
    }

    /// Every accepted CONNECT so far, in order: (caller's SPIFFE id, `:authority`).
    pub fn seen(&self) -> Vec<(String, String)> {
        self.seen.lock().expect("fake ztunnel lock").clone()
    }
}

#[async_trait]
impl ConnectHandler for FakeZtunnel {
    type Accepted = ();

    async fn decide(&self, req: &TunnelRequest) -> Result<(), http::StatusCode> {
        self.seen
            .lock()
            .expect("fake ztunnel lock")
            .push((req.peer.to_string(), req.target.to_string()));
        Ok(())
    }

    async fn serve(&self, req: TunnelRequest, _: (), mut stream: TunnelStream) {
        let Some(addr) = req.target.addr() else {
            return;
        };
        if let Ok(mut pod) = TcpStream::connect(addr).await {
            // Request/response traffic: do not let Nagle hold a response's last segment.
            let _ = pod.set_nodelay(true);
            let end = match tokio::io::copy_bidirectional(&mut stream, &mut pod).await {
                Ok(_) => StreamEnd::Clean,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => StreamEnd::Reset,
                Err(_) => StreamEnd::Failed,
            };
            self.ended.lock().expect("fake ztunnel lock").push(end);
            self.ended_count.send_modify(|c| *c += 1);
        }
    }
}

/// The headers a source ztunnel sends with a CONNECT for the application connection from
/// `client`: `baggage` of a `sleep` Deployment (namespace `client-ns`, version `v7`, cluster
/// `Kubernetes`), `forwarded: for=<client>;host=reviews` and a sampled `traceparent`.
pub fn ztunnel_headers(client: SocketAddr) -> OutboundHeaders {
    OutboundHeaders {
        baggage: Some(Baggage::parse(
            "k8s.cluster.name=Kubernetes,k8s.namespace.name=client-ns,k8s.deployment.name=sleep,service.name=sleep,service.version=v7",
        )),
        forwarded: Some(Forwarded::new(client, Some("reviews".into()))),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
    }
}
