//! axum on its own server (`axum::serve`) through the crate's listener, and axum apps under
//! the crate's `MtlsServer`: curl and the test kit's client as real clients.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use tokio::sync::{Notify, oneshot};
use tower::Layer;
use tower_mtls::AllowedClient;
use tower_mtls::Rule;
use tower_mtls::axum::{ClientCert, make_service};
use tower_mtls::serve::MtlsListener;
use tower_mtls::{ClientAuth, ClientCertLayer, ConnectionInfo, MtlsAcceptor, PeerCertificates};
use tower_mtls_test_kit::{PATIENCE, Pki, TestServer, curl, curl_with_cert};

async fn whoami(client: ClientCert, connection: ConnectionInfo) -> String {
    let tls = connection.tls();
    let remote = tls
        .remote_addr()
        .map_or_else(|| "-".to_owned(), |addr| addr.to_string());
    tracing::info!("handling whoami");
    format!(
        "subject={} remote={remote} alpn={}",
        client.subject(),
        String::from_utf8_lossy(tls.alpn_protocol().unwrap_or_default())
    )
}

async fn maybe(peer: Option<PeerCertificates>) -> &'static str {
    if peer.is_some() { "with" } else { "without" }
}

async fn allowed(client: AllowedClient) -> String {
    format!(
        "allowed {}",
        client
            .identity()
            .map(|id| id.subject().to_string())
            .unwrap_or_default()
    )
}

fn router() -> Router {
    Router::new()
        .route("/whoami", get(whoami))
        .route("/maybe", get(maybe))
        .route("/allowed", get(allowed))
        .route(
            "/agent",
            get(allowed).layer(ClientCertLayer::require().allow(Rule::new().subject_cn("agent"))),
        )
}

struct Served {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Served {
    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(PATIENCE, self.done)
            .await
            .expect("axum::serve returns after the shutdown")
            .expect("server task")
            .expect("serve");
    }
}

/// `axum::serve` on a `MtlsListener` with `make_service(app)`.
async fn serve_axum<S, B>(listener: MtlsListener, app: S, grace: Duration) -> Served
where
    S: tower::Service<
            http::Request<axum::body::Body>,
            Response = http::Response<B>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = listener.graceful_shutdown(
        async move {
            let _ = stopped.await;
        },
        grace,
    );
    let done = tokio::spawn(async move {
        axum::serve(listener, make_service(app))
            .with_graceful_shutdown(shutdown)
            .await
    });
    Served {
        addr,
        stop: Some(stop),
        done,
    }
}

async fn listener(pki: &Pki, auth: ClientAuth) -> MtlsListener {
    let builder = pki.mtls_builder();
    let tls = match auth {
        ClientAuth::Optional => builder.optional_client_auth(),
        _ => builder,
    }
    .build()
    .unwrap();
    MtlsListener::bind("127.0.0.1:0", tls).await.unwrap()
}

/// curl against `served` with the client identity `(certificate, key)`.
async fn curl_as(
    pki: &Pki,
    served: &Served,
    identity: &(std::path::PathBuf, std::path::PathBuf),
    path: &str,
    extra: &[&str],
) -> std::process::Output {
    let (cert, key) = identity;
    curl_with_cert(
        &pki.ca_path,
        &served.url(path),
        served.addr.port(),
        cert,
        key,
        extra,
    )
    .await
}

