//! `docs/infra-toml.md` against the parser: every key the parser accepts is in the doc's
//! key tables, and every key the doc lists is one the parser accepts. The parser says
//! which keys a table takes when it refuses an unknown one, so the list comes from serde's
//! own schema (`raw.rs`), not from a copy of it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::raw::RawFile;

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/infra-toml.md");

/// `## \`[table]\`` heading → the keys in the table under it (`| \`key\` | ... |`).
fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(DOC).expect("docs/infra-toml.md");
    let mut tables = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("## `[") {
            let table = heading.trim_end_matches("]`").to_owned();
            tables.insert(table.clone(), BTreeSet::new());
            current = Some(table);
        } else if let (Some(table), Some(row)) = (&current, line.strip_prefix("| `")) {
            let key = row.split('`').next().unwrap_or_default().to_owned();
            tables.get_mut(table).unwrap().insert(key);
        }
    }
    tables
}

/// The keys the parser accepts in the table that `toml` opens (with a key no table has).
fn accepted(toml: &str) -> BTreeSet<String> {
    let text = format!("{toml}\nzz_no_such_key = 1\n");
    let err = match toml::from_str::<RawFile>(&text) {
        Ok(_) => panic!("the parser accepted an unknown key in:\n{text}"),
        Err(e) => e.message().to_owned(),
    };
    let expected = err
        .split_once("expected")
        .unwrap_or_else(|| panic!("not an unknown-key error: {err}"))
        .1;
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_key_the_parser_accepts_is_documented_and_no_other() {
    let docs = documented();
    let app = "[app]\nname = \"a\"\n";
    let cases = [
        ("app", "[app]".to_owned()),
        ("state", format!("{app}[state]")),
        ("migrations", format!("{app}[migrations]")),
        ("stages.<stage>", format!("{app}[stages.x]")),
        ("neon.project.<Name>", format!("{app}[neon.project.X]")),
        ("neon.branch.<Name>", format!("{app}[neon.branch.X]")),
        ("neon.endpoint.<Name>", format!("{app}[neon.endpoint.X]")),
        ("neon.role.<Name>", format!("{app}[neon.role.X]")),
        ("neon.database.<Name>", format!("{app}[neon.database.X]")),
        ("function.<Name>", format!("{app}[function.X]")),
    ];
    for (table, toml) in &cases {
        let Some(listed) = docs.get(*table) else {
            panic!("docs/infra-toml.md has no section `[{table}]`");
        };
        let parser = accepted(toml);
        let undocumented: Vec<_> = parser.difference(listed).collect();
        let unknown: Vec<_> = listed.difference(&parser).collect();
        assert!(
            undocumented.is_empty(),
            "[{table}] accepts {undocumented:?}, which docs/infra-toml.md does not list"
        );
        assert!(
            unknown.is_empty(),
            "docs/infra-toml.md lists {unknown:?} under [{table}], which the parser refuses"
        );
    }
    // Every top-level table and every kind of Neon resource has its section.
    let sections: BTreeSet<String> = docs
        .keys()
        .map(|t| t.split('.').next().unwrap().to_owned())
        .collect();
    for top in accepted("") {
        assert!(
            sections.contains(&top),
            "docs/infra-toml.md has no section for [{top}]"
        );
    }
    for kind in accepted(&format!("{app}[neon]")) {
        let section = format!("neon.{kind}.<Name>");
        assert!(
            docs.contains_key(&section),
            "docs/infra-toml.md has no section [{section}]"
        );
    }
    // A link's keys are its properties, but for `pooler_hint`, which the checker reads.
    assert_eq!(
        docs["link.<Name>"],
        BTreeSet::from(["pooler_hint".to_owned()])
    );
    let link = format!("{app}[link.L]\ncustom_property = \"x\"\npooler_hint = false\n");
    let config = super::parse(Path::new("infra.toml"), &link, &Default::default())
        .expect("a link with a property and pooler_hint");
    let Some(super::Spec::Link(l)) = config.resource("L").map(|r| &r.spec) else {
        panic!("L is a link");
    };
    assert!(!l.pooler_hint);
    assert_eq!(l.properties.keys().collect::<Vec<_>>(), ["custom_property"]);
}
