//! The `extension` example on a Unix socket, as Steadybit's Go extension-kit serves one
//! (`exthttp/listener.go`, `exthealth/health.go`): plain HTTP whatever the TLS variables say,
//! the probes on the socket and no health port, the socket's directory created and a stale
//! socket replaced; TLS on the socket only with `TOWER_MTLS_UNIX_SOCKET_TLS=true`. And the
//! shutdown the kit's `extsignals` runs: SIGUSR1 like SIGTERM, exit 138, the stop hook after
//! readiness turned 503 and before the server stops. curl is the client.

#![cfg(unix)]

use tower_mtls_test_kit as support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::extension::Extension;
use support::*;

fn tls_vars(pki: &Pki) -> Vec<(&'static str, String)> {
    vec![
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
    ]
}

/// `curl --unix-socket`: the HTTP status (0 when no HTTP answer came) and the body.
async fn curl_socket(pki: &Pki, socket: &Path, url: &str, extra: &[&str]) -> (u16, String) {
    let socket = socket.display().to_string();
    let mut args = vec![
        "--unix-socket",
        socket.as_str(),
        "--write-out",
        "\n%{http_code}",
    ];
    args.extend_from_slice(extra);
    let out = curl(&pki.ca_path, url, 0, &args).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// Waits until a log line contains `needle` (the process logs it by itself; no timing).
async fn logged(ext: &Extension, needle: &str) {
    tokio::time::timeout(PATIENCE, async {
        while !ext.lines().iter().any(|l| l.contains(needle)) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never logged {needle:?}: {:#?}", ext.lines()));
}

fn position(log: &[String], needle: &str) -> usize {
    log.iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?}: {log:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tls_variables_the_socket_speaks_plain_http_and_answers_the_probes() {
    let pki = Pki::new();
    // A directory that does not exist yet: the kit creates it.
    let socket: PathBuf = pki.path("run/steadybit/extension.sock");
    let mut vars = tls_vars(&pki);
    vars.push((
        "STEADYBIT_EXTENSION_UNIX_SOCKET",
        socket.display().to_string(),
    ));
    let ext = Extension::start_unix(&vars).await;

    let (status, body) = curl_socket(&pki, &socket, "http://localhost/", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("actions"), "{body}");
    for probe in ["/health/liveness", "/health/readiness"] {
        let (status, body) =
            curl_socket(&pki, &socket, &format!("http://localhost{probe}"), &[]).await;
        assert_eq!((status, body.as_str()), (200, "{\"status\":\"UP\"}\n"));
    }
    // TLS on the socket is off: a TLS client gets no answer.
    let (status, _) = curl_socket(&pki, &socket, "https://localhost/", &[]).await;
    assert_eq!(status, 0);

    let (code, log) = ext.terminate().await;
    assert_eq!(code, Some(143), "{log:#?}");
    // Said once, at startup; and no health port was opened.
    assert_eq!(
        log.iter()
            .filter(|l| l.contains("TLS variables apply to TCP only"))
            .count(),
        1,
        "{log:#?}"
    );
    assert!(
        log.iter().any(|l| l.contains("serving plain HTTP")),
        "{log:#?}"
    );
    assert!(
        !log.iter().any(|l| l.contains("health probes serving")),
        "{log:#?}"
    );
    assert!(
        log.iter().any(|l| l.contains("Build information")
            && l.contains("name=extension")
            && l.contains("version=0.1.0")),
        "{log:#?}"
    );
    assert!(!socket.exists(), "the socket file is removed at exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_socket_file_is_replaced_and_plain_http_needs_no_tls_variables() {
    let pki = Pki::new();
    let socket = pki.path("stale.sock");
    // A socket file left behind by a process that died.
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("bind"));
    assert!(socket.exists());
    let ext = Extension::start_unix(&[(
        "STEADYBIT_EXTENSION_UNIX_SOCKET",
        socket.display().to_string(),
    )])
    .await;
    let (status, _) = curl_socket(&pki, &socket, "http://localhost/health/readiness", &[]).await;
    assert_eq!(status, 200);
    let (code, log) = ext.terminate().await;
    assert_eq!(code, Some(143), "{log:#?}");
    assert!(
        !log.iter().any(|l| l.contains("apply to TCP only")),
        "nothing to say without TLS variables: {log:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_on_the_socket_is_an_opt_in() {
    let pki = Pki::new();
    let agent = pki.ca.client("steadybit-agent");
    let (cert, key) = pki.write_leaf(&agent, "agent");
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let socket = pki.path("tls.sock");
    let mut vars = tls_vars(&pki);
    vars.push((
        "STEADYBIT_EXTENSION_UNIX_SOCKET",
        socket.display().to_string(),
    ));
    vars.push(("TOWER_MTLS_UNIX_SOCKET_TLS", "true".into()));
    let ext = Extension::start_unix(&vars).await;

    let with_cert = ["--cert", cert.as_str(), "--key", key.as_str()];
    let (status, body) = curl_socket(&pki, &socket, "https://localhost/", &with_cert).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = curl_socket(
        &pki,
        &socket,
        "https://localhost/health/readiness",
        &with_cert,
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "{\"status\":\"UP\"}\n"));
    // Plain HTTP on the TLS socket: the crate's 400.
    let (status, _) = curl_socket(&pki, &socket, "http://localhost/", &[]).await;
    assert_eq!(status, 400);
    // No client certificate: the handshake fails.
    let (status, _) = curl_socket(&pki, &socket, "https://localhost/", &[]).await;
    assert_eq!(status, 0);

    let (code, log) = ext.terminate().await;
    assert_eq!(code, Some(143), "{log:#?}");
    assert!(
        log.iter()
            .any(|l| l.contains("HTTPS, client certificates required")),
        "{log:#?}"
    );
    assert!(!log.iter().any(|l| l.contains("apply to TCP only")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_on_a_plain_socket_is_refused_at_startup() {
    let pki = Pki::new();
    let mut vars = tls_vars(&pki);
    vars.push((
        "STEADYBIT_EXTENSION_UNIX_SOCKET",
        pki.path("policy.sock").display().to_string(),
    ));
    vars.push(("TOWER_MTLS_CLIENT_ALLOW", "cn=steadybit-agent".into()));
    let out = tokio::process::Command::new(example_binary("extension"))
        .env_clear()
        .env("NO_COLOR", "1")
        .envs(vars.iter().map(|(k, v)| (*k, v)))
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(PATIENCE, out)
        .await
        .expect("exits")
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("TOWER_MTLS_CLIENT_ALLOW") && stderr.contains("TOWER_MTLS_UNIX_SOCKET_TLS"),
        "{stderr}"
    );
}

/// SIGUSR1 is the kit's `Kill`: the orderly shutdown of SIGTERM, exit 128 + 10. The stop hook
/// runs after readiness turned 503, while the service still answers, and the server stops
/// only after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_shuts_down_in_order_and_exits_138() {
    let pki = Pki::new();
    let socket = pki.path("usr1.sock");
    let gate = pki.path("hook-may-finish");
    let ext = Extension::start_unix(&[
        (
            "STEADYBIT_EXTENSION_UNIX_SOCKET",
            socket.display().to_string(),
        ),
        ("EXTENSION_EXAMPLE_HOOK_GATE", gate.display().to_string()),
    ])
    .await;

    ext.signal("-USR1");
    logged(&ext, "stop actions: aborting").await;
    // The hook runs: readiness is down, the service still serves.
    let (status, body) = curl_socket(&pki, &socket, "http://localhost/health/readiness", &[]).await;
    assert_eq!((status, body.as_str()), (503, "{\"status\":\"DOWN\"}\n"));
    let (status, _) = curl_socket(&pki, &socket, "http://localhost/", &[]).await;
    assert_eq!(status, 200, "the service answers while the hook runs");

    std::fs::write(&gate, b"").expect("open the gate");
    let (code, log, _) = ext.wait().await;
    assert_eq!(code, Some(138), "{log:#?}");
    let down = position(&log, "readiness is DOWN");
    let hook = position(&log, "stop actions: aborting");
    let hook_done = position(&log, "stop actions: done");
    let stopping = position(&log, "the service stops accepting");
    let stopped = position(&log, "stopped");
    assert!(
        down < hook && hook < hook_done && hook_done < stopping && stopping < stopped,
        "{log:#?}"
    );
    assert!(log[down].contains("SIGUSR1"), "{}", log[down]);
    assert!(log[stopped].contains("138"), "{}", log[stopped]);
}
