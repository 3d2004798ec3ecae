//! AWS: the function's IAM role, the Lambda function with its URL, and its log group,
//! through the SDK.
//! `AWS_ENDPOINT_URL` (moto in tests) and the usual credential chain are honoured.

pub mod iam;
pub mod lambda;
pub mod logs;
pub mod url;

use aws_config::BehaviorVersion;
use aws_sdk_lambda::error::{ProvideErrorMetadata, SdkError};

/// The SDK clients, built once per run.
pub struct Aws {
    /// The region the clients call.
    pub region: Option<String>,
    pub iam: aws_sdk_iam::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
}

impl std::fmt::Debug for Aws {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Aws")
    }
}

/// No region anywhere: infra.toml's `[app] region`, AWS_REGION and the profile are all unset.
#[derive(Debug, thiserror::Error)]
#[error("no AWS region: set `region` under [app] in infra.toml, or AWS_REGION")]
pub struct NoRegion;

/// The shared AWS configuration for `region` (or the default chain's region).
pub async fn sdk_config(region: Option<&str>) -> Result<aws_config::SdkConfig, NoRegion> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(r) = region {
        loader = loader.region(aws_config::Region::new(r.to_owned()));
    }
    let config = loader.load().await;
    if config.region().is_none() {
        return Err(NoRegion);
    }
    Ok(config)
}

impl Aws {
    /// The clients for `region` (or the default chain's region).
    pub async fn connect(region: Option<&str>) -> Result<Aws, NoRegion> {
        let config = sdk_config(region).await?;
        Ok(Aws {
            region: config.region().map(|r| r.to_string()),
            iam: aws_sdk_iam::Client::from_conf(
                aws_sdk_iam::config::Builder::from(&config)
                    .interceptor(LeaseCheck)
                    .build(),
            ),
            lambda: aws_sdk_lambda::Client::from_conf(
                aws_sdk_lambda::config::Builder::from(&config)
                    .interceptor(LeaseCheck)
                    .build(),
            ),
            logs: aws_sdk_cloudwatchlogs::Client::from_conf(
                aws_sdk_cloudwatchlogs::config::Builder::from(&config)
                    .interceptor(LeaseCheck)
                    .build(),
            ),
        })
    }
}

/// Refuses every AWS call once the run may have lost its stage's lock (S3 state): a holder
/// paused past its lease must not change anything when it wakes up.
#[derive(Debug)]
struct LeaseCheck;

impl aws_sdk_lambda::config::Intercept for LeaseCheck {
    fn name(&self) -> &'static str {
        "LeaseCheck"
    }

    fn read_before_execution(
        &self,
        _: &aws_sdk_lambda::config::interceptors::BeforeSerializationInterceptorContextRef<'_>,
        _: &mut aws_sdk_lambda::config::ConfigBag,
    ) -> Result<(), aws_sdk_lambda::error::BoxError> {
        crate::lease::check().map_err(Into::into)
    }
}

/// A failed AWS call: what we were doing, and what AWS (or the SDK) said.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action}")]
pub struct AwsError {
    pub action: String,
    /// The service's error code (`AccessDeniedException`...), when AWS answered.
    pub code: Option<String>,
    #[source]
    pub detail: Detail,
    /// What to do, where we know better than the code alone says.
    pub advice: Option<String>,
}

/// AWS's own words (`Code: message`); for a failure without an answer (a timeout, a
/// connection refused), the SDK's error chain, one `Detail` per link, each the source of
/// the one before, so each prints as its own `caused by:` line.
#[derive(Debug)]
pub struct Detail(pub String, pub Option<Box<Detail>>);

impl std::fmt::Display for Detail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Detail {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.1
            .as_deref()
            .map(|d| d as &(dyn std::error::Error + 'static))
    }
}

impl Detail {
    /// AWS's answer as `Code: message`; a failure without one (a timeout, a connection
    /// refused) as the SDK's chain.
    pub fn of_sdk<E, R>(e: &SdkError<E, R>) -> Detail
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        match e.as_service_error() {
            Some(service) => Detail(
                format!(
                    "{}: {}",
                    service.code().unwrap_or("error"),
                    service.message().unwrap_or("(no message)")
                ),
                None,
            ),
            None => Detail::chain(e),
        }
    }

    /// An error and its sources, kept as a chain of their texts (the SDK's error types are
    /// not `Send` + `Sync` + `'static` alike, and the texts are all a user can act on).
    pub fn chain(e: &(dyn std::error::Error + 'static)) -> Detail {
        Detail(
            e.to_string(),
            e.source().map(|s| Box::new(Detail::chain(s))),
        )
    }
}

impl AwsError {
    /// From an SDK error (Lambda's or IAM's: the SDKs share the type).
    pub fn sdk<E, R>(action: impl Into<String>, e: &SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        AwsError {
            action: action.into(),
            code: e
                .as_service_error()
                .and_then(|s| s.code())
                .map(str::to_owned),
            detail: Detail::of_sdk(e),
            advice: None,
        }
    }

    /// An error of ours about an AWS resource (a waiter's verdict, say).
    pub fn other(action: impl Into<String>, detail: impl Into<String>) -> Self {
        AwsError {
            action: action.into(),
            code: None,
            detail: Detail(detail.into(), None),
            advice: None,
        }
    }

    /// The same error, with what to do.
    pub fn advise(mut self, advice: impl Into<String>) -> Self {
        self.advice = Some(advice.into());
        self
    }

    pub fn hint(&self) -> Option<String> {
        if let Some(advice) = &self.advice {
            return Some(advice.clone());
        }
        match self.code.as_deref()? {
            "AccessDeniedException" | "AccessDenied" | "UnrecognizedClientException"
            | "InvalidClientTokenId" | "ExpiredToken" | "ExpiredTokenException" => Some(
                "check the AWS credentials in use (AWS_PROFILE, `aws sts get-caller-identity`) and that they may manage Lambda and IAM".to_owned(),
            ),
            _ => None,
        }
    }
}

/// Whether an SDK error is this service error code.
pub fn is_code<E, R>(e: &SdkError<E, R>, code: &str) -> bool
where
    E: ProvideErrorMetadata,
{
    e.as_service_error().and_then(|s| s.code()) == Some(code)
}

/// `<app>-<stage>-<Name>`, shortened with a stable hash to fit AWS's 64 characters.
pub fn physical_name(app: &str, stage: &str, name: &str) -> String {
    let full = format!("{app}-{stage}-{name}");
    if full.len() <= 64 {
        return full;
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, full.as_bytes());
    let hash: String = digest.as_ref()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{}-{hash}", &full[..55])
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_names_are_shortened_stably() {
        assert_eq!(
            super::physical_name("aws-hono", "prod", "MyApi"),
            "aws-hono-prod-MyApi"
        );
        let long = super::physical_name(
            "a-very-long-application-name-xx",
            "feature-branch-stage",
            "AnotherLongFunctionName",
        );
        assert_eq!(long.len(), 64);
        assert_eq!(
            long,
            super::physical_name(
                "a-very-long-application-name-xx",
                "feature-branch-stage",
                "AnotherLongFunctionName"
            )
        );
    }
}
