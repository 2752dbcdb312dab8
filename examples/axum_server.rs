//! An axum app served by `axum-server` with this crate's mTLS:
//! `cargo run --example axum_server --features axum-server`.
//!
//! Generates a throwaway CA, a server certificate and client certificates in a temporary
//! directory (rcgen), serves an axum `Router` with `axum_server::bind(..).acceptor(tower_mtls::
//! axum_server::Acceptor::new(tls))`, and calls it with hyper's client over tokio-rustls:
//!
//! * `/whoami` — only `CN=steadybit-agent, O=Steadybit` (a `ClientCertLayer` rule): the agent
//!   gets 200 and its identity, another client of the same CA gets 403;
//! * `/public` — any client that completed the handshake;
//! * a client without a certificate is refused in the handshake.
//!
//! Then it stops the server gracefully through axum-server's `Handle`, and exits 0 only when
//! every answer was the expected one.
//!
//! The file stands alone: copy it into a project with `tower-mtls` (feature `axum-server`),
//! `axum`, `axum-server`, `tokio` (`full`), `tower-http` (`trace`), `http`, `http-body-util`,
//! `bytes`, `hyper` (`client`, `http1`), `hyper-util` (`tokio`), `tokio-rustls`, `rcgen`,
//! `tempfile` and `tracing-subscriber` (`env-filter`).

use std::error::Error;
use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;

use axum::routing::get;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tower_mtls::AllowedClient;
use tower_mtls::rustls::pki_types::pem::PemObject;
use tower_mtls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tower_mtls::rustls::{self, ClientConfig, RootCertStore};
use tower_mtls::{ClientCertLayer, ConnectionInfo, Rule, TlsConfig, tls::DEFAULT_WATCH_INTERVAL};

/// Who the caller is, as the policy layer established it.
async fn whoami(client: AllowedClient, connection: ConnectionInfo) -> String {
    let who = client
        .identity()
        .map_or_else(|| "?".to_owned(), |id| id.subject().to_string());
    let rule = client
        .matched_rule()
        .map_or_else(|| "-".to_owned(), |r| r.to_string());
    format!(
        "hello {who} (rule {rule}, {:?})\n",
        connection.tls().protocol_version()
    )
}

async fn public() -> &'static str {
    "public: hello, whoever you are\n"
}

/// What one call should get: a status, or a refused handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Status(u16),
    Refused,
}

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .init();

    // 1. A throwaway PKI, as files (like mounted Kubernetes secrets).
    let dir = tempfile::tempdir()?;
    let ca = new_ca("Cluster CA")?;
    let ca_path = dir.path().join("ca.crt");
    std::fs::write(&ca_path, ca.pem())?;
    let server = server_cert(&ca)?;
    let (server_cert, server_key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
    std::fs::write(&server_cert, &server.cert_pem)?;
    std::fs::write(&server_key, &server.key_pem)?;
    let client_cert = |cn: &str, o: &str| {
        let subject = [(DnType::CommonName, cn), (DnType::OrganizationName, o)];
        issue(
            &ca,
            &subject,
            Vec::new(),
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    };
    let agent = client_cert("steadybit-agent", "Steadybit")?;
    let intruder = client_cert("intruder", "Elsewhere")?;

    // 2. The TLS configuration from the files, reloaded when they change.
    let tls = TlsConfig::from_pem_files(&server_cert, &server_key)
        .client_trust(&ca_path)
        .build()?;
    let _watch = tls.watch(DEFAULT_WATCH_INTERVAL);

    // 3. The app: a guarded route and a public one.
    let app = Router::new()
        .route(
            "/whoami",
            get(whoami).layer(
                ClientCertLayer::require().allow(
                    Rule::named("agent")
                        .subject_cn("steadybit-agent")
                        .subject_o("Steadybit"),
                ),
            ),
        )
        .route("/public", get(public))
        // Request spans nest under the connection's span, which names the client.
        .layer(tower_http::trace::TraceLayer::new_for_http());

    // 4. axum-server with this crate's acceptor, on an ephemeral port.
    let handle = axum_server::Handle::new();
    let serving = tokio::spawn(
        axum_server::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .acceptor(tower_mtls::axum_server::Acceptor::new(tls.clone()))
            .handle(handle.clone())
            .serve(app.into_make_service()),
    );
    let addr = handle
        .listening()
        .await
        .ok_or("the server did not start listening")?;
    println!(
        "axum-server on https://{addr} (client auth: {})\n",
        tls.client_auth()
    );

    // 5. The calls.
    let client = |identity: Option<&Leaf>| client_config(&ca.pem(), identity).map(Arc::new);
    let cases = [
        (
            "agent on /whoami",
            client(Some(&agent))?,
            "/whoami",
            Expect::Status(200),
        ),
        (
            "intruder on /whoami",
            client(Some(&intruder))?,
            "/whoami",
            Expect::Status(403),
        ),
        (
            "intruder on /public",
            client(Some(&intruder))?,
            "/public",
            Expect::Status(200),
        ),
        (
            "no certificate on /public",
            client(None)?,
            "/public",
            Expect::Refused,
        ),
    ];
    let mut all_as_expected = true;
    for (name, client, path, expected) in cases {
        let outcome =
            tokio::time::timeout(Duration::from_secs(30), fetch(&client, addr, path)).await;
        let (got, detail) = match outcome {
            Err(_) => (None, "no answer within 30 s".to_owned()),
            Ok(Ok((status, body))) => (
                Some(Expect::Status(status.as_u16())),
                format!("HTTP {}: {}", status.as_u16(), body.trim_end()),
            ),
            Ok(Err(error)) => (
                Some(Expect::Refused),
                format!("refused: {}", refusal(error.as_ref())),
            ),
        };
        let ok = got == Some(expected);
        all_as_expected &= ok;
        println!(
            "[{}] {name}\n      {detail}",
            if ok { "as expected" } else { "UNEXPECTED" }
        );
    }

    // 6. Graceful shutdown: stop accepting, let connections finish, within 10 s.
    handle.graceful_shutdown(Some(Duration::from_secs(10)));
    let stopped = tokio::time::timeout(Duration::from_secs(30), serving).await;
    let stopped_cleanly = matches!(stopped, Ok(Ok(Ok(()))));
    println!(
        "\n[{}] graceful shutdown through axum-server's Handle ({} connections left)",
        if stopped_cleanly {
            "as expected"
        } else {
            "UNEXPECTED"
        },
        handle.connection_count()
    );
    all_as_expected &= stopped_cleanly && handle.connection_count() == 0;

    println!();
    if all_as_expected {
        println!("every call behaved as expected");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("some calls did not behave as expected");
        Ok(ExitCode::FAILURE)
    }
}

// ---- The demo's PKI and its client. A deployment reads its certificates from its secrets and
// calls the server with its own HTTP client; here rcgen makes a throwaway PKI, and hyper's
// client over tokio-rustls makes the calls.

/// A certificate and its private key, PEM.
struct Leaf {
    cert_pem: String,
    key_pem: String,
}

/// A throwaway root CA.
fn new_ca(cn: &str) -> Result<CertifiedIssuer<'static, KeyPair>, rcgen::Error> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate()?)
}

