use serde_json::json;

use super::*;

fn gateway(annotations: serde_json::Value) -> WaypointGateway {
    serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "waypoint", "namespace": "shop", "uid": "u-1",
                     "generation": 3, "annotations": annotations},
        "spec": {"gatewayClassName": "pingora-waypoint",
                 "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"},
                               {"name": "Admin_HTTP", "port": 8080, "protocol": "HTTP"}]},
    }))
    .unwrap()
}

fn options() -> PodTemplateOptions {
    PodTemplateOptions {
        image: "ghcr.io/example/waypoint:1.0".into(),
        ca_address: "istiod.istio-system.svc:15012".into(),
    }
}

fn as_json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap()
}

#[test]
fn deployment_is_shaped_as_istiod_and_deploy_expect() {
    let objects = build(&gateway(json!({})), &options()).unwrap();
    let d = as_json(&objects.deployment);
    assert_eq!(d["metadata"]["name"], "waypoint");
    assert_eq!(d["metadata"]["namespace"], "shop");
    assert_eq!(
        d["metadata"]["ownerReferences"],
        json!([{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                "name": "waypoint", "uid": "u-1", "controller": true,
                "blockOwnerDeletion": true}])
    );
    assert_eq!(d["spec"]["replicas"], 1);
    let pod = &d["spec"]["template"];
    assert_eq!(pod["metadata"]["labels"][GATEWAY_NAME_LABEL], "waypoint");
    assert_eq!(pod["metadata"]["labels"]["istio.io/dataplane-mode"], "none");
    assert_eq!(
        d["spec"]["selector"]["matchLabels"],
        json!({GATEWAY_NAME_LABEL: "waypoint"})
    );
    assert_eq!(
        pod["metadata"]["annotations"]["prometheus.io/port"],
        "15020"
    );
    assert_eq!(
        pod["metadata"]["annotations"]["prometheus.io/path"],
        "/stats/prometheus"
    );
    assert_eq!(pod["spec"]["serviceAccountName"], "waypoint");
    assert_eq!(
        pod["spec"]["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["image"], "ghcr.io/example/waypoint:1.0");
    assert_eq!(
        c["args"],
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
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsUser"], 65532);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    let ports: Vec<_> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["containerPort"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [("mesh", 15008), ("metrics", 15020), ("health", 15021)]
    );
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/healthz/ready");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], 15021);
    assert_eq!(
        c["resources"]["requests"],
        json!({"cpu": "100m", "memory": "128Mi"})
    );
    assert_eq!(
        c["resources"]["limits"],
        json!({"cpu": "2", "memory": "1Gi"})
    );
    let env: Vec<_> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap(),
                e["valueFrom"]["fieldRef"]["fieldPath"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(env.contains(&("POD_NAMESPACE", "metadata.namespace")));
    assert!(env.contains(&("SERVICE_ACCOUNT", "spec.serviceAccountName")));
    assert!(env.contains(&("POD_NAME", "metadata.name")));
    let mounts: Vec<_> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    for path in [
        "/var/run/secrets/workload-spiffe-credentials",
        "/var/run/secrets/tokens",
        "/var/run/secrets/istio",
    ] {
        assert!(mounts.contains(&path), "{path} in {mounts:?}");
    }
    let volumes = pod["spec"]["volumes"].as_array().unwrap();
    let token = volumes.iter().find(|v| v["name"] == "istio-token").unwrap();
    assert_eq!(
        token["projected"]["sources"][0]["serviceAccountToken"]["audience"],
        "istio-ca"
    );
    assert_eq!(
        token["projected"]["sources"][0]["serviceAccountToken"]["path"],
        "istio-token"
    );
    let ca = volumes
        .iter()
        .find(|v| v["name"] == "istiod-ca-cert")
        .unwrap();
    assert_eq!(ca["configMap"]["name"], "istio-ca-root-cert");
    assert!(objects.autoscaler.is_none());
    assert!(objects.disruption_budget.is_none());
}

#[test]
fn service_has_mesh_port_and_the_other_listener_ports() {
    let objects = build(&gateway(json!({})), &options()).unwrap();
    let s = as_json(&objects.service);
    assert_eq!(
        s["spec"]["selector"],
        json!({GATEWAY_NAME_LABEL: "waypoint"})
    );
    assert_eq!(
        s["spec"]["ports"],
        json!([{"name": "mesh", "port": 15008, "protocol": "TCP"},
               {"name": "admin-http", "port": 8080, "protocol": "TCP"}])
    );
    let crb = as_json(&objects.cluster_role_binding);
    assert_eq!(crb["metadata"]["name"], "pingora-waypoint:shop:waypoint");
    assert_eq!(crb["roleRef"]["name"], "pingora-waypoint-proxy");
    assert_eq!(
        crb["subjects"],
        json!([{"kind": "ServiceAccount", "name": "waypoint", "namespace": "shop"}])
    );
    assert!(crb["metadata"].get("ownerReferences").is_none());
}

#[test]
fn annotations_turn_on_autoscaler_and_budget_and_override_resources() {
    let objects = build(
        &gateway(json!({
            annotations::AUTOSCALE_MIN: "2", annotations::AUTOSCALE_MAX: "5",
            annotations::PDB_MIN_AVAILABLE: "1", annotations::CPU_LIMIT: "500m",
        })),
        &options(),
    )
    .unwrap();
    let hpa = as_json(&objects.autoscaler.unwrap());
    assert_eq!(hpa["spec"]["minReplicas"], 2);
    assert_eq!(hpa["spec"]["maxReplicas"], 5);
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "waypoint");
    assert_eq!(
        hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        80
    );
    let pdb = as_json(&objects.disruption_budget.unwrap());
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    let d = as_json(&objects.deployment);
    // The autoscaler owns replicas.
    assert!(d["spec"].get("replicas").is_none());
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"],
        "500m"
    );
}

#[test]
fn infrastructure_annotations_count_too_and_bad_values_are_named() {
    let mut gw = gateway(json!({}));
    gw.spec.infrastructure = Some(
        crate::control::controller::gateway_api::GatewayInfrastructure {
            labels: [("team".to_string(), "shop".to_string())].into(),
            annotations: [(annotations::REPLICAS.to_string(), "3".to_string())].into(),
        },
    );
    let objects = build(&gw, &options()).unwrap();
    let d = as_json(&objects.deployment);
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["metadata"]["labels"]["team"], "shop");
    assert_eq!(d["spec"]["template"]["metadata"]["labels"]["team"], "shop");

    let err = build(
        &gateway(json!({annotations::AUTOSCALE_MAX: "many"})),
        &options(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("autoscale-max-replicas"), "{err}");
    let err = build(
        &gateway(json!({annotations::AUTOSCALE_MIN: "4", annotations::AUTOSCALE_MAX: "2"})),
        &options(),
    )
    .unwrap_err();
    assert!(
        matches!(err, DesiredError::AutoscaleRange { min: 4, max: 2, .. }),
        "{err}"
    );
}
