//! `ARCHITECTURE.md` against the source tree: every file of `src/` is named in it, and the
//! top-level modules' dependencies (`crate::<module>` references) have no cycle but those
//! it lists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/ARCHITECTURE.md");
const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn files() -> Vec<String> {
    let mut all = Vec::new();
    sources(Path::new(SRC), &mut all);
    let mut names: Vec<String> = all
        .iter()
        .map(|p| p.strip_prefix(SRC).unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn every_source_file_is_named_in_architecture_md() {
    let doc = std::fs::read_to_string(DOC).unwrap();
    let missing: Vec<String> = files()
        .into_iter()
        .filter(|f| !doc.contains(&format!("`{f}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "deployer/ARCHITECTURE.md does not name {missing:?}; say what each is for"
    );
}

/// The top-level module of a source file (`resources/role.rs` → `resources`).
fn module_of(file: &str) -> String {
    file.split('/')
        .next()
        .unwrap()
        .trim_end_matches(".rs")
        .to_owned()
}

#[test]
fn no_module_cycle_but_those_architecture_md_lists() {
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let modules: BTreeSet<String> = files().iter().map(|f| module_of(f)).collect();
    for file in files() {
        let from = module_of(&file);
        if from == "lib" || from == "main" || from.ends_with("_tests") {
            continue;
        }
        let text = std::fs::read_to_string(Path::new(SRC).join(&file)).unwrap();
        for part in text.split("crate::").skip(1) {
            let to: String = part
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if to != from && modules.contains(&to) {
                deps.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    let reaches = |from: &str, to: &str| {
        let (mut seen, mut stack) = (BTreeSet::new(), vec![from.to_owned()]);
        while let Some(m) = stack.pop() {
            if m == to {
                return true;
            }
            if seen.insert(m.clone()) {
                stack.extend(deps.get(&m).into_iter().flatten().cloned());
            }
        }
        false
    };
    let doc = std::fs::read_to_string(DOC).unwrap();
    let listed: BTreeSet<(String, String)> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("- cycle: "))
        .filter_map(|l| l.split_once(' '))
        .map(|(a, b)| (a.min(b).to_owned(), a.max(b).to_owned()))
        .collect();
    let mut found = BTreeSet::new();
    for (a, tos) in &deps {
        for b in tos {
            if a < b && reaches(b, a) {
                found.insert((a.clone(), b.clone()));
            } else if b < a && reaches(b, a) {
                found.insert((b.clone(), a.clone()));
            }
        }
    }
    let new: Vec<_> = found.difference(&listed).collect();
    assert!(
        new.is_empty(),
        "module cycles not listed in deployer/ARCHITECTURE.md: {new:?}; break them (or list them, saying why)"
    );
    let gone: Vec<_> = listed.difference(&found).collect();
    assert!(
        gone.is_empty(),
        "deployer/ARCHITECTURE.md lists cycles that no longer exist: {gone:?}; remove them from the list"
    );
}
