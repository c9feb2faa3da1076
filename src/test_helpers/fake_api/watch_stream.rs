//! Watch streams: newline-delimited events from a resourceVersion on,
//! 410 Gone for compacted history, ended by `drop_watches`.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::api_path::{as_served, query_param, ApiPath};
use super::objects::ApiFailure;
use super::selectors::Selector;
use super::shared::{Body, Shared};

pub(super) fn start_watch(shared: Arc<Shared>, api: ApiPath, query: &str) -> Response<Body> {
    let selector = Selector::parse(
        query_param(query, "labelSelector").as_deref(),
        query_param(query, "fieldSelector").as_deref(),
    );
    let from: Option<u64> = query_param(query, "resourceVersion")
        .and_then(|rv| rv.parse().ok())
        .filter(|rv| *rv != 0);
    let timeout = query_param(query, "timeoutSeconds")
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(300));
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        shared.open_watches.fetch_add(1, Ordering::SeqCst);
        shared.touch();
        let _ = tokio::time::timeout(timeout, run_watch(&shared, &api, selector, from, tx)).await;
        shared.open_watches.fetch_sub(1, Ordering::SeqCst);
        shared.touch();
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|line| (Ok::<_, Infallible>(Frame::data(line)), rx))
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

async fn run_watch(
    shared: &Shared,
    api: &ApiPath,
    selector: Selector,
    from: Option<u64>,
    tx: mpsc::Sender<Bytes>,
) {
    let mut changed = shared.changed.subscribe();
    let mut dropped = shared.drop_generation.subscribe();
    dropped.mark_unchanged();
    // Decide where to start with the lock held, then send without it.
    let (initial, start) = {
        let state = shared.lock();
        match from {
            Some(rv) if state.store.is_compacted(rv) => {
                let gone = ApiFailure {
                    code: 410,
                    reason: "Expired",
                    message: format!(
                        "too old resource version: {rv} ({})",
                        state.store.resource_version()
                    ),
                };
                (vec![line("ERROR", &gone.to_status())], None)
            }
            Some(rv) => (Vec::new(), Some(rv)),
            // No resourceVersion: synthetic ADDED for what exists now.
            None => {
                let added = state
                    .store
                    .list(api.rt, api.namespace.as_deref())
                    .filter(|(_, o)| selector.matches(o))
                    .map(|(_, o)| line("ADDED", &as_served(api, o.clone())))
                    .collect();
                (added, Some(state.store.resource_version()))
            }
        }
    };
    for event in initial {
        if tx.send(event).await.is_err() {
            return;
        }
    }
    let Some(mut position) = start else {
        return;
    };
    loop {
        let batch: Vec<Bytes> = {
            let state = shared.lock();
            let events = state.store.events_after(position);
            if let Some(last) = events.last() {
                position = last.resource_version;
            }
            events
                .iter()
                .filter(|e| {
                    e.key.group == api.rt.group
                        && e.key.plural == api.rt.plural
                        && api
                            .namespace
                            .as_ref()
                            .is_none_or(|ns| *ns == e.key.namespace)
                        && selector.matches(&e.object)
                })
                .map(|e| line(e.event_type.as_str(), &as_served(api, e.object.clone())))
                .collect()
        };
        for event in batch {
            if tx.send(event).await.is_err() {
                return;
            }
        }
        tokio::select! {
            biased;
            _ = dropped.changed() => return,
            r = changed.changed() => if r.is_err() { return },
            _ = tx.closed() => return,
        }
    }
}

fn line(event_type: &str, object: &Value) -> Bytes {
    let mut text = json!({"type": event_type, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}
