//! Config errors that name their location: file, document, object, field.

use std::fmt;

/// `Kind namespace/name` of the object an error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// Where in the user's YAML a problem is. Every part is optional because some
/// errors (an unreadable directory) have no document or object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    pub file: Option<String>,
    /// 0-based index of the YAML document in the file.
    pub document: Option<usize>,
    pub object: Option<ObjectRef>,
    /// Dotted field path as the user wrote it, e.g. `spec.rules[0].backendRefs[1].weight`.
    pub field: Option<String>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(file) = &self.file {
            parts.push(file.clone());
        }
        if let Some(doc) = self.document {
            parts.push(format!("document {doc}"));
        }
        if let Some(obj) = &self.object {
            parts.push(obj.to_string());
        }
        if let Some(field) = &self.field {
            parts.push(format!("field {field}"));
        }
        f.write_str(&parts.join(": "))
    }
}

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {reason}")]
pub struct ConfigError {
    /// Boxed: errors travel in `Result`s through hot-ish loader code.
    pub location: Box<Location>,
    pub reason: String,
}

impl ConfigError {
    pub fn new(location: Location, reason: impl Into<String>) -> Self {
        Self {
            location: Box::new(location),
            reason: reason.into(),
        }
    }
}

/// Every problem found in one load; a config with any is rejected whole.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} config error{}", if n == 1 { "" } else { "s" })?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn push(&mut self, e: ConfigError) {
        self.0.push(e);
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        Self(vec![e])
    }
}
