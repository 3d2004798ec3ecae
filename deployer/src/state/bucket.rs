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

/// `deployer-state-<account-id>-<region>`, the account read from STS.
pub async fn default_name(sdk: &aws_config::SdkConfig) -> Result<String, StateError> {
    let who = aws_sdk_sts::Client::new(sdk)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| StateError::Remote {
            action: "find the AWS account for the state bucket (sts:GetCallerIdentity)".into(),
            source: Box::new(crate::aws::Detail::of_sdk(&e)),
        })?;
    let region = sdk.region().map(|r| r.to_string()).unwrap_or_default();
    Ok(format!(
        "deployer-state-{}-{region}",
        who.account().unwrap_or_default()
    ))
}

/// A bucket named in infra.toml: it must exist and be ours to use.
pub async fn check(client: &Client, bucket: &str) -> Result<(), StateError> {
    match client.head_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(()),
        Err(e) => {
            let status = e.raw_response().map(|r| r.status().as_u16());
            let detail = match status {
                Some(404) => {
                    "it does not exist; create it, or remove `bucket` under [state] and the deployer makes one"
                }
                Some(403) => {
                    "access denied: it belongs to another account, or these credentials may not use it"
                }
                _ => "HeadBucket failed",
            };
            Err(StateError::Bucket {
                bucket: bucket.to_owned(),
                detail: detail.to_owned(),
                source: Some(Box::new(crate::aws::Detail::of_sdk(&e))),
            })
        }
    }
}

/// The default bucket: made and configured if missing (or left half-made by an
/// interrupted run, which the versioning read shows).
pub async fn ensure_default(client: &Client, bucket: &str, region: &str) -> Result<(), StateError> {
    let exists = match client.head_bucket().bucket(bucket).send().await {
        Ok(_) => true,
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => false,
        Err(e) => return Err(failed_call(bucket, "HeadBucket", e)),
    };
    if exists {
        let versioning = client
            .get_bucket_versioning()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| failed_call(bucket, "GetBucketVersioning", e))?;
        if versioning.status() == Some(&BucketVersioningStatus::Enabled) {
            return Ok(());
        }
    } else {
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
    configure(client, bucket).await
}

async fn configure(client: &Client, bucket: &str) -> Result<(), StateError> {
    client
        .put_public_access_block()
        .bucket(bucket)
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
