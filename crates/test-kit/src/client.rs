//! A small HTTPS client that presents a client certificate, for the tests, benchmarks and
//! tools of this repository (it was `tower_mtls::client`; applications use hyper-util's or
//! reqwest's client with `tower_mtls::steadybit::agent` or their own rustls `ClientConfig`).
//!
//! ```no_run
//! use tower_mtls_test_kit::client::Client;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder()
//!     .trust_server_ca_file("ca.crt")
//!     .identity_files("client.crt", "client.key")
//!     .build()?;
//! let conn = client.connect("127.0.0.1:8443".parse()?, "localhost").await?;
//! let response = conn.get("/").await?;
//! println!("{} {:?}", response.status(), response.body());
//! # Ok(()) }
//! ```

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{AlertDescription, ClientConfig, RootCertStore, SupportedProtocolVersion};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Mutex;
use tower_mtls::ConfigError;
use tower_mtls::tls::default_provider;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The client's own certificates or keys could not be loaded.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The server name is not a valid DNS name or IP address.
    #[error("invalid server name: {0:?}")]
    InvalidServerName(String),
    /// The TCP (or Unix) connection failed.
    #[error("cannot connect: {0}")]
    Connect(#[source] io::Error),
    /// The TLS handshake failed (on this side, or by the server's alert).
    #[error("TLS handshake failed: {0}")]
    Handshake(#[source] io::Error),
    /// The TLS session failed after the handshake, typically by the server's alert (with
    /// TLS 1.3 a rejected client certificate shows up here: the client considers the
    /// handshake done before the server has judged its certificate).
    #[error("TLS session failed: {0}")]
    Tls(#[source] rustls::Error),
    /// The connection's stream failed after the handshake without a TLS alert (e.g. reset by
    /// the peer, or closed without close_notify).
    #[error("connection failed: {0}")]
    Io(#[source] io::Error),
    /// The request could not be built (e.g. an invalid path).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The HTTP exchange failed.
    #[error("HTTP request failed: {0}")]
    Http(#[from] hyper::Error),
}

impl ClientError {
    /// The TLS alert the server sent, if the failure came from one (e.g.
    /// `CertificateRequired`, `UnknownCA`, `CertificateExpired`).
    pub fn alert(&self) -> Option<AlertDescription> {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(err) = source {
            if let Some(rustls::Error::AlertReceived(alert)) = err.downcast_ref::<rustls::Error>() {
                return Some(*alert);
            }
            let in_io = err
                .downcast_ref::<io::Error>()
                .and_then(io::Error::get_ref)
                .and_then(|e| e.downcast_ref::<rustls::Error>());
            if let Some(rustls::Error::AlertReceived(alert)) = in_io {
                return Some(*alert);
            }
            source = err.source();
        }
        None
    }
}

/// Builds a [`Client`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ClientBuilder {
    roots: Vec<Source>,
    identity: Option<(Source, Source)>,
    provider: Option<Arc<CryptoProvider>>,
    versions: Option<Vec<&'static SupportedProtocolVersion>>,
    alpn: Option<Vec<Vec<u8>>>,
    no_resumption: bool,
}

impl ClientBuilder {
    /// Trusts the CA certificates of a PEM file for the server's certificate.
    pub fn trust_server_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.roots.push(Source::Path(path.into()));
        self
    }

    /// Trusts CA certificates given as PEM bytes.
    pub fn trust_server_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.roots.push(Source::memory("server CA", pem));
        self
    }

    /// Presents this certificate chain and key (PEM files).
    pub fn identity_files(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.identity = Some((Source::Path(cert.into()), Source::Path(key.into())));
        self
    }

    /// Presents this certificate chain and key (PEM bytes).
    pub fn identity_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.identity = Some((
            Source::memory("client certificate", cert),
            Source::memory("client key", key),
        ));
        self
    }

    /// The crypto provider (default: [`default_provider`](tower_mtls::tls::default_provider())).
    pub fn crypto_provider(mut self, provider: Arc<CryptoProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// Restricts the protocol versions offered (default: TLS 1.3 and 1.2).
    pub fn protocol_versions(mut self, versions: &[&'static SupportedProtocolVersion]) -> Self {
        self.versions = Some(versions.to_vec());
        self
    }

    /// ALPN protocols to offer (default: `h2`, `http/1.1`). Offer only `http/1.1` to force
    /// HTTP/1.1.
    pub fn alpn_protocols(mut self, protocols: Vec<Vec<u8>>) -> Self {
        self.alpn = Some(protocols);
        self
    }

    /// Never resume sessions: every connection makes a full handshake.
    pub fn no_resumption(mut self) -> Self {
        self.no_resumption = true;
        self
    }

    /// Loads the material and builds the client.
    pub fn build(self) -> Result<Client, ClientError> {
        let provider = self.provider.unwrap_or_else(default_provider);
        let mut roots = RootCertStore::empty();
        for source in &self.roots {
            for cert in source.certificates()? {
                roots.add(cert).map_err(|e| ConfigError::UnusableTrust {
                    path: source.name(),
                    index: 1,
                    reason: e.to_string(),
                })?;
            }
        }
        let versions = self
            .versions
            .unwrap_or_else(|| vec![&rustls::version::TLS13, &rustls::version::TLS12]);
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .map_err(ConfigError::Tls)?
            .with_root_certificates(roots);
        let mut config = match self.identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(cert.certificates()?, key.private_key()?)
                .map_err(ConfigError::Tls)?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self
            .alpn
            .unwrap_or_else(|| vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        if self.no_resumption {
            config.resumption = rustls::client::Resumption::disabled();
        }
        Ok(Client {
            config: Arc::new(config),
        })
    }
}

/// An HTTPS client. Cheap to clone; clones share the session cache.
#[derive(Clone)]
pub struct Client {
    config: Arc<ClientConfig>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("alpn", &self.config.alpn_protocols)
            .finish()
    }
}

impl Client {
    /// Starts a [`ClientBuilder`].
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client with a rustls configuration built elsewhere (set its ALPN protocols to get
    /// HTTP/2).
    pub fn from_config(config: Arc<ClientConfig>) -> Self {
        Self { config }
    }

    /// The rustls configuration.
    pub fn tls_config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    /// Connects over TCP, runs the handshake (verifying the server as `server_name`) and sets
    /// up HTTP/2 or HTTP/1.1 as ALPN decided.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        server_name: &str,
    ) -> Result<Connection, ClientError> {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(ClientError::Connect)?;
        let _ = tcp.set_nodelay(true);
        let mut conn = self.handshake(tcp, server_name).await?;
        conn.authority = authority(server_name, Some(addr.port()));
        Ok(conn)
    }

    /// Connects to a Unix socket, then as [`connect`](Self::connect).
    #[cfg(unix)]
    pub async fn connect_unix(
        &self,
        path: impl AsRef<std::path::Path>,
        server_name: &str,
    ) -> Result<Connection, ClientError> {
        let stream = tokio::net::UnixStream::connect(path)
            .await
            .map_err(ClientError::Connect)?;
        self.handshake(stream, server_name).await
    }

    /// Runs the handshake and HTTP setup over any stream.
    pub async fn handshake<IO>(&self, io: IO, server_name: &str) -> Result<Connection, ClientError>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|_| ClientError::InvalidServerName(server_name.to_owned()))?;
        let tls = tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(name, io)
            .await
            .map_err(ClientError::Handshake)?;
        let (_, conn) = tls.get_ref();
        let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
        let resumed = conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        let protocol_version = conn.protocol_version();
        let server_certificates = conn
            .peer_certificates()
            .map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default();
        let tls_error = Arc::new(TlsFailure::default());
        let io = TokioIo::new(RecordTlsError {
            inner: tls,
            slot: tls_error.clone(),
        });
        let (sender, driver) = if alpn.as_deref() == Some(b"h2") {
            let (sender, conn) = http2::handshake(TokioExecutor::new(), io).await?;
            (Sender::H2(sender), tokio::spawn(conn))
        } else {
            let (sender, conn) = http1::handshake(io).await?;
            (Sender::H1(Mutex::new(sender)), tokio::spawn(conn))
        };
        Ok(Connection {
            sender,
            authority: authority(server_name, None),
            driver: Mutex::new(Some(driver)),
            tls_error,
            alpn,
            resumed,
            protocol_version,
            server_certificates,
        })
    }

    /// One request on a fresh connection: connect, `GET path`, read the whole body.
    pub async fn get(
        &self,
        addr: SocketAddr,
        server_name: &str,
        path: &str,
    ) -> Result<http::Response<Bytes>, ClientError> {
        self.connect(addr, server_name).await?.get(path).await
    }
}

