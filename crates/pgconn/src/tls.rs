//! TLS for Postgres connections with libpq's `sslmode` semantics, on rustls + aws-lc-rs
//! (the provider the AWS SDK uses, so the process builds one crypto stack).
//!
//! | sslmode                     | certificate checked against | host name checked |
//! |-----------------------------|-----------------------------|-------------------|
//! | allow, prefer, require      | `sslrootcert` if given      | no                |
//! | verify-ca                   | `sslrootcert` (required)    | no                |
//! | verify-full                 | `sslrootcert` (required)    | yes               |

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::conninfo::{RootCerts, SslMode, TlsPolicy};

/// Why the TLS settings of a connection string cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("`sslmode={0}` verifies the server certificate, but no `sslrootcert` is given")]
    NoRootCert(&'static str),
    #[error("cannot read `sslrootcert` file `{path}`")]
    ReadRootCert {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("`sslrootcert` file `{0}` holds no PEM certificate")]
    EmptyRootCert(PathBuf),
    #[error("`sslrootcert` file `{path}` holds a certificate rustls cannot use")]
    BadRootCert {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot build the TLS configuration")]
    Build(#[source] rustls::Error),
}

impl TlsSetupError {
    /// What the user should do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            Self::NoRootCert(_) => {
                "add `sslrootcert=system` to trust the public roots, or `sslrootcert=<path to a CA file>`"
            }
            _ => "point `sslrootcert` at a readable PEM file of CA certificates",
        }
    }
}

/// The process-wide rustls provider. Installed explicitly because rustls panics when it has
/// to choose between ring and aws-lc-rs on its own; the returned error only means another
/// part of the process installed one first, which is fine.
pub fn install_default_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

/// Builds the tokio-postgres TLS connector for a policy; `None` for `sslmode=disable`.
///
/// Fails when a verifying mode has no root certificates, or the root file cannot be read.
pub fn connector(policy: &TlsPolicy) -> Result<Option<MakeRustlsConnect>, TlsSetupError> {
    if policy.mode == SslMode::Disable {
        return Ok(None);
    }
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsSetupError::Build)?;

    let verifier: Arc<dyn ServerCertVerifier> = match (&policy.root, policy.mode) {
        (None, SslMode::VerifyCa | SslMode::VerifyFull) => {
            return Err(TlsSetupError::NoRootCert(policy.mode.as_str()));
        }
        // libpq: without a root certificate, require/prefer/allow encrypt but trust any server.
        (None, _) => Arc::new(AnyServer(provider)),
        (Some(root), mode) => {
            let roots = Arc::new(load_roots(root)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| TlsSetupError::Build(rustls::Error::General(e.to_string())))?;
            if mode == SslMode::VerifyFull {
                webpki
            } else {
                // libpq: with a root certificate, require behaves as verify-ca.
                Arc::new(AnyName(webpki))
            }
        }
    };
    let mut config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // libpq 17 always offers ALPN `postgresql`; PostgreSQL 17 refuses a direct TLS
    // connection (`sslnegotiation=direct`) without it, and servers before 17 ignore it.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(Some(MakeRustlsConnect::new(config)))
}

/// `sslrootcert=system`: the public web roots compiled in (they work on Lambda, which has no
/// system store the api could read), and, as OpenSSL and rustls-native-certs read it, the
/// PEM file `SSL_CERT_FILE` names, if set (a company's own CA; the tests' CA).
fn load_roots(root: &RootCerts) -> Result<RootCertStore, TlsSetupError> {
    match root {
        RootCerts::System => {
            let mut store = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            if let Some(path) = std::env::var_os("SSL_CERT_FILE").filter(|p| !p.is_empty()) {
                store.roots.extend(load_root_file(Path::new(&path))?.roots);
            }
            Ok(store)
        }
        RootCerts::File(path) => load_root_file(path),
    }
}

fn load_root_file(path: &Path) -> Result<RootCertStore, TlsSetupError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsSetupError::ReadRootCert {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError::EmptyRootCert(path.to_owned()));
    }
    let mut store = RootCertStore::empty();
    for cert in certs {
        store
            .add(cert)
            .map_err(|source| TlsSetupError::BadRootCert {
                path: path.to_owned(),
                source,
            })?;
    }
    Ok(store)
}

/// A rustls client that trusts any server certificate, as libpq's `require` without a
/// root does (the Neon emulator's proxy reaching its own servers on loopback uses it).
pub fn trusting_client_config() -> ClientConfig {
    ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider())))
        .with_no_client_auth()
}

/// Trusts any certificate (libpq's `require` without a root), but still checks that the
/// server holds the certificate's key, so the channel-binding hash means something.
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Checks the chain against the roots but not the host name (`verify-ca`).
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the name only after the chain, so a name error means the chain is good.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
