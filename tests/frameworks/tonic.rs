//! gRPC over mutual TLS with tonic (feature `tonic`): the `grpc` example as a real process and
//! servers in-process, called by tonic's own client (TLS with a client identity) and by
//! Python's grpcio.
#![cfg(feature = "tonic")]

use tower_mtls::Rule;
use tower_mtls_test_kit as support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use support::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Server};
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tower_mtls::PeerExt;
use tower_mtls::tonic::{ConnectInfoLayer, MtlsIncoming};
use tower_mtls::{ClientCertLayer, MtlsAcceptor};

#[path = "../../examples/grpc/identity.rs"]
#[allow(dead_code, unreachable_pub)]
mod identity;

use identity::identity_client::IdentityClient;
use identity::identity_server::{Identity as IdentityService, IdentityServer};
use identity::{WhoAmIRequest, WhoAmIResponse};

const ALLOWED_CN: &str = "steadybit-agent";
const SPIFFE_ID: &str = "spiffe://example.org/agent";

// ----------------------------------------------------------------------------------------
// The example as a process.

/// The `grpc` example, running.
struct GrpcExample {
    child: Child,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

/// The example's binary next to this test's; built (with its feature) when a runner did not.
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let binary = profile_dir.join("examples").join("grpc");
    if !binary.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--example", "grpc", "--features", "tonic"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo build");
        assert!(status.success(), "building the grpc example failed");
    }
    binary
}

fn drain<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    mut lines: tokio::io::Lines<BufReader<R>>,
    sink: Arc<Mutex<Vec<String>>>,
) {
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            sink.lock().expect("log").push(line);
        }
    });
}

impl GrpcExample {
    /// Starts the example with the PKI's server identity, its CA as client trust and `vars`;
    /// waits for the line that says where it listens.
    async fn start(pki: &Pki, vars: &[(&str, String)]) -> GrpcExample {
        let mut cmd = Command::new(example_binary());
        cmd.env_clear()
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env("STEADYBIT_EXTENSION_PORT", "0")
            .env(
                "STEADYBIT_EXTENSION_TLS_SERVER_CERT",
                pki.server_cert.as_os_str(),
            )
            .env(
                "STEADYBIT_EXTENSION_TLS_SERVER_KEY",
                pki.server_key.as_os_str(),
            )
            .env(
                "STEADYBIT_EXTENSION_TLS_CLIENT_CAS",
                pki.ca_path.as_os_str(),
            )
            .envs(vars.iter().map(|(k, v)| (*k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("start the grpc example");
        // The runtime's logging writes to stderr, like the Go extension-kit.
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let read = async {
            while let Some(line) = lines.next_line().await.expect("read log") {
                log.lock().expect("log").push(line.clone());
                let port = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("listen="))
                    .and_then(|addr| addr.rsplit(':').next()?.parse::<u16>().ok());
                if let Some(port) = port {
                    return port;
                }
            }
            panic!(
                "the grpc example exited before listening: {:#?}",
                log.lock().expect("log")
            );
        };
        let port = tokio::time::timeout(PATIENCE, read)
            .await
            .expect("the grpc example starts");
        drain(lines, log.clone());
        drain(
            BufReader::new(child.stdout.take().expect("stdout")).lines(),
            log.clone(),
        );
        GrpcExample { child, port, log }
    }

    /// SIGTERM, as Kubernetes stops a pod; the exit code.
    async fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().expect("running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let exit = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("exits in time")
            .expect("exit status");
        exit.code()
    }

    fn log(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }
}

/// The PKI and three clients: allowed (with a SPIFFE ID and a DNS name), trusted but not
/// allowed, and one from a CA the server does not trust.
struct Clients {
    pki: Pki,
    allowed: Leaf,
    other: Leaf,
}

fn clients() -> Clients {
    let pki = Pki::new();
    let allowed = pki.ca.issue(
        &LeafSpec::client(ALLOWED_CN)
            .org("Steadybit")
            .uri(SPIFFE_ID)
            .dns("agent.example.org"),
    );
    let other = pki.ca.client("someone-else");
    Clients {
        pki,
        allowed,
        other,
    }
}

fn allow_policy() -> (&'static str, String) {
    (
        "TOWER_MTLS_CLIENT_ALLOW",
        format!("cn={ALLOWED_CN} & o=Steadybit"),
    )
}

// ----------------------------------------------------------------------------------------
// tonic's client.

/// A lazily connecting channel to 127.0.0.1:`port` with TLS for `localhost`, presenting
/// `identity` when given: connection errors surface as the status of the first call.
fn channel(pki: &Pki, port: u16, identity: Option<&Leaf>) -> Channel {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca.cert_pem))
        .domain_name("localhost");
    if let Some(leaf) = identity {
        tls = tls.identity(Identity::from_pem(&leaf.chain_pem, &leaf.key_pem));
    }
    Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .expect("endpoint")
        .tls_config(tls)
        .expect("tls config")
        .connect_timeout(PATIENCE)
        .timeout(PATIENCE)
        .connect_lazy()
}

