//! Hostile and broken clients: each gets a defined outcome and its class, and the server keeps
//! serving everyone else. Bounded in time and count, loopback only.

use tower_mtls_test_kit as support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_mtls::rustls::AlertDescription;
use tower_mtls::{MtlsAcceptor, MtlsServer, tls::HandshakeFailure};

/// Waits until the acceptor has counted `n` failures of `kind` (state, not time).
async fn failures_reach(acceptor: &MtlsAcceptor, kind: HandshakeFailure, n: u64) {
    let wait = async {
        while acceptor.stats().failures(kind) < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    if tokio::time::timeout(PATIENCE, wait).await.is_err() {
        panic!("expected {n} × {kind}, stats: {}", acceptor.stats());
    }
}

async fn still_serving(pki: &Pki, server: &TestServer) {
    let ok = pki
        .client(Some(&pki.ca.client("legit")))
        .get(server.addr, "localhost", "/")
        .await
        .expect("a legitimate client is still served");
    assert_eq!(ok.status(), 200);
}

/// Sends `bytes`, then reads until the server closes; returns what it answered.
async fn poke(server: &TestServer, bytes: &[u8], close_after_send: bool) -> Vec<u8> {
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream.write_all(bytes).await.expect("send");
    if close_after_send {
        stream.shutdown().await.expect("half-close");
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("server closes");
    answer
}

/// A syntactically complete TLS record whose ClientHello body is garbage.
fn malformed_client_hello() -> Vec<u8> {
    let body = [0x01, 0x00, 0x00, 0x04, 0x03, 0x03, 0xff, 0xff];
    let mut record = vec![0x16, 0x03, 0x01, 0x00, body.len() as u8];
    record.extend_from_slice(&body);
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_tls_and_broken_hellos_are_classified_and_the_server_keeps_serving() {
    init_tracing();
    let pki = Pki::new();
    let acceptor = MtlsAcceptor::new(pki.required_config());
    let server = TestServer::start(acceptor.clone()).await;

    // Random bytes.
    let answer = poke(&server, &[0x00, 0xff, 0x13, 0x37, 0x42], true).await;
    assert!(answer.is_empty());
    failures_reach(&acceptor, HandshakeFailure::NotTls, 1).await;
    still_serving(&pki, &server).await;

    // Plain HTTP: a short 400 that says why.
    let answer = poke(&server, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", false).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 400 Bad Request"), "{text}");
    assert!(text.contains("HTTPS"), "{text}");
    failures_reach(&acceptor, HandshakeFailure::PlainHttp, 1).await;

    // An SSLv2-style ClientHello (two-byte header with the high bit set).
    let sslv2 = [
        0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10,
    ];
    poke(&server, &sslv2, true).await;
    failures_reach(&acceptor, HandshakeFailure::NotTls, 2).await;
    still_serving(&pki, &server).await;

    // A ClientHello cut off mid-record, then the client hangs up.
    poke(
        &server,
        &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01],
        true,
    )
    .await;
    failures_reach(&acceptor, HandshakeFailure::PeerClosed, 1).await;

    // A complete record holding a malformed ClientHello: a TLS alert, then close.
    let answer = poke(&server, &malformed_client_hello(), false).await;
    assert_eq!(
        answer.first(),
        Some(&0x15),
        "expected an alert record, got {answer:02x?}"
    );
    failures_reach(&acceptor, HandshakeFailure::Protocol, 1).await;

    // A client that offers only TLS 1.1.
    let (ok, text) = s_client(
        server.port(),
        &pki.ca_path,
        None,
        &["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"],
    )
    .await;
    assert!(!ok, "{text}");
    failures_reach(&acceptor, HandshakeFailure::ProtocolVersion, 1).await;

    still_serving(&pki, &server).await;
    server.stop().await;
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_silent_and_a_thousand_dribbling_clients_do_not_lock_out_a_real_one() {
    let pki = Pki::new();
    // A deadline far beyond the test: if the real client had to wait for the others, the
    // test would time out long before they were dropped.
    let acceptor =
        MtlsAcceptor::new(pki.required_config()).handshake_timeout(Duration::from_secs(600));
    let server = TestServer::start(acceptor.clone()).await;
    let before = rss_kib();

    let mut held = Vec::with_capacity(2000);
    for i in 0..2000 {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        if i % 2 == 1 {
            // The first bytes of a ClientHello, and no more.
            stream
                .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])
                .await
                .expect("dribble");
        }
        held.push(stream);
    }
    let wait = async {
        while acceptor.stats().handshakes_in_progress < 2000 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .expect("all 2000 reach the acceptor");

    let served = tokio::time::timeout(PATIENCE, still_serving(&pki, &server)).await;
    assert!(
        served.is_ok(),
        "the real client was not served while 2000 others stalled"
    );
    let grown = rss_kib().saturating_sub(before);
    // Sockets, tasks and 2 KiB first-read buffers on both sides of 2000 connections.
    assert!(
        grown < 128 * 1024,
        "memory grew by {grown} KiB for 2000 stalled connections"
    );
    assert_eq!(acceptor.stats().handshakes_in_progress, 2000);
    drop(held);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_dribbling_clients_are_closed_at_the_deadline() {
    let pki = Pki::new();
    let acceptor =
        MtlsAcceptor::new(pki.required_config()).handshake_timeout(Duration::from_secs(1));
    let server = TestServer::start(acceptor.clone()).await;
    let mut stalled = Vec::new();
    for i in 0..2000 {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        if i % 2 == 1 {
            stream
                .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
                .await
                .expect("dribble");
        }
        stalled.push(stream);
    }
    for mut stream in stalled {
        let mut buf = [0u8; 8];
        let read = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
            .await
            .expect("closed in time");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    failures_reach(&acceptor, HandshakeFailure::Timeout, 2000).await;
    assert_eq!(acceptor.stats().handshakes_in_progress, 0);
    still_serving(&pki, &server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn established_connections_stay_responsive_while_the_caps_are_hit() {
    let pki = Pki::new();
    let acceptor = MtlsAcceptor::new(pki.required_config())
        .handshake_timeout(Duration::from_millis(500))
        .max_concurrent_handshakes(2);
    let server = MtlsServer::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .max_connections(8);
    let server = TestServer::spawn(server, Some(acceptor.clone()), tower::service_fn(whoami));
    let client = pki.client(Some(&pki.ca.client("keeper")));
    let established = client
        .connect(server.addr, "localhost")
        .await
        .expect("connect");

    // Fill every connection slot with clients that start a handshake and stall.
    let mut stalled = Vec::new();
    for _ in 0..16 {
        let mut s = TcpStream::connect(server.addr)
            .await
            .expect("connect (backlog)");
        let _ = s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).await;
        stalled.push(s);
    }
    for i in 0..10 {
        let r = established
            .get(&format!("/still/{i}"))
            .await
            .expect("established connection answers");
        assert_eq!(r.status(), 200);
    }
    assert!(
        acceptor.stats().handshakes_in_progress >= 2,
        "{}",
        acceptor.stats()
    );
    // Once the stalled clients are gone, new clients get in again.
    drop(stalled);
    let fresh =
        tokio::time::timeout(PATIENCE, client.get(server.addr, "localhost", "/fresh")).await;
    assert_eq!(
        fresh
            .expect("in time")
            .expect("served after the cap clears")
            .status(),
        200
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_client_chains_get_their_class() {
    let pki = Pki::new();
    let intermediate = pki.ca.intermediate("Issuing CA");
    let tls = pki
        .mtls_builder()
        .max_client_chain(4, 1200)
        .build()
        .expect("config");
    let acceptor = MtlsAcceptor::new(tls);
    let server = TestServer::start(acceptor.clone()).await;
    let refuse = |leaf: Leaf| {
        let (pki, addr) = (&pki, server.addr);
        async move { refusal_alert(pki, Some(&leaf), addr).await }
    };

    // A normal two-certificate chain fits.
    let ok = intermediate.issue_with_chain(&LeafSpec::client("via-intermediate"));
    let r = pki
        .client(Some(&ok))
        .get(server.addr, "localhost", "/")
        .await
        .expect("chain ok");
    assert_eq!(r.status(), 200);

    // More certificates than the cap (the leaf plus four appended copies of the CA).
    let mut long = pki.ca.client("long-chain");
    long.chain_pem = format!("{}{}", long.cert_pem, pki.ca.cert_pem.repeat(4));
    assert!(refuse(long).await.is_some());
    failures_reach(&acceptor, HandshakeFailure::ChainTooLarge, 1).await;

    // More bytes than the cap.
    let mut heavy = intermediate.issue_with_chain(&LeafSpec::client("heavy").alg(Alg::Rsa2048));
    heavy.chain_pem = format!("{}{}", heavy.chain_pem, intermediate.cert_pem);
    assert!(refuse(heavy).await.is_some());
    failures_reach(&acceptor, HandshakeFailure::ChainTooLarge, 2).await;

    // A CA certificate presented as the client's own.
    let sub_ca = pki.ca.issue(&LeafSpec::client("sub-ca").ca());
    assert!(refuse(sub_ca).await.is_some());
    failures_reach(&acceptor, HandshakeFailure::WrongKeyUsage, 1).await;

    // A certificate for servers only.
    let server_only = pki.ca.issue(
        &LeafSpec::client("server-only").eku(vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth]),
    );
    assert!(refuse(server_only).await.is_some());
    failures_reach(&acceptor, HandshakeFailure::WrongKeyUsage, 2).await;

    // Not valid yet, expired, unknown CA.
    assert_eq!(
        refuse(pki.ca.issue(&LeafSpec::client("early").not_yet_valid())).await,
        Some(AlertDescription::CertificateExpired)
    );
    failures_reach(&acceptor, HandshakeFailure::NotYetValid, 1).await;
    refuse(pki.ca.issue(&LeafSpec::client("late").expired())).await;
    failures_reach(&acceptor, HandshakeFailure::Expired, 1).await;
    refuse(Ca::new("Elsewhere").client("stranger")).await;
    failures_reach(&acceptor, HandshakeFailure::UnknownCa, 1).await;

    // Issued by a CA with the trusted CA's name but another key: an unknown CA.
    assert_eq!(
        refuse(Ca::new("Test Root CA").client("same-name")).await,
        Some(AlertDescription::UnknownCA)
    );
    failures_reach(&acceptor, HandshakeFailure::UnknownCa, 2).await;

    // Claims the trusted key (authorityKeyIdentifier) but its signature does not verify.
    refuse(pki.ca.client("tampered").with_corrupted_signature()).await;
    failures_reach(&acceptor, HandshakeFailure::BadSignature, 1).await;

    // No certificate at all.
    let err = pki
        .client(None)
        .get(server.addr, "localhost", "/")
        .await
        .expect_err("refused");
    assert_eq!(err.alert(), Some(AlertDescription::CertificateRequired));
    failures_reach(&acceptor, HandshakeFailure::NoClientCertificate, 1).await;

    still_serving(&pki, &server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_can_be_switched_off() {
    let pki = Pki::new();
    let tls = pki.mtls_builder().tls12(false).build().expect("config");
    let acceptor = MtlsAcceptor::new(tls);
    let server = TestServer::start(acceptor.clone()).await;
    let (cert, key) = pki.write_leaf(&pki.ca.client("old-client"), "old");
    let (ok, text) = s_client(
        server.port(),
        &pki.ca_path,
        Some((&cert, &key)),
        &["-tls1_2"],
    )
    .await;
    assert!(!ok, "{text}");
    failures_reach(&acceptor, HandshakeFailure::ProtocolVersion, 1).await;
    let (ok, text) = s_client(
        server.port(),
        &pki.ca_path,
        Some((&cert, &key)),
        &["-tls1_3"],
    )
    .await;
    assert!(ok, "{text}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_request_head_is_closed() {
    use tower_mtls::rustls;
    let pki = Pki::new();
    let server = MtlsServer::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .header_read_timeout(Some(Duration::from_millis(300)));
    let server = TestServer::spawn(
        server,
        Some(MtlsAcceptor::new(pki.required_config())),
        tower::service_fn(whoami),
    );

    // A real TLS session, then an HTTP/1.1 request head that never ends.
    let leaf = pki.ca.client("slowloris");
    let client = pki.client_alpn(Some(&leaf), b"http/1.1");
    let connector = tokio_rustls::TlsConnector::from(client.tls_config().clone());
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("handshake");
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .expect("write");
    tls.flush().await.expect("flush");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(PATIENCE, tls.read_to_end(&mut rest))
        .await
        .expect("closed in time");
    // hyper closes the connection (some versions answer 408 first).
    assert!(read.is_ok() || rest.is_empty(), "{read:?}");
    let text = String::from_utf8_lossy(&rest);
    assert!(
        rest.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    still_serving(&pki, &server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http1_keep_alive_connection_is_closed_at_the_header_read_timeout() {
    let pki = Pki::new();
    let server = MtlsServer::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .header_read_timeout(Some(Duration::from_millis(300)));
    let acceptor = MtlsAcceptor::new(pki.required_config());
    let server = TestServer::spawn(server, Some(acceptor.clone()), tower::service_fn(whoami));
    let leaf = pki.ca.client("idler");
    let client = pki.client_alpn(Some(&leaf), b"http/1.1");
    let conn = client
        .connect(server.addr, "localhost")
        .await
        .expect("connect");
    assert_eq!(conn.get("/").await.expect("first request").status(), 200);
    // Idle after the response: the server waits for the next head, under the same timeout.
    let closed = async {
        while acceptor.stats().active_connections > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(PATIENCE, closed)
        .await
        .expect("the idle connection is closed");
    server.stop().await;
}
