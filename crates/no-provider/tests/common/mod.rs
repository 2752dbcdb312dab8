//! A PKI written to a temporary directory (generated here: no key is ever committed), the
//! server's configuration and a client, all on the application's provider (ring).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub fn ring() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub ca_path: PathBuf,
    pub client: (String, String),
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

fn key() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key")
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_key = key();
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.distinguished_name
            .push(DnType::CommonName, "no-provider test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).expect("CA");
        let issuer = Issuer::new(ca, ca_key);
        let leaf = |name: Vec<String>, cn: &str| {
            let key = key();
            let mut params = CertificateParams::new(name).expect("params");
            params.distinguished_name.push(DnType::CommonName, cn);
            let cert = params.signed_by(&key, &issuer).expect("leaf");
            (cert.pem(), key.serialize_pem())
        };
        let server = leaf(vec!["localhost".into()], "localhost");
        let client = leaf(Vec::new(), "agent");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            path
        };
        Pki {
            client_cert: write("agent.crt", &client.0),
            client_key: write("agent.key", &client.1),
            server_cert: write("server.crt", &server.0),
            server_key: write("server.key", &server.1),
            ca_path: write("ca.crt", &ca_cert.pem()),
            ca_pem: ca_cert.pem(),
            client,
            dir,
        }
    }

    /// The server's configuration: this PKI's identity, its CA trusted for client
    /// certificates; `provider` when given.
    pub fn config(
        &self,
        provider: Option<Arc<CryptoProvider>>,
    ) -> Result<tower_mtls::TlsConfig, tower_mtls::tls::ConfigError> {
        let builder = tower_mtls::TlsConfig::from_pem_files(&self.server_cert, &self.server_key)
            .client_trust(&self.ca_path);
        match provider {
            Some(provider) => builder.crypto_provider(provider),
            None => builder,
        }
        .build()
    }

    /// A client on ring trusting this PKI's CA, with the client certificate when `identity`
    /// is set, built by hand with rustls.
    pub fn client(&self, identity: bool) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in certificates_of(&self.ca_pem) {
            roots.add(cert).expect("root");
        }
        let builder = rustls::ClientConfig::builder_with_provider(ring())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        let config = if identity {
            let key = PrivateKeyDer::try_from(
                rcgen::KeyPair::from_pem(&self.client.1)
                    .expect("key")
                    .serialize_der(),
            )
            .expect("key der");
            builder
                .with_client_auth_cert(certificates_of(&self.client.0), key)
                .expect("client identity")
        } else {
            builder.with_no_client_auth()
        };
        Arc::new(config)
    }

    /// `GET /` over a fresh TLS connection made with `client`: the whole response, or the
    /// handshake's error.
    pub async fn get(
        &self,
        addr: SocketAddr,
        client: Arc<rustls::ClientConfig>,
    ) -> std::io::Result<String> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let mut tls = tokio_rustls::TlsConnector::from(client)
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await?;
        tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut response = String::new();
        tls.read_to_string(&mut response).await?;
        Ok(response)
    }
}

/// The certificates of a PEM text, through rustls's own PEM reader.
fn certificates_of(pem: &str) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("PEM")
}
