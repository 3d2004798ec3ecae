//! The GitHub Actions workflows: they parse as YAML, the preview workflow deploys
//! `pr-<number>` when a pull request opens or changes and removes it when it closes, and
//! every deployer command they run is one the deployer accepts, flags included.

use std::process::Command;

use harness::paths::{workspace_bin, workspace_root};
use serde_json::Value;

/// A workflow file as JSON (PyYAML; YAML 1.1 reads the key `on` as true: put back).
fn workflow(name: &str) -> Value {
    let path = workspace_root().join(".github/workflows").join(name);
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml\n\
             d = yaml.safe_load(open(sys.argv[1]))\n\
             d['on'] = d.pop(True, d.get('on'))\n\
             print(json.dumps(d))",
        ])
        .arg(&path)
        .output()
        .expect("python3 with PyYAML (scripts/test installs it)");
    assert!(
        out.status.success(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every `deployer ...` line of the workflow's `run:` steps, by job.
fn deployer_lines(w: &Value) -> Vec<(String, String)> {
    let mut lines = Vec::new();
    for (job, body) in w["jobs"].as_object().unwrap() {
        for step in body["steps"].as_array().unwrap() {
            for line in step["run"].as_str().unwrap_or_default().lines() {
                if let Some(rest) = line.trim().strip_prefix("deployer ") {
                    lines.push((job.clone(), rest.to_owned()));
                }
            }
        }
    }
    lines
}

#[test]
fn the_workflows_run_commands_the_deployer_accepts() {
    let preview = workflow("preview.yml");
    let types: Vec<&str> = preview["on"]["pull_request"]["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for t in ["opened", "synchronize", "closed"] {
        assert!(types.contains(&t), "{types:?}");
    }
    assert_eq!(
        preview["env"]["STAGE"],
        "pr-${{ github.event.pull_request.number }}"
    );
    let lines = deployer_lines(&preview);
    let has = |job: &str, cmd: &str| lines.iter().any(|(j, l)| j == job && l == cmd);
    assert!(has("deploy", "deploy --stage \"$STAGE\""), "{lines:?}");
    assert!(
        has("deploy", "outputs --stage \"$STAGE\" --github-output"),
        "{lines:?}"
    );
    assert!(
        has("remove", "remove --stage \"$STAGE\" --yes"),
        "{lines:?}"
    );
    assert!(
        preview["jobs"]["remove"]["if"]
            .as_str()
            .unwrap()
            .contains("'closed'")
    );
    assert!(
        preview["jobs"]["deploy"]["if"]
            .as_str()
            .unwrap()
            .contains("!= 'closed'")
    );
    assert!(has("prune", "prune --older-than 7d --yes"), "{lines:?}");

    let deploy = workflow("deploy.yml");
    let all = lines
        .iter()
        .chain(deployer_lines(&deploy).iter())
        .map(|(_, l)| l.clone())
        .collect::<Vec<_>>();
    for line in all {
        // The same words with --help: clap refuses an unknown command or flag (exit 2)
        // before it reaches the help.
        let args: Vec<String> = line
            .split_whitespace()
            .map(|w| w.replace("\"$STAGE\"", "pr-1"))
            .chain(["--help".to_owned()])
            .collect();
        let out = Command::new(workspace_bin("deployer"))
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "deployer {line}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
