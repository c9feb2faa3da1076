//! Per-request cost budgets of the plain path, counted, not timed: heap allocations (a
//! counting allocator in this test binary, the waypoint in-process) and syscalls by kind
//! (`strace -c` attached to the `waypoint` binary after warm-up). The job is the
//! benchmark's (`benches/waypoint-bench.yaml`): `end-user: jason` → v2, otherwise 90 % v1
//! / 10 % v2, over one keep-alive connection, one request at a time.
//!
//! The client and the two backends are plain threads that speak HTTP/1.1 from fixed
//! buffers and allocate nothing per request, so every allocation counted in the window is
//! the waypoint's. A regression that adds an allocation or a syscall per request fails
//! here; times stay in `benches/`.
//!
//! The figures are printed (`cargo test --test request_budget -- --nocapture`) for
//! BENCHMARKS.md's ledger.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use common::*;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Requests measured (after warm-up), and the budgets per request. The budgets sit a
/// little above what the code does today (see BENCHMARKS.md, "Cost ledger"); lower them
/// when the ledger improves.
const REQUESTS: u64 = 2000;
const WARMUP: u64 = 200;
const MAX_ALLOCS_PER_REQUEST: f64 = 82.0;
/// Most of it is Pingora's 64 KiB body buffer, allocated for every upstream response.
const MAX_ALLOC_BYTES_PER_REQUEST: f64 = 100_000.0;
/// One read of the request and one of the response.
const MAX_READS_PER_REQUEST: f64 = 2.05;
/// One write of the request upstream and one of the response (head and body together).
const MAX_WRITES_PER_REQUEST: f64 = 2.05;
/// None: Pingora's proxy checks every pooled upstream connection with `getpeername`
/// (`Peer::matches_fd`); the fast path's pool (`proxy/direct/pool.rs`) does not.
const MAX_GETPEERNAME_PER_REQUEST: f64 = 0.05;
/// Everything, `epoll_wait` included (two per request: the next request, the response),
/// but not [`BY_THE_CLOCK`].
const MAX_SYSCALLS_PER_REQUEST: f64 = 6.05;
/// Syscalls that come with time, not with requests: pingora-timeout's clock thread sleeps
/// in 10 ms steps.
const BY_THE_CLOCK: &[&str] = &["clock_nanosleep", "restart_syscall"];

const RESPONSE_V1: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-backend: v1\r\n\r\nv1";
const RESPONSE_V2: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-backend: v2\r\n\r\nv2";

/// A backend that answers every request on every connection with `response`, from
/// fixed buffers (no allocation per request).
fn raw_backend(addr: &str, response: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind(addr).expect("bind backend");
    let bound = listener.local_addr().expect("bound");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let _ = conn.set_nodelay(true);
                let mut buf = [0u8; 8192];
                let mut have = 0;
                loop {
                    match conn.read(&mut buf[have..]) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => have += n,
                    }
                    // One GET at a time: answer each complete head.
                    while let Some(end) = find(&buf[..have], b"\r\n\r\n") {
                        if conn.write_all(response).is_err() {
                            return;
                        }
                        buf.copy_within(end + 4..have, 0);
                        have -= end + 4;
                    }
                }
            });
        }
    });
    bound
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `content-length` of a response head, without allocating.
fn content_length(head: &[u8]) -> usize {
    for line in head.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if line[..colon].eq_ignore_ascii_case(b"content-length") {
            let value = line[colon + 1..].trim_ascii();
            return std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse().ok())
                .expect("numeric content-length");
        }
    }
    panic!("response without content-length");
}

/// Sends `n` requests on one keep-alive connection, one after another; returns how many
/// came from v2. Panics on anything but a 200.
fn client(waypoint: SocketAddr, n: u64, requests: &[&[u8]]) -> u64 {
    let mut conn = TcpStream::connect(waypoint).expect("connect to the waypoint");
    conn.set_nodelay(true).expect("nodelay");
    let mut buf = [0u8; 16384];
    let mut from_v2 = 0;
    for i in 0..n {
        conn.write_all(requests[i as usize % requests.len()])
            .expect("send request");
        let mut have = 0;
        let (head_end, body_len) = loop {
            let read = conn.read(&mut buf[have..]).expect("read response");
            assert!(read > 0, "waypoint closed the connection");
            have += read;
            if let Some(end) = find(&buf[..have], b"\r\n\r\n") {
                break (end + 4, content_length(&buf[..end]));
            }
        };
        while have < head_end + body_len {
            have += conn.read(&mut buf[have..]).expect("read body");
        }
        assert!(buf.starts_with(b"HTTP/1.1 200"), "status line");
        assert_eq!(have, head_end + body_len, "one response at a time");
        if &buf[head_end..have] == b"v2" {
            from_v2 += 1;
        }
    }
    from_v2
}

