//! An axum app on axum's own server, `axum::serve`, with mutual TLS:
//! `cargo run --example axum_serve --features axum`.
//!
//! The crate's [`MtlsListener`] runs the handshakes (off axum's accept loop, with a deadline
//! and a connection cap); [`make_service`] attaches each connection's facts to its requests;
//! handlers take the client with the crate's extractors; a per-route [`ClientCertLayer`]
//! lets only the agent into `/agent`. Client certificates are optional at the TLS level, so
//! a client without one gets a clear 401 from the route instead of a failed handshake.
//!
//! The example generates its own PKI (rcgen), serves on an ephemeral port, calls every route
//! with every client (hyper's client over tokio-rustls; also while a silent client holds a
//! connection open), shuts down gracefully and exits 0 when every answer is the expected one.
//!
//! The file stands alone: copy it into a project with `tower-mtls` (feature `axum`), `axum`,
//! `tokio` (`full`), `tower-http` (`trace`), `http`, `http-body-util`, `bytes`, `hyper`
//! (`client`, `http1`), `hyper-util` (`tokio`), `tokio-rustls`, `rcgen`, `tempfile` and
//! `tracing-subscriber` (`env-filter`).

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
use tower_mtls::axum::{ClientCert, make_service};
use tower_mtls::rustls::pki_types::pem::PemObject;
use tower_mtls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tower_mtls::rustls::{self, ClientConfig, RootCertStore};
use tower_mtls::serve::MtlsListener;
use tower_mtls::{ClientCertLayer, ConnectionInfo, MtlsAcceptor, Rule, TlsConfig};

/// Anyone who completed the handshake, with or without a certificate.
async fn public(client: Option<ClientCert>) -> String {
    match client {
        Some(id) => format!("hello {}\n", id.subject()),
        None => "hello, anonymous\n".to_owned(),
    }
}

/// Any client with a trusted certificate (the `ClientCert` extractor answers 401 otherwise).
async fn whoami(client: ClientCert, connection: ConnectionInfo) -> String {
    let tls = connection.tls();
    let remote = tls
        .remote_addr()
        .map_or_else(|| "-".to_owned(), |addr| addr.to_string());
    format!(
        "{} from {remote} over {:?}\n",
        client.subject(),
        tls.protocol_version()
    )
}

/// Only what the route's layer lets through.
async fn agent(client: AllowedClient) -> String {
    let rule = client
        .matched_rule()
        .map_or_else(|| "-".to_owned(), |rule| rule.to_string());
    format!("welcome, agent (rule {rule})\n")
}

/// The routes, each request in a tower-http span (nested under the connection's span, which
/// names the client: try `RUST_LOG=info,tower_http=debug`).
fn app() -> Router {
    Router::new()
        .route("/", get(public))
        .route("/whoami", get(whoami))
        .route(
            "/agent",
            get(agent).layer(
                ClientCertLayer::require().allow(
                    Rule::named("agent")
                        .subject_cn("steadybit-agent")
                        .subject_o("Steadybit"),
                ),
            ),
        )
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .init();

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
    let agent_cert = client_cert("steadybit-agent", "Steadybit")?;
    let other = client_cert("someone-else", "Elsewhere")?;
    let untrusted_ca = new_ca("Untrusted CA")?;
    let stranger = issue(
        &untrusted_ca,
        &[(DnType::CommonName, "steadybit-agent")],
        Vec::new(),
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;

    let tls = TlsConfig::from_pem_files(&server_cert, &server_key)
        .client_trust(&ca_path)
        .optional_client_auth()
        .build()?;
    let acceptor = MtlsAcceptor::new(tls).handshake_timeout(Duration::from_secs(5));
    let listener = MtlsListener::bind("127.0.0.1:0", acceptor)
        .await?
        .max_connections(1024);
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = listener.graceful_shutdown(
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
    );
    let serving = tokio::spawn(async move {
        axum::serve(listener, make_service(app()))
            .with_graceful_shutdown(shutdown)
            .await
    });
    println!("axum::serve on https://{addr}, client certificates optional\n");

    // A client that connects and says nothing: it must not hold up anyone else.
    let silent = tokio::net::TcpStream::connect(addr).await?;

    let client = |identity: Option<&Leaf>| client_config(&ca.pem(), identity).map(Arc::new);
    let agent_client = client(Some(&agent_cert))?;
    let other_client = client(Some(&other))?;
    let anonymous = client(None)?;
    let untrusted = client(Some(&stranger))?;
    // (client, name, path, expected status; 0 = refused during the handshake)
    let cases: [(&Arc<ClientConfig>, &str, &str, u16); 10] = [
        (&agent_client, "agent", "/", 200),
        (&agent_client, "agent", "/whoami", 200),
        (&agent_client, "agent", "/agent", 200),
        (&other_client, "trusted, not the agent", "/whoami", 200),
        (&other_client, "trusted, not the agent", "/agent", 403),
        (&anonymous, "no certificate", "/", 200),
        (&anonymous, "no certificate", "/whoami", 401),
        (&anonymous, "no certificate", "/agent", 401),
        (&untrusted, "untrusted CA", "/", 0),
        (&untrusted, "untrusted CA", "/agent", 0),
    ];
    let mut all_as_expected = true;
    for (client, name, path, expected) in cases {
        let outcome =
            tokio::time::timeout(Duration::from_secs(30), fetch(client, addr, path)).await;
        let (status, detail) = match outcome {
            Err(_) => (u16::MAX, "no answer within 30 s".to_owned()),
            Ok(Ok((status, body))) => (status.as_u16(), body.trim().to_owned()),
            Ok(Err(error)) => (
                0,
                format!("refused in the handshake: {}", refusal(error.as_ref())),
            ),
        };
        let ok = status == expected;
        all_as_expected &= ok;
        println!(
            "[{}] {name:<24} GET {path:<8} -> {status:>3}  {detail}",
            if ok { "as expected" } else { "UNEXPECTED " }
        );
    }
    drop(silent);

    let _ = stop.send(());
    serving.await??;
    println!();
    if all_as_expected {
        println!("every request behaved as expected; shut down gracefully");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("some requests did not behave as expected");
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