async fn health(channel: Channel) -> Result<HealthCheckResponse, Status> {
    let mut client = HealthClient::new(channel);
    let call = client.check(HealthCheckRequest {
        service: String::new(),
    });
    tokio::time::timeout(PATIENCE * 2, call)
        .await
        .expect("the health call ends")
        .map(tonic::Response::into_inner)
}

async fn who_am_i(channel: Channel) -> Result<WhoAmIResponse, Status> {
    let mut client = IdentityClient::new(channel);
    let call = client.who_am_i(WhoAmIRequest {});
    tokio::time::timeout(PATIENCE * 2, call)
        .await
        .expect("the identity call ends")
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_client_sees_serving_and_its_own_identity() {
    let c = clients();
    let server = GrpcExample::start(&c.pki, &[allow_policy()]).await;
    let chan = channel(&c.pki, server.port, Some(&c.allowed));

    let reply = health(chan.clone()).await.expect("health");
    assert_eq!(reply.status(), ServingStatus::Serving, "{}", server.log());

    let me = who_am_i(chan).await.expect("who am I");
    assert_eq!(me.common_name, ALLOWED_CN);
    assert!(me.subject.contains(&format!("CN={ALLOWED_CN}")), "{me:?}");
    assert!(me.subject.contains("O=Steadybit"), "{me:?}");
    assert_eq!(me.spiffe_id, SPIFFE_ID);
    assert_eq!(me.uris, [SPIFFE_ID]);
    assert_eq!(me.dns_names, ["agent.example.org"]);
    // The one rule of TOWER_MTLS_CLIENT_ALLOW.
    assert_eq!(me.matched_rule, "#0");
    // tonic's own `remote_addr()` (dual-stack listener: maybe IPv4-mapped).
    assert!(me.remote_addr.contains("127.0.0.1"), "{me:?}");
    assert_eq!(me.tls_version, "TLSv1_3");

    assert_eq!(server.terminate().await, Some(143));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_client_the_policy_does_not_allow_gets_permission_denied() {
    let c = clients();
    let server = GrpcExample::start(&c.pki, &[allow_policy()]).await;
    let chan = channel(&c.pki, server.port, Some(&c.other));

    let status = health(chan.clone()).await.expect_err("not allowed");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(
        status.message(),
        "the client certificate is not allowed to access this resource"
    );
    let status = who_am_i(chan).await.expect_err("not allowed");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        server.log().contains("someone-else"),
        "the denial is logged with the client: {}",
        server.log()
    );
}

/// The example's default: the handshake lets a client without a certificate through and
/// `ClientCertLayer::require()` answers every call with a proper status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_certificate_the_example_answers_unauthenticated() {
    let c = clients();
    let server = GrpcExample::start(&c.pki, &[allow_policy()]).await;
    for call in 0..2 {
        let chan = channel(&c.pki, server.port, None);
        let status = if call == 0 {
            health(chan).await.expect_err("no certificate")
        } else {
            who_am_i(chan).await.expect_err("no certificate")
        };
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert_eq!(status.message(), "a client certificate is required");
    }
    // Without a policy too.
    let server = GrpcExample::start(&c.pki, &[]).await;
    let status = health(channel(&c.pki, server.port, None))
        .await
        .expect_err("no certificate");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let me = who_am_i(channel(&c.pki, server.port, Some(&c.other)))
        .await
        .expect("any trusted client without a policy");
    assert_eq!(me.common_name, "someone-else");
    assert_eq!(me.matched_rule, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_fails_the_handshake_even_with_optional_client_auth() {
    let c = clients();
    let server = GrpcExample::start(&c.pki, &[allow_policy()]).await;
    let stranger = Ca::new("Stranger CA").client(ALLOWED_CN);
    let status = health(channel(&c.pki, server.port, Some(&stranger)))
        .await
        .expect_err("untrusted");
    // A refused handshake is a transport error to a gRPC client, never a call that passed.
    assert_transport_failure(&status);
}

/// What tonic's client makes of a handshake the server refused: no status the server sent,
/// but its own for a broken connection — `UNKNOWN "transport error"` when the alert (e.g.
/// `certificate_required`) is read first, `CANCELLED "operation was canceled"` when the
/// connection is found closed first (TLS 1.3 clients send the request before the server's
/// verdict arrives, so either happens), `UNAVAILABLE` when connecting fails outright.
fn assert_transport_failure(status: &Status) {
    assert!(
        matches!(
            status.code(),
            Code::Unknown | Code::Cancelled | Code::Unavailable
        ),
        "{status:?}"
    );
    let source = std::error::Error::source(status).expect("a local transport error");
    assert!(
        source.is::<tonic::transport::Error>(),
        "{status:?}: {source:?}"
    );
}

// ----------------------------------------------------------------------------------------
// In-process servers.

/// `Identity/WhoAmI` for the in-process servers: the subject, or `Status` when the
/// interceptor let something through that it should not have.
struct WhoAmI;

#[tonic::async_trait]
impl IdentityService for WhoAmI {
    async fn who_am_i(
        &self,
        request: tonic::Request<WhoAmIRequest>,
    ) -> Result<tonic::Response<WhoAmIResponse>, Status> {
        let id = request
            .client_identity()
            .ok_or_else(|| Status::internal("no identity"))?;
        Ok(tonic::Response::new(WhoAmIResponse {
            subject: id.subject().to_string(),
            common_name: id.common_name().unwrap_or_default().to_owned(),
            remote_addr: request
                .remote_addr()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            ..Default::default()
        }))
    }
}

/// An interceptor that reads the identity the way handlers do (and refuses without one).
#[allow(clippy::result_large_err)]
fn needs_identity(request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
    match request.peer_certificates() {
        Some(peer) if peer.identity().is_ok() => Ok(request),
        _ => Err(Status::unauthenticated(
            "the interceptor saw no certificate",
        )),
    }
}

/// A tonic server on 127.0.0.1:0 fed by `MtlsIncoming`, without `ClientCertLayer`: the
/// health service and the identity service behind `needs_identity`.
async fn in_process(acceptor: MtlsAcceptor) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let incoming = MtlsIncoming::bind("127.0.0.1:0", acceptor)
        .await
        .expect("bind");
    let addr = incoming.local_addr().expect("addr");
    let (reporter, health_service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let task = tokio::spawn(async move {
        Server::builder()
            .layer(ConnectInfoLayer::new())
            .add_service(health_service)
            .add_service(IdentityServer::with_interceptor(WhoAmI, needs_identity))
            .serve_with_incoming(incoming)
            .await
            .expect("serve");
    });
    (addr, task)
}

/// With the Steadybit contract's client auth (`Required`), a client without a certificate is
/// refused in the handshake, and a gRPC client sees only a broken transport.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_client_auth_refuses_the_handshake_which_grpc_reports_as_a_transport_error() {
    let c = clients();
    let tls = c.pki.required_config();
    let (addr, _server) = in_process(MtlsAcceptor::new(tls)).await;

    let status = health(channel(&c.pki, addr.port(), None))
        .await
        .expect_err("refused in the handshake");
    assert_transport_failure(&status);
    // With a certificate all is well, and the interceptor and handler read it.
    let me = who_am_i(channel(&c.pki, addr.port(), Some(&c.allowed)))
        .await
        .expect("who am I");
    assert_eq!(me.common_name, ALLOWED_CN);
    assert!(me.remote_addr.starts_with("127.0.0.1:"), "{me:?}");
}

/// The same server with `ClientCertLayer` in `Server::builder().layer(…)`: its rejections
/// reach tonic's client as gRPC statuses, whichever service is called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cert_layer_in_a_tonic_server_answers_with_grpc_statuses() {
    let c = clients();
    let tls = c.pki.optional_config();
    let incoming = MtlsIncoming::bind("127.0.0.1:0", tls).await.expect("bind");
    let port = incoming.local_addr().expect("addr").port();
    let (reporter, health_service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    // No ConnectInfoLayer: the layer reads tonic's connect info itself.
    tokio::spawn(
        Server::builder()
            .layer(ClientCertLayer::require().allow(Rule::new().subject_cn(ALLOWED_CN)))
            .add_service(health_service)
            .add_service(IdentityServer::new(WhoAmI))
            .serve_with_incoming(incoming),
    );

    let reply = health(channel(&c.pki, port, Some(&c.allowed)))
        .await
        .expect("allowed");
    assert_eq!(reply.status(), ServingStatus::Serving);
    let me = who_am_i(channel(&c.pki, port, Some(&c.allowed)))
        .await
        .expect("allowed");
    assert_eq!(me.common_name, ALLOWED_CN);
    // tonic's remote_addr() needs ConnectInfoLayer.
    assert_eq!(me.remote_addr, "");

    let status = who_am_i(channel(&c.pki, port, Some(&c.other)))
        .await
        .expect_err("not allowed");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = health(channel(&c.pki, port, None))
        .await
        .expect_err("no certificate");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(status.message(), "a client certificate is required");
}

/// Handshakes run off the accept path: 50 clients that connect and send nothing, with a
/// handshake deadline far beyond the test's patience, do not hold up a real one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_silent_clients_do_not_delay_a_real_one() {
    let c = clients();
    let tls = c.pki.required_config();
    let acceptor = MtlsAcceptor::new(tls).handshake_timeout(PATIENCE * 10);
    let (addr, _server) = in_process(acceptor).await;

    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    }
    let started = std::time::Instant::now();
    let reply = tokio::time::timeout(
        PATIENCE,
        health(channel(&c.pki, addr.port(), Some(&c.allowed))),
    )
    .await
    .expect("the real client is served while 50 handshakes are pending")
    .expect("health");
    assert_eq!(reply.status(), ServingStatus::Serving);
    assert!(started.elapsed() < PATIENCE);
    // The silent ones were held open all along.
    drop(silent);
}

