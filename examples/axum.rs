//! Per-route client-certificate policies in an axum app: `cargo run --example axum`.
//!
//! * `/public`  — anyone who completed the TLS handshake (client certificates are optional);
//! * `/agent`   — only the client whose subject is `CN=steadybit-agent, O=Steadybit`;
//! * `/workload`— only the workload with SPIFFE ID `spiffe://cluster.local/ns/chaos/sa/runner`;
//! * `/admin`   — only the holder of one key, pinned by the SHA-256 of its SubjectPublicKeyInfo
//!   (the pin survives re-issuing the certificate for the same key).
//!
//! The example generates its own CA and clients (rcgen), serves on an ephemeral port, calls
//! every route with every client (hyper-util's client over rustls) and prints the status
//! table; it exits 0 when every answer is the expected one.
//!
//! The file stands alone: copy it into a project with `tower-mtls`, `axum`, `tokio` (`full`),
//! `http`, `http-body-util`, `bytes`, `hyper-util` (`client-legacy`, `http1`, `tokio`),
//! `hyper-rustls` (no default features; `http1`, `tls12`), `rcgen`, `tempfile` and
//! `tracing-subscriber` (`env-filter`).

use std::error::Error;
use std::process::ExitCode;

use axum::Router;

use axum::routing::get;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use tower_mtls::Rule;
use tower_mtls::rustls::pki_types::pem::PemObject;
use tower_mtls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tower_mtls::rustls::{ClientConfig, RootCertStore};
use tower_mtls::{
    AllowedClient, ClientCertLayer, ClientIdentity, MtlsServer, TlsConfig, identity::SpiffeId,
};

async fn public() -> &'static str {
    "public: hello, whoever you are\n"
}

async fn protected(client: AllowedClient) -> String {
    let who = client
        .identity()
        .map_or_else(|| "?".to_owned(), |id| id.subject().to_string());
    let rule = client
        .matched_rule()
        .map_or_else(|| "-".to_owned(), |rule| rule.to_string());
    format!("welcome {who} (rule {rule})\n")
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
    let client = |subject: &[(DnType, &str)], sans: Vec<SanType>| {
        issue(&ca, subject, sans, ExtendedKeyUsagePurpose::ClientAuth)
    };
    let agent = client(
        &[
            (DnType::CommonName, "steadybit-agent"),
            (DnType::OrganizationName, "Steadybit"),
        ],
        Vec::new(),
    )?;
    let workload = client(
        &[(DnType::CommonName, "runner")],
        vec![SanType::URI(
            "spiffe://cluster.local/ns/chaos/sa/runner".try_into()?,
        )],
    )?;
    let admin = client(
        &[
            (DnType::CommonName, "ops-laptop"),
            (DnType::OrganizationName, "Ops"),
        ],
        Vec::new(),
    )?;
    let admin_der = CertificateDer::from_pem_slice(admin.cert_pem.as_bytes())?;
    let admin_pin = ClientIdentity::parse(admin_der.as_ref())?.spki_sha256();

    let app = Router::new()
        .route("/public", get(public))
        .route(
            "/agent",
            get(protected).layer(
                ClientCertLayer::require().allow(
                    Rule::named("agent")
                        .subject_cn("steadybit-agent")
                        .subject_o("Steadybit"),
                ),
            ),
        )
        .route(
            "/workload",
            get(protected).layer(ClientCertLayer::require().allow(Rule::new().spiffe_id(
                SpiffeId::parse("spiffe://cluster.local/ns/chaos/sa/runner")?,
            ))),
        )
        .route(
            "/admin",
            get(protected)
                .layer(ClientCertLayer::require().allow(Rule::new().spki_sha256(admin_pin))),
        );

    // Client certificates are optional at the TLS level, so /public serves everyone; the
    // layers decide for the other routes.
    let tls = TlsConfig::from_pem_files(server_cert, server_key)
        .client_trust(ca_path)
        .optional_client_auth()
        .build()?;
    let server = MtlsServer::bind("127.0.0.1:0").await?.tls(tls);
    let addr = match server.local_addr()? {
        tower_mtls::serve::ListenAddr::Tcp(addr) => addr,
        other => return Err(format!("unexpected listener {other}").into()),
    };
    tokio::spawn(server.serve(app));
    println!("serving on https://{addr}\n");

    let clients: [(&str, Option<&Leaf>); 4] = [
        ("no certificate", None),
        ("steadybit-agent", Some(&agent)),
        ("SPIFFE runner", Some(&workload)),
        ("pinned admin", Some(&admin)),
    ];
    let routes = ["/public", "/agent", "/workload", "/admin"];
    // Expected status per client (rows) and route (columns).
    let expected = [
        [200, 401, 401, 401],
        [200, 200, 403, 403],
        [200, 403, 200, 403],
        [200, 403, 403, 200],
    ];
    println!("{:<18}{}", "", routes.map(|r| format!("{r:<11}")).concat());
    let mut all_as_expected = true;
    let url = |route: &str| format!("https://localhost:{}{route}", addr.port());
    for ((name, leaf), expected) in clients.iter().zip(expected) {
        // One client per row: its connection is kept alive across the routes.
        let https = https_client(client_config(&ca.pem(), *leaf)?);
        let mut row = format!("{name:<18}");
        for (route, want) in routes.iter().zip(expected) {
            let status = fetch(&https, &url(route)).await?.0.as_u16();
            all_as_expected &= status == want;
            row.push_str(&format!(
                "{:<11}",
                if status == want {
                    format!("{status}")
                } else {
                    format!("{status}!={want}")
                }
            ));
        }
        println!("{row}");
    }

    let as_agent = https_client(client_config(&ca.pem(), Some(&agent))?);
    print!(
        "\n/agent as the agent: {}",
        fetch(&as_agent, &url("/agent")).await?.1
    );
    let (status, body) = fetch(&as_agent, &url("/admin")).await?;
    println!("/admin as the agent: {status} {body}");

    Ok(if all_as_expected {
        println!("\nevery route answered as expected");
        ExitCode::SUCCESS
    } else {
        println!("\nsome answers were unexpected");
        ExitCode::FAILURE
    })
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
