//! The `extension` example as a black box: configured only by the contract's environment
//! variables, talked to with curl.

mod support;

use std::path::PathBuf;
use std::process::Stdio;

use support::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The example's binary, next to this test's (built by `cargo test` / nextest).
fn extension_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let binary = profile_dir.join("examples").join("extension");
    if !binary.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--example", "extension"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo build");
        assert!(status.success(), "building the extension example failed");
    }
    binary
}

struct Extension {
    child: Child,
    port: u16,
    health_port: u16,
}

/// Starts the example with `vars` and waits until both listeners are logged.
async fn start(vars: &[(&str, String)]) -> Extension {
    let mut cmd = Command::new(extension_binary());
    cmd.env_clear()
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env("STEADYBIT_EXTENSION_PORT", "0")
        .env("STEADYBIT_EXTENSION_HEALTH_PORT", "0")
        .envs(vars.iter().map(|(k, v)| (*k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("start extension");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut ports = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await.expect("read log") {
            if let Some(port) = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("listen=").and_then(|a| a.rsplit(':').next()))
                .and_then(|p| p.parse::<u16>().ok())
            {
                ports.push(port);
                if ports.len() == 2 {
                    return;
                }
            }
        }
        panic!("extension exited before listening");
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("extension starts");
    // Keep draining the log so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Extension {
        child,
        port: ports[0],
        health_port: ports[1],
    }
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
