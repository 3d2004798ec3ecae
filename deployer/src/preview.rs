//! Preview stages (`branch_from`): infra.toml as such a stage deploys it, where each
//! declared project is the stage's own branch of the base stage's project, and each
//! declared branch a copy of the base's. A pure transform, `Config -> Config`, given the
//! base stage's recorded state; reading that state, and forgetting branches Neon deleted,
//! is the command's (`commands::stage_view`).

use std::collections::BTreeMap;

use crate::config::{BranchCopy, BranchSpec, Config, Kind, Part, PreviewBranch, Spec, Template};
use crate::resources::{branch, project};
use crate::state::StageState;

/// Why infra.toml cannot be deployed as a preview stage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreviewError {
    #[error(
        "stage `{stage}` has its own Neon project `{project}` recorded, so it cannot branch from `{base}`"
    )]
    OwnProject {
        stage: String,
        base: String,
        project: String,
    },
    #[error("stage `{stage}` branches from `{base}`, which has not deployed `{project}`")]
    BaseNotDeployed {
        stage: String,
        base: String,
        project: String,
    },
}

impl PreviewError {
    /// What to do about it.
    pub fn hint(&self) -> String {
        match self {
            PreviewError::OwnProject { stage, .. } => format!(
                "`deployer remove --stage {stage}` first, or give [stages.{stage}] its own table without branch_from"
            ),
            PreviewError::BaseNotDeployed { base, .. } => format!(
                "run `deployer deploy --stage {base}` first (and use the same [state] backend)"
            ),
        }
    }
}

/// The annotation keys that mark a branch as an app's stage's (Neon's annotations are
/// free string pairs, `AnnotationValueData`).
pub const APP_KEY: &str = "deployer-app";
pub const STAGE_KEY: &str = "deployer-stage";

/// The name of a preview stage's branch.
pub fn branch_name(stage: &str) -> String {
    format!("preview/{stage}")
}

pub fn annotation(app: &str, stage: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (APP_KEY.to_owned(), app.to_owned()),
        (STAGE_KEY.to_owned(), stage.to_owned()),
    ])
}

/// What a preview takes of the base stage's project's outputs.
#[derive(serde::Deserialize)]
struct BaseOutputs {
    #[serde(default)]
    name: String,
    #[serde(default)]
    default_branch_id: Option<crate::neon::models::BranchId>,
}

