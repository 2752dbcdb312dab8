//! [`ClientIdentity`]: the facts of a leaf certificate, parsed once; and the
//! [`CertificateSummary`] logs and reports name a certificate by.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use super::error::IdentityError;
use super::fingerprint::{Fingerprint, hex};
use super::name::DistinguishedName;
use super::spiffe::SpiffeId;

/// The facts of the client's leaf certificate that a policy decides on.
///
/// Obtained from [`PeerCertificates::identity`](crate::PeerCertificates::identity), which parses
/// the leaf at most once per connection.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    subject: DistinguishedName,
    issuer: DistinguishedName,
    dns_names: Vec<String>,
    uris: Vec<String>,
    emails: Vec<String>,
    ip_addresses: Vec<IpAddr>,
    spiffe_id: Option<SpiffeId>,
    serial: Vec<u8>,
    not_before: SystemTime,
    not_after: SystemTime,
    sha256: Fingerprint,
    spki_sha256: Fingerprint,
}

impl ClientIdentity {
    /// Parses a DER-encoded X.509 certificate.
    ///
    /// This does not verify anything: the acceptor's verifier has done that before a
    /// certificate reaches a request.
    pub fn parse(der: &[u8]) -> Result<Self, IdentityError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| IdentityError::Malformed(e.to_string()))?;

        let mut identity = Self {
            subject: DistinguishedName::from_x509(cert.subject(), "subject")?,
            issuer: DistinguishedName::from_x509(cert.issuer(), "issuer")?,
            dns_names: Vec::new(),
            uris: Vec::new(),
            emails: Vec::new(),
            ip_addresses: Vec::new(),
            spiffe_id: None,
            serial: cert.raw_serial().to_vec(),
            not_before: system_time(cert.validity().not_before.timestamp()),
            not_after: system_time(cert.validity().not_after.timestamp()),
            sha256: Fingerprint::of(der),
            spki_sha256: Fingerprint::of(cert.public_key().raw),
        };

        let san = cert
            .subject_alternative_name()
            .map_err(|e| IdentityError::Extension {
                extension: "subjectAltName",
                reason: e.to_string(),
            })?;
        if let Some(san) = san {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(n) => identity.dns_names.push((*n).to_owned()),
                    GeneralName::URI(u) => identity.uris.push((*u).to_owned()),
                    GeneralName::RFC822Name(e) => identity.emails.push((*e).to_owned()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            identity.ip_addresses.push(ip);
                        }
                    }
                    _ => {}
                }
            }
        }
        // An X.509-SVID carries exactly one URI SAN; with several, none is "the" SPIFFE ID.
        if let [only] = identity.uris.as_slice() {
            identity.spiffe_id = SpiffeId::parse(only).ok();
        }
        Ok(identity)
    }

    /// The subject name.
    pub fn subject(&self) -> &DistinguishedName {
        &self.subject
    }

    /// The issuer name of this (leaf) certificate, which its signature binds.
    pub fn issuer(&self) -> &DistinguishedName {
        &self.issuer
    }

    /// Shortcut for `subject().common_name()`: the subject's common name when it has exactly
    /// one CN, `None` when it has none or several (see [`DistinguishedName::common_name`]).
    pub fn common_name(&self) -> Option<&str> {
        self.subject.common_name()
    }

    /// DNS names from the subjectAltName extension, as encoded.
    pub fn dns_names(&self) -> &[String] {
        &self.dns_names
    }

    /// URIs from the subjectAltName extension, as encoded.
    pub fn uris(&self) -> &[String] {
        &self.uris
    }

    /// Email addresses (rfc822Name) from the subjectAltName extension, as encoded.
    pub fn emails(&self) -> &[String] {
        &self.emails
    }

    /// IP addresses from the subjectAltName extension.
    pub fn ip_addresses(&self) -> &[IpAddr] {
        &self.ip_addresses
    }

    /// The SPIFFE ID: present only when the certificate has exactly one URI SAN and it is a
    /// valid `spiffe://` ID, as the X.509-SVID specification requires.
    pub fn spiffe_id(&self) -> Option<&SpiffeId> {
        self.spiffe_id.as_ref()
    }

    /// The serial number's big-endian bytes, as encoded.
    pub fn serial(&self) -> &[u8] {
        &self.serial
    }

    /// The serial number as lowercase hex.
    pub fn serial_hex(&self) -> String {
        hex(&self.serial)
    }

    /// Start of the validity period.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// End of the validity period.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// SHA-256 of the whole certificate (what `openssl x509 -fingerprint -sha256` prints).
    pub fn sha256(&self) -> Fingerprint {
        self.sha256
    }

    /// SHA-256 of the SubjectPublicKeyInfo: stays the same when a certificate is re-issued
    /// for the same key.
    pub fn spki_sha256(&self) -> Fingerprint {
        self.spki_sha256
    }
}

/// What identifies a certificate in logs, reload reports and handshake refusals.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertificateSummary {
    /// Subject, RFC 4514 (control characters escaped).
    pub subject: String,
    /// Issuer, RFC 4514 (control characters escaped).
    pub issuer: String,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// End of the validity period.
    pub not_after: SystemTime,
    /// SHA-256 of the certificate.
    pub sha256: Fingerprint,
}

impl CertificateSummary {
    /// Summarises a DER certificate.
    pub fn of(der: &[u8]) -> Result<Self, IdentityError> {
        let id = ClientIdentity::parse(der)?;
        Ok(Self {
            subject: id.subject().to_string(),
            issuer: id.issuer().to_string(),
            serial: id.serial_hex(),
            not_after: id.not_after(),
            sha256: id.sha256(),
        })
    }

    /// As [`of`](Self::of), for a certificate a client presented: one that does not parse is
    /// still named by its fingerprint (`<unparsable>` subject and issuer).
    pub(crate) fn of_presented(der: &[u8]) -> Self {
        Self::of(der).unwrap_or_else(|_| Self {
            subject: "<unparsable>".into(),
            issuer: "<unparsable>".into(),
            serial: String::new(),
            not_after: SystemTime::UNIX_EPOCH,
            sha256: Fingerprint::of(der),
        })
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

fn system_time(unix_seconds: i64) -> SystemTime {
    let magnitude = Duration::from_secs(unix_seconds.unsigned_abs());
    let time = if unix_seconds >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(magnitude)
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(magnitude)
    };
    time.unwrap_or(SystemTime::UNIX_EPOCH)
}
