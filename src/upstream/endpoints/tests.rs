//! Endpoint sets: picking by policy, active-request guards, state that
//! survives reloads.

use std::collections::{BTreeMap, HashMap};

use super::*;
use crate::upstream::endpoint::WorkloadInfo;

fn ep(last: u8) -> Endpoint {
    Endpoint {
        addr: SocketAddr::from(([10, 0, 0, last], 8080)),
        pod: None,
        workload: WorkloadInfo::unknown(),
        in_mesh: false,
        labels: BTreeMap::new(),
        zone: None,
        locality: None,
    }
}

fn set(n: u8, policy: LbPolicy, load: &LoadRegistry) -> EndpointSet {
    let cluster = ClusterPolicy::plain(ClusterName::new(8080, None, "test.svc"), policy);
    EndpointSet::with_cluster((1..=n).map(ep).collect(), cluster, load)
}

#[test]
fn empty_set_picks_nothing() {
    let s = EndpointSet::empty(LbPolicy::LeastRequest);
    assert!(s.is_empty());
    assert!(s.pick(&[]).is_none());
}

#[test]
fn guard_counts_active_requests_in_the_registry() {
    let load = LoadRegistry::default();
    let s = set(1, LbPolicy::LeastRequest, &load);
    let addr = s.endpoints()[0].addr;
    let a = s.pick(&[]).expect("one endpoint");
    let b = s.pick(&[]).expect("one endpoint");
    assert_eq!(load.active(addr), 2);
    drop(a);
    assert_eq!(load.active(addr), 1);
    drop(b);
    assert_eq!(load.active(addr), 0);
}

#[test]
fn least_request_prefers_the_idle_endpoint() {
    let load = LoadRegistry::default();
    let s = set(2, LbPolicy::LeastRequest, &load);
    // Hold 5 requests on the first endpoint (avoiding the other one).
    let busy = s.endpoints()[0].addr;
    let idle = s.endpoints()[1].addr;
    let held: Vec<Picked> = (0..5).filter_map(|_| s.pick(&[idle])).collect();
    assert!(held.iter().all(|p| p.endpoint.addr == busy));
    // With two endpoints P2C always compares both: the idle one wins.
    for _ in 0..100 {
        assert_ne!(s.pick(&[]).expect("pick").endpoint.addr, busy);
    }
}

#[test]
fn least_request_state_survives_a_reload() {
    let load = LoadRegistry::default();
    let old = set(2, LbPolicy::LeastRequest, &load);
    let busy = old.endpoints()[0].addr;
    let idle = old.endpoints()[1].addr;
    let _held: Vec<Picked> = (0..5).filter_map(|_| old.pick(&[idle])).collect();
    let new = set(2, LbPolicy::LeastRequest, &load);
    assert!(load.active(busy) > 0);
    for _ in 0..100 {
        assert_ne!(new.pick(&[]).expect("pick").endpoint.addr, busy);
    }
}

#[test]
fn round_robin_cycles() {
    let s = set(3, LbPolicy::RoundRobin, &LoadRegistry::default());
    let picks: Vec<u8> = (0..6)
        .map(|_| match s.pick(&[]).expect("pick").endpoint.addr.ip() {
            std::net::IpAddr::V4(ip) => ip.octets()[3],
            _ => 0,
        })
        .collect();
    assert_eq!(picks, [1, 2, 3, 1, 2, 3]);
}

#[test]
fn avoid_is_honoured_only_when_an_alternative_exists() {
    for policy in [LbPolicy::LeastRequest, LbPolicy::RoundRobin] {
        let s = set(3, policy, &LoadRegistry::default());
        let avoid = [s.endpoints()[0].addr, s.endpoints()[1].addr];
        for _ in 0..50 {
            assert_eq!(
                s.pick(&avoid).expect("pick").endpoint.addr,
                s.endpoints()[2].addr,
                "{policy:?}"
            );
        }
        let all: Vec<SocketAddr> = s.endpoints().iter().map(|e| e.addr).collect();
        assert!(
            s.pick(&all).is_some(),
            "{policy:?}: every endpoint avoided, still pick one"
        );
    }
}

#[test]
fn least_request_spreads_over_idle_endpoints() {
    let s = set(4, LbPolicy::LeastRequest, &LoadRegistry::default());
    let mut counts: HashMap<SocketAddr, usize> = HashMap::new();
    for _ in 0..4000 {
        *counts
            .entry(s.pick(&[]).expect("pick").endpoint.addr)
            .or_default() += 1;
    }
    assert_eq!(counts.len(), 4);
    assert!(counts.values().all(|&c| c > 700), "{counts:?}");
}

#[test]
fn sets_compare_by_endpoints_and_policy_not_counters() {
    let load = LoadRegistry::default();
    let a = set(2, LbPolicy::LeastRequest, &load);
    let b = set(2, LbPolicy::LeastRequest, &load);
    let _p = a.pick(&[]);
    assert_eq!(a, b);
    assert_ne!(a, set(2, LbPolicy::RoundRobin, &load));
}

#[test]
fn registry_prunes_unused_counters() {
    let load = LoadRegistry::default();
    let s = set(2, LbPolicy::LeastRequest, &load);
    drop(s);
    load.prune();
    assert_eq!(load.tracked(), 0);
}
