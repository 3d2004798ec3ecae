//! `[function.X] smoke` and `keep_releases`: how a release is checked before `live` serves
//! it, and how many versions are kept (`resources::version`).

use super::check::Checker;
use super::raw::RawFunction;

/// Versions kept by default; Lambda's code storage (75 GB a region) is finite.
const DEFAULT_KEEP: i64 = 10;

impl Checker<'_> {
    /// The check's path (`None`: `smoke = false`) and `keep_releases`.
    pub(super) fn release_settings(&mut self, f: &RawFunction) -> (Option<String>, i64) {
        let smoke = match &f.smoke {
            None => Some("/".to_owned()),
            Some(v) => match v.get_ref() {
                toml::Value::Boolean(false) => None,
                toml::Value::Boolean(true) => Some("/".to_owned()),
                toml::Value::String(p) if p.starts_with('/') => Some(p.clone()),
                other => {
                    self.error(
                        v.span(),
                        format!("smoke = {other} is not a path or false"),
                        Some(
                            "write the path a release is checked with, e.g. smoke = \"/version\", or smoke = false for no check"
                                .into(),
                        ),
                    );
                    None
                }
            },
        };
        let keep = match &f.keep_releases {
            None => DEFAULT_KEEP,
            Some(k) if (2..=1000).contains(k.get_ref()) => *k.get_ref(),
            Some(k) => {
                self.error(
                    k.span(),
                    format!("keep_releases = {} is not between 2 and 1000", k.get_ref()),
                    Some("the live release and the one before it are always kept; e.g. keep_releases = 10".into()),
                );
                DEFAULT_KEEP
            }
        };
        (smoke, keep)
    }
}
