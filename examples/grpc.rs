//! A gRPC extension with tonic: the standard health service (`grpc.health.v1.Health`) and one
//! method, `tower_mtls.example.v1.Identity/WhoAmI`, that tells the caller who the server
//! thinks it is. Configured only through the Steadybit contract's environment variables, as
//! the `extension` example is (see `tower_mtls::steadybit`):
//!
//! ```text
//! STEADYBIT_EXTENSION_PORT=8085                # gRPC port (default 8085)
//! STEADYBIT_EXTENSION_TLS_SERVER_CERT=/etc/extension/certificates/server-cert/tls.crt
//! STEADYBIT_EXTENSION_TLS_SERVER_KEY=/etc/extension/certificates/server-cert/tls.key
//! STEADYBIT_EXTENSION_TLS_CLIENT_CAS=/etc/extension/certificates/agent-cert
//! TOWER_MTLS_CLIENT_CRLS=/etc/extension/crls                   # optional revocation lists
//! TOWER_MTLS_CLIENT_ALLOW='cn=steadybit-agent & o=Steadybit'   # optional client policy
//! STEADYBIT_LOG_LEVEL=info STEADYBIT_LOG_FORMAT=json           # logs
//! cargo run --example grpc --features tonic
//! grpcurl -cacert ca.crt -cert agent.crt -key agent.key localhost:8085 grpc.health.v1.Health/Check
//! ```
//!
//! With client CAs the Steadybit contract requires a client certificate. This example asks for
//! one in the handshake but lets a client without one finish it, and `ClientCertLayer::require()`
//! in front of every service answers its calls with `UNAUTHENTICATED` ("a client certificate is
//! required"): a gRPC client reports a refused handshake only as `UNAVAILABLE`, a transport
//! error, which tells its user nothing. A certificate that is presented must still verify, and
//! no call passes without one. `TOWER_MTLS_CLIENT_ALLOW` narrows who passes; others get
//! `PERMISSION_DENIED`.
//!
//! The health service answers `SERVING`, and `NOT_SERVING` from SIGTERM or SIGINT on; then the
//! server stops accepting, lets calls in flight finish (at most 10 s) and the process exits
//! with 128 + the signal number (143 for SIGTERM). Without TLS variables it serves plain gRPC
//! (h2c), like the contract's plain-HTTP mode. With `STEADYBIT_EXTENSION_UNIX_SOCKET` it serves
//! plain gRPC on that socket whatever the TLS variables say, as Steadybit's extension-kit does
//! (the socket's file permissions guard it; the TLS variables apply to TCP only), with the health
//! service on the same socket; TLS on the socket (`TOWER_MTLS_UNIX_SOCKET_TLS=true`) is served by
//! the `extension` example, and refused here at start-up, as is any configuration error (exit
//! code 1). gRPC clients of C core (Python's grpcio, 1.57 on) and grpc-java send the socket's
//! path as `:authority`, which is no valid HTTP/2 authority: tonic's server (hyper's h2) resets
//! such calls with `PROTOCOL_ERROR`. Those clients must name a host, e.g. grpcio's
//! `("grpc.default_authority", "localhost")` option; grpc-go and tonic's client do by default.
//!
//! `examples/grpc/identity.rs` is generated from `examples/grpc/identity.proto` and checked
//! in, so neither the crate nor the example needs a build script or protoc; regenerate it with
//! `examples/grpc/regenerate.sh`.

use std::error::Error;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tower_mtls::PeerExt;
use tower_mtls::serve::MtlsListener;
use tower_mtls::steadybit::{self, ExtensionEnv};
use tower_mtls::tonic::{ConnectInfoLayer, MtlsIncoming};
use tower_mtls::{ClientAuth, ClientCertLayer};

#[path = "grpc/identity.rs"]
mod identity;

use identity::identity_server::{Identity, IdentityServer};
use identity::{WhoAmIRequest, WhoAmIResponse};

const DEFAULT_PORT: u16 = 8085;
const GRACE: Duration = Duration::from_secs(10);

/// `Identity/WhoAmI`: what the handshake verified and the policy matched.
struct WhoAmI;

