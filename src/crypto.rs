//! The crypto provider and the one hash the crate computes itself.
//!
//! `rustls::ServerConfig::builder()` panics when both `aws-lc-rs` and `ring` are compiled in and
//! no process-wide default is installed, so this crate never relies on the process default: it
//! always builds with an explicit provider, `aws-lc-rs` when that feature is on, else `ring`.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

#[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
compile_error!(
    "tower-mtls needs a crypto provider: enable the `aws-lc-rs` (default) or `ring` feature"
);

/// The crypto provider this crate uses unless told otherwise: `aws-lc-rs` when the feature is
/// enabled (the default), else `ring`.
///
/// Independent of [`CryptoProvider::get_default`], so enabling both features never panics.
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
pub fn install_default_provider() -> bool {
    if CryptoProvider::get_default().is_some() {
        return false;
    }
    // Losing a race to another installer is fine: a default is installed either way.
    CryptoProvider::install_default(default_provider().as_ref().clone()).is_ok()
}

/// SHA-256 of `data`, from the same library that backs the default provider.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    #[cfg(feature = "aws-lc-rs")]
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// An incremental SHA-256, for digests of many inputs without joining them first.
pub(crate) struct Sha256(
    #[cfg(feature = "aws-lc-rs")] aws_lc_rs::digest::Context,
    #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))] ring::digest::Context,
);

impl Sha256 {
    pub(crate) fn new() -> Self {
        #[cfg(feature = "aws-lc-rs")]
        let context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
        let context = ring::digest::Context::new(&ring::digest::SHA256);
        Self(context)
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub(crate) fn finish(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.0.finish().as_ref());
        out
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

    #[test]
    fn default_provider_has_suites() {
        assert!(!default_provider().cipher_suites.is_empty());
    }
}
