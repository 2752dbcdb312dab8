//! Operating the `extension` example as Kubernetes does, as a real process: `/metrics` on the
//! health port, SIGTERM with readiness down and a drain, JSON logs, expiry warnings.

use tower_mtls_test_kit as support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::extension::{Extension, http_get, metric, scrape};
use support::*;

fn tls_vars(pki: &Pki, cas: &std::path::Path) -> Vec<(&'static str, String)> {
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
            cas.display().to_string(),
        ),
    ]
}

fn unix(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as f64
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_by_exactly_the_handshakes_made() {
    let pki = Pki::new();
    let agent = pki.ca.client("steadybit-agent");
    let mut vars = tls_vars(&pki, &pki.ca_path);
    vars.push(("TOWER_MTLS_CLIENT_ALLOW", "cn=steadybit-agent".into()));
    let ext = Extension::start(&vars).await;
    let (succeeded, failed) = ([("outcome", "succeeded")], [("outcome", "failed")]);
    let before = scrape(ext.health_port).await;
    let ok0 = metric(&before, "tower_mtls_handshakes_total", &succeeded);
    let failed0 = metric(&before, "tower_mtls_handshakes_total", &failed);

    for _ in 0..3 {
        refusal_alert(&pki, None, addr(ext.port)).await;
    }
    for _ in 0..2 {
        let response = pki
            .client(Some(&agent))
            .get(addr(ext.port), "localhost", "/")
            .await
            .expect("accepted");
        assert_eq!(response.status(), 200);
    }

    // The server counts a refusal after it sent the alert: poll until both settle, then
    // require exactly three and two.
    let deadline = Instant::now() + PATIENCE;
    let after = loop {
        let text = scrape(ext.health_port).await;
        let ok = metric(&text, "tower_mtls_handshakes_total", &succeeded) - ok0;
        let bad = metric(&text, "tower_mtls_handshakes_total", &failed) - failed0;
        if (ok >= 2.0 && bad >= 3.0) || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        metric(&after, "tower_mtls_handshakes_total", &succeeded) - ok0,
        2.0,
        "{after}"
    );
    assert_eq!(
        metric(&after, "tower_mtls_handshakes_total", &failed) - failed0,
        3.0,
        "{after}"
    );
    assert_eq!(
        metric(
            &after,
            "tower_mtls_handshakes_total",
            &[("outcome", "failed"), ("class", "no_client_certificate")]
        ),
        3.0,
        "{after}"
    );
    assert!(
        metric(
            &after,
            "tower_mtls_handshake_duration_seconds_count",
            &succeeded
        ) >= 2.0,
        "{after}"
    );
    // The expiry gauges are the served certificate's and the CA's notAfter.
    let served = tower_mtls::identity::CertificateSummary::of(&pki.server.der).expect("summary");
    assert_eq!(
        metric(
            &after,
            "tower_mtls_server_certificate_not_after_seconds",
            &[]
        ),
        unix(served.not_after),
        "{after}"
    );
    let ca = tower_mtls::identity::CertificateSummary::of(pki.ca.as_leaf().der.as_ref())
        .expect("summary");
    assert_eq!(
        metric(&after, "tower_mtls_trust_earliest_not_after_seconds", &[]),
        unix(ca.not_after),
        "{after}"
    );
    assert!(
        after.contains("# TYPE tower_mtls_handshakes_total counter"),
        "{after}"
    );
    let (code, log) = ext.terminate().await;
    assert_eq!(code, Some(143), "{log:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_readiness_down_drains_and_exits_143() {
    const DRAIN: Duration = Duration::from_secs(3);
    let pki = Pki::new();
    let agent = pki.ca.client("steadybit-agent");
    let mut vars = tls_vars(&pki, &pki.ca_path);
    vars.push(("TOWER_MTLS_DRAIN_DELAY", "3s".into()));
    let ext = Extension::start(&vars).await;
    assert_eq!(
        http_get(ext.health_port, "/health/readiness")
            .await
            .expect("probe")
            .0,
        200
    );

    // A loop of requests, each on a fresh connection, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let client = pki.client(Some(&agent));
    let port = ext.port;
    let requests = tokio::spawn({
        let (stop, done) = (stop.clone(), done.clone());
        async move {
            let mut results = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let result = client
                    .get(addr(port), "localhost", "/")
                    .await
                    .map(|r| r.status().as_u16())
                    .map_err(|e| e.to_string());
                results.push(result);
                done.fetch_add(1, Ordering::SeqCst);
            }
            results
        }
    });
    let wait_for = |n: usize| {
        let done = done.clone();
        async move {
            tokio::time::timeout(PATIENCE, async {
                while done.load(Ordering::SeqCst) < n {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await
            .expect("requests progress");
        }
    };
    wait_for(3).await;

    let signalled = Instant::now();
    ext.signal("-TERM");
    loop {
        let (status, _) = http_get(ext.health_port, "/health/readiness")
            .await
            .expect("the health port answers during the drain");
        if status == 503 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            signalled.elapsed() < Duration::from_secs(1),
            "readiness still UP a second after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Readiness is down; requests still arriving (the endpoint is not removed yet) are served.
    let at_down = done.load(Ordering::SeqCst);
    wait_for(at_down + 3).await;
    assert!(
        signalled.elapsed() < DRAIN,
        "the loop ran past the drain delay"
    );
    stop.store(true, Ordering::SeqCst);
    let results = requests.await.expect("loop");
    assert!(results.len() >= 6, "{results:?}");
    assert!(results.iter().all(|r| r == &Ok(200)), "{results:?}");

    let (code, log, _) = ext.wait().await;
    assert_eq!(code, Some(143), "{log:#?}");
    assert!(
        signalled.elapsed() >= DRAIN,
        "exited before the drain delay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_format_writes_one_object_per_line() {
    let pki = Pki::new();
    let stranger = Ca::new("Stranger CA").client("intruder");
    let mut vars = tls_vars(&pki, &pki.ca_path);
    vars.push(("STEADYBIT_LOG_FORMAT", "json".into()));
    vars.push(("STEADYBIT_LOG_LEVEL", "debug".into()));
    vars.push(("RUST_LOG", "hyper=info".into()));
    let ext = Extension::start(&vars).await;
    refusal_alert(&pki, Some(&stranger), addr(ext.port)).await;
    // Plain HTTP on the TLS port: a 400, logged at debug.
    let (status, _) = http_get(ext.port, "/").await.expect("plain HTTP");
    assert_eq!(status, 400);
    let deadline = Instant::now() + PATIENCE;
    while !ext.lines().iter().any(|l| l.contains("CN=intruder"))
        || !ext.lines().iter().any(|l| l.contains("\"DEBUG\""))
    {
        assert!(Instant::now() < deadline, "{:#?}", ext.lines());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ext.signal("-TERM");
    let (code, log, stderr) = ext.wait().await;
    assert_eq!(code, Some(143), "{log:#?}");
    let objects: Vec<serde_json::Value> = log
        .iter()
        .chain(&stderr)
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(objects.iter().all(|o| o.is_object()));
    // The refused certificate's subject is a field of its own.
    let refused = objects
        .iter()
        .find(|o| {
            o["subject"]
                .as_str()
                .is_some_and(|s| s.contains("CN=intruder"))
        })
        .unwrap_or_else(|| panic!("{log:#?}"));
    assert_eq!(refused["level"], "WARN", "{refused}");
    assert_eq!(refused["reason"], "unknown_ca", "{refused}");
    // STEADYBIT_LOG_LEVEL=debug is honoured.
    assert!(objects.iter().any(|o| o["level"] == "DEBUG"), "{log:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_certificates_are_warned_about_and_expired_ones_are_errors() {
    let pki = Pki::new();
    let in_ten_days = SystemTime::now() + Duration::from_secs(10 * 86_400);
    let server = pki.ca.issue(&LeafSpec {
        not_after_exact: Some(in_ten_days),
        ..LeafSpec::server()
    });
    let (server_cert, server_key) = pki.write_leaf(&server, "short-server");
    let expired = pki.ca.issue(&LeafSpec {
        not_after: (2021, 1, 1),
        ..LeafSpec::client("old-agent")
    });
    let (expired_cert, _) = pki.write_leaf(&expired, "old-agent");
    let ext = Extension::start(&[
        (
            "STEADYBIT_EXTENSION_TLS_SERVER_CERT",
            server_cert.display().to_string(),
        ),
        (
            "STEADYBIT_EXTENSION_TLS_SERVER_KEY",
            server_key.display().to_string(),
        ),
        (
            "STEADYBIT_EXTENSION_TLS_CLIENT_CAS",
            format!("{},{}", pki.ca_path.display(), expired_cert.display()),
        ),
        ("STEADYBIT_LOG_FORMAT", "json".into()),
    ])
    .await;
    let (code, log) = ext.terminate().await;
    assert_eq!(code, Some(143), "{log:#?}");
    let objects: Vec<serde_json::Value> = log
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let warning = objects
        .iter()
        .find(|o| o["certificate.role"] == "server")
        .unwrap_or_else(|| panic!("no warning for the server certificate: {log:#?}"));
    assert_eq!(warning["level"], "WARN", "{warning}");
    assert_eq!(warning["message"], "certificate expires soon", "{warning}");
    assert!(
        matches!(warning["days_left"].as_u64(), Some(9 | 10)),
        "{warning}"
    );
    let error = objects
        .iter()
        .find(|o| o["certificate.role"] == "pinned")
        .unwrap_or_else(|| panic!("no error for the expired pinned certificate: {log:#?}"));
    assert_eq!(error["level"], "ERROR", "{error}");
    assert_eq!(error["message"], "certificate has expired", "{error}");
    assert!(
        error["certificate.subject"]
            .as_str()
            .is_some_and(|s| s.contains("old-agent")),
        "{error}"
    );
    // The CA (valid for decades) is not warned about.
    assert!(
        !objects
            .iter()
            .any(|o| o["certificate.role"] == "trusted_ca"),
        "{log:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_exits_130_and_plain_http_works_too() {
    let ext = Extension::start(&[]).await;
    let (status, body) = http_get(ext.port, "/").await.expect("index");
    assert_eq!(status, 200, "{body}");
    let (status, _) = http_get(ext.health_port, "/metrics")
        .await
        .expect("metrics");
    assert_eq!(status, 200);
    ext.signal("-INT");
    let (code, log, _) = ext.wait().await;
    assert_eq!(code, Some(130), "{log:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_log_settings_refuse_to_start() {
    for (variable, value) in [
        ("STEADYBIT_LOG_LEVEL", "loud"),
        ("STEADYBIT_LOG_FORMAT", "xml"),
        ("TOWER_MTLS_DRAIN_DELAY", "soon"),
    ] {
        let output = tokio::time::timeout(
            PATIENCE,
            tokio::process::Command::new(example_binary("extension"))
                .env_clear()
                .env("STEADYBIT_EXTENSION_PORT", "0")
                .env("STEADYBIT_EXTENSION_HEALTH_PORT", "0")
                .env(variable, value)
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("exits")
        .expect("runs");
        assert_eq!(output.status.code(), Some(1), "{variable}={value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(variable) && stderr.contains(value),
            "{variable}={value}: {stderr}"
        );
    }
}

/// The digest gauge of the trust files in use (its first 48 bits, as an integer).
fn trust_in_use(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("tower_mtls_trust_files_digest "))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
}

/// A broken change to the trust files is loud: the gauge says the files on disk are rejected,
/// and the digest of the files in use (the same `TlsConfig::trust_files_digest` the doctor
/// computes from the files on disk) stays the old one until the files are fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_reload_shows_on_metrics_until_the_files_are_fixed() {
    let pki = Pki::new();
    let cas = pki.path("client-cas.pem");
    std::fs::write(&cas, &pki.ca.cert_pem).expect("write");
    let ext = Extension::start(&tls_vars(&pki, &cas)).await;
    let on_disk = || {
        pki.builder()
            .client_trust(&cas)
            .build()
            .map(|tls| tower_mtls::tls::metrics::digest_prefix(&tls.trust_files_digest()))
    };
    let good = on_disk().expect("the files build");
    let text = scrape(ext.health_port).await;
    assert_eq!(trust_in_use(&text), Some(good), "{text}");
    assert_eq!(
        metric(&text, "tower_mtls_reload_rejected", &[]),
        0.0,
        "{text}"
    );

    // A broken bundle: the server keeps the previous trust and says so.
    std::fs::write(&cas, "-----BEGIN CERTIFICATE-----\nnot base64\n").expect("write");
    assert!(
        on_disk().is_err(),
        "the doctor would see the files do not build"
    );
    let deadline = Instant::now() + PATIENCE;
    let text = loop {
        let text = scrape(ext.health_port).await;
        if metric(&text, "tower_mtls_reload_rejected", &[]) == 1.0 || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        metric(&text, "tower_mtls_reload_rejected", &[]),
        1.0,
        "{text}"
    );
    assert_eq!(trust_in_use(&text), Some(good), "{text}");
    assert!(
        metric(
            &text,
            "tower_mtls_reloads_total",
            &[("outcome", "rejected")]
        ) >= 1.0,
        "{text}"
    );

    // Fixed with another CA: applied, the gauge clears, the digest in use is the new one.
    let other = Ca::new("Replacement CA");
    std::fs::write(&cas, &other.cert_pem).expect("write");
    let fixed = on_disk().expect("the files build again");
    let deadline = Instant::now() + PATIENCE;
    let text = loop {
        let text = scrape(ext.health_port).await;
        if trust_in_use(&text) == Some(fixed) || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(trust_in_use(&text), Some(fixed), "{text}");
    assert_eq!(
        metric(&text, "tower_mtls_reload_rejected", &[]),
        0.0,
        "{text}"
    );
    ext.terminate().await;
}
