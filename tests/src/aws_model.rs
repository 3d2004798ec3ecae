//! What moto leaves out of Lambda and IAM, modelled in front of it: network latency, a new
//! function's `Pending` window, an update's `InProgress` window, IAM propagation, a function
//! gone `Inactive` or whose last update `Failed`, and Lambda's own check of the environment.
//!
//! The behaviours, as AWS documents them:
//! - Lambda function states (<https://docs.aws.amazon.com/lambda/latest/dg/functions-states.html>):
//!   a new function is `Pending` until `Active`, or `Failed` when its creation failed ("you
//!   must delete and recreate the function"; it takes no change meanwhile); after `UpdateFunctionCode` or
//!   `UpdateFunctionConfiguration`, `LastUpdateStatus` is `InProgress` until `Successful` (or
//!   `Failed`); while either lasts, other changes to the function answer 409
//!   `ResourceConflictException`. An idle function becomes `Inactive`; an update still works.
//! - IAM is eventually consistent
//!   (<https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency>):
//!   for a while after `CreateRole`, Lambda answers `CreateFunction` with 400
//!   `InvalidParameterValueException` "The role defined for the function cannot be assumed by
//!   Lambda.", and IAM itself may answer `NoSuchEntity` for the new role.
//! - Environment variables (<https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html>):
//!   the JSON of the map may not exceed 4 KB; Lambda's error echoes it ("String measured").

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::Response;

use crate::aws_answers::{iam_error, lambda_error, policy_as_aws_writes_it};

/// Lambda's limit on the JSON of a function's environment variables.
pub const LAMBDA_ENV_LIMIT: usize = 4096;

/// How long each modelled behaviour lasts; all zero is moto's instant behaviour.
#[derive(Debug, Clone)]
pub struct Timings {
    /// Added to every call, as a network round trip.
    pub latency: Duration,
    /// A new function stays `Pending` this long.
    pub pending: Duration,
    /// An update stays `InProgress` this long.
    pub in_progress: Duration,
    /// A new role cannot be assumed by Lambda for this long.
    pub iam_propagation: Duration,
    /// IAM answers `NoSuchEntity` for a new role's policy calls this long.
    pub iam_read_lag: Duration,
    /// Lambda's environment limit; tests lower it to reach AWS's own error.
    pub env_limit: usize,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            latency: Duration::ZERO,
            pending: Duration::ZERO,
            in_progress: Duration::ZERO,
            iam_propagation: Duration::ZERO,
            iam_read_lag: Duration::ZERO,
            env_limit: LAMBDA_ENV_LIMIT,
        }
    }
}

