//! A self-contained tour: `cargo run --example demo`.
//!
//! Generates a throwaway CA, a server certificate and client certificates in a temporary
//! directory, starts a server that requires client certificates (watching its files for
//! rotation), and makes three requests with hyper's client over tokio-rustls: with the trusted
//! client certificate, with none, and with one from an untrusted CA. Prints each outcome and
//! exits 0 when all three behaved as expected.
//!
//! The file stands alone: copy it into a project with `tower-mtls`, `tokio` (`full`), `tower`
//! (`util`), `http`, `http-body-util`, `bytes`, `hyper` (`client`, `http1`), `hyper-util`
//! (`tokio`), `tokio-rustls`, `rcgen`, `tempfile` and `tracing-subscriber` (`env-filter`).

use std::convert::Infallible;
use std::error::Error;
use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tower_mtls::rustls::pki_types::pem::PemObject;
use tower_mtls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tower_mtls::rustls::{self, ClientConfig, RootCertStore};
use tower_mtls::{MtlsServer, PeerExt, TlsConfig, tls::DEFAULT_WATCH_INTERVAL};

/// The application: tells the caller what the server knows about it.
async fn hello(
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let tls = req.tls_info();
    let identity = req.client_identity();
    let text = match identity {
        Some(id) => format!(
            "subject={} issuer={} spiffe={} tls={:?} alpn={}",
            id.subject(),
            id.issuer(),
            id.spiffe_id().map_or("-".into(), |s| s.to_string()),
            tls.and_then(|t| t.protocol_version()),
            tls.and_then(|t| t.alpn_protocol())
                .map_or("-".into(), |a| String::from_utf8_lossy(a).into_owned()),
        ),
        None => "no client certificate".into(),
    };
    Ok(http::Response::new(Full::from(text)))
}

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,tower_mtls=warn".into()),
        )
        .init();

    // 1. A throwaway PKI, laid out as files like Kubernetes secrets would be.
    let dir = tempfile::tempdir()?;
    let ca = new_ca("Demo CA")?;
    let ca_path = dir.path().join("ca.crt");
    std::fs::write(&ca_path, ca.pem())?;
    let server = server_cert(&ca)?;
    let (server_cert, server_key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
    std::fs::write(&server_cert, &server.cert_pem)?;
    std::fs::write(&server_key, &server.key_pem)?;
    let agent = issue(
        &ca,
        &[
            (DnType::CommonName, "steadybit-agent"),
            (DnType::OrganizationName, "Steadybit"),
        ],
        vec![SanType::URI(
            "spiffe://demo.example/ns/steadybit/sa/agent".try_into()?,
        )],
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    let untrusted_ca = new_ca("Untrusted CA")?;
    let stranger = issue(
        &untrusted_ca,
        &[(DnType::CommonName, "steadybit-agent")],
        Vec::new(),
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    println!("PKI in {}", dir.path().display());

    // 2. A server that requires client certificates from the demo CA.
    let tls = TlsConfig::from_pem_files(&server_cert, &server_key)
        .client_trust(&ca_path)
        .build()?;
    let _watch = tls.watch(DEFAULT_WATCH_INTERVAL);
    let server = MtlsServer::bind("127.0.0.1:0").await?.tls(tls.clone());
    let addr = match server.local_addr()? {
        tower_mtls::serve::ListenAddr::Tcp(addr) => addr,
        other => return Err(format!("unexpected listener {other}").into()),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(
        server
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .serve(tower::service_fn(hello)),
    );
    println!(
        "server on https://{addr} (client auth: {}, server certificate serial {})\n",
        tls.client_auth(),
        tls.server_certificate().serial
    );

    // 3. Three clients.
    let cases = [
        ("trusted client certificate", Some(&agent), true),
        ("no client certificate", None, false),
        ("certificate from an untrusted CA", Some(&stranger), false),
    ];
    let mut all_as_expected = true;
    for (name, identity, should_pass) in cases {
        let mut config = client_config(&ca.pem(), identity)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        let (passed, detail) = match fetch(&config, addr, "/").await {
            Ok((status, body)) if status.is_success() => (
                true,
                format!("accepted: HTTP {}; the handler saw {body}", status.as_u16()),
            ),
            Ok((status, _)) => (false, format!("HTTP {status}")),
            Err(error) => (false, format!("refused: {}", refusal(error.as_ref()))),
        };
        let ok = passed == should_pass;
        all_as_expected &= ok;
        println!(
            "[{}] {name}\n      {detail}",
            if ok { "as expected" } else { "UNEXPECTED" }
        );
    }

    let _ = stop.send(());
    serving.await??;
    println!();
    if all_as_expected {
        println!("all three requests behaved as expected");
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
