//! Keeping the source in step with the API server: one kube-runtime watcher
//! per kind (list, then watch from the list's resourceVersion; re-watch from
//! the last one after a dropped stream; relist after 410 Gone; exponential
//! backoff after failures), and one task that turns bursts of changes into
//! one reload on a blocking thread.

use std::sync::Arc;
use std::time::Duration;

use crate::config::ISTIO_CONFIGMAP;
use futures::StreamExt;
use kube::api::Api;
use kube::core::DynamicObject;
use kube::runtime::{watcher, WatchStreamExt};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::client::describe;
use super::{KubeSource, WatchedKind};
use crate::config::source::Reload;

/// Quiet period after the last change before rebuilding the config.
const SETTLE: Duration = Duration::from_millis(100);
/// Longest a steady stream of changes can postpone a rebuild.
const MAX_DELAY: Duration = Duration::from_secs(1);

/// The running watches; dropping it stops them.
pub struct KubeWatch {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for KubeWatch {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts watching every kind through `client` (`url` names the API server in
/// logs) into `source`, reloading `store` (the snapshot store) after each
/// settled burst of changes once every kind has synced. `on_first_snapshot`
/// runs once, after the first reload that succeeds on fully synced objects.
pub fn start<R: Reload>(
    client: kube::Client,
    url: String,
    source: Arc<KubeSource>,
    store: Arc<R>,
    on_first_snapshot: impl FnOnce() + Send + 'static,
) -> KubeWatch {
    let changed = Arc::new(Notify::new());
    let mut tasks: Vec<JoinHandle<()>> = WatchedKind::ALL
        .iter()
        .map(|&kind| {
            tokio::spawn(watch_kind(
                kind,
                client.clone(),
                url.clone(),
                source.clone(),
                changed.clone(),
            ))
        })
        .collect();
    tasks.push(tokio::spawn(rebuild_loop(
        source,
        store,
        changed,
        on_first_snapshot,
    )));
    KubeWatch { tasks }
}

async fn watch_kind(
    kind: WatchedKind,
    client: kube::Client,
    url: String,
    source: Arc<KubeSource>,
    changed: Arc<Notify>,
) {
    // The mesh ConfigMap is one object in the root namespace: watch only it
    // (and need read access to only it).
    let (api, config): (Api<DynamicObject>, _) = match kind {
        WatchedKind::MeshConfigMap => (
            Api::namespaced_with(client, &source.root_namespace, &kind.api_resource()),
            watcher::Config::default().fields(&format!("metadata.name={ISTIO_CONFIGMAP}")),
        ),
        _ => (
            Api::all_with(client, &kind.api_resource()),
            watcher::Config::default(),
        ),
    };
    let mut events = watcher(api, config).default_backoff().boxed();
    // Repeats of the same failure (every backoff step) are logged at debug.
    let mut last_error = String::new();
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                last_error.clear();
                debug!(kind = kind.kind(), event = ?event_name(&event), "watch event");
                if source.apply(kind, event) {
                    changed.notify_one();
                }
            }
            // A kind whose CRD is not installed (Linkerd's, in an Istio-only
            // cluster) is empty, not a reason to stay unready; the stream keeps
            // retrying, so objects appear once the CRD does.
            Err(watcher::Error::InitialListFailed(kube::Error::Api(status)))
                if status.code == 404 && kind.optional() =>
            {
                if !source.is_listed(kind) {
                    info!(
                        kind = kind.kind(),
                        "kind not served by the API server (CRD not installed); treated as empty"
                    );
                    source.apply(kind, watcher::Event::Init);
                    if source.apply(kind, watcher::Event::InitDone) {
                        changed.notify_one();
                    }
                }
            }
            // The stream retries by itself after the backoff; a 410 means
            // "relist", which it does next.
            Err(watcher::Error::WatchError(status)) if status.code == 410 => {
                info!(kind = kind.kind(), "watch history expired; relisting");
            }
            Err(e) => {
                let error = describe_watch_error(&url, e);
                if error == last_error {
                    debug!(kind = kind.kind(), %error, "watch failed again; retrying with backoff");
                } else {
                    warn!(
                        kind = kind.kind(),
                        %error,
                        "watch failed; retrying with backoff (not ready until every kind has synced once)"
                    );
                    last_error = error;
                }
            }
        }
    }
}

fn event_name(event: &watcher::Event<DynamicObject>) -> &'static str {
    match event {
        watcher::Event::Init => "Init",
        watcher::Event::InitApply(_) => "InitApply",
        watcher::Event::InitDone => "InitDone",
        watcher::Event::Apply(_) => "Apply",
        watcher::Event::Delete(_) => "Delete",
    }
}

fn describe_watch_error(url: &str, error: watcher::Error) -> String {
    match error {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => describe(url, e).to_string(),
        other => other.to_string(),
    }
}

async fn rebuild_loop<R: Reload>(
    source: Arc<KubeSource>,
    store: Arc<R>,
    changed: Arc<Notify>,
    on_first_snapshot: impl FnOnce() + Send + 'static,
) {
    let mut on_first_snapshot = Some(on_first_snapshot);
    loop {
        changed.notified().await;
        // Coalesce a burst (a relist, a rollout) into one rebuild.
        let deadline = tokio::time::Instant::now() + MAX_DELAY;
        while tokio::time::Instant::now() < deadline
            && tokio::time::timeout(SETTLE, changed.notified())
                .await
                .is_ok()
        {}
        if !source.is_synced() {
            continue;
        }
        let store = store.clone();
        let result = tokio::task::spawn_blocking(move || store.reload()).await;
        match result {
            Ok(Ok(generation)) => {
                if let Some(ready) = on_first_snapshot.take() {
                    info!(generation, "config from the API server loaded");
                    ready();
                }
            }
            // The store logged and counted the rejection.
            Ok(Err(_)) => {}
            Err(e) => warn!(error = %e, "BUG: config rebuild task failed"),
        }
    }
}
