//! A minimal Steadybit-style extension, configured only through the contract's environment
//! variables (see `tower_mtls::env`):
//!
//! ```text
//! STEADYBIT_EXTENSION_PORT=8080                # service port (default 8080)
//! STEADYBIT_EXTENSION_HEALTH_PORT=8081         # plain-HTTP probes (default 8081)
//! STEADYBIT_EXTENSION_TLS_SERVER_CERT=/etc/extension/certificates/server-cert/tls.crt
//! STEADYBIT_EXTENSION_TLS_SERVER_KEY=/etc/extension/certificates/server-cert/tls.key
//! STEADYBIT_EXTENSION_TLS_CLIENT_CAS=/etc/extension/certificates/agent-cert,/etc/extension/certificates/ca.crt
//! STEADYBIT_EXTENSION_UNIX_SOCKET=/run/extension.sock   # instead of the TCP port
//! TOWER_MTLS_CLIENT_CRLS=/etc/extension/crls            # optional revocation lists
//! TOWER_MTLS_CLIENT_ALLOW='cn=steadybit-agent & o=Steadybit'   # optional client policy
//! cargo run --example extension
//! ```
//!
//! `GET /` answers the extension index. The health server answers `/health/liveness` and
//! `/health/readiness` in plain HTTP, outside TLS and outside the client policy, for Kubernetes
//! probes. Certificates, trust and CRLs are reloaded live when their files change. Handshake
//! counters are logged every minute and at shutdown. A configuration error — including an
//! invalid policy — exits non-zero with the error.

use std::process::ExitCode;
use std::time::Duration;

use axum::Json;
use axum::routing::get;
use serde_json::json;
use tower::Layer;
use tower_mtls::{
    ClientAuth, ClientCertLayer, MtlsAcceptor, MtlsServer, steadybit::ExtensionEnv,
    tls::DEFAULT_WATCH_INTERVAL,
};

const DEFAULT_PORT: u16 = 8080;
const DEFAULT_HEALTH_PORT: u16 = 8081;
const STATS_INTERVAL: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            eprintln!("extension: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    // The whole contract, TOWER_MTLS_CLIENT_ALLOW included; a misconfiguration names the
    // variable or file at fault.
    let env = ExtensionEnv::from_env()?;
    let policy = env.client_allow.clone();

    let index = axum::Router::new().route(
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
    );
    if let Some(policy) = &policy {
        tracing::info!(%policy, "client policy on the service port");
    }

    let mut server = match &env.unix_socket {
        Some(path) => MtlsServer::bind_unix(path).await?,
        None => MtlsServer::bind_all_interfaces(env.port_or(DEFAULT_PORT)).await?,
    };
    let mut acceptor = None;
    let _watch = match &env.tls {
        Some(tls) => {
            let tls_acceptor = MtlsAcceptor::new(tls.clone());
            server = server.tls(tls_acceptor.clone());
            acceptor = Some(tls_acceptor);
            Some(tls.watch(DEFAULT_WATCH_INTERVAL))
        }
        None => None,
    };
    let mode = match &env.tls {
        None => "plain HTTP".to_owned(),
        Some(tls) => match tls.client_auth() {
            ClientAuth::Required => format!(
                "HTTPS, client certificates required ({} CAs, {} pinned, {} CRLs)",
                tls.trust_summary().anchors,
                tls.trust_summary().pinned,
                tls.trust_summary().crls
            ),
            ClientAuth::Optional => "HTTPS, client certificates optional".to_owned(),
            ClientAuth::None => "HTTPS, no client authentication".to_owned(),
        },
    };
    tracing::info!(listen = %server.local_addr()?, "extension serving {mode}");

    let health = axum::Router::new()
        .route(
            "/health/liveness",
            get(|| async { Json(json!({"status": "UP"})) }),
        )
        .route(
            "/health/readiness",
            get(|| async { Json(json!({"status": "UP"})) }),
        );
    let health_server =
        MtlsServer::bind_all_interfaces(env.health_port_or(DEFAULT_HEALTH_PORT)).await?;
    tracing::info!(listen = %health_server.local_addr()?, "health probes serving plain HTTP");

    if let Some(acceptor) = acceptor.clone() {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(STATS_INTERVAL);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                tracing::info!(stats = %acceptor.stats(), "TLS");
            }
        });
    }

    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let stopped = |tx: &tokio::sync::broadcast::Sender<()>| {
        let mut rx = tx.subscribe();
        async move {
            let _ = rx.recv().await;
        }
    };
    // The policy wraps the whole router (cheaper than `Router::layer`, which boxes and clones
    // every route per request); the health router stays outside it.
    let server = server.with_graceful_shutdown(stopped(&stop_tx));
    let service = match policy {
        Some(policy) => {
            tokio::spawn(server.serve(ClientCertLayer::require().with_policy(policy).layer(index)))
        }
        None => tokio::spawn(server.serve(index)),
    };
    let probes = tokio::spawn(
        health_server
            .with_graceful_shutdown(stopped(&stop_tx))
            .serve(health),
    );

    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(());
    service.await??;
    probes.await??;
    if let Some(acceptor) = acceptor {
        tracing::info!(stats = %acceptor.stats(), "TLS at shutdown");
    }
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
