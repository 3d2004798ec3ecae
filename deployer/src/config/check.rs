//! The checks that need the whole file: names, references and their kinds, limits, cycles,
//! `${env.VAR}`; and the order resources are created in. Every problem is collected (not
//! just the first), each with file, line, column and a hint. One concept, long because
//! each kind of resource has its own rules.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::PathBuf;

use toml::Spanned;

use super::raw::*;
use super::values::{Architecture, EndpointKind, RemovalWord};
use super::*;
use crate::env::EnvSource;

pub(super) struct Checker<'a> {
    pub(super) file: PathBuf,
    pub(super) text: &'a str,
    pub(super) env: &'a EnvSource,
    pub(super) errors: Vec<ConfigError>,
}

fn is_logical_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric())
}

/// Lambda's rule for variable names: `[a-zA-Z]([a-zA-Z0-9_])+` (API reference,
/// `Environment.Variables`).
fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() >= 2
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The variables Lambda sets itself and refuses in a function's configuration ("Defined
/// runtime environment variables", Lambda developer guide).
const LAMBDA_RESERVED_VARIABLES: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

impl Checker<'_> {
    fn position(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before
            .rfind('\n')
            .map_or(before.len(), |i| before.len() - i - 1)
            + 1;
        (line, column)
    }

    pub(super) fn error(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        let (line, column) = self.position(span.start);
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line,
            column,
            message: message.into(),
            hint,
        });
    }

    /// Parses `${...}` in a string; `env` references are resolved now.
    fn template(&mut self, s: &Spanned<String>) -> Template {
        let text = s.get_ref();
        let mut parts = Vec::new();
        let mut rest = text.as_str();
        while let Some(start) = rest.find("${") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let Some(len) = rest[start..].find('}') else {
                self.error(
                    s.span(),
                    format!("unclosed `${{` in `{text}`"),
                    Some("write references as ${env.VAR} or ${Resource.output}".into()),
                );
                return Template(parts);
            };
            let inner = &rest[start + 2..start + len];
            match inner.split_once('.') {
                Some(("env", var)) if is_env_name(var) => match self.env.get(var) {
                    Some(value) => parts.push(Part::Text(value)),
                    None if self.env.lenient => {
                        eprintln!("warning: environment variable `{var}` is not set; local runs leave it empty");
                    }
                    None => self.error(
                        s.span(),
                        format!("environment variable `{var}` is not set"),
                        Some(format!(
                            "export {var}=..., or add `{var}=...` to .env (or .env.<stage>) beside infra.toml"
                        )),
                    ),
                },
                Some((resource, output)) if is_logical_name(resource) && !output.is_empty() => {
                    parts.push(Part::Ref {
                        resource: resource.to_owned(),
                        output: output.to_owned(),
                    })
                }
                _ => self.error(
                    s.span(),
                    format!("`${{{inner}}}` is not a reference"),
                    Some("write references as ${env.VAR} or ${Resource.output}".into()),
                ),
            }
            rest = &rest[start + len + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Template(parts)
    }

    /// A Neon role or database name: literal, non-empty, at most 63 bytes.
    fn neon_name(&mut self, what: &str, s: &Spanned<String>) -> Template {
        let t = self.template(s);
        if let Some(name) = t.as_literal() {
            if name.is_empty() {
                self.error(
                    s.span(),
                    format!("{what} name is empty"),
                    Some(format!("give the {what} a name")),
                );
            } else if name.len() > MAX_NAME_BYTES {
                self.error(
                    s.span(),
                    format!(
                        "{what} name `{name}` is {} bytes; Neon allows at most {MAX_NAME_BYTES}",
                        name.len()
                    ),
                    Some("use a shorter name".into()),
                );
            }
        }
        t
    }

    pub(super) fn check(&mut self, raw: RawFile) -> Config {
        let app = raw.app.into_inner();
        let app_name = app.name.0;
        let region = app.region.map(|r| r.into_inner());
        let tags = self.tags(app.tags.as_ref());
        let state = self.state(raw.state);
        let lock_timeout = self.migration_settings(raw.migrations.as_ref());

        let mut stages = BTreeMap::new();
        let mut previews = BTreeMap::new();
        let stage_spans: BTreeMap<String, Range<usize>> = raw
            .stages
            .iter()
            .filter_map(|(n, s)| Some((n.get_ref().clone(), s.branch_from.as_ref()?.span())))
            .collect();
        for (name, stage) in raw.stages {
            if !is_stage_name(name.get_ref()) {
                self.error(
                    name.span(),
                    format!("stage name `{}` must be lowercase letters, digits or `-`, starting with a letter (at most 24)", name.get_ref()),
                    Some("for example [stages.prod]".into()),
                );
            }
            if let Some(preview) = self.preview(name.get_ref(), &stage) {
                previews.insert(name.get_ref().clone(), preview);
            }
            let removal = match stage.removal {
                None | Some(RemovalWord::Remove) => Removal::Remove,
                Some(RemovalWord::Retain) => Removal::Retain,
            };
            stages.insert(
                name.into_inner(),
                StagePolicy {
                    removal,
                    protect: stage.protect.unwrap_or(false),
                },
            );
        }

        self.check_bases(&stages, &previews, &stage_spans);

        let mut resources: Vec<(Range<usize>, Resource)> = Vec::new();
        let mut add = |span: Range<usize>,
                       name: String,
                       kind: Kind,
                       spec: Spec,
                       import: Option<String>,
                       deps: BTreeSet<String>| {
            resources.push((
                span,
                Resource {
                    name,
                    kind,
                    spec,
                    import,
                    deps,
                },
            ));
        };

        for (name, p) in raw.neon.project {
            let import = self.import_id(
                &p.import,
                "project ID, e.g. import = \"shiny-wind-028834\"",
                false,
            );
            let pg_version = p.pg_version.map_or(17, |v| v.0);
            let history = p.history_retention_seconds.map(|h| h.0);
            let spec = Spec::Project(ProjectSpec {
                name: p.name.as_ref().map_or_else(
                    || Template::literal(&format!("{app_name}-{}", name.get_ref())),
                    |n| self.template(n),
                ),
                pg_version,
                region_id: p
                    .region_id
                    .as_ref()
                    .map_or_else(|| Template::literal("aws-us-east-1"), |r| self.template(r)),
                org_id: p.org_id.as_ref().map(|o| self.template(o)),
                history_retention_seconds: history,
            });
            if let Some(dir) = &p.migrations
                && let Some((span, set)) = self.migration_set(name.get_ref(), dir, lock_timeout)
            {
                add(span, set.name, set.kind, set.spec, None, set.deps);
            }
            add(
                name.span(),
                name.into_inner(),
                Kind::Project,
                spec,
                import,
                BTreeSet::new(),
            );
        }
        for (name, b) in raw.neon.branch {
            let import = self.import_id(
                &b.import,
                "branch ID, e.g. import = \"br-aged-salad-a5ow2h3x\"",
                false,
            );
            let mut deps = BTreeSet::from([b.project.get_ref().clone()]);
            if let Some(parent) = &b.parent {
                deps.insert(parent.get_ref().clone());
            }
            let spec = Spec::Branch(BranchSpec {
                project: b.project.get_ref().clone(),
                name: b.name.as_ref().map_or_else(
                    || Template::literal(&name.get_ref().to_lowercase()),
                    |n| self.template(n),
                ),
                parent: b.parent.as_ref().map(|p| p.get_ref().clone()),
                copy: None,
            });
            add(
                name.span(),
                name.into_inner(),
                Kind::Branch,
                spec,
                import,
                deps,
            );
        }
        for (name, e) in raw.neon.endpoint {
            let import = self.import_id(
                &e.import,
                "endpoint ID, e.g. import = \"ep-cool-darkness-12345678\"",
                false,
            );
            let read_write = e.kind != Some(EndpointKind::ReadOnly);
            let deps = BTreeSet::from([e.branch.get_ref().clone()]);
            add(
                name.span(),
                name.into_inner(),
                Kind::Endpoint,
                Spec::Endpoint(EndpointSpec {
                    branch: e.branch.get_ref().clone(),
                    read_write,
                }),
                import,
                deps,
            );
        }
        for (name, r) in raw.neon.role {
            let import = self.import_id(&r.import, "role as project_id/branch_id/role_name", true);
            let spec = Spec::Role(RoleSpec {
                branch: r.branch.get_ref().clone(),
                name: self.neon_name("role", &r.name),
            });
            let deps = BTreeSet::from([r.branch.get_ref().clone()]);
            add(
                name.span(),
                name.into_inner(),
                Kind::Role,
                spec,
                import,
                deps,
            );
        }
        for (name, d) in raw.neon.database {
            let import = self.import_id(
                &d.import,
                "database as project_id/branch_id/database_name",
                true,
            );
            let spec = Spec::Database(DatabaseSpec {
                branch: d.branch.get_ref().clone(),
                name: self.neon_name("database", &d.name),
                owner: d.owner.get_ref().clone(),
            });
            let deps = BTreeSet::from([d.branch.get_ref().clone(), d.owner.get_ref().clone()]);
            if let Some(dir) = &d.migrations
                && let Some((span, set)) = self.migration_set(name.get_ref(), dir, lock_timeout)
            {
                add(span, set.name, set.kind, set.spec, None, set.deps);
            }
            add(
                name.span(),
                name.into_inner(),
                Kind::Database,
                spec,
                import,
                deps,
            );
        }
        for (name, props) in raw.link {
            let mut properties = BTreeMap::new();
            let mut deps = BTreeSet::new();
            let mut pooler_hint = true;
            for (key, value) in props {
                // The one key of a link that is not a property the function sees.
                if key.get_ref() == "pooler_hint" {
                    match value.get_ref() {
                        toml::Value::Boolean(b) => pooler_hint = *b,
                        _ => self.error(
                            value.span(),
                            "`pooler_hint` must be true or false",
                            Some(
                                "pooler_hint = false stops the note that suggests Neon's pooled connection string for this link"
                                    .into(),
                            ),
                        ),
                    }
                    continue;
                }
                let text = match value.get_ref() {
                    toml::Value::String(s) => Spanned::new(value.span(), s.clone()),
                    other => Spanned::new(value.span(), other.to_string()),
                };
                let t = self.template(&text);
                deps.extend(t.refs().map(str::to_owned));
                properties.insert(key.into_inner(), t);
            }
            if properties.is_empty() {
                self.error(
                    name.span(),
                    format!("link `{}` has no properties", name.get_ref()),
                    Some(
                        "add one, e.g. connection_string = \"${MyAppProject.connection_uri}\""
                            .into(),
                    ),
                );
            }
            add(
                name.span(),
                name.into_inner(),
                Kind::Link,
                Spec::Link(LinkSpec {
                    properties,
                    pooler_hint,
                }),
                None,
                deps,
            );
        }
        for (name, f) in raw.function {
            let memory = f.memory.map_or(128, |m| m.0);
            let timeout = f.timeout.map_or(10, |t| t.0);
            // Two weeks unless infra.toml says otherwise: never-expiring logs cost forever.
            let log_retention_days = f.log_retention_days.map_or(14, |d| d.0);
            let arm64 = f.architecture == Some(Architecture::Arm64);
            if f.package.get_ref().trim().is_empty() {
                self.error(
                    f.package.span(),
                    "package is empty",
                    Some("name the cargo package to build, e.g. package = \"api\"".into()),
                );
            }
            let mut deps = BTreeSet::new();
            for l in &f.link {
                deps.insert(l.get_ref().clone());
            }
            let mut environment = BTreeMap::new();
            for (key, value) in &f.environment {
                let k = key.get_ref();
                if !is_env_name(k) {
                    self.error(
                        key.span(),
                        format!("`{k}` is not a valid environment variable name"),
                        Some("Lambda allows letters, digits and `_`, starting with a letter, at least two characters".into()),
                    );
                } else if k.starts_with("LINK_") {
                    self.error(
                        key.span(),
                        format!("`{k}` is reserved"),
                        Some("LINK_* variables come from `link = [...]`".into()),
                    );
                } else if LAMBDA_RESERVED_VARIABLES.contains(&k.as_str()) {
                    self.error(
                        key.span(),
                        format!("`{k}` is reserved by Lambda"),
                        Some("Lambda sets it for every function; choose another name".into()),
                    );
                }
                let t = self.template(value);
                deps.extend(t.refs().map(str::to_owned));
                environment.insert(k.clone(), t);
            }
            let url = f.url.as_ref().is_some_and(|u| *u.get_ref());
            if let (Some(u), Some(r)) = (&f.url, &region)
                && url
                && !crate::aws::url::offered_in(r)
            {
                self.error(
                    u.span(),
                    format!("function URLs are not offered in {r} ([app] region)"),
                    Some(crate::aws::url::NO_URLS_HINT.into()),
                );
            }
            let (smoke, keep_releases) = self.release_settings(&f);
            let spec = Spec::Function(FunctionSpec {
                smoke,
                keep_releases,
                package: f.package.get_ref().clone(),
                links: f.link.iter().map(|l| l.get_ref().clone()).collect(),
                url,
                memory,
                timeout,
                log_retention_days,
                reserved_concurrency: f.reserved_concurrency.map(|c| c.0),
                role_permissions_boundary: self
                    .permissions_boundary(f.role_permissions_boundary.as_ref()),
                tags: tags.clone(),
                arm64,
                environment,
            });
            add(
                name.span(),
                name.into_inner(),
                Kind::Function,
                spec,
                None,
                deps,
            );
        }

        // A database's connection URI goes through its branch's endpoint: create that first.
        // Neon creates a branch's roles and databases through its read-write compute: they
        // wait for that endpoint, whatever their names sort as (an implicit dependency).
        let endpoints: Vec<(String, String)> = resources
            .iter()
            .filter_map(|(_, r)| match &r.spec {
                Spec::Endpoint(EndpointSpec {
                    branch,
                    read_write: true,
                }) => Some((branch.clone(), r.name.clone())),
                _ => None,
            })
            .collect();
        for (_, r) in resources.iter_mut() {
            if let Spec::Database(DatabaseSpec { branch, .. })
            | Spec::Role(RoleSpec { branch, .. }) = &r.spec
            {
                let branch = branch.clone();
                r.deps.extend(
                    endpoints
                        .iter()
                        .filter(|(b, _)| *b == branch)
                        .map(|(_, e)| e.clone()),
                );
            }
        }
        super::migrations::functions_wait_for_migrations(&mut resources);
        self.check_names_and_refs(&mut resources);
        let ordered = self.order(resources);
        Config {
            path: self.file.clone(),
            app: app_name,
            region,
            stages,
            previews,
            resources: ordered,
            state,
        }
    }

    fn import_id(
        &mut self,
        import: &Option<Spanned<String>>,
        what: &str,
        triple: bool,
    ) -> Option<String> {
        let import = import.as_ref()?;
        let id = import.get_ref();
        let ok = if triple {
            let parts: Vec<&str> = id.split('/').collect();
            parts.len() == 3 && parts.iter().all(|p| !p.is_empty())
        } else {
            !id.is_empty()
                && id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        if !ok {
            self.error(
                import.span(),
                format!("`import = \"{id}\"` is not a valid {what}"),
                Some(format!("give the {what}")),
            );
        }
        Some(id.clone())
    }

    fn check_names_and_refs(&mut self, resources: &mut [(Range<usize>, Resource)]) {
        let mut seen: BTreeMap<String, Kind> = BTreeMap::new();
        for (span, r) in resources.iter() {
            // A migration set is named after its database (`X/migrations`).
            if r.kind != Kind::Migrations && !is_logical_name(&r.name) {
                self.error(span.clone(), format!("resource name `{}` must start with a letter and hold only letters and digits", r.name), Some("for example MyAppProject".into()));
            }
            if let Some(kind) = seen.get(&r.name) {
                self.error(
                    span.clone(),
                    format!("`{}` is already the name of a {}", r.name, kind.label()),
                    Some("names are unique across the whole file; rename one".into()),
                );
            } else {
                seen.insert(r.name.clone(), r.kind);
            }
        }
        let names = seen.keys().cloned().collect::<Vec<_>>().join(", ");
        for (span, r) in resources.iter() {
            let mut structural: Vec<(&str, &str, Kind)> = Vec::new();
            match &r.spec {
                Spec::Branch(BranchSpec {
                    project, parent, ..
                }) => {
                    structural.push(("project", project, Kind::Project));
                    if let Some(p) = parent {
                        structural.push(("parent", p, Kind::Branch));
                    }
                }
                Spec::Endpoint(EndpointSpec { branch, .. })
                | Spec::Role(RoleSpec { branch, .. }) => {
                    structural.push(("branch", branch, Kind::Branch))
                }
                Spec::Database(DatabaseSpec { branch, owner, .. }) => {
                    structural.push(("branch", branch, Kind::Branch));
                    structural.push(("owner", owner, Kind::Role));
                }
                Spec::Function(FunctionSpec { links, .. }) => {
                    for l in links {
                        structural.push(("link", l, Kind::Link));
                    }
                }
                _ => {}
            }
            for (field, target, kind) in structural {
                match seen.get(target) {
                    None => self.error(
                        span.clone(),
                        format!("`{}`: {field} `{target}` is not defined", r.name),
                        Some(format!("defined names: {names}")),
                    ),
                    Some(k) if *k != kind => self.error(
                        span.clone(),
                        format!(
                            "`{}`: {field} `{target}` is a {}, not a {}",
                            r.name,
                            k.label(),
                            kind.label()
                        ),
                        None,
                    ),
                    Some(_) => {}
                }
            }
            if let Spec::Database(DatabaseSpec { branch, owner, .. }) = &r.spec
                && let Some(role) = resources.iter().find(|(_, o)| &o.name == owner)
                && let Spec::Role(RoleSpec {
                    branch: role_branch,
                    ..
                }) = &role.1.spec
                && role_branch != branch
            {
                self.error(
                    span.clone(),
                    format!(
                        "`{}`: owner `{owner}` belongs to branch `{role_branch}`, not `{branch}`",
                        r.name
                    ),
                    Some("a database's owner must be a role of the same branch".into()),
                );
            }
            for t in templates(&r.spec) {
                for p in &t.0 {
                    if let Part::Ref { resource, output } = p {
                        match seen.get(resource) {
                            None => self.error(span.clone(), format!("`{}` refers to `${{{resource}.{output}}}`, but `{resource}` is not defined", r.name), Some(format!("defined names: {names}"))),
                            Some(kind) if !kind.outputs().contains(&output.as_str()) => self.error(
                                span.clone(),
                                format!("`{resource}` ({}) has no output `{output}`", kind.label()),
                                Some(format!("its outputs: {}", kind.outputs().join(", "))),
                            ),
                            Some(_) => {}
                        }
                    }
                }
            }
        }
    }

    /// Orders resources so each comes after what it needs; reports cycles.
    fn order(&mut self, resources: Vec<(Range<usize>, Resource)>) -> Vec<Resource> {
        let spans: BTreeMap<String, Range<usize>> = resources
            .iter()
            .map(|(s, r)| (r.name.clone(), s.clone()))
            .collect();
        let by_name: BTreeMap<String, Resource> = resources
            .into_iter()
            .map(|(_, r)| (r.name.clone(), r))
            .collect();
        let mut done = BTreeSet::new();
        let mut out = Vec::new();
        let mut reported = false;
        fn visit(
            name: &str,
            by_name: &BTreeMap<String, Resource>,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
            out: &mut Vec<Resource>,
        ) -> Result<(), Vec<String>> {
            if done.contains(name) {
                return Ok(());
            }
            if let Some(i) = path.iter().position(|p| p == name) {
                let mut cycle = path[i..].to_vec();
                cycle.push(name.to_owned());
                return Err(cycle);
            }
            let Some(r) = by_name.get(name) else {
                return Ok(());
            };
            path.push(name.to_owned());
            for dep in &r.deps {
                visit(dep, by_name, path, done, out)?;
            }
            path.pop();
            done.insert(name.to_owned());
            out.push(r.clone());
            Ok(())
        }
        for name in by_name.keys() {
            if let Err(cycle) = visit(name, &by_name, &mut Vec::new(), &mut done, &mut out)
                && !reported
            {
                reported = true;
                let span = spans.get(&cycle[0]).cloned().unwrap_or(0..0);
                self.error(
                    span,
                    format!(
                        "resources depend on each other in a cycle: {}",
                        cycle.join(" -> ")
                    ),
                    Some("break the cycle: one of them must not reference the other".into()),
                );
            }
        }
        out
    }
}

fn is_stage_name(s: &str) -> bool {
    s.len() <= 24
        && s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Stage names given on the command line follow the same rule as `[stages.<name>]`.
pub fn valid_stage_name(s: &str) -> bool {
    is_stage_name(s)
}

/// Every template inside a spec.
fn templates(spec: &Spec) -> Vec<&Template> {
    match spec {
        Spec::Project(ProjectSpec {
            name,
            region_id,
            org_id,
            ..
        }) => {
            let mut v = vec![name, region_id];
            v.extend(org_id.iter());
            v
        }
        Spec::Branch(BranchSpec { name, .. })
        | Spec::Role(RoleSpec { name, .. })
        | Spec::Database(DatabaseSpec { name, .. }) => {
            vec![name]
        }
        Spec::Endpoint(_) | Spec::PreviewBranch(_) | Spec::Migrations(_) => vec![],
        Spec::Link(LinkSpec { properties, .. }) => properties.values().collect(),
        Spec::Function(FunctionSpec { environment, .. }) => environment.values().collect(),
    }
}
