//! Where the config comes from: the [`ConfigSource`] the snapshot store reads on every
//! reload, and the two sources we have: YAML files ([`file`], `--config`) and the
//! Kubernetes API server ([`kube`], `--kube`).
//!
//! Owns the contract between a source and the store, in both directions: the store asks a
//! source for objects ([`ConfigSource`]); a source that notices changes itself asks the
//! store to rebuild ([`Reload`]). Compiling and publishing the snapshot is the store's.

pub mod file;
pub mod kube;

use std::path::PathBuf;

use super::{ConfigErrors, Resources};

pub use file::FileSource;

/// Where the store gets its objects: YAML files (`--config`) or the
/// Kubernetes API (`--kube`). Every reload asks the source again.
pub trait ConfigSource: Send + Sync {
    /// The objects as they are now. Blocking: called from a blocking thread.
    fn load(&self, default_namespace: &str) -> Result<Resources, ConfigErrors>;
    /// Directory that relative WasmPlugin `url`s resolve against when the
    /// defining file's own directory is unknown.
    fn base_dir(&self) -> PathBuf;
    /// What `/config_dump` shows under `source`.
    fn describe(&self) -> serde_json::Value;
}

/// What a source that watches for changes itself (the API server's) calls after a burst
/// of them: the snapshot store, which re-reads the source and swaps in the result. The file
/// source needs none; its watcher takes a closure (`config::watch`).
pub trait Reload: Send + Sync + 'static {
    /// Re-reads the source and publishes the result if it is valid and changed; returns
    /// the generation now served. Blocking: called from a blocking thread.
    fn reload(&self) -> Result<u64, ConfigErrors>;
}