/// `host[:port]`, with an IPv6 literal in brackets.
fn authority(host: &str, port: Option<u16>) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    match port {
        Some(port) => format!("{host}:{port}"),
        None => host,
    }
}

/// Remembers the first error seen on the stream: the server's TLS alert (or another rustls
/// error), or else an I/O error.
struct RecordTlsError<IO> {
    inner: tokio_rustls::client::TlsStream<IO>,
    slot: Arc<TlsFailure>,
}

/// The first error a connection's stream saw, and a wake-up for whoever waits on it.
#[derive(Default)]
struct TlsFailure {
    error: std::sync::Mutex<Failure>,
    seen: tokio::sync::Notify,
}

/// The first rustls error, and the first other I/O error, of one stream.
#[derive(Default)]
struct Failure {
    tls: Option<rustls::Error>,
    io: Option<(io::ErrorKind, String)>,
}

impl TlsFailure {
    fn lock(&self) -> std::sync::MutexGuard<'_, Failure> {
        self.error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The TLS error (e.g. the server's alert), if the stream saw one.
    fn get(&self) -> Option<rustls::Error> {
        self.lock().tls.clone()
    }

    /// Why the stream failed, if it did: its TLS error, else its I/O error.
    fn error(&self) -> Option<ClientError> {
        let failure = self.lock();
        match (&failure.tls, &failure.io) {
            (Some(tls), _) => Some(ClientError::Tls(tls.clone())),
            (None, Some((kind, message))) => {
                Some(ClientError::Io(io::Error::new(*kind, message.clone())))
            }
            (None, None) => None,
        }
    }

    /// Resolves once the stream has failed (e.g. with the server's alert, or reset).
    async fn wait(&self) {
        loop {
            let seen = self.seen.notified();
            if self.error().is_some() {
                return;
            }
            seen.await;
        }
    }
}

impl<IO> RecordTlsError<IO> {
    fn record<T>(&self, result: io::Result<T>) -> io::Result<T> {
        if let Err(error) = &result {
            let tls = error
                .get_ref()
                .and_then(|e| e.downcast_ref::<rustls::Error>());
            let mut failure = self.slot.lock();
            match tls {
                Some(tls) => {
                    failure.tls.get_or_insert_with(|| tls.clone());
                }
                None => {
                    failure
                        .io
                        .get_or_insert_with(|| (error.kind(), error.to_string()));
                }
            }
            drop(failure);
            self.slot.seen.notify_waiters();
        }
        result
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for RecordTlsError<IO> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let this = self.get_mut();
        std::pin::Pin::new(&mut this.inner)
            .poll_read(cx, buf)
            .map(|r| this.record(r))
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RecordTlsError<IO> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        let this = self.get_mut();
        std::pin::Pin::new(&mut this.inner)
            .poll_write(cx, buf)
            .map(|r| this.record(r))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let this = self.get_mut();
        std::pin::Pin::new(&mut this.inner)
            .poll_flush(cx)
            .map(|r| this.record(r))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let this = self.get_mut();
        std::pin::Pin::new(&mut this.inner)
            .poll_shutdown(cx)
            .map(|r| this.record(r))
    }
}

enum Sender {
    H1(Mutex<http1::SendRequest<Full<Bytes>>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// One established HTTPS connection. HTTP/2 requests may be sent concurrently through a
/// shared reference; HTTP/1.1 requests take turns.
pub struct Connection {
    sender: Sender,
    /// `host[:port]` for the `Host` header or `:authority`: the name the server was verified as.
    authority: String,
    /// The task driving the connection; its error explains a failed request (e.g. the
    /// server's TLS alert).
    driver: Mutex<Option<tokio::task::JoinHandle<Result<(), hyper::Error>>>>,
    /// The first TLS error the connection's stream saw (HTTP/2 turns I/O errors into text).
    tls_error: Arc<TlsFailure>,
    alpn: Option<Vec<u8>>,
    resumed: bool,
    protocol_version: Option<rustls::ProtocolVersion>,
    server_certificates: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("alpn", &self.alpn.as_deref().map(String::from_utf8_lossy))
            .field("resumed", &self.resumed)
            .field("protocol_version", &self.protocol_version)
            .finish()
    }
}

impl Connection {
    /// The ALPN protocol agreed on.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.alpn.as_deref()
    }

