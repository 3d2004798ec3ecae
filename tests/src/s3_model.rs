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
