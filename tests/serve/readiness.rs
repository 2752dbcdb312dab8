//! Services that are not ready at once, or fail to become ready, behind `MtlsServer`: the
//! server calls a ready service in place and hands one that is not to a future that waits
//! for it — without leaving a place in the service's queue to nobody.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use tokio::sync::Notify;
use tower::ServiceBuilder;
use tower::limit::ConcurrencyLimitLayer;
use tower_mtls::MtlsAcceptor;
use tower_mtls_test_kit::{PATIENCE, Pki, TestServer};

type Response = http::Response<Full<Bytes>>;

/// A concurrency limit of one, shared by every connection: the second client's request waits
/// for the first to finish, then is served — and so is every request after it. A readiness
/// check that registered a waiter nobody polls would hand it the freed permit and stall them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_at_its_limit_serves_the_waiting_request_when_a_slot_frees() {
    let pki = Pki::new();
    let agent = pki.ca.client("agent");
    let entered = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let first = Arc::new(AtomicBool::new(true));
    let queued = Arc::new(Notify::new());
    let app = {
        let (entered, release, first) = (entered.clone(), release.clone(), first.clone());
        let queued = queued.clone();
        ServiceBuilder::new()
            .layer_fn(move |inner| Probe {
                inner,
                queued: queued.clone(),
            })
            .layer(ConcurrencyLimitLayer::new(1))
            .service_fn(move |_req: http::Request<hyper::body::Incoming>| {
                let (entered, release, first) = (entered.clone(), release.clone(), first.clone());
                async move {
                    if first.swap(false, Ordering::SeqCst) {
                        entered.notify_one();
                        release.notified().await;
                    }
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("done"))))
                }
            })
    };
    let server =
        TestServer::start_service(Some(MtlsAcceptor::new(pki.required_config())), app).await;

    let one = pki.client(Some(&agent));
    let addr = server.addr;
    let holding = tokio::spawn(async move { one.get(addr, "localhost", "/").await });
    tokio::time::timeout(PATIENCE, entered.notified())
        .await
        .expect("the first request holds the only slot");

    // The second client's request cannot be served yet: the limit is reached.
    let two = pki
        .client(Some(&agent))
        .connect(server.addr, "localhost")
        .await
        .expect("connect");
    let two = Arc::new(two);
    let waiting = {
        let two = two.clone();
        tokio::spawn(async move { two.get("/").await })
    };
    // Released only once the second request waits at the limit.
    tokio::time::timeout(PATIENCE, queued.notified())
        .await
        .expect("the second request finds the limit reached");
    release.notify_one();
    for request in [holding, waiting] {
        let response = tokio::time::timeout(PATIENCE, request)
            .await
            .expect("answered once the slot is free")
            .expect("task")
            .expect("response");
        assert_eq!(response.status(), 200);
    }
    // The slot is free for everyone: the same connection again, and a new one.
    for _ in 0..3 {
        let again = tokio::time::timeout(PATIENCE, two.get("/"))
            .await
            .expect("answered")
            .expect("response");
        assert_eq!(again.status(), 200);
        let fresh = tokio::time::timeout(
            PATIENCE,
            pki.client(Some(&agent)).get(addr, "localhost", "/"),
        )
        .await
        .expect("answered")
        .expect("response");
        assert_eq!(fresh.status(), 200);
    }
    server.stop().await;
}

/// Says when the service it wraps is not ready.
#[derive(Clone)]
struct Probe<S> {
    inner: S,
    queued: Arc<Notify>,
}

impl<S, R> tower::Service<R> for Probe<S>
where
    S: tower::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let poll = self.inner.poll_ready(cx);
        if poll.is_pending() {
            self.queued.notify_one();
        }
        poll
    }

    fn call(&mut self, req: R) -> Self::Future {
        self.inner.call(req)
    }
}

/// A service whose readiness check fails while `broken` is set.
#[derive(Clone)]
struct Fragile {
    broken: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
}

impl tower::Service<http::Request<hyper::body::Incoming>> for Fragile {
    type Response = Response;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<Response, std::io::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.broken.load(Ordering::SeqCst) {
            return Poll::Ready(Err(std::io::Error::other("backend gone")));
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: http::Request<hyper::body::Incoming>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(Response::new(Full::new(Bytes::from("ok")))))
    }
}

/// A readiness error fails that request (hyper ends the connection), promptly and without
/// calling the service; the server keeps serving, and the next connection is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readiness_error_fails_the_request_and_the_server_keeps_serving() {
    let pki = Pki::new();
    let agent = pki.ca.client("agent");
    let broken = Arc::new(AtomicBool::new(true));
    let calls = Arc::new(AtomicUsize::new(0));
    let app = Fragile {
        broken: broken.clone(),
        calls: calls.clone(),
    };
    let server =
        TestServer::start_service(Some(MtlsAcceptor::new(pki.required_config())), app).await;

    // HTTP/1.1: hyper ends the connection at once (an HTTP/2 stream is reset and the
    // connection lives on, which the kit's client would wait out).
    let failed = tokio::time::timeout(
        PATIENCE,
        pki.client_alpn(Some(&agent), b"http/1.1")
            .get(server.addr, "localhost", "/"),
    )
    .await
    .expect("an answer or an error, not a hang");
    assert!(
        failed.is_err(),
        "the request of a service that cannot become ready fails: {failed:?}"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "never called while not ready"
    );

    broken.store(false, Ordering::SeqCst);
    let ok = tokio::time::timeout(
        PATIENCE,
        pki.client(Some(&agent)).get(server.addr, "localhost", "/"),
    )
    .await
    .expect("answered")
    .expect("response");
    assert_eq!(ok.status(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    server.stop().await;
}

/// Twenty HTTP/2 streams of one connection against a concurrency limit of one: each waits
/// with its own place in line, and all are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_of_one_connection_at_a_limit_of_one_are_all_served() {
    let pki = Pki::new();
    let agent = pki.ca.client("agent");
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let app = {
        let (in_flight, most) = (in_flight.clone(), most.clone());
        ServiceBuilder::new()
            .layer(ConcurrencyLimitLayer::new(1))
            .service_fn(move |_req: http::Request<hyper::body::Incoming>| {
                let (in_flight, most) = (in_flight.clone(), most.clone());
                async move {
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    // Long enough for the other streams to queue behind this one.
                    tokio::task::yield_now().await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("ok"))))
                }
            })
    };
    let server =
        TestServer::start_service(Some(MtlsAcceptor::new(pki.required_config())), app).await;
    let connection = pki
        .client_alpn(Some(&agent), b"h2")
        .connect(server.addr, "localhost")
        .await
        .expect("connect");
    let connection = Arc::new(connection);
    let mut streams = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let connection = connection.clone();
        streams.spawn(async move { connection.get("/").await.expect("response").status() });
    }
    let answered = tokio::time::timeout(PATIENCE, async {
        let mut statuses = Vec::new();
        while let Some(status) = streams.join_next().await {
            statuses.push(status.expect("task"));
        }
        statuses
    })
    .await
    .expect("every stream answered");
    assert_eq!(answered.len(), 20);
    assert!(answered.iter().all(|s| *s == 200), "{answered:?}");
    assert_eq!(most.load(Ordering::SeqCst), 1, "the limit held");
    server.stop().await;
}
