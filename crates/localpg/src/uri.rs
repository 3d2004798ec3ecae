//! libpq connection URIs, built one way for every local cluster (`deployer dev`, the test
//! harness, the Neon emulator's branches): user, password and database percent-encoded, so
//! a password with `@`, `/` or `%` still connects.

/// `postgresql://user:password@host:port/database[?params]`.
pub fn uri(
    host: &str,
    port: u16,
    user: &str,
    password: &str,
    database: &str,
    params: &str,
) -> String {
    let sep = if params.is_empty() { "" } else { "?" };
    format!(
        "postgresql://{}:{}@{host}:{port}/{}{sep}{params}",
        encode(user),
        encode(password),
        encode(database)
    )
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn reserved_characters_are_encoded_and_params_appended() {
        assert_eq!(
            super::uri(
                "127.0.0.1",
                5432,
                "app user",
                "p@ss/w%rd",
                "my db",
                "sslmode=disable"
            ),
            "postgresql://app%20user:p%40ss%2Fw%25rd@127.0.0.1:5432/my%20db?sslmode=disable"
        );
        assert_eq!(
            super::uri("localhost", 1, "u", "p", "d", ""),
            "postgresql://u:p@localhost:1/d"
        );
    }
}
