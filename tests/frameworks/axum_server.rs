//! `tower_mtls::axum_server::Acceptor` under a real `axum_server` server on 127.0.0.1 with an
//! ephemeral port, called by curl and the test kit's client: identity in the handler, policy
//! decisions, refused clients, a silent client, live rotation, graceful shutdown through
//! axum-server's `Handle`, typed accept errors and no error-level log per refused client, and
//! both rustls providers compiled in without a process default.
//!
//! Its own test binary: every test installs (once) a process-wide subscriber that keeps the log.
#![cfg(feature = "axum-server")]

use tower_mtls_test_kit as support;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::response::IntoResponse;
use axum::routing::get;
use axum_server::Handle;
use axum_server::accept::Accept;
use axum_server::service::SendService;
use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tower_mtls::AllowedClient;
use tower_mtls::axum_server::Acceptor;
use tower_mtls::rustls::AlertDescription;
use tower_mtls::tls::{HandshakeError, HandshakeFailure, ReloadOutcome};
use tower_mtls::{ClientCertLayer, MtlsAcceptor};

/// How long one client call may take: longer than the server's 10 s handshake deadline, so a
/// call still running then is a hang (a failure, never retried).
const CLIENT_PATIENCE: Duration = Duration::from_secs(15);

/// `/whoami` (only `CN=allowed`; answers with what the request carried and the matched
/// rule), `/public` (anyone through the handshake).
fn app() -> Router {
    async fn whoami(client: AllowedClient, req: Request) -> impl IntoResponse {
        let mut seen = describe(&req);
        seen["allowed_cn"] = client
            .identity()
            .and_then(|id| id.common_name())
            .map(str::to_owned)
            .into();
        seen["rule"] = client.matched_rule().and_then(|r| r.name()).into();
        json_response(seen)
    }
    async fn public(req: Request) -> impl IntoResponse {
        json_response(describe(&req))
    }
    Router::new()
        .route(
            "/whoami",
            get(whoami).layer(
                ClientCertLayer::require()
                    .allow(tower_mtls::Rule::named("allowed").subject_cn("allowed")),
            ),
        )
        .route("/public", get(public))
}

/// An axum-server server running in the background.
struct Served {
    addr: SocketAddr,
    handle: Handle<SocketAddr>,
    task: JoinHandle<io::Result<()>>,
}

impl Served {
    async fn start(acceptor: Acceptor, app: Router) -> Served {
        Self::start_with(axum_server::bind(localhost()).acceptor(acceptor), app).await
    }

    async fn start_with<A>(server: axum_server::Server<SocketAddr, A>, app: Router) -> Served
    where
        A: Accept<TcpStream, Router> + Clone + Send + Sync + 'static,
        A::Stream: AsyncRead + AsyncWrite + Unpin + Send,
        A::Service: SendService<http::Request<hyper::body::Incoming>> + Send,
        A::Future: Send,
    {
        let handle = Handle::new();
        let task = tokio::spawn(server.handle(handle.clone()).serve(app.into_make_service()));
        let addr = tokio::time::timeout(PATIENCE, handle.listening())
            .await
            .expect("listening in time")
            .expect("bound");
        Served { addr, handle, task }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port())
    }

    /// Graceful shutdown through the handle; the server must finish in time and cleanly.
    async fn stop(self) {
        self.handle.graceful_shutdown(Some(Duration::from_secs(10)));
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("server stops in time")
            .expect("server task")
            .expect("server result");
    }
}

fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The usual PKI with client certificates `allowed` and `other` from its CA.
fn pki_with_clients() -> (Pki, Leaf, Leaf) {
    let pki = Pki::new();
    let allowed = pki.ca.client("allowed");
    let other = pki.ca.client("other");
    (pki, allowed, other)
}

/// One request with the test kit's client; the response's status and JSON body.
async fn get_json(
    pki: &Pki,
    leaf: Option<&Leaf>,
    addr: SocketAddr,
    path: &str,
) -> (u16, serde_json::Value) {
    let response = tokio::time::timeout(PATIENCE, pki.client(leaf).get(addr, "localhost", path))
        .await
        .expect("request in time")
        .expect("request");
    let status = response.status().as_u16();
    let body = serde_json::from_slice(response.body()).unwrap_or(serde_json::Value::Null);
    (status, body)
}

