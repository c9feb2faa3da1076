//! The file source (`waypoint run --config`): a file or a directory of multi-document
//! YAML, read again on every reload. Watching the path is `config::watch`'s job.

use std::path::{Path, PathBuf};

use super::ConfigSource;
use crate::config::{self, ConfigErrors, Resources};

/// A file or directory of multi-document YAML (`waypoint run --config`).
#[derive(Debug, Clone)]
pub struct FileSource {
    /// The `--config` path.
    pub path: PathBuf,
}

impl ConfigSource for FileSource {
    fn load(&self, default_namespace: &str) -> Result<Resources, ConfigErrors> {
        config::load_path(&self.path, default_namespace)
    }

    fn base_dir(&self) -> PathBuf {
        if self.path.is_dir() {
            self.path.clone()
        } else {
            self.path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
        }
    }

    fn describe(&self) -> serde_json::Value {
        serde_json::json!({"type": "file", "path": self.path.display().to_string()})
    }
}
