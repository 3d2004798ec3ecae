//! libpq connection strings, as users paste them from Neon's console or `psql`.
//!
//! tokio-postgres understands most keywords but not `sslrootcert`, nor the `allow`,
//! `verify-ca` and `verify-full` modes of `sslmode`, so this module reads both forms
//! (`postgresql://...` URIs and `key=value` lists), takes out the TLS keywords, and hands
//! everything else to tokio-postgres. No error produced here ever quotes a value: a
//! connection string carries a password.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use percent_encoding::percent_decode_str;

/// The `sslmode` values of libpq.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }

    /// The keyword as libpq spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Allow => "allow",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// Where trusted root certificates come from (`sslrootcert`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootCerts {
    /// A PEM file of CA certificates.
    File(PathBuf),
    /// `sslrootcert=system`: the well-known public roots.
    System,
}

/// What the TLS keywords of a connection string ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPolicy {
    pub mode: SslMode,
    pub root: Option<RootCerts>,
}

/// A parsed connection string: the tokio-postgres settings plus the TLS policy.
#[derive(Clone)]
pub struct ConnInfo {
    pub config: tokio_postgres::Config,
    pub tls: TlsPolicy,
}

impl fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // tokio-postgres redacts the password in its own Debug output.
        f.debug_struct("ConnInfo")
            .field("config", &self.config)
            .field("tls", &self.tls)
            .finish()
    }
}

/// Why a connection string could not be read. Never contains a value from the string.
#[derive(Debug, thiserror::Error)]
pub enum ConnInfoError {
    #[error("expected `=` after keyword `{0}`")]
    MissingEquals(String),
    #[error("the value of `{0}` has an unterminated quote")]
    UnterminatedQuote(String),
    #[error("`{0}` is not valid percent-encoded UTF-8")]
    BadEncoding(&'static str),
    #[error("URI parameter without `=` (write `?key=value&key=value`)")]
    BadParameter,
    #[error("host `[...]` in the URI has no closing `]`")]
    UnclosedBracket,
    #[error(
        "invalid `sslmode` (expected disable, allow, prefer, require, verify-ca or verify-full)"
    )]
    BadSslMode,
    #[error("`sslrootcert` is empty")]
    EmptyRootCert,
    #[error(
        "weak `sslmode` \"{0}\" may not be used with `sslnegotiation=direct` (use require, verify-ca or verify-full)"
    )]
    WeakModeForDirect(&'static str),
    #[error("{0}")]
    Rejected(#[source] tokio_postgres::Error),
}

impl FromStr for ConnInfo {
    type Err = ConnInfoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

/// Parses a libpq connection string (URI or keyword/value form).
///
/// Fails when the string is malformed, `sslmode` is not a libpq mode, or tokio-postgres
/// rejects a keyword or value; the error names the keyword, never its value.
pub fn parse(s: &str) -> Result<ConnInfo, ConnInfoError> {
    let s = s.trim();
    let pairs = match s
        .strip_prefix("postgresql://")
        .or_else(|| s.strip_prefix("postgres://"))
    {
        Some(rest) => uri_pairs(rest)?,
        None => keyword_pairs(s)?,
    };

    // libpq's default is `prefer`.
    let mut tls = TlsPolicy {
        mode: SslMode::Prefer,
        root: None,
    };
    let mut rest = String::new();
    for (key, value) in pairs {
        match key.as_str() {
            "sslmode" => tls.mode = SslMode::parse(&value).ok_or(ConnInfoError::BadSslMode)?,
            "sslrootcert" if value.is_empty() => return Err(ConnInfoError::EmptyRootCert),
            "sslrootcert" if value == "system" => tls.root = Some(RootCerts::System),
            "sslrootcert" => tls.root = Some(RootCerts::File(PathBuf::from(value))),
            _ => {
                rest.push_str(&key);
                rest.push_str("='");
                for c in value.chars() {
                    if c == '\'' || c == '\\' {
                        rest.push('\\');
                    }
                    rest.push(c);
                }
                rest.push_str("' ");
            }
        }
    }

    let mut config = tokio_postgres::Config::from_str(&rest).map_err(ConnInfoError::Rejected)?;
    // libpq 17: TLS first, no SSLRequest round trip, only when TLS is required (a server
    // that does not speak TLS could not be fallen back from).
    if config.get_ssl_negotiation() == tokio_postgres::config::SslNegotiation::Direct
        && !matches!(
            tls.mode,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull
        )
    {
        return Err(ConnInfoError::WeakModeForDirect(tls.mode.as_str()));
    }
    config.ssl_mode(match tls.mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        // tokio-postgres has no `allow` (plaintext first); trying TLS first is the safer reading.
        SslMode::Allow | SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
            tokio_postgres::config::SslMode::Require
        }
    });
    Ok(ConnInfo { config, tls })
}

