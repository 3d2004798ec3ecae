//! Function URLs, the part of Lambda's execution side a browser or `curl` reaches: each
//! URL by its hostname (`<id>.lambda-url.<region>.on.aws`), 403 `{"Message":"Forbidden"}`
//! unless its auth type is NONE and its policy has both statements a public URL needs
//! since October 2025 ("Control access to function URLs"), a request as a payload-2.0
//! event, the function's `statusCode`/`headers`/`body` as the answer, a JSON value without
//! `statusCode` as a 200, a function error as 502 ("Invoking Lambda function URLs"). An
//! alias's URL and policy are its own (`aws_aliases`).

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::lambda_exec::{Ended, Executor, moto_error, unix_ms};

impl Executor {
    /// Remembers the hostname of a function URL moto created (`FunctionUrl` of its answer).
    pub fn remember_url(&self, function: &str, qualifier: Option<String>, answer: &[u8]) {
        let answer: Value = serde_json::from_slice(answer).unwrap_or_default();
        if let Some(host) = answer["FunctionUrl"].as_str().and_then(url_host) {
            self.urls
                .lock()
                .unwrap()
                .insert(host, (function.to_owned(), qualifier));
        }
    }

    /// Forgets the URL of `function` itself (deleted).
    pub fn forget_urls(&self, function: &str) {
        self.urls
            .lock()
            .unwrap()
            .retain(|_, (f, q)| f != function || q.is_some());
    }

    /// Answers a URL or policy call on an alias (`?Qualifier=<alias>`) as Lambda does, or
    /// `None` for any other call (moto answers those).
    pub async fn alias_call(
        &self,
        method: &str,
        path: &str,
        query: &str,
        body: &[u8],
    ) -> Option<Response> {
        let qualifier = query
            .split('&')
            .find_map(|p| p.strip_prefix("Qualifier="))
            .map(|q| {
                percent_encoding::percent_decode_str(q)
                    .decode_utf8_lossy()
                    .into_owned()
            })?;
        if !crate::aws_aliases::is_alias(&qualifier) {
            return None;
        }
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let [_, "functions", function, tail @ ..] = parts.as_slice() else {
            return None;
        };
        if !matches!(tail.first(), Some(&"url") | Some(&"policy")) {
            return None;
        }
        let function = percent_encoding::percent_decode_str(function)
            .decode_utf8_lossy()
            .into_owned();
        if let Err((status, body)) = self
            .moto_get(
                &format!("/2015-03-31/functions/{function}/aliases/{qualifier}"),
                None,
            )
            .await
        {
            return Some(moto_error(status, &body));
        }
        let answer = self.aliases.lock().unwrap().answer(
            method,
            &function,
            &qualifier,
            tail,
            body,
            || {
                format!(
                    "{:016x}{:016x}",
                    crate::pg::rand_u64(),
                    crate::pg::rand_u64()
                )
            },
        )?;
        let target = (function.clone(), Some(qualifier.clone()));
        if method == "POST" && tail == ["url"] && answer.status() == StatusCode::CREATED {
            let parts = self.aliases.lock().unwrap().get(&function, &qualifier);
            if let Some((url, ..)) = parts.and_then(|p| p.url)
                && let Some(host) = url_host(&url)
            {
                self.urls.lock().unwrap().insert(host, target);
            }
        } else if method == "DELETE" && tail == ["url"] {
            self.urls.lock().unwrap().retain(|_, t| *t != target);
        }
        Some(answer)
    }

    /// Whether `host` is a function URL's (`<id>.lambda-url.<region>.on.aws`).
    pub fn is_url_host(host: &str) -> bool {
        host.contains(".lambda-url.") && host.ends_with(".on.aws")
    }

