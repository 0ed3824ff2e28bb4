//! The files of `qtasks-core/src` import each other one way (docs/architecture.md): no import
//! cycle, except the one pair of files whose types truly need each other (a task's registry
//! entry runs with the task's context, and the context names its entry).
//!
//! Reads every `use crate::..`/`crate::..`/`super::..` path, resolves it to the file that
//! defines the item (names re-exported by `lib.rs` are followed to their file), and looks for
//! strongly connected files. A child file's use of its own folder's `mod.rs` is not an edge
//! (the folder declares it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

/// The one cycle allowed.
const ALLOWED: &[&str] = &["context/mod.rs", "task/entry.rs"];

#[test]
fn no_import_cycle_between_core_files() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = rust_files(&src);
    let texts: BTreeMap<Module, String> = files
        .iter()
        .map(|(m, p)| {
            let text = std::fs::read_to_string(p).expect("readable source file");
            (m.clone(), strip_comments(&text))
        })
        .collect();
    let mut reexports: BTreeMap<String, Module> = BTreeMap::new();
    for path in paths_in(&texts[&Vec::new()], &[]) {
        if path.len() >= 2 {
            reexports
                .entry(path[path.len() - 1].clone())
                .or_insert(path);
        }
    }
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, text) in &texts {
        let targets = edges.entry(module.clone()).or_default();
        if module.is_empty() {
            continue;
        }
        for path in paths_in(text, module) {
            let Some(target) = resolve(&files, &reexports, &path, 0) else {
                continue;
            };
            let own_parent = target.len() < module.len()
                && module[..target.len()] == target[..]
                && files[&target].ends_with("mod.rs");
            if !target.is_empty() && &target != module && !own_parent {
                targets.insert(target);
            }
        }
    }
    let cycles: Vec<BTreeSet<String>> = strongly_connected(&edges)
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| {
            c.iter()
                .map(|m| {
                    files[m]
                        .strip_prefix(&src)
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                })
                .collect()
        })
        .collect();
    let allowed: BTreeSet<String> = ALLOWED.iter().map(|s| s.to_string()).collect();
    assert!(
        cycles.iter().all(|c| *c == allowed),
        "import cycles between qtasks-core files (only {ALLOWED:?} may import each other): {cycles:#?}"
    );
}

fn rust_files(src: &Path) -> BTreeMap<Module, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(src).expect("under src");
                let mut module: Module = rel
                    .with_extension("")
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if matches!(module.last().map(String::as_str), Some("lib" | "mod")) {
                    module.pop();
                }
                out.insert(module, path);
            }
        }
    }
    out
}

fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        rest = rest[i..].find("*/").map_or("", |j| &rest[i + j + 2..]);
    }
    out.push_str(rest);
    out.lines()
        .map(|l| l.find("//").map_or(l, |i| &l[..i]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `a::{b, c::{d, e}}` -> `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let Some(open) = tree.find('{') else {
        return vec![tree.to_string()];
    };
    let close = tree.rfind('}').unwrap_or(tree.len());
    let (head, body) = (&tree[..open], &tree[open + 1..close]);
    let mut parts = Vec::new();
    let (mut depth, mut current) = (0, String::new());
    for ch in body.chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        if ch == ',' && depth == 0 {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(ch);
        }
    }
    parts.push(current);
    parts
        .iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(|p| expand(p.trim()))
        .map(|p| format!("{head}{p}"))
        .collect()
}

/// The crate paths a file names, as module paths from the crate root.
fn paths_in(text: &str, module: &[String]) -> Vec<Module> {
    let mut raw = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("use ") {
        let boundary = i == 0 || !rest.as_bytes()[i - 1].is_ascii_alphanumeric();
        let after = &rest[i + 4..];
        let end = after.find(';').unwrap_or(after.len());
        if boundary {
            let tree = after[..end]
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            raw.extend(expand(&tree).into_iter().map(|p| {
                let path = p.split(" as ").next().unwrap_or_default();
                path.chars()
                    .filter(|c| !c.is_whitespace())
                    .collect::<String>()
            }));
        }
        rest = &after[end.min(after.len())..];
    }
    for start in ["crate::", "super::"] {
        let mut rest = text;
        while let Some(i) = rest.find(start) {
            let tail = &rest[i..];
            let len = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            raw.push(tail[..len].to_string());
            rest = &rest[i + start.len()..];
        }
    }
    raw.into_iter()
        .filter_map(|p| {
            let segs: Vec<&str> = p.split("::").filter(|s| !s.is_empty()).collect();
            match segs.first() {
                Some(&"crate") => Some(segs[1..].iter().map(|s| s.to_string()).collect()),
                Some(&"super") => {
                    let mut base = module.to_vec();
                    let mut segs = &segs[..];
                    while segs.first() == Some(&"super") {
                        base.pop();
                        segs = &segs[1..];
                    }
                    base.extend(segs.iter().map(|s| s.to_string()));
                    Some(base)
                }
                Some(&"self") => {
                    let mut base = module.to_vec();
                    base.extend(segs[1..].iter().map(|s| s.to_string()));
                    Some(base)
                }
                _ => None,
            }
        })
        .collect()
}

fn resolve(
    files: &BTreeMap<Module, PathBuf>,
    reexports: &BTreeMap<String, Module>,
    path: &[String],
    depth: usize,
) -> Option<Module> {
    if path.is_empty() {
        return Some(Vec::new());
    }
    for k in (1..=path.len()).rev() {
        if files.contains_key(&path[..k]) {
            return Some(path[..k].to_vec());
        }
    }
    let again = reexports.get(&path[0])?;
    if depth >= 3 {
        return None;
    }
    let mut full = again.clone();
    full.extend_from_slice(&path[1..]);
    resolve(files, reexports, &full, depth + 1)
}

/// Tarjan's strongly connected components.
fn strongly_connected(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct State<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<Module, usize>,
        low: BTreeMap<Module, usize>,
        stack: Vec<Module>,
        on_stack: BTreeSet<Module>,
        next: usize,
        out: Vec<Vec<Module>>,
    }
    fn visit(s: &mut State<'_>, v: &Module) {
        s.index.insert(v.clone(), s.next);
        s.low.insert(v.clone(), s.next);
        s.next += 1;
        s.stack.push(v.clone());
        s.on_stack.insert(v.clone());
        let targets: Vec<Module> = s.edges.get(v).into_iter().flatten().cloned().collect();
        for w in targets {
            if !s.index.contains_key(&w) {
                visit(s, &w);
                let low = s.low[v].min(s.low[&w]);
                s.low.insert(v.clone(), low);
            } else if s.on_stack.contains(&w) {
                let low = s.low[v].min(s.index[&w]);
                s.low.insert(v.clone(), low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(&w);
                let done = &w == v;
                component.push(w);
                if done {
                    break;
                }
            }
            s.out.push(component);
        }
    }
    let mut state = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !state.index.contains_key(v) {
            visit(&mut state, v);
        }
    }
    state.out
}