// ----------------------------------------------------------------------------------------
// Python's grpcio.

const GRPC_CLIENT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/clients/grpcio_health_check.py"
);

/// A Python with grpcio and grpcio-health-checking: `TOWER_MTLS_GRPC_PYTHON`, the venv that
/// .ci/run makes, or `python3` if it has them. `None` (the test is skipped) only outside CI:
/// with `CI=true` a missing grpcio fails the test.
fn grpc_python() -> Option<PathBuf> {
    let venv = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .map(|cache| cache.join("tower-mtls/grpc-venv/bin/python"));
    let candidates = std::env::var_os("TOWER_MTLS_GRPC_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain(venv)
        .chain([PathBuf::from("python3")]);
    for python in candidates {
        let usable = std::process::Command::new(&python)
            .args(["-c", "import grpc, grpc_health.v1.health_pb2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if usable {
            return Some(python);
        }
    }
    let message = "Python's grpcio is missing: run .ci/run once (it makes the venv), or point \
                   TOWER_MTLS_GRPC_PYTHON at a python with grpcio and grpcio-health-checking";
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
    eprintln!("skipped: {message}");
    None
}

async fn grpcio_health(
    python: &Path,
    port: u16,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> String {
    let mut cmd = Command::new(python);
    cmd.arg(GRPC_CLIENT).arg(port.to_string()).arg(ca);
    if let Some((cert, key)) = identity {
        cmd.arg(cert).arg(key);
    }
    cmd.kill_on_drop(true);
    let out = tokio::time::timeout(PATIENCE * 2, cmd.output())
        .await
        .expect("the grpcio client finishes")
        .expect("run python");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_sees_serving_when_allowed_and_permission_denied_when_not() {
    let Some(python) = grpc_python() else { return };
    let c = clients();
    let server = GrpcExample::start(&c.pki, &[allow_policy()]).await;
    let allowed = c.pki.write_leaf(&c.allowed, "allowed");
    let other = c.pki.write_leaf(&c.other, "other");

    let out = grpcio_health(
        &python,
        server.port,
        &c.pki.ca_path,
        Some((&allowed.0, &allowed.1)),
    )
    .await;
    assert!(out.contains("HEALTH SERVING"), "{out}\n{}", server.log());

    let out = grpcio_health(
        &python,
        server.port,
        &c.pki.ca_path,
        Some((&other.0, &other.1)),
    )
    .await;
    assert!(
        out.contains("STATUS PERMISSION_DENIED the client certificate is not allowed"),
        "{out}"
    );

    let out = grpcio_health(&python, server.port, &c.pki.ca_path, None).await;
    assert!(
        out.contains("STATUS UNAUTHENTICATED a client certificate is required"),
        "{out}"
    );

    // Refused in the handshake (the contract's `Required`), grpcio sees no status of the call.
    let tls = c.pki.required_config();
    let (addr, _server) = in_process(MtlsAcceptor::new(tls)).await;
    let out = grpcio_health(&python, addr.port(), &c.pki.ca_path, None).await;
    eprintln!("observed: {out}");
    assert!(out.contains("STATUS UNAVAILABLE"), "{out}");
}

// ----------------------------------------------------------------------------------------
// Crypto providers.

/// The combination of tonic's `tls-ring` (a dev-dependency here) with this crate's default
/// aws-lc-rs: both of rustls's providers are compiled in. tonic's client and this crate's
/// server work without a process default; `ServerConfig::builder()` panics until the
/// application installs one, which `tls::install_default_provider` does once. Run in a child
/// process of its own, since the process default cannot be uninstalled.
#[test]
fn both_providers_compiled_in_need_a_process_default_only_for_rustls_builders() {
    const CHILD: &str = "TOWER_MTLS_PROVIDER_CHILD";
    if std::env::var_os(CHILD).is_some() {
        provider_child();
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args([
            "--exact",
            "both_providers_compiled_in_need_a_process_default_only_for_rustls_builders",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .expect("run the child test");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("provider child: done"), "{text}");
}

fn provider_child() {
    use tower_mtls::rustls::crypto::CryptoProvider;

    assert!(CryptoProvider::get_default().is_none());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let c = clients();
        let tls = c.pki.required_config();
        let (addr, _server) = in_process(MtlsAcceptor::new(tls)).await;
        // tonic's ClientTlsConfig with a client identity, no process default.
        let me = who_am_i(channel(&c.pki, addr.port(), Some(&c.allowed)))
            .await
            .expect("tonic's TLS client and this crate's server, no process default");
        assert_eq!(me.common_name, ALLOWED_CN);
    });
    assert!(
        CryptoProvider::get_default().is_none(),
        "nothing installed a default behind the application's back"
    );

    // What other libraries' `ServerConfig::builder()` does with both providers compiled in.
    let silence = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let ambiguous = std::panic::catch_unwind(tower_mtls::rustls::ServerConfig::builder);
    std::panic::set_hook(silence);
    assert!(
        ambiguous.is_err(),
        "both providers are compiled in: ambiguous"
    );

    assert!(tower_mtls::tls::install_default_provider());
    assert!(!tower_mtls::tls::install_default_provider(), "once");
    let installed = CryptoProvider::get_default().expect("installed");
    let expected = tower_mtls::tls::default_provider();
    assert_eq!(
        format!("{:?}", installed.key_provider),
        format!("{:?}", expected.key_provider),
        "the crate's provider"
    );
    let _ = tower_mtls::rustls::ServerConfig::builder();
    println!("provider child: done");
}

/// The example's plain mode: no TLS variables, plain gRPC (h2c).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tls_variables_the_example_serves_plain_grpc() {
    let mut cmd = Command::new(example_binary());
    cmd.env_clear()
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env("STEADYBIT_EXTENSION_PORT", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("start");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let port = tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.expect("read") {
            if let Some(addr) = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("listen="))
            {
                assert!(line.contains("plain gRPC"), "{line}");
                return addr
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse::<u16>().ok())
                    .expect("port");
            }
        }
        panic!("exited before listening");
    })
    .await
    .expect("starts");
    let chan = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("endpoint")
        .connect_lazy();
    assert_eq!(
        health(chan.clone()).await.expect("health").status(),
        ServingStatus::Serving
    );
    let me = who_am_i(chan).await.expect("who am I");
    assert_eq!(me.subject, "");
}

