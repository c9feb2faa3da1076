//! The CUSTOM action: ask the policy's external authorization service
//! (MeshConfig `envoyExtAuthzHttp`) before the request goes on, as Envoy's
//! HTTP `ext_authz` filter does. The check is an HTTP/1.1 request with the
//! client's method and path (after `pathPrefix`), `Host` and the headers the
//! provider includes, sent through the one dialer to the service's endpoint
//! (over HBONE when it is in the mesh). 200 allows (copying the headers the
//! provider names onto the upstream request); any other status is the
//! client's answer; no answer within the timeout applies `failOpen` /
//! `statusOnError`.

use bytes::Bytes;
use http_body_util::Full;
use pingora_http::RequestHeader;
use tracing::{debug, warn};

use crate::authz::Record;
use crate::store::Published;

use super::failure::Failure;
use super::mesh_http::exchange;
use super::{headers, Waypoint};

/// The largest check answer read; a denial's body goes to the client.
const MAX_ANSWER: usize = 64 * 1024;

impl Waypoint {
    /// Asks the provider of the matched CUSTOM policy `custom`. `None`: the
    /// request goes on; `Some`: the answer to give instead.
    pub(super) async fn ask_provider(
        &self,
        published: &Published,
        custom: &Record,
        req: &mut RequestHeader,
    ) -> Option<Failure> {
        let policy = custom.policy.as_ref()?;
        let provider = policy.provider.as_ref()?;
        let record = |result: &str| {
            self.metrics
                .record_authz(&policy.name, custom.action.as_str(), result)
        };
        let path = format!(
            "{}{}",
            provider.path_prefix,
            req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
        );
        let mut check = http::Request::builder()
            .method(req.method.clone())
            .uri(path);
        if let Some(h) = check.headers_mut() {
            *h = provider.check_headers(headers::host(req).unwrap_or(""), &req.headers);
        }
        let check = match check.body(Full::new(Bytes::new())) {
            Ok(c) => c,
            Err(e) => {
                debug!(error = %e, "ext_authz check request not built");
                return self.unanswered(provider, record);
            }
        };
        let asked = tokio::time::timeout(
            provider.timeout,
            exchange(
                published,
                &self.dialer,
                &provider.authority,
                check,
                MAX_ANSWER,
            ),
        )
        .await;
        match asked {
            Ok(Ok(answer)) if answer.status() == http::StatusCode::OK => {
                for (name, value) in provider.upstream_on_allow(answer.headers()) {
                    let _ = req.insert_header(name.clone(), value.clone());
                }
                record("allowed");
                None
            }
            Ok(Ok(answer)) => {
                record("denied");
                let headers = provider
                    .downstream_on_deny(answer.headers())
                    .filter_map(|(n, v)| Some((n.to_string(), v.to_str().ok()?.to_string())))
                    .collect();
                Some(Failure::ExternalDenied {
                    status: answer.status().as_u16(),
                    body: String::from_utf8_lossy(answer.body()).into_owned(),
                    headers,
                })
            }
            Ok(Err(e)) => {
                warn!(provider = %provider.name, error = %e, "external authorization service unreachable");
                self.unanswered(provider, record)
            }
            Err(_) => {
                warn!(provider = %provider.name, timeout = ?provider.timeout, "external authorization check timed out");
                self.unanswered(provider, record)
            }
        }
    }

    /// No answer from the provider: `failOpen`, else `statusOnError`.
    fn unanswered(
        &self,
        provider: &crate::authz::ExtAuthzProvider,
        record: impl Fn(&str),
    ) -> Option<Failure> {
        if provider.fail_open {
            record("error_allowed");
            return None;
        }
        record("error_denied");
        Some(Failure::ExternalDenied {
            status: provider.status_on_error,
            body: String::new(),
            headers: Vec::new(),
        })
    }
}