fn bench_job(v1: SocketAddr, v2: SocketAddr) -> String {
    let mut yaml = service("bench", "app", 9080, 9080, &["127.0.90.10"]);
    yaml += &service("bench", "v1", v1.port(), v1.port(), &[&v1.ip().to_string()]);
    yaml += &service("bench", "v2", v2.port(), v2.port(), &[&v2.ip().to_string()]);
    yaml += &format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: app, namespace: bench}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: app, port: 9080}}]\n  rules:\n  - matches: [{{headers: [{{name: end-user, value: jason}}]}}]\n    backendRefs: [{{name: v2, port: {}}}]\n  - backendRefs:\n    - {{name: v1, port: {}, weight: 90}}\n    - {{name: v2, port: {}, weight: 10}}\n",
        v2.port(),
        v1.port(),
        v2.port()
    );
    yaml
}

/// The routing job ran: every jason request and about a tenth of the rest went to v2.
fn assert_routed(from_v2: u64) {
    let jason = REQUESTS / 4;
    let rest = REQUESTS - jason;
    assert!(
        from_v2 > jason + rest / 20 && from_v2 < jason + rest / 5,
        "v2 answered {from_v2} of {REQUESTS}"
    );
}

const PLAIN: &[u8] = b"GET /ratings HTTP/1.1\r\nHost: app:9080\r\nuser-agent: budget\r\n\r\n";
const JASON: &[u8] =
    b"GET /ratings HTTP/1.1\r\nHost: app:9080\r\nuser-agent: budget\r\nend-user: jason\r\n\r\n";
const MIX: &[&[u8]] = &[PLAIN, PLAIN, PLAIN, JASON];

#[tokio::test(flavor = "current_thread")]
async fn the_plain_path_stays_within_its_allocation_budget() {
    let v1 = raw_backend("127.0.90.11:0", RESPONSE_V1);
    let v2 = raw_backend("127.0.90.12:0", RESPONSE_V2);
    let config = ConfigDir::new(&bench_job(v1, v2));
    let wp = waypoint(&config, "bench").await;
    let addr = wp.http_addr.expect("plain listener");

    // Warm-up: connections to both backends, pools and caches filled.
    let warm = tokio::task::spawn_blocking(move || client(addr, WARMUP, MIX));
    assert!(warm.await.expect("warm-up client") > 0);

    let (a0, b0) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    let run = tokio::task::spawn_blocking(move || client(addr, REQUESTS, MIX));
    let from_v2 = run.await.expect("client");
    let (a1, b1) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );

    assert_routed(from_v2);

    let per = |d: u64| d as f64 / REQUESTS as f64;
    let (allocs, bytes) = (per(a1 - a0), per(b1 - b0));
    println!("plain path per request: {allocs:.1} allocations, {bytes:.0} bytes allocated");
    assert!(
        allocs <= MAX_ALLOCS_PER_REQUEST,
        "{allocs:.1} allocations per request (budget {MAX_ALLOCS_PER_REQUEST})"
    );
    assert!(
        bytes <= MAX_ALLOC_BYTES_PER_REQUEST,
        "{bytes:.0} bytes allocated per request (budget {MAX_ALLOC_BYTES_PER_REQUEST})"
    );
    wp.shutdown().await;
}

/// A child process killed and reaped on drop (also when the test panics).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Forwards `child`'s stderr lines to a channel (and keeps draining it).
fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            let _ = tx.send(line);
        }
    });
    rx
}

/// Waits (bounded) for a line with `needle`.
fn wait_for_line(lines: &mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = std::time::Duration::from_secs(30);
    loop {
        match lines.recv_timeout(deadline) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(e) => panic!("no line with {needle:?}: {e}"),
        }
    }
}

/// `strace -c` table: calls per syscall.
fn strace_counts(table: &str) -> HashMap<String, u64> {
    table
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let calls = fields.get(3)?.parse().ok()?;
            let name = *fields.last()?;
            (name != "total").then(|| (name.to_string(), calls))
        })
        .collect()
}

