//! The house rules, read from the source: no import circles between files of `src/`, and
//! the shared vocabulary (`src/vocab/`) imports nothing of ours.
//!
//! An edge is a path a file names (`use crate::a::b`, `crate::a::b::f(…)`, `super::x`,
//! `self::x`, or a child module's name at the start of a `use`), resolved to the file that
//! defines it. `mod x;` declarations are not edges (a parent declaring a child is not a
//! dependency), and neither are comments or a file's `#[cfg(test)] mod tests`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/` except the binary's `main.rs`, by its module path
/// (`["pipeline", "route"]`; `[]` for `lib.rs`).
fn modules() -> BTreeMap<Vec<String>, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let root = src();
    let mut files = Vec::new();
    walk(&root, &mut files);
    let mut out = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&root).unwrap().with_extension("");
        let mut parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        match parts.last().map(String::as_str) {
            Some("main") if parts.len() == 1 => continue,
            Some("lib") if parts.len() == 1 => parts.clear(),
            Some("mod") => {
                parts.pop();
            }
            _ => {}
        }
        out.insert(parts, f);
    }
    out
}

/// The code of a file without comments, string contents and its test module.
fn code(text: &str) -> String {
    let body = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = String::new();
    for line in body.lines() {
        let line = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        // Drop string literals (a path in a message is not an import).
        let mut in_str = false;
        let mut prev = ' ';
        for c in line.chars() {
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            } else if !in_str {
                out.push(c);
            }
            prev = c;
        }
        out.push('\n');
    }
    out
}

/// The module paths a file's code names, made absolute (`crate::a::b`, `super::c`,
/// `self::d`, and `use child::…` for one of its own child modules), with every item a
/// braced `use` list names. `module` is the file's own module path (`self`).
fn named_paths(module: &[String], code: &str) -> Vec<Vec<String>> {
    let base: Vec<String> = module.to_vec();
    let words: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let starts_word = i == 0 || !(words[i - 1].is_alphanumeric() || words[i - 1] == '_');
        if !starts_word || !(words[i].is_alphabetic() || words[i] == '_') {
            i += 1;
            continue;
        }
        // Read one path: ident(::ident)* possibly followed by ::{ ... }.
        let (path, end) = read_path(&words, i);
        i = end.max(i + 1);
        // A path names a module only past `crate::`, `super::` or `self::` (`pub(super)`
        // and `&self` are no paths).
        let Some(first) = path
            .first()
            .filter(|_| path.len() > 1 || end < words.len() && words[end] == '{')
        else {
            continue;
        };
        let mut abs: Vec<String> = match first.as_str() {
            "crate" => Vec::new(),
            "super" => {
                let supers = path.iter().take_while(|s| *s == "super").count();
                let mut abs = base[..base.len().saturating_sub(supers)].to_vec();
                abs.extend(path[supers..].iter().cloned());
                out.extend(expand(&abs, &words, end));
                continue;
            }
            "self" => base.clone(),
            _ => continue,
        };
        abs.extend(path[1..].iter().cloned());
        out.extend(expand(&abs, &words, end));
    }
    // `use child::…` names one of the module's own children.
    for line in code.lines() {
        let t = line.trim_start();
        let t = t.strip_prefix("pub ").unwrap_or(t);
        let t = t.strip_prefix("pub(crate) ").unwrap_or(t);
        if let Some(rest) = t.strip_prefix("use ") {
            let head: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !["crate", "super", "self", "std", "core", "alloc"].contains(&head.as_str())
                && rest[head.len()..].starts_with("::")
            {
                let mut p = base.clone();
                p.push(head);
                out.push(p);
            }
        }
    }
    out
}

fn read_path(words: &[char], mut i: usize) -> (Vec<String>, usize) {
    let mut path = Vec::new();
    loop {
        let start = i;
        while i < words.len() && (words[i].is_alphanumeric() || words[i] == '_') {
            i += 1;
        }
        if i == start {
            break;
        }
        path.push(words[start..i].iter().collect());
        if i + 1 < words.len() && words[i] == ':' && words[i + 1] == ':' {
            i += 2;
            if i < words.len() && words[i] == '{' {
                return (path, i);
            }
        } else {
            break;
        }
    }
    (path, i)
}

