//! The Lambda function: its environment (links and `environment`, checked against Lambda's
//! 4 KB limit before any AWS call), its code (built with cargo-lambda off the async
//! threads), its IAM role, the function itself and its public URL.

use std::collections::HashMap;

use super::records::{FunctionIds, FunctionOutputs};
use super::{Recorded, Step, StepCause};
use crate::aws::{self, lambda};
use crate::config::{Resource, Spec};
use crate::plan::function_environment;
use crate::state::ResourceState;

/// Lambda's limit on the total size of a function's environment variables.
pub const LAMBDA_ENV_LIMIT_BYTES: usize = 4 * 1024;

/// Builds and converges the function; the record, and whether anything changed in AWS.
pub async fn converge(step: &Step<'_>, r: &Resource) -> Result<(Recorded, bool), StepCause> {
    let Spec::Function {
        package,
        links,
        url,
        memory,
        timeout,
        arm64,
        environment,
    } = &r.spec
    else {
        unreachable!("function::converge is called for functions")
    };
    let env = function_environment(links, environment, &step.state)
        .ok_or_else(|| StepCause::Unresolved(format!("{} (a link or variable)", r.name)))?;
    let size: usize = env.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > LAMBDA_ENV_LIMIT_BYTES {
        return Err(StepCause::EnvTooLarge {
            function: r.name.clone(),
            size,
        });
    }
    let (dir, pkg, arm) = (step.project_dir.to_owned(), package.clone(), *arm64);
    let artifact =
        tokio::task::spawn_blocking(move || crate::build::build(&dir, &pkg, arm)).await??;
    let name = aws::physical_name(&step.config.app, step.stage, &r.name);
    let aws = step.aws()?;
    let (role_arn, role_is_new) = aws::iam::upsert_role(&aws.iam, &name).await?;
    let spec = lambda::FunctionSpec {
        name: name.clone(),
        role_arn,
        zip: artifact.zip,
        code_sha256: artifact.sha256_base64,
        arm64: *arm64,
        memory: *memory as i32,
        timeout: *timeout as i32,
        environment: env.into_iter().collect::<HashMap<_, _>>(),
    };
    let (arn, mut changes) = lambda::upsert_function(&aws.lambda, &spec, role_is_new).await?;
    let url = lambda::converge_url(&aws.lambda, &name, *url, &mut changes).await?;
    let outputs = FunctionOutputs {
        name: name.clone(),
        arn,
        url,
    };
    Ok((
        Recorded::typed(
            &FunctionIds {
                function_name: name,
            },
            &outputs,
        ),
        changes.any() || role_is_new,
    ))
}

pub async fn delete(step: &Step<'_>, rs: &ResourceState) -> Result<(), StepCause> {
    let name = rs.id(step.name, "function_name")?;
    let aws = step.aws()?;
    lambda::delete_function(&aws.lambda, name).await?;
    aws::iam::delete_role(&aws.iam, name).await?;
    Ok(())
}
