//! The crypto provider and the one hash the crate computes itself.
//!
//! `rustls::ServerConfig::builder()` panics when both `aws-lc-rs` and `ring` are compiled in and
//! no process-wide default is installed, so this crate never relies on the process default
//! while it bundles a provider: it always builds with an explicit one, `aws-lc-rs` when that
//! feature is on, else `ring`. Built with neither feature, it takes the provider given to a
//! builder (`crypto_provider`), else the process default the application installed, and a
//! build without either fails with an error saying so.
//!
//! SHA-256 (certificate fingerprints, file digests) comes from the `sha2` crate, whatever the
//! provider.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use sha2::Digest;

/// The crypto provider this crate uses unless told otherwise: `aws-lc-rs` when the feature is
/// enabled (the default), else `ring`. Only with one of them: without, pass a provider to the
/// builders or install a process default.
///
/// Independent of [`CryptoProvider::get_default`], so enabling both features never panics.
#[cfg(any(feature = "aws-lc-rs", feature = "ring"))]
pub fn default_provider() -> Arc<CryptoProvider> {
    #[cfg(feature = "aws-lc-rs")]
    {
        Arc::new(rustls::crypto::aws_lc_rs::default_provider())
    }
    #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
    {
        Arc::new(rustls::crypto::ring::default_provider())
    }
}

/// What a build without a bundled provider says when it was given none and the application
/// installed none.
#[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
const NO_PROVIDER: &str = "no crypto provider: tower-mtls is built without `aws-lc-rs` and \
     `ring`, no provider was passed (`crypto_provider`) and no process default is installed \
     (`rustls::crypto::CryptoProvider::install_default`)";

/// The provider to build with: the one given, else the bundled default, else (built without
/// one) the process default.
pub(crate) fn provider(
    given: Option<Arc<CryptoProvider>>,
) -> Result<Arc<CryptoProvider>, rustls::Error> {
    if let Some(provider) = given {
        return Ok(provider);
    }
    #[cfg(any(feature = "aws-lc-rs", feature = "ring"))]
    {
        Ok(default_provider())
    }
    #[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
    {
        CryptoProvider::get_default()
            .cloned()
            .ok_or_else(|| rustls::Error::General(NO_PROVIDER.to_owned()))
    }
}

/// Installs [`default_provider`] as the process-wide default provider, unless one is
/// installed already; returns whether this call installed it.
///
/// For applications, first thing in `main`, when their build compiles both of rustls's
/// providers (this crate's default `aws-lc-rs` next to a dependency's `ring`, such as tonic's
/// `tls-ring`): `rustls::ServerConfig::builder()` and `ClientConfig::builder()`, which other
/// libraries call, panic without a process default then. This crate never needs it — it
/// always passes its provider explicitly — and never calls it itself: rustls leaves the
/// process default to the application.
///
/// ```
/// tower_mtls::tls::install_default_provider();
/// assert!(tower_mtls::rustls::crypto::CryptoProvider::get_default().is_some());
/// ```
#[cfg(any(feature = "aws-lc-rs", feature = "ring"))]
pub fn install_default_provider() -> bool {
    if CryptoProvider::get_default().is_some() {
        return false;
    }
    // Losing a race to another installer is fine: a default is installed either way.
    CryptoProvider::install_default(default_provider().as_ref().clone()).is_ok()
}

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(data).into()
}

/// An incremental SHA-256, for digests of many inputs without joining them first.
pub(crate) struct Sha256(sha2::Sha256);

impl Sha256 {
    pub(crate) fn new() -> Self {
        Self(sha2::Sha256::new())
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub(crate) fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_the_known_vector() {
        let hex: String = sha256(b"abc").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn incremental_sha256_equals_the_one_shot_digest() {
        let mut h = Sha256::new();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.finish(), sha256(b"abc"));
    }

    #[cfg(any(feature = "aws-lc-rs", feature = "ring"))]
    #[test]
    fn default_provider_has_suites() {
        assert!(!default_provider().cipher_suites.is_empty());
    }
}
