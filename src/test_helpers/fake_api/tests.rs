//! The fake API server checked with the real client (kube-rs): if these pass,
//! tests built on the fake exercise the same requests a cluster would see.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

use super::{FakeApiServer, FaultRule};

async fn client(fake: &FakeApiServer) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&fake.kubeconfig_yaml("default"))
        .expect("fake kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("fake kubeconfig is usable");
    kube::Client::try_from(config).expect("client builds")
}

type Events = futures::stream::BoxStream<'static, Result<watcher::Event<Service>, watcher::Error>>;

async fn next(events: &mut Events) -> watcher::Event<Service> {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("watch event within 10 s")
            .expect("stream open");
        match event {
            Ok(e) => return e,
            // A 410 surfaces once as an error before the watcher relists.
            Err(watcher::Error::WatchError(status)) if status.code == 410 => continue,
            Err(e) => panic!("watch error: {e}"),
        }
    }
}

fn namespace(name: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

fn service(ns: &str, name: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": ns},
           "spec": {"ports": [{"port": 80}]}})
}

#[tokio::test]
async fn crud_apply_and_failures_through_kube_rs() {
    let fake = FakeApiServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    fake.put(namespace("a"));
    let client = client(&fake).await;
    let services: Api<Service> = Api::namespaced(client.clone(), "a");

    let created = services
        .create(
            &PostParams::default(),
            &serde_json::from_value(service("a", "s1")).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.metadata.uid.is_some());

    // Server-side apply creates, then merges; a spec change moves generation.
    let patch = Patch::Apply(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "s2", "labels": {"x": "1"}}, "spec": {"ports": [{"port": 81}]}}));
    let params = PatchParams::apply("waypoint").force();
    services.patch("s2", &params, &patch).await.unwrap();
    let patch = Patch::Apply(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "s2"}, "spec": {"ports": [{"port": 82}]}}));
    let s2 = services.patch("s2", &params, &patch).await.unwrap();
    assert_eq!(s2.metadata.generation, Some(2));
    assert_eq!(s2.metadata.labels.unwrap()["x"], "1");
    let req = fake
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.method == "PATCH")
        .unwrap();
    assert!(req.query.contains("fieldManager=waypoint"), "{}", req.query);
    assert_eq!(
        req.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );

    let names: Vec<_> = services
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| s.metadata.name.unwrap())
        .collect();
    assert_eq!(names, ["s1", "s2"]);

    // 404 for a missing object and for a missing namespace.
    let err = services.get("nope").await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err}"
    );
    let other: Api<Service> = Api::namespaced(client.clone(), "missing");
    let err = other
        .create(
            &PostParams::default(),
            &serde_json::from_value(service("missing", "s")).unwrap(),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("namespaces \"missing\" not found"),
        "{err}"
    );

    // Injected 403, once.
    fake.fail(FaultRule::new("/services", 403).times(1));
    let err = services.list(&Default::default()).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 403),
        "{err}"
    );
    assert!(services.list(&Default::default()).await.is_ok());

    services
        .delete("s1", &DeleteParams::default())
        .await
        .unwrap();
    assert!(fake.get("v1", "Service", Some("a"), "s1").is_none());
}

#[tokio::test]
async fn finalizers_and_owner_garbage_collection() {
    let fake = FakeApiServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    fake.put(namespace("a"));
    let mut owner = service("a", "owner");
    owner["metadata"]["finalizers"] = json!(["example.com/cleanup"]);
    let owner = fake.put(owner);
    let mut dependent = service("a", "dependent");
    dependent["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "Service",
        "name": "owner", "uid": owner["metadata"]["uid"]}]);
    fake.put(dependent);

    fake.delete("v1", "Service", Some("a"), "owner");
    let terminating = fake.get("v1", "Service", Some("a"), "owner").unwrap();
    assert!(terminating["metadata"]["deletionTimestamp"].is_string());
    assert!(fake.get("v1", "Service", Some("a"), "dependent").is_some());

    let client = client(&fake).await;
    let services: Api<Service> = Api::namespaced(client, "a");
    let patch = Patch::Merge(json!({"metadata": {"finalizers": null}}));
    services
        .patch("owner", &PatchParams::default(), &patch)
        .await
        .unwrap();
    assert!(fake.get("v1", "Service", Some("a"), "owner").is_none());
    assert!(fake.get("v1", "Service", Some("a"), "dependent").is_none());
}

#[tokio::test]
async fn watcher_follows_changes_and_relists_after_410() {
    let fake = FakeApiServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    fake.put(namespace("a"));
    fake.put(service("a", "s1"));
    let client = client(&fake).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    assert_eq!(
        namespaces
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );

    let services: Api<Service> = Api::namespaced(client, "a");
    let mut events = watcher(services, watcher::Config::default()).boxed();
    assert!(matches!(next(&mut events).await, watcher::Event::Init));
    assert!(
        matches!(next(&mut events).await, watcher::Event::InitApply(s) if s.metadata.name.as_deref() == Some("s1"))
    );
    assert!(matches!(next(&mut events).await, watcher::Event::InitDone));

    // Write only once the watch request itself is open: the watcher sends it when polled,
    // so poll for the event while waiting.
    let write_once_watched = async {
        tokio::time::timeout(
            Duration::from_secs(10),
            fake.wait_until(|f| (f.open_watches() > 0).then_some(())),
        )
        .await
        .expect("watch opened within 10 s");
        fake.put(service("a", "s2"));
    };
    let (event, ()) = tokio::join!(next(&mut events), write_once_watched);
    assert!(matches!(event, watcher::Event::Apply(s) if s.metadata.name.as_deref() == Some("s2")));

    fake.put(service("a", "s3"));
    assert!(
        matches!(next(&mut events).await, watcher::Event::Apply(s) if s.metadata.name.as_deref() == Some("s3"))
    );

    // History compacted and the stream dropped: resuming gets 410, the
    // watcher relists.
    fake.compact();
    fake.drop_watches();
    let mut seen = Vec::new();
    loop {
        match next(&mut events).await {
            watcher::Event::InitApply(s) => seen.push(s.metadata.name.unwrap()),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(seen, ["s1", "s2", "s3"]);
}