#[test]
fn the_plain_path_stays_within_its_syscall_budget() {
    let v1 = raw_backend("127.0.91.11:0", RESPONSE_V1);
    let v2 = raw_backend("127.0.91.12:0", RESPONSE_V2);
    let config = ConfigDir::new(&bench_job(v1, v2));
    let mut child = Command::new(env!("CARGO_BIN_EXE_waypoint"))
        .arg("run")
        .arg("--config")
        .arg(config.path())
        .args(["--namespace", "bench", "--threads", "1"])
        .args([
            "--http-listen",
            "127.0.91.1:0",
            "--admin-listen",
            "127.0.91.1:0",
        ])
        .env("WAYPOINT_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the waypoint binary");
    let lines = stderr_lines(&mut child);
    let waypoint = Reaped(child);
    let line = wait_for_line(&lines, "plain HTTP listener accepting");
    let port = line
        .split("127.0.91.1:")
        .nth(1)
        .and_then(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u16>()
                .ok()
        })
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    let addr: SocketAddr = ([127, 0, 91, 1], port).into();
    assert!(client(addr, WARMUP, MIX) > 0);

    let out = tempfile::NamedTempFile::new().expect("temp file");
    let strace = Command::new("strace")
        .args(["-f", "-c", "-o"])
        .arg(out.path())
        .args(["-p", &waypoint.0.id().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let mut strace = match strace {
        Ok(child) => child,
        Err(e) => {
            panic!("strace is needed for this test (apt-get install strace; .ci/run does): {e}")
        }
    };
    let traced = stderr_lines(&mut strace);
    let strace = Reaped(strace);
    // A sandbox that forbids ptrace (a container without it) cannot count syscalls this
    // way: say so loudly instead of failing CI for the environment.
    let deadline = std::time::Duration::from_secs(30);
    loop {
        match traced.recv_timeout(deadline) {
            Ok(line) if line.contains("attached") => break,
            Ok(line) if line.contains("Operation not permitted") => {
                eprintln!("SKIPPED: ptrace is not permitted here, syscalls not counted: {line}");
                return;
            }
            Ok(_) => {}
            Err(e) => panic!("strace did not attach: {e}"),
        }
    }

    assert_routed(client(addr, REQUESTS, MIX));

    // SIGINT: strace detaches and writes its table.
    let status = Command::new("kill")
        .args(["-INT", &strace.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let mut strace = strace;
    strace.0.wait().expect("strace exits");
    let counts = strace_counts(&std::fs::read_to_string(out.path()).expect("strace table"));
    let per = |names: &[&str]| {
        names
            .iter()
            .map(|n| counts.get(*n).copied().unwrap_or(0))
            .sum::<u64>() as f64
            / REQUESTS as f64
    };
    let reads = per(&["read", "readv", "recvfrom", "recvmsg"]);
    let writes = per(&["write", "writev", "sendto", "sendmsg"]);
    let getpeername = per(&["getpeername"]);
    let total = counts
        .iter()
        .filter(|(name, _)| !BY_THE_CLOCK.contains(&name.as_str()))
        .map(|(_, n)| n)
        .sum::<u64>() as f64
        / REQUESTS as f64;
    let mut by_kind: Vec<_> = counts.iter().collect();
    by_kind.sort_by(|a, b| b.1.cmp(a.1));
    println!(
        "plain path syscalls per request: {total:.2} (without {BY_THE_CLOCK:?}); \
         {by_kind:?} over {REQUESTS} requests"
    );
    assert!(
        reads <= MAX_READS_PER_REQUEST,
        "{reads:.2} reads per request (budget {MAX_READS_PER_REQUEST}): {by_kind:?}"
    );
    assert!(
        writes <= MAX_WRITES_PER_REQUEST,
        "{writes:.2} writes per request (budget {MAX_WRITES_PER_REQUEST}): {by_kind:?}"
    );
    assert!(
        getpeername <= MAX_GETPEERNAME_PER_REQUEST,
        "{getpeername:.2} getpeername per request (budget {MAX_GETPEERNAME_PER_REQUEST})"
    );
    assert!(
        total <= MAX_SYSCALLS_PER_REQUEST,
        "{total:.2} syscalls per request (budget {MAX_SYSCALLS_PER_REQUEST}): {by_kind:?}"
    );
    drop(waypoint);
}
