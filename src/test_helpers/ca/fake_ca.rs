//! A fake Istio CA: a real gRPC server over TLS on loopback, answering
//! `/istio.v1.auth.IstioCertificateService/CreateCertificate` as istiod does. It checks the
//! bearer token, signs the CSR with a [`TestCa`] for the requested validity, records every
//! request, and can be told to refuse the next ones with a gRPC status.
//!
//! Served by tonic's transport without its router: a small `tower` service dispatches the one
//! path to `tonic::server::Grpc::unary`, as generated code would.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service};
use tonic::server::UnaryService;
use tonic::{Code, Request, Response, Status};
use tonic_prost::ProstCodec;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509CertificationRequest};

use super::TestCa;
use crate::identity::crypto_provider;
use crate::identity::istio_ca::{
    IstioCertificateRequest, IstioCertificateResponse, CREATE_CERTIFICATE_PATH,
};

/// What the fake CA saw in one `CreateCertificate` call, and what it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaRequestRecord {
    /// URI SANs of the CSR (the SPIFFE id asked for).
    pub sans: Vec<String>,
    /// The bearer token, without `Bearer `; `None` if there was no such header.
    pub token: Option<String>,
    /// The `clusterid` header.
    pub cluster_id: Option<String>,
    /// The requested validity, seconds.
    pub validity_seconds: i64,
    /// The issued leaf (DER), or the code it was refused with.
    pub outcome: Result<Vec<u8>, Code>,
}

/// A running fake CA; stops when dropped.
pub struct FakeCa {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
}

struct State {
    ca: Arc<TestCa>,
    token: String,
    records: Mutex<Vec<CaRequestRecord>>,
    refusals: Mutex<VecDeque<Code>>,
    count: watch::Sender<usize>,
}

