//! Entry points into the crate's parsers of untrusted input, for the fuzz targets in `fuzz/`
//! only (feature `fuzzing`, off by default, hidden from the documentation). Not part of the
//! API: no stability promise, never enable it in an application.
//!
//! Each function is a thin wrapper around the crate-internal code it names, so that the fuzz
//! targets depend on this module and not on where that code lives.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

use crate::identity::{DistinguishedName, IdentityError};
use crate::tls::config::error::ConfigError;
use crate::tls::config::load::{self, LoadedFile, Source};
use crate::tls::trust::crl;
use crate::tls::trust::x509;

/// A DER element: tag, contents, the whole element, the input after it.
pub type Tlv<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

/// `tls/x509.rs`'s DER reader.
pub fn tlv(input: &[u8]) -> Option<Tlv<'_>> {
    x509::tlv(input)
}

/// A name in the form RFC 5280 compares (`tls/x509.rs`'s `NameKey`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NameKey(x509::NameKey);

/// The [`NameKey`] of a whole DER Name (`SEQUENCE OF RDN`), as x509-parser reads it.
pub fn name_key(der: &[u8]) -> Option<NameKey> {
    let (_, name) = X509Name::from_der(der).ok()?;
    Some(NameKey(x509::NameKey::of(&name)))
}

/// The [`NameKey`] of a Name's contents (what rustls-webpki hands out).
pub fn name_key_from_contents(contents: &[u8]) -> Option<NameKey> {
    x509::NameKey::from_contents(contents).map(NameKey)
}

/// The RFC 4514 [`DistinguishedName`] of a whole DER Name, as a certificate's subject is read;
/// `None` when x509-parser does not read it as a Name.
pub fn distinguished_name(der: &[u8]) -> Option<Result<DistinguishedName, IdentityError>> {
    let (_, name) = X509Name::from_der(der).ok()?;
    Some(DistinguishedName::from_x509(&name, "subject"))
}

/// A signed X.509 structure's three parts (`tls/x509.rs`'s `Signed`).
#[derive(Debug, Clone)]
pub struct Signed(x509::Signed);

/// `Signed::parse`.
pub fn signed(der: &[u8]) -> Option<Signed> {
    x509::Signed::parse(der).map(Signed)
}

impl Signed {
    /// Whether the key of `spki` made the signature, with the default provider's algorithms.
    pub fn verified_by(&self, spki: &[u8]) -> bool {
        let provider = crate::tls::default_provider();
        self.0
            .verified_by(spki, &provider.signature_verification_algorithms)
    }
}

/// A certificate's notAfter in Unix seconds, read straight from its DER.
pub fn cert_not_after(der: &[u8]) -> Option<i64> {
    x509::cert_not_after(der)
}

/// Unix seconds as an RFC 3339 UTC timestamp.
pub fn utc(secs: i64) -> String {
    x509::utc(secs)
}

/// A serial number without redundant leading zero octets.
pub fn serial_key(raw: &[u8]) -> &[u8] {
    x509::serial_key(raw)
}

/// One parsed CRL (`tls/crl.rs`'s `Crl`).
#[derive(Debug, Clone)]
pub struct Crl(Arc<crl::Crl>);

/// `Crl::parse`.
pub fn crl(path: &Path, der: &[u8]) -> Result<Crl, ConfigError> {
    crl::Crl::parse(path, der).map(|c| Crl(Arc::new(c)))
}

impl Crl {
    /// Why the CRL cannot be used, when it cannot.
    pub fn defect(&self) -> Option<&str> {
        self.0.defect()
    }

    /// Whether it is in force at `now`.
    pub fn in_force(&self, now: u64) -> bool {
        self.0.in_force(now)
    }

    /// Its number, scope and issuer as messages show them.
    pub fn describe(&self) -> String {
        format!(
            "{} {} {}",
            self.0.issuer_display,
            self.0.number_display(),
            self.0.scope_display()
        )
    }

