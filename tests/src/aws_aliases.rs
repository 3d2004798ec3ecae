//! What an alias owns in Lambda, which moto does not keep apart: its function URL and its
//! resource policy. moto ignores the `Qualifier` of the URL calls ("The Qualifier-parameter
//! is not yet implemented") and files an alias's permissions under the version the alias
//! points at, so they would follow a rollback. Lambda keeps both per alias (API Reference:
//! CreateFunctionUrlConfig, AddPermission, GetPolicy, RemovePermission, each with
//! `Qualifier`), and the proxy answers those calls for an alias here, as Lambda writes them.

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::aws_answers::lambda_error;

/// One alias's URL and statements.
#[derive(Debug, Default, Clone)]
pub struct AliasParts {
    /// (URL, auth type, created)
    pub url: Option<(String, String, String)>,
    pub statements: Vec<Value>,
}

/// Every alias's parts, by (function, alias).
#[derive(Debug, Default)]
pub struct Aliases(HashMap<(String, String), AliasParts>);

/// Whether a `Qualifier` names an alias (not a version number, not `$LATEST`).
pub fn is_alias(qualifier: &str) -> bool {
    !qualifier.is_empty()
        && qualifier != "$LATEST"
        && !qualifier.bytes().all(|b| b.is_ascii_digit())
}

fn arn(function: &str, alias: &str) -> String {
    format!("arn:aws:lambda:us-east-1:123456789012:function:{function}:{alias}")
}

fn now() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{}-{:02}-{:02}T{:02}:{:02}:{:02}.000Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn not_found() -> Response {
    lambda_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFoundException",
        "The resource you requested does not exist.",
    )
}

fn json_answer(status: StatusCode, body: Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

impl Aliases {
    /// The parts of `function`'s alias `alias`.
    pub fn get(&self, function: &str, alias: &str) -> Option<AliasParts> {
        self.0
            .get(&(function.to_owned(), alias.to_owned()))
            .cloned()
    }

    /// Forgets every alias of `function` (deleted).
    pub fn forget(&mut self, function: &str) {
        self.0.retain(|(f, _), _| f != function);
    }

    /// Answers a URL or policy call on an alias (`tail`: the path after the function's
    /// name), or `None` for any other call. `url_id` makes a new URL's hostname.
    pub fn answer(
        &mut self,
        method: &str,
        function: &str,
        alias: &str,
        tail: &[&str],
        body: &[u8],
        url_id: impl FnOnce() -> String,
    ) -> Option<Response> {
        let key = (function.to_owned(), alias.to_owned());
        let request: Value = serde_json::from_slice(body).unwrap_or_default();
        let parts = self.0.entry(key).or_default();
        let url_body = |(url, auth, created): &(String, String, String)| {
            json!({
                "FunctionUrl": url,
                "FunctionArn": arn(function, alias),
                "AuthType": auth,
                "CreationTime": created,
                "LastModifiedTime": created,
                "InvokeMode": "BUFFERED",
            })
        };
        Some(match (method, tail) {
            ("POST", ["url"]) => {
                if parts.url.is_some() {
                    return Some(lambda_error(
                        StatusCode::CONFLICT,
                        "ResourceConflictException",
                        &format!(
                            "Failed to create function url config for [functionArn = {}]. Error message:  FunctionUrlConfig exists for this Lambda function",
                            arn(function, alias)
                        ),
                    ));
                }
                let url = format!("https://{}.lambda-url.us-east-1.on.aws/", url_id());
                let auth = request["AuthType"].as_str().unwrap_or("AWS_IAM").to_owned();
                parts.url = Some((url, auth, now()));
                let mut b = url_body(parts.url.as_ref().expect("just set"));
                b.as_object_mut()
                    .expect("an object")
                    .remove("LastModifiedTime");
                json_answer(StatusCode::CREATED, b)
            }
            ("GET", ["url"]) => match &parts.url {
                Some(u) => json_answer(StatusCode::OK, url_body(u)),
                None => not_found(),
            },
            ("PUT", ["url"]) => match &mut parts.url {
                Some(u) => {
                    if let Some(a) = request["AuthType"].as_str() {
                        u.1 = a.to_owned();
                    }
                    json_answer(StatusCode::OK, url_body(u))
                }
                None => not_found(),
            },
            ("DELETE", ["url"]) => match parts.url.take() {
                Some(_) => StatusCode::NO_CONTENT.into_response(),
                None => not_found(),
            },
            ("POST", ["policy"]) => {
                let sid = request["StatementId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if parts.statements.iter().any(|s| s["Sid"] == sid.as_str()) {
                    return Some(lambda_error(
                        StatusCode::CONFLICT,
                        "ResourceConflictException",
                        &format!(
                            "The statement id ({sid}) provided already exists. Please provide a new statement id, or remove the existing statement."
                        ),
                    ));
                }
                let principal = request["Principal"].as_str().unwrap_or("*");
                let mut s = json!({
                    "Sid": sid,
                    "Effect": "Allow",
                    "Principal": if principal == "*" { json!("*") } else { json!({"Service": principal}) },
                    "Action": request["Action"],
                    "Resource": arn(function, alias),
                });
                if let Some(auth) = request["FunctionUrlAuthType"].as_str() {
                    s["Condition"]["StringEquals"]["lambda:FunctionUrlAuthType"] = json!(auth);
                }
                if let Some(via) = request["InvokedViaFunctionUrl"].as_bool() {
                    s["Condition"]["Bool"]["lambda:InvokedViaFunctionUrl"] = json!(via.to_string());
                }
                parts.statements.push(s.clone());
                json_answer(StatusCode::CREATED, json!({ "Statement": s.to_string() }))
            }
            ("GET", ["policy"]) => {
                if parts.statements.is_empty() {
                    return Some(not_found());
                }
                let policy = json!({
                    "Version": "2012-10-17",
                    "Id": "default",
                    "Statement": parts.statements,
                });
                json_answer(
                    StatusCode::OK,
                    json!({"Policy": policy.to_string(), "RevisionId": format!("{:x}", parts.statements.len())}),
                )
            }
            ("DELETE", ["policy", sid]) => {
                let sid = percent_encoding::percent_decode_str(sid)
                    .decode_utf8_lossy()
                    .into_owned();
                let before = parts.statements.len();
                parts.statements.retain(|s| s["Sid"] != sid.as_str());
                if parts.statements.len() == before {
                    not_found()
                } else {
                    StatusCode::NO_CONTENT.into_response()
                }
            }
            _ => return None,
        })
    }
}