/// A path, and if it ends in `::{…}`, each first segment inside the braces appended.
fn expand(path: &[String], words: &[char], end: usize) -> Vec<Vec<String>> {
    if end < words.len() && words[end] == '{' {
        let mut depth = 0;
        let mut j = end;
        let mut inner = String::new();
        while j < words.len() {
            match words[j] {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            if depth >= 1 && !(depth == 1 && words[j] == '{') {
                inner.push(words[j]);
            }
            j += 1;
        }
        let mut out = vec![path.to_vec()];
        for item in inner.split(',') {
            let head: Vec<String> = item
                .trim()
                .split("::")
                .next()
                .map(|s| s.split_whitespace().next().unwrap_or("").to_string())
                .into_iter()
                .filter(|s| !s.is_empty() && s != "self")
                .collect();
            let mut p = path.to_vec();
            p.extend(head);
            out.push(p);
        }
        out
    } else {
        vec![path.to_vec()]
    }
}

/// The file that defines a module path: its longest prefix that is a module.
fn owner<'a>(
    path: &[String],
    modules: &'a BTreeMap<Vec<String>, PathBuf>,
) -> Option<&'a Vec<String>> {
    (0..=path.len())
        .rev()
        .find_map(|n| modules.get_key_value(&path[..n]).map(|(k, _)| k))
}

fn graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let modules = modules();
    let mut edges = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).unwrap();
        let mut to = BTreeSet::new();
        for p in named_paths(module, &code(&text)) {
            if let Some(o) = owner(&p, &modules)
                && o != module
                && !o.is_empty()
            {
                to.insert(o.clone());
            }
        }
        edges.insert(module.clone(), to);
    }
    edges
}

fn name(m: &[String]) -> String {
    if m.is_empty() {
        "lib".into()
    } else {
        m.join("::")
    }
}

/// A circle through the graph, if there is one.
fn find_circle(g: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        n: &Vec<String>,
        g: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        marks: &mut BTreeMap<Vec<String>, Mark>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<String>> {
        marks.insert(n.clone(), Mark::Open);
        stack.push(n.clone());
        for m in g.get(n).into_iter().flatten() {
            match marks.get(m).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let at = stack.iter().position(|s| s == m).unwrap();
                    let mut c: Vec<String> = stack[at..].iter().map(|s| name(s)).collect();
                    c.push(name(m));
                    return Some(c);
                }
                Mark::New => {
                    if let Some(c) = visit(m, g, marks, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks.insert(n.clone(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for n in g.keys() {
        if marks.get(n).copied().unwrap_or(Mark::New) == Mark::New
            && let Some(c) = visit(n, g, &mut marks, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_file_of_src_imports_itself_through_others() {
    let g = graph();
    // The reader must see real edges, or this test could never fail.
    let pipeline = vec!["pipeline".to_string()];
    assert!(
        g[&pipeline].contains(&vec!["enforce".to_string()]),
        "the import reader lost pipeline → enforce: {:?}",
        g[&pipeline]
    );
    if let Some(c) = find_circle(&g) {
        panic!("import circle: {}", c.join(" → "));
    }
}

#[test]
fn the_shared_vocabulary_imports_nothing_of_ours() {
    let g = graph();
    for (m, to) in &g {
        if m.first().map(String::as_str) == Some("vocab") {
            let outside: Vec<String> = to
                .iter()
                .filter(|t| t.first().map(String::as_str) != Some("vocab"))
                .map(|t| name(t))
                .collect();
            assert!(outside.is_empty(), "{} imports {outside:?}", name(m));
        }
    }
}

#[test]
fn decisions_and_recording_do_not_reach_into_each_other() {
    // Enforcement decides and metrics records (one sink, `Metrics::record`): neither
    // names the other, and neither names the pipeline or the app above them.
    let g = graph();
    let rules = [
        ("enforce", ["metrics", "pipeline", "app"]),
        ("metrics", ["enforce", "pipeline", "app"]),
    ];
    for (from, banned) in rules {
        for (m, to) in g
            .iter()
            .filter(|(m, _)| m.first().map(String::as_str) == Some(from))
        {
            for t in to {
                assert!(
                    !banned.contains(&t.first().map(String::as_str).unwrap_or("")),
                    "{} imports {}",
                    name(m),
                    name(t)
                );
            }
        }
    }
}

#[test]
fn the_reader_sees_a_circle_when_there_is_one() {
    let a = vec!["a".to_string()];
    let b = vec!["b".to_string()];
    let g = BTreeMap::from([
        (a.clone(), BTreeSet::from([b.clone()])),
        (b.clone(), BTreeSet::from([a.clone()])),
    ]);
    assert_eq!(
        find_circle(&g),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
    let modules = BTreeMap::from([
        (vec![], PathBuf::new()),
        (vec!["x".to_string()], PathBuf::new()),
        (vec!["x".to_string(), "y".to_string()], PathBuf::new()),
    ]);
    let paths = named_paths(
        &["x".to_string(), "z".to_string()],
        &code(
            "use super::y::{A, B};\nuse crate::x::{self, y};\n// use crate::q;\nlet s = \"crate::q\";\n",
        ),
    );
    let owners: BTreeSet<_> = paths
        .iter()
        .filter_map(|p| owner(p, &modules))
        .map(|o| name(o))
        .collect();
    assert_eq!(owners, BTreeSet::from(["x".into(), "x::y".into()]));
}
