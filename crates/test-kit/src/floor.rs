//! The floor of every comparison: rustls configured the way a bare tokio-rustls server would
//! configure it, and the client the load generator and the in-memory benches use.
//!
//! Shared by `benches/handshake.rs` and the `bare_server` and `loadgen` tools, so that the
//! in-memory floor and the loopback floor are one configuration.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{NamedGroup, RootCertStore, ServerConfig};

/// ALPN as the crate's [`TlsConfig`](tower_mtls::TlsConfig) offers it by default.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A server configuration as a bare tokio-rustls + hyper server builds it, matching what
/// [`TlsConfig`](tower_mtls::TlsConfig) builds by default: the same provider, TLS 1.3 and 1.2,
/// `WebPkiClientVerifier` over `client_roots` (client authentication required) or none,
/// ALPN `h2` and `http/1.1`, and rustls' defaults for everything else — a stateful session
/// cache of 256 sessions, no ticketer (no stateless session tickets), two TLS 1.3 tickets
/// (session ids into that cache) after each handshake.
pub fn server_config(
    provider: &Arc<CryptoProvider>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_roots: Option<RootCertStore>,
) -> Result<ServerConfig, rustls::Error> {
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match client_roots {
        Some(roots) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| rustls::Error::General(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// The crate's default provider, offering X25519 only: every server in the comparison
/// (rustls, Go 1.19, OpenSSL 3.0) negotiates the same key exchange with it.
pub fn client_provider() -> Arc<CryptoProvider> {
    client_provider_with(NamedGroup::X25519)
}

/// The crate's default provider, offering the key exchange `group` only.
pub fn client_provider_with(group: NamedGroup) -> Arc<CryptoProvider> {
    let mut provider = (*tower_mtls::tls::default_provider()).clone();
    provider.kx_groups.retain(|g| g.name() == group);
    Arc::new(provider)
}
