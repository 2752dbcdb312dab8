//! Memory that a long-running server keeps: after a warm-up, connections that come and go —
//! full and resumed handshakes, HTTP/1.1 and HTTP/2, requests through a `ClientCertLayer`,
//! refused clients, a reload of the server identity between them — leave no heap behind.
//!
//! The soak (BENCHMARKS.md) saw resident memory creep by ≈ 50 bytes per handshake; RSS cannot
//! tell a leak from allocator fragmentation. This binary counts the live heap itself (dhat's
//! counting global allocator, both ends in one process) between two batches of the same work:
//! the allocations live and their bytes.

use std::time::Duration;

use tower::ServiceBuilder;
use tower_mtls::policy::Rule;
use tower_mtls::tls::ReloadOutcome;
use tower_mtls::{ClientCertLayer, MtlsAcceptor, MtlsServer};
use tower_mtls_test_kit::{PATIENCE, Pki, whoami};

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

/// Connections the test makes per round: one of each kind.
const PER_ROUND: usize = 3;
/// Rounds before the first count: every pool, cache and table reaches its working size.
const WARM_UP: usize = 200;
/// Rounds between the two counts.
const ROUNDS: usize = 900;
/// What the live heap may differ by after the same work: nothing, measured (the reload every
/// round gives each round a fresh session cache, so even rustls's cache table, which doubles
/// once in a long-lived cache, keeps its size). Room is left for a buffer that grows late; a
/// leak of 8 bytes per connection does not fit.
const SLACK: usize = 16 * 1024;
/// The same for the number of live allocations: a leak of anything per connection shows here
/// first.
const SLACK_BLOCKS: usize = 16;

#[tokio::test(flavor = "current_thread")]
async fn connections_that_come_and_go_leave_no_heap_behind() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let pki = Pki::new();
    let agent = pki.ca.client("agent");
    let stranger = tower_mtls_test_kit::Ca::new("stranger CA").client("agent");
    let config = pki.required_config();
    let server = MtlsServer::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .tls(MtlsAcceptor::new(config.clone()));
    // Two server identities, swapped in by a reload every round (as the soak rotates).
    let identities = [pki.server.clone(), pki.ca.server()];
    let handle = server.handle();
    let addr = match server.local_addr().expect("addr") {
        tower_mtls::serve::ListenAddr::Tcp(addr) => addr,
        other => panic!("not TCP: {other}"),
    };
    let app = ServiceBuilder::new()
        .layer(ClientCertLayer::require().allow(Rule::new().subject_cn("agent")))
        .service_fn(whoami);
    let serving = tokio::spawn(server.serve(app));

    // Full handshakes over HTTP/1.1, two requests each.
    let full = pki
        .client_builder(Some(&agent))
        .alpn_protocols(vec![b"http/1.1".to_vec()])
        .no_resumption()
        .build()
        .expect("client");
    // Resumed handshakes (after the first) over HTTP/2.
    let resumed = pki.client_alpn(Some(&agent), b"h2");
    // A client of a CA the server does not trust: refused in the handshake.
    let refused = pki.client(Some(&stranger));

    let rounds = |n: usize| {
        let (full, resumed, refused) = (full.clone(), resumed.clone(), refused.clone());
        let (handle, config, identities) = (handle.clone(), config.clone(), identities.clone());
        let (cert, key) = (pki.server_cert.clone(), pki.server_key.clone());
        async move {
            for round in 0..n {
                let next = &identities[(round + 1) % 2];
                std::fs::write(&cert, &next.chain_pem).expect("write the server certificate");
                std::fs::write(&key, &next.key_pem).expect("write the server key");
                assert!(
                    matches!(config.reload().await, ReloadOutcome::Applied(_)),
                    "the rotated server identity is applied"
                );

                let conn = full
                    .connect(addr, "localhost")
                    .await
                    .expect("full handshake");
                assert_eq!(conn.get("/").await.expect("request").status(), 200);
                assert_eq!(conn.get("/again").await.expect("request").status(), 200);
                assert!(conn.close().await, "the client's HTTP/1.1 task ends");

                let conn = resumed.connect(addr, "localhost").await.expect("h2");
                assert_eq!(conn.get("/").await.expect("h2 request").status(), 200);
                assert!(conn.close().await, "the client's HTTP/2 task ends");

                refused
                    .get(addr, "localhost", "/")
                    .await
                    .expect_err("an unknown CA's client is refused");
            }
            // Every connection has ended on the server's side too (a condition polled, with
            // a deadline: the server's tasks end when they next run).
            tokio::time::timeout(PATIENCE, async {
                while handle.open_connections() > 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await
            .expect("the server ends every connection");
        }
    };

    rounds(WARM_UP).await;
    let warm = dhat::HeapStats::get();
    rounds(ROUNDS).await;
    let end = dhat::HeapStats::get();
    let connections = ROUNDS * PER_ROUND;
    eprintln!(
        "live heap after the warm-up: {} bytes in {} blocks; after {connections} more \
         connections: {} bytes in {} blocks",
        warm.curr_bytes, warm.curr_blocks, end.curr_bytes, end.curr_blocks
    );
    assert!(
        end.curr_blocks <= warm.curr_blocks + SLACK_BLOCKS,
        "{connections} connections left {} allocations on the heap",
        end.curr_blocks - warm.curr_blocks
    );
    assert!(
        end.curr_bytes <= warm.curr_bytes + SLACK,
        "{connections} connections left {} bytes on the heap ({:.1} per connection)",
        end.curr_bytes - warm.curr_bytes,
        (end.curr_bytes - warm.curr_bytes) as f64 / connections as f64
    );
    handle.graceful_shutdown();
    tokio::time::timeout(PATIENCE, serving)
        .await
        .expect("the server stops")
        .expect("task")
        .expect("serve");
}
