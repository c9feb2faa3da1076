//! The layering rule, checked: no two files in `src/` import each other, directly or round
//! a longer loop (house style, "Layers, not a web").
//!
//! Owns a small, std-only reader of Rust source that draws file → file arrows from
//! `use crate::…`, `use super::…`, `use self::…` (grouped trees included) and from inline
//! paths in code (`crate::hbone::proxy_protocol::read_proxy_v2(…)`, `super::x::f()`). An
//! arrow ends at the deepest file that exists for the path, so an item of `foo.rs`, or one
//! `foo.rs` re-exports, is an arrow to `foo.rs`. It does not own Rust's name resolution:
//! uniform paths (`use child::Item;` in a parent) and `mod child;` declarations are not
//! arrows, and anything under `#[cfg(test)]` (the `tests.rs` files, `*/tests/*`, inline
//! `mod tests { … }`) is skipped, because test code may reach anywhere. It needs no build
//! of the crate and reads the whole tree in a few milliseconds.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[test]
fn src_has_no_import_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = Graph::read_dir(&src);
    // A reader that silently found nothing would pass; the crate has hundreds of arrows.
    assert!(
        graph.arrow_count() > 100,
        "BUG: only {} import arrows found under {}; is the reader broken?",
        graph.arrow_count(),
        src.display()
    );

    let cycles: Vec<String> = graph.cycles().iter().map(|c| format_cycle(c)).collect();
    let mut report = String::new();
    for cycle in &cycles {
        let _ = writeln!(report, "  {cycle}");
    }
    assert!(
        cycles.is_empty(),
        "import cycles in src/ (a module may only use modules below it; move the shared \
         item to a third, lower file):\n{report}"
    );
}

/// `a.rs -> b.rs -> a.rs`, starting at the file that sorts first.
fn format_cycle(files: &[String]) -> String {
    let mut out = files.join(" -> ");
    out.push_str(" -> ");
    out.push_str(&files[0]);
    out
}

// ---------------------------------------------------------------------------------------
// The graph.

/// Files (relative to `src/`, `/`-separated) and the files each one imports.
struct Graph {
    arrows: BTreeMap<String, BTreeSet<String>>,
}

impl Graph {
    /// Reads every `*.rs` under `src` except `main.rs` (a separate crate that reaches the
    /// library as `waypoint::…`) and test-only files.
    fn read_dir(src: &Path) -> Graph {
        let mut sources = Vec::new();
        collect_rs(src, src, &mut sources);
        let sources: Vec<(String, String)> = sources
            .into_iter()
            .filter(|(rel, _)| rel != "main.rs")
            .map(|(rel, path)| {
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
                (rel, text)
            })
            .collect();
        Graph::from_sources(&sources)
    }

    /// Builds the graph from `(path relative to src/, contents)` pairs.
    fn from_sources(sources: &[(String, String)]) -> Graph {
        let modules: BTreeMap<Vec<String>, String> = sources
            .iter()
            .map(|(rel, _)| (module_of(rel), rel.clone()))
            .collect();

        let mut parsed = Vec::new();
        let mut test_modules: Vec<Vec<String>> = Vec::new();
        for (rel, text) in sources {
            let module = module_of(rel);
            let file = parse_file(&module, text);
            if file.test_only {
                test_modules.push(module.clone());
            }
            test_modules.extend(file.test_children.iter().cloned());
            parsed.push((rel.clone(), module, file));
        }
        let is_test = |rel: &str, module: &[String]| {
            rel.ends_with("/tests.rs")
                || rel == "tests.rs"
                || rel.split('/').rev().skip(1).any(|dir| dir == "tests")
                || test_modules.iter().any(|t| module.starts_with(t))
        };

        let mut arrows: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (rel, module, file) in &parsed {
            if is_test(rel, module) {
                continue;
            }
            let targets = arrows.entry(rel.clone()).or_default();
            for path in &file.paths {
                let Some(to) = deepest_file(&modules, path) else {
                    continue;
                };
                let to_module = module_of(to);
                if to != rel && !is_test(to, &to_module) {
                    targets.insert(to.clone());
                }
            }
        }
        Graph { arrows }
    }

    fn arrow_count(&self) -> usize {
        self.arrows.values().map(BTreeSet::len).sum()
    }

