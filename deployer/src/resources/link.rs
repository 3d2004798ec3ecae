//! A link: named properties (usually a connection string) resolved from other resources'
//! outputs; a function that links it sees them as `LINK_<Name>`. Nothing remote.

use serde_json::{Map, Value, json};

use super::{Recorded, Step, StepCause, resolve_template};
use crate::config::{LinkSpec, Resource, Template};

/// Its properties are secrets (a connection string): diffs say only that they changed.
pub const SECRET_INPUTS: &[&str] = &["properties"];

pub fn desired_inputs(l: &LinkSpec, resolve: impl Fn(&Template) -> Value) -> Value {
    json!({
        "properties": l.properties
            .iter()
            .map(|(k, t)| (k.clone(), resolve(t)))
            .collect::<Map<_, _>>(),
    })
}

pub fn converge(step: &Step<'_>, r: &Resource, spec: &LinkSpec) -> Result<Recorded, StepCause> {
    let LinkSpec { properties, .. } = spec;
    let mut outputs = std::collections::BTreeMap::new();
    for (k, t) in properties {
        let value = resolve_template(t, |n| step.state.resources.get(n).map(|r| &r.outputs))
            .ok_or_else(|| StepCause::Unresolved(format!("{}.{k}", r.name)))?;
        outputs.insert(k.clone(), value);
    }
    Ok(Recorded {
        ids: Default::default(),
        outputs,
    })
}
