//! What moto leaves out of S3, modelled in front of it (as `aws_model` does for Lambda and
//! IAM). Each behaviour is off until a test turns it on; as the S3 User Guide documents it:
//! - A bucket policy that denies SSE-S3 ("Setting default server-side encryption behavior"):
//!   a PutObject asking for `AES256` gets 403 AccessDenied.
//! - A bucket another account owns ("Verifying bucket ownership with bucket owner
//!   condition"): a request whose `x-amz-expected-bucket-owner` is not its owner gets 403
//!   AccessDenied; without the header, its permissive policy lets the request in.
//! - A bucket in another region: a request signed for any other region gets 301
//!   PermanentRedirect with `x-amz-bucket-region` (S3 API Reference, HeadBucket; the Rust
//!   SDK does not follow it).
//! - Versioning enabled for the first time ("Enabling versioning on buckets"): for a while,
//!   reads of objects written since answer 404 NoSuchKey.
//! - An identity policy that denies some keys (a preview's CI role, prod's state): 403.
//! - A reply lost after S3 applied the write: the write is done, the caller gets 500
//!   InternalError, and the SDK sends it again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// The S3 behaviours the proxy adds.
#[derive(Debug, Default)]
pub struct S3Model {
    /// A team's bucket policy denies SSE-S3 (to keep SSE-KMS) on every bucket.
    pub denies_sse_s3: bool,
    /// Buckets another account owns, by name: the owner's account ID.
    pub foreign: BTreeMap<String, String>,
    /// Buckets in a region other than the tests' clients', by name: that region.
    pub regions: BTreeMap<String, String>,
    /// How long reads of new objects answer 404 after a bucket's versioning is enabled.
    pub versioning_lag: Duration,
    /// Keys (`<bucket>/<key>`) the caller's policy does not let it touch, as a preview's
    /// CI role and prod's state: any request on them gets 403 AccessDenied.
    pub denied_keys: BTreeSet<String>,
    /// The caller's identity policy, as far as S3 goes (a CI role's, from `docs/ci/`): a
    /// request it does not allow gets 403 AccessDenied. Conditions are not evaluated.
    pub policy: Option<S3Policy>,
    /// Key suffixes (`state.json`, `lock.json`): the next PutObject of a key ending in each
    /// is applied and its answer replaced by a 500, once per entry.
    pub lose_reply_to: Vec<String>,
    /// Per bucket: until when its versioning lag lasts, and the keys written since it began.
    lagging: BTreeMap<String, (Instant, BTreeSet<String>)>,
}

/// One S3 request as the model sees it (path-style addressing: `/<bucket>/<key>`).
pub struct S3Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

impl S3Request<'_> {
    fn bucket(&self) -> &str {
        self.path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("")
    }

    fn key(&self) -> &str {
        let path = self.path.trim_start_matches('/');
        path.split_once('/').map_or("", |(_, k)| k)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The region in the SigV4 credential scope (`Credential=<key>/<date>/<region>/s3/...`).
    fn signed_region(&self) -> Option<&str> {
        let auth = self.header("authorization")?;
        let scope = auth.split("Credential=").nth(1)?;
        scope.split('/').nth(2)
    }

    /// Whether the query names a subresource (`?versioning`, `?uploadId=`...), not only the
    /// operation (the SDK adds `x-id=GetObject`).
    fn has_subresource(&self) -> bool {
        self.query
            .split('&')
            .any(|p| !p.is_empty() && !p.starts_with("x-id="))
    }

    /// The IAM action the request needs (S3 User Guide, "Actions, resources, and condition
    /// keys for Amazon S3").
    fn action(&self) -> &'static str {
        let sub = self
            .query
            .split('&')
            .find(|p| !p.is_empty() && !p.starts_with("x-id="));
        let sub = sub.map(|p| p.split('=').next().unwrap_or(p));
        match (self.method, self.key().is_empty(), sub) {
            ("GET" | "HEAD", false, _) => "s3:GetObject",
            ("PUT", false, _) => "s3:PutObject",
            ("DELETE", false, _) => "s3:DeleteObject",
            ("HEAD", true, _) | ("GET", true, Some("list-type")) => "s3:ListBucket",
            ("GET", true, Some("versioning")) => "s3:GetBucketVersioning",
            ("PUT", true, Some("versioning")) => "s3:PutBucketVersioning",
            ("PUT", true, Some("publicAccessBlock")) => "s3:PutBucketPublicAccessBlock",
            ("PUT", true, Some("encryption")) => "s3:PutEncryptionConfiguration",
            ("PUT", true, Some("lifecycle")) => "s3:PutLifecycleConfiguration",
            ("PUT", true, None) => "s3:CreateBucket",
            _ => "s3:Unmodelled",
        }
    }

    /// The ARN of what the request is on: the bucket, or one of its objects.
    fn arn(&self) -> String {
        match self.key() {
            "" => format!("arn:aws:s3:::{}", self.bucket()),
            key => format!("arn:aws:s3:::{}/{key}", self.bucket()),
        }
    }

    fn is_object_read(&self) -> bool {
        matches!(self.method, "GET" | "HEAD") && !self.key().is_empty() && !self.has_subresource()
    }

    fn is_put_object(&self) -> bool {
        self.method == "PUT" && !self.key().is_empty() && !self.has_subresource()
    }
}

