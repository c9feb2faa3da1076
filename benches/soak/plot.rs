//! `soak.svg`: three small panels over time (the waypoint's RSS, its open fds, the p99 of
//! 2xx answers per window), a dashed line where warm-up ends and faint marks at each
//! certificate rotation. Hand-written SVG: three polylines and their axes need no crate.

use std::fmt::Write as _;

const WIDTH: f64 = 760.0;
const PANEL_H: f64 = 150.0;
const GAP: f64 = 46.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 40.0;

/// One panel's series: (seconds, value).
pub struct Series<'a> {
    pub title: &'a str,
    pub points: Vec<(f64, f64)>,
}

/// A round step giving about `n` ticks over `0..max`.
fn nice_step(max: f64, n: f64) -> f64 {
    let raw = (max / n).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

fn label(v: f64, step: f64) -> String {
    if step >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Renders the panels over `0..duration` seconds; `warmup` and `rotations` are marked.
pub fn svg(
    title: &str,
    panels: &[Series],
    duration: f64,
    warmup: f64,
    rotations: &[f64],
) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let height = TOP + panels.len() as f64 * (PANEL_H + GAP) + 10.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="20" font-size="14" font-weight="bold">{title}</text>"#
    );
    let x_max = duration.max(1.0);
    let x_step = nice_step(x_max, 6.0);
    let x = |t: f64| LEFT + t / x_max * plot_w;
    for (i, panel) in panels.iter().enumerate() {
        let top = TOP + i as f64 * (PANEL_H + GAP);
        let bottom = top + PANEL_H;
        let y_top = panel
            .points
            .iter()
            .map(|p| p.1)
            .fold(0.0, f64::max)
            .max(1e-9)
            * 1.15;
        let y_step = nice_step(y_top, 4.0);
        let y = |v: f64| bottom - v / y_top * PANEL_H;
        // Title, frame, grid and tick labels.
        let _ = writeln!(
            s,
            r#"<text x="{LEFT}" y="{}" font-weight="bold">{}</text>"#,
            top - 6.0,
            panel.title
        );
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL_H}" fill="none" stroke="#888"/>"##
        );
        let mut v = 0.0;
        while v <= y_top {
            let yy = y(v);
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT + plot_w,
                LEFT - 6.0,
                yy + 4.0,
                label(v, y_step)
            );
            v += y_step;
        }
        let mut t = 0.0;
        while t <= x_max + 1e-9 {
            let _ = writeln!(
                s,
                r##"<line x1="{0:.1}" y1="{bottom}" x2="{0:.1}" y2="{1}" stroke="#888"/><text x="{0:.1}" y="{2}" text-anchor="middle">{3}</text>"##,
                x(t),
                bottom + 4.0,
                bottom + 16.0,
                label(t, x_step)
            );
            t += x_step;
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="end">time (s)</text>"#,
            LEFT + plot_w,
            bottom + 30.0
        );
        // Markers: end of warm-up, certificate rotations.
        let _ = writeln!(
            s,
            r##"<line x1="{0:.1}" y1="{top}" x2="{0:.1}" y2="{bottom}" stroke="#c60" stroke-dasharray="4 3"/>"##,
            x(warmup)
        );
        for r in rotations {
            let _ = writeln!(
                s,
                r##"<line x1="{0:.1}" y1="{top}" x2="{0:.1}" y2="{bottom}" stroke="#6a6" stroke-width="0.8" opacity="0.6"/>"##,
                x(*r)
            );
        }
        // The series.
        let pts: Vec<String> = panel
            .points
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
            .collect();
        let _ = writeln!(
            s,
            r##"<polyline points="{}" fill="none" stroke="#1f5fa8" stroke-width="1.5"/>"##,
            pts.join(" ")
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="20" text-anchor="end"><tspan fill="#c60">- - end of warm-up</tspan>   <tspan fill="#6a6">| certificate rotation</tspan></text>"##,
        WIDTH - RIGHT
    );
    s.push_str("</svg>\n");
    s
}
