//! The live admin page at `/`: one HTML page with inline CSS and JS, no
//! external assets and no build step, served from a string in the binary.
//! It polls `/stats/live` every second and computes rates, error rates and
//! p50/p99 from the difference between two polls of monotonic counters.

/// The page (`page.html`, compiled in).
pub const PAGE: &str = include_str!("page.html");
