//! Resumption never outlives the verification it descends from: a ticket issued on a resumed
//! connection carries the bound of the full handshake it came from (the leaf's notAfter, a
//! required-fresh CRL's nextUpdate), so a chain of resumptions ends where the first verdict
//! would. Python's `ssl` module keeps the newest ticket, which is what a chained resumption
//! needs; TLS 1.3 and TLS 1.2.

use tower_mtls_test_kit as support;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::pki::CrlSpec;
use support::*;
use tower_mtls::MtlsAcceptor;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/resume_chain.py");

/// How long the first two connections get before the verdict runs out. The script needs a
/// fraction of it; the rest is room for a loaded machine.
const WINDOW: Duration = Duration::from_secs(8);

/// Runs the chained-resumption client; its three connection lines.
async fn resume_chain(
    port: u16,
    ca: &Path,
    leaf: (&Path, &Path),
    version: &str,
    wait_until: SystemTime,
) -> Vec<String> {
    let until = wait_until
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    let output = tokio::process::Command::new("python3")
        .arg(SCRIPT)
        .arg(port.to_string())
        .arg(ca)
        .arg(leaf.0)
        .arg(leaf.1)
        .arg(version)
        .arg(format!("{until:.3}"))
        .output()
        .await
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let lines: Vec<String> = stdout.lines().map(str::to_owned).collect();
    assert_eq!(
        lines.len(),
        3,
        "three connections; stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    lines
}

/// The first two connections: a full handshake, then a resumption, both served, both before
/// the verdict's window ended.
fn assert_served_then_resumed(lines: &[String], window_end: SystemTime) {
    let (first, _) = lines[0].split_once(" AT ").expect("a served connection");
    let (second, ended) = lines[1].split_once(" AT ").expect("a served connection");
    assert_eq!(first, "CONN 1 RESUMED False STATUS 200", "{lines:?}");
    assert_eq!(second, "CONN 2 RESUMED True STATUS 200", "{lines:?}");
    let ended: f64 = ended.parse().expect("a time");
    let end = window_end
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    assert!(
        ended < end,
        "the machine was too slow to connect twice within the verdict's window"
    );
}

/// The third connection, after the bound: no resumption, and the full handshake refuses.
fn assert_refused_after_bound(line: &str, alert: &str) {
    assert!(
        !line.contains("RESUMED True"),
        "a session descending from an expired verdict must not resume: {line}"
    );
    assert!(
        line.starts_with("CONN 3 ERROR") && line.to_lowercase().contains(alert),
        "the full handshake refuses with {alert}: {line}"
    );
}

async fn expired_pinned_leaf_cannot_chain_resumptions(version: &str) {
    let pki = Pki::new();
    let not_after = SystemTime::now() + WINDOW;
    let leaf =
        Ca::new("Short Issuer").issue(&LeafSpec::client("short-lived").not_after_time(not_after));
    let (cert, key) = pki.write_leaf(&leaf, "short");
    let tls = pki
        .builder()
        .client_trust_pem(leaf.cert_pem.clone())
        .tls12(version == "1.2")
        .build()
        .expect("config");
    let server = TestServer::start(MtlsAcceptor::new(tls)).await;

    let lines = resume_chain(
        server.port(),
        &pki.ca_path,
        (&cert, &key),
        version,
        not_after + Duration::from_millis(1500),
    )
    .await;
    assert_served_then_resumed(&lines, not_after);
    assert_refused_after_bound(&lines[2], "certificate expired");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_a_ticket_issued_on_a_resumed_connection_expires_with_the_pinned_leaf() {
    expired_pinned_leaf_cannot_chain_resumptions("1.3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_a_resumed_session_expires_with_the_pinned_leaf() {
    expired_pinned_leaf_cannot_chain_resumptions("1.2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_chained_resumption_ends_when_a_required_fresh_crl_goes_stale() {
    let pki = Pki::new();
    let leaf = pki.ca.client("fresh-crl-client");
    let (cert, key) = pki.write_leaf(&leaf, "client");
    let now = SystemTime::now();
    let next_update = now + WINDOW;
    let crl = pki
        .ca
        .crl_with(&CrlSpec::new(1, (2024, 1, 1)).at(now - Duration::from_secs(3600), next_update));
    let tls = pki
        .mtls_builder()
        .client_crl_bytes(crl.into_bytes())
        .require_fresh_crls(true)
        .build()
        .expect("config");
    let server = TestServer::start(MtlsAcceptor::new(tls)).await;

    let lines = resume_chain(
        server.port(),
        &pki.ca_path,
        (&cert, &key),
        "1.3",
        next_update + Duration::from_millis(1500),
    )
    .await;
    assert_served_then_resumed(&lines, next_update);
    assert!(
        !lines[2].contains("RESUMED True") && lines[2].starts_with("CONN 3 ERROR"),
        "past the CRL's nextUpdate a full handshake decides, and refuses: {lines:?}"
    );
    server.stop().await;
}