impl FakeCa {
    /// Starts serving on `bind` (use port 0), signing with `ca`, accepting only
    /// `Bearer <token>`. Its TLS certificate, issued by `ca`, names `server_names` and the
    /// bound IP.
    pub async fn start(
        ca: Arc<TestCa>,
        bind: SocketAddr,
        server_names: &[&str],
        token: &str,
    ) -> std::io::Result<FakeCa> {
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let ip = addr.ip().to_string();
        let mut names = server_names.to_vec();
        names.push(&ip);
        let acceptor = TlsAcceptor::from(server_tls(&ca, &names));
        let state = Arc::new(State {
            ca,
            token: token.to_owned(),
            records: Mutex::default(),
            refusals: Mutex::default(),
            count: watch::Sender::new(0),
        });

        // TLS handshakes happen here; tonic serves HTTP/2 on the finished streams.
        let (conn_tx, conn_rx) = mpsc::channel(16);
        let accept = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let conn_tx = conn_tx.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let _ = conn_tx.send(tls).await;
                    }
                });
            }
        });
        let incoming = futures::stream::unfold(conn_rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|conn| (Ok::<_, std::io::Error>(conn), rx))
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let service = CaService(state.clone());
        let serve = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .serve_with_incoming_shutdown(service, incoming, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(FakeCa {
            addr,
            state,
            stop: Some(stop),
            tasks: vec![accept, serve],
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<CaRequestRecord> {
        self.state.records.lock().expect("not poisoned").clone()
    }

    /// Refuses the next `n` requests with `code` (after checking the token).
    pub fn refuse_next(&self, n: usize, code: Code) {
        let mut refusals = self.state.refusals.lock().expect("not poisoned");
        refusals.extend(std::iter::repeat_n(code, n));
    }

    /// Resolves once at least `n` requests have been recorded. Callers bound the wait.
    pub async fn wait_for_requests(&self, n: usize) {
        let mut count = self.state.count.subscribe();
        let _ = count.wait_for(|c| *c >= n).await;
    }
}

impl Drop for FakeCa {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn server_tls(ca: &TestCa, names: &[&str]) -> Arc<rustls::ServerConfig> {
    let issued = ca.issue_server_cert(names);
    let chain = vec![CertificateDer::from(issued.cert_der)];
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).expect("rcgen key PEM");
    let mut cfg = rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring supports TLS 1.3")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("the test CA's server certificate is usable");
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(cfg)
}

impl State {
    fn create_certificate(
        &self,
        req: Request<IstioCertificateRequest>,
    ) -> Result<Response<IstioCertificateResponse>, Status> {
        let header = |name: &str| {
            req.metadata()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let token = header("authorization")
            .map(|v| v.strip_prefix("Bearer ").map(str::to_owned).unwrap_or(v));
        let cluster_id = header("clusterid");
        let body = req.into_inner();
        let mut record = CaRequestRecord {
            sans: csr_uri_sans(&body.csr),
            token,
            cluster_id,
            validity_seconds: body.validity_duration,
            outcome: Err(Code::Unknown),
        };
        let answer = self.answer(&body, &record);
        record.outcome = match &answer {
            Ok((der, _)) => Ok(der.clone()),
            Err(status) => Err(status.code()),
        };
        self.records.lock().expect("not poisoned").push(record);
        self.count.send_modify(|c| *c += 1);
        answer.map(|(_, resp)| Response::new(resp))
    }

    fn answer(
        &self,
        body: &IstioCertificateRequest,
        record: &CaRequestRecord,
    ) -> Result<(Vec<u8>, IstioCertificateResponse), Status> {
        // As istiod: authenticate first, then sign.
        if record.token.as_deref() != Some(self.token.as_str()) {
            return Err(Status::unauthenticated(
                "request authenticate failure: the bearer token is not valid",
            ));
        }
        if let Some(code) = self.refusals.lock().expect("not poisoned").pop_front() {
            return Err(Status::new(code, "refused as the test asked"));
        }
        // istiod issues its default TTL when none is asked for.
        let seconds = if body.validity_duration > 0 {
            body.validity_duration
        } else {
            86_400
        };
        let leaf_pem = self
            .ca
            .sign_csr(&body.csr, time::Duration::seconds(seconds))
            .map_err(|e| Status::invalid_argument(format!("bad CSR: {e}")))?;
        let der = CertificateDer::from_pem_slice(leaf_pem.as_bytes())
            .expect("rcgen writes valid PEM")
            .to_vec();
        Ok((
            der,
            IstioCertificateResponse {
                cert_chain: vec![leaf_pem, self.ca.root_pem()],
            },
        ))
    }
}

/// The URI SANs a CSR asks for; empty if it does not parse (the signer reports why).
fn csr_uri_sans(csr_pem: &str) -> Vec<String> {
    let Ok(der) = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes()) else {
        return Vec::new();
    };
    let Ok((_, csr)) = X509CertificationRequest::from_der(der.as_ref()) else {
        return Vec::new();
    };
    csr.requested_extensions()
        .into_iter()
        .flatten()
        .filter_map(|ext| match ext {
            ParsedExtension::SubjectAlternativeName(san) => Some(san),
            _ => None,
        })
        .flat_map(|san| san.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(u) => Some((*u).to_owned()),
            _ => None,
        })
        .collect()
}

/// Routes the one method to tonic's unary handler; anything else is UNIMPLEMENTED.
#[derive(Clone)]
struct CaService(Arc<State>);

impl Service<http::Request<Body>> for CaService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            if req.uri().path() != CREATE_CERTIFICATE_PATH {
                return Ok(Status::unimplemented(req.uri().path().to_owned()).into_http());
            }
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<
                IstioCertificateResponse,
                IstioCertificateRequest,
            >::default());
            Ok(grpc.unary(CreateCertificate(state), req).await)
        })
    }
}

impl tonic::server::NamedService for CaService {
    const NAME: &'static str = crate::identity::istio_ca::ISTIO_CERTIFICATE_SERVICE;
}

struct CreateCertificate(Arc<State>);

impl UnaryService<IstioCertificateRequest> for CreateCertificate {
    type Response = IstioCertificateResponse;
    type Future = BoxFuture<Response<Self::Response>, Status>;

    fn call(&mut self, req: Request<IstioCertificateRequest>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move { state.create_certificate(req) })
    }
}
