//! `report`: Markdown tables from the JSON lines `load` appended, one row per path and test,
//! each figure the median over the rounds. "p99 added" is a row's median p99 minus its
//! baseline row's, at the same test.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use serde_json::Value;

/// Arguments of `report`.
#[derive(clap::Args)]
pub struct ReportArgs {
    /// JSON-lines files written by `load --out` (and the script's `idle` lines).
    files: Vec<PathBuf>,
}

/// All rounds of one (test, path).
struct Row {
    name: String,
    baseline: Option<String>,
    runs: Vec<Value>,
}

impl Row {
    fn median(&self, field: &str) -> Option<f64> {
        median(self.runs.iter().filter_map(|r| r[field].as_f64()).collect())
    }
    fn sum(&self, field: &str) -> u64 {
        self.runs.iter().filter_map(|r| r[field].as_u64()).sum()
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn fmt(v: Option<f64>, decimals: usize) -> String {
    v.map_or("—".into(), |v| format!("{v:.decimals$}"))
}

/// Prints the tables.
pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    let mut tests: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    let mut idle = Vec::new();
    for file in &args.files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line).context("a result line")?;
            let test = v["test"].as_str().unwrap_or_default().to_owned();
            if test == "idle" {
                idle.extend(v["proxy_rss_kib"].as_f64());
                continue;
            }
            let name = v["name"].as_str().unwrap_or_default().to_owned();
            let rows = tests.entry(test).or_default();
            match rows.iter_mut().find(|r| r.name == name) {
                Some(row) => row.runs.push(v),
                None => rows.push(Row {
                    name,
                    baseline: v["baseline"].as_str().map(str::to_owned),
                    runs: vec![v],
                }),
            }
        }
    }
    let rounds = tests
        .values()
        .flat_map(|rows| rows.iter().map(|r| r.runs.len()))
        .max()
        .unwrap_or(0);
    println!("Medians of {rounds} round(s).\n");
    for (test, rows) in &tests {
        let first = &rows[0].runs[0];
        let rate = first["rate_target"].as_u64().unwrap_or(0);
        let streams = first["streams"].as_u64().unwrap_or(0);
        if rate > 0 {
            println!("### `{test}`: fixed {rate} requests/s over {streams} connections/streams\n");
        } else {
            println!("### `{test}`: saturation, closed loop over {streams} connections/streams\n");
        }
        println!("| path | req/s | p50 ms | p99 ms | p99 added ms (vs) | waypoint vCPU | vCPU per 1,000 req/s | CPU µs / request | waypoint RSS max MiB | load-core vCPU (client + servers) | errors / late |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for row in rows {
            let added = row.baseline.as_ref().and_then(|b| {
                let base = rows.iter().find(|r| &r.name == b)?;
                Some(format!(
                    "{} ({b})",
                    fmt(Some(row.median("p99_ms")? - base.median("p99_ms")?), 3)
                ))
            });
            let load_core = median(
                row.runs
                    .iter()
                    .filter_map(|r| Some(r["client_cores"].as_f64()? + r["serve_cores"].as_f64()?))
                    .collect(),
            );
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} |",
                row.name,
                fmt(row.median("rps"), 0),
                fmt(row.median("p50_ms"), 3),
                fmt(row.median("p99_ms"), 3),
                added.unwrap_or_else(|| "—".into()),
                fmt(row.median("proxy_cores"), 3),
                fmt(row.median("proxy_cores_per_1k_rps"), 3),
                fmt(row.median("proxy_cpu_us_per_request"), 1),
                fmt(row.median("proxy_rss_max_kib").map(|k| k / 1024.0), 1),
                fmt(load_core, 2),
                row.sum("errors"),
                row.sum("late"),
            );
        }
        println!();
    }
    let foreign: Vec<f64> = tests
        .values()
        .flatten()
        .flat_map(|r| r.runs.iter().filter_map(|v| v["foreign_cores"].as_f64()))
        .collect();
    let max_foreign = foreign.iter().copied().fold(0.0, f64::max);
    println!(
        "Waypoint RSS idle (before any load): {} MiB. CPU of other processes on the machine during the windows: median {} vCPU, max {} vCPU.",
        fmt(median(idle).map(|k| k / 1024.0), 1),
        fmt(median(foreign), 3),
        fmt(Some(max_foreign), 3),
    );
    Ok(())
}