/// Connects with `leaf` (or none) to a server that must refuse it in the handshake; the alert
/// the client got. The kit's client ends the request at the server's alert, so this never
/// waits on hyper noticing the connection's end; a call that outlives the server's handshake
/// deadline is a failure, never retried.
async fn refused(pki: &Pki, leaf: Option<&Leaf>, addr: SocketAddr) -> Option<AlertDescription> {
    tokio::time::timeout(
        CLIENT_PATIENCE,
        pki.client(leaf).get(addr, "localhost", "/public"),
    )
    .await
    .expect("the client's call ends within the server's handshake deadline")
    .expect_err("the server must refuse this client")
    .alert()
}

/// curl's HTTP status for `url` (`000` when the handshake failed), and its exit status.
async fn curl_status(
    pki: &Pki,
    server: &Served,
    path: &str,
    leaf: Option<(&str, &Leaf)>,
) -> (String, bool) {
    let write_out = ["--output", "/dev/null", "--write-out", "%{http_code}"];
    let output = match leaf {
        Some((name, leaf)) => {
            let (cert, key) = pki.write_leaf(leaf, name);
            curl_with_cert(
                &pki.ca_path,
                &server.url(path),
                server.port(),
                &cert,
                &key,
                &write_out,
            )
            .await
        }
        None => curl(&pki.ca_path, &server.url(path), server.port(), &write_out).await,
    };
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        output.status.success(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allowed_client_gets_its_identity_and_a_trusted_other_gets_403() {
    capture();
    let (pki, allowed, other) = pki_with_clients();
    let server = Served::start(Acceptor::new(pki.required_config()), app()).await;

    // curl, over HTTP/2 (ALPN from the crate's config).
    let (cert, key) = pki.write_leaf(&allowed, "allowed");
    let seen = json(
        &curl_with_cert(
            &pki.ca_path,
            &server.url("/whoami"),
            server.port(),
            &cert,
            &key,
            &[],
        )
        .await,
    );
    assert_eq!(seen["allowed_cn"], "allowed", "{seen}");
    assert_eq!(seen["rule"], "allowed", "{seen}");
    assert_eq!(
        seen["cn"], "allowed",
        "PeerCertificates in the request: {seen}"
    );
    assert_eq!(seen["tls"], true, "TlsInfo in the request: {seen}");
    assert_eq!(seen["http"], "HTTP/2.0", "{seen}");
    assert_eq!(seen["alpn"], "h2", "{seen}");
    assert!(
        seen["remote"]
            .as_str()
            .is_some_and(|r| r.starts_with("127.0.0.1:")),
        "the remote address reaches TlsInfo: {seen}"
    );
    assert_eq!(
        curl_status(&pki, &server, "/whoami", Some(("other", &other))).await,
        ("403".to_owned(), true)
    );
    assert_eq!(
        curl_status(&pki, &server, "/public", Some(("other", &other))).await,
        ("200".to_owned(), true)
    );

    // The test kit's client, over HTTP/1.1 and h2 alike.
    let (status, seen) = get_json(&pki, Some(&allowed), server.addr, "/whoami").await;
    assert_eq!((status, &seen["cn"]), (200, &"allowed".into()), "{seen}");
    let (status, _) = get_json(&pki, Some(&other), server.addr, "/whoami").await;
    assert_eq!(status, 403);
    let (status, seen) = get_json(&pki, Some(&other), server.addr, "/public").await;
    assert_eq!((status, &seen["cn"]), (200, &"other".into()), "{seen}");

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_a_trusted_certificate_are_refused_in_the_handshake() {
    capture();
    let (pki, allowed, _) = pki_with_clients();
    let stranger = Ca::new("Untrusted CA").client("allowed");
    let acceptor = Acceptor::new(pki.required_config());
    let server = Served::start(acceptor.clone(), app()).await;

    assert_eq!(
        refused(&pki, None, server.addr).await,
        Some(AlertDescription::CertificateRequired)
    );
    assert_eq!(
        refused(&pki, Some(&stranger), server.addr).await,
        Some(AlertDescription::UnknownCA)
    );
    let (code, ok) = curl_status(&pki, &server, "/public", None).await;
    assert!(
        !ok && code == "000",
        "curl without a certificate: {code} {ok}"
    );
    let (code, ok) = curl_status(&pki, &server, "/public", Some(("stranger", &stranger))).await;
    assert!(
        !ok && code == "000",
        "curl with an untrusted certificate: {code} {ok}"
    );

    // Counted by the acceptor, whose clones share the counters.
    let stats = acceptor.mtls().stats();
    assert_eq!(
        stats.failures(HandshakeFailure::NoClientCertificate),
        2,
        "{stats}"
    );
    assert_eq!(stats.failures(HandshakeFailure::UnknownCa), 2, "{stats}");
    // The server goes on serving the others.
    let (status, _) = get_json(&pki, Some(&allowed), server.addr, "/whoami").await;
    assert_eq!(status, 200);

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_optional_client_auth_the_layer_answers_401() {
    capture();
    let (pki, allowed, _) = pki_with_clients();
    let tls = pki.optional_config();
    let server = Served::start(Acceptor::new(tls), app()).await;

    let (status, _) = get_json(&pki, None, server.addr, "/whoami").await;
    assert_eq!(status, 401);
    let (status, seen) = get_json(&pki, None, server.addr, "/public").await;
    assert_eq!((status, &seen["peer"]), (200, &false.into()), "{seen}");
    assert_eq!(
        curl_status(&pki, &server, "/whoami", None).await,
        ("401".to_owned(), true)
    );
    let (status, seen) = get_json(&pki, Some(&allowed), server.addr, "/whoami").await;
    assert_eq!((status, &seen["cn"]), (200, &"allowed".into()), "{seen}");

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_do_not_block_the_others() {
    capture();
    let (pki, allowed, _) = pki_with_clients();
    // One handshake at a time, and a deadline longer than the test's patience: only handshakes
    // running off axum-server's accept loop let the next client through.
    let acceptor = MtlsAcceptor::new(pki.required_config())
        .max_concurrent_handshakes(1)
        .handshake_timeout(Duration::from_secs(120));
    let server = Served::start(Acceptor::new(acceptor), app()).await;

    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(TcpStream::connect(server.addr).await.expect("connect"));
    }
    for _ in 0..3 {
        let (status, seen) = get_json(&pki, Some(&allowed), server.addr, "/whoami").await;
        assert_eq!((status, &seen["cn"]), (200, &"allowed".into()), "{seen}");
    }
    assert_eq!(
        curl_status(&pki, &server, "/public", Some(("allowed", &allowed))).await,
        ("200".to_owned(), true)
    );
    // The silent connections are still open (the server has not given up on them).
    for stream in &mut silent {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(10), stream.read(&mut byte)).await;
        assert!(
            read.is_err(),
            "a silent connection was closed early: {read:?}"
        );
    }

    // Shutdown drops connections still in their handshake.
    server.stop().await;
    for mut stream in silent {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(PATIENCE, stream.read(&mut byte))
            .await
            .expect("closed at shutdown");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_reaches_new_clients() {
    capture();
    let (pki, allowed, _) = pki_with_clients();
    let tls = pki.required_config();
    let server = Served::start(Acceptor::new(tls.clone()), app()).await;

    let served = || async {
        let client = pki
            .client_builder(Some(&allowed))
            .no_resumption()
            .build()
            .expect("client");
        let conn = tokio::time::timeout(PATIENCE, client.connect(server.addr, "localhost"))
            .await
            .expect("connect in time")
            .expect("connect");
        let response = conn.get("/whoami").await.expect("request");
        assert_eq!(response.status(), 200);
        conn.server_certificates()[0].clone()
    };
    assert_eq!(served().await, pki.server.der);

    // The kubelet's way: new files, then a reload; new handshakes use the new certificate.
    let renewed = pki.ca.server();
    renewed.write(pki.dir.path(), "server");
    let ReloadOutcome::Applied(report) = tls.reload().await else {
        panic!("the new certificate is applied");
    };
    drop(report);
    assert_eq!(served().await, renewed.der);
    assert_ne!(renewed.der, pki.server.der);

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_with_the_handle_finishes_requests_in_flight() {
    capture();
    let (pki, allowed, _) = pki_with_clients();
    // `/slow` answers once the test says so, and says when it has the request.
    let (entered_tx, mut entered) = mpsc::channel::<()>(1);
    let release = Arc::new(tokio::sync::Notify::new());
    let app = app().route(
        "/slow",
        get({
            let release = release.clone();
            move || async move {
                let _ = entered_tx.send(()).await;
                release.notified().await;
                "finished\n"
            }
        }),
    );
    let server = Served::start(Acceptor::new(pki.required_config()), app).await;

    let conn = pki
        .client(Some(&allowed))
        .connect(server.addr, "localhost")
        .await
        .expect("connect");
    let in_flight = tokio::spawn(async move { conn.get("/slow").await });
    tokio::time::timeout(PATIENCE, entered.recv())
        .await
        .expect("the handler has the request")
        .expect("handler");
    assert_eq!(server.handle.connection_count(), 1);

    server
        .handle
        .graceful_shutdown(Some(Duration::from_secs(60)));
    // The server waits for the request in flight; the listener is gone meanwhile.
    release.notify_one();
    let response = tokio::time::timeout(PATIENCE, in_flight)
        .await
        .expect("answered in time")
        .expect("request task")
        .expect("the request in flight completes");
    assert_eq!(response.status(), 200);
    assert_eq!(response.body().as_ref(), b"finished\n");

    let addr = server.addr;
    let handle = server.handle.clone();
    tokio::time::timeout(PATIENCE, server.task)
        .await
        .expect("server stops in time")
        .expect("server task")
        .expect("server result");
    assert_eq!(handle.connection_count(), 0);
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no new connections after shutdown"
    );
}

/// Every event, at every level, from every target.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<(tracing::Level, String, String)>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Text(String);
        impl tracing::field::Visit for Text {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!(" {}={value:?}", field.name()));
            }
        }
        let mut text = Text(String::new());
        event.record(&mut text);
        let meta = event.metadata();
        self.0
            .lock()
            .expect("lock")
            .push((*meta.level(), meta.target().to_owned(), text.0));
    }
}

fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        use tracing_subscriber::layer::SubscriberExt;
        let capture = Capture::default();
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(capture.clone()),
        )
        .expect("global subscriber (this test must install it first)");
        capture
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_client_is_logged_by_the_acceptor_and_reaches_the_error_handler_typed() {
    let capture = capture();
    let (pki, allowed, _) = pki_with_clients();
    let stranger = Ca::new("Untrusted CA").client("log-probe-stranger");
    let (errors_tx, mut errors) = mpsc::unbounded_channel();
    let server = axum_server::bind(localhost())
        .acceptor(Acceptor::new(pki.required_config()))
        .accept_error_handler(move |remote, error: &io::Error| {
            let handshake = error
                .get_ref()
                .and_then(|e| e.downcast_ref::<HandshakeError>())
                .map(|h| (h.kind(), h.remote_addr()));
            let _ = errors_tx.send((remote.copied(), error.kind(), handshake));
        });
    let server = Served::start_with(server, app()).await;

    assert_eq!(
        refused(&pki, Some(&stranger), server.addr).await,
        Some(AlertDescription::UnknownCA)
    );
    let (remote, kind, handshake) = tokio::time::timeout(PATIENCE, errors.recv())
        .await
        .expect("the handler hears of the refusal")
        .expect("handler");
    assert_eq!(kind, io::ErrorKind::PermissionDenied);
    let (failure, handshake_remote) =
        handshake.expect("the HandshakeError is the io::Error's source");
    assert_eq!(failure, HandshakeFailure::UnknownCa);
    assert_eq!(
        handshake_remote, remote,
        "the acceptor knew the client's address"
    );
    assert!(remote.is_some_and(|r| r.ip().is_loopback()), "{remote:?}");

    assert_eq!(
        refused(&pki, None, server.addr).await,
        Some(AlertDescription::CertificateRequired)
    );
    let (_, kind, handshake) = tokio::time::timeout(PATIENCE, errors.recv())
        .await
        .expect("the handler hears of the refusal")
        .expect("handler");
    assert_eq!(kind, io::ErrorKind::PermissionDenied);
    assert_eq!(
        handshake.map(|(k, _)| k),
        Some(HandshakeFailure::NoClientCertificate)
    );
    let (status, _) = get_json(&pki, Some(&allowed), server.addr, "/whoami").await;
    assert_eq!(status, 200);
    server.stop().await;

    let events = capture.0.lock().expect("lock").clone();
    let errors: Vec<_> = events
        .iter()
        .filter(|(level, _, _)| *level == tracing::Level::ERROR)
        .collect();
    assert!(errors.is_empty(), "nothing logs at error level: {errors:?}");
    let warned = events.iter().filter(|(level, target, text)| {
        *level == tracing::Level::WARN
            && target.starts_with("tower_mtls")
            && text.contains("log-probe-stranger")
            && text.contains("unknown_ca")
    });
    assert_eq!(
        warned.count(),
        1,
        "the acceptor logged the refusal once: {events:?}"
    );
}

