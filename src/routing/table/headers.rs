//! Request and response header modifiers (`RequestHeaderModifier`,
//! `ResponseHeaderModifier`, VirtualService `headers`): applied through
//! [`HeaderEdit`] so the proxy can use them on Pingora's header types.
//! Compiled by `compile::filters` and `istio::virtual_service`.

use http::{HeaderName, HeaderValue};

/// Header access the modifiers need; implemented for [`http::HeaderMap`] and
/// by the proxy for Pingora's header types.
pub trait HeaderEdit {
    /// Every value of `name`, in order.
    fn get_all(&self, name: &HeaderName) -> Vec<Vec<u8>>;
    /// Replaces every value of `name` with `value`.
    fn set(&mut self, name: HeaderName, value: HeaderValue);
    /// Removes every value of `name`.
    fn remove(&mut self, name: &HeaderName);
}

impl HeaderEdit for http::HeaderMap {
    fn get_all(&self, name: &HeaderName) -> Vec<Vec<u8>> {
        http::HeaderMap::get_all(self, name)
            .iter()
            .map(|v| v.as_bytes().to_vec())
            .collect()
    }

    fn set(&mut self, name: HeaderName, value: HeaderValue) {
        self.insert(name, value);
    }

    fn remove(&mut self, name: &HeaderName) {
        http::HeaderMap::remove(self, name);
    }
}

/// A compiled RequestHeaderModifier or ResponseHeaderModifier.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeaderModifier {
    /// Replace the header's values.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Append to the header's value.
    pub add: Vec<(HeaderName, HeaderValue)>,
    /// Remove the header.
    pub remove: Vec<HeaderName>,
}

impl HeaderModifier {
    /// Applies remove, then set, then add (Envoy's order, which Istio relies
    /// on). Per the Gateway API conformance suite, `add` appends to an
    /// existing value: `x: a` plus add `x: b` gives `x: a,b`.
    pub fn apply(&self, headers: &mut impl HeaderEdit) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.set(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            let existing = headers.get_all(name);
            if existing.is_empty() {
                headers.set(name.clone(), value.clone());
                continue;
            }
            let mut joined = existing.join(&b","[..]);
            joined.push(b',');
            joined.extend_from_slice(value.as_bytes());
            // Both parts were valid header values, so the join is too.
            if let Ok(joined) = HeaderValue::from_bytes(&joined) {
                headers.set(name.clone(), joined);
            }
        }
    }
}
