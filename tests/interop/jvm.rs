//! The JVM, as Steadybit's agent runs it: `java.net.http.HttpClient` with a PKCS#12 key store.
//! The JDK's key manager offers a client certificate only if an issuer in its chain is listed
//! in the server's CertificateRequest, so these tests check what the server advertises.

use tower_mtls_test_kit as support;

use std::path::{Path, PathBuf};

use support::*;
use tower_mtls::TlsConfig;

const CLIENT_SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/MtlsClient.java");

/// A PKCS#12 key store with `leaf`'s certificate and key, made with the openssl CLI.
fn pkcs12(pki: &Pki, leaf: &Leaf, name: &str) -> PathBuf {
    let (cert, key) = pki.write_leaf(leaf, name);
    let out = pki.path(&format!("{name}.p12"));
    let status = std::process::Command::new("openssl")
        .args([
            "pkcs12",
            "-export",
            "-passout",
            "pass:changeit",
            "-name",
            name,
            "-in",
        ])
        .arg(&cert)
        .arg("-inkey")
        .arg(&key)
        .arg("-out")
        .arg(&out)
        .status()
        .expect("run openssl pkcs12");
    assert!(status.success(), "openssl pkcs12 failed");
    out
}

/// Runs the Java client; returns (exit success, output).
async fn java(url: &str, ca: &Path, keystore: Option<&Path>) -> (bool, String) {
    let mut cmd = tokio::process::Command::new("java");
    cmd.arg(CLIENT_SOURCE).arg(url).arg(ca);
    if let Some(keystore) = keystore {
        cmd.arg(keystore).arg("changeit");
    }
    cmd.kill_on_drop(true);
    let out = tokio::time::timeout(PATIENCE * 4, cmd.output())
        .await
        .expect("java finishes")
        .expect("run java");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jvm_client_with_a_ca_issued_certificate() {
    let pki = Pki::new();
    let agent = pki
        .ca
        .issue(&LeafSpec::client("steadybit-agent").org("Steadybit"));
    let keystore = pkcs12(&pki, &agent, "agent");
    let tls = pki.required_config();
    let server = TestServer::start(tls).await;
    let url = format!("https://127.0.0.1:{}/jvm", server.port());

    let (ok, text) = java(&url, &pki.ca_path, Some(&keystore)).await;
    assert!(ok, "{text}");
    assert!(
        text.contains("STATUS 200") && text.contains("\"cn\":\"steadybit-agent\""),
        "{text}"
    );

    let (ok, text) = java(&url, &pki.ca_path, None).await;
    assert!(!ok, "without a key store the JVM must be refused: {text}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jvm_client_whose_pinned_certificate_is_ca_issued() {
    // The Helm chart's trust is the agent's own tls.crt, issued by a CA the extension does not
    // trust. Go's kit advertises only the leaf's subject, so the JDK never offers the
    // certificate; advertising the leaf's issuer makes it do so.
    let pki = Pki::new();
    let agent_ca = Ca::new("Agent CA");
    let agent = agent_ca.issue(&LeafSpec::client("steadybit-agent"));
    let keystore = pkcs12(&pki, &agent, "agent");
    let tls = TlsConfig::from_pem_files(&pki.server_cert, &pki.server_key)
        .client_trust_pem(agent.cert_pem.clone())
        .build()
        .expect("config");
    assert_eq!(tls.trust_summary().pinned, 1);
    let server = TestServer::start(tls).await;
    let url = format!("https://127.0.0.1:{}/jvm", server.port());
    let (ok, text) = java(&url, &pki.ca_path, Some(&keystore)).await;
    assert!(ok, "{text}");
    assert!(text.contains("\"cn\":\"steadybit-agent\""), "{text}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jvm_client_with_a_self_signed_pinned_certificate() {
    let pki = Pki::new();
    let agent = LeafSpec::client("self-signed-agent").self_signed();
    let keystore = pkcs12(&pki, &agent, "agent");
    let tls = pki
        .builder()
        .client_trust_pem(agent.cert_pem.clone())
        .build()
        .expect("config");
    let server = TestServer::start(tls).await;
    let url = format!("https://127.0.0.1:{}/jvm", server.port());
    let (ok, text) = java(&url, &pki.ca_path, Some(&keystore)).await;
    assert!(ok, "{text}");
    server.stop().await;
}
