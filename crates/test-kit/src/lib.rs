//! Test machinery for tower-mtls (not published): a PKI generated at run time ([`pki`]), the
//! bare tokio-rustls configuration benchmarks compare against ([`floor`]), a server on
//! loopback, and the real clients the tests talk to it with (curl, `openssl s_client`, a small
//! HTTPS client of its own, [`client`]). No private key is ever committed.

pub mod client;
pub mod extension;
pub mod floor;
pub mod pki;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower_mtls::{MtlsAcceptor, MtlsServer, PeerExt};

pub use pki::{Alg, Ca, Leaf, LeafSpec};

/// How long one client call may take in [`handshake_verdict`]: longer than the server's 10 s
/// handshake deadline, so a call still running then is a hang (a failure, never retried).
const CLIENT_PATIENCE: Duration = Duration::from_secs(15);

/// A generous bound for anything that should happen "promptly" on a loaded 2-core machine.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Answers every request with a JSON description of what the request carried.
pub async fn whoami(
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    Ok(json_response(describe(&req)))
}

pub fn describe<B>(req: &http::Request<B>) -> serde_json::Value {
    let tls = req.tls_info();
    let peer = req.peer_certificates();
    let identity = peer.and_then(|p| p.identity().ok());
    serde_json::json!({
        "path": req.uri().path(),
        "http": format!("{:?}", req.version()),
        "tls": tls.is_some(),
        "tls_version": tls.and_then(|t| t.protocol_version()).map(|v| format!("{v:?}")),
        "alpn": tls.and_then(|t| t.alpn_protocol()).map(|a| String::from_utf8_lossy(a).into_owned()),
        "sni": tls.and_then(|t| t.server_name()),
        "resumed": tls.map(|t| t.is_resumed()),
        "remote": tls.and_then(|t| t.remote_addr()).map(|a| a.to_string()),
        "peer": peer.is_some(),
        "chain_len": peer.map(|p| p.chain().len()),
        "cn": identity.and_then(|i| i.common_name()),
        "subject": identity.map(|i| i.subject().to_string()),
        "issuer": identity.map(|i| i.issuer().to_string()),
        "spiffe": identity.and_then(|i| i.spiffe_id()).map(|s| s.to_string()),
        "sha256": identity.map(|i| i.sha256().to_string()),
    })
}

pub fn json_response(value: serde_json::Value) -> http::Response<Full<Bytes>> {
    let mut response = http::Response::new(Full::from(value.to_string()));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// A server running in the background on 127.0.0.1 with an ephemeral port.
pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Serves [`whoami`] over TLS.
    pub async fn start(tls: impl Into<MtlsAcceptor>) -> TestServer {
        Self::start_service(Some(tls.into()), tower::service_fn(whoami)).await
    }

    /// Serves `service`, over TLS when `tls` is given.
    pub async fn start_service<S, B>(tls: Option<MtlsAcceptor>, service: S) -> TestServer
    where
        S: tower::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let server = MtlsServer::bind("127.0.0.1:0").await.expect("bind");
        Self::spawn(server, tls, service)
    }

    /// Runs a prepared server (e.g. with limits set).
    pub fn spawn<S, B>(mut server: MtlsServer, tls: Option<MtlsAcceptor>, service: S) -> TestServer
    where
        S: tower::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let addr = match server.local_addr().expect("local addr") {
            tower_mtls::serve::ListenAddr::Tcp(addr) => addr,
            other => panic!("not TCP: {other}"),
        };
        if let Some(tls) = tls {
            server = server.tls(tls);
        }
        let (tx, rx) = oneshot::channel();
        let server = server
            .grace_period(Duration::from_secs(5))
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            });
        let handle = tokio::spawn(server.serve(service));
        TestServer {
            addr,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `https://localhost:PORT/path`.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port())
    }

    /// Signals shutdown and waits for the server to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(PATIENCE, handle)
                .await
                .expect("server stops in time")
                .expect("server task")
                .expect("server result");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(handle) = &self.handle {
            handle.abort();
        }
    }
}

