//! `ServerHandle`: one handle for the crate's server and for `MtlsListener` under
//! `axum::serve` — graceful shutdown from anywhere, open connections, stats, the address.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tower_mtls::serve::{ListenAddr, MtlsListener};
use tower_mtls::{MtlsServer, PeerExt};
use tower_mtls_test_kit::{PATIENCE, Pki};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handle_counts_a_connection_and_its_shutdown_lets_the_request_in_flight_finish() {
    let pki = Pki::new();
    let agent = pki.ca.client("agent");
    let tls = pki.required_config();
    let server = MtlsServer::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .tls(tls);
    let handle = server.handle();
    let Some(ListenAddr::Tcp(addr)) = handle.local_addr().cloned() else {
        panic!("a TCP address: {handle:?}");
    };

    // A handler that holds the request until released, then answers with the client's CN.
    let entered = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let app = {
        let (entered, release) = (entered.clone(), release.clone());
        tower::service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let (entered, release) = (entered.clone(), release.clone());
            async move {
                entered.notify_one();
                release.notified().await;
                let cn = req
                    .client_identity()
                    .and_then(|id| id.common_name().map(str::to_owned))
                    .unwrap_or_default();
                Ok::<_, std::convert::Infallible>(http::Response::new(cn))
            }
        })
    };
    let serving = tokio::spawn(server.serve(app));
    let client = pki.client(Some(&agent));
    let request = tokio::spawn(async move { client.get(addr, "localhost", "/").await });

    tokio::time::timeout(PATIENCE, entered.notified())
        .await
        .expect("request arrives");
    assert_eq!(handle.open_connections(), 1, "{handle:?}");
    assert_eq!(handle.stats().expect("TLS").handshakes_succeeded, 1);
    assert!(!handle.is_shutting_down());

    // Shutdown from a clone, elsewhere: the request in flight still gets its answer.
    let other = handle.clone();
    tokio::spawn(async move { other.graceful_shutdown() });
    tokio::time::timeout(PATIENCE, handle.shutdown_signal())
        .await
        .expect("signalled");
    assert!(handle.is_shutting_down());
    release.notify_one();
    let response = tokio::time::timeout(PATIENCE, request)
        .await
        .expect("answered in time")
        .expect("task")
        .expect("response");
    assert_eq!(response.body().as_ref(), b"agent");
    tokio::time::timeout(PATIENCE, serving)
        .await
        .expect("the server stops")
        .expect("task")
        .expect("serve");
    assert_eq!(handle.open_connections(), 0);
}

#[cfg(feature = "axum")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listeners_handle_stops_axum_serve() {
    let pki = Pki::new();
    let agent = pki.ca.client("agent");
    let tls = pki.required_config();
    let listener = MtlsListener::bind("127.0.0.1:0", tls).await.expect("bind");
    let handle = listener.handle();
    let addr = listener.local_addr().expect("addr");
    let shutdown = listener.graceful_shutdown(handle.shutdown_signal(), Duration::from_secs(5));
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "hi" }));
    let serving = tokio::spawn(async move {
        axum::serve(listener, tower_mtls::axum::make_service(app))
            .with_graceful_shutdown(shutdown)
            .await
    });
    let response = tokio::time::timeout(
        PATIENCE,
        pki.client(Some(&agent)).get(addr, "localhost", "/"),
    )
    .await
    .expect("in time")
    .expect("response");
    assert_eq!(response.body().as_ref(), b"hi");
    assert_eq!(handle.stats().expect("TLS").handshakes_succeeded, 1);

    handle.graceful_shutdown();
    tokio::time::timeout(PATIENCE, serving)
        .await
        .expect("axum::serve stops")
        .expect("task")
        .expect("serve");
}

/// The same core on a Unix socket: `MtlsListener::from_listener` takes any listener, and
/// curl's client certificate reaches the handler through `axum::serve`.
#[cfg(all(unix, feature = "axum"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_socket_listener_speaks_mutual_tls_under_axum_serve() {
    use tower_mtls::axum::ClientCert;

    let pki = Pki::new();
    let agent = pki.ca.client("agent");
    let (cert, key) = pki.write_leaf(&agent, "agent");
    let tls = pki.required_config();
    let path = pki.dir.path().join("mtls.sock");
    let unix = tokio::net::UnixListener::bind(&path).expect("bind");
    let listener = MtlsListener::from_listener(unix, tls);
    assert_eq!(
        listener.listen_addr().expect("addr"),
        ListenAddr::Unix(path.clone())
    );
    let handle = listener.handle();
    let shutdown = listener.graceful_shutdown(handle.shutdown_signal(), Duration::from_secs(5));
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(|client: ClientCert| async move {
            client.common_name().unwrap_or_default().to_owned()
        }),
    );
    let serving = tokio::spawn(async move {
        axum::serve(listener, tower_mtls::axum::make_service(app))
            .with_graceful_shutdown(shutdown)
            .await
    });

    let socket = path.to_string_lossy().into_owned();
    let out = tower_mtls_test_kit::curl_with_cert(
        &pki.ca_path,
        "https://localhost/",
        443,
        &cert,
        &key,
        &["--unix-socket", &socket],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "agent");

    handle.graceful_shutdown();
    tokio::time::timeout(PATIENCE, serving)
        .await
        .expect("axum::serve stops")
        .expect("task")
        .expect("serve");
}
