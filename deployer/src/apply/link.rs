//! A link: named properties (usually a connection string) resolved from other resources'
//! outputs; a function that links it sees them as `LINK_<Name>`. Nothing remote.

use super::{Recorded, Step, StepCause};
use crate::config::{Resource, Spec};
use crate::plan::resolve_template;

pub fn converge(step: &Step<'_>, r: &Resource) -> Result<Recorded, StepCause> {
    let Spec::Link { properties, .. } = &r.spec else {
        unreachable!("link::converge is called for links")
    };
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
