//! The state bucket. Named in infra.toml, it must exist; otherwise the deployer uses
//! `deployer-state-<account-id>-<region>` and makes it on first use as a state bucket
//! should be: versioned (every write of the state is kept), public access blocked,
//! encrypted at rest (SSE-S3), and old versions beyond the last 100 expired.

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketLocationConstraint, BucketVersioningStatus,
    CreateBucketConfiguration, ExpirationStatus, LifecycleRule, LifecycleRuleFilter,
    NoncurrentVersionExpiration, PublicAccessBlockConfiguration, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    VersioningConfiguration,
};

use super::StateError;

/// Versions of the state kept besides the current one.
const KEPT_VERSIONS: i32 = 100;

/// A call on the bucket that AWS refused (or that got no answer): AWS's code and message.
fn failed_call<E, R>(bucket: &str, what: &str, e: SdkError<E, R>) -> StateError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    failed(bucket, what, crate::aws::Detail::of_sdk(&e))
}

fn failed(
    bucket: &str,
    what: &str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> StateError {
    StateError::Bucket {
        bucket: bucket.to_owned(),
        detail: what.to_owned(),
        source: Some(Box::new(e)),
    }
}

/// The AWS account of these credentials (STS): it must own the state bucket.
pub async fn account(sdk: &aws_config::SdkConfig) -> Result<String, StateError> {
    let who = aws_sdk_sts::Client::new(sdk)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| StateError::Remote {
            action: "find the AWS account for the state bucket (sts:GetCallerIdentity)".into(),
            source: Box::new(crate::aws::Detail::of_sdk(&e)),
        })?;
    Ok(who.account().unwrap_or_default().to_owned())
}

/// `deployer-state-<account-id>-<region>`.
pub fn default_name(account: &str, region: &str) -> String {
    format!("deployer-state-{account}-{region}")
}

/// What HeadBucket, sent with `ExpectedBucketOwner`, says of a bucket.
#[derive(Debug, PartialEq)]
pub enum Found {
    /// It exists, in the client's region, and the account owns it.
    Here,
    /// It exists in this other region: S3 answered 301 with `x-amz-bucket-region`, which
    /// the Rust SDK does not follow (S3 API Reference, HeadBucket).
    InRegion(String),
    Missing,
}

/// Looks for the bucket as owned by `owner`. A 403 stops the run: the bucket belongs to
/// another account (or these credentials may not use it), and the deployer never writes
/// a state, which holds passwords, into another account's bucket (S3 User Guide,
/// "Verifying bucket ownership with bucket owner condition").
pub async fn find(
    client: &Client,
    bucket: &str,
    owner: &str,
    default: bool,
) -> Result<Found, StateError> {
    let answer = client
        .head_bucket()
        .bucket(bucket)
        .expected_bucket_owner(owner)
        .send()
        .await;
    let e = match answer {
        Ok(_) => return Ok(Found::Here),
        Err(e) => e,
    };
    let raw = e.raw_response();
    let region = raw
        .and_then(|r| r.headers().get("x-amz-bucket-region"))
        .map(str::to_owned);
    let client_region = client.config().region().map(|r| r.to_string());
    match (raw.map(|r| r.status().as_u16()), region) {
        (Some(404), _) => Ok(Found::Missing),
        (Some(301 | 400), Some(region)) if Some(&region) != client_region.as_ref() => {
            Ok(Found::InRegion(region))
        }
        (Some(403), _) => Err(StateError::NotOurBucket {
            bucket: bucket.to_owned(),
            account: owner.to_owned(),
            default,
        }),
        _ => Err(failed_call(bucket, "HeadBucket", e)),
    }
}

/// A bucket named in infra.toml: it must exist and be the account's; `Some(region)` when
/// it lives in another region than the client's.
pub async fn check(
    client: &Client,
    bucket: &str,
    owner: &str,
) -> Result<Option<String>, StateError> {
    match find(client, bucket, owner, false).await? {
        Found::Here => Ok(None),
        Found::InRegion(region) => Ok(Some(region)),
        Found::Missing => Err(StateError::Bucket {
            bucket: bucket.to_owned(),
            detail: "it does not exist; create it, or remove `bucket` under [state] and the deployer makes one".to_owned(),
            source: None,
        }),
    }
}

