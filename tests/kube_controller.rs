//! `waypoint controller` against the fake API server: our GatewayClass is
//! accepted, a Gateway of it becomes ServiceAccount + Deployment + Service +
//! ClusterRoleBinding (+ HPA/PDB on request) with status, and deleting the
//! Gateway removes them. Every wait is for the fake to see the controller's
//! write, with a deadline; only readiness is polled (see `common::eventually`).

mod common;

use std::time::Duration;

use serde_json::{json, Value};
use waypoint::config::source::kube::client::{ApiServer, ApiServerOptions};
use waypoint::control::controller::{self, ControllerOptions, PodTemplateOptions};
use waypoint::test_helpers::fake_api::{FakeApiServer, FaultRule};

use common::TestClient;

const GW_API: &str = "gateway.networking.k8s.io/v1";
const DEADLINE: Duration = Duration::from_secs(30);

/// Waits until `check` returns `Some`, checking again after every request and write the
/// fake sees; panics after [`DEADLINE`].
async fn written<T>(
    fake: &FakeApiServer,
    what: &str,
    check: impl FnMut(&FakeApiServer) -> Option<T>,
) -> T {
    tokio::time::timeout(DEADLINE, fake.wait_until(check))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn gateway(name: &str, class: &str) -> Value {
    json!({"apiVersion": GW_API, "kind": "Gateway",
           "metadata": {"name": name, "namespace": "shop",
                        "labels": {"istio.io/waypoint-for": "service"}},
           "spec": {"gatewayClassName": class,
                    "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]}})
}

async fn get_status(client: &TestClient, path: &str) -> u16 {
    client.get("controller", path).await.status
}

#[tokio::test]
async fn gateway_becomes_a_waypoint_and_is_cleaned_up() {
    let fake = FakeApiServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    fake.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}));
    fake.put(json!({"apiVersion": GW_API, "kind": "GatewayClass",
                    "metadata": {"name": "pingora-waypoint"},
                    "spec": {"controllerName": "waypoint.pingora.dev/controller"}}));
    fake.put(json!({"apiVersion": GW_API, "kind": "GatewayClass",
                    "metadata": {"name": "istio-waypoint"},
                    "spec": {"controllerName": "istio.io/mesh-controller"}}));
    fake.put(gateway("waypoint", "pingora-waypoint"));
    fake.put(gateway("envoy", "istio-waypoint"));

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.write_kubeconfig(dir.path(), "shop").unwrap();
    let api_server = ApiServer::connect(&ApiServerOptions {
        kubeconfig: Some(kubeconfig),
        context: None,
    })
    .await
    .unwrap();
    let options = ControllerOptions {
        class: "pingora-waypoint".into(),
        pod: PodTemplateOptions {
            image: "registry.example/waypoint:v1".into(),
            ca_address: "istiod.istio-system.svc:15012".into(),
        },
        health_listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        cluster_domain: "cluster.local".into(),
    };

    // Until GatewayClasses can be listed, the controller is not ready.
    fake.fail(FaultRule::new("/gatewayclasses", 500));
    let running = common::bounded("controller start", controller::start(api_server, options))
        .await
        .unwrap();
    let health = TestClient::new(running.health_addr);
    let metrics = TestClient::new(running.metrics_addr);
    assert_eq!(get_status(&health, "/healthz/ready").await, 503);
    fake.clear_faults();
    common::eventually("controller ready", async || {
        match get_status(&health, "/healthz/ready").await {
            200 => Ok(()),
            other => Err(other.to_string()),
        }
    })
    .await;

    // Our class is accepted; the other is left alone.
    let class = written(&fake, "class accepted", |fake| {
        let c = fake.get(GW_API, "GatewayClass", None, "pingora-waypoint")?;
        condition(&c, "Accepted").is_some().then_some(c)
    })
    .await;
    let accepted = condition(&class, "Accepted").unwrap();
    assert_eq!(accepted["status"], "True");
    assert_eq!(accepted["reason"], "Accepted");
    assert_eq!(accepted["observedGeneration"], 1);

    // The Gateway is programmed, with addresses istiod can use.
    let gw = written(&fake, "gateway programmed", |fake| {
        let g = fake.get(GW_API, "Gateway", Some("shop"), "waypoint")?;
        condition(&g, "Programmed")
            .is_some_and(|c| c["status"] == "True")
            .then_some(g)
    })
    .await;
    assert_eq!(
        gw["metadata"]["finalizers"],
        json!(["waypoint.pingora.dev/cleanup"])
    );
    assert_eq!(
        gw["status"]["addresses"],
        json!([{"type": "Hostname", "value": "waypoint.shop.svc.cluster.local"}])
    );
    for type_ in ["Accepted", "Programmed"] {
        let c = condition(&gw, type_).unwrap();
        assert_eq!(c["status"], "True", "{type_}");
        assert_eq!(c["observedGeneration"], 1, "{type_}");
        assert!(c["lastTransitionTime"]
            .as_str()
            .is_some_and(|t| !t.is_empty()));
    }
    let uid = gw["metadata"]["uid"].clone();
    let owned_by_gateway = |o: &Value| {
        assert_eq!(
            o["metadata"]["ownerReferences"],
            json!([{"apiVersion": GW_API, "kind": "Gateway", "name": "waypoint", "uid": uid,
                    "controller": true, "blockOwnerDeletion": true}]),
            "{o}"
        );
        assert_eq!(
            o["metadata"]["labels"]["gateway.networking.k8s.io/gateway-name"],
            "waypoint"
        );
    };

    let sa = fake
        .get("v1", "ServiceAccount", Some("shop"), "waypoint")
        .expect("service account");
    owned_by_gateway(&sa);
    let deployment = fake
        .get("apps/v1", "Deployment", Some("shop"), "waypoint")
        .expect("deployment");
    owned_by_gateway(&deployment);
    assert_eq!(deployment["spec"]["replicas"], 1);
    let pod = &deployment["spec"]["template"];
    assert_eq!(
        pod["metadata"]["labels"],
        json!({"gateway.networking.k8s.io/gateway-name": "waypoint",
               "istio.io/dataplane-mode": "none"})
    );
    assert_eq!(pod["spec"]["securityContext"]["runAsUser"], 65532);
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["image"], "registry.example/waypoint:v1");
    assert_eq!(
        container["args"],
        json!([
            "run",
            "--kube",
            "--gateway-name",
            "waypoint",
            "--ca-address",
            "istiod.istio-system.svc:15012",
            "--metrics-listen",
            "0.0.0.0:15020",
            "--health-listen",
            "0.0.0.0:15021"
        ])
    );
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    let service = fake
        .get("v1", "Service", Some("shop"), "waypoint")
        .expect("service");
    owned_by_gateway(&service);
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "mesh", "port": 15008, "protocol": "TCP"}])
    );
    assert_eq!(
        service["spec"]["selector"],
        json!({"gateway.networking.k8s.io/gateway-name": "waypoint"})
    );
    let crb = fake
        .get(
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
            None,
            "pingora-waypoint:shop:waypoint",
        )
        .expect("cluster role binding");
    assert_eq!(crb["roleRef"]["name"], "pingora-waypoint-proxy");
    assert_eq!(
        crb["subjects"],
        json!([{"kind": "ServiceAccount", "name": "waypoint", "namespace": "shop"}])
    );
    let applied = fake.requests().into_iter().any(|r| {
        r.method == "PATCH"
            && r.path.ends_with("/deployments/waypoint")
            && r.query.contains("fieldManager=waypoint-controller")
            && r.query.contains("force=true")
    });
    assert!(applied, "the Deployment is server-side applied, forced");

    // A Gateway of another class is not touched.
    let envoy = fake.get(GW_API, "Gateway", Some("shop"), "envoy").unwrap();
    assert!(envoy["metadata"].get("finalizers").is_none(), "{envoy}");
    assert!(envoy.get("status").is_none(), "{envoy}");
    assert!(fake
        .get("apps/v1", "Deployment", Some("shop"), "envoy")
        .is_none());

    // Once the Service has a cluster IP, it is listed too.
    let mut service = service;
    service["spec"]["clusterIP"] = json!("10.96.0.42");
    fake.put(service);
    written(&fake, "cluster IP in the status", |fake| {
        let g = fake.get(GW_API, "Gateway", Some("shop"), "waypoint")?;
        (g["status"]["addresses"]
            == json!([{"type": "Hostname", "value": "waypoint.shop.svc.cluster.local"},
                      {"type": "IPAddress", "value": "10.96.0.42"}]))
        .then_some(())
    })
    .await;

    // Annotations ask for an autoscaler and a disruption budget...
    let mut gw = fake
        .get(GW_API, "Gateway", Some("shop"), "waypoint")
        .unwrap();
    gw["metadata"]["annotations"] = json!({
        "waypoint.pingora.dev/autoscale-min-replicas": "2",
        "waypoint.pingora.dev/autoscale-max-replicas": "4",
        "waypoint.pingora.dev/pdb-min-available": "1",
    });
    fake.put(gw);
    let hpa = written(&fake, "autoscaler", |fake| {
        fake.get(
            "autoscaling/v2",
            "HorizontalPodAutoscaler",
            Some("shop"),
            "waypoint",
        )
    })
    .await;
    owned_by_gateway(&hpa);
    assert_eq!(hpa["spec"]["minReplicas"], 2);
    assert_eq!(hpa["spec"]["maxReplicas"], 4);
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "waypoint");
    let pdb = written(&fake, "disruption budget", |fake| {
        fake.get("policy/v1", "PodDisruptionBudget", Some("shop"), "waypoint")
    })
    .await;
    owned_by_gateway(&pdb);
    assert_eq!(pdb["spec"]["minAvailable"], 1);

    // ...and removing them deletes both.
    let mut gw = fake
        .get(GW_API, "Gateway", Some("shop"), "waypoint")
        .unwrap();
    gw["metadata"]["annotations"] = json!({});
    fake.put(gw);
    written(&fake, "autoscaler and budget deleted", |fake| {
        let hpa = fake.get(
            "autoscaling/v2",
            "HorizontalPodAutoscaler",
            Some("shop"),
            "waypoint",
        );
        let pdb = fake.get("policy/v1", "PodDisruptionBudget", Some("shop"), "waypoint");
        (hpa.is_none() && pdb.is_none()).then_some(())
    })
    .await;

    let body = String::from_utf8_lossy(&metrics.get("controller", "/stats/prometheus").await.body)
        .into_owned();
    assert!(
        body.contains(r#"waypoint_controller_reconciles_total{kind="Gateway",result="success"}"#),
        "{body}"
    );
    assert_eq!(get_status(&metrics, "/healthz/ready").await, 404);

    // Deleting the Gateway: the finalizer removes the binding, then the
    // garbage collector takes the owned objects.
    fake.delete(GW_API, "Gateway", Some("shop"), "waypoint");
    written(&fake, "gateway gone", |fake| {
        fake.get(GW_API, "Gateway", Some("shop"), "waypoint")
            .is_none()
            .then_some(())
    })
    .await;
    assert!(fake
        .get(
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
            None,
            "pingora-waypoint:shop:waypoint"
        )
        .is_none());
    for (api_version, kind) in [
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("v1", "ServiceAccount"),
    ] {
        assert!(
            fake.get(api_version, kind, Some("shop"), "waypoint")
                .is_none(),
            "{kind} left behind"
        );
    }

    common::bounded("controller shutdown", running.shutdown()).await;
}
