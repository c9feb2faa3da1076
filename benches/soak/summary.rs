//! The end of a soak: the summary tables (stdout and `summary.md`), `soak.csv`, `soak.svg`,
//! and the verdict with its reasons.

use std::fmt::Write as _;

use anyhow::Context;

use crate::plot::{svg, Series};
use crate::record::{csv, Counts, Event, Proto, Recorder, Sample};
use crate::Args;

/// Everything the verdict looks at.
pub struct Verdict<'a> {
    pub args: &'a Args,
    pub samples: &'a [Sample],
    pub events: &'a [Event],
    pub rec: &'a Recorder,
    pub waypoint_exit: Result<(), String>,
    pub stopped_early: Option<String>,
}

fn row(s: &mut String, name: &str, c: &Counts) {
    let _ = writeln!(
        s,
        "| {name} | {} | {} | {} | {} |",
        c.sent, c.answered, c.policy, c.unexpected
    );
}

impl Verdict<'_> {
    /// Prints and writes the results; `Ok(true)` when the run passed.
    pub fn write(&self) -> anyhow::Result<bool> {
        let args = self.args;
        let mut failures: Vec<String> = Vec::new();
        let mut s = String::new();

        // Requests by client and outcome.
        let (by_proto, reasons, reconnects) = self.rec.finish();
        let _ = writeln!(
            s,
            "| client | sent | answered (2xx) | failed by policy | failed unexpectedly |\n|---|---:|---:|---:|---:|"
        );
        let mut total = Counts::default();
        for (proto, c) in Proto::ALL.iter().zip(&by_proto) {
            row(&mut s, proto.name(), c);
            total.sent += c.sent;
            total.answered += c.answered;
            total.policy += c.policy;
            total.unexpected += c.unexpected;
        }
        row(&mut s, "**total**", &total);
        if total.unexpected > 0 {
            failures.push(format!("{} requests failed unexpectedly", total.unexpected));
            let _ = writeln!(s, "\nUnexpected failures by client, Service and kind:\n");
            for (reason, n) in &reasons {
                let _ = writeln!(s, "- {reason}: {n}");
            }
        }

        // Resources after warm-up.
        let after: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|x| x.t >= args.warmup as f64)
            .collect();
        let _ = writeln!(s);
        match (after.first(), after.last()) {
            (Some(first), Some(last)) => {
                let growth = (last.rss_mib / first.rss_mib - 1.0) * 100.0;
                let p99: Vec<f64> = after.iter().filter_map(|x| x.p99_ms).collect();
                let min = p99.iter().copied().fold(f64::INFINITY, f64::min);
                let max = p99.iter().copied().fold(0.0, f64::max);
                let rss_peak = after.iter().map(|x| x.rss_mib).fold(0.0, f64::max);
                let fds_peak = after.iter().map(|x| x.fds).max().unwrap_or(0);
                let _ = writeln!(
                    s,
                    "| after warm-up | first (t = {:.0} s) | last (t = {:.0} s) | peak |\n|---|---:|---:|---:|",
                    first.t, last.t
                );
                let _ = writeln!(
                    s,
                    "| waypoint RSS, MiB | {:.1} | {:.1} ({growth:+.1} %) | {rss_peak:.1} |",
                    first.rss_mib, last.rss_mib
                );
                let _ = writeln!(
                    s,
                    "| open fds | {} | {} | {fds_peak} |",
                    first.fds, last.fds
                );
                let _ = writeln!(
                    s,
                    "\np99 of 2xx answers per {} s window after warm-up: min {min:.2} ms, max {max:.2} ms. Waypoint CPU: mean {:.3} cores.",
                    args.sample_every,
                    after.iter().map(|x| x.waypoint_cores).sum::<f64>() / after.len() as f64
                );
                if growth > args.max_rss_growth {
                    failures.push(format!(
                        "RSS grew {growth:.1} % after warm-up ({:.1} -> {:.1} MiB), more than {} %",
                        first.rss_mib, last.rss_mib, args.max_rss_growth
                    ));
                }
            }
            _ => {
                let _ = writeln!(
                    s,
                    "No sample after the {} s warm-up: no RSS verdict.",
                    args.warmup
                );
            }
        }

        // Chaos events.
        let count = |prefix: &str| {
            let of: Vec<&Event> = self
                .events
                .iter()
                .filter(|e| e.what.starts_with(prefix))
                .collect();
            (of.len(), of.iter().filter(|e| e.ok).count())
        };
        let (reloads, reloads_ok) = count("reload");
        let (kills, _) = count("kill");
        let (restarts, restarts_ok) = count("restart");
        let (rotations, rotations_ok) = count("cert rotation");
        let _ = writeln!(
            s,
            "\nConfig reloads {reloads_ok}/{reloads} applied; backend kills {kills}, restarts {restarts_ok}/{restarts}; certificate rotations {rotations_ok}/{rotations} applied and checked over HBONE; client connections re-dialled before use: {reconnects}."
        );
        for e in self.events.iter().filter(|e| !e.ok) {
            failures.push(format!("{} at {:.0} s did not take", e.what, e.t));
        }
        if let Err(e) = &self.waypoint_exit {
            failures.push(e.clone());
        }
        if let Some(why) = &self.stopped_early {
            failures.push(format!("stopped early: {why}"));
        }

        // Files.
        let csv_path = args.out.join("soak.csv");
        std::fs::write(&csv_path, csv(self.samples, self.events))
            .with_context(|| format!("writing {}", csv_path.display()))?;
        let series = |title, f: fn(&Sample) -> Option<f64>| Series {
            title,
            points: self
                .samples
                .iter()
                .filter_map(|x| Some((x.t, f(x)?)))
                .collect(),
        };
        let panels = [
            series("waypoint RSS (MiB)", |x| Some(x.rss_mib)),
            series("waypoint open fds", |x| Some(x.fds as f64)),
            series("p99 latency of 2xx answers per window (ms)", |x| x.p99_ms),
        ];
        let rotations: Vec<f64> = self
            .events
            .iter()
            .filter(|e| e.what == "cert rotation")
            .map(|e| e.t)
            .collect();
        let title = format!(
            "waypoint soak: {} req/s (HTTP/1.1, h2c, HBONE) for {} s",
            args.rate, args.duration
        );
        let svg_path = args.out.join("soak.svg");
        std::fs::write(
            &svg_path,
            svg(
                &title,
                &panels,
                args.duration as f64,
                args.warmup as f64,
                &rotations,
            ),
        )
        .with_context(|| format!("writing {}", svg_path.display()))?;
        let summary_path = args.out.join("summary.md");
        std::fs::write(&summary_path, &s)
            .with_context(|| format!("writing {}", summary_path.display()))?;

        println!("\n{s}");
        println!(
            "Wrote {}, {}, {}.",
            csv_path.display(),
            svg_path.display(),
            summary_path.display()
        );
        if failures.is_empty() {
            println!("PASS");
            Ok(true)
        } else {
            println!("FAIL:");
            for f in &failures {
                println!("- {f}");
            }
            Ok(false)
        }
    }
}
