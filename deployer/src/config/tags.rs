//! AWS settings an organisation may require of what the deployer makes: `[app] tags`
//! (on each function, its IAM role and its log group) and `[function.X]
//! role_permissions_boundary` (on the role). Checked as AWS checks them, before any call.

use std::collections::BTreeMap;

use toml::Spanned;

use super::check::Checker;

/// Lambda's, IAM's and CloudWatch Logs' shared limit: 50 tags a resource.
const MAX_TAGS: usize = 50;

/// AWS's tag rules ("Tagging AWS resources", tag naming limits): keys 1 to 128 characters,
/// values up to 256, of letters, digits, spaces and `_ . : / = + - @`; `aws:` is AWS's own.
fn tag_text_ok(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c))
}

impl Checker<'_> {
    pub(super) fn tags(
        &mut self,
        raw: Option<&Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
    ) -> Option<BTreeMap<String, String>> {
        let raw = raw?;
        if raw.get_ref().len() > MAX_TAGS {
            self.error(
                raw.span(),
                format!(
                    "{} tags; AWS allows {MAX_TAGS} on a resource",
                    raw.get_ref().len()
                ),
                Some("keep the ones your organisation's policies need".into()),
            );
        }
        let mut tags = BTreeMap::new();
        for (key, value) in raw.get_ref() {
            let k = key.get_ref();
            if k.is_empty() || k.chars().count() > 128 || !tag_text_ok(k) {
                self.error(
                    key.span(),
                    format!("tag key `{k}` is not one AWS accepts"),
                    Some("1 to 128 letters, digits, spaces and _ . : / = + - @".into()),
                );
            } else if k.to_ascii_lowercase().starts_with("aws:") {
                self.error(
                    key.span(),
                    format!("tag key `{k}` is reserved by AWS"),
                    Some("keys starting with aws: are AWS's own; choose another".into()),
                );
            }
            let v = value.get_ref();
            if v.chars().count() > 256 || !tag_text_ok(v) {
                self.error(
                    value.span(),
                    format!("the value of tag `{k}` is not one AWS accepts"),
                    Some("up to 256 letters, digits, spaces and _ . : / = + - @".into()),
                );
            }
            tags.insert(k.clone(), v.clone());
        }
        Some(tags)
    }

    /// An IAM managed policy's ARN: `arn:<partition>:iam::<account or aws>:policy/<name>`.
    pub(super) fn permissions_boundary(&mut self, raw: Option<&Spanned<String>>) -> Option<String> {
        let raw = raw?;
        let arn = raw.get_ref();
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let ok = matches!(
            parts.as_slice(),
            ["arn", "aws" | "aws-cn" | "aws-us-gov", "iam", "", account, resource]
                if (*account == "aws" || (account.len() == 12 && account.chars().all(|c| c.is_ascii_digit())))
                    && resource.strip_prefix("policy/").is_some_and(|n| !n.is_empty())
        );
        if !ok {
            self.error(
                raw.span(),
                format!("role_permissions_boundary `{arn}` is not an IAM policy ARN"),
                Some("write the managed policy's ARN, e.g. \"arn:aws:iam::123456789012:policy/DeveloperBoundary\"".into()),
            );
        }
        Some(arn.clone())
    }
}
