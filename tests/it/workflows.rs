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
                    // The command's own words: a pipe or redirection ends them.
                    let words = rest.split(['|', '>']).next().unwrap_or_default();
                    lines.push((job.clone(), words.trim().to_owned()));
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
    // The comment carries the migrations the deploy applied and Neon's schema diff.
    assert!(
        has("deploy", "diff --stage \"$STAGE\" --schema"),
        "{lines:?}"
    );
    let steps = preview["jobs"]["deploy"]["steps"].as_array().unwrap();
    let deploy_step = steps
        .iter()
        .find(|s| {
            s["run"]
                .as_str()
                .is_some_and(|r| r.starts_with("deployer deploy"))
        })
        .unwrap();
    assert_eq!(
        deploy_step["shell"], "bash",
        "pipefail: a failed deploy fails through tee"
    );
    let script = steps
        .iter()
        .find_map(|s| s["with"]["script"].as_str())
        .unwrap();
    for file in ["migrations.txt", "schema.diff"] {
        assert!(script.contains(file), "the comment does not read {file}");
    }
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

/// A file of `docs/ci/` as JSON.
fn ci_file(name: &str) -> Value {
    let path = workspace_root().join("docs/ci").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A JSON string or list of strings, as a policy writes either.
fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().map(|s| s.as_str().unwrap().to_owned()).collect(),
        _ => Vec::new(),
    }
}

/// Whether a trust policy lets a GitHub OIDC token with subject `sub` assume the role.
fn trusts(policy: &Value, sub: &str) -> bool {
    const KEY: &str = "token.actions.githubusercontent.com:sub";
    policy["Statement"].as_array().unwrap().iter().any(|s| {
        let c = &s["Condition"];
        assert_eq!(s["Action"], "sts:AssumeRoleWithWebIdentity");
        assert_eq!(
            c["StringEquals"]["token.actions.githubusercontent.com:aud"], "sts.amazonaws.com",
            "{s:#}"
        );
        strings(&c["StringEquals"][KEY]).iter().any(|p| p == sub)
            || strings(&c["StringLike"][KEY])
                .iter()
                .any(|p| harness::s3_model::glob(p, sub))
    })
}

/// Prod's role trusts only prod's environment on main; the preview's role only the preview
/// environment, on pull requests and on main (the daily prune), and never prod's subject.
#[test]
fn the_ci_roles_trust_only_their_environment_and_ref() {
    let prod = ci_file("prod-trust.json");
    let preview = ci_file("preview-trust.json");
    let sub = |rest: &str| format!("repo:OWNER/REPO:{rest}");
    let prod_on_main = sub("environment:production:ref:refs/heads/main");
    assert!(trusts(&prod, &prod_on_main));
    for other in [
        sub("environment:production:ref:refs/pull/42/merge"),
        sub("environment:production:ref:refs/heads/feature"),
        sub("environment:preview:ref:refs/heads/main"),
        sub("pull_request"),
        "repo:OTHER/REPO:environment:production:ref:refs/heads/main".to_owned(),
    ] {
        assert!(!trusts(&prod, &other), "prod's role trusts {other}");
    }
    assert!(trusts(
        &preview,
        &sub("environment:preview:ref:refs/pull/42/merge")
    ));
    assert!(trusts(
        &preview,
        &sub("environment:preview:ref:refs/heads/main")
    ));
    for other in [
        prod_on_main.clone(),
        sub("environment:production:ref:refs/pull/42/merge"),
        "repo:OTHER/REPO:environment:preview:ref:refs/pull/1/merge".to_owned(),
    ] {
        assert!(!trusts(&preview, &other), "the preview role trusts {other}");
    }
}

/// What a role's permissions allow of `action` on `arn` (Allow statements, resources by
/// IAM's wildcards; conditions are checked separately).
fn allows(policy: &Value, action: &str, arn: &str) -> bool {
    policy["Statement"].as_array().unwrap().iter().any(|s| {
        s["Effect"] == "Allow"
            && strings(&s["Action"]).iter().any(|a| a == action)
            && strings(&s["Resource"])
                .iter()
                .any(|r| harness::s3_model::glob(r, arn))
    })
}

