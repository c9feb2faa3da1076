//! Follows the config path on disk and asks for a reload when it changes.
//!
//! Editors and `kubectl`-mounted ConfigMaps replace files by rename, so the
//! directory (or a single file's parent) is watched, not the file's inode.
//! Events are coalesced: a burst of writes causes one reload.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::warn;

/// Quiet period after the last change before reloading.
const SETTLE: Duration = Duration::from_millis(100);

/// Keeps the OS watch alive; dropping it stops watching.
pub struct ConfigWatcher {
    _watcher: notify::RecommendedWatcher,
}

impl ConfigWatcher {
    /// Watches `path`; `on_change` runs on a blocking thread after each
    /// settled burst of changes.
    pub fn start<F>(path: &Path, on_change: F) -> notify::Result<Self>
    where
        F: Fn() + Send + Sync + 'static,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                Ok(e) if e.kind.is_access() => {}
                Ok(_) => {
                    let _ = tx.send(());
                }
                Err(e) => warn!(error = %e, "config watch error"),
            })?;
        let (target, mode) = watch_target(path);
        watcher.watch(&target, mode)?;
        let on_change = std::sync::Arc::new(on_change);
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                // Coalesce: keep absorbing events until the path is quiet.
                while let Ok(Some(())) = tokio::time::timeout(SETTLE, rx.recv()).await {}
                let f = on_change.clone();
                let _ = tokio::task::spawn_blocking(move || f()).await;
            }
        });
        Ok(Self { _watcher: watcher })
    }
}

fn watch_target(path: &Path) -> (PathBuf, RecursiveMode) {
    if path.is_dir() {
        (path.to_path_buf(), RecursiveMode::Recursive)
    } else {
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| Path::new("."));
        (parent.to_path_buf(), RecursiveMode::NonRecursive)
    }
}
