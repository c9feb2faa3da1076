//! A fake Kubernetes API server on loopback, speaking the real wire format:
//! JSON lists with resourceVersions, newline-delimited watch streams, create
//! / replace / merge and server-side-apply PATCH / delete, the status
//! subresource, `Status` failures (404, 403, 409, 410). Tests drive it
//! directly (seed objects, inject failures, drop watches, compact history)
//! and point real clients at it through a kubeconfig.
//!
//! Owns the server and the test-facing API; the object store is `objects.rs`, selectors
//! `selectors.rs`, the state they share `shared.rs`, and serving requests `requests.rs`
//! and `watch_stream.rs`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

mod api_path;
mod objects;
mod requests;
mod selectors;
mod shared;
mod watch_stream;

#[cfg(test)]
mod tests;

use objects::{find_kind, ObjectKey, ObjectStore, WriteScope};
pub use objects::{ResourceType, RESOURCE_TYPES};
pub use shared::{FaultRule, RecordedRequest};
use shared::{Shared, State};

/// The running fake; stops when dropped.
pub struct FakeApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
        self.drop_watches();
    }
}

impl FakeApiServer {
    /// Starts on `addr` (port 0 picks one).
    pub async fn start(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                store: ObjectStore::default(),
                faults: Vec::new(),
                requests: Vec::new(),
            }),
            changed: watch::Sender::new(0),
            drop_generation: watch::Sender::new(0),
            open_watches: AtomicUsize::new(0),
            activity: watch::Sender::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(Self { addr, shared, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig whose current context points at this server.
    pub fn kubeconfig_yaml(&self, namespace: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\n\
             users:\n- name: tester\n  user:\n    token: fake-token\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: tester\n    namespace: {namespace}\n\
             current-context: fake\n",
            url = self.url()
        )
    }

    /// Writes [`Self::kubeconfig_yaml`] into `dir/kubeconfig` and returns the path.
    pub fn write_kubeconfig(&self, dir: &Path, namespace: &str) -> std::io::Result<PathBuf> {
        let path = dir.join("kubeconfig");
        std::fs::write(&path, self.kubeconfig_yaml(namespace))?;
        Ok(path)
    }

    /// Creates or replaces `object` whole (status included), as a test's
    /// seed. Panics on an unknown kind or missing namespace: a test bug.
    pub fn put(&self, object: Value) -> Value {
        let (rt, key) = key_of(&object);
        let mut state = self.shared.lock();
        let result = if state.store.get(&key).is_some() {
            state.store.update(&key, object, None, WriteScope::Whole)
        } else {
            state.store.create(key, object)
        };
        drop(state);
        self.shared.notify();
        result.unwrap_or_else(|e| panic!("seeding {}: {}", rt.kind, e.message))
    }

    /// Deletes like `kubectl delete` (finalizers and dependents honoured).
    pub fn delete(&self, api_version: &str, kind: &str, namespace: Option<&str>, name: &str) {
        let key = object_key(api_version, kind, namespace, name);
        let result = self.shared.lock().store.delete(&key);
        self.shared.notify();
        if let Err(e) = result {
            panic!("deleting {kind} {name}: {}", e.message);
        }
    }

    pub fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let key = object_key(api_version, kind, namespace, name);
        self.shared.lock().store.get(&key).cloned()
    }

    /// Every stored object of a kind, all namespaces.
    pub fn list(&self, api_version: &str, kind: &str) -> Vec<Value> {
        let rt = find_kind(api_version, kind).unwrap_or_else(|| panic!("unknown kind {kind}"));
        let state = self.shared.lock();
        state.store.list(rt, None).map(|(_, o)| o.clone()).collect()
    }

    pub fn fail(&self, rule: FaultRule) {
        self.shared.lock().faults.push(rule);
    }

    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Forgets history: watches resuming from any resourceVersion issued so
    /// far get 410 Gone and must relist.
    pub fn compact(&self) {
        self.shared.lock().store.compact();
    }

    /// Ends every open watch stream, as an API server restart or a load
    /// balancer timeout would.
    pub fn drop_watches(&self) {
        self.shared.drop_generation.send_modify(|n| *n += 1);
    }

    pub fn open_watches(&self) -> usize {
        self.shared.open_watches.load(Ordering::SeqCst)
    }

    pub fn resource_version(&self) -> u64 {
        self.shared.lock().store.resource_version()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Waits until `check` returns `Some`, checking now and again after every request the
    /// fake records, every write (by a client or the test) and every watch opened or
    /// closed: the event to wait on for what a client does to the fake. Not bounded by
    /// itself; wrap it in a timeout.
    pub async fn wait_until<T>(&self, mut check: impl FnMut(&Self) -> Option<T>) -> T {
        let mut activity = self.shared.activity.subscribe();
        loop {
            // Marked seen before checking, so activity during the check wakes us again.
            activity.mark_unchanged();
            if let Some(found) = check(self) {
                return found;
            }
            activity
                .changed()
                .await
                .expect("BUG: the sender lives in `self.shared`, which outlives this call");
        }
    }
}

fn key_of(object: &Value) -> (&'static ResourceType, ObjectKey) {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let rt = find_kind(api_version, kind)
        .unwrap_or_else(|| panic!("fake API server does not serve {api_version} {kind}"));
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let ns = object["metadata"]["namespace"].as_str();
    let ns = if rt.namespaced {
        Some(ns.unwrap_or("default"))
    } else {
        None
    };
    (rt, object_key(api_version, kind, ns, name))
}

fn object_key(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> ObjectKey {
    let rt = find_kind(api_version, kind).unwrap_or_else(|| panic!("unknown kind {kind}"));
    ObjectKey {
        group: rt.group,
        plural: rt.plural,
        namespace: if rt.namespaced {
            namespace.unwrap_or("default").to_string()
        } else {
            String::new()
        },
        name: name.to_string(),
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(requests::handle(shared, req).await) }
            });
            // Clients hang up whenever they like; nothing to report.
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