/// This test binary has rustls with both providers when built with the crate's `ring` feature
/// (CI's `--all-features`), and axum-server with its ring backend (a dev-dependency feature):
/// the combination in which `ServerConfig::builder()` has no unambiguous default.
#[cfg(all(feature = "ring", feature = "aws-lc-rs"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_rustls_providers_and_axum_servers_ring_backend_need_no_process_default() {
    capture();
    assert!(
        tower_mtls::rustls::crypto::CryptoProvider::get_default().is_none(),
        "nothing in this binary installs a process default"
    );
    // The trap is live in this build ...
    let builder = std::panic::catch_unwind(tower_mtls::rustls::ServerConfig::builder);
    assert!(
        builder.is_err(),
        "with both providers compiled in, the default lookup panics"
    );

    // ... and neither this crate nor axum-server walks into it.
    let (pki, allowed, _) = pki_with_clients();
    let server = Served::start(Acceptor::new(pki.required_config()), app()).await;
    let (status, seen) = get_json(&pki, Some(&allowed), server.addr, "/whoami").await;
    assert_eq!((status, &seen["cn"]), (200, &"allowed".into()), "{seen}");
    // axum-server's own rustls config picks its ring backend explicitly.
    axum_server::tls_rustls::RustlsConfig::from_pem_file(&pki.server_cert, &pki.server_key)
        .await
        .expect("axum-server's RustlsConfig with its ring backend");
    server.stop().await;
    assert!(tower_mtls::rustls::crypto::CryptoProvider::get_default().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inner_acceptor_runs_before_the_handshake() {
    capture();
    let (pki, allowed, _) = pki_with_clients();
    // axum-server's own TCP acceptor, then the handshake on the stream it returns.
    let acceptor =
        Acceptor::new(pki.required_config()).acceptor(axum_server::accept::NoDelayAcceptor::new());
    let server = Served::start_with(axum_server::bind(localhost()).acceptor(acceptor), app()).await;
    let (status, seen) = get_json(&pki, Some(&allowed), server.addr, "/whoami").await;
    assert_eq!((status, &seen["cn"]), (200, &"allowed".into()), "{seen}");
    server.stop().await;
}

/// The `axum_server` example's binary; built here (with its required features) when the test
/// runner did not build the examples.
fn example_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let binary = profile_dir.join("examples").join("axum_server");
    if !binary.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args([
                "build",
                "--example",
                "axum_server",
                "--features",
                "axum-server",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo build");
        assert!(status.success(), "building the axum_server example failed");
    }
    binary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_checks_itself_and_exits_0() {
    let output = tokio::time::timeout(
        PATIENCE * 2,
        tokio::process::Command::new(example_binary())
            .env("NO_COLOR", "1")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("example finishes")
    .expect("example runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the example failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.matches("[as expected]").count(), 5, "{stdout}");
    assert!(!stdout.contains("UNEXPECTED"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_servers_own_rustls_config_carries_the_peer_through_connection_info_acceptor() {
    capture();
    let (pki, allowed, other) = pki_with_clients();
    // TLS terminated by axum-server's own RustlsAcceptor, with a ServerConfig that verifies
    // clients (this crate's, as a user keeping RustlsConfig would pass one).
    let config =
        axum_server::tls_rustls::RustlsConfig::from_config(pki.required_config().server_config());
    let acceptor = tower_mtls::axum_server::ConnectionInfoAcceptor::new(
        axum_server::tls_rustls::RustlsAcceptor::new(config),
    );
    let server = Served::start_with(axum_server::bind(localhost()).acceptor(acceptor), app()).await;

    let (status, seen) = get_json(&pki, Some(&allowed), server.addr, "/whoami").await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(
        seen["allowed_cn"], "allowed",
        "the policy read the peer: {seen}"
    );
    assert_eq!(seen["cn"], "allowed", "PeerExt in the handler: {seen}");
    assert!(
        seen["remote"]
            .as_str()
            .is_some_and(|r| r.starts_with("127.0.0.1:")),
        "the remote address reaches TlsInfo: {seen}"
    );
    let (status, _) = get_json(&pki, Some(&other), server.addr, "/whoami").await;
    assert_eq!(status, 403, "a trusted client the rules do not allow");
    server.stop().await;
}
