//! Keeps the keys of every `jwksUri` the config names fetched: through the
//! mesh like any upstream (the URI's host is a Service or ServiceEntry, the
//! endpoint is reached by the one dialer, over HBONE when in the mesh), off
//! the request path, refreshed every `--jwks-refresh-interval` (20 minutes,
//! Istio's default), retried
//! with backoff while failing. A failed refresh keeps the keys already
//! fetched; until a first fetch succeeds, tokens of that issuer are refused
//! (`Jwks remote fetch is failed`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::authz::jwt::parse_jwks;
use crate::authz::RemoteKeys;
use crate::store::{Published, SnapshotStore};
use crate::upstream::dial::Dialer;

use super::mesh_http::exchange;

const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(60);
/// A JWKS larger than this is refused.
const MAX_BODY: usize = 1 << 20;

/// Runs until `shutdown` turns true; each URI is fetched again every `refresh`.
pub async fn keep_fetched(
    store: Arc<SnapshotStore>,
    dialer: Arc<Dialer>,
    refresh: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut reloads = store.subscribe();
    let mut fetched: HashMap<String, Instant> = HashMap::new();
    let mut retry = FIRST_RETRY;
    loop {
        let published = store.load();
        let mut failing = false;
        let mut next = refresh;
        for remote in published.authz.remote_keys() {
            let due = fetched
                .get(&remote.uri)
                .is_none_or(|at| at.elapsed() >= refresh);
            if !due {
                let left = refresh.saturating_sub(fetched[&remote.uri].elapsed());
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

/// One fetch: the URI's host resolved in `published`, through the dialer.
async fn fetch(
    published: &Published,
    dialer: &Dialer,
    remote: &RemoteKeys,
) -> Result<usize, String> {
    let uri: http::Uri = remote.uri.parse().map_err(|e| format!("{e}"))?;
    let host = uri.host().ok_or("no host")?;
    let authority = format!("{host}:{}", uri.port_u16().unwrap_or(80));
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let req = http::Request::get(path)
        .header(
            http::header::HOST,
            uri.authority().map(|a| a.as_str()).unwrap_or(host),
        )
        .header(http::header::ACCEPT, "application/json")
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = exchange(published, dialer, &authority, req, MAX_BODY)
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    let text = std::str::from_utf8(resp.body()).map_err(|e| e.to_string())?;
    let keys = parse_jwks(text)?;
    let n = keys.len();
    remote.keys.store(Some(Arc::new(keys)));
    debug!(uri = %remote.uri, "JWKS stored");
    Ok(n)
}
