//! `ClientCertLayer` composes with tower-http's layers, around it and inside it, the way an
//! application stacks them: tracing, timeouts (which need a `Default` response body), gzip
//! compression, request ids. Real server on loopback, the test kit's client, real gzip.

use tower_mtls::Rule;
use tower_mtls_test_kit as support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use support::*;
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tower_mtls::{ClientCertLayer, MtlsAcceptor};

/// Sequential request ids.
#[derive(Clone, Default)]
struct Counter(std::sync::Arc<AtomicU64>);

impl MakeRequestId for Counter {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let n = self.0.fetch_add(1, Ordering::Relaxed) + 1;
        HeaderValue::from_str(&format!("req-{n}"))
            .ok()
            .map(RequestId::new)
    }
}

/// A compressible answer, or a slow one on `/slow`.
async fn handler(
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    if request.uri().path() == "/slow" {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    Ok(Response::new(Full::new(Bytes::from(
        "tower-mtls ".repeat(200),
    ))))
}

async fn request(pki: &Pki, server: &TestServer, leaf: &Leaf, path: &str) -> Response<Bytes> {
    let connection = pki
        .client(Some(leaf))
        .connect(server.addr, "localhost")
        .await
        .expect("handshake");
    let request = Request::get(path)
        .header("host", "localhost")
        .header("accept-encoding", "gzip")
        .body(Full::new(Bytes::new()))
        .expect("request");
    connection.send(request).await.expect("response")
}

/// Checks one stack: an allowed client gets a gzip body and its request id, a denied one a 403
/// that still carries the request id, a slow route a 408 from the timeout layer.
async fn check(pki: &Pki, server: &TestServer) {
    let agent = pki.ca.client("steadybit-agent");
    let stranger = pki.ca.client("someone-else");

    let ok = request(pki, server, &agent, "/").await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(
        ok.headers()["content-encoding"],
        "gzip",
        "{:?}",
        ok.headers()
    );
    assert!(
        ok.headers()["x-request-id"]
            .to_str()
            .is_ok_and(|id| id.starts_with("req-"))
    );
    let mut plain = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(ok.body().as_ref()),
        &mut plain,
    )
    .expect("gzip");
    assert_eq!(plain, "tower-mtls ".repeat(200));

    let denied = request(pki, server, &stranger, "/").await;
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    assert!(
        denied.headers().contains_key("x-request-id"),
        "{:?}",
        denied.headers()
    );

    let slow = request(pki, server, &agent, "/slow").await;
    assert_eq!(slow.status(), StatusCode::REQUEST_TIMEOUT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tower_http_layers_around_the_policy() {
    let pki = Pki::new();
    let tls = pki.required_config();
    let service = ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(Counter::default()))
        .layer(TraceLayer::new_for_http())
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(CompressionLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_millis(200),
        ))
        .layer(ClientCertLayer::require().allow(Rule::new().subject_cn("steadybit-agent")))
        .service_fn(handler);
    let server = TestServer::start_service(Some(MtlsAcceptor::new(tls)), service).await;
    check(&pki, &server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tower_http_layers_inside_the_policy() {
    let pki = Pki::new();
    let tls = pki.required_config();
    let service = ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(Counter::default()))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(ClientCertLayer::require().allow(Rule::new().subject_cn("steadybit-agent")))
        .layer(TraceLayer::new_for_http())
        .layer(CompressionLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_millis(200),
        ))
        .service_fn(handler);
    let server = TestServer::start_service(Some(MtlsAcceptor::new(tls)), service).await;
    check(&pki, &server).await;
    server.stop().await;
}
