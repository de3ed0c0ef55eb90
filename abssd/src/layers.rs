//! The crate's layering, checked from its source: modules import only
//! downward. No two modules reach each other in a loop (a child that needs
//! something of its parent's means that something belongs in a sibling), and
//! nothing below [`crate::ops`] imports from it. A test, so that a shortcut
//! shows up at once rather than in a newcomer's first read.
//!
//! The graph is read from the text: every `use` tree and every path spelled
//! from `crate::`, `super::`, `self::` or a child module's name, each resolved
//! to the deepest module it names. Unit-test modules are left out (they sit
//! inside what they test).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Modules allowed to import from `ops`: the layers that run operations.
const ABOVE_OPS: &[&str] = &["cli", "rpc", "recovery", "optable"];

type Module = Vec<String>;

/// Every module of the crate and the source of its file.
fn modules(src: &Path) -> BTreeMap<Module, String> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut module: Module = rel
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            // The binary's root, and this checker (its fixtures name `ops`).
            if rel == Path::new("main") || rel == Path::new("layers") {
                continue;
            }
            if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                module.pop();
            }
            found.insert(module, std::fs::read_to_string(&path).unwrap());
        }
    }
    found
}

/// The source without comments and without its unit tests.
fn code(source: &str) -> String {
    let mut out = String::new();
    for line in source.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            break;
        }
        out.push_str(line.split("//").next().unwrap_or(""));
        out.push('\n');
    }
    out
}

/// `a::{b, c::{d, e}}` as `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.to_owned()];
    };
    let close = tree.rfind('}').filter(|&c| c > open).unwrap_or(tree.len());
    let (prefix, body) = (&tree[..open], &tree[open + 1..close]);
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
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
        .flat_map(|p| expand(p).into_iter().map(|e| format!("{prefix}{e}")))
        .collect()
}

/// Paths spelled in `code`: from `use` trees, and `crate::…`/`super::…`/
/// `self::…`/`<child>::…` anywhere.
fn paths(code: &str, children: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = find_word(rest, "use") {
        let after = &rest[at + 3..];
        let Some(end) = after.find(';') else { break };
        out.extend(expand(&after[..end]));
        rest = &after[end..];
    }
    let words: Vec<&str> = code
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        // `super::{a, b}` leaves a bare `super::` here; the `use` trees
        // above have its paths.
        .filter(|w| w.contains("::") && !w.ends_with("::"))
        .collect();
    out.extend(words.into_iter().map(str::to_owned));
    out.into_iter()
        .map(|p| {
            let p = p.split(" as ").next().unwrap_or("").trim().to_owned();
            match p.split("::").next() {
                Some(first) if children.contains(first) => format!("self::{p}"),
                _ => p,
            }
        })
        .collect()
}

/// Where `word` stands alone in `text`.
fn find_word(text: &str, word: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = text[from..].find(word).map(|i| i + from) {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        if !ident(before) && after.is_some_and(char::is_whitespace) {
            return Some(i);
        }
        from = i + word.len();
    }
    None
}

/// Module → the modules it imports from.
fn graph(src: &Path) -> BTreeMap<Module, BTreeSet<Module>> {
    let modules = modules(src);
    let resolve = |path: &[String]| -> Module {
        (0..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|m| modules.contains_key(m))
            .unwrap_or_default()
    };
    let mut edges = BTreeMap::new();
    for (module, source) in &modules {
        let code = code(source);
        let children: BTreeSet<String> = code
            .lines()
            .filter_map(|l| {
                let l = l.trim();
                let l = l.strip_prefix("pub ").unwrap_or(l);
                let l = l.strip_prefix("pub(crate) ").unwrap_or(l);
                l.strip_prefix("mod ")?.strip_suffix(';').map(str::to_owned)
            })
            .collect();
        let mut to = BTreeSet::new();
        for path in paths(&code, &children) {
            let mut segments = path.split("::").filter(|s| !s.is_empty());
            let mut base: Module = match segments.next() {
                Some("crate") => Vec::new(),
                Some("self") => module.clone(),
                Some("super") => module[..module.len().saturating_sub(1)].to_vec(),
                _ => continue,
            };
            let mut segments = segments.peekable();
            while segments.peek() == Some(&"super") {
                segments.next();
                base.pop();
            }
            base.extend(segments.map(str::to_owned));
            let target = resolve(&base);
            if &target != module && !target.is_empty() {
                to.insert(target);
            }
        }
        edges.insert(module.clone(), to);
    }
    edges
}

/// The loops of the graph (its strongly connected components of more than
/// one module), each with its edges.
fn loops(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<String>> {
    let name = |m: &Module| m.join("::");
    let reach = |from: &Module| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(m) = todo.pop() {
            for next in edges.get(&m).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let mut reported = BTreeSet::new();
    let mut out = Vec::new();
    for (a, targets) in edges {
        for b in targets {
            if reach(b).contains(a) && reported.insert((a.clone(), b.clone())) {
                out.push(vec![format!("{} -> {}", name(a), name(b))]);
            }
        }
    }
    out
}

#[test]
fn modules_import_only_downward() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = graph(&src);
    let looping: Vec<String> = loops(&edges).into_iter().flatten().collect();
    assert!(
        looping.is_empty(),
        "imports that are part of a loop (move what both sides need into a module below them):\n  {}",
        looping.join("\n  ")
    );
    let upward: Vec<String> = edges
        .iter()
        .filter(|(from, _)| {
            from.first()
                .is_some_and(|top| top != "ops" && !ABOVE_OPS.contains(&top.as_str()))
        })
        .flat_map(|(from, to)| {
            to.iter()
                .filter(|m| m.first().is_some_and(|t| t == "ops"))
                .map(move |m| format!("{} -> {}", from.join("::"), m.join("::")))
        })
        .collect();
    assert!(
        upward.is_empty(),
        "modules below `ops` that import from it:\n  {}",
        upward.join("\n  ")
    );
}

#[test]
fn the_checker_sees_a_loop_and_an_upward_import() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("ops")).unwrap();
    std::fs::create_dir_all(src.join("archive")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod ops;\nmod archive;\n").unwrap();
    std::fs::write(
        src.join("ops/mod.rs"),
        "mod restore;\npub struct Job;\nfn run() { restore::go() }\n",
    )
    .unwrap();
    std::fs::write(
        src.join("ops/restore.rs"),
        "use super::Job;\npub fn go() {}\n",
    )
    .unwrap();
    std::fs::write(
        src.join("archive/mod.rs"),
        "use crate::ops::{Job, restore::go};\n",
    )
    .unwrap();
    let edges = graph(src);
    let looping: Vec<String> = loops(&edges).into_iter().flatten().collect();
    assert_eq!(looping, ["ops -> ops::restore", "ops::restore -> ops"]);
    let archive = &edges[&vec!["archive".to_owned()]];
    assert!(archive.contains(&vec!["ops".to_owned()]), "{archive:?}");
    assert!(archive.contains(&vec!["ops".to_owned(), "restore".to_owned()]));
}
