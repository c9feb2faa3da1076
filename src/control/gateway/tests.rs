use serde_json::json;

use super::*;

fn spec(name: &str) -> WaypointSpec {
    WaypointSpec {
        name: name.to_string(),
        namespace: "default".to_string(),
        traffic_type: None,
        revision: None,
    }
}

#[test]
fn names_follow_dns_1035_and_reserve_none() {
    // (name, accepted): the waypoint's name becomes a Service name.
    let rows = [
        ("waypoint", true),
        ("wp-1", true),
        ("a", true),
        (&"a".repeat(63), true),
        (&"a".repeat(64), false),
        ("", false),
        ("1wp", false),
        ("wp-", false),
        ("Wp", false),
        ("wp.x", false),
    ];
    for (name, accepted) in rows {
        assert_eq!(build_waypoint(&spec(name)).is_ok(), accepted, "{name:?}");
    }
    assert_eq!(
        build_waypoint(&spec("none")).unwrap_err(),
        GatewayError::ReservedName("none".into())
    );
}

#[test]
fn labels_only_for_what_was_asked() {
    let plain = build_waypoint(&spec("waypoint")).unwrap();
    assert_eq!(plain.metadata.labels, None);
    assert_eq!(plain.traffic_type(), "service");
    assert_eq!(plain.revision(), "default");

    let mut asked = spec("wp");
    asked.traffic_type = Some(TrafficType::Workload);
    asked.revision = Some("canary".into());
    let gw = build_waypoint(&asked).unwrap();
    assert_eq!(gw.traffic_type(), "workload");
    assert_eq!(gw.revision(), "canary");
    assert!(gw.is_waypoint());
    assert_eq!(
        gw.spec.listeners,
        [Listener {
            name: "mesh".into(),
            port: 15008,
            protocol: "HBONE".into()
        }]
    );
}

#[test]
fn reads_a_foreign_gateway_with_fields_we_ignore() {
    let gw: WaypointGateway = serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "ingress", "namespace": "a", "generation": 3},
        "spec": {"gatewayClassName": "istio", "infrastructure": {"labels": {}},
                 "listeners": [{"name": "http", "port": 80, "protocol": "HTTP",
                                "allowedRoutes": {"namespaces": {"from": "All"}}}]},
        "status": {"conditions": [{"type": "Programmed", "status": "True"}],
                   "listeners": [{"name": "http", "attachedRoutes": 1}]}
    }))
    .unwrap();
    assert!(!gw.is_waypoint());
    assert!(gw.is_programmed());
}

#[test]
fn programmed_only_for_the_current_generation() {
    let mut gw = build_waypoint(&spec("waypoint")).unwrap();
    assert!(!gw.is_programmed());
    gw.metadata.generation = Some(2);
    let condition = |status: &str, observed| Condition {
        type_: CONDITION_PROGRAMMED.into(),
        status: status.into(),
        reason: String::new(),
        message: String::new(),
        observed_generation: observed,
        last_transition_time: None,
    };
    // (status, observedGeneration, programmed)
    let rows = [
        ("True", Some(2), true),
        ("True", None, true),
        ("True", Some(1), false),
        ("False", Some(2), false),
        ("Unknown", None, false),
    ];
    for (status, observed, programmed) in rows {
        gw.status = Some(GatewayStatus {
            addresses: vec![],
            conditions: vec![condition(status, observed)],
        });
        assert_eq!(gw.is_programmed(), programmed, "{status} {observed:?}");
    }
}