fn decode(s: &str, what: &'static str) -> Result<String, ConnInfoError> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|v| v.into_owned())
        .map_err(|_| ConnInfoError::BadEncoding(what))
}

/// `[user[:password]@][host[:port][,...]][/dbname][?param=value&...]`, already without scheme.
fn uri_pairs(rest: &str) -> Result<Vec<(String, String)>, ConnInfoError> {
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (netloc, path) = before_query.split_once('/').unwrap_or((before_query, ""));
    let mut pairs = Vec::new();

    // The password may itself contain `@` when not encoded; libpq splits at the last one.
    let hostlist = match netloc.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                pairs.push(("user".to_owned(), decode(user, "user")?));
            }
            if let Some(password) = password {
                pairs.push(("password".to_owned(), decode(password, "password")?));
            }
            hosts
        }
        None => netloc,
    };

    if !hostlist.is_empty() {
        let mut hosts = Vec::new();
        let mut ports = Vec::new();
        for entry in hostlist.split(',') {
            let (host, port) = if let Some(v6) = entry.strip_prefix('[') {
                let (host, after) = v6.split_once(']').ok_or(ConnInfoError::UnclosedBracket)?;
                (host, after.strip_prefix(':').unwrap_or(""))
            } else {
                entry.split_once(':').unwrap_or((entry, ""))
            };
            hosts.push(decode(host, "host")?);
            ports.push(decode(port, "port")?);
        }
        pairs.push(("host".to_owned(), hosts.join(",")));
        if ports.iter().any(|p| !p.is_empty()) {
            pairs.push(("port".to_owned(), ports.join(",")));
        }
    }

    if !path.is_empty() {
        pairs.push(("dbname".to_owned(), decode(path, "dbname")?));
    }

    for param in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = param.split_once('=').ok_or(ConnInfoError::BadParameter)?;
        pairs.push((decode(key, "parameter name")?, decode(value, "parameter")?));
    }
    Ok(pairs)
}

