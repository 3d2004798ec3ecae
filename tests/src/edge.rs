//! A network edge in front of a local PostgreSQL, as a client on Lambda meets Neon's: every
//! packet crosses a link with a set one-way delay (so each round trip costs a set RTT), and
//! TLS is terminated the way Neon's proxy does it, with the classic `SSLRequest` or with
//! TLS first (`sslnegotiation=direct`, which needs ALPN `postgresql`, as PostgreSQL 17
//! requires), then spoken in plain to PostgreSQL.
//!
//! It counts round trips per connection: the TCP handshake, then each flight the client
//! sends after hearing from the server. The count is what the client waited for, whatever
//! the delay; the bench prints it next to the floor, and tests assert on it (never on time).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// What PostgreSQL's `SSLRequest` message is: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// How the edge is set up.
#[derive(Clone)]
pub struct EdgeConfig {
    /// Where PostgreSQL listens (plain TCP).
    pub upstream: SocketAddr,
    /// Added to each direction of each packet: a round trip costs twice this.
    pub one_way: Duration,
    /// A certificate and key (PEM) to terminate TLS with; none: plain only.
    pub tls: Option<(String, String)>,
}

/// One client connection as the edge saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// Round trips so far: the TCP handshake, then each client flight after a server one.
    pub round_trips: u32,
    /// The first bytes were a TLS record (direct negotiation), not `SSLRequest`.
    pub direct_tls: bool,
    /// The ALPN protocol the client offered and TLS agreed on.
    pub alpn: Option<String>,
    /// When the edge relays TLS it does not terminate (no certificate: PostgreSQL's own
    /// TLS): the key-exchange group of a HelloRetryRequest the server answered with, a
    /// round trip the client's first key shares did not fit (RFC 8446, 4.1.4).
    pub hello_retry_group: Option<u16>,
}

/// A HelloRetryRequest is a ServerHello with this random (RFC 8446, 4.1.3).
const HELLO_RETRY_RANDOM: [u8; 32] = [
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
    0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
];

/// The group a HelloRetryRequest asks for, if `bytes` start with one (a TLS handshake
/// record holding a ServerHello with the retry random and a `key_share` extension).
fn hello_retry_group(bytes: &[u8]) -> Option<u16> {
    let at = |i: usize| bytes.get(i).copied();
    let u16_at = |i: usize| Some(u16::from_be_bytes([at(i)?, at(i + 1)?]));
    if at(0)? != 0x16 || at(5)? != 0x02 || bytes.get(11..43)? != HELLO_RETRY_RANDOM {
        return None;
    }
    // Record 5, handshake header 4, version 2, random 32: then the session id.
    let mut i = 43;
    i += 1 + at(i)? as usize; // session id
    i += 2 + 1; // cipher suite, compression
    let end = i + 2 + u16_at(i)? as usize;
    i += 2;
    while i + 4 <= end {
        let (kind, len) = (u16_at(i)?, u16_at(i + 2)? as usize);
        if kind == 0x0033 {
            return u16_at(i + 4);
        }
        i += 4 + len;
    }
    None
}

/// A running edge; it stops when dropped.
pub struct Edge {
    pub addr: SocketAddr,
    stats: Arc<Mutex<Vec<ConnStats>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Edge {
    pub async fn start(config: EdgeConfig) -> Edge {
        pgconn::tls::install_default_provider();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("edge binds");
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Mutex::new(Vec::new()));
        let tls = config
            .tls
            .as_ref()
            .map(|(cert, key)| Arc::new(server_config(cert, key)));
        let shared = stats.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let _ = client.set_nodelay(true);
                let index = {
                    let mut all = shared.lock().unwrap();
                    all.push(ConnStats::default());
                    all.len() - 1
                };
                tokio::spawn(serve(
                    client,
                    config.clone(),
                    tls.clone(),
                    shared.clone(),
                    index,
                ));
            }
        });
        Edge { addr, stats, task }
    }

    /// Every connection so far, in the order they came.
    pub fn connections(&self) -> Vec<ConnStats> {
        self.stats.lock().unwrap().clone()
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn server_config(cert: &str, key: &str) -> ServerConfig {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<_, _>>()
        .expect("certificate PEM");
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key PEM");
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server certificate");
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    config
}

/// Which way bytes went last on a connection, to count flights.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    ToServer,
    ToClient,
}

struct Flights {
    last: Mutex<Dir>,
    stats: Arc<Mutex<Vec<ConnStats>>>,
    index: usize,
}