    /// A request to a function URL (its hostname in `Host`).
    pub async fn serve_url(
        &self,
        host: &str,
        method: &str,
        path_and_query: &str,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Response {
        let forbidden = || {
            let mut r = (StatusCode::FORBIDDEN, r#"{"Message":"Forbidden"}"#).into_response();
            r.headers_mut().insert(
                "content-type",
                "application/json".parse().expect("a header"),
            );
            r.headers_mut().insert(
                "x-amzn-errortype",
                "AccessDeniedException".parse().expect("a header"),
            );
            r
        };
        let Some((function, qualifier)) = self.urls.lock().unwrap().get(host).cloned() else {
            // No such URL: AWS's edge answers 403 for an unknown hostname too.
            return forbidden();
        };
        let (public, policy) = match &qualifier {
            // An alias's URL and statements are its own.
            Some(alias) => {
                let parts = self
                    .aliases
                    .lock()
                    .unwrap()
                    .get(&function, alias)
                    .unwrap_or_default();
                let public = parts.url.as_ref().is_some_and(|u| u.1 == "NONE");
                (public, json!({ "Statement": parts.statements }))
            }
            None => {
                let url_config = self
                    .moto_get(&format!("/2021-10-31/functions/{function}/url"), None)
                    .await;
                let public = url_config.is_ok_and(|c| c["AuthType"] == "NONE");
                // moto keeps the conditions as the request's fields; AWS writes conditions.
                let policy = self
                    .moto_get(&format!("/2015-03-31/functions/{function}/policy"), None)
                    .await
                    .ok()
                    .and_then(|p| {
                        crate::aws_answers::policy_as_aws_writes_it(&serde_json::to_vec(&p).ok()?)
                    })
                    .and_then(|p| serde_json::from_slice::<Value>(&p).ok())
                    .and_then(|p| serde_json::from_str::<Value>(p["Policy"].as_str()?).ok())
                    .unwrap_or_default();
                (public, policy)
            }
        };
        if !public
            || !has_public_url_statements(&policy)
            || self.deny_urls.load(std::sync::atomic::Ordering::SeqCst)
        {
            return forbidden();
        }
        let asked = Instant::now();
        let event = url_event(host, method, path_and_query, headers, body);
        match self
            .invoke_event(&function, qualifier.as_deref(), event, None)
            .await
        {
            Ok((version, Ended::Response(v))) => {
                self.served.lock().unwrap().push(version);
                self.url_times.lock().unwrap().push(asked.elapsed());
                url_response(v)
            }
            Ok((_, Ended::Error(_))) | Err(_) => {
                let mut r = (
                    StatusCode::BAD_GATEWAY,
                    r#"{"Message":"Internal Server Error"}"#,
                )
                    .into_response();
                r.headers_mut().insert(
                    "content-type",
                    "application/json".parse().expect("a header"),
                );
                r
            }
        }
    }

    /// The version each function-URL request ran, oldest first.
    pub fn served(&self) -> Vec<String> {
        self.served.lock().unwrap().clone()
    }

    /// Forgets the times [`Executor::url_times`] returns.
    pub fn clear_url_times(&self) {
        self.url_times.lock().unwrap().clear();
    }

    /// How long each function-URL request took to answer, oldest first.
    pub fn url_times(&self) -> Vec<Duration> {
        self.url_times.lock().unwrap().clone()
    }

    /// Makes every function URL answer 403 (an organisation's policy denying invocation),
    /// or lifts that.
    pub fn deny_urls(&self, on: bool) {
        self.deny_urls
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A function URL's hostname, from the URL.
pub fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    Some(rest.split(['/', ':']).next()?.to_owned())
}

/// Both statements a public function URL needs (Lambda's "Control access to function URLs",
/// as changed in October 2025).
fn has_public_url_statements(policy: &Value) -> bool {
    let statements = policy["Statement"].as_array().cloned().unwrap_or_default();
    let everyone = |s: &Value| s["Principal"] == "*" || s["Principal"]["AWS"] == "*";
    let allows = |s: &Value, action: &str| {
        s["Effect"] == "Allow"
            && everyone(s)
            && (s["Action"] == action
                || s["Action"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == action)))
    };
    let url = statements.iter().any(|s| {
        allows(s, "lambda:InvokeFunctionUrl")
            && s["Condition"]["StringEquals"]["lambda:FunctionUrlAuthType"] == "NONE"
    });
    let via_url = statements.iter().any(|s| {
        allows(s, "lambda:InvokeFunction")
            && (s["Condition"]["Bool"]["lambda:InvokedViaFunctionUrl"] == "true"
                || s["Condition"]["Bool"]["lambda:InvokedViaFunctionUrl"] == true)
    });
    url && via_url
}

/// The function URL event (payload format 2.0) for one HTTP request.
fn url_event(
    host: &str,
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Value {
    use base64::Engine;
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut hs = serde_json::Map::new();
    for (k, v) in headers {
        let v = v.to_str().unwrap_or_default();
        let entry = hs
            .entry(k.as_str().to_ascii_lowercase())
            .or_insert(json!(""));
        let joined = match entry.as_str() {
            Some("") | None => v.to_owned(),
            Some(old) => format!("{old},{v}"),
        };
        *entry = json!(joined);
    }
    hs.insert("host".into(), json!(host));
    let mut params = serde_json::Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        params.insert(k.to_owned(), json!(v));
    }
    let prefix = host.split('.').next().unwrap_or_default();
    let now = time::OffsetDateTime::now_utc();
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": hs,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": prefix,
            "domainName": host,
            "domainPrefix": prefix,
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or_default(),
            },
            "requestId": format!("{:016x}", crate::pg::rand_u64()),
            "routeKey": "$default",
            "stage": "$default",
            "time": format!(
                "{:02}/{}/{}:{:02}:{:02}:{:02} +0000",
                now.day(),
                &format!("{:?}", now.month())[..3],
                now.year(),
                now.hour(),
                now.minute(),
                now.second()
            ),
            "timeEpoch": unix_ms(),
        },
        "isBase64Encoded": false,
    });
    if !params.is_empty() {
        event["queryStringParameters"] = Value::Object(params);
    }
    if !body.is_empty() {
        match std::str::from_utf8(body) {
            Ok(text) => event["body"] = json!(text),
            Err(_) => {
                event["body"] = json!(base64::engine::general_purpose::STANDARD.encode(body));
                event["isBase64Encoded"] = json!(true);
            }
        }
    }
    event
}

/// The HTTP answer for a function's response to a URL event.
fn url_response(v: Value) -> Response {
    use base64::Engine;
    let Some(status) = v.get("statusCode").and_then(Value::as_u64) else {
        // A value without `statusCode`: 200, the value as JSON.
        let mut r = (StatusCode::OK, serde_json::to_vec(&v).unwrap_or_default()).into_response();
        r.headers_mut().insert(
            "content-type",
            "application/json".parse().expect("a header"),
        );
        return r;
    };
    let body = v["body"].as_str().unwrap_or_default();
    let bytes = if v["isBase64Encoded"] == true {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap_or_default()
    } else {
        body.as_bytes().to_vec()
    };
    let mut r = (
        StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK),
        bytes,
    )
        .into_response();
    if let Some(headers) = v["headers"].as_object() {
        for (k, val) in headers {
            if let (Ok(name), Some(Ok(value))) = (
                k.parse::<axum::http::HeaderName>(),
                val.as_str().map(|s| s.parse::<axum::http::HeaderValue>()),
            ) {
                r.headers_mut().insert(name, value);
            }
        }
    }
    for cookie in v["cookies"].as_array().into_iter().flatten() {
        if let Some(Ok(value)) = cookie.as_str().map(|s| s.parse()) {
            r.headers_mut().append("set-cookie", value);
        }
    }
    r
}
