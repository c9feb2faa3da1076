//! Trace context on the wire: W3C `traceparent` and B3 (`x-b3-*` headers
//! and the single `b3` header) read from a request's own headers, and the
//! waypoint's span written back in the formats that came in (W3C when none
//! did). Pure functions over header maps; no sampling, no export.

use std::fmt::Write;

use http::HeaderMap;
use opentelemetry::trace::{SpanId, TraceId};
use pingora_http::RequestHeader;

/// Which trace-context formats a request carried (several may).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Formats {
    pub w3c: bool,
    pub b3_multi: bool,
    pub b3_single: bool,
}

/// The trace context a request came with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Incoming {
    /// The caller's trace and span, when a valid one came.
    pub parent: Option<(TraceId, SpanId)>,
    /// The caller's sampling decision, when it made one (`b3: 0` carries
    /// only a decision).
    pub sampled: Option<bool>,
    pub formats: Formats,
}

/// Reads the W3C and B3 headers. Where both carry a parent, W3C's wins;
/// an invalid header is ignored, as Envoy does.
pub fn extract(headers: &HeaderMap) -> Incoming {
    let mut incoming = Incoming::default();
    if let Some((trace, span, sampled)) = header(headers, "traceparent").and_then(parse_w3c) {
        incoming.parent = Some((trace, span));
        incoming.sampled = Some(sampled);
        incoming.formats.w3c = true;
    }
    if let Some(b3) = header(headers, "b3").and_then(parse_b3_single) {
        incoming.formats.b3_single = true;
        if incoming.parent.is_none() {
            incoming.parent = b3.0;
            incoming.sampled = b3.1;
        }
    }
    if let Some(b3) = parse_b3_multi(headers) {
        incoming.formats.b3_multi = true;
        if incoming.parent.is_none() {
            incoming.parent = b3.0;
            incoming.sampled = incoming.sampled.or(b3.1);
        }
    }
    incoming
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// `00-<trace id>-<parent id>-<flags>`; a later version may add fields.
fn parse_w3c(value: &str) -> Option<(TraceId, SpanId, bool)> {
    let mut parts = value.split('-');
    let version = parts.next()?;
    let (trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    let trace = hex_trace(trace, 32)?;
    let span = hex_span(span)?;
    let flags = u8::from_str_radix(flags, 16)
        .ok()
        .filter(|_| flags.len() == 2)?;
    Some((trace, span, flags & 1 == 1))
}

/// `b3: {traceid}-{spanid}[-{sampled}[-{parentspanid}]]`, or only a
/// sampling state (`0`, `1`, `d`).
type B3 = (Option<(TraceId, SpanId)>, Option<bool>);

fn parse_b3_single(value: &str) -> Option<B3> {
    let parts: Vec<&str> = value.split('-').collect();
    match parts.as_slice() {
        [state] => Some((None, Some(b3_sampled(state)?))),
        [trace, span, rest @ ..] if rest.len() <= 2 => {
            let trace = hex_trace(trace, 0)?;
            let span = hex_span(span)?;
            let sampled = match rest.first() {
                Some(s) => Some(b3_sampled(s)?),
                None => None,
            };
            Some((Some((trace, span)), sampled))
        }
        _ => None,
    }
}

fn parse_b3_multi(headers: &HeaderMap) -> Option<B3> {
    let debug = header(headers, "x-b3-flags") == Some("1");
    let sampled = header(headers, "x-b3-sampled").and_then(b3_sampled);
    let sampled = if debug { Some(true) } else { sampled };
    let ids = match (
        header(headers, "x-b3-traceid"),
        header(headers, "x-b3-spanid"),
    ) {
        (Some(t), Some(s)) => Some((hex_trace(t, 0)?, hex_span(s)?)),
        _ => None,
    };
    (ids.is_some() || sampled.is_some()).then_some((ids, sampled))
}

fn b3_sampled(s: &str) -> Option<bool> {
    match s {
        "1" | "d" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// A trace id of 32 hex digits (`len` 32), or B3's 16 or 32 (`len` 0).
fn hex_trace(s: &str, len: usize) -> Option<TraceId> {
    let ok = if len == 0 {
        s.len() == 16 || s.len() == 32
    } else {
        s.len() == len
    };
    let v = u128::from_str_radix(s, 16).ok().filter(|v| ok && *v != 0)?;
    Some(TraceId::from(v))
}

fn hex_span(s: &str) -> Option<SpanId> {
    let v = u64::from_str_radix(s, 16)
        .ok()
        .filter(|v| s.len() == 16 && *v != 0)?;
    Some(SpanId::from(v))
}

/// What goes to the upstream: the trace, the waypoint's span as the parent
/// the backend sees, and the sampling decision.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// The caller's span (B3's `parentspanid`).
    pub parent: Option<SpanId>,
    pub sampled: bool,
    pub formats: Formats,
}

/// Writes the waypoint's span into `req` in each format that came in, W3C
/// when none did. `tracestate` and B3 debug flags pass through untouched.
pub fn inject(out: &Outgoing, req: &mut RequestHeader) {
    let f = out.formats;
    let none = !f.w3c && !f.b3_multi && !f.b3_single;
    let flag = if out.sampled { "1" } else { "0" };
    let mut buf = String::with_capacity(64);
    if f.w3c || none {
        let _ = write!(buf, "00-{}-{}-0{}", out.trace_id, out.span_id, flag);
        let _ = req.insert_header("traceparent", buf.as_str());
    }
    if f.b3_single {
        buf.clear();
        let _ = write!(buf, "{}-{}-{}", out.trace_id, out.span_id, flag);
        if let Some(parent) = out.parent {
            let _ = write!(buf, "-{parent}");
        }
        let _ = req.insert_header("b3", buf.as_str());
    }
    if f.b3_multi {
        let _ = req.insert_header("x-b3-traceid", out.trace_id.to_string());
        let _ = req.insert_header("x-b3-spanid", out.span_id.to_string());
        match out.parent {
            Some(parent) => {
                let _ = req.insert_header("x-b3-parentspanid", parent.to_string());
            }
            None => {
                req.remove_header("x-b3-parentspanid");
            }
        }
        let _ = req.insert_header("x-b3-sampled", flag);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";

    #[test]
    fn reads_w3c_b3_multi_and_b3_single() {
        let tp = format!("00-{TRACE}-{SPAN}-01");
        let mut h = HeaderMap::new();
        h.insert("traceparent", tp.parse().unwrap());
        let w3c = extract(&h);
        assert_eq!(w3c.parent.unwrap().0, TraceId::from_hex(TRACE).unwrap());
        assert_eq!(w3c.sampled, Some(true));
        assert!(w3c.formats.w3c);

        let multi = extract(&headers(&[
            ("x-b3-traceid", "a3ce929d0e0e4736"),
            ("x-b3-spanid", "00f067aa0ba902b7"),
            ("x-b3-sampled", "0"),
        ]));
        assert_eq!(
            multi.parent.unwrap().0,
            TraceId::from_hex("a3ce929d0e0e4736").unwrap()
        );
        assert_eq!(multi.sampled, Some(false));
        assert!(multi.formats.b3_multi && !multi.formats.w3c);

        let single = extract(&headers(&[(
            "b3",
            "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1-05e3ac9a4f6e3b90",
        )]));
        assert_eq!(single.parent.unwrap().1, SpanId::from_hex(SPAN).unwrap());
        assert_eq!(single.sampled, Some(true));

        let deny = extract(&headers(&[("b3", "0")]));
        assert_eq!((deny.parent, deny.sampled), (None, Some(false)));
        let debug = extract(&headers(&[("x-b3-flags", "1")]));
        assert_eq!(debug.sampled, Some(true));
    }

    #[test]
    fn ignores_invalid_headers() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-xyz-00f067aa0ba902b7-01",
        ] {
            let mut h = HeaderMap::new();
            h.insert("traceparent", bad.parse().unwrap());
            assert_eq!(extract(&h), Incoming::default(), "{bad}");
        }
    }

    #[test]
    fn writes_the_formats_that_came_in_and_w3c_when_none_did() {
        let out = Outgoing {
            trace_id: TraceId::from_hex(TRACE).unwrap(),
            span_id: SpanId::from_hex("1111111111111111").unwrap(),
            parent: Some(SpanId::from_hex(SPAN).unwrap()),
            sampled: false,
            formats: Formats {
                b3_multi: true,
                ..Formats::default()
            },
        };
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        inject(&out, &mut req);
        let get = |n: &str| req.headers.get(n).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(get("x-b3-spanid").as_deref(), Some("1111111111111111"));
        assert_eq!(get("x-b3-parentspanid").as_deref(), Some(SPAN));
        assert_eq!(get("x-b3-sampled").as_deref(), Some("0"));
        assert_eq!(get("traceparent"), None);

        let none = Outgoing {
            formats: Formats::default(),
            sampled: true,
            ..out
        };
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        inject(&none, &mut req);
        assert_eq!(
            req.headers.get("traceparent").unwrap(),
            &format!("00-{TRACE}-1111111111111111-01")
        );
    }
}
