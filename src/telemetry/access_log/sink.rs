//! Where access-log lines go: one writer thread per file path, fed by a bounded channel.
//! The request path renders its line and `try_send`s it (no file syscall, no wait); the
//! writer drains whatever has queued and writes it in one `write_all`, so lines never
//! interleave and a busy waypoint makes one write per batch, as Envoy's buffered
//! file logger does. A full queue drops the line and counts it
//! (`waypoint_access_log_dropped_total`) rather than slowing requests.

use std::collections::HashMap;
use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

/// Lines queued per sink before new ones are dropped.
const QUEUE: usize = 16 * 1024;
/// Largest batch written at once.
const BATCH_BYTES: usize = 256 * 1024;

/// What a sink's writer thread is sent.
#[derive(Debug)]
enum Msg {
    Line(String),
    /// Write out what is queued before this, then answer.
    Flush(SyncSender<()>),
}

/// An open access-log destination (a file path, `/dev/stdout`).
#[derive(Debug)]
pub struct LogSink {
    path: String,
    tx: SyncSender<Msg>,
    dropped: prometheus::IntCounter,
}

impl PartialEq for LogSink {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
    }
}

impl LogSink {
    /// The path lines are written to.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Queues one rendered line; drops and counts it when the writer is behind.
    pub fn write(&self, line: String) {
        match self.tx.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }
}

/// The sinks by path, kept across reloads so a reload neither reopens files nor starts
/// threads for paths already open.
#[derive(Default)]
pub struct SinkRegistry {
    by_path: Mutex<HashMap<String, Arc<LogSink>>>,
}

/// `waypoint_access_log_dropped_total`: lines dropped because a writer was behind. One
/// counter for the process (the sinks are per process); `Metrics` registers it.
pub fn dropped_counter() -> &'static prometheus::IntCounter {
    static DROPPED: std::sync::OnceLock<prometheus::IntCounter> = std::sync::OnceLock::new();
    DROPPED.get_or_init(|| {
        prometheus::IntCounter::new(
            "waypoint_access_log_dropped_total",
            "Access-log lines dropped because the writer was behind.",
        )
        .expect("static metric definition is valid")
    })
}

/// Why a sink could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("access log {path}: cannot open: {source}")]
pub struct SinkError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

impl SinkRegistry {
    /// The process's sinks: one writer per file, whichever snapshot or waypoint uses it.
    pub fn global() -> &'static SinkRegistry {
        static SINKS: std::sync::OnceLock<SinkRegistry> = std::sync::OnceLock::new();
        SINKS.get_or_init(SinkRegistry::default)
    }

    /// Writes out every line queued so far in every sink, waiting up to
    /// `limit` for each: at shutdown, so the last requests' lines are not lost.
    pub fn flush_all(&self, limit: std::time::Duration) {
        let sinks: Vec<Arc<LogSink>> = self
            .by_path
            .lock()
            .expect("sink registry lock is never poisoned")
            .values()
            .cloned()
            .collect();
        for sink in sinks {
            let (ack_tx, ack_rx) = sync_channel(1);
            if sink.tx.send(Msg::Flush(ack_tx)).is_ok() {
                let _ = ack_rx.recv_timeout(limit);
            }
        }
    }

    /// The sink writing to `path`, opened (append, created) on first use.
    pub fn open(&self, path: &str) -> Result<Arc<LogSink>, SinkError> {
        let mut by_path = self
            .by_path
            .lock()
            .expect("sink registry lock is never poisoned");
        if let Some(s) = by_path.get(path) {
            return Ok(s.clone());
        }
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(|source| SinkError {
                path: path.to_string(),
                source,
            })?;
        let (tx, rx) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("access-log".to_string())
            .spawn(move || write_loop(file, rx))
            .map_err(|source| SinkError {
                path: path.to_string(),
                source,
            })?;
        let dropped = dropped_counter().clone();
        let sink = Arc::new(LogSink {
            path: path.to_string(),
            tx,
            dropped,
        });
        by_path.insert(path.to_string(), sink.clone());
        Ok(sink)
    }
}

/// Blocks for a line, takes every line already queued (up to a batch), writes them at once.
fn write_loop(mut file: std::fs::File, rx: Receiver<Msg>) {
    let mut batch = String::with_capacity(BATCH_BYTES);
    while let Ok(msg) = rx.recv() {
        let mut flushed = None;
        match msg {
            Msg::Line(line) => batch.push_str(&line),
            Msg::Flush(ack) => flushed = Some(ack),
        }
        while flushed.is_none() && batch.len() < BATCH_BYTES {
            match rx.try_recv() {
                Ok(Msg::Line(more)) => batch.push_str(&more),
                Ok(Msg::Flush(ack)) => flushed = Some(ack),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            if let Err(e) = file.write_all(batch.as_bytes()) {
                tracing::warn!(error = %e, "access log write failed");
            }
            batch.clear();
        }
        if let Some(ack) = flushed {
            let _ = file.flush();
            let _ = ack.try_send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_reach_the_file_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let path = path.to_str().unwrap();
        let reg = SinkRegistry::default();
        let sink = reg.open(path).unwrap();
        assert!(
            Arc::ptr_eq(&sink, &reg.open(path).unwrap()),
            "one sink per path"
        );
        for i in 0..100 {
            sink.write(format!("line {i}\n"));
        }
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        // The writer has written line 99 once the file holds it; wait on the file.
        std::thread::spawn(move || loop {
            let text = std::fs::read_to_string(dir.path().join("access.log")).unwrap();
            if text.lines().count() == 100 {
                let _ = done_tx.send(text);
                return;
            }
            std::thread::yield_now();
        });
        let text = done_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("lines written");
        let want: Vec<String> = (0..100).map(|i| format!("line {i}")).collect();
        assert_eq!(text.lines().collect::<Vec<_>>(), want);
    }
}
