//! The `extension` example as a black box: configured only by the contract's environment
//! variables, talked to with curl.

use tower_mtls_test_kit as support;

use std::path::PathBuf;

use support::extension::Extension;
use support::*;
use tokio::process::Command;

fn extension_binary() -> PathBuf {
    example_binary("extension")
}

async fn start(vars: &[(&str, String)]) -> Extension {
    Extension::start(vars).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extension_serves_mtls_and_plain_health_probes() {
    let pki = Pki::new();
    let agent_secret = pki.path("agent-cert");
    let agent_ca = Ca::new("Agent CA");
    let agent = agent_ca.client("steadybit-agent");
    pki::write_secret_dir(
        &agent_secret,
        &[("tls.crt", &agent.cert_pem), ("tls.key", &agent.key_pem)],
    );
    let (agent_cert, agent_key) = pki.write_leaf(&agent, "agent");
    let mut ext = start(&[
        (
            "STEADYBIT_EXTENSION_TLS_SERVER_CERT",
            pki.server_cert.display().to_string(),
        ),
        (
            "STEADYBIT_EXTENSION_TLS_SERVER_KEY",
            pki.server_key.display().to_string(),
        ),
        (
            "STEADYBIT_EXTENSION_TLS_CLIENT_CAS",
            agent_secret.display().to_string(),
        ),
    ])
    .await;

    let url = format!("https://localhost:{}/", ext.port);
    let index =
        json(&curl_with_cert(&pki.ca_path, &url, ext.port, &agent_cert, &agent_key, &[]).await);
    assert!(index["actions"].is_array(), "{index}");
    assert!(
        !curl(&pki.ca_path, &url, ext.port, &[])
            .await
            .status
            .success(),
        "no client certificate"
    );

    let health = curl(
        &pki.ca_path,
        &format!("http://localhost:{}/health/liveness", ext.health_port),
        ext.health_port,
        &[],
    )
    .await;
    assert!(json(&health)["status"] == "UP");
    let ready = curl(
        &pki.ca_path,
        &format!("http://localhost:{}/health/readiness", ext.health_port),
        ext.health_port,
        &[],
    )
    .await;
    assert!(json(&ready)["status"] == "UP");
    ext.child.start_kill().expect("kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extension_refuses_to_start_half_configured() {
    let pki = Pki::new();
    let output = Command::new(extension_binary())
        .env_clear()
        .env("STEADYBIT_EXTENSION_PORT", "0")
        .env("STEADYBIT_EXTENSION_TLS_SERVER_CERT", &pki.server_cert)
        .output()
        .await
        .expect("run extension");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("STEADYBIT_EXTENSION_TLS_SERVER_KEY"),
        "{stderr}"
    );

    let output = Command::new(extension_binary())
        .env_clear()
        .env("STEADYBIT_EXTENSION_PORT", "0")
        .env("STEADYBIT_EXTENSION_TLS_SERVER_CERT", &pki.server_cert)
        .env("STEADYBIT_EXTENSION_TLS_SERVER_KEY", &pki.server_key)
        .env(
            "STEADYBIT_EXTENSION_TLS_CLIENT_CAS",
            pki.path("missing-ca.crt"),
        )
        .output()
        .await
        .expect("run extension");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("missing-ca.crt") && stderr.contains("no such file"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extension_without_tls_variables_speaks_plain_http() {
    let pki = Pki::new();
    let mut ext = start(&[]).await;
    let out = curl(
        &pki.ca_path,
        &format!("http://localhost:{}/", ext.port),
        ext.port,
        &[],
    )
    .await;
    assert!(json(&out)["discoveries"].is_array());
    ext.child.start_kill().expect("kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extension_applies_the_client_policy_to_the_service_port_only() {
    let pki = Pki::new();
    let agent = pki
        .ca
        .issue(&LeafSpec::client("steadybit-agent").org("Steadybit"));
    let other = pki
        .ca
        .issue(&LeafSpec::client("other-workload").org("Steadybit"));
    let (agent_cert, agent_key) = pki.write_leaf(&agent, "agent");
    let (other_cert, other_key) = pki.write_leaf(&other, "other");
    let ext = start(&[
        (
            "STEADYBIT_EXTENSION_TLS_SERVER_CERT",
            pki.server_cert.display().to_string(),
        ),
        (
            "STEADYBIT_EXTENSION_TLS_SERVER_KEY",
            pki.server_key.display().to_string(),
        ),
        (
            "STEADYBIT_EXTENSION_TLS_CLIENT_CAS",
            pki.ca_path.display().to_string(),
        ),
        (
            "TOWER_MTLS_CLIENT_ALLOW",
            "cn=steadybit-agent & o=Steadybit".to_owned(),
        ),
    ])
    .await;
    let url = format!("https://localhost:{}/", ext.port);
    let index =
        json(&curl_with_cert(&pki.ca_path, &url, ext.port, &agent_cert, &agent_key, &[]).await);
    assert!(index["actions"].is_array(), "{index}");

    let denied = curl_with_cert(
        &pki.ca_path,
        &url,
        ext.port,
        &other_cert,
        &other_key,
        &["--write-out", "\n%{http_code}"],
    )
    .await;
    let text = String::from_utf8_lossy(&denied.stdout);
    assert!(text.ends_with("403"), "{text}");
    assert!(text.contains("client_certificate_not_allowed"), "{text}");

    let health = curl(
        &pki.ca_path,
        &format!("http://localhost:{}/health/readiness", ext.health_port),
        ext.health_port,
        &[],
    )
    .await;
    assert!(json(&health)["status"] == "UP");

    let (code, log) = ext.terminate().await;
    assert_eq!(code, Some(143), "{log:#?}");
    let shutdown_stats = log
        .iter()
        .find(|l| l.contains("TLS at shutdown"))
        .unwrap_or_else(|| panic!("no stats line at shutdown: {log:#?}"));
    assert!(
        shutdown_stats.contains("handshakes ok=2"),
        "{shutdown_stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extension_refuses_an_invalid_policy() {
    let pki = Pki::new();
    let output = Command::new(extension_binary())
        .env_clear()
        .env("STEADYBIT_EXTENSION_PORT", "0")
        .env("STEADYBIT_EXTENSION_HEALTH_PORT", "0")
        .env("STEADYBIT_EXTENSION_TLS_SERVER_CERT", &pki.server_cert)
        .env("STEADYBIT_EXTENSION_TLS_SERVER_KEY", &pki.server_key)
        .env("STEADYBIT_EXTENSION_TLS_CLIENT_CAS", &pki.ca_path)
        .env("TOWER_MTLS_CLIENT_ALLOW", "cn=agent & colour=blue")
        .output()
        .await
        .expect("run extension");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("TOWER_MTLS_CLIENT_ALLOW") && stderr.contains("colour"),
        "{stderr}"
    );
}
