//! Gateway API duration parsing (GEP-2257).

use std::time::Duration;

use super::parse_duration;

#[test]
fn gateway_api_duration_table() {
    // (input, expected); GEP-2257: ^([0-9]{1,5}(h|m|s|ms)){1,4}$
    let ok = [
        ("10s", Duration::from_secs(10)),
        ("500ms", Duration::from_millis(500)),
        ("1h30m", Duration::from_secs(5400)),
        ("0s", Duration::ZERO),
        ("1h1m1s1ms", Duration::from_millis(3_661_001)),
        ("99999ms", Duration::from_millis(99_999)),
    ];
    for (input, want) in ok {
        assert_eq!(parse_duration(input).expect(input), want, "{input}");
    }
    let bad = [
        "",
        "10",
        "s",
        "1.5s",
        "100000s",
        "1h1m1s1ms1h",
        "10 s",
        "-1s",
        "1d",
        "10S",
    ];
    for input in bad {
        assert!(
            parse_duration(input).is_err(),
            "{input:?} should be rejected"
        );
    }
}
