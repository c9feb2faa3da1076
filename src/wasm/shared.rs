//! Process-wide shared data and shared queues, keyed per VM id as Envoy keys
//! them, so every instance of a plugin (one per worker) sees the same state
//! and a reloaded plugin keeps it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, OnceLock};

use super::abi::Status;
use super::plugin_env::ServiceEvent;

/// (vm_id, key) → (value, CAS version).
type Entries = HashMap<(String, String), (Vec<u8>, u32)>;

/// Key/value store with compare-and-swap versions.
#[derive(Default)]
pub(crate) struct SharedData {
    entries: Mutex<Entries>,
}

/// The process's shared data.
pub(crate) fn data() -> &'static SharedData {
    static DATA: OnceLock<SharedData> = OnceLock::new();
    DATA.get_or_init(SharedData::default)
}

impl SharedData {
    /// The value and its CAS version.
    pub(crate) fn get(&self, vm_id: &str, key: &str) -> Option<(Vec<u8>, u32)> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(&(vm_id.to_string(), key.to_string())).cloned()
    }

    /// Stores `value`. Per the spec, `cas` 0 writes unconditionally; any other
    /// value must equal the current version or the write fails with
    /// `CasMismatch`.
    pub(crate) fn set(
        &self,
        vm_id: &str,
        key: String,
        value: Vec<u8>,
        cas: u32,
    ) -> Result<(), Status> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries
            .entry((vm_id.to_string(), key))
            .or_insert_with(|| (Vec::new(), 0));
        if cas != 0 && cas != entry.1 {
            return Err(Status::CasMismatch);
        }
        // Versions start at 1 and skip 0, which means "no version".
        entry.1 = entry.1.wrapping_add(1).max(1);
        entry.0 = value;
        Ok(())
    }
}

/// Who hears `proxy_on_queue_ready` for a queue: the root context that
/// registered it last (as in Envoy).
#[derive(Clone)]
pub(crate) struct QueueOwner {
    pub(crate) events: std::sync::mpsc::Sender<ServiceEvent>,
    pub(crate) slot: usize,
    pub(crate) context_id: u32,
}

struct Queue {
    items: VecDeque<Vec<u8>>,
    owner: QueueOwner,
}

/// Named queues.
#[derive(Default)]
pub(crate) struct SharedQueues {
    inner: Mutex<QueuesInner>,
}

#[derive(Default)]
struct QueuesInner {
    by_name: HashMap<(String, String), u32>,
    queues: HashMap<u32, Queue>,
    next_id: u32,
}

/// The process's shared queues.
pub(crate) fn queues() -> &'static SharedQueues {
    static QUEUES: OnceLock<SharedQueues> = OnceLock::new();
    QUEUES.get_or_init(SharedQueues::default)
}

impl SharedQueues {
    /// Registers (or re-registers) `name` for `owner`; returns its id.
    pub(crate) fn register(&self, vm_id: &str, name: &str, owner: QueueOwner) -> u32 {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let key = (vm_id.to_string(), name.to_string());
        if let Some(&id) = inner.by_name.get(&key) {
            if let Some(q) = inner.queues.get_mut(&id) {
                q.owner = owner;
            }
            return id;
        }
        inner.next_id += 1;
        let id = inner.next_id;
        inner.by_name.insert(key, id);
        inner.queues.insert(
            id,
            Queue {
                items: VecDeque::new(),
                owner,
            },
        );
        id
    }

    /// The id of a registered queue.
    pub(crate) fn resolve(&self, vm_id: &str, name: &str) -> Option<u32> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .by_name
            .get(&(vm_id.to_string(), name.to_string()))
            .copied()
    }

    /// Appends and tells the owner.
    pub(crate) fn enqueue(&self, id: u32, value: Vec<u8>) -> Result<(), Status> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let q = inner.queues.get_mut(&id).ok_or(Status::NotFound)?;
        q.items.push_back(value);
        let owner = q.owner.clone();
        drop(inner);
        // A gone owner (plugin unloaded) just means nobody is told.
        let _ = owner.events.send(ServiceEvent::QueueReady {
            slot: owner.slot,
            context_id: owner.context_id,
            queue_id: id,
        });
        Ok(())
    }

    /// Takes the oldest item; `Empty` when there is none.
    pub(crate) fn dequeue(&self, id: u32) -> Result<Vec<u8>, Status> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let q = inner.queues.get_mut(&id).ok_or(Status::NotFound)?;
        q.items.pop_front().ok_or(Status::Empty)
    }
}
