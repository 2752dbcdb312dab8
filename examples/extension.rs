//! A minimal Steadybit-style extension, configured only through the contract's environment
//! variables (see `tower_mtls::steadybit`):
//!
//! ```text
//! STEADYBIT_EXTENSION_PORT=8080                # service port (default 8080)
//! STEADYBIT_EXTENSION_HEALTH_PORT=8081         # plain-HTTP probes and /metrics (default 8081)
//! STEADYBIT_EXTENSION_TLS_SERVER_CERT=/etc/extension/certificates/server-cert/tls.crt
//! STEADYBIT_EXTENSION_TLS_SERVER_KEY=/etc/extension/certificates/server-cert/tls.key
//! STEADYBIT_EXTENSION_TLS_CLIENT_CAS=/etc/extension/certificates/agent-cert,/etc/extension/certificates/ca.crt
//! STEADYBIT_EXTENSION_UNIX_SOCKET=/run/extension.sock   # instead of the TCP port: plain HTTP, probes on it
//! TOWER_MTLS_UNIX_SOCKET_TLS=true                       # optional: TLS on the Unix socket too
//! TOWER_MTLS_CLIENT_CRLS=/etc/extension/crls            # optional revocation lists
//! TOWER_MTLS_CLIENT_ALLOW='cn=steadybit-agent & o=Steadybit'   # optional client policy
//! STEADYBIT_LOG_LEVEL=info STEADYBIT_LOG_FORMAT=json    # logs like the Go extension-kit
//! TOWER_MTLS_DRAIN_DELAY=5s                             # keep serving after SIGTERM
//! cargo run --example extension
//! ```
//!
//! `GET /` answers the extension index. Everything else — logs, the health port
//! (`/health/liveness`, `/health/readiness`, `/metrics` in the Prometheus text format), live
//! reloads, expiry warnings, SIGTERM (or SIGUSR1) with a drain delay and exit code 143 (138) —
//! is `tower_mtls::steadybit::runtime`. A configuration error exits 1 with the error.
//!
//! The shutdown hook stands for an extension's "stop actions" step. For the tests,
//! `EXTENSION_EXAMPLE_HOOK_GATE=/path` makes it wait until that file exists, so that a test can
//! look at the extension while the hook runs.

use std::process::ExitCode;

use axum::Json;
use axum::routing::get;
use serde_json::json;
use tower_mtls::steadybit::runtime::ExtensionRuntime;

#[tokio::main]
async fn main() -> ExitCode {
    // The recorder first, so that the expiry gauges set while the configuration is built land
    // in it; no HTTP listener of its own: the runtime serves it on the health port.
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        // A real histogram (buckets) for the handshake duration; a summary otherwise.
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(
                tower_mtls::tls::metrics::HANDSHAKE_DURATION_SECONDS.to_owned(),
            ),
            &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
        )
        .and_then(|builder| builder.install_recorder());
    // The recorder keeps every histogram sample until it is drained, and only a scrape or its
    // upkeep drains it (`install_recorder` leaves the upkeep to the caller): without this, each
    // handshake's duration stays in memory for as long as nobody scrapes `/metrics`.
    if let Ok(prometheus) = &prometheus {
        let prometheus = prometheus.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
            loop {
                every.tick().await;
                prometheus.run_upkeep();
            }
        });
    }

    // Each request's span (tower-http, at DEBUG: `RUST_LOG=tower_http=debug`) nests under the
    // connection's `tls_connection` span, which names the client.
    let routes = axum::Router::new()
        .route(
            "/",
            get(|| async {
                Json(json!({
                    "actions": [],
                    "discoveries": [],
                    "targetTypes": [],
                    "targetAttributes": [],
                    "eventListeners": [],
                }))
            }),
        )
        .layer(tower_http::trace::TraceLayer::new_for_http());
    let runtime = ExtensionRuntime::init("extension")
        .version(env!("CARGO_PKG_VERSION"))
        .on_shutdown(|| async {
            tracing::info!("stop actions: aborting the attacks still running (none)");
            if let Some(gate) = std::env::var_os("EXTENSION_EXAMPLE_HOOK_GATE") {
                while !std::path::Path::new(&gate).exists() {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
            tracing::info!("stop actions: done");
        });
    match prometheus {
        Ok(prometheus) => runtime.metrics(move || prometheus.render()),
        Err(error) => {
            tracing::warn!(%error, "no metrics: the Prometheus recorder cannot be installed");
            runtime
        }
    }
    .run(routes)
    .await
}
