//! The crate's modules depend on each other one way: no import cycle
//! (issue 10 found `audio` <-> `pipeline` <-> `transcode`). Read from the
//! sources, so a new cycle fails here rather than in review.
#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)] // Test code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module -> the modules its code (not its comments) names as `crate::x`.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        if name == "lib" || path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut deps = BTreeSet::new();
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            let mut rest = code;
            while let Some(i) = rest.find("crate::") {
                rest = &rest[i + "crate::".len()..];
                let dep: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !dep.is_empty() && dep != name {
                    deps.insert(dep);
                }
            }
        }
        modules.insert(name, deps);
    }
    modules
}

fn cycle_from(
    node: &str,
    graph: &BTreeMap<String, BTreeSet<String>>,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if let Some(i) = path.iter().position(|p| p == node) {
        let mut cycle = path[i..].to_vec();
        cycle.push(node.to_owned());
        return Some(cycle);
    }
    if done.contains(node) {
        return None;
    }
    path.push(node.to_owned());
    for dep in graph.get(node).into_iter().flatten() {
        // Names that are not modules (`crate::Error` re-exports) are leaves.
        if graph.contains_key(dep) {
            if let Some(c) = cycle_from(dep, graph, path, done) {
                return Some(c);
            }
        }
    }
    path.pop();
    done.insert(node.to_owned());
    None
}

#[test]
fn modules_have_no_import_cycle() {
    let g = graph();
    // The stage workers sit below the pipeline, which sits below the API.
    for stage in ["audio", "video", "thumbs"] {
        for above in ["pipeline", "transcode", "chunked", "worker"] {
            assert!(!g[stage].contains(above), "{stage} uses {above}: {g:?}");
        }
    }
    assert!(!g["pipeline"].contains("transcode"), "{g:?}");
    let mut done = BTreeSet::new();
    for node in g.keys() {
        if let Some(cycle) = cycle_from(node, &g, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}
