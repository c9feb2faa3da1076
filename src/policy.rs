//! Traffic policy: what happens to a request between "route matched" and
//! "response sent" — retries, timeouts and fault injection — with Envoy's
//! semantics, since users alert on Envoy's status codes and response flags.
//!
//! The types here are compiled from VirtualService (and Gateway API
//! `timeouts` / `retry`) by `routing`, and applied by the proxy phases.
//! Connection-pool limits, outlier detection and consistent hashing act on
//! endpoints and live in `crate::upstream`.

pub mod fault;
pub mod retry;

// Per-request decisions that `proxy/attempts` and `proxy/admission` apply.
pub mod admission;
pub mod deadline;

// Whether an upstream connection may carry another request; every pool asks it.
pub mod conn_reuse;

pub use fault::{Abort, FaultAction, FaultPolicy, SamplePercent};
pub use retry::{RetryOn, RetryPolicy};
