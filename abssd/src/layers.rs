//! The crate's layering, checked from its source: modules import only
//! downward. No two modules reach each other in a loop (a child that needs
//! something of its parent's means that something belongs in a sibling), and
//! nothing below [`crate::ops`] imports from it. A test, so that a shortcut
//! shows up at once rather than in a newcomer's first read.
//!
//! The graph is read from the text: every `use` tree and every path spelled
//! from `crate::`, `super::`, `self::` or a child module's name, each resolved
//! to the deepest module it names; a name the crate root re-exports counts as
//! the module it comes from. What `#[cfg(test)]` marks is left out (unit tests
//! sit inside what they test). Not seen: paths built by macros from pieces,
//! `#[path]` attributes, inline modules other than test modules.

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

/// The source without comments and without what `#[cfg(test)]` marks (unit
/// tests, and test-only items such as `mod testkit;`): only the marked item
/// is left out, never the rest of the file after it.
fn code(source: &str) -> String {
    let mut out = String::new();
    let mut lines = source.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            skip_item(line.len() - trimmed.len(), &mut lines);
            continue;
        }
        out.push_str(line.split("//").next().unwrap_or(""));
        out.push('\n');
    }
    out
}

/// Skip the item after an attribute indented by `indent`: through its first
/// line when that ends it (`mod testkit;`), else through the line that
/// closes it at the attribute's indentation (`}` or `};`, as rustfmt writes
/// it; braces inside strings cannot end it early).
fn skip_item<'a>(indent: usize, lines: &mut impl Iterator<Item = &'a str>) {
    let item = lines.find(|l| !l.trim_start().starts_with("#["));
    if item.is_none_or(|l| l.trim_end().ends_with(';') || l.trim_end().ends_with('}')) {
        return;
    }
    for line in lines {
        let close = line.trim_end();
        if close.len() - close.trim_start().len() == indent && matches!(close.trim(), "}" | "};") {
            return;
        }
    }
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

/// What the crate root re-exports (`pub use error::{Error, Result};`): each
/// name under which it does, and the path it stands for.
fn reexports(root: &str) -> BTreeMap<String, Module> {
    let mut out = BTreeMap::new();
    let mut rest = root;
    while let Some(at) = find_word(rest, "use") {
        let before = rest[..at].trim_end();
        let after = &rest[at + 3..];
        let Some(end) = after.find(';') else { break };
        if before.ends_with("pub") || before.ends_with(')') {
            for path in expand(&after[..end]) {
                let (path, alias) = match path.split_once(" as ") {
                    Some((path, alias)) => (path, Some(alias.trim())),
                    None => (path.as_str(), None),
                };
                let segments: Module = path
                    .trim()
                    .split("::")
                    .filter(|s| !s.is_empty() && *s != "crate" && *s != "self")
                    .map(str::to_owned)
                    .collect();
                if let Some(name) = alias.or(segments.last().map(String::as_str)) {
                    out.insert(name.to_owned(), segments.clone());
                }
            }
        }
        rest = &after[end..];
    }
    out
}

/// Module → the modules it imports from (the crate root, `[]`, included).
fn graph(src: &Path) -> BTreeMap<Module, BTreeSet<Module>> {
    let modules = modules(src);
    let resolve = |path: &[String]| -> Module {
        (0..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|m| modules.contains_key(m))
            .unwrap_or_default()
    };
    let reexported = modules
        .get(&Module::new())
        .map(|root| reexports(&code(root)))
        .unwrap_or_default();
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
            let mut target = resolve(&base);
            // `crate::Error` is the crate root's re-export of `error::Error`:
            // an import of `error`, not of the root.
            if let Some(origin) = base.first().and_then(|name| reexported.get(name))
                && target.is_empty()
            {
                target = resolve(&[origin.as_slice(), &base[1..]].concat());
            }
            if &target != module {
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
    let name = |m: &Module| {
        if m.is_empty() {
            "crate".to_owned()
        } else {
            m.join("::")
        }
    };
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

/// What the checker once missed: code after a test-only item (it stopped
/// reading a file at its first `#[cfg(test)]`), and imports through the
/// crate root (`crate::Name` of a root item or re-export).
#[test]
fn the_checker_reads_past_test_only_items_and_through_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("ops")).unwrap();
    std::fs::write(
        src.join("lib.rs"),
        "mod ops;\nmod index;\nmod fsutil;\npub use ops::Job as Task;\npub fn start() { ops::run() }\n",
    )
    .unwrap();
    std::fs::write(
        src.join("ops/mod.rs"),
        "mod restore;\n#[cfg(test)]\nmod testkit;\npub struct Job;\npub fn run() { crate::index::read(); restore::go() }\n\
         #[cfg(test)]\nfn helper() {\n    let s = \"}\";\n}\npub fn after() { crate::fsutil::now() }\n\
         #[cfg(test)]\nmod tests {\n    use crate::fsutil::gone;\n}\n",
    )
    .unwrap();
    std::fs::write(src.join("ops/testkit.rs"), "").unwrap();
    std::fs::write(
        src.join("ops/restore.rs"),
        "pub fn go() { crate::start() }\n",
    )
    .unwrap();
    std::fs::write(src.join("index.rs"), "use crate::Task;\npub fn read() {}\n").unwrap();
    std::fs::write(src.join("fsutil.rs"), "pub fn now() {}\n").unwrap();
    let edges = graph(src);
    let module = |path: &str| -> Module { path.split("::").map(str::to_owned).collect() };
    let ops = &edges[&module("ops")];
    assert!(ops.contains(&module("index")), "{ops:?}");
    assert!(ops.contains(&module("fsutil")), "{ops:?}");
    assert_eq!(ops.len(), 3, "the test-only items' imports count: {ops:?}");
    assert_eq!(edges[&module("index")], BTreeSet::from([module("ops")]));
    let looping: Vec<String> = loops(&edges).into_iter().flatten().collect();
    assert!(
        looping.contains(&"ops::restore -> crate".to_owned()),
        "{looping:?}"
    );
    assert!(looping.contains(&"crate -> ops".to_owned()), "{looping:?}");
    assert!(looping.contains(&"index -> ops".to_owned()), "{looping:?}");
}