    /// Whether the key of `spki` made its signature, with the default provider's algorithms.
    pub fn verified_by(&self, spki: &[u8]) -> bool {
        let provider = crate::tls::default_provider();
        self.0
            .verified_by(spki, &provider.signature_verification_algorithms)
    }
}

/// What revocation checking says of one certificate (`tls/crl.rs`'s `NotRevoked` / `Revoked`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not revoked, until then (Unix seconds).
    NotRevoked {
        /// `NotRevoked::until`.
        until: u64,
    },
    /// `Revoked::Listed`.
    Listed(String),
    /// `Revoked::Stale`.
    Stale(u64, String),
    /// `Revoked::Unknown`.
    Unknown(String),
}

/// `Authority::select` over `crls`, then `Authority::check` of the certificate `der` with
/// serial `serial` at `now`; `None` when there is no CRL.
pub fn crl_check(
    crls: &[Crl],
    der: &[u8],
    serial: &[u8],
    is_ca: bool,
    now: u64,
    require_fresh: bool,
) -> Option<Verdict> {
    let crls: Vec<Arc<crl::Crl>> = crls.iter().map(|c| c.0.clone()).collect();
    let authority = crl::Authority::select(&crls)?;
    let facts = crl::CertFacts::new(der, serial, is_ca);
    Some(match authority.check(&facts, now, require_fresh) {
        Ok(ok) => Verdict::NotRevoked { until: ok.until },
        Err(crl::Revoked::Listed { reason }) => Verdict::Listed(reason),
        Err(crl::Revoked::Stale {
            next_update,
            reason,
        }) => Verdict::Stale(next_update, reason),
        Err(crl::Revoked::Unknown { reason }) => Verdict::Unknown(reason),
    })
}

/// The URIs of a certificate's CRLDistributionPoints, as scoped CRLs read them.
pub fn distribution_points(der: &[u8]) -> Option<Vec<Vec<u8>>> {
    crl::distribution_points(der)
}

fn file(bytes: &[u8]) -> LoadedFile {
    LoadedFile {
        path: PathBuf::from("<fuzz>"),
        bytes: bytes.to_vec(),
    }
}

/// `load::certificates` of one PEM file's bytes.
pub fn certificates(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    load::certificates(&file(bytes))
}

/// `load::private_key` of one PEM file's bytes.
pub fn private_key(bytes: &[u8]) -> Result<PrivateKeyDer<'static>, ConfigError> {
    load::private_key(&file(bytes))
}

/// `load::trust_certificates` of a trust source given as bytes.
pub fn trust_certificates(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let source = Source::memory("fuzz", bytes);
    let read = source.read()?;
    Ok(load::trust_certificates(&source, &read)?
        .into_iter()
        .map(|t| t.der)
        .collect())
}

/// `load::crls` of a CRL source given as bytes.
pub fn crls(
    bytes: &[u8],
) -> Result<Vec<(PathBuf, CertificateRevocationListDer<'static>)>, ConfigError> {
    let source = Source::memory("fuzz", bytes);
    let read = source.read_up_to(load::MAX_CRL_FILE)?;
    load::crls(&source, &read)
}

/// `load::trust_certificates` of a trust source on disk (a file or a mounted secret
/// directory), with each certificate's file and position.
pub fn trust_directory(path: &Path) -> Result<Vec<(PathBuf, usize)>, ConfigError> {
    let source = Source::Path(path.to_owned());
    let read = source.read()?;
    Ok(load::trust_certificates(&source, &read)?
        .into_iter()
        .map(|t| (t.path, t.index))
        .collect())
}

/// `load::crls` of a CRL source on disk (a file or a directory).
pub fn crl_directory(path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let source = Source::Path(path.to_owned());
    let read = source.read_up_to(load::MAX_CRL_FILE)?;
    Ok(load::crls(&source, &read)?
        .into_iter()
        .map(|(path, _)| path)
        .collect())
}
