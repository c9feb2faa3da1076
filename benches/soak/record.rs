//! What the soak counts: every request's outcome by client protocol, the latencies of the
//! current sampling window, the first unexpected failures in full, the periodic samples
//! (counts, p50/p99, the waypoint's RSS, fds and CPU), the chaos events, and the CSV.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// How many unexpected failures are printed in full as they happen.
const LOG_FIRST: usize = 10;

/// The client protocols, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Http1,
    H2c,
    Hbone,
}

impl Proto {
    pub const ALL: [Proto; 3] = [Proto::Http1, Proto::H2c, Proto::Hbone];

    pub fn name(self) -> &'static str {
        match self {
            Proto::Http1 => "http/1.1",
            Proto::H2c => "h2c",
            Proto::Hbone => "hbone",
        }
    }
}

/// How a request ended, as the soak judges it.
pub enum Outcome {
    /// 2xx.
    Answered,
    /// The route's policy answered as configured: the fault's 418, the timeout's 504 for a
    /// request sent with a backend delay past it.
    Policy,
    /// Anything else: a wrong status, a broken connection, a client-side timeout.
    Unexpected(String),
}

/// Requests by outcome.
#[derive(Clone, Copy, Default, Debug)]
pub struct Counts {
    pub sent: u64,
    pub answered: u64,
    pub policy: u64,
    pub unexpected: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.sent += o.sent;
        self.answered += o.answered;
        self.policy += o.policy;
        self.unexpected += o.unexpected;
    }
}

#[derive(Default)]
struct State {
    by_proto: [Counts; 3],
    /// Latencies (ns) of the 2xx answers since the last [`Recorder::take_window`].
    window_ns: Vec<u64>,
    /// Unexpected failures by their first words (status, error kind), for the summary.
    reasons: BTreeMap<String, u64>,
    /// Connections found closed before a request was sent on them (re-dialled, not failed).
    reconnects: u64,
}

/// Shared by every client task; the lock is held for a push, so it never contends at a few
/// hundred requests per second.
#[derive(Default)]
pub struct Recorder {
    state: Mutex<State>,
}

impl Recorder {
    /// Records one request sent at `t` (since the start) with its latency and outcome.
    pub fn record(&self, t: Duration, proto: Proto, service: &str, latency: Duration, o: Outcome) {
        let mut s = self.state.lock().expect("recorder lock");
        let c = &mut s.by_proto[proto as usize];
        c.sent += 1;
        match o {
            Outcome::Answered => {
                c.answered += 1;
                s.window_ns.push(latency.as_nanos() as u64);
            }
            Outcome::Policy => c.policy += 1,
            Outcome::Unexpected(detail) => {
                c.unexpected += 1;
                let total: u64 = s.by_proto.iter().map(|c| c.unexpected).sum();
                if total as usize <= LOG_FIRST {
                    println!(
                        "unexpected #{total} at {:.1}s: {} {service}: {detail}",
                        t.as_secs_f64(),
                        proto.name()
                    );
                }
                let reason: String = detail.split(':').next().unwrap_or("").to_owned();
                *s.reasons
                    .entry(format!("{} {service}: {reason}", proto.name()))
                    .or_default() += 1;
            }
        }
    }

    /// Counts a connection that had to be re-dialled before use.
    pub fn reconnect(&self) {
        self.state.lock().expect("recorder lock").reconnects += 1;
    }

    /// Totals so far and the window's latencies (the window starts afresh).
    pub fn take_window(&self) -> (Counts, Vec<u64>) {
        let mut s = self.state.lock().expect("recorder lock");
        let mut total = Counts::default();
        for c in &s.by_proto {
            total.add(c);
        }
        (total, std::mem::take(&mut s.window_ns))
    }

    /// Per protocol counts, failure reasons, reconnects.
    pub fn finish(&self) -> ([Counts; 3], BTreeMap<String, u64>, u64) {
        let s = self.state.lock().expect("recorder lock");
        (s.by_proto, s.reasons.clone(), s.reconnects)
    }
}

/// `q`-quantile (nearest rank) of sorted nanoseconds, in ms.
pub fn quantile_ms(sorted: &[u64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1] as f64 / 1e6)
}

/// One periodic sample.
pub struct Sample {
    /// Seconds since the load started.
    pub t: f64,
    /// Totals so far.
    pub counts: Counts,
    /// Requests answered 2xx in this window, and their p50/p99.
    pub window_answered: usize,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub rss_mib: f64,
    pub fds: usize,
    /// The waypoint's CPU over the window, and the whole machine's (all processes), in cores.
    pub waypoint_cores: f64,
    pub machine_cores: f64,
    /// Config generation at the sample.
    pub generation: u64,
}

/// A chaos event and whether it did what it should.
pub struct Event {
    pub t: f64,
    pub what: String,
    pub ok: bool,
}

/// The CSV: one row per sample, events in a last column.
pub fn csv(samples: &[Sample], events: &[Event]) -> String {
    let mut out = String::from(
        "t_s,sent,answered,failed_by_policy,failed_unexpectedly,window_answered,p50_ms,p99_ms,rss_mib,open_fds,waypoint_cores,machine_cores,config_generation,events\n",
    );
    let mut prev = f64::NEG_INFINITY;
    for s in samples {
        let ev: Vec<String> = events
            .iter()
            .filter(|e| e.t > prev && e.t <= s.t)
            .map(|e| format!("{}{}", e.what, if e.ok { "" } else { " FAILED" }))
            .collect();
        prev = s.t;
        let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.3}"));
        let _ = writeln!(
            out,
            "{:.1},{},{},{},{},{},{},{},{:.1},{},{:.3},{:.3},{},\"{}\"",
            s.t,
            s.counts.sent,
            s.counts.answered,
            s.counts.policy,
            s.counts.unexpected,
            s.window_answered,
            opt(s.p50_ms),
            opt(s.p99_ms),
            s.rss_mib,
            s.fds,
            s.waypoint_cores,
            s.machine_cores,
            s.generation,
            ev.join("; "),
        );
    }
    out
}