/// `key=value key='quoted value'`, with `\` escaping inside values as libpq does.
fn keyword_pairs(s: &str) -> Result<Vec<(String, String)>, ConnInfoError> {
    let mut pairs = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        if key.is_empty() {
            break;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(ConnInfoError::MissingEquals(key));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                    None => return Err(ConnInfoError::UnterminatedQuote(key)),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_postgres::config::Host;

    #[test]
    fn direct_tls_negotiation_needs_a_mode_that_requires_tls() {
        use tokio_postgres::config::SslNegotiation;
        let info =
            parse("postgresql://u:secret@h/db?sslmode=require&sslnegotiation=direct").unwrap();
        assert_eq!(info.config.get_ssl_negotiation(), SslNegotiation::Direct);
        let default = parse("postgresql://u:secret@h/db?sslmode=require").unwrap();
        assert_eq!(
            default.config.get_ssl_negotiation(),
            SslNegotiation::Postgres
        );
        for weak in ["prefer", "allow", "disable"] {
            let err = parse(&format!(
                "postgresql://u:secret@h/db?sslmode={weak}&sslnegotiation=direct"
            ))
            .unwrap_err()
            .to_string();
            assert!(err.contains(&format!("weak `sslmode` \"{weak}\"")), "{err}");
            assert!(!err.contains("secret"), "{err}");
        }
        // libpq's default sslmode (prefer) is weak too.
        assert!(parse("host=h sslnegotiation=direct").is_err());
    }

    #[test]
    fn neon_uri_keeps_channel_binding_and_requires_tls() {
        let info = parse(
            "postgresql://neondb_owner:p%40ss@ep-cool-123.us-east-1.aws.neon.tech/neondb?sslmode=require&channel_binding=require",
        )
        .unwrap();
        assert_eq!(info.config.get_user(), Some("neondb_owner"));
        assert_eq!(info.config.get_password(), Some(&b"p@ss"[..]));
        assert_eq!(info.config.get_dbname(), Some("neondb"));
        assert_eq!(
            info.config.get_hosts(),
            &[Host::Tcp("ep-cool-123.us-east-1.aws.neon.tech".into())]
        );
        assert_eq!(info.tls.mode, SslMode::Require);
        assert_eq!(
            info.config.get_channel_binding(),
            tokio_postgres::config::ChannelBinding::Require
        );
    }

    #[test]
    fn verify_full_and_root_cert_are_ours_not_tokio_postgres() {
        let info = parse("host=db.example port=6543 user=u sslmode=verify-full sslrootcert='/etc/my ca.pem' options='-c search_path=app'").unwrap();
        assert_eq!(info.tls.mode, SslMode::VerifyFull);
        assert_eq!(
            info.tls.root,
            Some(RootCerts::File(PathBuf::from("/etc/my ca.pem")))
        );
        assert_eq!(info.config.get_ports(), &[6543]);
        assert_eq!(info.config.get_options(), Some("-c search_path=app"));
        let system = parse("postgres://h/db?sslrootcert=system&sslmode=verify-ca").unwrap();
        assert_eq!(system.tls.root, Some(RootCerts::System));
    }

    #[test]
    fn ipv6_hosts_and_multiple_hosts() {
        let info = parse("postgres://u@[::1]:5433,other:5434/db").unwrap();
        assert_eq!(
            info.config.get_hosts(),
            &[Host::Tcp("::1".into()), Host::Tcp("other".into())]
        );
        assert_eq!(info.config.get_ports(), &[5433, 5434]);
        assert_eq!(info.tls.mode, SslMode::Prefer);
    }

    #[test]
    fn quoted_values_with_escapes() {
        let info = parse(r"user=u password='it\'s a \\secret' host=h").unwrap();
        assert_eq!(info.config.get_password(), Some(&br"it's a \secret"[..]));
    }

    #[test]
    fn errors_name_the_keyword_but_never_the_value() {
        let secret = "hunter2-do-not-print";
        let cases = [
            format!("postgres://u:{secret}@h:notaport/db"),
            format!("postgres://u:{secret}@h/db?sslmode=sometimes"),
            format!("postgres://u:{secret}@h/db?frobnicate=1"),
            format!("user=u password='{secret}"),
            format!("user=u password {secret}"),
            format!("postgres://u:{secret}@h/db?{secret}"),
        ];
        for case in cases {
            let err = parse(&case).unwrap_err();
            let chain = error_chain(&err);
            assert!(!chain.contains(secret), "{chain}");
        }
        let err = parse("postgres://h/db?frobnicate=1").unwrap_err();
        assert!(error_chain(&err).contains("frobnicate"));
        let err = parse("postgres://h:x/db").unwrap_err();
        assert!(error_chain(&err).contains("port"));
    }

    fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
        let mut out = e.to_string();
        let mut cur = e.source();
        while let Some(s) = cur {
            out.push_str(": ");
            out.push_str(&s.to_string());
            cur = s.source();
        }
        out
    }
}
