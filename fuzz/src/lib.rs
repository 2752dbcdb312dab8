//! What the fuzz targets and the seed generator share: how one input is split into several
//! parts, and a test PKI generated at start-up (rcgen; no private key is ever committed).

use std::sync::{Arc, OnceLock};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tower_mtls::TlsConfig;
use tower_mtls_test_kit::pki::{Ca, CrlSpec, Leaf, LeafSpec};

/// What separates the parts of one input (several names, several CRLs, …).
pub const SEP: &[u8] = b"\n%%\n";

/// The parts of `data`, split at [`SEP`].
pub fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while let Some(i) = rest.windows(SEP.len()).position(|w| w == SEP) {
        parts.push(&rest[..i]);
        rest = &rest[i + SEP.len()..];
    }
    parts.push(rest);
    parts
}

/// `parts` joined with [`SEP`] (what the seed generator writes).
pub fn join(parts: &[&[u8]]) -> Vec<u8> {
    parts.join(SEP)
}

/// The test PKI: a root CA with a CRL, a server and two clients, and the server's
/// configuration (TLS 1.2 enabled, so that a client's Certificate message is read in the
/// clear and reaches the verifier).
pub struct Fixture {
    pub ca: Ca,
    pub intermediate: Ca,
    pub server: Leaf,
    pub client: Leaf,
    pub revoked: Leaf,
    pub scoped: Leaf,
    pub crl_pem: String,
    pub config: TlsConfig,
}

/// Built once per process.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let ca = Ca::new("Fuzz Root CA");
        let intermediate = ca.intermediate("Fuzz Intermediate CA");
        let server = ca.server();
        let client = ca.issue(
            &LeafSpec::client("steadybit-agent")
                .org("Steadybit")
                .dns("agent.example.com")
                .uri("spiffe://example.org/agent"),
        );
        let revoked = ca.client("revoked-agent");
        let mut spec = LeafSpec::client("scoped-agent");
        spec.crl_distribution_points = vec!["http://crl.example.com/a.crl".into()];
        let scoped = ca.issue(&spec);
        let crl_pem = ca.crl(&[&revoked]);
        let config = TlsConfig::from_pem(server.chain_pem.clone(), server.key_pem.clone())
            .client_trust_pem(ca.cert_pem.clone())
            .client_crl_bytes(crl_pem.clone())
            .tls12(true)
            .build()
            .expect("the fuzz fixture's TlsConfig");
        Fixture {
            ca,
            intermediate,
            server,
            client,
            revoked,
            scoped,
            crl_pem,
            config,
        }
    })
}

impl Fixture {
    /// A CRL of the root as DER, as `spec` says.
    pub fn crl_der(&self, spec: &CrlSpec) -> Vec<u8> {
        self.ca.crl_der_with(spec)
    }

    /// A rustls client presenting `leaf`, for recording real client flights.
    pub fn client_config(
        &self,
        leaf: &Leaf,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der.clone()).expect("root");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pem_body(
            &leaf.key_pem,
            "PRIVATE KEY",
        )));
        let chain: Vec<CertificateDer<'static>> = vec![leaf.der.clone()];
        Arc::new(
            rustls::ClientConfig::builder_with_provider(tower_mtls::tls::default_provider())
                .with_protocol_versions(versions)
                .expect("versions")
                .with_root_certificates(roots)
                .with_client_auth_cert(chain, key)
                .expect("client auth"),
        )
    }
}

/// The DER of the first PEM block labelled `label`.
pub fn pem_body(pem: &str, label: &str) -> Vec<u8> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin).expect("PEM begin") + begin.len();
    let stop = pem[start..].find(&end).expect("PEM end") + start;
    let b64: String = pem[start..stop].split_whitespace().collect();
    decode_base64(&b64)
}

fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => 0,
        }
    };
    let bytes: Vec<u8> = text.bytes().filter(|b| *b != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, b) in chunk.iter().enumerate() {
            acc |= value(*b) << (18 - 6 * i);
        }
        let n = chunk.len().saturating_sub(1);
        for i in 0..n {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    out
}
