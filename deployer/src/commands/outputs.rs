//! `deployer outputs`: what the last deploy produced, secrets masked unless `--reveal`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::cli::OutputsArgs;
use crate::error::{Failure, because};

pub async fn run(config_path: &Path, args: &OutputsArgs) -> Result<(), Failure> {
    let stage = super::resolve_stage(&args.stage)?;
    let (_, config) = super::load(config_path, &stage)?;
    let store = super::store_to_read(&config).await?;
    let state = super::load_state(&store, &config, &stage).await?;
    if state.resources.is_empty() {
        return Err(
            Failure::bad_input(format!("stage `{stage}` has not been deployed"))
                .hint(format!("deployer deploy --stage {stage}")),
        );
    }
    if args.github_output {
        return github_output(&state);
    }
    if args.json {
        let mut all = BTreeMap::new();
        for (name, r) in &state.resources {
            let outputs: BTreeMap<&String, String> = r
                .outputs
                .iter()
                .map(|(k, v)| {
                    let shown = if r.kind.is_secret(k) && !args.reveal {
                        crate::output::mask(v)
                    } else {
                        v.clone()
                    };
                    (k, shown)
                })
                .collect();
            all.insert(name, outputs);
        }
        println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
    } else {
        super::print_outputs(&state, args.reveal);
    }
    Ok(())
}

/// `--github-output`: the values a workflow's later steps want, appended to the file
/// `$GITHUB_OUTPUT` names; the database URL is masked in the job's log first with the
/// `::add-mask::` workflow command (GitHub's "Workflow commands", "Masking a value in a
/// log"), which the runner reads from stdout and never shows.
fn github_output(state: &crate::state::StageState) -> Result<(), Failure> {
    use std::io::Write;

    use crate::config::Kind;
    use crate::resources::{function, project};
    let Some(path) = std::env::var_os("GITHUB_OUTPUT") else {
        return Err(
            Failure::bad_input("--github-output: GITHUB_OUTPUT is not set").hint(
                "use it in a GitHub Actions step, which sets GITHUB_OUTPUT; elsewhere use --json",
            ),
        );
    };
    // The first project (or preview branch) and function, as their kinds record them.
    let project: Option<project::Outputs> = state
        .resources
        .iter()
        .filter(|(_, r)| matches!(r.kind, Kind::Project | Kind::Preview))
        .find_map(|(name, r)| r.outputs_as(name).ok());
    let function: Option<function::Outputs> = state
        .resources
        .iter()
        .filter(|(_, r)| r.kind == Kind::Function)
        .find_map(|(name, r)| r.outputs_as(name).ok());
    let database_url = project
        .as_ref()
        .and_then(|p| p.database.as_ref())
        .map(|d| d.connection_uri.clone())
        .filter(|u| !u.is_empty());
    let values = [
        ("url", function.and_then(|f| f.url)),
        ("branch_id", project.and_then(|p| p.branch_id).map(|b| b.0)),
        ("database_url", database_url.clone()),
    ];
    if let Some(secret) = &database_url {
        println!("::add-mask::{secret}");
    }
    let mut text = String::new();
    for (name, value) in values {
        let Some(value) = value else { continue };
        // One line each; a value with a line break would need GitHub's delimiter form.
        if value.contains(['\n', '\r']) {
            return Err(Failure::remote(format!("output `{name}` spans lines")));
        }
        text.push_str(&format!("{name}={value}\n"));
    }
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .map_err(|e| {
            Failure::bad_input(format!(
                "--github-output: cannot append to GITHUB_OUTPUT ({}): {e}",
                std::path::Path::new(&path).display()
            ))
        })?;
    file.write_all(text.as_bytes())
        .map_err(|e| Failure::remote(because("cannot write GITHUB_OUTPUT", e)))?;
    eprintln!("wrote url, branch_id and database_url to $GITHUB_OUTPUT");
    Ok(())
}