impl S3Model {
    /// An answer in place of S3's, or none to let the request through.
    pub fn before(&mut self, req: &S3Request<'_>) -> Option<Response> {
        let bucket = req.bucket().to_owned();
        if let Some(owner) = self.foreign.get(&bucket)
            && req
                .header("x-amz-expected-bucket-owner")
                .is_some_and(|expected| expected != owner)
        {
            return Some(error(
                req,
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "Access Denied",
            ));
        }
        if self
            .denied_keys
            .contains(&format!("{bucket}/{}", req.key()))
        {
            return Some(error(
                req,
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "Access Denied",
            ));
        }
        if let Some(policy) = &self.policy
            && !policy.allows(req.action(), &req.arn())
        {
            return Some(error(
                req,
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "Access Denied",
            ));
        }
        if let Some(region) = self.regions.get(&bucket)
            && req.signed_region().is_some_and(|signed| signed != region)
        {
            let mut answer = error(
                req,
                StatusCode::MOVED_PERMANENTLY,
                "PermanentRedirect",
                "The bucket you are attempting to access must be addressed using the specified endpoint. Please send all future requests to this endpoint.",
            );
            answer.headers_mut().insert(
                "x-amz-bucket-region",
                region.parse().expect("a region is a header value"),
            );
            return Some(answer);
        }
        if req.method == "PUT"
            && req.header("x-amz-server-side-encryption") == Some("AES256")
            && self.denies_sse_s3
        {
            return Some(error(
                req,
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "User: arn:aws:iam::123456789012:user/ci is not authorized to perform: s3:PutObject with an explicit deny in a resource-based policy",
            ));
        }
        if req.is_object_read()
            && let Some((until, written)) = self.lagging.get(&bucket)
            && Instant::now() < *until
            && written.contains(req.key())
        {
            return Some(error(
                req,
                StatusCode::NOT_FOUND,
                "NoSuchKey",
                "The specified key does not exist.",
            ));
        }
        None
    }

    /// After S3 answered `status`: what the model learns, and an answer in place of S3's.
    pub fn after(&mut self, req: &S3Request<'_>, status: StatusCode) -> Option<Response> {
        if !status.is_success() {
            return None;
        }
        let bucket = req.bucket().to_owned();
        if req.method == "PUT"
            && req.query == "versioning"
            && String::from_utf8_lossy(req.body).contains("<Status>Enabled</Status>")
            && !self.versioning_lag.is_zero()
        {
            self.lagging
                .entry(bucket.clone())
                .or_insert_with(|| (Instant::now() + self.versioning_lag, BTreeSet::new()));
        }
        if req.is_put_object() {
            if let Some((until, written)) = self.lagging.get_mut(&bucket)
                && Instant::now() < *until
            {
                written.insert(req.key().to_owned());
            }
            if let Some(i) = self
                .lose_reply_to
                .iter()
                .position(|suffix| req.key().ends_with(suffix.as_str()))
            {
                self.lose_reply_to.remove(i);
                return Some(error(
                    req,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "We encountered an internal error. Please try again.",
                ));
            }
        }
        None
    }
}

/// S3's error answer (S3 API Reference, "Error responses"); a HEAD's carries no body.
fn error(req: &S3Request<'_>, status: StatusCode, code: &str, message: &str) -> Response {
    if req.method == "HEAD" {
        return status.into_response();
    }
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><BucketName>{}</BucketName></Error>",
        req.bucket()
    );
    (status, [("content-type", "application/xml")], xml).into_response()
}

/// The S3 statements of an identity policy: which actions it allows on which resources
/// (`*` in a resource matches any run of characters, `/` included).
#[derive(Debug, Clone)]
pub struct S3Policy(Vec<(Vec<String>, Vec<String>)>);

impl S3Policy {
    /// From a policy document; `vars` fills its placeholders (`BUCKET`, `PREFIX`, `APP`).
    pub fn parse(document: &str, vars: &[(&str, &str)]) -> S3Policy {
        let mut text = document.to_owned();
        for (name, value) in vars {
            text = text.replace(name, value);
        }
        let policy: serde_json::Value = serde_json::from_str(&text).expect("a policy document");
        let list = |v: &serde_json::Value| -> Vec<String> {
            match v {
                serde_json::Value::String(s) => vec![s.clone()],
                serde_json::Value::Array(a) => a
                    .iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            }
        };
        S3Policy(
            policy["Statement"]
                .as_array()
                .expect("statements")
                .iter()
                .filter(|s| s["Effect"] == "Allow")
                .map(|s| (list(&s["Action"]), list(&s["Resource"])))
                .filter(|(actions, _)| actions.iter().any(|a| a.starts_with("s3:")))
                .collect(),
        )
    }

    pub fn allows(&self, action: &str, arn: &str) -> bool {
        self.0.iter().any(|(actions, resources)| {
            actions.iter().any(|a| a == action || a == "s3:*")
                && resources.iter().any(|r| glob(r, arn))
        })
    }
}

/// IAM's resource match: `*` any run of characters, `?` one.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn resources_match_as_iam_matches_them() {
        assert!(glob(
            "arn:aws:s3:::b/team/app/pr-*/*",
            "arn:aws:s3:::b/team/app/pr-7/state.json"
        ));
        assert!(!glob(
            "arn:aws:s3:::b/team/app/pr-*/*",
            "arn:aws:s3:::b/team/app/prod/state.json"
        ));
        assert!(glob(
            "arn:aws:s3:::b/team/app/*/base.json",
            "arn:aws:s3:::b/team/app/prod/base.json"
        ));
        assert!(!glob("arn:aws:s3:::b", "arn:aws:s3:::b/x"));
    }
}