/// A certificate issued by `ca`: `subject`'s attributes, `sans`, and one extended key usage
/// (`ServerAuth` for the server, `ClientAuth` for a client).
fn issue(
    ca: &Issuer<'_, KeyPair>,
    subject: &[(DnType, &str)],
    sans: Vec<SanType>,
    usage: ExtendedKeyUsagePurpose,
) -> Result<Leaf, rcgen::Error> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    for (attribute, value) in subject {
        params.distinguished_name.push(attribute.clone(), *value);
    }
    params.subject_alt_names = sans;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, ca)?;
    Ok(Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The server's certificate, for `localhost`.
fn server_cert(ca: &Issuer<'_, KeyPair>) -> Result<Leaf, rcgen::Error> {
    let localhost = SanType::DnsName("localhost".try_into()?);
    issue(
        ca,
        &[(DnType::CommonName, "localhost")],
        vec![localhost],
        ExtendedKeyUsagePurpose::ServerAuth,
    )
}

/// A client's rustls configuration: trusts `ca_pem` for the server, presents `identity`.
fn client_config(ca_pem: &str, identity: Option<&Leaf>) -> Result<ClientConfig, Box<dyn Error>> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes())?)?;
    // An explicit provider: no process-wide default is needed.
    let builder = ClientConfig::builder_with_provider(tower_mtls::tls::default_provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    Ok(match identity {
        Some(leaf) => builder.with_client_auth_cert(
            CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes()).collect::<Result<_, _>>()?,
            PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes())?,
        )?,
        None => builder.with_no_client_auth(),
    })
}

/// `GET path` on a fresh connection to `addr`, verified as `localhost`: hyper's HTTP/1.1
/// client over tokio-rustls. With TLS 1.3 the server judges the client certificate after the
/// client has finished its side of the handshake, so a refusal arrives as an alert on the
/// connection, possibly before the request is even sent; then only the connection's own error
/// says why (a pooled client such as hyper-util's reports just a closed connection).
async fn fetch(
    config: &Arc<ClientConfig>,
    addr: SocketAddr,
    path: &str,
) -> Result<(StatusCode, String), Box<dyn Error>> {
    let tcp = TcpStream::connect(addr).await?;
    let tls = TlsConnector::from(config.clone())
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let (mut sender, connection) = http1::handshake(TokioIo::new(tls)).await?;
    let connection = tokio::spawn(connection);
    let request = http::Request::get(path)
        .header(http::header::HOST, format!("localhost:{}", addr.port()))
        .body(Empty::<Bytes>::new())?;
    let response = match sender.send_request(request).await {
        Ok(response) => response,
        Err(error) => {
            return Err(match connection.await? {
                Err(refused) => refused.into(),
                Ok(()) => error.into(),
            });
        }
    };
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Why a request failed: the server's TLS alert when it sent one (rustls's error travels inside
/// an `io::Error`, whose `source()` skips it), otherwise the whole chain of errors.
fn refusal(error: &(dyn Error + 'static)) -> String {
    let mut chain = Vec::new();
    let mut next = Some(error);
    while let Some(error) = next {
        let tls = error.downcast_ref::<rustls::Error>().or_else(|| {
            error
                .downcast_ref::<io::Error>()
                .and_then(io::Error::get_ref)
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(rustls::Error::AlertReceived(alert)) = tls {
            return format!("TLS alert {alert:?}");
        }
        chain.push(error.to_string());
        next = error.source();
    }
    chain.join(": ")
}
