//! Golden tests of compiled config: each `tests/golden/<case>/config.yaml` is
//! loaded by the real `waypoint run` binary, its `/config_dump` is fetched over
//! loopback, the fields that change from run to run are masked, and the rest
//! is compared with `tests/golden/<case>/config_dump.json`. A refactor that
//! changes compiled routes, endpoints or policy shows up as a diff here.
//!
//! Black-box on purpose: only the binary's command line and its admin
//! endpoint are used, so moving modules inside `src/` cannot break the test,
//! only changing what the waypoint compiles can.
//!
//! `UPDATE_GOLDEN=1 cargo test --features testing --test config_dump_golden`
//! rewrites the `config_dump.json` files instead of comparing; review the diff
//! before committing it (see `tests/golden/README.md`).

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use common::{TestClient, STEP};

/// Every case: its directory under `tests/golden/` and the waypoint's
/// `--namespace` (where short names and objects without a namespace land).
const CASES: &[(&str, &str)] = &[
    ("gamma-precedence", "shop"),
    ("filters", "frontend"),
    ("producer-consumer", "bookinfo"),
    ("istio-traffic", "bookinfo"),
    ("serviceentry-mesh", "payments"),
    ("authorization", "shop"),
    ("tcp-route", "shop"),
    ("cors-direct-response", "site"),
    ("grpc-route", "shop"),
];

/// Marks a masked value in the golden files.
const MASKED: &str = "<masked>";

#[tokio::test]
async fn gamma_precedence() {
    check_case("gamma-precedence").await;
}

#[tokio::test]
async fn filters() {
    check_case("filters").await;
}

#[tokio::test]
async fn producer_consumer() {
    check_case("producer-consumer").await;
}

#[tokio::test]
async fn istio_traffic() {
    check_case("istio-traffic").await;
}

#[tokio::test]
async fn serviceentry_mesh() {
    check_case("serviceentry-mesh").await;
}

#[tokio::test]
async fn authorization() {
    check_case("authorization").await;
}

#[tokio::test]
async fn tcp_route() {
    check_case("tcp-route").await;
}

#[tokio::test]
async fn cors_direct_response() {
    check_case("cors-direct-response").await;
}

#[tokio::test]
async fn grpc_route() {
    check_case("grpc-route").await;
}

