//! What the fake API server's parts share: its state behind one lock ([`Shared`]), the
//! request log and injected faults, and the response body type. Below `fake_api.rs` (the
//! test-facing handle) and `requests.rs` / `watch_stream.rs` (serving), which all use it.

use std::convert::Infallible;
use std::sync::atomic::AtomicUsize;
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use http::Method;
use http_body_util::combinators::BoxBody;
use tokio::sync::watch;

use super::objects::{ApiFailure, ObjectStore};

/// Response bodies: whole JSON documents, or a watch stream.
pub(super) type Body = BoxBody<Bytes, Infallible>;

/// One request the fake answered, for assertions on how clients talk.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub content_type: Option<String>,
}

/// Answers matching requests with a failure instead of serving them.
#[derive(Debug, Clone)]
pub struct FaultRule {
    pub(super) method: Option<Method>,
    pub(super) path_contains: String,
    code: u16,
    pub(super) remaining: Option<usize>,
}

impl FaultRule {
    /// Every request whose path contains `path_contains`.
    pub fn new(path_contains: impl Into<String>, code: u16) -> Self {
        Self {
            method: None,
            path_contains: path_contains.into(),
            code,
            remaining: None,
        }
    }

    pub fn method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }

    /// Only the next `n` matching requests.
    pub fn times(mut self, n: usize) -> Self {
        self.remaining = Some(n);
        self
    }

    /// The `Status` failure a matching request gets.
    pub(super) fn failure(&self) -> ApiFailure {
        let (reason, message) = match self.code {
            401 => ("Unauthorized", "Unauthorized".to_string()),
            403 => (
                "Forbidden",
                format!("forbidden: injected for {}", self.path_contains),
            ),
            404 => (
                "NotFound",
                "the server could not find the requested resource".into(),
            ),
            410 => ("Expired", "too old resource version".into()),
            500 => ("InternalError", "injected internal error".into()),
            _ => ("ServiceUnavailable", "injected failure".into()),
        };
        ApiFailure {
            code: self.code,
            reason,
            message,
        }
    }
}

/// Everything behind the one lock.
pub(super) struct State {
    pub(super) store: ObjectStore,
    pub(super) faults: Vec<FaultRule>,
    pub(super) requests: Vec<RecordedRequest>,
}

/// The server's state, shared by the test handle, every connection and every watch.
pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    /// Bumped after every write, so watches wake and read the event log.
    pub(super) changed: watch::Sender<u64>,
    /// Bumped by `drop_watches`: every open watch stream ends.
    pub(super) drop_generation: watch::Sender<u64>,
    pub(super) open_watches: AtomicUsize,
    /// Bumped after anything a test may wait for: a request recorded, a write, a watch
    /// opened or closed. `FakeApiServer::wait_until` follows it.
    pub(super) activity: watch::Sender<u64>,
}

impl Shared {
    /// The state, locked.
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("fake API state lock is never poisoned: no panics while held")
    }

    /// Wakes every watch after a write.
    pub(super) fn notify(&self) {
        self.changed.send_modify(|n| *n += 1);
        self.touch();
    }

    /// Wakes tests waiting in `FakeApiServer::wait_until`.
    pub(super) fn touch(&self) {
        self.activity.send_modify(|n| *n += 1);
    }
}
