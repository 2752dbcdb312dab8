//! Mutual TLS end to end: a real server on loopback, curl, openssl s_client and the crate's
//! own client, with certificates generated per test.

use tower_mtls_test_kit as support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_mtls::{ClientAuth, MtlsAcceptor, TlsConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_client_gets_200_and_the_handler_sees_its_identity() {
    init_tracing();
    let pki = Pki::new();
    let client = pki
        .ca
        .issue(&LeafSpec::client("steadybit-agent").org("Steadybit"));
    let (cert, key) = pki.write_leaf(&client, "agent");
    let server = TestServer::start(pki.required_config()).await;

    let out = curl_with_cert(
        &pki.ca_path,
        &server.url("/hello"),
        server.port(),
        &cert,
        &key,
        &[],
    )
    .await;
    let body = json(&out);
    assert_eq!(body["path"], "/hello");
    assert_eq!(body["peer"], true);
    assert_eq!(body["cn"], "steadybit-agent");
    assert_eq!(body["subject"], "O=Steadybit,CN=steadybit-agent");
    assert_eq!(body["issuer"], "O=tower-mtls tests,CN=Test Root CA");
    assert_eq!(body["sni"], "localhost");
    assert!(
        body["remote"]
            .as_str()
            .is_some_and(|r| r.starts_with("127.0.0.1:"))
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_clients_fail_the_handshake_and_the_server_keeps_serving() {
    init_tracing();
    let pki = Pki::new();
    let good = pki.ca.client("good");
    let (good_cert, good_key) = pki.write_leaf(&good, "good");
    let rogue_ca = Ca::new("Rogue CA");
    let (rogue_cert, rogue_key) = pki.write_leaf(&rogue_ca.client("good"), "rogue");
    let (expired_cert, expired_key) =
        pki.write_leaf(&pki.ca.issue(&LeafSpec::client("old").expired()), "expired");
    let (future_cert, future_key) = pki.write_leaf(
        &pki.ca.issue(&LeafSpec::client("future").not_yet_valid()),
        "future",
    );
    let server = TestServer::start(pki.required_config()).await;
    let url = server.url("/");

    let no_cert = curl(&pki.ca_path, &url, server.port(), &[]).await;
    assert!(!no_cert.status.success(), "no certificate must fail");
    let stderr = String::from_utf8_lossy(&no_cert.stderr);
    assert!(stderr.contains("certificate required"), "curl: {stderr}");
    assert!(
        json(
            &curl_with_cert(
                &pki.ca_path,
                &url,
                server.port(),
                &good_cert,
                &good_key,
                &[]
            )
            .await
        )["peer"]
            == true
    );

    let rogue = curl_with_cert(
        &pki.ca_path,
        &url,
        server.port(),
        &rogue_cert,
        &rogue_key,
        &[],
    )
    .await;
    assert!(!rogue.status.success(), "untrusted CA must fail");
    assert!(
        String::from_utf8_lossy(&rogue.stderr).contains("unknown ca"),
        "{:?}",
        rogue
    );
    assert!(
        json(
            &curl_with_cert(
                &pki.ca_path,
                &url,
                server.port(),
                &good_cert,
                &good_key,
                &[]
            )
            .await
        )["peer"]
            == true
    );

    let expired = curl_with_cert(
        &pki.ca_path,
        &url,
        server.port(),
        &expired_cert,
        &expired_key,
        &[],
    )
    .await;
    assert!(!expired.status.success(), "expired must fail");
    assert!(
        String::from_utf8_lossy(&expired.stderr).contains("certificate expired"),
        "{:?}",
        expired
    );

    let future = curl_with_cert(
        &pki.ca_path,
        &url,
        server.port(),
        &future_cert,
        &future_key,
        &[],
    )
    .await;
    assert!(!future.status.success(), "not yet valid must fail");

    let body = json(
        &curl_with_cert(
            &pki.ca_path,
            &url,
            server.port(),
            &good_cert,
            &good_key,
            &[],
        )
        .await,
    );
    assert_eq!(body["cn"], "good");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crate_client_sees_the_matching_alerts() {
    use tower_mtls::rustls::AlertDescription;
    let pki = Pki::new();
    let server = TestServer::start(pki.required_config()).await;
    let alert_for = |leaf: Option<Leaf>| {
        let (pki, addr) = (&pki, server.addr);
        async move { refusal_alert(pki, leaf.as_ref(), addr).await }
    };
    assert_eq!(
        alert_for(None).await,
        Some(AlertDescription::CertificateRequired)
    );
    assert_eq!(
        alert_for(Some(Ca::new("Rogue").client("x"))).await,
        Some(AlertDescription::UnknownCA)
    );
    assert_eq!(
        alert_for(Some(pki.ca.issue(&LeafSpec::client("old").expired()))).await,
        Some(AlertDescription::CertificateExpired)
    );
    // A leaf that is only for servers cannot authenticate a client.
    let server_only = pki.ca.issue(
        &LeafSpec::client("server-only").eku(vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth]),
    );
    assert!(alert_for(Some(server_only)).await.is_some());
    let ok = pki
        .client(Some(&pki.ca.client("fine")))
        .get(server.addr, "localhost", "/")
        .await
        .expect("trusted client");
    assert_eq!(ok.status(), 200);
    server.stop().await;
}

/// A client presenting `cert` but signing with a key that does not belong to it.
fn impostor(pki: &Pki, cert: &Leaf) -> tower_mtls_test_kit::client::Client {
    raw_client(
        pki,
        &cert.cert_pem,
        &Alg::EcdsaP256.generate().serialize_pem(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_signed_by_the_wrong_key_is_rejected() {
    // The certificate is a trusted one, but the client does not hold its key: the handshake
    // signature does not verify.
    let pki = Pki::new();
    let real = pki.ca.client("agent");
    let server = TestServer::start(pki.required_config()).await;
    let err = impostor(&pki, &real)
        .get(server.addr, "localhost", "/")
        .await
        .expect_err("wrong key must fail");
    assert_eq!(
        err.alert(),
        Some(tower_mtls::rustls::AlertDescription::DecryptError),
        "{err}"
    );
    // The pinned-leaf path proves possession too.
    let pinned = TestServer::start(
        pki.builder()
            .client_trust_pem(real.cert_pem.clone())
            .build()
            .expect("config"),
    )
    .await;
    let err = impostor(&pki, &real)
        .get(pinned.addr, "localhost", "/")
        .await
        .expect_err("wrong key must fail for a pinned leaf");
    assert_eq!(
        err.alert(),
        Some(tower_mtls::rustls::AlertDescription::DecryptError),
        "{err}"
    );
    let ok = pki
        .client(Some(&real))
        .get(pinned.addr, "localhost", "/")
        .await
        .expect("real key");
    assert_eq!(ok.status(), 200);
    server.stop().await;
    pinned.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_the_tls_port_is_not_served() {
    let pki = Pki::new();
    let server = TestServer::start(pki.required_config()).await;
    let out = curl(
        &pki.ca_path,
        &format!("http://localhost:{}/", server.port()),
        server.port(),
        &["--include"],
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 400"), "got: {text}");
    assert!(text.contains("HTTPS"), "got: {text}");
    let good = pki.ca.client("good");
    let ok = pki
        .client(Some(&good))
        .get(server.addr, "localhost", "/")
        .await
        .expect("still serving");
    assert_eq!(ok.status(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_case_the_clients_own_leaf_as_trust_is_accepted() {
    // The chart passes the client secret's tls.crt: the agent's own leaf, from a CA the
    // extension does not trust.
    let pki = Pki::new();
    let agent_ca = Ca::new("Agent CA");
    let agent = agent_ca.client("steadybit-agent");
    let sibling = agent_ca.client("steadybit-agent");
    let (agent_cert, agent_key) = pki.write_leaf(&agent, "agent");
    let (sibling_cert, sibling_key) = pki.write_leaf(&sibling, "sibling");
    let tls = pki
        .builder()
        .client_trust(&agent_cert)
        .build()
        .expect("config");
    assert_eq!(tls.trust_summary().pinned, 1);
    assert_eq!(tls.trust_summary().anchors, 0);
    let server = TestServer::start(tls).await;

    let body = json(
        &curl_with_cert(
            &pki.ca_path,
            &server.url("/"),
            server.port(),
            &agent_cert,
            &agent_key,
            &[],
        )
        .await,
    );
    assert_eq!(body["cn"], "steadybit-agent");
    // Pinning is exact: another certificate of the same (untrusted) CA is refused.
    let sibling_out = curl_with_cert(
        &pki.ca_path,
        &server.url("/"),
        server.port(),
        &sibling_cert,
        &sibling_key,
        &[],
    )
    .await;
    assert!(!sibling_out.status.success());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_leaves_are_checked_for_validity_and_ca_certificates_are_not_clients() {
    let pki = Pki::new();
    let expired = pki.ca.issue(&LeafSpec::client("old").expired());
    // A CA certificate with its key, presented as a client's own certificate.
    let ca_as_client = LeafSpec::client("sneaky-ca").ca().self_signed();
    let tls = pki
        .builder()
        .client_trust_pem(expired.cert_pem.clone())
        .client_trust_pem(ca_as_client.cert_pem.clone())
        .build()
        .expect("config");
    assert_eq!(tls.trust_summary().pinned, 1);
    assert_eq!(tls.trust_summary().anchors, 1);
    let server = TestServer::start(tls).await;
    let err = pki
        .client(Some(&expired))
        .get(server.addr, "localhost", "/")
        .await
        .expect_err("expired pin");
    assert_eq!(
        err.alert(),
        Some(tower_mtls::rustls::AlertDescription::CertificateExpired)
    );
    let err = pki
        .client(Some(&ca_as_client))
        .get(server.addr, "localhost", "/")
        .await
        .expect_err("CA as client");
    assert!(err.alert().is_some(), "{err}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_trust_sources_from_different_cas_accept_both_clients() {
    let pki = Pki::new();
    let ca_a = Ca::with_alg("CA A", Alg::EcdsaP384);
    let ca_b = Ca::with_alg("CA B", Alg::Rsa2048);
    let a_path = ca_a.write(pki.dir.path(), "a.crt");
    let b_path = ca_b.write(pki.dir.path(), "b.crt");
    let tls = pki
        .builder()
        .client_trust(&a_path)
        .client_trust(&b_path)
        .build()
        .expect("config");
    assert_eq!(tls.trust_summary().anchors, 2);
    let server = TestServer::start(tls).await;
    for (ca, name) in [(&ca_a, "alice"), (&ca_b, "bob")] {
        let (cert, key) = pki.write_leaf(&ca.client(name), name);
        let body = json(
            &curl_with_cert(
                &pki.ca_path,
                &server.url("/"),
                server.port(),
                &cert,
                &key,
                &[],
            )
            .await,
        );
        assert_eq!(body["cn"], name);
    }
    // The server's own CA is not among the client trust.
    let (cert, key) = pki.write_leaf(&pki.ca.client("carol"), "carol");
    assert!(
        !curl_with_cert(
            &pki.ca_path,
            &server.url("/"),
            server.port(),
            &cert,
            &key,
            &[]
        )
        .await
        .status
        .success()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trust_directory_laid_out_like_a_mounted_secret_works() {
    let pki = Pki::new();
    let agent_ca = Ca::new("Agent CA");
    let agent = agent_ca.client("agent");
    let secret = pki.path("agent-cert");
    // A TLS secret with ca.crt: the CA and the agent's own certificate and key.
    pki::write_secret_dir(
        &secret,
        &[
            ("ca.crt", &agent_ca.cert_pem),
            ("tls.crt", &agent.cert_pem),
            ("tls.key", &agent.key_pem),
        ],
    );
    let tls = pki.builder().client_trust(&secret).build().expect("config");
    // Each certificate once, although `..data` and the timestamped directory hold them again.
    assert_eq!(tls.trust_summary().anchors, 1);
    assert_eq!(tls.trust_summary().pinned, 1);
    let server = TestServer::start(tls).await;
    let other = agent_ca.client("other-agent");
    for leaf in [&agent, &other] {
        let ok = pki
            .client(Some(leaf))
            .get(server.addr, "localhost", "/")
            .await
            .expect("trusted via secret dir");
        assert_eq!(ok.status(), 200);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_and_http11_requests_all_carry_the_peer() {
    let pki = Pki::new();
    let client_leaf = pki.ca.client("agent");
    let (cert, key) = pki.write_leaf(&client_leaf, "agent");
    let server = TestServer::start(pki.required_config()).await;

    for (flag, version, alpn) in [
        ("--http2", "HTTP/2.0", "h2"),
        ("--http1.1", "HTTP/1.1", "http/1.1"),
    ] {
        let url = server.url("/");
        let body =
            json(&curl_with_cert(&pki.ca_path, &url, server.port(), &cert, &key, &[flag]).await);
        assert_eq!(body["http"], version);
        assert_eq!(body["alpn"], alpn);
        assert_eq!(body["cn"], "agent");
    }

    // Many requests on one connection, each with the extensions: HTTP/2 streams concurrently,
    // HTTP/1.1 keep-alive in turn.
    let client = pki.client(Some(&client_leaf));
    let conn = client
        .connect(server.addr, "localhost")
        .await
        .expect("h2 connection");
    assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]));
    let responses = futures_join_all((0..20).map(|i| {
        let conn = &conn;
        async move { conn.get(&format!("/stream/{i}")).await }
    }))
    .await;
    for (i, response) in responses.into_iter().enumerate() {
        let body: serde_json::Value =
            serde_json::from_slice(response.expect("h2 stream").body()).expect("json");
        assert_eq!(body["cn"], "agent");
        assert_eq!(body["path"], format!("/stream/{i}"));
    }
    let h1_client = pki.client_alpn(Some(&client_leaf), b"http/1.1");
    let conn = h1_client
        .connect(server.addr, "localhost")
        .await
        .expect("h1 connection");
    for i in 0..5 {
        let body: serde_json::Value = serde_json::from_slice(
            conn.get(&format!("/keepalive/{i}"))
                .await
                .expect("h1")
                .body(),
        )
        .expect("json");
        assert_eq!(body["http"], "HTTP/1.1");
        assert_eq!(body["cn"], "agent");
    }
    server.stop().await;
}

/// Polls futures concurrently on one task (no extra dependency for `join_all`).
async fn futures_join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.expect("completed")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_with_tls13_and_tls12() {
    let pki = Pki::new();
    let (cert, key) = pki.write_leaf(&pki.ca.client("openssl"), "openssl");
    let server = TestServer::start(pki.required_config()).await;
    for version in ["-tls1_3", "-tls1_2"] {
        let (ok, text) =
            s_client(server.port(), &pki.ca_path, Some((&cert, &key)), &[version]).await;
        assert!(ok, "{version}: {text}");
        assert!(text.contains("\"cn\":\"openssl\""), "{version}: {text}");
        let (ok, text) = s_client(server.port(), &pki.ca_path, None, &[version]).await;
        assert!(!ok, "{version} without a certificate must fail: {text}");
        assert!(
            text.to_lowercase().contains("alert") || text.contains("handshake failure"),
            "{version}: {text}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_type_and_pem_encoding_loads_and_serves() {
    let pki = Pki::new();
    for alg in Alg::ALL {
        let server_leaf = pki.ca.issue(&LeafSpec::server().alg(alg));
        let mut keys = vec![("pkcs8", server_leaf.key_pem.clone())];
        if alg != Alg::Ed25519 {
            // PKCS#1 for RSA, SEC1 for EC.
            let traditional = server_leaf.traditional_key_pem();
            let label = if alg == Alg::Rsa2048 {
                "RSA PRIVATE KEY"
            } else {
                "EC PRIVATE KEY"
            };
            assert!(traditional.contains(label), "{alg:?}: {traditional}");
            keys.push((
                if alg == Alg::Rsa2048 { "pkcs1" } else { "sec1" },
                traditional,
            ));
        }
        let client_leaf = pki
            .ca
            .issue(&LeafSpec::client(&format!("{alg:?}")).alg(alg));
        for (encoding, key_pem) in keys {
            let tls = TlsConfig::from_pem(server_leaf.cert_pem.clone(), key_pem)
                .client_trust(&pki.ca_path)
                .build()
                .unwrap_or_else(|e| panic!("{alg:?} {encoding}: {e}"));
            let server = TestServer::start(tls).await;
            let response = pki
                .client(Some(&client_leaf))
                .get(server.addr, "localhost", "/")
                .await
                .unwrap_or_else(|e| panic!("{alg:?} {encoding}: {e}"));
            let body: serde_json::Value = serde_json::from_slice(response.body()).expect("json");
            assert_eq!(body["cn"], format!("{alg:?}"), "{alg:?} {encoding}");
            server.stop().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_client_auth_lets_anonymous_clients_in_but_verifies_presented_ones() {
    let pki = Pki::new();
    let tls = pki.optional_config();
    let server = TestServer::start(tls).await;
    let anonymous = pki
        .client(None)
        .get(server.addr, "localhost", "/")
        .await
        .expect("anonymous");
    let body: serde_json::Value = serde_json::from_slice(anonymous.body()).expect("json");
    assert_eq!(body["peer"], false);
    assert_eq!(body["tls"], true);
    let known = pki
        .client(Some(&pki.ca.client("known")))
        .get(server.addr, "localhost", "/")
        .await
        .expect("known");
    let body: serde_json::Value = serde_json::from_slice(known.body()).expect("json");
    assert_eq!(body["cn"], "known");
    let rogue = pki
        .client(Some(&Ca::new("Rogue").client("x")))
        .get(server.addr, "localhost", "/")
        .await;
    assert!(rogue.is_err(), "a presented certificate must verify");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_auth_serves_https_only() {
    let pki = Pki::new();
    let tls = pki.builder().build().expect("config");
    assert_eq!(tls.client_auth(), ClientAuth::None);
    let server = TestServer::start(tls).await;
    let body = json(&curl(&pki.ca_path, &server.url("/"), server.port(), &[]).await);
    assert_eq!(body["peer"], false);
    assert_eq!(body["tls"], true);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_sessions_still_carry_the_client_chain() {
    let pki = Pki::new();
    let leaf = pki.ca.client("resumer");
    let server = TestServer::start(pki.required_config()).await;
    let client = pki.client(Some(&leaf));
    let first = client
        .connect(server.addr, "localhost")
        .await
        .expect("first");
    let body: serde_json::Value =
        serde_json::from_slice(first.get("/").await.expect("first request").body()).expect("json");
    assert_eq!(body["resumed"], false);
    let second = client
        .connect(server.addr, "localhost")
        .await
        .expect("second");
    assert!(second.is_resumed(), "the client should resume");
    let body: serde_json::Value =
        serde_json::from_slice(second.get("/").await.expect("second request").body())
            .expect("json");
    assert_eq!(body["resumed"], true);
    assert_eq!(body["cn"], "resumer");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_does_not_delay_others_and_is_closed_at_the_deadline() {
    let pki = Pki::new();
    let acceptor =
        MtlsAcceptor::new(pki.required_config()).handshake_timeout(Duration::from_millis(500));
    let server = TestServer::start(acceptor).await;
    let mut silent = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    // Meanwhile a real client is served.
    let ok = pki
        .client(Some(&pki.ca.client("busy")))
        .get(server.addr, "localhost", "/")
        .await
        .expect("served");
    assert_eq!(ok.status(), 200);
    // The silent one is dropped at its deadline: the read sees EOF (or a reset).
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(PATIENCE, silent.read(&mut buf))
        .await
        .expect("closed before PATIENCE");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "expected close, got {read:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_does_not_block_the_accept_loop() {
    let pki = Pki::new();
    // A long deadline: the stalled clients stay open for the whole test.
    let acceptor =
        MtlsAcceptor::new(pki.required_config()).handshake_timeout(Duration::from_secs(600));
    let server = TestServer::start(acceptor).await;
    let mut stalled = Vec::new();
    for _ in 0..50 {
        let mut s = tokio::net::TcpStream::connect(server.addr)
            .await
            .expect("connect");
        // A TLS record header promising more than is ever sent.
        s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
            .await
            .expect("write");
        stalled.push(s);
    }
    let ok = pki
        .client(Some(&pki.ca.client("patient")))
        .get(server.addr, "localhost", "/")
        .await
        .expect("served");
    assert_eq!(ok.status(), 200);
    drop(stalled);
    server.stop().await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_with_tls_is_tls_only() {
    let pki = Pki::new();
    let path = pki.path("sock/extension.sock");
    let server = tower_mtls::MtlsServer::bind_unix(&path)
        .await
        .expect("bind unix")
        .tls(pki.required_config());
    assert!(server.is_tls());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(
        server
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .serve(tower::service_fn(whoami)),
    );
    let conn = pki
        .client(Some(&pki.ca.client("unix-agent")))
        .connect_unix(&path, "localhost")
        .await
        .expect("TLS over the unix socket");
    let body: serde_json::Value =
        serde_json::from_slice(conn.get("/").await.expect("request").body()).expect("json");
    assert_eq!(body["cn"], "unix-agent");
    assert_eq!(body["remote"], serde_json::Value::Null);
    // Plain HTTP on the same socket is refused.
    let out = tokio::process::Command::new("curl")
        .args(["--silent", "--max-time", "20", "--include", "--unix-socket"])
        .arg(&path)
        .arg("http://localhost/")
        .output()
        .await
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    tx.send(()).expect("shutdown");
    tokio::time::timeout(PATIENCE, handle)
        .await
        .expect("stops")
        .expect("task")
        .expect("serve");
    assert!(!path.exists(), "the socket file is removed on shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_in_flight_requests_finish() {
    let pki = Pki::new();
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
    let entered_tx = std::sync::Arc::new(std::sync::Mutex::new(Some(entered_tx)));
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let release_rx = std::sync::Arc::new(tokio::sync::Mutex::new(Some(release_rx)));
    let service = tower::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let entered_tx = entered_tx.clone();
        let release_rx = release_rx.clone();
        async move {
            if req.uri().path() == "/slow" {
                if let Some(tx) = entered_tx.lock().expect("lock").take() {
                    let _ = tx.send(());
                }
                if let Some(rx) = release_rx.lock().await.take() {
                    let _ = rx.await;
                }
            }
            whoami(req).await
        }
    });
    let server = TestServer::start_service(Some(pki.required_config().into()), service).await;
    let addr = server.addr;
    let client = pki.client(Some(&pki.ca.client("slowpoke")));
    let conn = client.connect(addr, "localhost").await.expect("connect");
    let slow = tokio::spawn(async move { conn.get("/slow").await });
    entered_rx.await.expect("handler entered");
    let stopping = tokio::spawn(server.stop());
    // New connections are refused once the listener is closed; wait for that state.
    let refused = async {
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(PATIENCE, refused)
        .await
        .expect("listener closes");
    release_tx.send(()).expect("release");
    let response = match tokio::time::timeout(PATIENCE, slow)
        .await
        .expect("in time")
        .expect("task")
    {
        Ok(response) => response,
        Err(e) => panic!(
            "the in-flight request failed: {e:?} (alert {:?})",
            e.alert()
        ),
    };
    assert_eq!(response.status(), 200);
    tokio::time::timeout(PATIENCE, stopping)
        .await
        .expect("stops")
        .expect("stop task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_not_yet_valid_certificates_get_their_alerts() {
    use tower_mtls::rustls::AlertDescription;
    let pki = Pki::new();
    // A rogue CA with exactly the trusted CA's name: its certificates name the right issuer
    // but another key signed them. That is an unknown CA; a certificate that names the trusted
    // key (authorityKeyIdentifier) but whose signature is broken is a bad signature.
    let forger = Ca::new("Test Root CA");
    let forged = forger.client("forged");
    let tampered = pki.ca.client("tampered").with_corrupted_signature();
    let future = pki.ca.issue(&LeafSpec::client("future").not_yet_valid());
    let server = TestServer::start(pki.required_config()).await;
    let alert = |leaf: Leaf| {
        let (pki, addr) = (&pki, server.addr);
        async move { refusal_alert(pki, Some(&leaf), addr).await }
    };
    assert_eq!(alert(forged).await, Some(AlertDescription::UnknownCA));
    assert_eq!(alert(tampered).await, Some(AlertDescription::DecryptError));
    // rustls reports a certificate outside its validity period, either side, as expired.
    assert_eq!(
        alert(future).await,
        Some(AlertDescription::CertificateExpired)
    );
    server.stop().await;
}

/// Responses of every size arrive intact over HTTP/1.1 and HTTP/2, around the size up to which
/// the stream joins hyper's head and body into one write (4 KiB) and beyond a TLS record
/// (16 KiB); curl checks the HTTP/1.1 side with another TLS stack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_of_every_size_arrive_intact() {
    use bytes::Bytes;
    use http_body_util::Full;

    fn body(len: usize) -> Vec<u8> {
        (0..len).map(|i| b'a' + (i % 23) as u8).collect()
    }
    let pki = Pki::new();
    let agent = pki.ca.client("agent");
    let app = tower::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
        let len: usize = req.uri().path()[1..].parse().unwrap_or(0);
        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(body(len)))))
    });
    let server =
        TestServer::start_service(Some(MtlsAcceptor::new(pki.required_config())), app).await;
    let sizes = [
        0,
        1,
        100,
        3900,
        4000,
        4096,
        4097,
        16_384,
        16_385,
        70_000,
        1 << 20,
    ];
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let connection = pki
            .client_alpn(Some(&agent), alpn)
            .connect(server.addr, "localhost")
            .await
            .expect("connect");
        for len in sizes {
            let response = connection.get(&format!("/{len}")).await.expect("response");
            assert_eq!(response.status(), 200);
            assert!(
                response.body().as_ref() == body(len),
                "{len} bytes over {alpn:?}"
            );
        }
    }
    let (cert, key) = pki.write_leaf(&agent, "agent");
    for len in [100, 4097, 70_000] {
        let out = curl_with_cert(
            &pki.ca_path,
            &server.url(&format!("/{len}")),
            server.port(),
            &cert,
            &key,
            &["--http1.1"],
        )
        .await;
        assert!(
            out.status.success(),
            "curl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout == body(len), "{len} bytes to curl");
    }
    server.stop().await;
}