impl Timings {
    /// Windows of a few seconds: long enough that a deployer which does not wait fails.
    pub fn realistic() -> Self {
        Timings {
            latency: Duration::from_millis(20),
            pending: Duration::from_secs(2),
            in_progress: Duration::from_secs(2),
            iam_propagation: Duration::from_secs(4),
            iam_read_lag: Duration::from_millis(500),
            env_limit: LAMBDA_ENV_LIMIT,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Busy {
    Creating,
    Updating,
}

#[derive(Debug, Default)]
struct Function {
    busy: Option<(Busy, Instant)>,
    inactive: bool,
    failed_update: Option<String>,
    /// Its creation failed (`State` Failed): Lambda's reason and reason code. Such a
    /// function takes no change; it must be deleted and created again.
    failed_creation: Option<(String, String)>,
    /// The statement IDs of its resource policy, and whether it has a URL: Lambda refuses a
    /// second statement with one ID, or a second URL, with 409 ResourceConflictException,
    /// where moto appends the statement and overwrites the URL.
    sids: std::collections::BTreeSet<String>,
    has_url: bool,
}

/// The model's state: timings, functions and roles it has seen.
#[derive(Debug, Default)]
pub struct Model {
    pub timings: Timings,
    /// S3's behaviours that moto lacks.
    pub s3: crate::s3_model::S3Model,
    functions: HashMap<String, Function>,
    /// Functions whose next creation fails once its Pending window ends: reason, code.
    creations_to_fail: HashMap<String, (String, String)>,
    /// Lambda operations (`AddPermission`, `CreateFunctionUrlConfig`) whose next reply is
    /// lost after Lambda applied them, once per entry: the caller gets 500 ServiceException
    /// and the SDK sends the call again.
    pub lose_lambda_replies: Vec<String>,
    roles: HashMap<String, Instant>,
    /// The zip each function was last given, as uploaded (moto keeps it out of reach).
    code: HashMap<String, Vec<u8>>,
}

/// One Lambda call, recognised from its REST path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LambdaCall {
    CreateFunction,
    GetFunction(String),
    DeleteFunction(String),
    GetConfiguration(String),
    UpdateConfiguration(String),
    UpdateCode(String),
    GetPolicy(String),
    /// AddPermission: a statement added to the function's resource policy.
    AddPermission(String),
    /// CreateFunctionUrlConfig.
    CreateUrl(String),
    /// A delete of one of a function's parts (its URL, a permission).
    DeletePart(String),
    /// Invoke: Lambda's execution side, which the proxy runs itself (moto cannot).
    Invoke(String),
    /// Any other call on one function (URL, permissions...), and whether it changes anything.
    Other {
        function: String,
        mutating: bool,
    },
    Unknown,
}

impl LambdaCall {
    pub fn parse(method: &str, path: &str) -> LambdaCall {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let name = |s: &str| {
            let s = percent_decode(s);
            // A function ARN names the function after its last `function:`.
            match s.rsplit_once("function:") {
                Some((_, n)) => n.split(':').next().unwrap_or(n).to_owned(),
                None => s,
            }
        };
        match (method, parts.as_slice()) {
            ("POST", [_, "functions"]) => LambdaCall::CreateFunction,
            ("GET", [_, "functions", f]) => LambdaCall::GetFunction(name(f)),
            ("DELETE", [_, "functions", f]) => LambdaCall::DeleteFunction(name(f)),
            ("GET", [_, "functions", f, "configuration"]) => LambdaCall::GetConfiguration(name(f)),
            ("PUT", [_, "functions", f, "configuration"]) => {
                LambdaCall::UpdateConfiguration(name(f))
            }
            ("PUT", [_, "functions", f, "code"]) => LambdaCall::UpdateCode(name(f)),
            ("GET", [_, "functions", f, "policy"]) => LambdaCall::GetPolicy(name(f)),
            ("POST", [_, "functions", f, "policy"]) => LambdaCall::AddPermission(name(f)),
            ("POST", [_, "functions", f, "url"]) => LambdaCall::CreateUrl(name(f)),
            ("POST", [_, "functions", f, "invocations"]) => LambdaCall::Invoke(name(f)),
            ("DELETE", [_, "functions", f, _, ..]) => LambdaCall::DeletePart(name(f)),
            (m, [_, "functions", f, ..]) => LambdaCall::Other {
                function: name(f),
                mutating: m != "GET",
            },
            _ => LambdaCall::Unknown,
        }
    }
}

/// The parts of a Lambda path after `/<version>/functions/<name>/`.
fn path_tail(path: &str) -> Vec<&str> {
    path.trim_matches('/').split('/').skip(3).collect()
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

impl Model {
    /// Marks a function idle, as Lambda does after weeks without invocations.
    pub fn make_inactive(&mut self, function: &str) {
        self.functions
            .entry(function.to_owned())
            .or_default()
            .inactive = true;
    }

    /// Marks the function's last update `Failed` with `reason`.
    pub fn fail_last_update(&mut self, function: &str, reason: &str) {
        self.functions
            .entry(function.to_owned())
            .or_default()
            .failed_update = Some(reason.to_owned());
    }

    /// The next creation of `function` ends `Failed` (say its subnet ran out of
    /// addresses), with Lambda's `reason` and `code`.
    pub fn fail_next_creation(&mut self, function: &str, reason: &str, code: &str) {
        self.creations_to_fail
            .insert(function.to_owned(), (reason.to_owned(), code.to_owned()));
    }

    /// The zip the function was last given.
    pub fn code(&self, function: &str) -> Option<Vec<u8>> {
        self.code.get(function).cloned()
    }

    fn remember_code(&mut self, function: &str, zip_file: Option<&str>) {
        use base64::Engine;
        if let Some(zip) =
            zip_file.and_then(|z| base64::engine::general_purpose::STANDARD.decode(z).ok())
        {
            self.code.insert(function.to_owned(), zip);
        }
    }

    fn busy(&mut self, function: &str) -> Option<Busy> {
        let f = self.functions.get_mut(function)?;
        match f.busy {
            Some((b, until)) if Instant::now() < until => Some(b),
            _ => {
                f.busy = None;
                None
            }
        }
    }

    /// IAM: an answer of the model's own, or `None` to forward. `role` is the call's RoleName.
    pub fn before_iam(&mut self, action: &str, role: Option<&str>) -> Option<Response> {
        let role = role?;
        let created = *self.roles.get(role)?;
        let lagging = matches!(
            action,
            "AttachRolePolicy" | "ListAttachedRolePolicies" | "PutRolePolicy"
        );
        (lagging && created.elapsed() < self.timings.iam_read_lag).then(|| {
            iam_error(
                StatusCode::NOT_FOUND,
                "NoSuchEntity",
                &format!("The role with name {role} cannot be found."),
            )
        })
    }

    /// IAM: remembers when a role was created.
    pub fn after_iam(&mut self, action: &str, role: Option<&str>, status: StatusCode) {
        if let (true, "CreateRole", Some(role)) = (status.is_success(), action, role) {
            self.roles.insert(role.to_owned(), Instant::now());
        }
        if let (true, "DeleteRole", Some(role)) = (status.is_success(), action, role) {
            self.roles.remove(role);
        }
    }

    /// Lambda: an answer of the model's own, or `None` to forward.
    pub fn before_lambda(&mut self, call: &LambdaCall, body: &[u8]) -> Option<Response> {
        match call {
            LambdaCall::CreateFunction => {
                let request: serde_json::Value = serde_json::from_slice(body).ok()?;
                if let Some(answer) = self.check_environment(&request) {
                    return Some(answer);
                }
                let role = request["Role"].as_str().unwrap_or_default();
                let role_name = role.rsplit('/').next().unwrap_or_default();
                if let Some(created) = self.roles.get(role_name)
                    && created.elapsed() < self.timings.iam_propagation
                {
                    return Some(lambda_error(
                        StatusCode::BAD_REQUEST,
                        "InvalidParameterValueException",
                        "The role defined for the function cannot be assumed by Lambda.",
                    ));
                }
                None
            }
            LambdaCall::UpdateConfiguration(f) => {
                if let Some(answer) = self.conflict(f) {
                    return Some(answer);
                }
                let request: serde_json::Value = serde_json::from_slice(body).ok()?;
                self.check_environment(&request)
            }
            LambdaCall::AddPermission(f) => {
                if let Some(answer) = self.conflict(f) {
                    return Some(answer);
                }
                let request: serde_json::Value = serde_json::from_slice(body).ok()?;
                let sid = request["StatementId"].as_str()?;
                self.functions.get(f)?.sids.contains(sid).then(|| {
                    lambda_error(
                        StatusCode::CONFLICT,
                        "ResourceConflictException",
                        &format!("The statement id ({sid}) provided already exists. Please specify a new statement id, or remove the existing statement."),
                    )
                })
            }
            LambdaCall::CreateUrl(f) => {
                if let Some(answer) = self.conflict(f) {
                    return Some(answer);
                }
                self.functions.get(f)?.has_url.then(|| {
                    lambda_error(
                        StatusCode::CONFLICT,
                        "ResourceConflictException",
                        &format!("Failed to create function url config for [functionArn = arn:aws:lambda:us-east-1:123456789012:function:{f}]. Error message:  FunctionUrlConfig exists for this Lambda function"),
                    )
                })
            }
            LambdaCall::UpdateCode(f)
            | LambdaCall::Other {
                function: f,
                mutating: true,
            } => self.conflict(f),
            // Lambda's guide says a function whose creation failed must be deleted: its
            // deletes go through; only a busy function refuses them.
            LambdaCall::DeletePart(f) if self.busy(f).is_some() => self.conflict(f),
            _ => None,
        }
    }

    fn conflict(&mut self, function: &str) -> Option<Response> {
        let failed = self
            .functions
            .get(function)
            .is_some_and(|f| f.failed_creation.is_some());
        if failed && self.busy(function).is_none() {
            return Some(lambda_error(
                StatusCode::CONFLICT,
                "ResourceConflictException",
                "The operation cannot be performed at this time. The function is currently in the following state: Failed",
            ));
        }
        let message = match self.busy(function)? {
            Busy::Creating => {
                "The operation cannot be performed at this time. The function is currently in the following state: Pending".to_owned()
            }
            Busy::Updating => format!(
                "The operation cannot be performed at this time. An update is in progress for resource: arn:aws:lambda:us-east-1:123456789012:function:{function}"
            ),
        };
        Some(lambda_error(
            StatusCode::CONFLICT,
            "ResourceConflictException",
            &message,
        ))
    }

    fn check_environment(&self, request: &serde_json::Value) -> Option<Response> {
        let variables = request.get("Environment")?.get("Variables")?;
        let measured = serde_json::to_string(variables).ok()?;
        (measured.len() > self.timings.env_limit).then(|| {
            lambda_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                &format!(
                    "Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit. String measured: {measured}"
                ),
            )
        })
    }

    /// Lambda: a lost reply in place of Lambda's answer to `call`, which it applied.
    pub fn lost_lambda_reply(&mut self, call: &LambdaCall) -> Option<Response> {
        let operation = match call {
            LambdaCall::AddPermission(_) => "AddPermission",
            LambdaCall::CreateUrl(_) => "CreateFunctionUrlConfig",
            _ => return None,
        };
        let i = self
            .lose_lambda_replies
            .iter()
            .position(|o| o == operation)?;
        self.lose_lambda_replies.remove(i);
        Some(lambda_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceException",
            "An internal error occurred. Please try again.",
        ))
    }

    /// Lambda: records what a successful call started, and rewrites the state fields of a
    /// function's configuration in the answer.
    pub fn after_lambda(
        &mut self,
        call: &LambdaCall,
        path: &str,
        request: &[u8],
        status: StatusCode,
        body: &[u8],
    ) -> Option<Vec<u8>> {
        if !status.is_success() {
            return None;
        }
        let now = Instant::now();
        let function = match call {
            LambdaCall::CreateFunction => {
                let request: serde_json::Value = serde_json::from_slice(request).ok()?;
                let name = request["FunctionName"].as_str()?.to_owned();
                self.remember_code(&name, request["Code"]["ZipFile"].as_str());
                let failed_creation = self.creations_to_fail.remove(&name);
                self.functions.insert(
                    name.clone(),
                    Function {
                        busy: Some((Busy::Creating, now + self.timings.pending)),
                        failed_creation,
                        ..Function::default()
                    },
                );
                name
            }
            LambdaCall::UpdateConfiguration(f) | LambdaCall::UpdateCode(f) => {
                if matches!(call, LambdaCall::UpdateCode(_)) {
                    let request: serde_json::Value =
                        serde_json::from_slice(request).unwrap_or_default();
                    self.remember_code(f, request["ZipFile"].as_str());
                }
                let entry = self.functions.entry(f.clone()).or_default();
                entry.busy = Some((Busy::Updating, now + self.timings.in_progress));
                entry.inactive = false;
                entry.failed_update = None;
                f.clone()
            }
            LambdaCall::DeleteFunction(f) => {
                self.functions.remove(f);
                return None;
            }
            LambdaCall::AddPermission(f) => {
                let request: serde_json::Value = serde_json::from_slice(request).ok()?;
                let sid = request["StatementId"].as_str()?.to_owned();
                self.functions
                    .entry(f.clone())
                    .or_default()
                    .sids
                    .insert(sid);
                return None;
            }
            LambdaCall::CreateUrl(f) => {
                self.functions.entry(f.clone()).or_default().has_url = true;
                return None;
            }
            LambdaCall::DeletePart(f) => {
                if let Some(function) = self.functions.get_mut(f) {
                    match path_tail(path)[..] {
                        ["url"] => function.has_url = false,
                        ["policy", sid] => {
                            function.sids.remove(&percent_decode(sid));
                        }
                        _ => {}
                    }
                }
                return None;
            }
            LambdaCall::GetFunction(f) | LambdaCall::GetConfiguration(f) => f.clone(),
            LambdaCall::GetPolicy(_) => return policy_as_aws_writes_it(body),
            _ => return None,
        };
        let mut answer: serde_json::Value = serde_json::from_slice(body).ok()?;
        let configuration = match call {
            LambdaCall::GetFunction(_) => answer.get_mut("Configuration")?,
            _ => &mut answer,
        };
        self.describe(&function, configuration.as_object_mut()?);
        serde_json::to_vec(&answer).ok()
    }

    /// Sets `State` and `LastUpdateStatus` (and their reasons) as Lambda would report them.
    fn describe(&mut self, function: &str, c: &mut serde_json::Map<String, serde_json::Value>) {
        use serde_json::json;
        let busy = self.busy(function);
        let Some(f) = self.functions.get(function) else {
            return;
        };
        for key in [
            "StateReason",
            "StateReasonCode",
            "LastUpdateStatusReason",
            "LastUpdateStatusReasonCode",
        ] {
            c.remove(key);
        }
        c.insert("State".into(), json!("Active"));
        c.insert("LastUpdateStatus".into(), json!("Successful"));
        match busy {
            Some(Busy::Creating) => {
                c.insert("State".into(), json!("Pending"));
                c.insert(
                    "StateReason".into(),
                    json!("The function is being created."),
                );
                c.insert("StateReasonCode".into(), json!("Creating"));
                c.insert("LastUpdateStatus".into(), json!("InProgress"));
            }
            Some(Busy::Updating) => {
                c.insert("LastUpdateStatus".into(), json!("InProgress"));
                c.insert(
                    "LastUpdateStatusReason".into(),
                    json!("The function is being updated."),
                );
            }
            None => {}
        }
        if let (Some((reason, code)), None) = (&f.failed_creation, busy) {
            c.insert("State".into(), json!("Failed"));
            c.insert("StateReason".into(), json!(reason));
            c.insert("StateReasonCode".into(), json!(code));
            c.insert("LastUpdateStatus".into(), json!("Failed"));
            c.insert("LastUpdateStatusReason".into(), json!(reason));
            c.insert("LastUpdateStatusReasonCode".into(), json!(code));
        }
        if f.inactive {
            c.insert("State".into(), json!("Inactive"));
            c.insert(
                "StateReason".into(),
                json!("The function is inactive because it has not been invoked for a while."),
            );
            c.insert("StateReasonCode".into(), json!("Idle"));
        }
        if let Some(reason) = &f.failed_update {
            c.insert("LastUpdateStatus".into(), json!("Failed"));
            c.insert("LastUpdateStatusReason".into(), json!(reason));
            c.insert(
                "LastUpdateStatusReasonCode".into(),
                json!("InvalidConfiguration"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LambdaCall;

    #[test]
    fn recognises_lambda_calls_by_path() {
        assert_eq!(
            LambdaCall::parse("POST", "/2015-03-31/functions"),
            LambdaCall::CreateFunction
        );
        assert_eq!(
            LambdaCall::parse("PUT", "/2015-03-31/functions/app-prod-Api/code"),
            LambdaCall::UpdateCode("app-prod-Api".into())
        );
        assert_eq!(
            LambdaCall::parse(
                "GET",
                "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A1%3Afunction%3Aapp-prod-Api/configuration"
            ),
            LambdaCall::GetConfiguration("app-prod-Api".into())
        );
        assert_eq!(
            LambdaCall::parse("POST", "/2021-10-31/functions/f/url"),
            LambdaCall::CreateUrl("f".into())
        );
        assert_eq!(
            LambdaCall::parse("PUT", "/2021-10-31/functions/f/url"),
            LambdaCall::Other {
                function: "f".into(),
                mutating: true
            }
        );
        assert_eq!(
            LambdaCall::parse("DELETE", "/2021-10-31/functions/f/url"),
            LambdaCall::DeletePart("f".into())
        );
    }
}