fn body(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `curl -w` appends the status code after a newline.
fn status_of(output: &std::process::Output) -> String {
    body(output)
        .rsplit('\n')
        .next()
        .unwrap_or_default()
        .to_owned()
}

const STATUS: &[&str] = &["--write-out", "\n%{http_code}"];

#[tokio::test]
async fn curl_allowed_denied_and_without_a_certificate() {
    let pki = Pki::new();
    let agent = pki.ca.client("agent");
    let other = pki.ca.client("other");
    let agent_id = pki.write_leaf(&agent, "agent");
    let other_id = pki.write_leaf(&other, "other");
    let served = serve_axum(
        listener(&pki, ClientAuth::Optional).await,
        router(),
        Duration::from_secs(5),
    )
    .await;
    let port = served.addr.port();

    let out = curl_as(&pki, &served, &agent_id, "/whoami", STATUS).await;
    let text = body(&out);
    assert!(text.contains("subject=CN=agent"), "{text}");
    assert!(text.contains("remote=127.0.0.1:"), "ConnectionInfo: {text}");
    assert!(text.ends_with("\n200"), "{text}");

    let out = curl_as(&pki, &served, &agent_id, "/agent", STATUS).await;
    assert_eq!(status_of(&out), "200", "{}", body(&out));
    assert!(body(&out).contains("allowed CN=agent"));

    let out = curl_as(&pki, &served, &other_id, "/agent", STATUS).await;
    assert_eq!(status_of(&out), "403", "{}", body(&out));
    assert!(body(&out).contains("client_certificate_not_allowed"));

    // No certificate: the extractors and the layer answer 401, never 500.
    for path in ["/whoami", "/agent", "/allowed"] {
        let out = curl(&pki.ca_path, &served.url(path), port, STATUS).await;
        assert_eq!(status_of(&out), "401", "{path}: {}", body(&out));
        assert!(body(&out).contains("client_certificate_required"), "{path}");
    }
    let out = curl(&pki.ca_path, &served.url("/maybe"), port, STATUS).await;
    assert_eq!(body(&out), "without\n200");
    let out = curl_as(&pki, &served, &other_id, "/maybe", STATUS).await;
    assert_eq!(body(&out), "with\n200");

    // A trusted certificate, but no layer on `/allowed`: AllowedClient is refused (fail closed).
    let out = curl_as(&pki, &served, &agent_id, "/allowed", STATUS).await;
    assert_eq!(status_of(&out), "401", "{}", body(&out));

    // HTTP/2 too.
    let mut args = vec!["--http2"];
    args.extend_from_slice(STATUS);
    let out = curl_as(&pki, &served, &agent_id, "/whoami", &args).await;
    assert!(body(&out).contains("alpn=h2"), "{}", body(&out));
    assert_eq!(status_of(&out), "200");

    served.stop().await;
}

#[tokio::test]
async fn required_client_auth_refuses_in_the_handshake() {
    let pki = Pki::new();
    let agent = pki.ca.client("agent");
    let stranger = tower_mtls_test_kit::Ca::new("Other CA").client("agent");
    let agent_id = pki.write_leaf(&agent, "agent");
    let stranger_id = pki.write_leaf(&stranger, "stranger");
    let served = serve_axum(
        listener(&pki, ClientAuth::Required).await,
        router(),
        Duration::from_secs(5),
    )
    .await;
    let port = served.addr.port();

    let out = curl(&pki.ca_path, &served.url("/whoami"), port, STATUS).await;
    assert!(
        !out.status.success(),
        "no certificate must fail the handshake: {}",
        body(&out)
    );
    let out = curl_as(&pki, &served, &stranger_id, "/whoami", STATUS).await;
    assert!(
        !out.status.success(),
        "an untrusted certificate must fail the handshake"
    );
    // The server keeps serving everyone else.
    let out = curl_as(&pki, &served, &agent_id, "/whoami", STATUS).await;
    assert_eq!(status_of(&out), "200", "{}", body(&out));
    served.stop().await;
}

#[tokio::test]
async fn the_layer_around_the_whole_router_serves_with_axum_serve() {
    let pki = Pki::new();
    let agent = pki.ca.client("agent");
    let other = pki.ca.client("other");
    // The README's form: the whole app wrapped in the layer, its body is not axum's.
    let app = ClientCertLayer::require()
        .allow(Rule::new().subject_cn("agent"))
        .layer(router());
    let served = serve_axum(
        listener(&pki, ClientAuth::Optional).await,
        app,
        Duration::from_secs(5),
    )
    .await;

    let ok = pki
        .client(Some(&agent))
        .get(served.addr, "localhost", "/maybe")
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let denied = pki
        .client(Some(&other))
        .get(served.addr, "localhost", "/maybe")
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let anonymous = pki
        .client(None)
        .get(served.addr, "localhost", "/maybe")
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    // Behind the outer layer, the handler's `AllowedClient` is the outer layer's verdict.
    let allowed = pki
        .client(Some(&agent))
        .get(served.addr, "localhost", "/allowed")
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    served.stop().await;
}

#[tokio::test]
async fn connect_info_connection_info_works_as_well() {
    let pki = Pki::new();
    let agent = pki.ca.client("agent");
    let other = pki.ca.client("other");
    let listener = listener(&pki, ClientAuth::Optional).await;
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route(
            "/",
            get(
                |ConnectInfo(info): ConnectInfo<ConnectionInfo>, id: ClientCert| async move {
                    format!("{} {}", id.subject(), info.tls().remote_addr().is_some())
                },
            ),
        )
        // The layer's verdict reaches the handler here too (in a copy of the connection's
        // info that the request carries).
        .route("/allowed", get(allowed))
        .layer(ClientCertLayer::require().allow(Rule::new().subject_cn("agent")));
    let done = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<ConnectionInfo>(),
        )
        .await
    });
    let ok = pki
        .client(Some(&agent))
        .get(addr, "localhost", "/")
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.body().as_ref(), b"CN=agent true");
    let verdict = pki
        .client(Some(&agent))
        .get(addr, "localhost", "/allowed")
        .await
        .unwrap();
    assert_eq!(verdict.status(), 200);
    assert_eq!(verdict.body().as_ref(), b"allowed CN=agent");
    let denied = pki
        .client(Some(&other))
        .get(addr, "localhost", "/")
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let anonymous = pki.client(None).get(addr, "localhost", "/").await.unwrap();
    assert_eq!(anonymous.status(), 401);
    done.abort();
}

