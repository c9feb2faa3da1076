//! Weighted backend choice.

use super::*;

fn backend(weight: u32, target: &str) -> CompiledBackend {
    CompiledBackend {
        weight,
        target: Err(target.to_string()),
        filters: RuleFilters::default(),
    }
}

fn name(b: Option<&CompiledBackend>) -> &str {
    match b.map(|b| &b.target) {
        Some(Err(name)) => name,
        _ => "none",
    }
}

#[test]
fn choose_at_lays_weights_end_to_end() {
    let backends = [backend(3, "a"), backend(0, "zero"), backend(2, "b")];
    assert_eq!(total_weight(&backends), 5);
    // (point in 0..5, expected): weight 0 owns no point.
    let rows = [(0, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "none")];
    for (point, want) in rows {
        assert_eq!(name(choose_at(&backends, point)), want, "point {point}");
    }
}

#[test]
fn choose_never_picks_weight_zero_and_none_when_all_zero() {
    let backends = [backend(0, "zero"), backend(1, "one")];
    for _ in 0..1000 {
        assert_eq!(name(choose(&backends, total_weight(&backends))), "one");
    }
    let zeros = [backend(0, "a"), backend(0, "b")];
    assert!(choose(&zeros, 0).is_none());
}
