//! The image: a locked release build, run by a non-root user.

use super::read;

/// A Dockerfile's instructions (continuation lines joined), per stage.
fn stages(text: &str) -> Vec<Vec<(String, String)>> {
    let mut joined = Vec::new();
    let mut line = String::new();
    for raw in text.lines() {
        let t = raw.trim();
        if line.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => line.push_str(&format!("{part} ")),
            None => {
                line.push_str(t);
                joined.push(std::mem::take(&mut line));
            }
        }
    }
    let mut out: Vec<Vec<(String, String)>> = Vec::new();
    for l in joined {
        let (op, rest) = l.split_once(' ').unwrap_or((&l, ""));
        let op = op.to_ascii_uppercase();
        if op == "FROM" {
            out.push(Vec::new());
        }
        out.last_mut()
            .expect("an instruction before the first FROM")
            .push((op, rest.trim().to_owned()));
    }
    out
}

#[test]
fn dockerfile_builds_locked_and_runs_as_non_root() {
    let stages = stages(&read("deploy/Dockerfile"));
    assert!(stages.len() >= 2, "not multi-stage");
    let get = |stage: &[(String, String)], op: &str| -> Vec<String> {
        stage
            .iter()
            .filter(|(o, _)| o == op)
            .map(|(_, r)| r.clone())
            .collect()
    };
    let builder = &stages[0];
    let runtime = stages.last().expect("runtime stage");
    assert!(
        get(builder, "RUN")
            .iter()
            .any(|r| r.contains("cargo build --release --locked")),
        "builder does not build --release --locked"
    );
    // The binary links glibc: build on the runtime's Debian release.
    let base = |stage: &[(String, String)]| get(stage, "FROM")[0].clone();
    assert!(
        base(builder).contains("bookworm"),
        "builder {}",
        base(builder)
    );
    assert!(
        base(runtime).contains("debian12"),
        "runtime {}",
        base(runtime)
    );

    let users = get(runtime, "USER");
    let user = users.last().expect("runtime stage sets no USER");
    let name = user.split(':').next().expect("user");
    assert!(!matches!(name, "root" | "0" | ""), "runtime runs as {user}");
    assert_eq!(
        get(runtime, "ENTRYPOINT"),
        [r#"["/usr/local/bin/waypoint"]"#]
    );

    let ignore = read(".dockerignore");
    assert!(ignore
        .lines()
        .any(|l| l.trim().trim_end_matches('/') == "target"));
}