/// The default bucket: made and configured if missing (or left half-made by an
/// interrupted run, which the versioning read shows).
pub async fn ensure_default(
    client: &Client,
    bucket: &str,
    owner: &str,
    region: &str,
) -> Result<(), StateError> {
    let exists = match find(client, bucket, owner, true).await? {
        Found::Here => true,
        Found::Missing => false,
        // Its name says this region; made elsewhere, it is not one the deployer made.
        Found::InRegion(elsewhere) => {
            return Err(StateError::Bucket {
                bucket: bucket.to_owned(),
                detail: format!(
                    "it is in {elsewhere}, not {region} as its name says; the deployer did not make it"
                ),
                source: None,
            });
        }
    };
    if exists {
        let versioning = client
            .get_bucket_versioning()
            .bucket(bucket)
            .expected_bucket_owner(owner)
            .send()
            .await
            .map_err(|e| failed_call(bucket, "GetBucketVersioning", e))?;
        if versioning.status() == Some(&BucketVersioningStatus::Enabled) {
            return Ok(());
        }
    } else {
        // CreateBucket takes no ExpectedBucketOwner: a bucket someone else made first
        // answers BucketAlreadyExists (and failed HeadBucket above with 403).
        let mut create = client.create_bucket().bucket(bucket);
        // us-east-1 takes no location constraint (and refuses one).
        if region != "us-east-1" {
            create = create.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region))
                    .build(),
            );
        }
        match create.send().await {
            Ok(_) => eprintln!("Created the state bucket `{bucket}`"),
            Err(e)
                if e.as_service_error().and_then(|s| s.code())
                    == Some("BucketAlreadyOwnedByYou") => {}
            Err(e) => return Err(failed_call(bucket, "CreateBucket", e)),
        }
    }
    configure(client, bucket, owner).await
}

async fn configure(client: &Client, bucket: &str, owner: &str) -> Result<(), StateError> {
    client
        .put_public_access_block()
        .bucket(bucket)
        .expected_bucket_owner(owner)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .map_err(|e| failed_call(bucket, "PutPublicAccessBlock", e))?;
    client
        .put_bucket_encryption()
        .bucket(bucket)
        .expected_bucket_owner(owner)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(
                    ServerSideEncryptionRule::builder()
                        .apply_server_side_encryption_by_default(
                            ServerSideEncryptionByDefault::builder()
                                .sse_algorithm(ServerSideEncryption::Aes256)
                                .build()
                                .map_err(|e| failed(bucket, "encryption rule", e))?,
                        )
                        .build(),
                )
                .build()
                .map_err(|e| failed(bucket, "encryption configuration", e))?,
        )
        .send()
        .await
        .map_err(|e| failed_call(bucket, "PutBucketEncryption", e))?;
    client
        .put_bucket_lifecycle_configuration()
        .bucket(bucket)
        .expected_bucket_owner(owner)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .rules(
                    LifecycleRule::builder()
                        .id("deployer-keep-100-versions")
                        .status(ExpirationStatus::Enabled)
                        .filter(LifecycleRuleFilter::builder().prefix("").build())
                        .noncurrent_version_expiration(
                            NoncurrentVersionExpiration::builder()
                                .newer_noncurrent_versions(KEPT_VERSIONS)
                                .noncurrent_days(1)
                                .build(),
                        )
                        .build()
                        .map_err(|e| failed(bucket, "lifecycle rule", e))?,
                )
                .build()
                .map_err(|e| failed(bucket, "lifecycle configuration", e))?,
        )
        .send()
        .await
        .map_err(|e| failed_call(bucket, "PutBucketLifecycleConfiguration", e))?;
    // Last: a bucket is only taken as configured once versioning is on.
    client
        .put_bucket_versioning()
        .bucket(bucket)
        .expected_bucket_owner(owner)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .map_err(|e| failed_call(bucket, "PutBucketVersioning", e))?;
    Ok(())
}