/// A case directory nobody runs would look tested but not be.
#[test]
fn every_case_directory_is_listed() {
    let mut on_disk: Vec<String> = std::fs::read_dir(golden_root())
        .expect("tests/golden exists")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("config.yaml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = CASES.iter().map(|(name, _)| name.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "tests/golden/*/config.yaml vs CASES");
}

#[test]
fn masking_keeps_the_shape_and_hides_what_varies() {
    let dir = Path::new("/tmp/x/case");
    let dump = serde_json::json!({
        "generation": 1,
        "loaded_at": "2026-01-01T00:00:00.000Z",
        "last_error": null,
        "source": {"type": "file", "path": "/tmp/x/case"},
        "snapshot": {"b": 1, "a": [{"d": 2, "c": "/tmp/x/case/config.yaml: bad"}]},
    });
    let got = render(&normalize(dump, dir));
    let want = "{\n  \"generation\": 1,\n  \"last_error\": null,\n  \"loaded_at\": \"<masked>\",\n  \"snapshot\": {\n    \"a\": [\n      {\n        \"c\": \"$CASE_DIR/config.yaml: bad\",\n        \"d\": 2\n      }\n    ],\n    \"b\": 1\n  },\n  \"source\": {\n    \"path\": \"$CASE_DIR\",\n    \"type\": \"file\"\n  }\n}\n";
    assert_eq!(got, want);
}

#[test]
fn changed_fields_are_named_by_their_path() {
    let want = serde_json::json!({"a": [{"w": 90}, {"w": 10}], "b": [1], "c": "x"});
    let got = serde_json::json!({"a": [{"w": 80}, {"w": 10}], "b": [1, 2], "d": true});
    assert_eq!(
        changed_fields(&want, &got),
        "  a[0].w: 90 → 80\n  b: 1 entries → 2 (see the lines below)\n  c: removed (was \"x\")\n  d: added true\n"
    );
}

#[test]
fn the_diff_shows_changed_lines_with_context() {
    let want = "a\nb\nc\nd\ne\nf\ng\nh\n";
    let got = "a\nb\nc\nd\ne\nF\ng\nh\ni\n";
    let diff = line_diff(want, got);
    assert!(
        diff.starts_with("@@ line 3 @@\n c\n d\n e\n-f\n+F\n g\n h\n+i\n"),
        "{diff}"
    );
    assert!(
        !diff.contains(" b\n"),
        "no context far from a change: {diff}"
    );
}

// ---------------------------------------------------------------------------
// One case, end to end.

async fn check_case(name: &str) {
    let namespace = CASES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, ns)| *ns)
        .unwrap_or_else(|| panic!("case {name} is not in CASES"));
    let dir = golden_root().join(name);
    let golden = dir.join("config_dump.json");

    // Start the binary on the case directory and fetch its dump.
    let proc = Waypoint::start(&dir, namespace).await;
    let (status, body) = {
        let reply = TestClient::new(proc.admin)
            .get("admin", "/config_dump")
            .await;
        (
            reply.status,
            String::from_utf8_lossy(&reply.body).into_owned(),
        )
    };
    let warnings = proc.warnings();
    drop(proc);
    assert_eq!(status, 200, "GET /config_dump: {body}");
    assert!(
        warnings.is_empty(),
        "{name}: the config should load without warnings (a typo in config.yaml?):\n{}",
        warnings.join("\n")
    );

    // Mask what varies, then compare with (or write) the golden file.
    let dump: Value = serde_json::from_str(&body).expect("/config_dump is JSON");
    let got = render(&normalize(dump, &dir));
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&golden, &got).expect("write golden file");
        eprintln!("updated {}", golden.display());
        return;
    }
    let want = std::fs::read_to_string(&golden).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with UPDATE_GOLDEN=1 to create it",
            golden.display()
        )
    });
    if want != got {
        let fields = match serde_json::from_str::<Value>(&want) {
            Ok(old) => changed_fields(&old, &serde_json::from_str(&got).expect("rendered JSON")),
            Err(e) => format!("(the golden file is not JSON: {e})\n"),
        };
        panic!(
            "{name}: /config_dump differs from {}.\nChanged fields (golden → now):\n{fields}\nLines (- golden, + now):\n{}\nIf the change is intended, rerun with UPDATE_GOLDEN=1 and review the diff.",
            golden.display(),
            line_diff(&want, &got)
        );
    }
}

fn golden_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

// ---------------------------------------------------------------------------
// The binary under test.

/// A running `waypoint run`, killed and reaped on drop (also when a test panics).
struct Waypoint {
    child: Child,
    /// The admin listener's bound address, as the binary logged it.
    admin: SocketAddr,
    /// Every stderr line so far (the reader thread keeps appending).
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Waypoint {
    /// Starts the binary with only the admin listener, on a port the kernel
    /// picks, and waits for the "admin listening" log line that names it.
    async fn start(config: &Path, namespace: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_waypoint"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .args(["--namespace", namespace, "--admin-listen", "127.0.0.1:0"])
            .env("WAYPOINT_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("POD_NAMESPACE")
            .env_remove("SERVICE_ACCOUNT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the waypoint binary");
        let stderr = child.stderr.take().expect("stderr is piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = tokio::sync::oneshot::channel();

        // The reader keeps draining stderr after the address is found, so the
        // child never blocks on a full pipe; it ends when the child dies.
        let seen = lines.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let line = strip_ansi(&line);
                if let Some(addr) = admin_addr_in(&line) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
                seen.lock().expect("stderr lock").push(line);
            }
        });

        // Guard first, so the child is killed if waiting fails.
        let mut proc = Self {
            child,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            stderr: lines,
        };
        proc.admin = match tokio::time::timeout(STEP, rx).await {
            Ok(Ok(addr)) => addr,
            Ok(Err(_)) => proc.fail(config, "stderr closed (did it exit?) before"),
            Err(_) => proc.fail(config, "timed out waiting for"),
        };
        proc
    }

    /// Panics with the exit status and everything the binary logged.
    fn fail(&mut self, config: &Path, why: &str) -> ! {
        // Killing a process that already exited changes nothing: wait still
        // reports its own exit status.
        let _ = self.child.kill();
        let exit = self.child.wait().ok();
        panic!(
            "waypoint run --config {}: {why} an \"admin listening\" line; exit {exit:?}; stderr:\n{}",
            config.display(),
            self.stderr_text()
        );
    }

    /// Warning and error lines logged so far.
    fn warnings(&self) -> Vec<String> {
        self.stderr
            .lock()
            .expect("stderr lock")
            .iter()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .cloned()
            .collect()
    }

    fn stderr_text(&self) -> String {
        self.stderr.lock().expect("stderr lock").join("\n")
    }
}

impl Drop for Waypoint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address in `... admin listening addr=Some(127.0.0.1:PORT)`.
fn admin_addr_in(line: &str) -> Option<SocketAddr> {
    if !line.contains("admin listening") {
        return None;
    }
    let rest = &line[line.find("addr=Some(")? + "addr=Some(".len()..];
    rest[..rest.find(')')?].parse().ok()
}

/// Drops ANSI escape sequences (`ESC [ ... letter`), in case colour is on.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Normalising the dump.

/// Masks what differs between runs and machines: `loaded_at` and the time of
/// a rejected config (`last_error.at`); the case directory's absolute path
/// becomes `$CASE_DIR` wherever it appears. Keys come out sorted.
fn normalize(mut dump: Value, case_dir: &Path) -> Value {
    if let Some(obj) = dump.as_object_mut() {
        if obj.contains_key("loaded_at") {
            obj.insert("loaded_at".into(), Value::from(MASKED));
        }
        if let Some(err) = obj.get_mut("last_error").and_then(Value::as_object_mut) {
            if err.contains_key("at") {
                err.insert("at".into(), Value::from(MASKED));
            }
        }
    }
    let dir = case_dir.display().to_string();
    sorted(replace_in_strings(dump, &dir, "$CASE_DIR"))
}

fn replace_in_strings(v: Value, from: &str, to: &str) -> Value {
    match v {
        Value::String(s) => Value::String(s.replace(from, to)),
        Value::Array(a) => Value::Array(
            a.into_iter()
                .map(|v| replace_in_strings(v, from, to))
                .collect(),
        ),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| (k, replace_in_strings(v, from, to)))
                .collect(),
        ),
        other => other,
    }
}

/// Keys sorted at every level, whether or not serde_json preserves order.
fn sorted(v: Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        Value::Object(o) => {
            let mut entries: Vec<(String, Value)> = o.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        other => other,
    }
}

/// Pretty JSON with a final newline, as the golden files are stored.
fn render(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("a JSON value serialises");
    s.push('\n');
    s
}

// ---------------------------------------------------------------------------
// A readable diff.

/// At most this many changed fields are listed.
const MAX_FIELDS: usize = 20;

/// One line per differing leaf, named by its path in the dump
/// (`snapshot.services[0].ports[0].producerRoutes[6].backends[0].weight: 90 → 80`),
/// so a change is located without counting lines.
fn changed_fields(want: &Value, got: &Value) -> String {
    let mut found = Vec::new();
    collect_changes(want, got, String::new(), &mut found);
    let total = found.len();
    let mut out: String = found
        .into_iter()
        .take(MAX_FIELDS)
        .map(|line| format!("  {line}\n"))
        .collect();
    if total > MAX_FIELDS {
        out += &format!("  … and {} more\n", total - MAX_FIELDS);
    }
    out
}

fn collect_changes(want: &Value, got: &Value, path: String, out: &mut Vec<String>) {
    let at = |path: &str| {
        if path.is_empty() {
            "(top)".to_string()
        } else {
            path.to_string()
        }
    };
    match (want, got) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let sub = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => collect_changes(x, y, sub, out),
                    (Some(x), None) => out.push(format!("{sub}: removed (was {x})")),
                    (None, Some(y)) => out.push(format!("{sub}: added {y}")),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                collect_changes(x, y, format!("{path}[{i}]"), out);
            }
        }
        (Value::Array(a), Value::Array(b)) => out.push(format!(
            "{}: {} entries → {} (see the lines below)",
            at(&path),
            a.len(),
            b.len()
        )),
        (x, y) if x != y => out.push(format!("{}: {x} → {y}", at(&path))),
        _ => {}
    }
}

/// Lines of context around each change.
const CONTEXT: usize = 3;

/// A unified-style diff of `want` → `got`: `-` golden, `+` now, with a few
/// lines of context and `@@ line N @@` headers (line numbers of `want`).
fn line_diff(want: &str, got: &str) -> String {
    let a: Vec<&str> = want.lines().collect();
    let b: Vec<&str> = got.lines().collect();
    let ops = diff_ops(&a, &b);

    // Which ops to print: every change and CONTEXT equal lines around it.
    let changed: Vec<bool> = ops.iter().map(|op| !matches!(op, Op::Same(..))).collect();
    let shown: Vec<bool> = (0..ops.len())
        .map(|i| {
            let lo = i.saturating_sub(CONTEXT);
            let hi = (i + CONTEXT + 1).min(ops.len());
            changed[lo..hi].iter().any(|c| *c)
        })
        .collect();

    let mut out = String::new();
    let mut prev_shown = false;
    for (i, op) in ops.iter().enumerate() {
        if !shown[i] {
            prev_shown = false;
            continue;
        }
        if !prev_shown {
            out += &format!("@@ line {} @@\n", op.line_in_want() + 1);
        }
        prev_shown = true;
        match op {
            Op::Same(ai) => out += &format!(" {}\n", a[*ai]),
            Op::Del(ai) => out += &format!("-{}\n", a[*ai]),
            Op::Add(bi, _) => out += &format!("+{}\n", b[*bi]),
        }
    }
    out
}

enum Op {
    /// Equal lines: index in `want`.
    Same(usize),
    /// Only in `want`.
    Del(usize),
    /// Only in `got`, before line `.1` of `want`.
    Add(usize, usize),
}

impl Op {
    fn line_in_want(&self) -> usize {
        match self {
            Op::Same(a) | Op::Del(a) | Op::Add(_, a) => *a,
        }
    }
}

/// Edit script from a longest common subsequence. The golden files are a few
/// thousand lines at most, so the quadratic table is fine; past that, report
/// the whole files as replaced rather than use a lot of memory.
fn diff_ops(a: &[&str], b: &[&str]) -> Vec<Op> {
    // Common prefix and suffix need no table.
    let pre = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suf = a[pre..]
        .iter()
        .rev()
        .zip(b[pre..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (am, bm) = (&a[pre..a.len() - suf], &b[pre..b.len() - suf]);

    let mut ops: Vec<Op> = (0..pre).map(Op::Same).collect();
    if am.len().saturating_mul(bm.len()) > 20_000_000 {
        ops.extend((0..am.len()).map(|i| Op::Del(pre + i)));
        ops.extend((0..bm.len()).map(|j| Op::Add(pre + j, pre + am.len())));
    } else {
        // lcs[i][j]: LCS length of am[i..] and bm[j..].
        let (n, m) = (am.len(), bm.len());
        let mut lcs = vec![0u32; (n + 1) * (m + 1)];
        let at = |i: usize, j: usize| i * (m + 1) + j;
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[at(i, j)] = if am[i] == bm[j] {
                    lcs[at(i + 1, j + 1)] + 1
                } else {
                    lcs[at(i + 1, j)].max(lcs[at(i, j + 1)])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && am[i] == bm[j] {
                ops.push(Op::Same(pre + i));
                i += 1;
                j += 1;
            } else if i < n && (j == m || lcs[at(i + 1, j)] >= lcs[at(i, j + 1)]) {
                // Deletions before insertions, as unified diffs show them.
                ops.push(Op::Del(pre + i));
                i += 1;
            } else {
                ops.push(Op::Add(pre + j, pre + i));
                j += 1;
            }
        }
    }
    let a_end = a.len() - suf;
    ops.extend((0..suf).map(|k| Op::Same(a_end + k)));
    ops
}
