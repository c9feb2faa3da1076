//! The objects of one watched kind as the waypoint last saw them: a map kept
//! from kube-runtime watcher events, reflector-style.
//!
//! A (re)list arrives as `Init`, `InitApply`…, `InitDone`; the listed objects
//! are buffered and replace the kind's objects wholesale at `InitDone`, so an
//! object deleted while the watch was down (and whose delete event was lost
//! to a 410 Gone) disappears too. Until the first `InitDone` the kind is not
//! synced and the waypoint is not ready.

use std::collections::BTreeMap;
use std::time::SystemTime;

use kube::core::DynamicObject;
use kube::runtime::watcher::Event;
use serde_json::Value;

use super::kinds::WatchedKind;

/// `(namespace, name)`; the namespace is empty for cluster-scoped kinds.
pub type ObjectKey = (String, String);

/// One kind's objects, as JSON with `apiVersion` and `kind` set.
#[derive(Debug)]
pub struct ObjectMap {
    kind: WatchedKind,
    objects: BTreeMap<ObjectKey, Value>,
    /// Objects of a list in progress (between `Init` and `InitDone`).
    relist: Option<BTreeMap<ObjectKey, Value>>,
    /// When the last full list completed; `None` until the first.
    last_sync: Option<SystemTime>,
}

impl ObjectMap {
    pub fn new(kind: WatchedKind) -> Self {
        Self {
            kind,
            objects: BTreeMap::new(),
            relist: None,
            last_sync: None,
        }
    }

    /// Applies one watcher event. Returns whether the served objects changed
    /// (buffered list items do not change them until `InitDone`).
    pub fn apply(&mut self, event: Event<DynamicObject>) -> bool {
        match event {
            Event::Init => {
                self.relist = Some(BTreeMap::new());
                false
            }
            Event::InitApply(object) => {
                let (key, value) = self.entry(object);
                self.relist
                    .get_or_insert_with(BTreeMap::new)
                    .insert(key, value);
                false
            }
            Event::InitDone => {
                self.objects = self.relist.take().unwrap_or_default();
                self.last_sync = Some(SystemTime::now());
                true
            }
            Event::Apply(object) => {
                let (key, value) = self.entry(object);
                self.objects.insert(key, value.clone()) != Some(value)
            }
            Event::Delete(object) => {
                let (key, _) = self.entry(object);
                self.objects.remove(&key).is_some()
            }
        }
    }

    /// The object as the loader reads it: `apiVersion`/`kind` filled in (list
    /// items from a real API server omit them), `managedFields` dropped to
    /// save memory.
    fn entry(&self, object: DynamicObject) -> (ObjectKey, Value) {
        let key = (
            object.metadata.namespace.clone().unwrap_or_default(),
            object.metadata.name.clone().unwrap_or_default(),
        );
        let mut value = serde_json::to_value(&object).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut value {
            map.insert("apiVersion".into(), self.kind.api_version().into());
            map.insert("kind".into(), self.kind.kind().into());
            if let Some(Value::Object(meta)) = map.get_mut("metadata") {
                meta.remove("managedFields");
            }
        }
        (key, value)
    }

    pub fn is_synced(&self) -> bool {
        self.last_sync.is_some()
    }

    pub fn last_sync(&self) -> Option<SystemTime> {
        self.last_sync
    }

    /// How many objects are served.
    pub fn count(&self) -> usize {
        self.objects.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ObjectKey, &Value)> {
        self.objects.iter()
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.get(&(namespace.to_string(), name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn route(name: &str) -> DynamicObject {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "a", "managedFields": [{}]},
            "spec": {}
        }))
        .unwrap()
    }

    fn names(map: &ObjectMap) -> Vec<String> {
        map.iter().map(|((_, n), _)| n.clone()).collect()
    }

    #[test]
    fn relist_replaces_the_objects_at_init_done() {
        let mut map = ObjectMap::new(WatchedKind::HttpRoute);
        assert!(!map.is_synced());
        map.apply(Event::Init);
        map.apply(Event::InitApply(route("a")));
        map.apply(Event::InitApply(route("b")));
        assert!(names(&map).is_empty(), "buffered until InitDone");
        assert!(map.apply(Event::InitDone));
        assert!(map.is_synced());
        assert_eq!(names(&map), ["a", "b"]);
        let a = map.get("a", "a").unwrap();
        assert_eq!(a["kind"], "HTTPRoute");
        assert_eq!(a["apiVersion"], "gateway.networking.k8s.io/v1");
        assert!(a["metadata"].get("managedFields").is_none());

        // A relist after a 410 that no longer has `a`: its delete was lost,
        // the relist removes it; `a` keeps serving until InitDone.
        map.apply(Event::Init);
        map.apply(Event::InitApply(route("b")));
        map.apply(Event::InitApply(route("c")));
        assert_eq!(names(&map), ["a", "b"]);
        map.apply(Event::InitDone);
        assert_eq!(names(&map), ["b", "c"]);

        assert!(map.apply(Event::Apply(route("d"))));
        assert!(map.apply(Event::Delete(route("b"))));
        assert!(!map.apply(Event::Delete(route("b"))));
        assert_eq!(names(&map), ["c", "d"]);
    }
}