#[tokio::test]
async fn fifty_silent_clients_do_not_block_a_real_one() {
    let pki = Pki::new();
    let agent = pki.ca.client("agent");
    let agent_id = pki.write_leaf(&agent, "agent");
    let tls = pki.required_config();
    // The silent clients would hold their handshakes for a minute: far longer than the test.
    let acceptor = MtlsAcceptor::new(tls).handshake_timeout(Duration::from_secs(120));
    let listener = MtlsListener::bind("127.0.0.1:0", acceptor).await.unwrap();
    let served = serve_axum(listener, router(), Duration::from_secs(5)).await;
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(tokio::net::TcpStream::connect(served.addr).await.unwrap());
    }
    // A handshake held up behind the silent ones would wait 120 s; curl gives up after 20.
    let out = curl_as(&pki, &served, &agent_id, "/whoami", STATUS).await;
    assert_eq!(
        status_of(&out),
        "200",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(silent);
    served.stop().await;
}

#[tokio::test]
async fn the_connection_cap_holds_and_frees_its_slots() {
    let pki = Pki::new();
    let agent = pki.ca.client("agent");
    let tls = pki.required_config();
    let acceptor = MtlsAcceptor::new(tls).handshake_timeout(Duration::from_secs(120));
    let listener = MtlsListener::bind("127.0.0.1:0", acceptor)
        .await
        .unwrap()
        .max_connections(2);
    let served = serve_axum(listener, router(), Duration::from_secs(5)).await;
    let first = tokio::net::TcpStream::connect(served.addr).await.unwrap();
    let second = tokio::net::TcpStream::connect(served.addr).await.unwrap();
    // Both slots are taken by connections that never finish their handshake: a third client
    // cannot be served, whatever the wait.
    let client = pki.client(Some(&agent));
    let blocked = tokio::time::timeout(
        Duration::from_secs(2),
        client.get(served.addr, "localhost", "/whoami"),
    )
    .await;
    assert!(
        blocked.is_err(),
        "a third connection was served past the cap of 2: {blocked:?}"
    );
    drop(first);
    let served_now =
        tokio::time::timeout(PATIENCE, client.get(served.addr, "localhost", "/whoami"))
            .await
            .expect("served once a slot is free")
            .unwrap();
    assert_eq!(served_now.status(), 200);
    drop(second);
    served.stop().await;
}

#[tokio::test]
async fn the_grace_period_ends_connections_that_never_finish() {
    let pki = Pki::new();
    let agent = pki.ca.client("agent");
    let entered = Arc::new(Notify::new());
    let app = Router::new().route(
        "/hang",
        get({
            let entered = entered.clone();
            move || async move {
                entered.notify_one();
                std::future::pending::<()>().await;
            }
        }),
    );
    let served = serve_axum(
        listener(&pki, ClientAuth::Required).await,
        app,
        Duration::from_millis(500),
    )
    .await;
    let addr = served.addr;
    let client = pki.client(Some(&agent));
    let hanging = tokio::spawn(async move { client.get(addr, "localhost", "/hang").await });
    tokio::time::timeout(PATIENCE, entered.notified())
        .await
        .expect("the handler runs");
    // Without the deadline axum would wait for the hanging request forever.
    served.stop().await;
    let outcome = tokio::time::timeout(PATIENCE, hanging)
        .await
        .expect("the client sees the end")
        .unwrap();
    assert!(
        outcome.is_err(),
        "the hanging request was closed, not answered: {outcome:?}"
    );
}

#[tokio::test]
async fn connect_info_and_extractors_work_under_mtls_server_too() {
    let pki = Pki::new();
    let agent = pki.ca.client("agent");
    let tls = pki.optional_config();
    let server = TestServer::start_service(Some(tls.into()), router()).await;
    let ok = pki
        .client(Some(&agent))
        .get(server.addr, "localhost", "/whoami")
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let text = String::from_utf8_lossy(ok.body()).into_owned();
    assert!(
        text.contains("subject=CN=agent remote=127.0.0.1:"),
        "{text}"
    );
    let anonymous = pki
        .client(None)
        .get(server.addr, "localhost", "/whoami")
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    server.stop().await;
}

