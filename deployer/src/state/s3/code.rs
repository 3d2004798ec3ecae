//! Function code over Lambda's direct-upload limit, uploaded to the state bucket for Lambda
//! to fetch: `<prefix>/<app>/<stage>/code/<function>-<sha256>.zip`, deleted once Lambda
//! has it.

use super::{S3Store, remote};
use crate::state::StateError;

impl S3Store {
    /// The region the bucket is used in (its own, where it lives elsewhere).
    pub fn region(&self) -> Option<String> {
        self.client.config().region().map(|r| r.to_string())
    }

    /// Uploads code over Lambda's direct-upload limit, for Lambda to fetch (it copies the
    /// object when the call is made): `<prefix>/<app>/<stage>/code/<function>-<sha256>.zip`.
    /// The bucket and key.
    pub async fn put_code(
        &self,
        stage: &str,
        function: &str,
        sha256_base64: &str,
        zip: Vec<u8>,
    ) -> Result<(String, String), StateError> {
        let digest: String = sha256_base64
            .chars()
            .map(|c| match c {
                '/' => '_',
                '+' => '-',
                '=' => '.',
                c => c,
            })
            .collect();
        let key = self.key(stage, &format!("code/{function}-{digest}.zip"));
        self.put(&key, zip)
            .send()
            .await
            .map_err(|e| remote(format!("upload the code to s3://{}/{key}", self.bucket), &e))?;
        Ok((self.bucket.clone(), key))
    }

    /// Deletes uploaded code once Lambda has it; one that stays behind costs a little
    /// storage, so a failure is only logged.
    pub async fn delete_code(&self, key: &str) {
        let deleted = self.delete_request(key).send().await;
        if let Err(e) = deleted {
            tracing::warn!(error = %aws_sdk_s3::error::DisplayErrorContext(&e), key, "could not delete uploaded code");
        }
    }
}
