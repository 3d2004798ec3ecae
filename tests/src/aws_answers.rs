//! AWS's answers as its API references write them, where moto's differ or the proxy makes
//! its own: Lambda's REST-JSON and IAM's XML errors, and a resource policy's conditions.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// moto returns AddPermission's parameters as they came (`"FunctionUrlAuthType": "NONE"`,
/// `"InvokedViaFunctionUrl": true`); Lambda turns them into conditions
/// (`"Condition": {"StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}}` and
/// `{"Bool": {"lambda:InvokedViaFunctionUrl": "true"}}`), as its GetPolicy examples show.
pub fn policy_as_aws_writes_it(body: &[u8]) -> Option<Vec<u8>> {
    use serde_json::{Value, json};
    let mut answer: Value = serde_json::from_slice(body).ok()?;
    let mut policy: Value = serde_json::from_str(answer["Policy"].as_str()?).ok()?;
    for s in policy["Statement"].as_array_mut()? {
        let s = s.as_object_mut()?;
        if let Some(auth) = s.remove("FunctionUrlAuthType") {
            s.entry("Condition").or_insert_with(|| json!({}))["StringEquals"]["lambda:FunctionUrlAuthType"] =
                auth;
        }
        if let Some(via) = s.remove("InvokedViaFunctionUrl") {
            let via = match via {
                Value::Bool(b) => b.to_string(),
                other => other.as_str().unwrap_or_default().to_owned(),
            };
            s.entry("Condition").or_insert_with(|| json!({}))["Bool"]["lambda:InvokedViaFunctionUrl"] =
                json!(via);
        }
    }
    answer["Policy"] = json!(policy.to_string());
    serde_json::to_vec(&answer).ok()
}

/// Lambda's REST-JSON error: the code in `x-amzn-ErrorType`, the message in the body.
pub fn lambda_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "Type": "User", "Message": message }).to_string();
    (
        status,
        [
            ("content-type", "application/json"),
            ("x-amzn-errortype", code),
        ],
        body,
    )
        .into_response()
}

/// IAM's query-protocol XML error.
pub fn iam_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>4c0e6f5a-0000-4000-8000-000000000001</RequestId></ErrorResponse>"
    );
    (status, [("content-type", "text/xml")], body).into_response()
}