/// A `MakeWriter` into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Request spans (tower-http's `TraceLayer`) nest under the connection's span, which names the
/// client, on HTTP/1.1 and HTTP/2, under `axum::serve` and under `MtlsServer`.
#[tokio::test(flavor = "current_thread")]
async fn request_spans_nest_under_the_connection_span() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_env_filter("info")
        .finish();
    // The runtime is single-threaded: every task sees this subscriber. A global one that keeps
    // nothing comes first: a callsite first reached on a thread without any subscriber (the
    // blocking pool) would otherwise be cached as `never` for the whole process while this
    // scoped one is the only one registered (tokio-rs/tracing#3611).
    let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry());
    let _default = tracing::subscriber::set_default(subscriber);

    let pki = Pki::new();
    let agent = pki.ca.client("agent");
    let agent_id = pki.write_leaf(&agent, "agent");
    // Outside the router, so the request span is made in `call`, not in the router's future.
    let traced = || {
        tower_http::trace::TraceLayer::new_for_http()
            .make_span_with(tower_http::trace::DefaultMakeSpan::new().level(tracing::Level::INFO))
            .layer(router())
    };
    let served = serve_axum(
        listener(&pki, ClientAuth::Required).await,
        traced(),
        Duration::from_secs(5),
    )
    .await;
    let tls = pki.required_config();
    let server = TestServer::start_service(Some(tls.into()), traced()).await;

    for (name, port) in [
        ("axum::serve", served.addr.port()),
        ("MtlsServer", server.port()),
    ] {
        for http in ["--http1.1", "--http2"] {
            captured.0.lock().unwrap().clear();
            let url = format!("https://localhost:{port}/whoami");
            let out =
                curl_with_cert(&pki.ca_path, &url, port, &agent_id.0, &agent_id.1, &[http]).await;
            assert!(out.status.success(), "{name} {http}");
            let log = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
            let line = log
                .lines()
                .find(|line| line.contains("handling whoami"))
                .unwrap_or_else(|| panic!("{name} {http}: no handler line in {log}"));
            let connection = line
                .find("tls_connection{")
                .unwrap_or_else(|| panic!("{name} {http}: {line}"));
            let request = line
                .find("request{")
                .unwrap_or_else(|| panic!("{name} {http}: {line}"));
            assert!(
                connection < request,
                "{name} {http}: the request span is not inside the connection span: {line}"
            );
            assert!(line.contains("client=CN=agent"), "{name} {http}: {line}");
            assert!(line.contains("remote=127.0.0.1:"), "{name} {http}: {line}");
            assert!(
                line.contains("tls=\"TLSv1_3\"") || line.contains("tls=TLSv1_3"),
                "{name} {http}: {line}"
            );
        }
    }
    served.stop().await;
    server.stop().await;
}

/// The README's axum form, as written there: the app-wide layer admits the agent and ops, the
/// `/admin` route only ops. Every route is reachable by someone it names.
#[tokio::test]
async fn the_readme_axum_form_reaches_every_route() {
    async fn hello(client: ClientCert) -> String {
        format!("hello {}\n", client.subject())
    }
    let pki = Pki::new();
    let router = Router::new().route("/", get(hello)).route(
        "/admin",
        get(hello).layer(ClientCertLayer::require().allow(Rule::new().subject_cn("ops"))),
    );
    let app = ClientCertLayer::require()
        .allow(Rule::new().subject_cn("steadybit-agent"))
        .allow(Rule::new().subject_cn("ops"))
        .layer(router);
    let served = serve_axum(
        listener(&pki, ClientAuth::Required).await,
        app,
        Duration::from_secs(5),
    )
    .await;
    let agent = pki.write_leaf(&pki.ca.client("steadybit-agent"), "agent");
    let ops = pki.write_leaf(&pki.ca.client("ops"), "ops");
    let stranger = pki.write_leaf(&pki.ca.client("stranger"), "stranger");
    for (who, identity, path, expected) in [
        ("agent", &agent, "/", "200"),
        ("agent", &agent, "/admin", "403"),
        ("ops", &ops, "/", "200"),
        ("ops", &ops, "/admin", "200"),
        ("stranger", &stranger, "/", "403"),
    ] {
        let out = curl_as(&pki, &served, identity, path, STATUS).await;
        assert_eq!(status_of(&out), expected, "{who} {path}: {}", body(&out));
    }
    served.stop().await;
}
