//! Readiness as Kubernetes probes see it (`/healthz/ready`, alias `/ready`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::overload::Overload;

/// Readiness as Kubernetes probes see it: ready once the config is loaded and
/// every listener is bound, not ready while overloaded (shedding new work) and
/// not ready again once draining.
#[derive(Debug, Default)]
pub struct Readiness {
    listeners_bound: AtomicBool,
    draining: AtomicBool,
    /// Set while a config source has not delivered its first full config
    /// (`--kube` before the first sync).
    waiting_for_config: AtomicBool,
    overload: OnceLock<Arc<Overload>>,
}

impl Readiness {
    /// Every listener is bound.
    pub fn set_listening(&self) {
        self.listeners_bound.store(true, Ordering::Release);
    }
    /// Shutdown started: not ready any more.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
    /// Not ready until [`Readiness::set_config_loaded`].
    pub fn set_waiting_for_config(&self) {
        self.waiting_for_config.store(true, Ordering::Release);
    }
    /// The config source delivered its first full config.
    pub fn set_config_loaded(&self) {
        self.waiting_for_config.store(false, Ordering::Release);
    }
    /// Reports the overload manager's state from now on.
    pub fn set_overload(&self, overload: Arc<Overload>) {
        let _ = self.overload.set(overload);
    }
    /// Ready to take traffic.
    pub fn is_ready(&self) -> bool {
        self.listeners_bound.load(Ordering::Acquire)
            && !self.draining.load(Ordering::Acquire)
            && !self.waiting_for_config.load(Ordering::Acquire)
            && !self.overload.get().is_some_and(|o| o.is_overloaded())
    }
}
