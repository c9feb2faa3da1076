//! The house rule "no two files import each other", checked for `routing/`
//! and `upstream/` from the source itself: a file imports another when one of
//! its `use` trees or inline `crate::`/`super::`/`self::` paths resolves into
//! that file's module (the deepest module on the path that is a file). A
//! `mod x;` line is not an import; test files (`tests.rs`, `tests/`,
//! `test_support.rs`) are left out, since they only import what they test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use regex::Regex;

/// Module path (`["routing", "table", "rule"]`) → source text.
type Files = BTreeMap<Vec<String>, String>;

fn read_tree(dir: &Path, prefix: &[String], out: &mut Files) {
    let entries = std::fs::read_dir(dir).expect("src/ is readable");
    for entry in entries {
        let path = entry.expect("directory entry").path();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("UTF-8 file name")
            .to_string();
        let mut module = prefix.to_vec();
        if path.is_dir() {
            module.push(name);
            read_tree(&path, &module, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            if name != "lib" && name != "main" {
                module.push(name);
            }
            let text = std::fs::read_to_string(&path).expect("source is readable");
            out.insert(module, text);
        }
    }
}

fn is_test(module: &[String]) -> bool {
    module.iter().any(|m| m == "tests" || m == "test_support")
}

/// Source without comments and without an inline `#[cfg(test)] mod … {}`.
fn code(text: &str) -> String {
    let line_comments = Regex::new(r"//[^\n]*").expect("valid regex");
    let block_comments = Regex::new(r"(?s)/\*.*?\*/").expect("valid regex");
    let inline_tests = Regex::new(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{").expect("valid regex");
    let text = line_comments.replace_all(text, "");
    let text = block_comments.replace_all(&text, "");
    match inline_tests.find(&text) {
        Some(m) => text[..m.start()].to_string(),
        None => text.into_owned(),
    }
}

/// `a::{b, c::{d as e}}` → `a::b`, `a::c::d`.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or(tree).trim();
        return vec![path.to_string()];
    };
    let head = &tree[..open];
    let body = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in body.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&body[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(expand)
        .map(|p| match p.as_str() {
            "self" => head.trim_end_matches(':').to_string(),
            _ => format!("{head}{p}"),
        })
        .collect()
}

/// The file module `path` (written in `module`) points into.
fn resolve(files: &Files, module: &[String], path: &str) -> Option<Vec<String>> {
    let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let first = *segs.first()?;
    let (mut cur, rest): (Vec<String>, &[&str]) = match first {
        "crate" => (Vec::new(), &segs[1..]),
        "super" | "self" => {
            let mut base = module.to_vec();
            let n = segs
                .iter()
                .take_while(|s| **s == "super" || **s == "self")
                .count();
            for s in &segs[..n] {
                if *s == "super" {
                    base.pop();
                }
            }
            (base, &segs[n..])
        }
        child => {
            // `use child::x` names a child module of this file.
            let mut c = module.to_vec();
            c.push(child.to_string());
            if !files.contains_key(&c) {
                return None;
            }
            (module.to_vec(), &segs[..])
        }
    };
    for s in rest {
        cur.push((*s).to_string());
        if !files.contains_key(&cur) {
            cur.pop();
            break;
        }
    }
    Some(cur)
}

fn imports(files: &Files, module: &[String], text: &str) -> BTreeSet<Vec<String>> {
    let uses = Regex::new(r"\buse\s+([^;]+);").expect("valid regex");
    let inline = Regex::new(r"\b((?:crate|super|self)(?:::\w+)+)").expect("valid regex");
    let code = code(text);
    let paths = uses
        .captures_iter(&code)
        .flat_map(|c| expand(&c[1]))
        .chain(inline.captures_iter(&code).map(|c| c[1].to_string()));
    paths
        .filter_map(|p| resolve(files, module, &p))
        .filter(|t| t.as_slice() != module && !is_test(t))
        .collect()
}

#[test]
fn routing_and_upstream_files_do_not_import_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Files::new();
    read_tree(&src, &[], &mut files);
    let in_scope = |m: &[String]| {
        !is_test(m) && matches!(m.first().map(String::as_str), Some("routing" | "upstream"))
    };
    let graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = files
        .iter()
        .filter(|(m, _)| in_scope(m))
        .map(|(m, text)| {
            let targets = imports(&files, m, text)
                .into_iter()
                .filter(|t| in_scope(t))
                .collect();
            (m.clone(), targets)
        })
        .collect();
    assert!(graph.len() > 40, "found only {} files", graph.len());
    // A file reaches itself through its imports exactly when it is on a cycle.
    let mut cycles = Vec::new();
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&Vec<String>> = graph[start].iter().collect();
        while let Some(m) = stack.pop() {
            if m == start {
                cycles.push(start.join("/"));
                break;
            }
            if seen.insert(m) {
                stack.extend(graph.get(m).into_iter().flatten());
            }
        }
    }
    assert!(cycles.is_empty(), "files on an import cycle: {cycles:?}");
}
