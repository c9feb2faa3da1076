//! The CUSTOM action: external authorization services over HTTP
//! (`envoyExtAuthzHttp`) and gRPC (`envoyExtAuthzGrpc`), reached through the
//! waypoint's dialer, with `failOpen` both ways and the service down.

mod common;

use common::authz::*;
use common::mesh::CLIENT_ID;
use common::*;

/// Istio's ext-authz sample, in short: allows when `x-ext-authz: allow`.
async fn ext_authz_service(addr: &str) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    tiny_http(addr, |head| {
        let head = head.to_ascii_lowercase();
        if head.contains("\r\nx-ext-authz: allow\r\n") && head.starts_with("get /check/") {
            response("200 OK", "x-ext-authz-check-result: allowed\r\n", "")
        } else {
            response(
                "403 Forbidden",
                "x-ext-authz-check-result: denied\r\nx-internal: secret\r\n",
                "denied by ext_authz for not found header `x-ext-authz: allow` in the request",
            )
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_action_asks_the_ext_authz_service() {
    let [productpage, details, reviews] = backends(38).await;
    let checks = ext_authz_service("127.0.38.20:8000").await;
    let mesh_config = "extensionProviders:\n- name: ext\n  envoyExtAuthzHttp: {service: ext-authz.shop.svc.cluster.local, port: 8000, pathPrefix: /check, includeRequestHeadersInCheck: [x-ext-authz], headersToUpstreamOnAllow: [x-ext-authz-check-result], headersToDownstreamOnDeny: [x-ext-authz-check-result]}\n- name: ext-open\n  envoyExtAuthzHttp: {service: authz-down.shop.svc.cluster.local, port: 8000, failOpen: true, timeout: 2s}\n- name: ext-closed\n  envoyExtAuthzHttp: {service: authz-down.shop.svc.cluster.local, port: 8000, statusOnError: '503', timeout: 2s}\n";
    let custom = |name: &str, service: &str, provider: &str, rules: &str| {
        policy(
            name,
            &format!(
                "{}\n  action: CUSTOM\n  provider: {{name: {provider}}}\n  rules: {rules}",
                to(service)
            ),
        )
    };
    let config = bookinfo(38)
        + &service(NS, "ext-authz", 8000, 8000, &["127.0.38.20"])
        + &service(NS, "authz-down", 8000, 8000, &["127.0.38.99"])
        + &custom(
            "ext-headers",
            "productpage",
            "ext",
            "[{to: [{operation: {paths: [\"/headers*\"]}}]}]",
        )
        + &custom("ext-open", "details", "ext-open", "[{}]")
        + &custom("ext-closed", "reviews", "ext-closed", "[{}]");
    let mesh = mesh_with_providers(&config, mesh_config).await;
    let plain = TestClient::new(mesh.wp.http_addr.unwrap());

    // Allowed by the service: its result header reaches the backend.
    let ok = plain
        .send(
            "GET",
            "productpage:9080",
            "/headers",
            &[("x-ext-authz", "allow")],
        )
        .await;
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.echo().unwrap().headers["x-ext-authz-check-result"],
        "allowed"
    );
    // Denied: the service's status, body and the headers the provider passes on.
    let no = plain.get("productpage:9080", "/headers").await;
    assert_eq!(no.status, 403);
    assert!(String::from_utf8_lossy(&no.body).starts_with("denied by ext_authz"));
    assert_eq!(no.header("x-ext-authz-check-result"), Some("denied"));
    assert_eq!(
        no.header("x-internal"),
        None,
        "only the headers the provider names"
    );
    // A path the policy's rules do not match is not checked at all.
    let unchecked = plain.get("productpage:9080", "/other").await;
    assert_eq!(unchecked.status, 200);
    assert_eq!(checks.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(productpage.count(), 2, "the denied request never arrived");

    // The service unreachable: failOpen lets the request through, otherwise statusOnError.
    assert_eq!(plain.get("details:9080", "/").await.status, 200);
    assert_eq!(plain.get("reviews:9080", "/").await.status, 503);
    assert_eq!((details.count(), reviews.count()), (1, 0));

    let metrics = requests_eventually(&mesh.wp, &["response_flags=\"UAEX\""], 2).await;
    for (policy, result) in [
        ("shop/ext-headers", "allowed"),
        ("shop/ext-headers", "denied"),
        ("shop/ext-open", "error_allowed"),
        ("shop/ext-closed", "error_denied"),
    ] {
        let needles = [
            format!("policy=\"{policy}\""),
            format!("result=\"{result}\""),
        ];
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        assert_eq!(
            metric(&metrics, "waypoint_authz_decisions_total", &needles),
            1,
            "{policy} {result}"
        );
    }
}

mod grpc_ext_authz {
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll};

    use tonic::body::Body;
    use tonic::codegen::{BoxFuture, Service};
    use tonic::server::UnaryService;
    use tonic::{Request, Response, Status};
    use tonic_prost::ProstCodec;
    use waypoint::authz::ext_authz_proto as pb;

    /// An `envoy.service.auth.v3.Authorization` server: allows requests with
    /// `x-ext-authz: allow`; keeps every CheckRequest.
    #[derive(Clone, Default)]
    pub struct AuthzServer(pub Arc<Mutex<Vec<pb::CheckRequest>>>);

    impl AuthzServer {
        pub async fn start(addr: &str) -> Self {
            let server = AuthzServer::default();
            let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
            let incoming = futures::stream::unfold(listener, |l| async move {
                let conn = l.accept().await.map(|(s, _)| s);
                Some((conn, l))
            });
            let svc = server.clone();
            tokio::spawn(async move {
                let _ = tonic::transport::Server::builder()
                    .serve_with_incoming(svc, incoming)
                    .await;
            });
            server
        }
    }

    impl Service<http::Request<Body>> for AuthzServer {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = BoxFuture<Self::Response, Self::Error>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<Body>) -> Self::Future {
            let me = self.clone();
            Box::pin(async move {
                if req.uri().path() != pb::CHECK_PATH {
                    return Ok(Status::unimplemented(req.uri().path().to_owned()).into_http());
                }
                let mut grpc = tonic::server::Grpc::new(ProstCodec::<
                    pb::CheckResponse,
                    pb::CheckRequest,
                >::default());
                Ok(grpc.unary(me, req).await)
            })
        }
    }

    impl tonic::server::NamedService for AuthzServer {
        const NAME: &'static str = "envoy.service.auth.v3.Authorization";
    }

    impl UnaryService<pb::CheckRequest> for AuthzServer {
        type Response = pb::CheckResponse;
        type Future = BoxFuture<Response<Self::Response>, Status>;

        fn call(&mut self, req: Request<pb::CheckRequest>) -> Self::Future {
            let me = self.clone();
            Box::pin(async move {
                let check = req.into_inner();
                let allow = check
                    .attributes
                    .as_ref()
                    .and_then(|a| a.request.as_ref())
                    .and_then(|r| r.http.as_ref())
                    .and_then(|h| h.headers.get("x-ext-authz"))
                    .is_some_and(|v| v == "allow");
                me.0.lock().unwrap().push(check);
                let header = |v: &str| pb::HeaderValueOption {
                    header: Some(pb::HeaderValue {
                        key: "x-ext-authz-check-result".to_string(),
                        value: v.to_string(),
                    }),
                };
                Ok(Response::new(if allow {
                    pb::CheckResponse {
                        status: Some(pb::RpcStatus::default()),
                        ok_response: Some(pb::OkHttpResponse {
                            headers: vec![header("allowed")],
                            headers_to_remove: vec!["x-ext-authz".to_string()],
                        }),
                        ..Default::default()
                    }
                } else {
                    pb::CheckResponse {
                        status: Some(pb::RpcStatus {
                            code: 7,
                            message: "denied".to_string(),
                        }),
                        denied_response: Some(pb::DeniedHttpResponse {
                            status: Some(pb::HttpStatus { code: 401 }),
                            headers: vec![header("denied")],
                            body: "denied by grpc ext_authz".to_string(),
                        }),
                        ..Default::default()
                    }
                }))
            })
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_action_over_grpc_check() {
    let [productpage, _details, _reviews] = backends(40).await;
    let server = grpc_ext_authz::AuthzServer::start("127.0.40.20:9000").await;
    let mesh_config = "extensionProviders:\n- name: ext-grpc\n  envoyExtAuthzGrpc: {service: ext-authz-grpc.shop.svc.cluster.local, port: 9000, timeout: 2s}\n";
    let config = bookinfo(40)
        + &service(NS, "ext-authz-grpc", 9000, 9000, &["127.0.40.20"])
        + &policy(
            "ext-grpc",
            &format!(
                "{}\n  action: CUSTOM\n  provider: {{name: ext-grpc}}\n  rules: [{{}}]",
                to("productpage")
            ),
        );
    let mesh = mesh_with_providers(&config, mesh_config).await;
    let plain = TestClient::new(mesh.wp.http_addr.unwrap());

    let ok = plain
        .send(
            "GET",
            "productpage:9080",
            "/p?q=1",
            &[("x-ext-authz", "allow")],
        )
        .await;
    assert_eq!(ok.status, 200);
    let seen = ok.echo().unwrap();
    assert_eq!(seen.headers["x-ext-authz-check-result"], "allowed");
    assert!(
        !seen.headers.contains_key("x-ext-authz"),
        "headers_to_remove applied"
    );

    let no = plain.get("productpage:9080", "/p").await;
    assert_eq!(
        (no.status, &no.body[..]),
        (401, &b"denied by grpc ext_authz"[..])
    );
    assert_eq!(no.header("x-ext-authz-check-result"), Some("denied"));

    // Over HBONE the check carries the caller's SPIFFE id and original address.
    assert_eq!(mesh_get(&mesh, "10.96.30.1", "/from-mesh").await.0, 401);
    let checks = server.0.lock().unwrap().clone();
    let last = checks.last().unwrap().attributes.clone().unwrap();
    let source = last.source.unwrap();
    assert_eq!(source.principal, CLIENT_ID);
    assert_eq!(
        source.address.unwrap().socket_address.unwrap().address,
        "10.1.2.3"
    );
    let http = last.request.unwrap().http.unwrap();
    assert_eq!(
        (http.method.as_str(), http.path.as_str()),
        ("GET", "/from-mesh")
    );
    assert_eq!(checks.len(), 3);
    assert_eq!(productpage.count(), 1);
}