    /// Every elementary cycle, each starting at its smallest file.
    fn cycles(&self) -> Vec<Vec<String>> {
        let names: Vec<&String> = self.arrows.keys().collect();
        let index: BTreeMap<&String, usize> =
            names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let succ: Vec<Vec<usize>> = names
            .iter()
            .map(|n| {
                self.arrows[*n]
                    .iter()
                    .filter_map(|t| index.get(t).copied())
                    .collect()
            })
            .collect();
        let scc = strongly_connected(&succ);

        // Per start node `s` (in order), walk only nodes after `s` in its component, so each
        // cycle is found once, from its smallest node.
        let mut cycles = Vec::new();
        for s in 0..names.len() {
            let mut path = vec![s];
            let mut on_path = vec![false; names.len()];
            on_path[s] = true;
            walk(s, s, &succ, &scc, &mut path, &mut on_path, &mut cycles);
        }
        cycles
            .into_iter()
            .map(|c| c.into_iter().map(|i| names[i].clone()).collect())
            .collect()
    }
}

fn walk(
    start: usize,
    at: usize,
    succ: &[Vec<usize>],
    scc: &[usize],
    path: &mut Vec<usize>,
    on_path: &mut [bool],
    out: &mut Vec<Vec<usize>>,
) {
    for &next in &succ[at] {
        if next == start {
            out.push(path.clone());
        } else if next > start && scc[next] == scc[start] && !on_path[next] {
            path.push(next);
            on_path[next] = true;
            walk(start, next, succ, scc, path, on_path, out);
            on_path[next] = false;
            path.pop();
        }
    }
}

/// Tarjan's algorithm: the component id of each node.
fn strongly_connected(succ: &[Vec<usize>]) -> Vec<usize> {
    struct State<'a> {
        succ: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next_index: usize,
        comp: Vec<usize>,
        next_comp: usize,
    }
    fn visit(st: &mut State<'_>, v: usize) {
        st.index[v] = Some(st.next_index);
        st.low[v] = st.next_index;
        st.next_index += 1;
        st.stack.push(v);
        st.on_stack[v] = true;
        for i in 0..st.succ[v].len() {
            let w = st.succ[v][i];
            match st.index[w] {
                None => {
                    visit(st, w);
                    st.low[v] = st.low[v].min(st.low[w]);
                }
                Some(iw) if st.on_stack[w] => st.low[v] = st.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(st.low[v]) == st.index[v] {
            loop {
                let w = st.stack.pop().expect("v is on the stack");
                st.on_stack[w] = false;
                st.comp[w] = st.next_comp;
                if w == v {
                    break;
                }
            }
            st.next_comp += 1;
        }
    }
    let n = succ.len();
    let mut st = State {
        succ,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        next_index: 0,
        comp: vec![0; n],
        next_comp: 0,
    };
    for v in 0..n {
        if st.index[v].is_none() {
            visit(&mut st, v);
        }
    }
    st.comp
}

fn collect_rs(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            collect_rs(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).expect("under root");
            let rel = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.push((rel, path));
        }
    }
}

/// `lib.rs` → `[]`; `hbone/stream.rs` → `[hbone, stream]` (the `foo.rs` + `foo/` layout).
fn module_of(rel: &str) -> Vec<String> {
    if rel == "lib.rs" {
        return Vec::new();
    }
    rel.trim_end_matches(".rs")
        .split('/')
        .map(str::to_string)
        .collect()
}

/// The file of the longest prefix of `path` that is a module: an item's own file.
fn deepest_file<'a>(
    modules: &'a BTreeMap<Vec<String>, String>,
    path: &[String],
) -> Option<&'a String> {
    (0..=path.len()).rev().find_map(|k| modules.get(&path[..k]))
}

// ---------------------------------------------------------------------------------------
// Reading one file.

/// What one file says about its imports.
#[derive(Debug, Default, PartialEq)]
struct FileImports {
    /// Absolute module paths (without `crate`) used by non-test code.
    paths: Vec<Vec<String>>,
    /// Child modules declared `#[cfg(test)] mod x;`, as absolute paths.
    test_children: Vec<Vec<String>>,
    /// The file starts with `#![cfg(test)]`.
    test_only: bool,
}

