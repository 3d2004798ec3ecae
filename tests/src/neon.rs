//! The Neon API emulator (its branches' PostgreSQL servers serve TLS with a certificate of
//! a test CA), and a client that checks every answer against the response schemas of
//! Neon's OpenAPI document.

use std::sync::Arc;

use neon_emulator::spec::Spec;
use neon_emulator::{Emulator, EmulatorConfig, TlsPem};
use serde_json::Value;

use crate::certs::TestCa;

pub const API_KEY: &str = "test-neon-api-key";

/// The test CA the emulator's branches (their Neon-like proxy) serve TLS under: one for the
/// whole test run, its certificate written to a file that `SSL_CERT_FILE` names for the
/// processes a test starts, so the URIs the deployer writes (`sslmode=verify-full`,
/// `sslrootcert=system`) verify against it as they would against Neon's public roots.
pub struct EmulatorCa {
    pub server: crate::certs::ServerCert,
    /// The CA's certificate (PEM), in a file kept for the whole run.
    pub file: std::path::PathBuf,
}

pub fn emulator_ca() -> &'static EmulatorCa {
    static CA: std::sync::OnceLock<EmulatorCa> = std::sync::OnceLock::new();
    CA.get_or_init(|| {
        let ca = TestCa::new("neon emulator test CA");
        let dir = tempfile::Builder::new()
            .prefix("emulator-ca-")
            .tempdir()
            .expect("a folder for the CA")
            .keep();
        let file = dir.join("ca.pem");
        std::fs::write(&file, ca.cert_pem()).expect("write the CA");
        EmulatorCa {
            server: ca.server_cert(&["localhost", "127.0.0.1"]),
            file,
        }
    })
}

/// An emulator whose branches serve TLS, and a client for it.
pub struct NeonStack {
    pub emulator: Emulator,
    pub client: NeonClient,
}

impl NeonStack {
    /// Starts the emulator; `configure` adjusts it (operation delay, faults...).
    pub async fn start(configure: impl FnOnce(&mut EmulatorConfig)) -> Self {
        let server = &emulator_ca().server;
        let mut config = EmulatorConfig::new(API_KEY);
        config.tls = Some(TlsPem {
            cert: server.cert_pem.clone(),
            key: server.key_pem.clone(),
        });
        configure(&mut config);
        let spec = Spec::load(&config.spec_path).expect("Neon's OpenAPI document");
        let emulator = Emulator::start(config).await.expect("emulator starts");
        let client = NeonClient::new(&emulator.base_url(), API_KEY, spec);
        NeonStack { emulator, client }
    }
}

/// An answer: status and JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub retry_after: Option<String>,
}

impl Answer {
    /// The body as the deployer's own model of this answer (`deployer::neon::models`), so
    /// a test reads what the deployer reads, and a model that no longer matches a
    /// spec-valid answer fails here.
    pub fn typed<T: serde::de::DeserializeOwned>(&self) -> T {
        T::deserialize(&self.body).unwrap_or_else(|e| {
            panic!(
                "the answer does not read as {}: {e}\n{:#}",
                std::any::type_name::<T>(),
                self.body
            )
        })
    }
}

pub struct NeonClient {
    base: String,
    key: String,
    http: reqwest::Client,
    spec: Arc<Spec>,
}

impl NeonClient {
    pub fn new(base: &str, key: &str, spec: Arc<Spec>) -> Self {
        NeonClient {
            base: base.to_owned(),
            key: key.to_owned(),
            http: reqwest::Client::new(),
            spec,
        }
    }

    /// The same client with another API key.
    pub fn with_key(&self, key: &str) -> Self {
        NeonClient {
            key: key.to_owned(),
            ..NeonClient::new(&self.base, &self.key, self.spec.clone())
        }
    }

    /// Calls `method template` with `args` filling the `{...}` placeholders in order, and
    /// panics if the answer breaks the spec's response schema.
    pub async fn call(
        &self,
        method: &str,
        template: &str,
        args: &[&str],
        query: &str,
        body: Option<Value>,
    ) -> Answer {
        let mut path = template.to_owned();
        for arg in args {
            let start = path.find('{').expect("more args than placeholders");
            let end = path[start..].find('}').expect("closed placeholder") + start;
            path.replace_range(start..=end, arg);
        }
        let sep = if query.is_empty() { "" } else { "?" };
        let url = format!("{}{path}{sep}{query}", self.base);
        let mut req = self
            .http
            .request(method.parse().expect("method"), &url)
            .bearer_auth(&self.key);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let text = resp.text().await.expect("body");
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: answer is not JSON ({e}): {text}"));
        let violations = self
            .spec
            .response_violations(method, template, status, &body)
            .expect("the spec documents this operation");
        assert!(
            violations.is_empty(),
            "{method} {path} -> {status} breaks the spec:\n  {}\n{body:#}",
            violations.join("\n  ")
        );
        Answer {
            status,
            body,
            retry_after,
        }
    }
}
