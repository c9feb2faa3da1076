//! Tools of the mesh-path load benchmark, driven by `benches/mesh-load.sh`:
//!
//! - `mint DIR`: a test CA and cert dirs for the waypoint, a client ztunnel and the
//!   destination ztunnel;
//! - `serve`: the destination side: HTTP/1.1 backends ("pods") and a fake destination
//!   ztunnel (mTLS HTTP/2 CONNECT server) in front of them;
//! - `load`: drives one path (plain HTTP/1.1 or HBONE) at a fixed rate or at saturation and
//!   appends one JSON line with requests/s, latency and the measured processes' CPU and RSS;
//! - `report`: Markdown tables (medians over rounds) from those JSON lines.
//!
//! It is a `harness = false` bench so that it is built with the release profile and never
//! by `cargo test`; `cargo bench` alone only prints where to start.

mod load;
mod proc_stat;
mod report;
mod serve;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "mesh_path",
    about = "mesh-path load benchmark tools (see benches/mesh-load.sh)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Mint a CA and the cert dirs `waypoint/`, `client/`, `ztunnel/` under DIR.
    Mint {
        dir: PathBuf,
        /// Trust domain of every SPIFFE id.
        #[arg(long, default_value = "cluster.local")]
        trust_domain: String,
    },
    /// Run backends and a fake destination ztunnel until SIGINT/SIGTERM.
    Serve(serve::ServeArgs),
    /// Drive load at one target; print (and append) one JSON line.
    Load(Box<load::LoadArgs>),
    /// Print Markdown tables from JSON-lines result files.
    Report(report::ReportArgs),
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` runs every bench target with `--bench`; this one needs the script.
    if std::env::args().nth(1).as_deref() == Some("--bench") {
        println!("mesh_path: run benches/mesh-load.sh (this program is its helper)");
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match Cli::parse().command {
        Command::Mint { dir, trust_domain } => serve::mint(&dir, &trust_domain),
        Command::Serve(args) => runtime.block_on(serve::run(args)),
        Command::Load(args) => runtime.block_on(load::run(*args)),
        Command::Report(args) => report::run(args),
    }
}
