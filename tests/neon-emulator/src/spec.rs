//! Neon's official OpenAPI document, used to check request bodies (as Neon does) and, in
//! the conformance tests, every response body.
//!
//! OpenAPI 3.0 schemas are JSON Schema draft 4 plus `nullable`; `nullable: true` is rewritten
//! to a `null` type so a standard validator can use them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use jsonschema::{Draft, Validator};
use serde_json::{Value, json};

/// Where the spec is when no other path is given: `shared/neon-api/openapi.json` beside the
/// repository, overridable with `NEON_OPENAPI_SPEC`.
pub fn default_spec_path() -> PathBuf {
    if let Some(path) = std::env::var_os("NEON_OPENAPI_SPEC") {
        return PathBuf::from(path);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/neon-api/openapi.json")
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error(
        "cannot read the Neon API spec at `{path}`; hint: pass --spec or set NEON_OPENAPI_SPEC"
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the Neon API spec at `{path}` is not valid JSON")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the spec has no {0}")]
    Missing(String),
    #[error("cannot compile the schema for {what}: {message}")]
    Compile { what: String, message: String },
}

/// The loaded spec with compiled validators, cached per schema.
pub struct Spec {
    doc: Value,
    validators: Mutex<HashMap<String, Arc<Validator>>>,
}

impl Spec {
    /// Loads the spec once per process and path.
    pub fn load(path: &Path) -> Result<Arc<Spec>, SpecError> {
        static LOADED: OnceLock<Mutex<HashMap<PathBuf, Arc<Spec>>>> = OnceLock::new();
        let cache = LOADED.get_or_init(Default::default);
        if let Some(spec) = cache.lock().unwrap().get(path) {
            return Ok(spec.clone());
        }
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut doc: Value = serde_json::from_str(&text).map_err(|source| SpecError::Parse {
            path: path.to_owned(),
            source,
        })?;
        rewrite_nullable(&mut doc);
        let spec = Arc::new(Spec {
            doc,
            validators: Default::default(),
        });
        cache.lock().unwrap().insert(path.to_owned(), spec.clone());
        Ok(spec)
    }

    fn operation(&self, method: &str, template: &str) -> Result<&Value, SpecError> {
        self.doc
            .get("paths")
            .and_then(|p| p.get(template))
            .and_then(|p| p.get(method.to_ascii_lowercase()))
            .ok_or_else(|| SpecError::Missing(format!("operation {method} {template}")))
    }

    /// The request body schema of an operation, if it takes one, and whether it is required.
    fn request_schema(
        &self,
        method: &str,
        template: &str,
    ) -> Result<Option<(Value, bool)>, SpecError> {
        let op = self.operation(method, template)?;
        let Some(body) = op.get("requestBody") else {
            return Ok(None);
        };
        let body = self.deref(body);
        let required = body
            .get("required")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(body
            .pointer("/content/application~1json/schema")
            .map(|s| (s.clone(), required)))
    }

    /// The response schema for `status` (or the operation's `default`).
    fn response_schema(
        &self,
        method: &str,
        template: &str,
        status: u16,
    ) -> Result<Value, SpecError> {
        let op = self.operation(method, template)?;
        let responses = op
            .get("responses")
            .ok_or_else(|| SpecError::Missing(format!("responses of {method} {template}")))?;
        let response = responses
            .get(status.to_string())
            .or_else(|| responses.get("default"))
            .ok_or_else(|| {
                SpecError::Missing(format!("response {status} of {method} {template}"))
            })?;
        let response = self.deref(response);
        Ok(response
            .pointer("/content/application~1json/schema")
            .cloned()
            // A response documented without a body (204).
            .unwrap_or(json!({})))
    }

    fn deref<'a>(&'a self, mut v: &'a Value) -> &'a Value {
        while let Some(r) = v.get("$ref").and_then(Value::as_str) {
            match r.strip_prefix('#').and_then(|p| self.doc.pointer(p)) {
                Some(target) => v = target,
                None => break,
            }
        }
        v
    }

    fn validator(&self, key: &str, schema: &Value) -> Result<Arc<Validator>, SpecError> {
        if let Some(v) = self.validators.lock().unwrap().get(key) {
            return Ok(v.clone());
        }
        // The schema goes into the document so its `$ref`s resolve against the whole spec;
        // in draft 4 a root `$ref` replaces its siblings, so only the schema applies.
        let mut root = self.doc.clone();
        root["components"]["schemas"]["__emulator_target"] = schema.clone();
        root["$ref"] = json!("#/components/schemas/__emulator_target");
        let validator = jsonschema::options()
            .with_draft(Draft::Draft4)
            .should_validate_formats(true)
            .build(&root)
            .map_err(|e| SpecError::Compile {
                what: key.to_owned(),
                message: e.to_string(),
            })?;
        let validator = Arc::new(validator);
        self.validators
            .lock()
            .unwrap()
            .insert(key.to_owned(), validator.clone());
        Ok(validator)
    }

    /// Checks a request body as Neon does; `Err` holds a message naming the first bad field.
    pub fn check_request(
        &self,
        method: &str,
        template: &str,
        body: Option<&Value>,
    ) -> Result<(), String> {
        let Some((schema, required)) = self
            .request_schema(method, template)
            .map_err(|e| e.to_string())?
        else {
            return Ok(());
        };
        let Some(body) = body else {
            return if required {
                Err("request body is required".to_owned())
            } else {
                Ok(())
            };
        };
        let validator = self
            .validator(&format!("request {method} {template}"), &schema)
            .map_err(|e| e.to_string())?;
        match validator.iter_errors(body).next() {
            None => Ok(()),
            Some(e) => Err(describe(&e.instance_path().to_string(), &e.to_string())),
        }
    }

    /// Every way `body` breaks the documented response schema for `status` (empty: conforms).
    pub fn response_violations(
        &self,
        method: &str,
        template: &str,
        status: u16,
        body: &Value,
    ) -> Result<Vec<String>, SpecError> {
        let schema = self.response_schema(method, template, status)?;
        let validator =
            self.validator(&format!("response {status} {method} {template}"), &schema)?;
        Ok(validator
            .iter_errors(body)
            .map(|e| describe(&e.instance_path().to_string(), &e.to_string()))
            .collect())
    }
}

/// `/project/pg_version` + message -> `project.pg_version: message`.
fn describe(pointer: &str, message: &str) -> String {
    let field = pointer.trim_start_matches('/').replace('/', ".");
    if field.is_empty() {
        format!("request body: {message}")
    } else {
        format!("{field}: {message}")
    }
}

/// `{"type": "string", "nullable": true}` -> `{"type": ["string", "null"]}`, everywhere.
fn rewrite_nullable(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if map.get("nullable") == Some(&Value::Bool(true)) {
                map.remove("nullable");
                match map.get("type").cloned() {
                    Some(Value::String(t)) => {
                        map.insert("type".into(), json!([t, "null"]));
                    }
                    Some(_) => {}
                    None => {
                        // `nullable` next to `$ref`/`allOf`: accept null or the schema.
                        let inner = Value::Object(std::mem::take(map));
                        map.insert("anyOf".into(), json!([{ "type": "null" }, inner]));
                    }
                }
                if let Some(Value::Array(values)) = map.get_mut("enum") {
                    values.push(Value::Null);
                }
            }
            for child in map.values_mut() {
                rewrite_nullable(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_nullable),
        _ => {}
    }
}