/// infra.toml as `stage` deploys it: itself, unless the stage branches from another, whose
/// recorded state is `base`; `own` is the stage's.
pub fn for_stage(
    config: &Config,
    stage: &str,
    own: &StageState,
    base: &StageState,
) -> Result<Config, PreviewError> {
    let Some(preview) = config.preview(stage) else {
        return Ok(config.clone());
    };
    let base_stage = &preview.base;
    let annotation = annotation(&config.app, stage);
    let mut out = config.clone();
    for r in &mut out.resources {
        match &r.spec {
            Spec::Project(_) => {
                if let Some(mine) = own.resources.get(&r.name)
                    && mine.kind == Kind::Project
                {
                    return Err(PreviewError::OwnProject {
                        stage: stage.to_owned(),
                        base: base_stage.clone(),
                        project: r.name.clone(),
                    });
                }
                let recorded = base
                    .resources
                    .get(&r.name)
                    .filter(|b| b.kind == Kind::Project);
                let Some((ids, outputs)) = recorded.and_then(|b| {
                    let ids: project::Ids = b.ids_as(&r.name).ok()?;
                    let outputs: Option<BaseOutputs> = b.outputs_as(&r.name).ok();
                    Some((ids, outputs))
                }) else {
                    return Err(PreviewError::BaseNotDeployed {
                        stage: stage.to_owned(),
                        base: base_stage.clone(),
                        project: r.name.clone(),
                    });
                };
                r.kind = Kind::Preview;
                r.spec = Spec::PreviewBranch(PreviewBranch {
                    base_stage: base_stage.clone(),
                    project_id: ids.project_id.0,
                    project_name: outputs.as_ref().map(|o| o.name.clone()).unwrap_or_default(),
                    default_branch_id: outputs.and_then(|o| o.default_branch_id).map(|b| b.0),
                    name: branch_name(stage),
                    parent: preview.parent.clone(),
                    expires_in: preview.expires_in,
                    schema_only: preview.schema_only,
                    annotation: annotation.clone(),
                });
                r.import = None;
            }
            Spec::Branch(BranchSpec {
                project,
                name,
                parent,
                ..
            }) => {
                // The base's branch of this name, copied; or a new branch of the stage's.
                let of = base
                    .resources
                    .get(&r.name)
                    .filter(|b| b.kind == Kind::Branch)
                    .and_then(|b| b.ids_as::<branch::Ids>(&r.name).ok())
                    .map(|ids| ids.branch_id.0);
                let mut prefixed = vec![Part::Text(format!("{}/", branch_name(stage)))];
                prefixed.extend(name.0.iter().cloned());
                let parent = match (&of, parent) {
                    (None, None) => Some(project.clone()),
                    _ => parent.clone(),
                };
                r.spec = Spec::Branch(BranchSpec {
                    project: project.clone(),
                    name: Template(prefixed),
                    parent,
                    copy: Some(BranchCopy {
                        of,
                        expires_in: preview.expires_in,
                        annotation: annotation.clone(),
                    }),
                });
                r.import = None;
            }
            // Imports name the base's roles, databases and endpoints: the stage has copies.
            Spec::Endpoint(_) | Spec::Role(_) | Spec::Database(_) => r.import = None,
            // A set applies to the stage's own copy of its database: the rehearsal.
            Spec::PreviewBranch(_) | Spec::Migrations(_) | Spec::Link(_) | Spec::Function(_) => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::env::EnvSource;
    use crate::state::ResourceState;

    /// The guide's full stack, with every stage but prod branching from prod.
    const FULL: &str = r#"
[app]
name = "demo"
[stages.prod]
protect = true
[stages.default]
branch_from = "prod"
expires_in = "12h"
[neon.project.P]
name = "demo-project"
[neon.branch.Dev]
project = "P"
name = "feature-x"
[neon.branch.Scratch]
project = "P"
[neon.endpoint.E]
branch = "Dev"
[neon.role.R]
branch = "Dev"
name = "app"
import = "proj-1/br-dev/app"
"#;

    fn record(kind: Kind, ids: &[(&str, &str)], outputs: &[(&str, &str)]) -> ResourceState {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        ResourceState {
            kind,
            ids: map(ids),
            inputs: serde_json::json!({}),
            outputs: map(outputs),
            imported: false,
        }
    }

    fn prod() -> StageState {
        let mut s = StageState {
            app: "demo".into(),
            stage: "prod".into(),
            ..Default::default()
        };
        s.resources.insert(
            "P".into(),
            record(
                Kind::Project,
                &[("project_id", "proj-1")],
                &[("name", "demo-project"), ("default_branch_id", "br-main")],
            ),
        );
        s.resources.insert(
            "Dev".into(),
            record(
                Kind::Branch,
                &[("project_id", "proj-1"), ("branch_id", "br-dev")],
                &[],
            ),
        );
        s
    }

    fn config() -> Config {
        crate::config::parse(Path::new("infra.toml"), FULL, &EnvSource::default()).unwrap()
    }

    #[test]
    fn projects_become_the_stages_branch_and_branches_copies_of_the_bases() {
        let own = StageState::default();
        let staged = for_stage(&config(), "pr-7", &own, &prod()).unwrap();
        let Spec::PreviewBranch(p) = &staged.resource("P").unwrap().spec else {
            panic!("the project is the stage's branch");
        };
        assert_eq!(p.project_id, "proj-1");
        assert_eq!(p.name, "preview/pr-7");
        assert_eq!(p.default_branch_id.as_deref(), Some("br-main"));
        assert_eq!(p.expires_in, Some(12 * 3600));
        assert_eq!(p.annotation, annotation("demo", "pr-7"));
        // Dev is a copy of prod's Dev; Scratch, which prod never made, a branch of the
        // stage's own branch. Both are named under the stage's.
        let Spec::Branch(BranchSpec {
            name, parent, copy, ..
        }) = &staged.resource("Dev").unwrap().spec
        else {
            panic!()
        };
        assert_eq!(name.as_literal().unwrap(), "preview/pr-7/feature-x");
        assert_eq!(copy.as_ref().unwrap().of.as_deref(), Some("br-dev"));
        assert_eq!(parent, &None);
        let Spec::Branch(BranchSpec { parent, copy, .. }) =
            &staged.resource("Scratch").unwrap().spec
        else {
            panic!()
        };
        assert_eq!(parent.as_deref(), Some("P"));
        assert_eq!(copy.as_ref().unwrap().of, None);
        // An import names prod's role: the stage has its own copy.
        assert_eq!(staged.resource("R").unwrap().import, None);
        // prod itself is deployed as written.
        let same = for_stage(&config(), "prod", &own, &StageState::default()).unwrap();
        assert!(matches!(same.resource("P").unwrap().spec, Spec::Project(_)));
    }

    #[test]
    fn a_base_not_deployed_or_a_stage_with_its_own_project_is_refused() {
        let err = for_stage(
            &config(),
            "pr-7",
            &StageState::default(),
            &StageState::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`prod`, which has not deployed `P`"), "{err}");
        let mut own = StageState::default();
        own.resources.insert(
            "P".into(),
            record(Kind::Project, &[("project_id", "proj-own")], &[]),
        );
        let err = for_stage(&config(), "pr-7", &own, &prod())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("has its own Neon project `P` recorded"),
            "{err}"
        );
    }

    /// A preview stage as the deployer before state version 2 recorded it (its branch as a
    /// `Project` with `branch_from` among its inputs) loads as a preview and deploys with
    /// no change to its Neon resources; only its URL moves to the alias `live` (a deployer
    /// before releases made it on the function).
    #[test]
    fn a_preview_recorded_by_state_version_1_plans_only_its_url_moving_to_live() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/state");
        let read = |file: &str| {
            let bytes = std::fs::read(fixtures.join(file)).unwrap();
            crate::state::parse_state(&bytes, file).unwrap()
        };
        let (base, own) = (read("v1-guide.state.json"), read("v1-preview.state.json"));
        assert_eq!(own.version, crate::state::CURRENT_VERSION);
        assert_eq!(own.resources["MyAppProject"].kind, Kind::Preview);
        assert_eq!(base.resources["MyAppProject"].kind, Kind::Project);
        let config =
            crate::config::load(&fixtures.join("preview-infra.toml"), &EnvSource::default())
                .unwrap();
        let staged = for_stage(&config, "pr-3", &own, &base).unwrap();
        let plan = crate::plan::plan(
            &staged,
            &own,
            staged.policy("pr-3"),
            crate::plan::Scope::All,
        );
        assert_eq!(
            plan.to_string(),
            concat!(
                "    MyAppProject neon:Project unchanged\n",
                "    NeonDB Linkable unchanged\n",
                "  ~ MyApi aws:Function update\n",
                "      url_on: the URL is replaced by the alias `live`'s (a new hostname); the old one is removed once the new one answers\n",
                "1 change."
            )
        );
    }
}
