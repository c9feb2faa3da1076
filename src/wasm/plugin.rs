//! A loaded plugin: its compiled module, a fixed set of long-lived instances
//! (one per worker, each behind a `Mutex`), and the service thread that
//! delivers `proxy_on_tick` and `proxy_on_queue_ready` to root contexts.
//!
//! Threading model: a request is pinned to one instance (round robin) when
//! its filter chain starts, because its HTTP context lives in that instance's
//! memory. Each callback locks the instance only while wasm runs
//! (microseconds); the lock is never held across an await, so a request
//! waiting on an HTTP call does not block others on the same instance. With
//! as many instances as worker threads, contention stays low. Instances are
//! never created per request: only at load, and again after one failed.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::InstancePre;

use super::host::HostState;
use super::instance::{Fault, Instance};
use super::metrics::FailureReason;
use super::plugin_env::{HostOptions, PluginEnv, ServiceEvent};

struct Slot {
    instance: Option<Instance>,
    /// Bumped whenever the instance is replaced, so a request knows its
    /// context died with the old one.
    generation: u64,
}

/// The module and its instances.
pub(crate) struct PluginCore {
    pub(crate) env: Arc<PluginEnv>,
    pub(crate) pre: InstancePre<HostState>,
    pub(crate) options: HostOptions,
    slots: Box<[Mutex<Slot>]>,
    next_slot: AtomicUsize,
    next_context: AtomicU32,
}

impl PluginCore {
    /// Context ids are unique per plugin for the life of the process.
    pub(crate) fn next_context_id(&self) -> u32 {
        self.next_context.fetch_add(1, Ordering::Relaxed)
    }

    /// The instance a new request is pinned to.
    pub(crate) fn pick_slot(&self) -> usize {
        self.next_slot.fetch_add(1, Ordering::Relaxed) % self.slots.len()
    }

    /// Runs `f` on instance `slot` (starting it first if it was discarded);
    /// `f` gets the instance's generation.
    pub(crate) fn with_instance<R>(
        &self,
        slot: usize,
        f: impl FnOnce(&mut Instance, u64) -> R,
    ) -> Result<R, Fault> {
        let mut guard = self.slots[slot].lock().unwrap_or_else(|e| e.into_inner());
        if guard.instance.is_none() {
            let instance = Instance::start(
                &self.env,
                &self.pre,
                &self.options,
                slot,
                self.next_context_id(),
            )
            .inspect_err(|fault| self.report(fault))?;
            guard.instance = Some(instance);
            guard.generation += 1;
            let _ = self.env.events.send(ServiceEvent::Reschedule { slot });
        }
        let generation = guard.generation;
        match guard.instance.as_mut() {
            Some(instance) => Ok(f(instance, generation)),
            None => Err(Fault {
                reason: FailureReason::StartFailed,
                message: "BUG: instance missing after start".into(),
            }),
        }
    }

    /// Discards instance `slot` after `fault` (if it is still `generation`),
    /// counting and logging the failure. The next use starts a fresh one.
    pub(crate) fn discard(&self, slot: usize, generation: u64, fault: &Fault) {
        self.report(fault);
        let mut guard = self.slots[slot].lock().unwrap_or_else(|e| e.into_inner());
        if guard.generation == generation && guard.instance.is_some() {
            guard.instance = None;
            guard.generation += 1;
        }
    }

    fn report(&self, fault: &Fault) {
        self.env.metrics.count_failure(&self.env.name, fault.reason);
        tracing::error!(
            plugin = %self.env.name,
            reason = fault.reason.as_str(),
            error = %fault.message,
            "wasm plugin failed; its instance is discarded and will be recreated"
        );
    }

    fn tick_period(&self, slot: usize) -> Option<Duration> {
        let mut guard = self.slots[slot].lock().unwrap_or_else(|e| e.into_inner());
        guard.instance.as_mut().and_then(|i| i.state().tick_period)
    }

    /// Runs a root-context callback from the service thread; a fault
    /// discards the instance like any other.
    fn run_root(&self, slot: usize, f: impl FnOnce(&mut Instance) -> Result<(), Fault>) {
        let mut guard = self.slots[slot].lock().unwrap_or_else(|e| e.into_inner());
        let generation = guard.generation;
        let Some(instance) = guard.instance.as_mut() else {
            return;
        };
        if let Err(fault) = f(instance) {
            drop(guard);
            self.discard(slot, generation, &fault);
        }
    }
}

/// A running plugin; dropping the last handle stops its service thread.
pub(crate) struct PluginRuntime {
    pub(crate) core: Arc<PluginCore>,
    events: Sender<ServiceEvent>,
}

impl PluginRuntime {
    /// Starts every instance (off the request path) and the service thread.
    pub(crate) fn start(
        env: PluginEnv,
        events: (Sender<ServiceEvent>, Receiver<ServiceEvent>),
        pre: InstancePre<HostState>,
        options: &HostOptions,
    ) -> Result<PluginRuntime, Fault> {
        let n = options.instances_per_plugin.max(1);
        let core = Arc::new(PluginCore {
            env: Arc::new(env),
            pre,
            options: options.clone(),
            slots: (0..n)
                .map(|_| {
                    Mutex::new(Slot {
                        instance: None,
                        generation: 0,
                    })
                })
                .collect(),
            next_slot: AtomicUsize::new(0),
            next_context: AtomicU32::new(1),
        });
        for slot in 0..n {
            core.with_instance(slot, |_, _| ())?;
        }
        let (tx, rx) = events;
        let thread_core = Arc::clone(&core);
        std::thread::Builder::new()
            .name(format!("wasm-{}", core.env.name))
            .spawn(move || service(thread_core, rx))
            .map_err(|e| Fault {
                reason: FailureReason::StartFailed,
                message: format!("cannot spawn the plugin's service thread: {e}"),
            })?;
        Ok(PluginRuntime { core, events: tx })
    }
}

impl Drop for PluginRuntime {
    fn drop(&mut self) {
        let _ = self.events.send(ServiceEvent::Stop);
    }
}

/// The service thread: ticks each instance's root context at the period it
/// asked for, and delivers queue notifications.
#[allow(clippy::disallowed_methods)] // why: a blocking std thread (`recv_timeout`), not on tokio: ticks are wall time
fn service(core: Arc<PluginCore>, rx: Receiver<ServiceEvent>) {
    let n = core.slots.len();
    let mut due: Vec<Option<Instant>> = vec![None; n];
    loop {
        let next = due.iter().flatten().min().copied();
        let event = match next {
            Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match event {
            Ok(ServiceEvent::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Ok(ServiceEvent::Reschedule { slot }) => {
                due[slot] = core.tick_period(slot).map(|p| Instant::now() + p);
            }
            Ok(ServiceEvent::QueueReady {
                slot,
                context_id,
                queue_id,
            }) => {
                core.run_root(slot, |i| i.queue_ready(context_id, queue_id).map(drop));
            }
            Err(RecvTimeoutError::Timeout) => {
                let now = Instant::now();
                for (slot, at) in due.iter_mut().enumerate() {
                    if at.is_some_and(|t| t <= now) {
                        core.run_root(slot, |i| i.tick().map(drop));
                        *at = core.tick_period(slot).map(|p| now + p);
                    }
                }
            }
        }
    }
}