/// A configuration error stops the example with exit code 1 and the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_without_client_cas_is_refused_at_start_up() {
    let pki = Pki::new();
    let out = Command::new(example_binary())
        .env_clear()
        .env("NO_COLOR", "1")
        .env("STEADYBIT_EXTENSION_PORT", "0")
        .env(
            "STEADYBIT_EXTENSION_TLS_SERVER_CERT",
            pki.server_cert.as_os_str(),
        )
        .env(
            "STEADYBIT_EXTENSION_TLS_SERVER_KEY",
            pki.server_key.as_os_str(),
        )
        .env("TOWER_MTLS_CLIENT_ALLOW", "cn=x")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(PATIENCE, out)
        .await
        .expect("exits")
        .expect("run");
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("TOWER_MTLS_CLIENT_ALLOW"), "{text}");
}

// ----------------------------------------------------------------------------------------
// On a Unix socket, as Steadybit's extension-kit serves one.

/// A tonic channel to the Unix socket at `path`.
async fn unix_channel(path: &Path) -> Channel {
    let path = path.to_path_buf();
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
        .expect("connect to the socket")
}

/// With the TLS variables set, the socket serves plain gRPC (the kit's rule: the TLS variables
/// apply to TCP only; the socket's permissions guard it), says so once at start-up, answers
/// tonic's and grpcio's health checks on the socket, and removes its socket file at exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_unix_socket_the_example_serves_plain_grpc_whatever_the_tls_variables() {
    let pki = Pki::new();
    // A stale socket file left by a killed process, in a directory that exists.
    let socket = pki.path("run/grpc.sock");
    std::fs::create_dir_all(socket.parent().expect("parent")).expect("dir");
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("stale socket"));
    let mut cmd = Command::new(example_binary());
    cmd.env_clear()
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env("STEADYBIT_EXTENSION_UNIX_SOCKET", &socket)
        .env(
            "STEADYBIT_EXTENSION_TLS_SERVER_CERT",
            pki.server_cert.as_os_str(),
        )
        .env(
            "STEADYBIT_EXTENSION_TLS_SERVER_KEY",
            pki.server_key.as_os_str(),
        )
        .env(
            "STEADYBIT_EXTENSION_TLS_CLIENT_CAS",
            pki.ca_path.as_os_str(),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("start");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let log = Arc::new(Mutex::new(Vec::new()));
    tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.expect("read") {
            log.lock().expect("log").push(line.clone());
            if line.contains("on a Unix socket") {
                return;
            }
        }
        panic!("exited before listening: {:#?}", log.lock().expect("log"));
    })
    .await
    .expect("starts");
    drain(lines, log.clone());
    let text = log.lock().expect("log").join("\n");
    assert_eq!(
        text.matches("the TLS variables apply to TCP only").count(),
        1,
        "{text}"
    );

    let chan = unix_channel(&socket).await;
    assert_eq!(
        health(chan.clone()).await.expect("health").status(),
        ServingStatus::Serving
    );
    assert_eq!(who_am_i(chan).await.expect("who am I").subject, "");
    if let Some(python) = grpc_python() {
        let mut cmd = Command::new(python);
        cmd.arg(GRPC_CLIENT)
            .arg(format!("unix:{}", socket.display()))
            .kill_on_drop(true);
        let out = tokio::time::timeout(PATIENCE * 2, cmd.output())
            .await
            .expect("grpcio finishes")
            .expect("run python");
        let out = String::from_utf8_lossy(&out.stdout);
        assert!(out.contains("HEALTH SERVING"), "{out}");
    }

    let pid = child.id().expect("running");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("exits in time")
        .expect("exit status");
    assert_eq!(exit.code(), Some(143));
    assert!(!socket.exists(), "the socket file is removed at exit");
}

