//! Reloading the certificate directory when its files change.
//!
//! Istio (and Kubernetes secret volumes) replace the files by rename or symlink swap, often
//! three files in a row; events are coalesced over a short quiet period and then one reload
//! runs. A failed reload keeps the old certificate, and the next change tries again.

use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::error::IdentityError;
use super::store::IdentityStore;

/// Quiet period after the last file event before reloading.
const RELOAD_DEBOUNCE: Duration = Duration::from_millis(100);

/// Keeps the directory watch alive; dropping it stops watching.
#[derive(Debug)]
pub struct CertWatcher {
    _watcher: notify::RecommendedWatcher,
    task: JoinHandle<()>,
}

impl Drop for CertWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl IdentityStore {
    /// Watches this store's directory and reloads on change. Must be called inside a Tokio
    /// runtime (the reload loop is a task).
    pub fn watch(self: &Arc<Self>) -> Result<CertWatcher, IdentityError> {
        let dir = self.cert_dir().path().to_owned();
        let (tx, rx) = mpsc::unbounded_channel();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                Ok(e) if !matches!(e.kind, EventKind::Access(_)) => {
                    let _ = tx.send(());
                }
                Ok(_) => {}
                Err(e) => warn!(error = %e, "certificate directory watch error"),
            })
            .map_err(|source| IdentityError::Watch {
                dir: dir.clone(),
                source,
            })?;
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|source| IdentityError::Watch {
                dir: dir.clone(),
                source,
            })?;
        let task = tokio::spawn(reload_loop(self.clone(), rx));
        Ok(CertWatcher {
            _watcher: watcher,
            task,
        })
    }
}

async fn reload_loop(store: Arc<IdentityStore>, mut rx: mpsc::UnboundedReceiver<()>) {
    while rx.recv().await.is_some() {
        // Coalesce a burst of events (three files replaced) into one reload.
        loop {
            match tokio::time::timeout(RELOAD_DEBOUNCE, rx.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) => return,
                Err(_quiet) => break,
            }
        }
        match store.reload() {
            Ok(()) => debug!("certificate directory change applied"),
            Err(e) => {
                warn!(error = %e, "certificate reload failed; keeping the previous certificate")
            }
        }
    }
}