/// A directory with the usual PKI written to it.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: Ca,
    pub server: Leaf,
    pub ca_path: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::new("Test Root CA");
        let server = ca.server();
        let ca_path = ca.write(dir.path(), "ca.crt");
        let (server_cert, server_key) = server.write(dir.path(), "server");
        Pki {
            dir,
            ca,
            server,
            ca_path,
            server_cert,
            server_key,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a client certificate and key; returns their paths.
    pub fn write_leaf(&self, leaf: &Leaf, name: &str) -> (PathBuf, PathBuf) {
        leaf.write(self.dir.path(), name)
    }

    /// A builder with this PKI's server identity.
    pub fn builder(&self) -> tower_mtls::TlsConfigBuilder {
        tower_mtls::TlsConfig::from_pem_files(&self.server_cert, &self.server_key)
    }

    /// A builder with this PKI's server identity and its CA trusted for client certificates
    /// (so client authentication is required), for tests that add more (CRLs, limits, …).
    pub fn mtls_builder(&self) -> tower_mtls::TlsConfigBuilder {
        self.builder().client_trust(&self.ca_path)
    }

    /// The usual mutual TLS: this PKI's server identity, a client certificate from its CA
    /// required.
    pub fn required_config(&self) -> tower_mtls::TlsConfig {
        self.mtls_builder().build().expect("config")
    }

    /// As [`required_config`](Self::required_config), but clients without a certificate are
    /// let in too (a presented certificate is still verified).
    pub fn optional_config(&self) -> tower_mtls::TlsConfig {
        self.mtls_builder()
            .optional_client_auth()
            .build()
            .expect("config")
    }

    /// The kit's [`client::Client`], trusting this PKI's CA, optionally with an identity.
    pub fn client(&self, identity: Option<&Leaf>) -> client::Client {
        self.client_builder(identity).build().expect("client")
    }

    /// [`client`](Self::client) offering only `alpn` (`b"http/1.1"`, `b"h2"`).
    pub fn client_alpn(&self, identity: Option<&Leaf>, alpn: &[u8]) -> client::Client {
        self.client_builder(identity)
            .alpn_protocols(vec![alpn.to_vec()])
            .build()
            .expect("client")
    }

    /// The builder behind [`client`](Self::client), for a client that needs more
    /// (`no_resumption`, ALPN, a provider): trusts this PKI's CA and sends `identity`'s chain.
    pub fn client_builder(&self, identity: Option<&Leaf>) -> client::ClientBuilder {
        let builder = client::Client::builder().trust_server_ca_pem(self.ca.cert_pem.clone());
        match identity {
            Some(leaf) => builder.identity_pem(leaf.chain_pem.clone(), leaf.key_pem.clone()),
            None => builder,
        }
    }
}

/// Connects with `leaf` (or no certificate) to a server that must refuse it; returns the TLS
/// alert the client received.
pub async fn refusal_alert(
    pki: &Pki,
    leaf: Option<&Leaf>,
    addr: std::net::SocketAddr,
) -> Option<tower_mtls::rustls::AlertDescription> {
    pki.client(leaf)
        .get(addr, "localhost", "/")
        .await
        .expect_err("the server must refuse this client")
        .alert()
}

/// An example's binary, next to the test's (`cargo test` builds the examples); built on demand
/// when a test runner did not.
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let binary = profile_dir.join("examples").join(name);
    if !binary.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--all-features", "--example", name])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo build");
        assert!(status.success(), "building the {name} example failed");
    }
    binary
}

/// Runs `curl` against `url` with the PKI's CA; `extra` adds arguments (e.g. `--cert`).
/// Returns the output (stdout holds the body).
pub async fn curl(ca: &Path, url: &str, port: u16, extra: &[&str]) -> Output {
    let resolve = format!("localhost:{port}:127.0.0.1");
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["--silent", "--show-error", "--max-time", "20", "--cacert"])
        .arg(ca)
        .args(["--resolve", &resolve])
        .args(extra)
        .arg(url)
        .kill_on_drop(true);
    tokio::time::timeout(PATIENCE, cmd.output())
        .await
        .expect("curl finishes")
        .expect("run curl")
}

/// `curl` with a client certificate and key.
pub async fn curl_with_cert(
    ca: &Path,
    url: &str,
    port: u16,
    cert: &Path,
    key: &Path,
    extra: &[&str],
) -> Output {
    let cert = cert.to_string_lossy().into_owned();
    let key = key.to_string_lossy().into_owned();
    let mut args = vec!["--cert", cert.as_str(), "--key", key.as_str()];
    args.extend_from_slice(extra);
    curl(ca, url, port, &args).await
}