/// TLS on the socket is the extension example's; this one refuses it at start-up, naming the
/// variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_on_a_unix_socket_is_refused_by_the_grpc_example_naming_the_variable() {
    let pki = Pki::new();
    let out = Command::new(example_binary())
        .env_clear()
        .env("NO_COLOR", "1")
        .env("STEADYBIT_EXTENSION_UNIX_SOCKET", pki.path("grpc.sock"))
        .env("TOWER_MTLS_UNIX_SOCKET_TLS", "true")
        .env(
            "STEADYBIT_EXTENSION_TLS_SERVER_CERT",
            pki.server_cert.as_os_str(),
        )
        .env(
            "STEADYBIT_EXTENSION_TLS_SERVER_KEY",
            pki.server_key.as_os_str(),
        )
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(PATIENCE, out)
        .await
        .expect("exits")
        .expect("run");
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("TOWER_MTLS_UNIX_SOCKET_TLS"), "{text}");
}

/// tonic's own TLS (`ServerTlsConfig` with a client CA) instead of this crate's acceptor:
/// `ClientCertLayer` adopts the chain tonic's verifier accepted, and `ConnectInfoLayer` lets
/// an interceptor and a handler without a policy read it through `PeerExt`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_tonics_own_tls_the_layer_and_peer_ext_read_the_chain() {
    // tonic's server builds its rustls config from the process default, and this test binary
    // has both providers compiled in.
    let _ = tower_mtls::tls::install_default_provider();
    let c = clients();
    let tonic_tls = || {
        tonic::transport::ServerTlsConfig::new()
            .identity(Identity::from_pem(
                std::fs::read(&c.pki.server_cert).expect("server cert"),
                std::fs::read(&c.pki.server_key).expect("server key"),
            ))
            .client_ca_root(Certificate::from_pem(&c.pki.ca.cert_pem))
            .client_auth_optional(true)
    };
    macro_rules! serve {
        ($router:expr) => {{
            let incoming =
                tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap())
                    .expect("bind");
            let port = incoming.local_addr().expect("addr").port();
            tokio::spawn($router.serve_with_incoming(incoming));
            port
        }};
    }
    let (_, health_service) = tonic_health::server::health_reporter();

    // With the policy.
    let port = serve!(
        Server::builder()
            .tls_config(tonic_tls())
            .expect("tonic tls")
            .layer(ClientCertLayer::require().allow(Rule::new().subject_cn(ALLOWED_CN)))
            .add_service(health_service)
            .add_service(IdentityServer::new(WhoAmI))
    );
    let me = who_am_i(channel(&c.pki, port, Some(&c.allowed)))
        .await
        .expect("allowed");
    assert_eq!(me.common_name, ALLOWED_CN);
    let status = who_am_i(channel(&c.pki, port, Some(&c.other)))
        .await
        .expect_err("not allowed");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = who_am_i(channel(&c.pki, port, None))
        .await
        .expect_err("no certificate");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // Without a policy: ConnectInfoLayer adopts the chain for the interceptor and handler.
    let port = serve!(
        Server::builder()
            .tls_config(tonic_tls())
            .expect("tonic tls")
            .layer(ConnectInfoLayer::new())
            .add_service(IdentityServer::with_interceptor(WhoAmI, needs_identity))
    );
    let me = who_am_i(channel(&c.pki, port, Some(&c.other)))
        .await
        .expect("any trusted client");
    assert_eq!(me.common_name, "someone-else");
    assert!(me.remote_addr.starts_with("127.0.0.1:"), "{me:?}");
    let status = who_am_i(channel(&c.pki, port, None))
        .await
        .expect_err("the interceptor refuses a call without a certificate");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}
