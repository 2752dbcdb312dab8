//! A hand-written hyper accept loop that uses only the acceptor:
//! `cargo run --example hyper_acceptor`.
//!
//! For servers that own their accept loop (or their listener type): spawn a task per
//! connection, run [`MtlsAcceptor::accept`] in it, and wrap the service in
//! `AddConnectionInfo` so every request carries the peer. The example generates its own
//! certificates (rcgen), serves on an ephemeral port, calls itself once with hyper-util's
//! client over rustls and exits.
//!
//! The file stands alone: copy it into a project with `tower-mtls`, `tokio` (`full`), `tower`
//! (`util`), `http`, `http-body-util`, `bytes`, `hyper`, `hyper-util` (`client-legacy`,
//! `server-auto`, `service`, `http1`, `http2`, `tokio`), `hyper-rustls` (no default features;
//! `http1`, `tls12`), `rcgen`, `tempfile` and `tracing-subscriber`.

use std::convert::Infallible;
use std::error::Error;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Empty, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use tower_mtls::peer::AddConnectionInfo;
use tower_mtls::rustls::pki_types::pem::PemObject;
use tower_mtls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tower_mtls::rustls::{ClientConfig, RootCertStore};
use tower_mtls::{MtlsAcceptor, PeerExt, TlsConfig};

async fn handler(
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let who = req
        .client_identity()
        .map_or_else(|| "nobody".to_owned(), |id| id.subject().to_string());
    Ok(http::Response::new(Full::from(format!("hello {who}\n"))))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt::init();
    let dir = tempfile::tempdir()?;
    let ca = new_ca("Example CA")?;
    let ca_path = dir.path().join("ca.crt");
    std::fs::write(&ca_path, ca.pem())?;
    let server = server_cert(&ca)?;
    let (cert, key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
    std::fs::write(&cert, &server.cert_pem)?;
    std::fs::write(&key, &server.key_pem)?;

    let tls = TlsConfig::from_pem_files(cert, key)
        .client_trust(ca_path)
        .build()?;
    let acceptor = MtlsAcceptor::new(tls).handshake_timeout(std::time::Duration::from_secs(5));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;

    tokio::spawn(async move {
        loop {
            let Ok((tcp, remote)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            // The handshake runs in the connection's own task, never in the accept loop.
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp, Some(remote)).await else {
                    return; // logged by the acceptor
                };
                let service =
                    AddConnectionInfo::new(tower::service_fn(handler), stream.info().clone());
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                    .await;
            });
        }
    });

    let client_leaf = issue(
        &ca,
        &[(DnType::CommonName, "example-client")],
        Vec::new(),
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    let client = https_client(client_config(&ca.pem(), Some(&client_leaf))?);
    let (_, body) = fetch(&client, &format!("https://localhost:{}/", addr.port())).await?;
    print!("{body}");
    Ok(())
}

// ---- The demo's PKI and its client. A deployment reads its certificates from its secrets and
// calls the server with its own HTTP client; here rcgen makes a throwaway PKI, and hyper-util's
// client over rustls (hyper-rustls's connector) makes the calls.

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

/// hyper-util's client, HTTPS only.
type HttpsClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// HTTP/1.1 (without ALPN): with TLS 1.3 the server judges the client certificate after the
/// client's side of the handshake, so a refusal reaches the first request as the server's
/// alert, which hyper's HTTP/1.1 client passes on (its HTTP/2 client reports only a closed
/// connection).
fn https_client(config: ClientConfig) -> HttpsClient {
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}

/// `GET url`: the status and the body.
async fn fetch(client: &HttpsClient, url: &str) -> Result<(StatusCode, String), Box<dyn Error>> {
    let response = client.get(url.parse()?).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
