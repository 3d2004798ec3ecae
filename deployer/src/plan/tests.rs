//! The plan from fixture files: each folder under `tests/fixtures/plan/` holds an
//! `infra.toml`, the recorded `state.json` (absent: never deployed) and `expected.txt`,
//! which is what `diff` prints for stage `prod`, then `---`, then the protection check of a
//! deploy without --allow-data-loss. Folders named `remove-*` plan `remove` (an empty
//! config); `dev-*` plan `dev` (scope: Neon). `DEPLOYER_BLESS=1` rewrites `expected.txt`.

use std::path::Path;

use serde_json::json;

use super::*;
use crate::config;
use crate::env::EnvSource;

fn run_case(dir: &Path) -> String {
    let env = EnvSource::default();
    let mut config = config::load(&dir.join("infra.toml"), &env).expect("fixture infra.toml");
    let state: StageState = match std::fs::read_to_string(dir.join("state.json")) {
        Ok(text) => crate::state::parse_state(text.as_bytes(), "fixture state.json")
            .expect("fixture state.json"),
        Err(_) => StageState {
            version: 1,
            app: config.app.clone(),
            stage: "prod".into(),
            ..Default::default()
        },
    };
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let scope = if name.starts_with("dev-") {
        Scope::Neon
    } else {
        Scope::All
    };
    if name.starts_with("remove-") {
        config.resources.clear();
    }
    let policy = config.policy("prod");
    let plan = plan(&config, &state, policy, scope);
    let protection = match plan.check_protection(policy, false) {
        Ok(()) => "allowed".to_owned(),
        Err(e) => format!("refused: {e}"),
    };
    // The JSON form never carries a secret field's values.
    let json = serde_json::to_value(&plan).unwrap();
    for change in json["changes"].as_array().unwrap() {
        for field in change["fields"].as_array().into_iter().flatten() {
            if field["secret"] == true {
                assert!(
                    field.get("old").is_none() && field.get("new").is_none(),
                    "{field}"
                );
            }
        }
    }
    format!("{plan}\n---\n{protection}\n")
}

#[test]
fn plans_match_their_fixtures() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plan");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 8, "only {} plan fixtures", cases.len());
    let bless = std::env::var_os("DEPLOYER_BLESS").is_some();
    let mut failures = Vec::new();
    for dir in cases {
        let got = run_case(&dir);
        let path = dir.join("expected.txt");
        if bless {
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        if got != want {
            failures.push(format!(
                "{}:\n--- expected\n{want}--- got\n{got}",
                dir.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn json_names_kinds_actions_and_order() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plan/create");
    let config = config::load(&root.join("infra.toml"), &EnvSource::default()).unwrap();
    let state = StageState {
        version: 1,
        app: config.app.clone(),
        stage: "prod".into(),
        ..Default::default()
    };
    let plan = plan(&config, &state, config.policy("prod"), Scope::All);
    let json = serde_json::to_value(&plan).unwrap();
    assert_eq!(json["stage"], "prod");
    let function = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["resource"] == "MyApi")
        .unwrap();
    assert_eq!(function["kind"], "aws:Function");
    assert_eq!(function["action"], "create");
    assert_eq!(function["after"], json!(["NeonDB"]));
}