/// Parses curl's stdout as JSON, failing with curl's stderr if it is not.
pub fn json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "curl failed: {:?}\nstderr: {}\nstdout: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// Runs `openssl s_client`, sends one HTTP/1.1 request, and returns stdout and stderr
/// together.
pub async fn s_client(
    port: u16,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    extra: &[&str],
) -> (bool, String) {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new("openssl");
    cmd.args(["s_client", "-quiet", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args([
            "-servername",
            "localhost",
            "-verify_return_error",
            "-CAfile",
        ])
        .arg(ca);
    if let Some((cert, key)) = identity {
        cmd.arg("-cert").arg(cert).arg("-key").arg(key);
    }
    cmd.args(extra)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("run openssl s_client");
    let mut stdin = child.stdin.take().expect("stdin");
    let _ = stdin
        .write_all(b"GET /s_client HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    // Keep stdin open until the server closes: -quiet implies -ign_eof.
    let output = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("s_client finishes")
        .expect("s_client output");
    drop(stdin);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (text.contains("HTTP/1.1 200"), text)
}

/// One CRL input handed to a builder: a path (file or directory) or in-memory bytes.
#[derive(Debug, Clone)]
pub enum CrlInput {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

/// Adds `inputs` to `builder`, in order.
pub fn with_crls(
    mut builder: tower_mtls::TlsConfigBuilder,
    inputs: &[CrlInput],
) -> tower_mtls::TlsConfigBuilder {
    for input in inputs {
        builder = match input {
            CrlInput::Path(path) => builder.client_crl(path),
            CrlInput::Bytes(bytes) => builder.client_crl_bytes(bytes.clone()),
        };
    }
    builder
}

/// Every ordering of `0..n`.
pub fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for rest in permutations(n - 1) {
        for at in 0..=rest.len() {
            let mut p = rest.clone();
            p.insert(at, n - 1);
            out.push(p);
        }
    }
    out
}

/// Every way of handing the PEM CRLs `crls` to a builder: for each permutation, as the files
/// of one directory (named so that the directory order is the permutation), as one source
/// per file (sources in permutation order), and as the PEM blocks of one file. Files are
/// written under `dir`. Returns a label for each arrangement and its inputs.
pub fn crl_arrangements(dir: &Path, crls: &[String]) -> Vec<(String, Vec<CrlInput>)> {
    let mut out = Vec::new();
    for (k, perm) in permutations(crls.len()).into_iter().enumerate() {
        let order = format!("{perm:?}");
        let sub = dir.join(format!("crl-perm-{k}"));
        std::fs::create_dir_all(sub.join("dir")).expect("CRL dir");
        for (pos, i) in perm.iter().enumerate() {
            std::fs::write(
                sub.join("dir").join(format!("{pos:02}-crl{i}.pem")),
                &crls[*i],
            )
            .expect("write CRL");
        }
        out.push((
            format!("directory, files in order {order}"),
            vec![CrlInput::Path(sub.join("dir"))],
        ));
        let mut sources = Vec::new();
        for i in &perm {
            let path = sub.join(format!("source-crl{i}.pem"));
            std::fs::write(&path, &crls[*i]).expect("write CRL");
            sources.push(CrlInput::Path(path));
        }
        out.push((format!("one source per file, in order {order}"), sources));
        let joined: String = perm.iter().map(|i| crls[*i].as_str()).collect();
        let one = sub.join("bundle.pem");
        std::fs::write(&one, &joined).expect("write CRL bundle");
        out.push((
            format!("one file, PEM blocks in order {order}"),
            vec![CrlInput::Path(one)],
        ));
    }
    out
}

/// What happened to a client: accepted, or refused with the class the acceptor counted and
/// the alert the client received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    Refused(
        tower_mtls::tls::HandshakeFailure,
        Option<tower_mtls::rustls::AlertDescription>,
    ),
}

impl Verdict {
    /// The refusal class, if refused.
    pub fn kind(&self) -> Option<tower_mtls::tls::HandshakeFailure> {
        match self {
            Verdict::Accepted => None,
            Verdict::Refused(kind, _) => Some(*kind),
        }
    }
}

/// Runs `tls` on a fresh server and connects once with each client (new client each time,
/// no resumption across them). A refused client's class is read from the acceptor's
/// counters.
pub async fn handshake_verdicts(
    pki: &Pki,
    tls: tower_mtls::TlsConfig,
    clients: &[&Leaf],
) -> Vec<Verdict> {
    let acceptor = MtlsAcceptor::new(tls);
    let server = TestServer::start(acceptor.clone()).await;
    let mut verdicts = Vec::new();
    for leaf in clients {
        verdicts.push(handshake_verdict(pki, &acceptor, &server, leaf).await);
    }
    server.stop().await;
    verdicts
}

/// One connection of `leaf` to `server` (served by `acceptor`).
pub async fn handshake_verdict(
    pki: &Pki,
    acceptor: &MtlsAcceptor,
    server: &TestServer,
    leaf: &Leaf,
) -> Verdict {
    // rustls's client refuses to be configured with a certificate it cannot parse itself
    // (e.g. with an unknown critical extension): such chains go through a raw client.
    let client = client::Client::builder()
        .trust_server_ca_pem(pki.ca.cert_pem.clone())
        .identity_pem(leaf.chain_pem.clone(), leaf.key_pem.clone())
        .build()
        .unwrap_or_else(|_| raw_client(pki, &leaf.chain_pem, &leaf.key_pem));
    // No retry: a refused connection ends the kit client's request at the server's alert
    // (`client::Connection::send`), so a call that outlives the server's 10 s handshake
    // deadline is a bug to report, not something to try again.
    let before = acceptor.stats();
    let result = tokio::time::timeout(CLIENT_PATIENCE, client.get(server.addr, "localhost", "/"))
        .await
        .expect("the client's call ends within the server's handshake deadline");
    match result {
        Ok(response) => {
            assert_eq!(response.status(), 200, "accepted but not served");
            Verdict::Accepted
        }
        Err(err) => {
            let alert = err.alert();
            let after = tokio::time::timeout(PATIENCE, async {
                loop {
                    let now = acceptor.stats();
                    if now.handshakes_failed() > before.handshakes_failed() {
                        return now;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("the refusal ({err}) is counted"));
            let kind = tower_mtls::tls::HandshakeFailure::ALL
                .iter()
                .copied()
                .find(|k| after.failures(*k) > before.failures(*k))
                .expect("a class was counted");
            Verdict::Refused(kind, alert)
        }
    }
}

/// The chain a leaf presents, as DER.
pub fn chain_der(leaf: &Leaf) -> Vec<tower_mtls::rustls::pki_types::CertificateDer<'static>> {
    use tower_mtls::rustls::pki_types::CertificateDer;
    use tower_mtls::rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(leaf.chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("chain PEM")
}

/// The offline verdict on `leaf`'s chain now, as a [`Verdict`] (no alert).
pub fn offline_verdict(tls: &tower_mtls::TlsConfig, leaf: &Leaf) -> Verdict {
    match tls.verify_client_chain(&chain_der(leaf), std::time::SystemTime::now()) {
        Ok(_) => Verdict::Accepted,
        Err(refused) => Verdict::Refused(refused.kind, None),
    }
}

/// The verdict expected for a revoked client: class `Revoked`, alert `certificate_revoked`.
pub const REVOKED: Verdict = Verdict::Refused(
    tower_mtls::tls::HandshakeFailure::Revoked,
    Some(tower_mtls::rustls::AlertDescription::CertificateRevoked),
);

/// Compares verdicts with expectations; returns one line per mismatch.
pub fn mismatches(
    context: &str,
    names: &[&str],
    got: &[Verdict],
    expected: &[Verdict],
) -> Vec<String> {
    names
        .iter()
        .zip(got.iter().zip(expected))
        .filter(|(_, (g, e))| g != e)
        .map(|(name, (g, e))| format!("{context}: {name}: expected {e:?}, got {g:?}"))
        .collect()
}

/// Presents a fixed chain and signs with a fixed key, whatever the server asks for and
/// without checking that they belong together.
#[derive(Debug)]
struct FixedIdentity(std::sync::Arc<tower_mtls::rustls::sign::CertifiedKey>);

impl tower_mtls::rustls::client::ResolvesClientCert for FixedIdentity {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[tower_mtls::rustls::SignatureScheme],
    ) -> Option<std::sync::Arc<tower_mtls::rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A client (trusting `pki`'s CA for the server) that presents `chain_pem` and signs with
/// `key_pem`, with no check at all on either: for certificates rustls's own client refuses to
/// load, and for a key that does not belong to the certificate.
pub fn raw_client(pki: &Pki, chain_pem: &str, key_pem: &str) -> client::Client {
    use tower_mtls::rustls::pki_types::pem::PemObject;
    use tower_mtls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = tower_mtls::tls::default_provider();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key PEM");
    let signing = provider
        .key_provider
        .load_private_key(key)
        .expect("load key");
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("chain PEM");
    let certified = tower_mtls::rustls::sign::CertifiedKey::new(chain, signing);
    let mut roots = tower_mtls::rustls::RootCertStore::empty();
    roots.add(pki.ca.der.clone()).expect("root");
    let mut config = tower_mtls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_cert_resolver(std::sync::Arc::new(FixedIdentity(std::sync::Arc::new(
            certified,
        ))));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    client::Client::from_config(std::sync::Arc::new(config))
}

/// Where the offline verdict ([`offline_verdict`]) disagrees with the handshake's class.
pub fn offline_disagreements(
    context: &str,
    names: &[&str],
    tls: &tower_mtls::TlsConfig,
    leaves: &[&Leaf],
    handshakes: &[Verdict],
) -> Vec<String> {
    names
        .iter()
        .zip(leaves.iter().zip(handshakes))
        .filter_map(|(name, (leaf, handshake))| {
            let offline = offline_verdict(tls, leaf);
            (offline.kind() != handshake.kind()).then(|| {
                format!(
                    "{context}: {name}: the offline verdict {offline:?} disagrees with the handshake {handshake:?}"
                )
            })
        })
        .collect()
}