#[tonic::async_trait]
impl Identity for WhoAmI {
    async fn who_am_i(
        &self,
        request: Request<WhoAmIRequest>,
    ) -> Result<Response<WhoAmIResponse>, Status> {
        let mut reply = WhoAmIResponse {
            // tonic's own accessor works behind `ConnectInfoLayer`.
            remote_addr: request
                .remote_addr()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            tls_version: request
                .tls_info()
                .and_then(|tls| tls.protocol_version())
                .map(|v| format!("{v:?}"))
                .unwrap_or_default(),
            ..WhoAmIResponse::default()
        };
        if let Some(id) = request.client_identity() {
            reply.subject = id.subject().to_string();
            reply.common_name = id.common_name().unwrap_or_default().to_owned();
            reply.dns_names = id.dns_names().to_vec();
            reply.uris = id.uris().to_vec();
            reply.spiffe_id = id.spiffe_id().map(|s| s.to_string()).unwrap_or_default();
        }
        if let Some(rule) = request.allowed_client().and_then(|c| c.matched_rule()) {
            reply.matched_rule = match rule.name() {
                Some(name) => name.to_owned(),
                None => format!("#{}", rule.index()),
            };
        }
        Ok(Response::new(reply))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    if let Err(error) = steadybit::runtime::init_logging() {
        tracing::error!(%error, "invalid log configuration");
        return ExitCode::from(1);
    }
    match run().await {
        Ok(code) => code,
        Err(error) => {
            tracing::error!(%error, "the grpc example cannot start");
            ExitCode::from(1)
        }
    }
}

async fn run() -> Result<ExitCode, Box<dyn Error>> {
    // Listened for from the start, so a signal sent as soon as the port is up is not death.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;

    // The contract's TLS, with the client certificate optional in the handshake when client CAs
    // are set: the layer then requires it per call and answers UNAUTHENTICATED, a status a
    // gRPC client can act on (see the module docs of `tower_mtls::tonic`).
    let env = ExtensionEnv::from_lookup_with(
        |name| std::env::var(name).ok(),
        |tls| {
            if tls.has_client_trust() {
                tls.optional_client_auth()
            } else {
                tls
            }
        },
    )?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("", ServingStatus::Serving).await;
    health.set_serving::<IdentityServer<WhoAmI>>().await;

    let (signal_tx, signal_rx) = tokio::sync::oneshot::channel::<i32>();
    let shutdown = {
        let health = health.clone();
        async move {
            let number = tokio::select! {
                _ = term.recv() => 15,
                _ = int.recv() => 2,
            };
            tracing::info!(signal = number, "shutting down: health NOT_SERVING");
            health
                .set_service_status("", ServingStatus::NotServing)
                .await;
            health.set_not_serving::<IdentityServer<WhoAmI>>().await;
            let _ = signal_tx.send(number);
        }
    };

    let mut server = Server::builder().timeout(Duration::from_secs(30));
    if let Some(path) = &env.unix_socket {
        if env.unix_socket_tls {
            return Err(format!(
                "{}=true: this example serves plain gRPC on a Unix socket, as the extension-kit \
                 does; TLS on a socket is served by the extension example",
                steadybit::vars::UNIX_SOCKET_TLS
            )
            .into());
        }
        if env.tls.is_some() {
            tracing::warn!(
                "the TLS variables apply to TCP only: the Unix socket serves plain gRPC (its file \
                 permissions guard it), as the Go extension-kit does"
            );
        }
        let listener = tower_mtls::serve::bind_unix_listener(path).await?;
        tracing::info!(listen = %path.display(), "grpc example serving plain gRPC (h2c) on a Unix socket");
        let served = server
            .add_service(health_service)
            .add_service(IdentityServer::new(WhoAmI))
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
            .await;
        // The socket file goes with the process, as the kit's does.
        let _ = std::fs::remove_file(path);
        served?;
        let code = signal_rx.await.map_or(0, |number| 128 + number);
        tracing::info!(exit_code = code, "stopped");
        return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
    }
    let tcp = bind_all_interfaces(env.port_or(DEFAULT_PORT)).await?;
    let addr = tcp.local_addr()?;
    match env.tls.clone() {
        Some(tls) => {
            let mode = match tls.client_auth() {
                ClientAuth::None => "gRPC over TLS",
                _ => "gRPC over mutual TLS",
            };
            let layer = match (tls.client_auth(), env.client_allow.clone()) {
                (ClientAuth::None, _) => ClientCertLayer::optional(),
                (_, Some(policy)) => ClientCertLayer::require().with_policy(policy),
                (_, None) => ClientCertLayer::require(),
            };
            // Live reloads of certificates, trust and CRLs, as the extension runtime does.
            let _reload = tls.watch(Duration::from_secs(10));
            let incoming = MtlsIncoming::new(MtlsListener::from_tcp(tcp, tls));
            let shutdown = incoming.graceful_shutdown(shutdown, GRACE);
            tracing::info!(listen = %addr, policy = %layer.policy(), "grpc example serving {mode}");
            // Each call runs in the connection's span (ConnectInfoLayer), and tower-http's span
            // for the call nests under it: `RUST_LOG=info,tower_http=debug`.
            server
                .layer(ConnectInfoLayer::new())
                .layer(tower_http::trace::TraceLayer::new_for_grpc())
                .layer(layer)
                .add_service(health_service)
                .add_service(IdentityServer::new(WhoAmI))
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await?;
        }
        None => {
            tracing::info!(listen = %addr, "grpc example serving plain gRPC (h2c): no TLS configured");
            // No deadline for plain connections: tonic waits for the calls in flight.
            server
                .add_service(health_service)
                .add_service(IdentityServer::new(WhoAmI))
                .serve_with_incoming_shutdown(TcpIncoming::from(tcp), shutdown)
                .await?;
        }
    }
    let code = signal_rx.await.map_or(0, |number| 128 + number);
    tracing::info!(exit_code = code, "stopped");
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// `[::]:port` (dual-stack), or `0.0.0.0:port` where the host has no IPv6.
async fn bind_all_interfaces(port: u16) -> std::io::Result<TcpListener> {
    match TcpListener::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))).await {
        Ok(listener) => Ok(listener),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::AddrInUse | std::io::ErrorKind::PermissionDenied
            ) =>
        {
            Err(e)
        }
        Err(_) => TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))).await,
    }
}