/// Each role reaches what the deployer makes for its stages (names from the deployer
/// itself) and nothing of the other's: prod's functions, roles, logs and state are out of
/// the preview role's reach, and the preview role reads prod's base.json, not its state.
#[test]
fn the_ci_roles_reach_their_own_stages_only() {
    let prod = ci_file("prod-permissions.json");
    let preview = ci_file("preview-permissions.json");
    let arns = |stage: &str| {
        let name = deployer::aws::physical_name("APP", stage, "MyApi");
        [
            (
                "lambda:UpdateFunctionCode",
                format!("arn:aws:lambda:REGION:ACCOUNT_ID:function:{name}"),
            ),
            (
                "lambda:AddPermission",
                format!("arn:aws:lambda:REGION:ACCOUNT_ID:function:{name}"),
            ),
            // A release: the check, the version, the alias `live` and its URL's permissions.
            (
                "lambda:InvokeFunction",
                format!("arn:aws:lambda:REGION:ACCOUNT_ID:function:{name}:$LATEST"),
            ),
            (
                "lambda:PublishVersion",
                format!("arn:aws:lambda:REGION:ACCOUNT_ID:function:{name}"),
            ),
            (
                "lambda:ListVersionsByFunction",
                format!("arn:aws:lambda:REGION:ACCOUNT_ID:function:{name}"),
            ),
            (
                "lambda:UpdateAlias",
                format!("arn:aws:lambda:REGION:ACCOUNT_ID:function:{name}:live"),
            ),
            (
                "lambda:AddPermission",
                format!("arn:aws:lambda:REGION:ACCOUNT_ID:function:{name}:live"),
            ),
            (
                "iam:CreateRole",
                format!("arn:aws:iam::ACCOUNT_ID:role/{name}"),
            ),
            (
                "iam:PassRole",
                format!("arn:aws:iam::ACCOUNT_ID:role/{name}"),
            ),
            (
                "logs:PutRetentionPolicy",
                format!(
                    "arn:aws:logs:REGION:ACCOUNT_ID:log-group:{}",
                    deployer::aws::logs::group_name(&name)
                ),
            ),
            (
                "s3:PutObject",
                format!("arn:aws:s3:::BUCKET/PREFIX/APP/{stage}/state.json"),
            ),
            (
                "s3:GetObject",
                format!("arn:aws:s3:::BUCKET/PREFIX/APP/{stage}/state.json"),
            ),
            (
                "s3:DeleteObject",
                format!("arn:aws:s3:::BUCKET/PREFIX/APP/{stage}/lock.json"),
            ),
        ]
    };
    for (action, arn) in arns("prod") {
        assert!(
            allows(&prod, action, &arn),
            "prod's role may not {action} {arn}"
        );
        assert!(
            !allows(&preview, action, &arn),
            "the preview role may {action} {arn}"
        );
    }
    for (action, arn) in arns("pr-42") {
        assert!(
            allows(&preview, action, &arn),
            "the preview role may not {action} {arn}"
        );
    }
    let prod_base = "arn:aws:s3:::BUCKET/PREFIX/APP/prod/base.json";
    assert!(allows(&preview, "s3:GetObject", prod_base));
    assert!(!allows(&preview, "s3:PutObject", prod_base));
    for policy in [&prod, &preview] {
        for s in policy["Statement"].as_array().unwrap() {
            let actions = strings(&s["Action"]);
            if actions.iter().any(|a| a == "iam:PassRole") {
                assert_eq!(
                    s["Condition"]["StringEquals"]["iam:PassedToService"], "lambda.amazonaws.com",
                    "{s:#}"
                );
            }
            if actions.iter().any(|a| a == "iam:AttachRolePolicy") {
                assert!(
                    s["Condition"]["ArnEquals"]["iam:PolicyARN"]
                        .as_str()
                        .unwrap()
                        .ends_with("AWSLambdaBasicExecutionRole"),
                    "{s:#}"
                );
            }
            assert!(
                !strings(&s["Resource"]).iter().any(|r| r == "*"),
                "a statement on every resource: {s:#}"
            );
        }
    }
}

/// Prod's job runs in the `production` environment with prod's role and key; every preview
/// job in `preview`, with the preview's role and the project-scoped key, and none names
/// prod's.
#[test]
fn the_workflows_use_the_role_and_key_of_their_environment() {
    let deploy = workflow("deploy.yml");
    let job = &deploy["jobs"]["deploy"];
    assert_eq!(job["environment"], "production");
    let text = job.to_string();
    assert!(text.contains("vars.AWS_PROD_ROLE_ARN"), "{text}");
    assert!(text.contains("secrets.NEON_API_KEY"), "{text}");

    let preview = workflow("preview.yml");
    assert_eq!(
        preview["env"]["NEON_API_KEY"],
        "${{ secrets.NEON_PREVIEW_API_KEY }}"
    );
    for (name, job) in preview["jobs"].as_object().unwrap() {
        assert_eq!(job["environment"], "preview", "job {name}");
        let text = job.to_string();
        assert!(
            text.contains("vars.AWS_PREVIEW_ROLE_ARN"),
            "job {name}: {text}"
        );
        assert!(!text.contains("AWS_PROD_ROLE_ARN"), "job {name}: {text}");
    }
    assert!(!preview.to_string().contains("secrets.NEON_API_KEY }}"));
}

/// Actions are pinned by commit SHA (with their tag in a comment), and the tools the
/// workflows install by version: a moved tag or a new release changes nothing that runs
/// with deploy credentials.
#[test]
fn the_workflows_pin_actions_by_sha_and_tools_by_version() {
    for name in ["deploy.yml", "preview.yml"] {
        let path = workspace_root().join(".github/workflows").join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut uses = 0;
        for line in text.lines().map(str::trim) {
            let line = line.strip_prefix("- ").unwrap_or(line);
            if let Some(action) = line.strip_prefix("uses: ") {
                uses += 1;
                let (name_ref, comment) = action.split_once('#').unwrap_or((action, ""));
                let sha = name_ref
                    .trim()
                    .rsplit_once('@')
                    .map(|(_, r)| r)
                    .unwrap_or("");
                assert!(
                    sha.len() == 40 && sha.chars().all(|c| c.is_ascii_hexdigit()),
                    "{name}: {line}"
                );
                assert!(
                    comment.trim().starts_with('v'),
                    "{name}: {line} names no tag"
                );
            }
            if let Some(packages) = line.strip_prefix("run: pip install ") {
                for p in packages.split_whitespace() {
                    assert!(p.contains("=="), "{name}: {p} is not pinned");
                }
            }
            if line.contains("rustup") {
                assert!(line.contains("rustup default 1."), "{name}: {line}");
            }
        }
        assert!(uses > 0, "{name}");
        assert!(
            text.contains("rustup default 1."),
            "{name} does not pin Rust"
        );
    }
}
