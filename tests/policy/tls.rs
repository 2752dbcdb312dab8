//! `ClientCertLayer` through real TLS: curl and the crate's client against an axum app, with
//! certificates built to try the known spoofs.

use tower_mtls_test_kit as support;

use std::path::Path;

use axum::Router;

use axum::routing::get;
use support::*;
use tower_mtls::Rule;
use tower_mtls::{AllowedClient, ClientCertLayer, MtlsAcceptor, identity::SpiffeId};

async fn hello(client: AllowedClient) -> String {
    let cn = client
        .identity()
        .and_then(|id| id.common_name().map(str::to_owned))
        .unwrap_or_default();
    format!("hello {cn}")
}

fn app() -> Router {
    Router::new()
        .route(
            "/by-subject",
            get(hello).layer(
                ClientCertLayer::require().allow(
                    Rule::named("agent")
                        .subject_cn("agent")
                        .subject_o("Steadybit"),
                ),
            ),
        )
        .route(
            "/by-org",
            get(hello).layer(ClientCertLayer::require().allow(Rule::new().subject_o("Steadybit"))),
        )
        .route(
            "/by-spiffe",
            get(hello).layer(ClientCertLayer::require().allow(Rule::new().spiffe_id(
                SpiffeId::parse("spiffe://example.org/ns/steadybit/sa/agent").expect("id"),
            ))),
        )
        .route(
            "/by-issuer",
            get(hello)
                .layer(ClientCertLayer::require().allow(Rule::new().issuer_cn("Good Issuer CA"))),
        )
}

/// `GET path` with curl and a client certificate; returns (status, body).
async fn status(
    pki: &Pki,
    server: &TestServer,
    leaf: &Leaf,
    name: &str,
    path: &str,
) -> (u16, String) {
    let (cert, key) = pki.write_leaf(leaf, name);
    get_with(pki, server, &cert, &key, path).await
}

async fn get_with(
    pki: &Pki,
    server: &TestServer,
    cert: &Path,
    key: &Path,
    path: &str,
) -> (u16, String) {
    let out = curl_with_cert(
        &pki.ca_path,
        &server.url(path),
        server.port(),
        cert,
        key,
        &["--write-out", "\n%{http_code}"],
    )
    .await;
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (code.parse().expect("status"), body.to_owned())
}