/// Reads the imports of the file for `module` (`[]` for `lib.rs`).
fn parse_file(module: &[String], text: &str) -> FileImports {
    let toks = tokenize(text);
    let mut out = FileImports::default();
    // Inline (non-test) `mod name { … }` blocks, with the brace depth they close at.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    let current = |inline: &[(String, usize)]| -> Vec<String> {
        let mut m = module.to_vec();
        m.extend(inline.iter().map(|(n, _)| n.clone()));
        m
    };
    while i < toks.len() {
        if is_attr(&toks, i, &["#", "!", "[", "cfg", "(", "test", ")", "]"]) {
            out.test_only = true;
            return out;
        }
        if is_attr(&toks, i, &["#", "[", "cfg", "(", "test", ")", "]"]) {
            i = skip_cfg_test_item(&toks, i + 7, &current(&inline), &mut out.test_children);
            continue;
        }
        match toks[i].as_str() {
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            "mod" if tok(&toks, i + 2) == "{" => {
                inline.push((toks[i + 1].clone(), depth));
                depth += 1;
                i += 3;
                continue;
            }
            "use" => {
                let mut trees = Vec::new();
                i += 1;
                use_tree(&toks, &mut i, Vec::new(), &mut trees);
                let here = current(&inline);
                out.paths
                    .extend(trees.iter().filter_map(|p| resolve(&here, p)));
                continue;
            }
            "crate" | "super" | "self"
                if tok(&toks, i + 1) == "::" && !matches!(prev(&toks, i), "::" | "$") =>
            {
                let mut path = Vec::new();
                while is_ident(tok(&toks, i)) {
                    path.push(toks[i].clone());
                    if tok(&toks, i + 1) == "::" && is_ident(tok(&toks, i + 2)) {
                        i += 2;
                    } else {
                        break;
                    }
                }
                i += 1;
                if let Some(p) = resolve(&current(&inline), &path) {
                    out.paths.push(p);
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

fn tok(toks: &[String], i: usize) -> &str {
    toks.get(i).map_or("", String::as_str)
}

fn prev(toks: &[String], i: usize) -> &str {
    if i == 0 {
        ""
    } else {
        &toks[i - 1]
    }
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

fn is_attr(toks: &[String], i: usize, pattern: &[&str]) -> bool {
    pattern
        .iter()
        .enumerate()
        .all(|(k, p)| tok(toks, i + k) == *p)
}

/// Skips the item after a `#[cfg(test)]` (further attributes included) and returns the
/// index after it. A `mod name;` item is recorded as a test-only child of `module`.
fn skip_cfg_test_item(
    toks: &[String],
    mut i: usize,
    module: &[String],
    test_children: &mut Vec<Vec<String>>,
) -> usize {
    while tok(toks, i) == "#" && tok(toks, i + 1) == "[" {
        i = skip_group(toks, i + 1);
    }
    let item_start = i;
    let mut depth = 0usize;
    while i < toks.len() {
        match toks[i].as_str() {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" => depth = depth.saturating_sub(1),
            "}" => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + 1;
                }
            }
            ";" if depth == 0 => {
                let words: Vec<&str> = toks[item_start..i].iter().map(String::as_str).collect();
                if let Some(pos) = words.iter().position(|w| *w == "mod") {
                    if let Some(name) = words.get(pos + 1) {
                        let mut child = module.to_vec();
                        child.push(name.to_string());
                        test_children.push(child);
                    }
                }
                return i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    i
}

/// From an opening bracket at `i`, the index after its matching close.
fn skip_group(toks: &[String], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < toks.len() {
        match toks[i].as_str() {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    i
}

/// Reads one use tree starting at `i`, appending each full path (`prefix` + segments) to
/// `out`: `a::{b, c::{d, self}}` gives `a::b`, `a::c::d`, `a::c::self`. Stops after the
/// closing `;` at the top level, or before `,`/`}` inside a group.
fn use_tree(toks: &[String], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    while *i < toks.len() {
        let t = toks[*i].as_str();
        match t {
            "::" => *i += 1,
            "as" => *i += 2,
            "*" => *i += 1,
            "{" => {
                *i += 1;
                while *i < toks.len() && toks[*i] != "}" {
                    use_tree(toks, i, path.clone(), out);
                    if tok(toks, *i) == "," {
                        *i += 1;
                    }
                }
                *i += 1;
                if tok(toks, *i) == ";" {
                    *i += 1;
                }
                return;
            }
            ";" => {
                *i += 1;
                break;
            }
            "," | "}" => break,
            _ if is_ident(t) => {
                path.push(t.to_string());
                *i += 1;
            }
            _ => *i += 1,
        }
    }
    if !path.is_empty() {
        out.push(path);
    }
}

/// Turns a path as written in `module` into an absolute module path, if it starts with
/// `crate`, `super` or `self`; other paths name other crates (or are uniform paths, which
/// the checker leaves alone).
fn resolve(module: &[String], path: &[String]) -> Option<Vec<String>> {
    let (first, rest) = path.split_first()?;
    let mut abs = match first.as_str() {
        "crate" => Vec::new(),
        "self" => module.to_vec(),
        "super" => {
            let mut m = module.to_vec();
            m.pop();
            m
        }
        _ => return None,
    };
    for seg in rest {
        match seg.as_str() {
            "self" => {}
            "super" => {
                abs.pop();
            }
            _ => abs.push(seg.clone()),
        }
    }
    Some(abs)
}

/// Splits Rust source into identifiers, `::` and single punctuation characters, dropping
/// comments, string/char literals, lifetimes and numbers (none of which can name a file).
fn tokenize(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut nest = 0;
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == '*' {
                    nest += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    nest -= 1;
                    i += 2;
                    if nest == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == '"' {
            i = skip_string(&chars, i + 1);
        } else if c == '\'' {
            // A char literal ('a', '\n', '\u{1F600}') or a lifetime ('a, 'static).
            if at(i + 1) == '\\' {
                // Skip the quote, the backslash and the escaped character ('\'' included).
                i += 3;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                i += 1;
                while at(i).is_alphanumeric() || at(i) == '_' {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit() {
            while at(i).is_alphanumeric() || at(i) == '_' {
                i += 1;
            }
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while at(i).is_alphanumeric() || at(i) == '_' {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            match (word.as_str(), at(i)) {
                // Raw strings: r"…", r#"…"#, br"…", cr#"…"#.
                ("r" | "br" | "cr", '"' | '#') => {
                    if at(i) == '#' && (at(i + 1).is_alphabetic() || at(i + 1) == '_') {
                        // r#ident: a raw identifier.
                        i += 1;
                        continue;
                    }
                    let mut hashes = 0;
                    while at(i) == '#' {
                        hashes += 1;
                        i += 1;
                    }
                    i += 1; // the opening quote
                    loop {
                        if i >= chars.len() {
                            break;
                        }
                        if chars[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#') {
                            i += 1 + hashes;
                            break;
                        }
                        i += 1;
                    }
                }
                ("b" | "c", '"') => i = skip_string(&chars, i + 1),
                ("b", '\'') => {
                    i += 1;
                    if at(i) == '\\' {
                        i += 1;
                    }
                    i += 1;
                    while i < chars.len() && chars[i] != '\'' {
                        i += 1;
                    }
                    i += 1;
                }
                _ => toks.push(word),
            }
        } else if c == ':' && at(i + 1) == ':' {
            toks.push("::".to_string());
            i += 2;
        } else {
            toks.push(c.to_string());
            i += 1;
        }
    }
    toks
}

/// From just after an opening `"`, the index after the closing one.
fn skip_string(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

// ---------------------------------------------------------------------------------------
// The reader, on small strings.

#[cfg(test)]
mod reader {
    use super::*;

    fn m(s: &str) -> Vec<String> {
        if s.is_empty() {
            return Vec::new();
        }
        s.split("::").map(str::to_string).collect()
    }

    fn paths(module: &str, text: &str) -> Vec<String> {
        parse_file(&m(module), text)
            .paths
            .iter()
            .map(|p| p.join("::"))
            .collect()
    }

    fn graph(files: &[(&str, &str)]) -> Graph {
        let sources: Vec<(String, String)> = files
            .iter()
            .map(|(r, t)| (r.to_string(), t.to_string()))
            .collect();
        Graph::from_sources(&sources)
    }

    #[test]
    fn use_crate_super_and_self() {
        let text =
            "use crate::a::B;\nuse super::c::D as E;\npub(crate) use self::f::*;\nuse std::io;";
        assert_eq!(paths("x::y", text), ["a::B", "x::c::D", "x::y::f"]);
    }

    #[test]
    fn grouped_use_over_several_lines() {
        let text =
            "use crate::{\n    a::B,\n    c::{d, e::{self, F}},\n};\nuse super::{self as p, g};";
        assert_eq!(
            paths("x::y", text),
            ["a::B", "c::d", "c::e", "c::e::F", "x", "x::g"]
        );
    }

    #[test]
    fn inline_paths_in_code() {
        let text = "fn f() { let h = crate::hbone::proxy_protocol::read_proxy_v2(&mut s); \
                    super::pingora_io::next_stream_id(); Self::new(); \
                    let v: Vec<crate::a::B<T>> = vec![]; }";
        assert_eq!(
            paths("hbone::stream", text),
            [
                "hbone::proxy_protocol::read_proxy_v2",
                "hbone::pingora_io::next_stream_id",
                "a::B"
            ]
        );
    }

    #[test]
    fn comments_strings_and_visibility_are_not_paths() {
        let text = r####"
            //! See crate::a::B.
            /* use crate::c::D; /* nested crate::e */ */
            pub(crate) fn f() -> &'static str { let _c = '"'; let _e = '\''; let _q = b'\''; "crate::g::H" }
            const R: &str = r#"use crate::i::J;"#;
            macro_rules! m { () => { $crate::k::L } }
        "####;
        assert!(paths("x", text).is_empty(), "{:?}", paths("x", text));
    }

    #[test]
    fn cfg_test_blocks_are_skipped() {
        let text = "use crate::a::B;\n#[cfg(test)]\nmod tests {\n    use crate::c::D;\n    fn f() { crate::e::f(); }\n}\n#[cfg(test)]\nmod support;\nfn g() { crate::h::i(); }";
        let file = parse_file(&m("x"), text);
        let got: Vec<String> = file.paths.iter().map(|p| p.join("::")).collect();
        assert_eq!(got, ["a::B", "h::i"]);
        assert_eq!(file.test_children, [m("x::support")]);
    }

    #[test]
    fn inline_modules_shift_super() {
        let text = "pub mod annotations { use super::Thing; }\nuse super::Other;";
        assert_eq!(paths("a::b", text), ["a::b::Thing", "a::Other"]);
    }

    #[test]
    fn arrows_end_at_the_deepest_file() {
        let g = graph(&[
            ("lib.rs", "pub mod foo; pub mod bar;"),
            ("foo.rs", "mod inner; pub use inner::Bar;"),
            ("foo/inner.rs", "pub struct Bar;"),
            (
                "bar.rs",
                "use crate::foo::Bar; fn f() { crate::foo::inner::g(); }",
            ),
        ]);
        assert_eq!(
            g.arrows["bar.rs"],
            ["foo.rs", "foo/inner.rs"].map(String::from).into()
        );
        assert!(
            g.arrows["lib.rs"].is_empty(),
            "mod declarations are not arrows"
        );
        assert!(
            g.arrows["foo.rs"].is_empty(),
            "uniform paths are not arrows"
        );
    }

    #[test]
    fn cycles_are_listed_once_from_the_smallest_file() {
        let g = graph(&[
            ("a.rs", "use crate::b::X;"),
            ("b.rs", "use crate::c::Y; use crate::a::Z;"),
            ("c.rs", "use crate::a::W;"),
            ("d.rs", "use crate::a::W;"),
        ]);
        let cycles: Vec<String> = g.cycles().iter().map(|c| format_cycle(c)).collect();
        assert_eq!(
            cycles,
            ["a.rs -> b.rs -> a.rs", "a.rs -> b.rs -> c.rs -> a.rs"]
        );
    }

    #[test]
    fn test_files_are_ignored() {
        let g = graph(&[
            ("a.rs", "#[cfg(test)] mod tests; #[cfg(test)] mod fake;"),
            ("a/tests.rs", "use crate::b::X;"),
            ("a/fake.rs", "use crate::b::X;"),
            ("a/tests/more.rs", "use crate::b::X;"),
            ("b.rs", "use crate::a::Y;"),
        ]);
        assert!(g.cycles().is_empty());
        assert!(!g.arrows.contains_key("a/fake.rs"));
    }
}
