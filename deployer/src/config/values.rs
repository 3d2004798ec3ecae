//! The values of `infra.toml` that have a fixed form, validated while the file is parsed:
//! serde enums and range newtypes, so a wrong one is a TOML error at its own line and
//! column. Each error message ends with `\nhint: ...`, which `config::parse` splits off
//! into the error's hint.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer};

/// What separates a message from its hint inside a serde error.
pub(super) const HINT: &str = "\nhint: ";

fn invalid<E: de::Error>(message: impl fmt::Display, hint: &str) -> E {
    E::custom(format!("{message}{HINT}{hint}"))
}

/// An integer within a range, with what it is called and the unit it is given in.
macro_rules! ranged {
    ($(#[$doc:meta])* $name:ident, $range:expr, $message:literal, $hint:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name(pub i64);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let v = i64::deserialize(d)?;
                if $range.contains(&v) {
                    Ok($name(v))
                } else {
                    Err(invalid(format!($message, v), $hint))
                }
            }
        }
    };
}

ranged!(
    /// `pg_version`: the major versions Neon offers.
    PgVersion,
    14..=18,
    "pg_version {} is not offered by Neon",
    "use 14, 15, 16, 17 or 18"
);
ranged!(
    /// `history_retention_seconds`: Neon's API allows up to 30 days (plans allow less).
    HistoryRetention,
    0..=2_592_000,
    "history_retention_seconds {} is out of range",
    "use 0 to 2592000 (30 days); Neon's Free plan allows at most 21600"
);
ranged!(
    /// `memory`, in MB, as Lambda allows it.
    MemoryMb,
    128..=10_240,
    "memory {} MB is outside what Lambda allows",
    "use 128 to 10240 (MB)"
);
ranged!(
    /// `reserved_concurrency`: instances the function may run at once (PutFunctionConcurrency's
    /// `ReservedConcurrentExecutions`); Lambda refuses more than the account's limit less
    /// the 100 it keeps unreserved, and says so.
    ReservedConcurrency,
    0..=100_000,
    "reserved_concurrency {} is out of range",
    "use 1 up to your account's concurrency limit less 100 (0 throttles every request)"
);
ranged!(
    /// `timeout`, in seconds, as Lambda allows it.
    TimeoutSecs,
    1..=900,
    "timeout {} s is outside what Lambda allows",
    "use 1 to 900 (seconds)"
);

/// `log_retention_days`: one of the values CloudWatch Logs accepts (PutRetentionPolicy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRetentionDays(pub i64);

pub const LOG_RETENTION_DAYS: &[i64] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

impl<'de> Deserialize<'de> for LogRetentionDays {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = i64::deserialize(d)?;
        if LOG_RETENTION_DAYS.contains(&v) {
            Ok(LogRetentionDays(v))
        } else {
            Err(invalid(
                format!("log_retention_days {v} is not a retention CloudWatch Logs offers"),
                "use 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653",
            ))
        }
    }
}

/// A string that must be one of a few words.
macro_rules! word_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $word:literal),+ }, $message:literal, $hint:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($variant),+
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                match s.as_str() {
                    $($word => Ok($name::$variant),)+
                    other => Err(invalid(format!($message, other), $hint)),
                }
            }
        }
    };
}

word_enum!(
    /// `removal`: what `remove` (and dropping a resource) does to Neon data.
    RemovalWord { Remove = "remove", Retain = "retain" },
    "`removal = \"{}\"` is not a removal policy",
    "use \"remove\" (delete everything on remove) or \"retain\" (keep the Neon data)"
);
word_enum!(
    /// An endpoint's `type`.
    EndpointKind { ReadWrite = "read_write", ReadOnly = "read_only" },
    "endpoint type `{}` is not one of Neon's",
    "use \"read_write\" or \"read_only\""
);
word_enum!(
    /// A function's `architecture`.
    Architecture { X86_64 = "x86_64", Arm64 = "arm64" },
    "architecture `{}` is not one of Lambda's",
    "use \"x86_64\" or \"arm64\""
);

/// `[app] name`: AWS names are built from it (`<app>-<stage>-<Function>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppName(pub String);

impl<'de> Deserialize<'de> for AppName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if ok {
            Ok(AppName(s))
        } else {
            Err(invalid(
                format!("app name `{s}` must be 1 to 32 letters, digits or `-`"),
                "AWS names are built from it: <app>-<stage>-<Function>",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Doc {
        memory: toml::Spanned<MemoryMb>,
    }

    #[test]
    fn a_value_out_of_range_is_an_error_at_its_place_with_a_hint() {
        let err = toml::from_str::<Doc>("memory = 64\n").unwrap_err();
        assert_eq!(err.span(), Some(9..11));
        assert_eq!(
            err.message(),
            "memory 64 MB is outside what Lambda allows\nhint: use 128 to 10240 (MB)"
        );
        let ok: Doc = toml::from_str("memory = 256\n").unwrap();
        assert_eq!(*ok.memory.get_ref(), MemoryMb(256));
    }
}
