//! Keeps the keys of every `jwksUri` the config names fetched: through the
//! mesh like any upstream (the URI's host is a Service or ServiceEntry, the
//! endpoint is reached by the one dialer, over HBONE when in the mesh), off
//! the request path, refreshed every 20 minutes (Istio's default), retried
//! with backoff while failing. A failed refresh keeps the keys already
//! fetched; until a first fetch succeeds, tokens of that issuer are refused
//! (`Jwks remote fetch is failed`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::authz::jwt::parse_jwks;
use crate::authz::RemoteKeys;
use crate::store::{Published, SnapshotStore};
use crate::upstream::dial::{DialTarget, Dialer, Originator};

const REFRESH: Duration = Duration::from_secs(20 * 60);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(60);
/// A JWKS larger than this is refused.
const MAX_BODY: usize = 1 << 20;

/// Runs until `shutdown` turns true.
pub async fn keep_fetched(
    store: Arc<SnapshotStore>,
    dialer: Arc<Dialer>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut reloads = store.subscribe();
    let mut fetched: HashMap<String, Instant> = HashMap::new();
    let mut retry = FIRST_RETRY;
    loop {
        let published = store.load();
        let mut failing = false;
        let mut next = REFRESH;
        for remote in published.authz.remote_keys() {
            let due = fetched
                .get(&remote.uri)
                .is_none_or(|at| at.elapsed() >= REFRESH);
            if !due {
                let left = REFRESH.saturating_sub(fetched[&remote.uri].elapsed());
                next = next.min(left);
                continue;
            }
            match tokio::time::timeout(FETCH_TIMEOUT, fetch(&published, &dialer, &remote)).await {
                Ok(Ok(n)) => {
                    info!(uri = %remote.uri, keys = n, "JWKS fetched");
                    fetched.insert(remote.uri.clone(), Instant::now());
                }
                Ok(Err(e)) => {
                    warn!(uri = %remote.uri, error = %e, "JWKS fetch failed; keeping the keys we have");
                    failing = true;
                }
                Err(_) => {
                    warn!(uri = %remote.uri, "JWKS fetch timed out; keeping the keys we have");
                    failing = true;
                }
            }
        }
        let wait = if failing {
            let w = retry;
            retry = (retry * 2).min(MAX_RETRY);
            w
        } else {
            retry = FIRST_RETRY;
            next
        };
        reloads.mark_unchanged();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            changed = reloads.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => if *shutdown.borrow() { return },
        }
    }
}

/// One fetch: the URI's host resolved in `published`, one endpoint, `GET`.
async fn fetch(
    published: &Published,
    dialer: &Dialer,
    remote: &RemoteKeys,
) -> Result<usize, String> {
    let uri: http::Uri = remote.uri.parse().map_err(|e| format!("{e}"))?;
    let host = uri.host().ok_or("no host")?;
    let port = uri.port_u16().unwrap_or(80);
    let authority = format!("{host}:{port}");
    let snapshot = &published.snapshot;
    let destination = snapshot
        .find_destination_by_host(&authority)
        .ok_or_else(|| format!("no Service or ServiceEntry serves {authority}"))?;
    let endpoints = snapshot
        .endpoints(&destination)
        .ok_or("no endpoints for the JWKS host")?;
    let picked = endpoints.pick(&[]).ok_or("no healthy endpoint")?;
    let target = DialTarget {
        addr: picked.endpoint.addr,
        in_mesh: picked.endpoint.in_mesh,
    };
    let stream = dialer
        .connect(target, &Originator::default())
        .await
        .map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let req = http::Request::get(path)
        .header(
            http::header::HOST,
            uri.authority().map(|a| a.as_str()).unwrap_or(host),
        )
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let text = std::str::from_utf8(&body).map_err(|e| e.to_string())?;
    let keys = parse_jwks(text)?;
    let n = keys.len();
    remote.keys.store(Some(Arc::new(keys)));
    debug!(uri = %remote.uri, endpoint = %target.addr, "JWKS stored");
    Ok(n)
}
