//! Neon's proxy, in front of each branch's server as in front of every Neon endpoint: it
//! takes TLS first (`sslnegotiation=direct`, ALPN `postgresql`) or the classic
//! `SSLRequest` then TLS, and refuses a plain start-up (Neon requires TLS). It relays to
//! PostgreSQL over TLS with the same certificate, so SCRAM's channel binding
//! (`tls-server-end-point`, a hash of the server's certificate) holds end to end, as
//! `channel_binding=require` in Neon's URIs asks.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// PostgreSQL's `SSLRequest`: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
/// `GSSENCRequest` (code 80877104), which libpq built with GSSAPI sends first.
const GSSENC_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];

/// A proxy for one server; it stops when dropped.
pub struct Proxy {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The TLS both sides speak: the emulator's certificate to clients, and a client that
/// takes the server's own (the same certificate) without checking it.
#[derive(Clone)]
pub struct ProxyTls {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

impl ProxyTls {
    pub fn new(cert_pem: &str, key_pem: &str) -> Result<ProxyTls, String> {
        use rustls::pki_types::PrivateKeyDer;
        use rustls::pki_types::pem::PemObject;
        pgconn::tls::install_default_provider();
        let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("certificate PEM: {e}"))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| format!("key PEM: {e}"))?;
        let mut server = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| format!("server certificate: {e}"))?;
        server.alpn_protocols = vec![b"postgresql".to_vec()];
        // The branch server's certificate is the emulator's own, on loopback.
        let client = pgconn::tls::trusting_client_config();
        Ok(ProxyTls {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}

impl Proxy {
    /// Listens on a loopback port and relays each connection to `upstream`.
    pub async fn start(tls: ProxyTls, upstream: u16) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let tls = tls.clone();
                tokio::spawn(async move {
                    let _ = relay(client, tls, upstream).await;
                });
            }
        });
        Ok(Proxy { port, task })
    }
}

async fn relay(mut client: TcpStream, tls: ProxyTls, upstream: u16) -> std::io::Result<()> {
    let _ = client.set_nodelay(true);
    let mut first = [0u8; 1];
    let direct = client.peek(&mut first).await? == 1 && first[0] == 0x16;
    if !direct {
        loop {
            let mut request = [0u8; 8];
            client.read_exact(&mut request).await?;
            match request {
                SSL_REQUEST => break,
                GSSENC_REQUEST => client.write_all(b"N").await?,
                // A plain start-up: Neon requires TLS.
                _ => return Ok(()),
            }
        }
        client.write_all(b"S").await?;
    }
    let mut secured = tokio_rustls::TlsAcceptor::from(tls.server)
        .accept(client)
        .await?;
    // PostgreSQL 17, and Neon's proxy, close a direct TLS connection without ALPN
    // `postgresql`.
    if direct && secured.get_ref().1.alpn_protocol() != Some(b"postgresql".as_slice()) {
        return Ok(());
    }
    let mut server = TcpStream::connect(("127.0.0.1", upstream)).await?;
    let _ = server.set_nodelay(true);
    server.write_all(&SSL_REQUEST).await?;
    let mut answer = [0u8; 1];
    server.read_exact(&mut answer).await?;
    if answer != *b"S" {
        return Ok(());
    }
    let name = ServerName::try_from("localhost").expect("a DNS name");
    let mut server = tokio_rustls::TlsConnector::from(tls.client)
        .connect(name, server)
        .await?;
    tokio::io::copy_bidirectional(&mut secured, &mut server).await?;
    Ok(())
}
