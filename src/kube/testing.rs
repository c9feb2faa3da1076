//! Fakes for Kubernetes tests: an API server speaking the real wire format.

mod fake_api;
mod objects;
mod selectors;

pub use fake_api::{FakeApiServer, FaultRule, RecordedRequest};
pub use objects::{ResourceType, RESOURCE_TYPES};

#[cfg(test)]
mod tests;