impl Flights {
    fn saw_bytes(&self, dir: Dir, bytes: &[u8]) {
        if dir == Dir::ToClient
            && let Some(group) = hello_retry_group(bytes)
        {
            self.stats.lock().unwrap()[self.index].hello_retry_group = Some(group);
        }
        self.saw(dir);
    }

    fn saw(&self, dir: Dir) {
        let mut last = self.last.lock().unwrap();
        if dir == Dir::ToServer && *last != Dir::ToServer {
            self.stats.lock().unwrap()[self.index].round_trips += 1;
        }
        *last = dir;
    }
}

async fn serve(
    client: TcpStream,
    config: EdgeConfig,
    tls: Option<Arc<ServerConfig>>,
    stats: Arc<Mutex<Vec<ConnStats>>>,
    index: usize,
) {
    // The TCP handshake: one round trip before the client's first byte can leave.
    stats.lock().unwrap()[index].round_trips = 1;
    tokio::time::sleep(config.one_way * 2).await;
    let flights = Arc::new(Flights {
        last: Mutex::new(Dir::ToClient),
        stats: stats.clone(),
        index,
    });
    // The delayed link, then the edge's side of it as an in-process stream.
    let (near, far) = tokio::io::duplex(64 * 1024);
    let (client_read, client_write) = client.into_split();
    let (near_read, near_write) = tokio::io::split(near);
    tokio::spawn(delayed(
        client_read,
        near_write,
        config.one_way,
        flights.clone(),
        Dir::ToServer,
    ));
    tokio::spawn(delayed(
        near_read,
        client_write,
        config.one_way,
        flights,
        Dir::ToClient,
    ));
    let Ok(upstream) = TcpStream::connect(config.upstream).await else {
        return;
    };
    let _ = upstream.set_nodelay(true);
    let _ = terminate(far, upstream, tls, &stats, index).await;
}

/// Speaks to the client as Neon's proxy: TLS first, or `SSLRequest` then TLS, or plain
/// when the edge has no certificate; then relays to PostgreSQL in plain.
async fn terminate(
    mut far: DuplexStream,
    mut upstream: TcpStream,
    tls: Option<Arc<ServerConfig>>,
    stats: &Arc<Mutex<Vec<ConnStats>>>,
    index: usize,
) -> std::io::Result<()> {
    let Some(tls) = tls else {
        tokio::io::copy_bidirectional(&mut far, &mut upstream).await?;
        return Ok(());
    };
    let mut first = [0u8; 1];
    far.read_exact(&mut first).await?;
    let direct = first[0] == 0x16;
    let prefix = if direct {
        first.to_vec()
    } else {
        let mut rest = [0u8; 7];
        far.read_exact(&mut rest).await?;
        let mut message = first.to_vec();
        message.extend_from_slice(&rest);
        if message != SSL_REQUEST {
            // A plain start-up: this edge requires TLS, as Neon does.
            return Ok(());
        }
        far.write_all(b"S").await?;
        Vec::new()
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let stream = Prefixed { prefix, inner: far };
    let mut secured = acceptor.accept(stream).await?;
    let alpn = secured
        .get_ref()
        .1
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    {
        let mut all = stats.lock().unwrap();
        all[index].direct_tls = direct;
        all[index].alpn = alpn.clone();
    }
    // PostgreSQL 17 closes a direct TLS connection that did not agree on `postgresql`.
    if direct && alpn.as_deref() != Some("postgresql") {
        return Ok(());
    }
    tokio::io::copy_bidirectional(&mut secured, &mut upstream).await?;
    Ok(())
}

/// Copies `from` to `to`, each chunk delivered `delay` after it was read, in order.
async fn delayed<R, W>(mut from: R, mut to: W, delay: Duration, flights: Arc<Flights>, dir: Dir)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, bytes)) = rx.recv().await {
            until(due).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                flights.saw_bytes(dir, &buf[..n]);
                if tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// Waits until `due`, to well under a millisecond: tokio's timer fires on millisecond
/// ticks (a 0.5 ms delay would take up to 1.5), so the last stretch yields instead.
async fn until(due: Instant) {
    const TICK: Duration = Duration::from_millis(2);
    if let Some(far) = due.checked_duration_since(Instant::now())
        && far > TICK
    {
        tokio::time::sleep_until((due - TICK).into()).await;
    }
    while Instant::now() < due {
        tokio::task::yield_now().await;
    }
}

/// A stream that first yields bytes already read from it.
struct Prefixed {
    prefix: Vec<u8>,
    inner: DuplexStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.drain(..n);
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
