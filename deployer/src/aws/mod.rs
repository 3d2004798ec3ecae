//! AWS: the function's IAM role and the Lambda function with its URL, through the SDK.
//! `AWS_ENDPOINT_URL` (moto in tests) and the usual credential chain are honoured.

pub mod iam;
pub mod lambda;

use aws_config::BehaviorVersion;

/// The SDK clients, built once per run.
pub struct Aws {
    pub iam: aws_sdk_iam::Client,
    pub lambda: aws_sdk_lambda::Client,
}

impl Aws {
    /// Loads the shared AWS configuration for `region` (or the default chain's region).
    pub async fn connect(region: Option<&str>) -> Result<Aws, String> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(r) = region {
            loader = loader.region(aws_config::Region::new(r.to_owned()));
        }
        let config = loader.load().await;
        if config.region().is_none() {
            return Err(
                "no AWS region: set `region` under [app] in infra.toml, or AWS_REGION".to_owned(),
            );
        }
        Ok(Aws {
            iam: aws_sdk_iam::Client::new(&config),
            lambda: aws_sdk_lambda::Client::new(&config),
        })
    }
}

/// An SDK error (Lambda's or IAM's: the SDKs share the type) with its service code and
/// message, for humans (never a secret: AWS does not echo the environment we send).
pub fn describe<E, R>(e: &aws_sdk_lambda::error::SdkError<E, R>) -> String
where
    E: aws_sdk_lambda::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e.as_service_error() {
        Some(service) => format!(
            "{}: {}",
            service.code().unwrap_or("error"),
            service.message().unwrap_or("(no message)")
        ),
        None => {
            let mut out = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                out.push_str(": ");
                out.push_str(&s.to_string());
                source = s.source();
            }
            out
        }
    }
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