    /// Whether the TLS session was resumed.
    pub fn is_resumed(&self) -> bool {
        self.resumed
    }

    /// The certificate chain the server presented, leaf first.
    pub fn server_certificates(&self) -> &[rustls::pki_types::CertificateDer<'static>] {
        &self.server_certificates
    }

    /// The negotiated TLS version.
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.protocol_version
    }

    /// Closes the connection from this side and waits for its task to end (at most 30 s);
    /// returns whether it ended. Dropping a `Connection` closes it too, without the wait.
    pub async fn close(self) -> bool {
        let Connection { sender, driver, .. } = self;
        // Without a sender hyper's task finishes the connection (HTTP/2: a GOAWAY) and ends.
        drop(sender);
        match driver.into_inner() {
            Some(driver) => tokio::time::timeout(std::time::Duration::from_secs(30), driver)
                .await
                .is_ok(),
            None => true,
        }
    }

    /// Sends a request and reads the whole response body.
    pub async fn send(
        &self,
        request: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<Bytes>, ClientError> {
        match self.exchange(request).await {
            Ok(response) => Ok(response),
            Err(error) => Err(self.connection_error().await.unwrap_or(error)),
        }
    }

    /// The error that ended the connection, if it has ended with one.
    async fn connection_error(&self) -> Option<ClientError> {
        // The server's alert says it all; hyper's task may not even have noticed yet.
        if let Some(tls) = self.tls_error.get() {
            return Some(ClientError::Tls(tls));
        }
        let driver = self.driver.lock().await.take();
        // The connection is closing when a request fails; its task ends promptly.
        let driver_error = match driver {
            Some(driver) => {
                match tokio::time::timeout(std::time::Duration::from_secs(5), driver).await {
                    Ok(Ok(Err(e))) => Some(e),
                    _ => None,
                }
            }
            None => None,
        };
        // A TLS error that arrived meanwhile still says most; then hyper's own error; then the
        // stream's I/O error.
        self.tls_error
            .get()
            .map(ClientError::Tls)
            .or(driver_error.map(ClientError::Http))
            .or_else(|| self.tls_error.error())
    }

    async fn exchange(
        &self,
        request: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<Bytes>, ClientError> {
        // A TLS error (the server's alert after a TLS 1.3 handshake the client thought done)
        // ends the request even if hyper's HTTP/2 client task misses the connection's end.
        tokio::select! {
            biased;
            response = self.exchange_http(request) => response,
            () = self.tls_error.wait() => Err(self
                .tls_error
                .error()
                .unwrap_or(ClientError::Tls(rustls::Error::HandshakeNotComplete))),
        }
    }

    async fn exchange_http(
        &self,
        request: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<Bytes>, ClientError> {
        let response = match &self.sender {
            Sender::H1(sender) => {
                let mut sender = sender.lock().await;
                sender.ready().await?;
                sender.send_request(request).await?
            }
            Sender::H2(sender) => {
                let mut sender = sender.clone();
                sender.ready().await?;
                sender.send_request(request).await?
            }
        };
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(http::Response::from_parts(parts, body))
    }

    /// `GET path`, addressed to the server name the connection was made for (the `Host`
    /// header on HTTP/1.1, `:authority` on HTTP/2), with the port when it was made over TCP.
    pub async fn get(&self, path: &str) -> Result<http::Response<Bytes>, ClientError> {
        let mut builder = http::Request::get(path);
        builder = match &self.sender {
            Sender::H1(_) => builder.header(http::header::HOST, &self.authority),
            Sender::H2(_) => builder.uri(format!("https://{}{path}", self.authority)),
        };
        let request = builder
            .body(Full::new(Bytes::new()))
            .map_err(|e| ClientError::InvalidRequest(format!("{path}: {e}")))?;
        self.send(request).await
    }
}

/// Where PEM comes from. Its `Debug` never shows in-memory bytes (they may be a private key).
#[derive(Clone)]
enum Source {
    Path(PathBuf),
    Memory { label: &'static str, bytes: Vec<u8> },
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path(path) => f.debug_tuple("Path").field(path).finish(),
            Self::Memory { label, bytes } => f
                .debug_struct("Memory")
                .field("label", label)
                .field("bytes", &format_args!("<{} bytes, redacted>", bytes.len()))
                .finish(),
        }
    }
}

impl Source {
    fn memory(label: &'static str, bytes: impl Into<Vec<u8>>) -> Self {
        Self::Memory {
            label,
            bytes: bytes.into(),
        }
    }

    /// The path, or `<label>` for in-memory bytes, for messages.
    fn name(&self) -> PathBuf {
        match self {
            Self::Path(path) => path.clone(),
            Self::Memory { label, .. } => PathBuf::from(format!("<{label}>")),
        }
    }

    fn bytes(&self) -> Result<std::borrow::Cow<'_, [u8]>, ConfigError> {
        match self {
            Self::Path(path) => {
                std::fs::read(path)
                    .map(std::borrow::Cow::Owned)
                    .map_err(|source| match source.kind() {
                        io::ErrorKind::NotFound => ConfigError::NotFound { path: path.clone() },
                        _ => ConfigError::Io {
                            path: path.clone(),
                            source,
                        },
                    })
            }
            Self::Memory { bytes, .. } => Ok(std::borrow::Cow::Borrowed(bytes)),
        }
    }

    /// Every certificate, in order; an error when there is none.
    fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
        let certs = CertificateDer::pem_slice_iter(&self.bytes()?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.invalid(e))?;
        if certs.is_empty() {
            return Err(ConfigError::NoPemBlock {
                path: self.name(),
                expected: "CERTIFICATE",
            });
        }
        Ok(certs)
    }

    /// The first private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    fn private_key(&self) -> Result<PrivateKeyDer<'static>, ConfigError> {
        PrivateKeyDer::from_pem_slice(&self.bytes()?).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => ConfigError::NoPemBlock {
                path: self.name(),
                expected: "PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY",
            },
            e => self.invalid(e),
        })
    }

    fn invalid(&self, error: rustls::pki_types::pem::Error) -> ConfigError {
        ConfigError::InvalidPem {
            path: self.name(),
            reason: error.to_string(),
        }
    }
}