async fn start(pki: &Pki) -> TestServer {
    let tls = pki.required_config();
    TestServer::start_service(Some(MtlsAcceptor::new(tls)), app()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_and_denied_by_subject_and_spiffe_id() {
    let pki = Pki::new();
    let server = start(&pki).await;
    let agent = pki.ca.issue(
        &LeafSpec::client("agent")
            .org("Steadybit")
            .uri("spiffe://example.org/ns/steadybit/sa/agent"),
    );
    let (code, body) = status(&pki, &server, &agent, "agent", "/by-subject").await;
    assert_eq!((code, body.as_str()), (200, "hello agent"));
    let (code, _) = status(&pki, &server, &agent, "agent", "/by-spiffe").await;
    assert_eq!(code, 200);

    let stranger = pki.ca.issue(&LeafSpec::client("intruder").org("Steadybit"));
    let (code, body) = status(&pki, &server, &stranger, "intruder", "/by-subject").await;
    assert_eq!(code, 403);
    assert!(
        body.contains("\"error\":\"client_certificate_not_allowed\""),
        "{body}"
    );
    let (code, _) = status(&pki, &server, &stranger, "intruder", "/by-spiffe").await;
    assert_eq!(code, 403);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comma_inside_the_common_name_does_not_forge_an_organization() {
    let pki = Pki::new();
    let server = start(&pki).await;
    // One CN whose value is "agent, O=Steadybit"; no O attribute at all.
    let spoof = pki.ca.issue(&LeafSpec::client("agent, O=Steadybit"));
    for path in ["/by-subject", "/by-org"] {
        let (code, body) = status(&pki, &server, &spoof, "spoof", path).await;
        assert_eq!(code, 403, "{path}: {body}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appended_certificate_does_not_forge_the_issuer() {
    let pki = Pki::new();
    let server = start(&pki).await;
    let good_issuer = pki.ca.intermediate("Good Issuer CA");
    let other_issuer = pki.ca.intermediate("Other Issuer CA");

    let honest = good_issuer.issue_with_chain(&LeafSpec::client("honest"));
    let (code, body) = status(&pki, &server, &honest, "honest", "/by-issuer").await;
    assert_eq!((code, body.as_str()), (200, "hello honest"));

    // Issued by the other intermediate; the client appends the good issuer's certificate to
    // its chain as well. The chain verifies, but the leaf's issuer is what it is.
    let mut spoof = other_issuer.issue_with_chain(&LeafSpec::client("spoof"));
    spoof.chain_pem = format!("{}{}", spoof.chain_pem, good_issuer.cert_pem);
    let (code, body) = status(&pki, &server, &spoof, "spoof", "/by-issuer").await;
    assert_eq!(code, 403, "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_uri_sans_mean_no_spiffe_id() {
    let pki = Pki::new();
    let server = start(&pki).await;
    let ambiguous = pki.ca.issue(
        &LeafSpec::client("agent")
            .org("Steadybit")
            .uri("spiffe://example.org/ns/steadybit/sa/agent")
            .uri("spiffe://example.org/ns/other/sa/admin"),
    );
    let (code, body) = status(&pki, &server, &ambiguous, "ambiguous", "/by-spiffe").await;
    assert_eq!(code, 403, "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_http2_request_on_one_connection_is_authorized() {
    let pki = Pki::new();
    let server = start(&pki).await;
    let agent = pki.ca.issue(&LeafSpec::client("agent").org("Steadybit"));
    let intruder = pki.ca.issue(&LeafSpec::client("intruder").org("Steadybit"));
    for (leaf, expected) in [(&agent, 200), (&intruder, 403)] {
        let conn = pki
            .client(Some(leaf))
            .connect(server.addr, "localhost")
            .await
            .expect("connect");
        assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]));
        let mut streams = tokio::task::JoinSet::new();
        let conn = std::sync::Arc::new(conn);
        for _ in 0..20 {
            let conn = conn.clone();
            streams
                .spawn(async move { conn.get("/by-subject").await.expect("h2 stream").status() });
        }
        while let Some(status) = streams.join_next().await {
            assert_eq!(status.expect("task"), expected);
        }
    }
    server.stop().await;
}

/// The rule that let the client in, by name, as the handler sees it.
async fn matched(client: AllowedClient) -> String {
    client
        .matched_rule()
        .and_then(|rule| rule.name().map(str::to_owned))
        .unwrap_or_default()
}

/// Keep-alive connections (HTTP/1.1 and HTTP/2) of one client, each used for requests to
/// routes with different layers in turn.
async fn connections(
    pki: &Pki,
    leaf: &Leaf,
    addr: std::net::SocketAddr,
) -> Vec<client::Connection> {
    let mut connections = Vec::new();
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let connection = pki
            .client_alpn(Some(leaf), alpn)
            .connect(addr, "localhost")
            .await
            .expect("connect");
        assert_eq!(connection.alpn_protocol(), Some(alpn));
        connections.push(connection);
    }
    connections
}

/// A verdict holds for one layer only: on one connection, the layer that admitted a client
/// does not admit it for a route whose layer refuses it, however the requests interleave, and
/// a handler behind two layers sees the inner one's verdict every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_layer_decides_for_itself_on_one_connection() {
    let pki = Pki::new();
    let app = app()
        .route(
            "/nested",
            // Outer first: a request meets the app-wide rule, then the route's.
            get(matched).layer(
                tower::ServiceBuilder::new()
                    .layer(
                        ClientCertLayer::require()
                            .allow(Rule::named("outer").subject_o("Steadybit")),
                    )
                    .layer(
                        ClientCertLayer::require().allow(Rule::named("inner").subject_cn("agent")),
                    ),
            ),
        )
        .route(
            "/other-cn",
            get(matched)
                .layer(ClientCertLayer::require().allow(Rule::named("x").subject_cn("other"))),
        )
        // More admitting layers than a connection keeps verdicts for: these decide anew.
        .route(
            "/fifth",
            get(matched)
                .layer(ClientCertLayer::require().allow(Rule::named("fifth").subject_cn("agent"))),
        )
        .route(
            "/sixth",
            get(matched).layer(
                ClientCertLayer::require().allow(Rule::named("sixth").subject_o("Steadybit")),
            ),
        );
    let server =
        TestServer::start_service(Some(MtlsAcceptor::new(pki.required_config())), app).await;
    let agent = pki.ca.issue(&LeafSpec::client("agent").org("Steadybit"));
    for connection in connections(&pki, &agent, server.addr).await {
        for _ in 0..3 {
            for (path, status, body) in [
                ("/by-subject", 200, "hello agent"),
                ("/other-cn", 403, ""),
                ("/by-org", 200, "hello agent"),
                ("/by-issuer", 403, ""),
                ("/nested", 200, "inner"),
                ("/fifth", 200, "fifth"),
                ("/sixth", 200, "sixth"),
            ] {
                let response = connection.get(path).await.expect("response");
                assert_eq!(response.status(), status, "{path}");
                if status == 200 {
                    assert_eq!(response.body().as_ref(), body.as_bytes(), "{path}");
                }
            }
        }
    }
    server.stop().await;
}

/// A rule with a predicate is asked on every request: what it reads besides the certificate
/// (a deny list here) can change while a connection stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_predicate_is_asked_again_on_every_request_of_a_connection() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let pki = Pki::new();
    let denied = Arc::new(AtomicBool::new(false));
    let rule = {
        let denied = denied.clone();
        Rule::named("not denied")
            .subject_cn("agent")
            .predicate(move |_| !denied.load(Ordering::SeqCst))
    };
    let app = Router::new().route(
        "/",
        get(matched).layer(ClientCertLayer::require().allow(rule)),
    );
    let server =
        TestServer::start_service(Some(MtlsAcceptor::new(pki.required_config())), app).await;
    let agent = pki.ca.client("agent");
    for connection in connections(&pki, &agent, server.addr).await {
        denied.store(false, Ordering::SeqCst);
        let response = connection.get("/").await.expect("response");
        assert_eq!(response.status(), 200);
        assert_eq!(response.body().as_ref(), b"not denied");
        denied.store(true, Ordering::SeqCst);
        assert_eq!(connection.get("/").await.expect("response").status(), 403);
        denied.store(false, Ordering::SeqCst);
        assert_eq!(connection.get("/").await.expect("response").status(), 200);
    }
    server.stop().await;
}
